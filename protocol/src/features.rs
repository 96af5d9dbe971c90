//! Feature pipelines: what a user asks for, the per-shard statistics nodes
//! exchange to fit it where the data lives, and the fitted result that is
//! stored with a model and applied identically at training and prediction.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::jobs::Task;

/// How missing numeric values are filled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impute {
    Mean,
    Median,
    MostFrequent,
    Constant(f64),
    /// Left missing (NaN), for models that handle missing values themselves
    /// (trees learn which way they go).
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    None,
    Standard,
    MinMax,
}

impl Scale {
    /// `standard`, `min-max` or `none`.
    pub fn parse(text: &str) -> Result<Scale, String> {
        match text {
            "standard" => Ok(Scale::Standard),
            "min-max" | "minmax" | "min_max" => Ok(Scale::MinMax),
            "none" => Ok(Scale::None),
            _ => Err(format!("scale {text}: expected standard, min-max or none")),
        }
    }
}

/// How categorical columns become features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encode {
    /// One indicator per category.
    OneHot,
    /// One feature: the category's index (-1 for unseen, NaN for missing),
    /// for trees, which split on categories natively.
    Ordinal,
}

/// What one-hot encoding does with a category it never saw when fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unseen {
    /// All of the column's indicators are zero.
    Ignore,
    /// The row is refused.
    Error,
}

/// Hashed TF-IDF of text columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextSpec {
    /// Hash buckets (features) per text column.
    pub buckets: u32,
    /// Word n-grams from 1 up to this.
    pub ngram_max: u8,
    /// Terms (buckets) in fewer documents than this are dropped.
    pub min_df: u64,
    /// 1 + ln(tf) instead of tf.
    pub sublinear_tf: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    All,
    /// Drop numeric features whose variance (after imputation) is at most this.
    VarianceThreshold(f64),
    /// Keep the k numeric features with the highest mutual information with the label.
    MutualInfo {
        k: usize,
    },
}

/// What to do with each kind of column. Numeric columns are imputed, then
/// selected, then scaled; categorical ones one-hot encoded; text ones hashed
/// TF-IDF. The label is never a feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSpec {
    pub impute: Impute,
    pub scale: Scale,
    pub unseen: Unseen,
    pub text: TextSpec,
    pub select: Select,
    pub encode: Encode,
    /// Classes (the label's values) or a number (the label standardized
    /// for training, and back for answers).
    pub task: Task,
    /// Summarize numeric columns with quantile sketches (tree models bin
    /// features from them).
    pub quantiles: bool,
    /// Replace each numeric column by indicators of this many quantile bins
    /// (edges from sketches merged across shards).
    pub bins: Option<usize>,
    /// Crossed column pairs: two numeric columns give their product (after
    /// scaling), two categorical ones the hashed pair of their values.
    pub cross: Vec<(String, String)>,
    /// Hash buckets of each categorical cross.
    pub cross_buckets: u32,
    /// Replace the numeric features by this many principal components (of
    /// the covariance merged across shards).
    pub pca: Option<usize>,
}

impl PipelineSpec {
    /// Whether fitting needs the numeric columns' quantile sketches.
    pub fn needs_quantiles(&self) -> bool {
        self.quantiles || self.bins.is_some()
    }
}

impl Default for PipelineSpec {
    fn default() -> Self {
        Self {
            impute: Impute::Mean,
            scale: Scale::Standard,
            unseen: Unseen::Ignore,
            text: TextSpec { buckets: 1 << 14, ngram_max: 1, min_df: 2, sublinear_tf: true },
            select: Select::All,
            encode: Encode::OneHot,
            task: Task::Classification,
            quantiles: false,
            bins: None,
            cross: vec![],
            cross_buckets: 1 << 10,
            pca: None,
        }
    }
}

