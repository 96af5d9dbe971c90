//! Applying a fitted pipeline to rows.

use std::collections::BTreeMap;

use mass_protocol::{
    dataset::{Shard, ShardColumn},
    features::{ColumnTransform, FittedPipeline, Unseen},
};
use ndarray::Array2;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum TransformError {
    #[error("column '{column}': category '{value}' was not seen when the pipeline was fitted")]
    Unseen { column: String, value: String },
    #[error("column '{column}' is {got} but the pipeline expects {expected}")]
    Kind { column: String, got: &'static str, expected: &'static str },
    #[error("the rows have {got} columns but the pipeline was fitted on {expected}")]
    Shape { got: usize, expected: usize },
    #[error("column '{column}' has {got} values for {rows} rows")]
    Length { column: String, got: usize, rows: usize },
}

fn kind(column: &ShardColumn) -> &'static str {
    match column {
        ShardColumn::Numeric(_) => "numeric",
        ShardColumn::Categorical { .. } => "categorical",
        ShardColumn::Text(_) => "text",
    }
}

/// A numeric column's feature: missing values filled, then shifted and scaled.
struct Scaled<'a> {
    feature: usize,
    values: &'a [f64],
    fill: f64,
    shift: f64,
    scale: f64,
}

/// Rows written per pass over the numeric columns: each column's run of
/// values in the block is scaled as vectors, then put in place in rows that
/// are still in cache. (Scaling a whole column with a plain loop was not
/// vectorized, for the NaN test, and took half the time of a 1,000-row
/// MNIST batch.)
const ROW_BLOCK: usize = 64;

fn write_scaled(out: &mut Array2<f32>, columns: &[Scaled]) {
    let (rows, width) = out.dim();
    let out = out.as_slice_mut().expect("a new matrix is in standard layout");
    let mut scaled = [0f32; ROW_BLOCK];
    for start in (0..rows).step_by(ROW_BLOCK) {
        let end = (start + ROW_BLOCK).min(rows);
        let block = &mut out[start * width..end * width];
        for c in columns {
            scale_run(c, &c.values[start..end], &mut scaled);
            assert!(c.feature < width, "a feature past the matrix");
            for (row, &s) in block.chunks_exact_mut(width).zip(&scaled) {
                row[c.feature] = s;
            }
        }
    }
}

/// `into[i]` is the feature of `values[i]`, in runs of 8 that the compiler
/// turns into vector instructions.
fn scale_run(c: &Scaled, values: &[f64], into: &mut [f32]) {
    let (fill, shift, scale) = (c.fill, c.shift, c.scale);
    let feature = move |v: f64| ((if v.is_nan() { fill } else { v } - shift) * scale) as f32;
    let mut runs = into.chunks_exact_mut(8).zip(values.chunks_exact(8));
    for (s, v) in &mut runs {
        for i in 0..8 {
            s[i] = feature(v[i]);
        }
    }
    let done = values.len() / 8 * 8;
    for (s, &v) in into[done..].iter_mut().zip(&values[done..]) {
        *s = feature(v);
    }
}

