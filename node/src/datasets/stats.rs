//! The statistics every ingest path keeps of a numeric cell, in one place
//! (CSV and NumPy input give the same manifest for the same numbers).

use mass_protocol::dataset::{ColumnStats, Schema, Shard, ShardColumn};

/// Distinct label values counted at most (a label with more is a number to
/// regress, whose manifest must not grow with its rows).
pub const MAX_LABEL_VALUES: usize = 10_000;

/// How a number reads as a class name: integers without a fraction.
pub fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{}", value as i64) } else { value.to_string() }
}

/// Adds a present, finite number to a column's statistics (the caller
/// counts presence); label values are counted up to [`MAX_LABEL_VALUES`].
pub fn add_number(stat: &mut ColumnStats, value: f64, label: bool) {
    stat.min = Some(stat.min.map_or(value, |m| m.min(value)));
    stat.max = Some(stat.max.map_or(value, |m| m.max(value)));
    stat.sum += value;
    stat.sum_sq += value * value;
    if label {
        let key = format_number(value);
        if stat.counts.len() < MAX_LABEL_VALUES || stat.counts.contains_key(&key) {
            *stat.counts.entry(key).or_default() += 1;
        }
    }
}

/// Adds a shard's cells to the statistics of its columns, row by row as
/// they were read, so that statistics folded shard after shard in file
/// order are bit for bit those of one pass over the rows (sums of floats
/// depend on their order). A missing number is NaN in the shard (present
/// ones are finite), a missing category `u32::MAX`, missing text `None`.
pub fn add_shard(stats: &mut [ColumnStats], schema: &Schema, shard: &Shard) {
    for (c, (stat, column)) in stats.iter_mut().zip(&shard.columns).enumerate() {
        match column {
            ShardColumn::Bytes { values, missing } if add_bytes(stat, values, missing, c == schema.label) => {}
            ShardColumn::Numeric(_) | ShardColumn::Bytes { .. } | ShardColumn::Float32(_) => {
                add_numbers(stat, column, c == schema.label)
            }
            ShardColumn::Categorical { values, codes } => {
                let mut counts = vec![0u64; values.len()];
                for &code in codes {
                    match counts.get_mut(code as usize) {
                        Some(count) => *count += 1,
                        None => stat.missing += 1,
                    }
                }
                for (value, count) in values.iter().zip(counts) {
                    stat.present += count;
                    *stat.counts.entry(value.clone()).or_default() += count;
                }
            }
            ShardColumn::Text(values) => {
                let present = values.iter().filter(|v| v.is_some()).count() as u64;
                stat.present += present;
                stat.missing += values.len() as u64 - present;
            }
        }
    }
}

/// Adds a numeric column's cells one by one, in row order.
fn add_numbers(stat: &mut ColumnStats, column: &ShardColumn, label: bool) {
    column.each_number(|value| {
        if value.is_nan() {
            stat.missing += 1;
        } else {
            stat.present += 1;
            add_number(stat, value, label);
        }
    });
}

/// Largest integer up to which every whole f64 is exact.
const EXACT_INTEGERS: f64 = (1u64 << 53) as f64;

/// Adds a column of bytes from a count of each byte value, in one pass
/// without a branch per cell (MNIST's 784 byte columns made the ingest's
/// statistics a tenth of its time). It gives the row-by-row fold's bits
/// only where the sums stay whole numbers f64 holds exactly, and label
/// counts cannot reach their cap (where the rows' order picks the keys);
/// false, having added nothing, elsewhere.
fn add_bytes(stat: &mut ColumnStats, values: &[u8], missing: &[u32], label: bool) -> bool {
    let mut counts = [0u64; 256];
    for &v in values {
        counts[v as usize] += 1;
    }
    // A missing row holds 0 in the bytes.
    counts[0] -= missing.len() as u64;
    let (sum, sum_sq) =
        counts.iter().enumerate().fold((0u64, 0u64), |(s, q), (v, &n)| (s + v as u64 * n, q + (v * v) as u64 * n));
    let exact = |total: f64, add: u64| total.fract() == 0.0 && total.abs() + (add as f64) < EXACT_INTEGERS;
    let room = stat.counts.len() + counts.len() < MAX_LABEL_VALUES;
    if !exact(stat.sum, sum) || !exact(stat.sum_sq, sum_sq) || (label && !room) {
        return false;
    }
    stat.missing += missing.len() as u64;
    for (v, &n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
        let value = v as f64;
        stat.present += n;
        stat.min = Some(stat.min.map_or(value, |m| m.min(value)));
        stat.max = Some(stat.max.map_or(value, |m| m.max(value)));
        if label {
            *stat.counts.entry(format_number(value)).or_default() += n;
        }
    }
    stat.sum += sum as f64;
    stat.sum_sq += sum_sq as f64;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    use mass_protocol::dataset::{Column, ColumnKind, Split};

    /// The fold of [`add_shard`] done cell by cell, as it was.
    fn row_by_row(stats: &mut [ColumnStats], schema: &Schema, shard: &Shard) {
        for (c, (stat, column)) in stats.iter_mut().zip(&shard.columns).enumerate() {
            add_numbers(stat, column, c == schema.label);
        }
    }

    #[test]
    fn byte_columns_counted_give_the_bits_of_the_cell_by_cell_fold() {
        let column = |name: &str| Column { name: name.into(), kind: ColumnKind::Numeric };
        let schema = Schema { columns: vec![column("pixel"), column("label")], label: 1 };
        let shard = |first: u64, rows: usize, missing_every: usize| {
            let values: Vec<f64> = (0..rows)
                .map(|r| {
                    if r % missing_every == missing_every - 1 {
                        f64::NAN
                    } else {
                        ((r * 37 + first as usize) % 256) as f64
                    }
                })
                .collect();
            let labels = (0..rows).map(|r| (r % 10) as f64).collect();
            Shard {
                first_row: first,
                columns: vec![ShardColumn::numbers(values), ShardColumn::numbers(labels)],
                splits: vec![Split::Train; rows],
            }
        };
        let shards = [shard(0, 1000, 7), shard(1000, 333, 1_000_000), shard(1333, 5, 2)];
        assert!(matches!(shards[0].columns[0], ShardColumn::Bytes { .. }));
        // Whole sums, then a fraction first (where counting would round
        // differently, so the fold must be used), then sums past 2^53.
        for start in [0.0, 0.5, EXACT_INTEGERS - 100.0] {
            let fresh = ColumnStats { sum: start, sum_sq: start, ..ColumnStats::default() };
            let (mut counted, mut folded) = (vec![fresh.clone(); 2], vec![fresh; 2]);
            for s in &shards {
                add_shard(&mut counted, &schema, s);
                row_by_row(&mut folded, &schema, s);
            }
            assert_eq!(counted, folded, "from {start}");
            assert_eq!(counted[0].missing, 142 + 2);
            assert_eq!(counted[1].counts["7"], 100 + 33);
        }
    }

    #[test]
    fn label_counts_stop_growing_at_the_cap() {
        let mut stat = ColumnStats::default();
        for v in 0..(MAX_LABEL_VALUES + 50) {
            add_number(&mut stat, v as f64, true);
        }
        add_number(&mut stat, 3.0, true);
        assert_eq!(stat.counts.len(), MAX_LABEL_VALUES);
        assert_eq!(stat.counts["3"], 2);
        assert_eq!((stat.min, stat.max), (Some(0.0), Some((MAX_LABEL_VALUES + 49) as f64)));
        assert_eq!(format_number(2.0), "2");
        assert_eq!(format_number(2.5), "2.5");
    }
}