/// Mergeable statistics of one column over some rows. Merging is exact for
/// counts and within rounding for sums, whatever the order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ColumnSummary {
    pub present: u64,
    pub missing: u64,
    pub sum: f64,
    pub sum_sq: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Numeric columns: exact count of each present value, keyed by
    /// [`order_key`] (kept when the median or most frequent value is needed).
    pub numbers: BTreeMap<u64, u64>,
    /// Categorical columns and the label: count of each value.
    pub categories: BTreeMap<String, u64>,
    /// Numeric columns: count of each (value, label) pair, for mutual information.
    pub joint: BTreeMap<u64, BTreeMap<String, u64>>,
    /// Text columns: documents containing each hash bucket.
    pub document_frequency: BTreeMap<u32, u64>,
    pub documents: u64,
    /// More distinct values than could be counted exactly.
    pub overflow: bool,
    /// Numeric columns, when the spec asks for quantiles (tree models,
    /// quantile binning): a mergeable summary of the present values.
    pub sketch: QuantileSketch,
}

/// A mergeable summary of a column's values for quantiles: sorted distinct
/// values, each with the count of values it stands for. Exact while the
/// column has at most its capacity of distinct values; past that,
/// neighbouring values are folded together (into the larger one) and ranks
/// are off by at most a fraction of the total per fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct QuantileSketch {
    pub entries: Vec<(f64, u64)>,
    /// Values summarized (the sum of the entries' counts).
    pub total: u64,
}

/// Statistics of every column of one shard (or of merged shards).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DataSummary {
    pub rows: u64,
    pub columns: Vec<ColumnSummary>,
}

/// How one input column becomes output features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ColumnTransform {
    /// Dropped by selection (or the label).
    Drop,
    Numeric {
        fill: f64,
        offset: f64,
        scale: f64,
    },
    OneHot {
        categories: Vec<String>,
        unseen: Unseen,
    },
    Tfidf {
        spec: TextSpec,
        idf: BTreeMap<u32, f64>,
    },
    /// The category's index in `categories`; -1 when unseen, NaN when missing.
    Ordinal {
        categories: Vec<String>,
    },
    /// Indicators of the quantile bin the (filled) value falls in: bin `i`
    /// holds values up to `edges[i]`, the last bin the rest.
    Binned {
        fill: f64,
        edges: Vec<f64>,
    },
}

/// A feature made of two columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cross {
    /// The product of two numeric columns' features (`a`, `b`: feature
    /// indices of the column transforms' output).
    Product { a: usize, b: usize },
    /// Indicators of `hash(value of a, value of b) % buckets` for two
    /// categorical columns (schema indices).
    Hashed { a: usize, b: usize, buckets: u32 },
}

/// Sums over some rows of some features: what a covariance (and so
/// principal components) is fitted from. Merging adds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Moments {
    pub rows: u64,
    pub sum: Vec<f64>,
    /// Sums of products, row-major `d x d`.
    pub outer: Vec<f64>,
}

/// Principal components: `(x - mean) . component` for each component, over
/// the features `inputs` of the column transforms' output (which they replace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    pub inputs: Vec<usize>,
    pub mean: Vec<f64>,
    /// Row-major, one row of `inputs.len()` weights per component.
    pub components: Vec<Vec<f64>>,
    /// Variance each component explains.
    pub explained: Vec<f64>,
}

/// How a regression label was standardized for training: answers are
/// `value * std + mean`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetScale {
    pub mean: f64,
    pub std: f64,
    /// Smallest and largest training label, standardized.
    pub min: f64,
    pub max: f64,
}

impl TargetScale {
    pub fn scale(&self, value: f64) -> f64 {
        (value - self.mean) / self.std
    }

    pub fn unscale(&self, value: f64) -> f64 {
        value * self.std + self.mean
    }
}

/// A fitted pipeline: one transform per input column, in schema order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedPipeline {
    pub spec: PipelineSpec,
    pub columns: Vec<String>,
    pub transforms: Vec<ColumnTransform>,
    pub label: usize,
    /// Label values in class order (classification), from the training rows.
    pub classes: Vec<String>,
    pub features: usize,
    pub task: Task,
    /// Regression: how the label was standardized.
    pub target: Option<TargetScale>,
    /// Crossed features, after the column transforms' output.
    pub crosses: Vec<Cross>,
    /// Principal components replacing numeric features, at the end.
    pub projection: Option<Projection>,
}

