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
}

fn kind(column: &ShardColumn) -> &'static str {
    match column {
        ShardColumn::Numeric(_) => "numeric",
        ShardColumn::Categorical { .. } => "categorical",
        ShardColumn::Text(_) => "text",
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
    for ((transform, column), name) in pipeline.transforms.iter().zip(&shard.columns).zip(&pipeline.columns) {
        let mismatch = |expected| TransformError::Kind { column: name.clone(), got: kind(column), expected };
        match transform {
            ColumnTransform::Drop => {}
            ColumnTransform::Numeric { fill, offset: shift, scale } => {
                let ShardColumn::Numeric(values) = column else { return Err(mismatch("numeric")) };
                for (o, v) in out.column_mut(offset).iter_mut().zip(values) {
                    let v = if v.is_nan() { *fill } else { *v };
                    *o = ((v - shift) * scale) as f32;
                }
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
    if !pipeline.crosses.is_empty() {
        let columns = out.slice(ndarray::s![.., ..base]).to_owned();
        super::derived::apply_crosses(&pipeline.crosses, columns.view(), shard, &mut out, base);
    }
    if let Some(projection) = &pipeline.projection {
        out = super::derived::project(projection, out);
    }
    Ok(out)
}
