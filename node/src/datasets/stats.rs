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
            ShardColumn::Numeric(_) | ShardColumn::Bytes { .. } | ShardColumn::Float32(_) => {
                column.each_number(|value| {
                    if value.is_nan() {
                        stat.missing += 1;
                    } else {
                        stat.present += 1;
                        add_number(stat, value, c == schema.label);
                    }
                });
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

#[cfg(test)]
mod tests {
    use super::*;

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