impl FittedPipeline {
    /// Indices of the output features that hold category indices (ordinal
    /// encoding), which trees split on as categories.
    pub fn categorical_features(&self) -> Vec<usize> {
        let mut at = 0;
        let mut out = Vec::new();
        for t in &self.transforms {
            match t {
                ColumnTransform::Drop => {}
                ColumnTransform::Numeric { .. } => at += 1,
                ColumnTransform::OneHot { categories, .. } => at += categories.len(),
                ColumnTransform::Tfidf { idf, .. } => at += idf.len(),
                ColumnTransform::Ordinal { .. } => {
                    out.push(at);
                    at += 1;
                }
                ColumnTransform::Binned { edges, .. } => at += edges.len() + 1,
            }
        }
        out
    }

    /// Width of the column transforms' output (before crosses and components).
    /// Checks what transforming rows indexes by and allocates from, so a
    /// pipeline however crafted (a peer can store any bytes) can neither
    /// panic a node nor make it allocate an unbounded matrix.
    pub fn validate(&self) -> Result<(), InvalidPipeline> {
        let columns = self.columns.len();
        if self.transforms.len() != columns {
            return Err(InvalidPipeline::Columns { columns, transforms: self.transforms.len() });
        }
        if self.label >= columns {
            return Err(InvalidPipeline::Label { label: self.label, columns });
        }
        if self.transforms.iter().any(|t| matches!(t, ColumnTransform::Tfidf { spec, .. } if spec.buckets == 0)) {
            return Err(InvalidPipeline::TextBuckets);
        }
        // Summed in u64 so that no claimed width overflows.
        let base = self.transforms.iter().fold(0u64, |sum, t| {
            sum.saturating_add(match t {
                ColumnTransform::Drop => 0,
                ColumnTransform::Numeric { .. } | ColumnTransform::Ordinal { .. } => 1,
                ColumnTransform::OneHot { categories, .. } => categories.len() as u64,
                ColumnTransform::Tfidf { idf, .. } => idf.len() as u64,
                ColumnTransform::Binned { edges, .. } => edges.len() as u64 + 1,
            })
        });
        let mut width = base;
        for cross in &self.crosses {
            let (a, b, limit, extra) = match *cross {
                Cross::Product { a, b } => (a, b, base, 1),
                Cross::Hashed { a, b, buckets } => {
                    if buckets == 0 {
                        return Err(InvalidPipeline::NoBuckets);
                    }
                    (a, b, columns as u64, u64::from(buckets))
                }
            };
            if let Some(index) = [a, b].into_iter().find(|i| *i as u64 >= limit) {
                return Err(InvalidPipeline::Cross { index, limit: limit as usize });
            }
            width = width.saturating_add(extra);
        }
        if width > MAX_FEATURES as u64 {
            return Err(InvalidPipeline::TooWide { width });
        }
        let mut made = width as usize;
        if let Some(p) = &self.projection {
            let inputs: std::collections::BTreeSet<usize> = p.inputs.iter().copied().collect();
            let shaped = inputs.len() == p.inputs.len()
                && p.inputs.iter().all(|i| *i < made)
                && p.mean.len() == p.inputs.len()
                && p.components.len() <= MAX_FEATURES
                && p.components.iter().all(|c| c.len() == p.inputs.len());
            if !shaped {
                return Err(InvalidPipeline::Projection);
            }
            made = made - inputs.len() + p.components.len();
        }
        if made != self.features {
            return Err(InvalidPipeline::Features { claimed: self.features, made });
        }
        Ok(())
    }

    pub fn column_features(&self) -> usize {
        self.transforms
            .iter()
            .map(|t| match t {
                ColumnTransform::Drop => 0,
                ColumnTransform::Numeric { .. } | ColumnTransform::Ordinal { .. } => 1,
                ColumnTransform::OneHot { categories, .. } => categories.len(),
                ColumnTransform::Tfidf { idf, .. } => idf.len(),
                ColumnTransform::Binned { edges, .. } => edges.len() + 1,
            })
            .sum()
    }
}

/// The most features a pipeline may make (before any projection): a
/// million columns of f32 is 4 MB per row already.
pub const MAX_FEATURES: usize = 1 << 20;