/// Features of every row of a shard, as a rows x features matrix.
pub fn transform(pipeline: &FittedPipeline, shard: &Shard) -> Result<Array2<f32>, TransformError> {
    if shard.columns.len() != pipeline.transforms.len() {
        return Err(TransformError::Shape { got: shard.columns.len(), expected: pipeline.transforms.len() });
    }
    let rows = shard.rows();
    let base = pipeline.column_features();
    let crossed: usize = pipeline.crosses.iter().map(super::derived::cross_width).sum();
    let mut out = Array2::<f32>::zeros((rows, base + crossed));
    let mut offset = 0;
    let mut numeric = Vec::new();
    for ((transform, column), name) in pipeline.transforms.iter().zip(&shard.columns).zip(&pipeline.columns) {
        let mismatch = |expected| TransformError::Kind { column: name.clone(), got: kind(column), expected };
        match transform {
            ColumnTransform::Drop => {}
            ColumnTransform::Numeric { fill, offset: shift, scale } => {
                let ShardColumn::Numeric(values) = column else { return Err(mismatch("numeric")) };
                if values.len() != rows {
                    return Err(TransformError::Length { column: name.clone(), got: values.len(), rows });
                }
                numeric.push(Scaled { feature: offset, values, fill: *fill, shift: *shift, scale: *scale });
                offset += 1;
            }
            ColumnTransform::OneHot { categories, unseen } => {
                let ShardColumn::Categorical { values, codes } = column else { return Err(mismatch("categorical")) };
                let index: BTreeMap<&str, usize> =
                    categories.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
                for (r, code) in codes.iter().enumerate() {
                    let Some(value) = values.get(*code as usize) else { continue };
                    match (index.get(value.as_str()), unseen) {
                        (Some(i), _) => out[[r, offset + i]] = 1.0,
                        (None, Unseen::Ignore) => {}
                        (None, Unseen::Error) => {
                            return Err(TransformError::Unseen { column: name.clone(), value: value.clone() });
                        }
                    }
                }
                offset += categories.len();
            }
            ColumnTransform::Binned { fill, edges } => {
                let ShardColumn::Numeric(values) = column else { return Err(mismatch("numeric")) };
                for (r, v) in values.iter().enumerate() {
                    let v = if v.is_nan() { *fill } else { *v };
                    out[[r, offset + super::derived::bin_of(edges, v)]] = 1.0;
                }
                offset += edges.len() + 1;
            }
            ColumnTransform::Ordinal { categories } => {
                let ShardColumn::Categorical { values, codes } = column else { return Err(mismatch("categorical")) };
                let index: BTreeMap<&str, usize> =
                    categories.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
                // Codes are per shard: map each of this shard's values once.
                let position: Vec<f32> =
                    values.iter().map(|v| index.get(v.as_str()).map_or(-1.0, |i| *i as f32)).collect();
                for (r, code) in codes.iter().enumerate() {
                    out[[r, offset]] = position.get(*code as usize).copied().unwrap_or(f32::NAN);
                }
                offset += 1;
            }
            ColumnTransform::Tfidf { spec, idf } => {
                let ShardColumn::Text(values) = column else { return Err(mismatch("text")) };
                let position: BTreeMap<u32, usize> = idf.keys().enumerate().map(|(i, b)| (*b, i)).collect();
                for (r, text) in values.iter().enumerate() {
                    let Some(text) = text else { continue };
                    let mut tf: BTreeMap<u32, f64> = BTreeMap::new();
                    for bucket in super::text::buckets(text, spec.ngram_max, spec.buckets) {
                        if idf.contains_key(&bucket) {
                            *tf.entry(bucket).or_default() += 1.0;
                        }
                    }
                    let weights: Vec<(usize, f64)> = tf
                        .into_iter()
                        .map(|(b, tf)| (position[&b], if spec.sublinear_tf { 1.0 + tf.ln() } else { tf } * idf[&b]))
                        .collect();
                    let norm = weights.iter().map(|(_, w)| w * w).sum::<f64>().sqrt();
                    for (i, w) in weights {
                        out[[r, offset + i]] = if norm > 0.0 { (w / norm) as f32 } else { 0.0 };
                    }
                }
                offset += idf.len();
            }
        }
    }
    write_scaled(&mut out, &numeric);
    if !pipeline.crosses.is_empty() {
        let columns = out.slice(ndarray::s![.., ..base]).to_owned();
        super::derived::apply_crosses(&pipeline.crosses, columns.view(), shard, &mut out, base);
    }
    if let Some(projection) = &pipeline.projection {
        out = super::derived::project(projection, out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mass_protocol::dataset::Split;

    fn scaled(fill: f64, shift: f64, scale: f64) -> ColumnTransform {
        ColumnTransform::Numeric { fill, offset: shift, scale }
    }

    fn pipeline(columns: &[&str], transforms: Vec<ColumnTransform>) -> FittedPipeline {
        FittedPipeline {
            spec: Default::default(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            transforms,
            label: columns.len(),
            classes: Vec::new(),
            features: 0,
            task: mass_protocol::jobs::Task::Regression,
            target: None,
            crosses: Vec::new(),
            projection: None,
        }
    }

    /// Numeric columns around a one-hot one, over more rows than one block
    /// and not a multiple of it, with missing values: every cell is the
    /// formula's, wherever its feature lands.
    #[test]
    fn numeric_columns_written_in_row_blocks_give_every_cell_its_value() {
        let rows = 2 * ROW_BLOCK + 7;
        let value = |c: usize, r: usize| if (r + c).is_multiple_of(11) { f64::NAN } else { (r * 3 + c) as f64 };
        let pipeline = pipeline(
            &["a", "colour", "b"],
            vec![
                scaled(1.5, 2.0, 0.5),
                ColumnTransform::OneHot { categories: vec!["red".into(), "blue".into()], unseen: Unseen::Ignore },
                scaled(-1.0, 0.0, 2.0),
            ],
        );
        let shard = Shard {
            first_row: 0,
            columns: vec![
                ShardColumn::Numeric((0..rows).map(|r| value(0, r)).collect()),
                ShardColumn::Categorical {
                    values: vec!["blue".into(), "red".into()],
                    codes: (0..rows as u32).map(|r| r % 2).collect(),
                },
                ShardColumn::Numeric((0..rows).map(|r| value(2, r)).collect()),
            ],
            splits: vec![Split::Train; rows],
        };
        let out = transform(&pipeline, &shard).unwrap();
        assert_eq!(out.dim(), (rows, 4));
        for r in 0..rows {
            let a = if value(0, r).is_nan() { 1.5 } else { value(0, r) };
            let b = if value(2, r).is_nan() { -1.0 } else { value(2, r) };
            let (red, blue) = if r % 2 == 1 { (1.0, 0.0) } else { (0.0, 1.0) };
            assert_eq!(out.row(r).to_vec(), vec![((a - 2.0) * 0.5) as f32, red, blue, (b * 2.0) as f32], "row {r}");
        }
    }

    #[test]
    fn a_numeric_column_shorter_than_the_rows_is_refused_by_name() {
        let pipeline = pipeline(&["a"], vec![scaled(0.0, 0.0, 1.0)]);
        let shard =
            Shard { first_row: 0, columns: vec![ShardColumn::Numeric(vec![1.0])], splits: vec![Split::Test; 2] };
        assert_eq!(transform(&pipeline, &shard).unwrap_err().to_string(), "column 'a' has 1 values for 2 rows");
    }
}
