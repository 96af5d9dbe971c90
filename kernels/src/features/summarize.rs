//! Per-shard statistics of training rows, and their exact merge.

use std::{borrow::Cow, collections::BTreeSet, sync::LazyLock};

use mass_protocol::{
    dataset::{Schema, Shard, ShardColumn, Split},
    features::{ColumnSummary, DataSummary, Impute, PipelineSpec, Select, order_key},
    jobs::Task,
};

use super::sketch::{SKETCH_CAPACITY, sketch};

/// Distinct values counted exactly per column before giving up (`overflow`).
pub const MAX_DISTINCT: usize = 1 << 16;

/// The label of row `row` as text (classes are named by their text); none
/// when missing, or when the shard has no such column or row. Borrowed
/// where the text is already held (a byte's, a category's): labels are
/// read for every row scored or trained on.
pub fn label_text(shard: &Shard, label: usize, row: usize) -> Option<Cow<'_, str>> {
    let number = |v: f64| {
        (!v.is_nan()).then(|| {
            Cow::Owned(if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { v.to_string() })
        })
    };
    match shard.columns.get(label)? {
        ShardColumn::Numeric(values) => number(*values.get(row)?),
        ShardColumn::Float32(values) => number(f64::from(*values.get(row)?)),
        ShardColumn::Bytes { values, missing } => {
            let v = *values.get(row)?;
            (missing.binary_search(&(row as u32)).is_err()).then(|| Cow::Borrowed(BYTE_TEXT[usize::from(v)].as_str()))
        }
        ShardColumn::Categorical { values, codes } => {
            values.get(*codes.get(row)? as usize).map(|v| Cow::Borrowed(v.as_str()))
        }
        ShardColumn::Text(values) => values.get(row)?.as_deref().map(Cow::Borrowed),
    }
}

/// Every byte's decimal text.
static BYTE_TEXT: LazyLock<Vec<String>> = LazyLock::new(|| (0..=u8::MAX).map(|v| v.to_string()).collect());

/// Statistics of the training rows of one shard.
pub fn summarize(shard: &Shard, schema: &Schema, spec: &PipelineSpec) -> DataSummary {
    let rows: Vec<usize> = (0..shard.rows()).filter(|&r| shard.splits[r] == Split::Train).collect();
    let labels: Vec<Option<String>> =
        rows.iter().map(|&r| label_text(shard, schema.label, r).map(Cow::into_owned)).collect();
    let exact_values = matches!(spec.impute, Impute::Median | Impute::MostFrequent);
    let joint = matches!(spec.select, Select::MutualInfo { .. });
    let columns = shard
        .columns
        .iter()
        .map(|column| {
            let mut s = ColumnSummary::default();
            match column {
                ShardColumn::Bytes { values, missing } if !spec.needs_quantiles() && !joint => {
                    summarize_bytes(&mut s, values, missing, &rows, exact_values);
                }
                ShardColumn::Numeric(_) | ShardColumn::Bytes { .. } | ShardColumn::Float32(_) => {
                    let values = column.as_numbers().unwrap_or_default();
                    if spec.needs_quantiles() {
                        s.sketch = sketch(rows.iter().map(|&r| values[r]), SKETCH_CAPACITY);
                    }
                    for (i, &r) in rows.iter().enumerate() {
                        let v = values[r];
                        if v.is_nan() {
                            s.missing += 1;
                            continue;
                        }
                        s.present += 1;
                        s.sum += v;
                        s.sum_sq += v * v;
                        s.min = Some(s.min.map_or(v, |m| m.min(v)));
                        s.max = Some(s.max.map_or(v, |m| m.max(v)));
                        let key = order_key(v);
                        if exact_values || joint {
                            if s.numbers.len() < MAX_DISTINCT || s.numbers.contains_key(&key) {
                                *s.numbers.entry(key).or_default() += 1;
                            } else {
                                s.overflow = true;
                            }
                        }
                        if joint
                            && let Some(label) = &labels[i]
                            && !s.overflow
                        {
                            *s.joint.entry(key).or_default().entry(label.clone()).or_default() += 1;
                        }
                    }
                }
                ShardColumn::Categorical { values, codes } => {
                    for &r in &rows {
                        match values.get(codes[r] as usize) {
                            Some(value) => {
                                s.present += 1;
                                *s.categories.entry(value.clone()).or_default() += 1;
                            }
                            None => s.missing += 1,
                        }
                    }
                }
                ShardColumn::Text(values) => {
                    for &r in &rows {
                        let Some(text) = &values[r] else {
                            s.missing += 1;
                            continue;
                        };
                        s.present += 1;
                        s.documents += 1;
                        let seen: BTreeSet<u32> =
                            super::text::buckets(text, spec.text.ngram_max, spec.text.buckets).into_iter().collect();
                        for bucket in seen {
                            *s.document_frequency.entry(bucket).or_default() += 1;
                        }
                    }
                }
            }
            s
        })
        .collect::<Vec<_>>();
    let mut columns = columns;
    // Classes come from the label's values, whatever its kind; a regression
    // label has numbers, not classes.
    let classes = &mut columns[schema.label].categories;
    classes.clear();
    if spec.task == Task::Classification {
        for label in labels.into_iter().flatten() {
            *classes.entry(label).or_default() += 1;
        }
    }
    DataSummary { rows: rows.len() as u64, columns }
}