/// Why a stored pipeline cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPipeline {
    #[error("the pipeline has {transforms} transforms for {columns} columns")]
    Columns { columns: usize, transforms: usize },
    #[error("the pipeline's label {label} is not one of its {columns} columns")]
    Label { label: usize, columns: usize },
    #[error("a text column hashes its words into zero buckets")]
    TextBuckets,
    #[error("a hashed cross has zero buckets")]
    NoBuckets,
    #[error("a cross names index {index}, beyond the {limit} it crosses from")]
    Cross { index: usize, limit: usize },
    #[error("the pipeline would make {width} features, more than the {MAX_FEATURES} allowed")]
    TooWide { width: u64 },
    #[error("the projection's inputs, means and components do not fit together or the features")]
    Projection,
    #[error("the pipeline says it makes {claimed} features, but its transforms make {made}")]
    Features { claimed: usize, made: usize },
}

/// Maps an f64 to a u64 whose unsigned order is the float's order, so exact
/// value counts can live in an ordered map (and in JSON).
pub fn order_key(value: f64) -> u64 {
    let bits = value.to_bits();
    if bits >> 63 == 1 { !bits } else { bits | (1 << 63) }
}

/// The inverse of [`order_key`].
pub fn from_order_key(key: u64) -> f64 {
    if key >> 63 == 1 { f64::from_bits(key & !(1 << 63)) } else { f64::from_bits(!key) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_keys_sort_like_floats_and_round_trip() {
        let values = [-1e300, -2.5, -0.0, 0.0, 1e-9, 3.0, 7.5e10];
        let keys: Vec<u64> = values.iter().map(|v| order_key(*v)).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");
        for v in values {
            assert_eq!(from_order_key(order_key(v)).to_bits(), v.to_bits());
        }
    }

    /// Two numeric columns and a categorical label: two features.
    fn pipeline() -> FittedPipeline {
        let numeric = ColumnTransform::Numeric { fill: 0.0, offset: 0.0, scale: 1.0 };
        FittedPipeline {
            spec: PipelineSpec::default(),
            columns: vec!["x".into(), "y".into(), "label".into()],
            transforms: vec![numeric.clone(), numeric, ColumnTransform::Drop],
            label: 2,
            classes: vec!["a".into(), "b".into()],
            features: 2,
            task: Task::Classification,
            target: None,
            crosses: vec![],
            projection: None,
        }
    }

    /// Fuzz regressions: a stored pipeline whose label, crosses or widths
    /// do not fit its columns panicked its readers, or (a hashed cross of
    /// 2^32 buckets) asked for a matrix no node can hold.
    #[test]
    fn a_pipeline_that_does_not_fit_its_columns_is_refused() {
        assert_eq!(pipeline().validate(), Ok(()));
        let label = FittedPipeline { label: 3, ..pipeline() };
        assert_eq!(label.validate(), Err(InvalidPipeline::Label { label: 3, columns: 3 }));
        let short = FittedPipeline { transforms: vec![ColumnTransform::Drop], ..pipeline() };
        assert_eq!(short.validate(), Err(InvalidPipeline::Columns { columns: 3, transforms: 1 }));
        let cross = FittedPipeline { crosses: vec![Cross::Product { a: 0, b: 2 }], features: 3, ..pipeline() };
        assert_eq!(cross.validate(), Err(InvalidPipeline::Cross { index: 2, limit: 2 }));
        let wide = FittedPipeline { crosses: vec![Cross::Hashed { a: 0, b: 1, buckets: u32::MAX }], ..pipeline() };
        assert!(matches!(wide.validate(), Err(InvalidPipeline::TooWide { .. })));
        let claimed = FittedPipeline { features: 5, ..pipeline() };
        assert_eq!(claimed.validate(), Err(InvalidPipeline::Features { claimed: 5, made: 2 }));
        let projection = Projection { inputs: vec![0, 7], mean: vec![0.0; 2], components: vec![], explained: vec![] };
        let projected = FittedPipeline { projection: Some(projection), ..pipeline() };
        assert_eq!(projected.validate(), Err(InvalidPipeline::Projection));
    }
}