/// The statistics of a column of bytes over `rows`, from a count of each
/// byte: one pass over the bytes instead of a branch per cell (MNIST's 784
/// columns were a tenth of a bagging job). Sums of whole numbers this size
/// are exact, so they are the bits the cell-by-cell pass gives.
fn summarize_bytes(s: &mut ColumnSummary, values: &[u8], missing: &[u32], rows: &[usize], exact_values: bool) {
    let counts = if missing.is_empty() {
        byte_counts(values, rows)
    } else {
        let mut counts = [0u64; 256];
        let mut gone = missing.iter().peekable();
        for &r in rows {
            while gone.next_if(|&&m| (m as usize) < r).is_some() {}
            if gone.peek().is_some_and(|&&m| m as usize == r) {
                s.missing += 1;
            } else {
                counts[values[r] as usize] += 1;
            }
        }
        counts
    };
    for (byte, &n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
        let v = byte as f64;
        s.present += n;
        s.sum += v * n as f64;
        s.sum_sq += v * v * n as f64;
        s.min = Some(s.min.map_or(v, |m| m.min(v)));
        s.max = Some(v);
        if exact_values {
            s.numbers.insert(order_key(v), n);
        }
    }
}

/// How many of `rows` hold each byte, counted into four tables in turn: a
/// column of mostly one byte (MNIST's zeros) made one counter's every
/// increment wait for the one before, most of a pipeline fit's time.
fn byte_counts(values: &[u8], rows: &[usize]) -> [u64; 256] {
    let mut tables = [[0u64; 256]; 4];
    let mut quads = rows.chunks_exact(4);
    for quad in &mut quads {
        for (table, &r) in tables.iter_mut().zip(quad) {
            table[values[r] as usize] += 1;
        }
    }
    for &r in quads.remainder() {
        tables[0][values[r] as usize] += 1;
    }
    let mut counts = [0u64; 256];
    for table in &tables {
        counts.iter_mut().zip(table).for_each(|(c, n)| *c += n);
    }
    counts
}

/// Adds `other` into `into`. Counts add exactly; sums add within rounding.
pub fn merge(into: &mut DataSummary, other: &DataSummary) {
    if into.columns.is_empty() {
        into.columns = vec![ColumnSummary::default(); other.columns.len()];
    }
    into.rows += other.rows;
    for (a, b) in into.columns.iter_mut().zip(&other.columns) {
        a.present += b.present;
        a.missing += b.missing;
        a.sum += b.sum;
        a.sum_sq += b.sum_sq;
        a.min = match (a.min, b.min) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        a.max = match (a.max, b.max) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
        for (k, n) in &b.numbers {
            *a.numbers.entry(*k).or_default() += n;
        }
        for (k, n) in &b.categories {
            *a.categories.entry(k.clone()).or_default() += n;
        }
        for (k, by_label) in &b.joint {
            let into = a.joint.entry(*k).or_default();
            for (label, n) in by_label {
                *into.entry(label.clone()).or_default() += n;
            }
        }
        for (k, n) in &b.document_frequency {
            *a.document_frequency.entry(*k).or_default() += n;
        }
        a.documents += b.documents;
        a.overflow |= b.overflow || a.numbers.len() > MAX_DISTINCT;
        super::sketch::merge_sketch(&mut a.sketch, &b.sketch, SKETCH_CAPACITY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mass_protocol::dataset::{Column, ColumnKind};

    /// Fuzz regression: a stored pipeline naming a label column the shard
    /// lacks (or a row past a short column) panicked here.
    #[test]
    fn a_label_outside_the_shard_reads_as_missing() {
        let shard = Shard {
            first_row: 0,
            columns: vec![ShardColumn::Numeric(vec![3.0])],
            splits: vec![Split::Train, Split::Train],
        };
        assert_eq!(label_text(&shard, 0, 0).as_deref(), Some("3"));
        assert_eq!(label_text(&shard, 0, 1), None);
        assert_eq!(label_text(&shard, 5, 0), None);
    }

    /// A byte's label reads as its decimal text, a missing one as none.
    #[test]
    fn byte_labels_read_as_their_numbers() {
        let shard = Shard {
            first_row: 0,
            columns: vec![ShardColumn::Bytes { values: vec![7, 255, 0, 0], missing: vec![2] }],
            splits: vec![Split::Train; 4],
        };
        let labels: Vec<_> = (0..5).map(|r| label_text(&shard, 0, r)).collect();
        assert_eq!(
            labels.iter().map(Option::as_deref).collect::<Vec<_>>(),
            [Some("7"), Some("255"), None, Some("0"), None]
        );
    }

    /// A column of bytes is summarized from its counts of each byte: the
    /// same summary, bit for bit, as the same numbers as f64 cell by cell.
    #[test]
    fn bytes_summarize_as_their_numbers_do() {
        for holes in [true, false] {
            bytes_summarize_as_numbers(holes);
        }
    }

    /// (Rows 503: the four-way count leaves a remainder.)
    fn bytes_summarize_as_numbers(holes: bool) {
        let hole = |r: usize| holes && r % 7 == 3;
        let numbers: Vec<f64> = (0..503).map(|r| if hole(r) { f64::NAN } else { ((r * 37) % 256) as f64 }).collect();
        let splits = (0..503).map(|r| if r % 5 == 0 { Split::Test } else { Split::Train }).collect();
        let label = ShardColumn::Numeric((0..503).map(|r| (r % 2) as f64).collect());
        let bytes = ShardColumn::numbers(numbers.clone());
        assert!(matches!(bytes, ShardColumn::Bytes { .. }));
        let shard = |column| Shard { first_row: 0, columns: vec![column, label.clone()], splits: Vec::clone(&splits) };
        let schema = Schema {
            columns: ["x", "y"].map(|n| Column { name: n.into(), kind: ColumnKind::Numeric }).to_vec(),
            label: 1,
        };
        for impute in [Impute::Mean, Impute::Median] {
            let spec = PipelineSpec { impute, ..PipelineSpec::default() };
            let of_bytes = summarize(&shard(bytes.clone()), &schema, &spec);
            let of_numbers = summarize(&shard(ShardColumn::Numeric(numbers.clone())), &schema, &spec);
            assert_eq!(of_bytes, of_numbers, "{impute:?}");
            assert_eq!(of_bytes.columns[0].missing > 0, holes);
            assert!(of_bytes.columns[0].present > 0);
        }
    }
}
