//! Feature bins: every feature's values mapped to at most 255 value bins
//! (bin 0 is "missing"), so histograms are small and rows are one byte per
//! feature. Numeric bins come from quantile sketches merged across shards;
//! categorical features get a bin per frequent category.

use mass_protocol::features::{ColumnTransform, DataSummary, FittedPipeline, QuantileSketch};
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

/// Value bins per feature at most; bin 0 (missing) comes on top.
pub const MAX_BINS: usize = 255;
/// The bin of a missing value.
pub const MISSING: u8 = 0;

/// How one feature's values become bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FeatureBins {
    /// Value bin `b` (from 1) holds the values up to `upper[b - 1]`; the
    /// last bound is infinite.
    Numeric { upper: Vec<f32> },
    /// Values are category indices (as a pipeline's ordinal encoding writes
    /// them); category `i` falls in bin `bin_of[i]`. Rare categories, and
    /// categories never seen in training (any other index), fall in `other`.
    Categorical { bin_of: Vec<u8>, other: u8 },
}

impl FeatureBins {
    /// Bins including the missing bin.
    pub fn len(&self) -> usize {
        match self {
            FeatureBins::Numeric { upper } => upper.len() + 1,
            FeatureBins::Categorical { other, .. } => usize::from(*other) + 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }

    pub fn is_categorical(&self) -> bool {
        matches!(self, FeatureBins::Categorical { .. })
    }

    /// The bin of one value; NaN is missing.
    pub fn bin(&self, value: f32) -> u8 {
        if value.is_nan() {
            return MISSING;
        }
        match self {
            FeatureBins::Numeric { upper } => {
                let at = upper.partition_point(|u| *u < value).min(upper.len().saturating_sub(1));
                (at + 1) as u8
            }
            FeatureBins::Categorical { bin_of, other } => {
                if value >= 0.0 && value.fract() == 0.0 {
                    bin_of.get(value as usize).copied().unwrap_or(*other)
                } else {
                    *other
                }
            }
        }
    }
}

/// Numeric bins from a sketch of the feature's training values: a bin per
/// distinct value when there are few, else bins of about equal counts with
/// heavy values in bins of their own. Bounds sit halfway between values.
pub fn numeric_bins(sketch: &QuantileSketch, max_bins: usize) -> FeatureBins {
    let entries = &sketch.entries;
    let max_bins = max_bins.clamp(1, MAX_BINS);
    let mut upper = Vec::new();
    if entries.len() <= max_bins {
        for pair in entries.windows(2) {
            upper.push(midpoint(pair[0].0, pair[1].0));
        }
    } else {
        let mut mass_left: u64 = sketch.entries.iter().map(|(_, n)| n).sum();
        let mut bins_left = max_bins as u64;
        let mut run = 0u64;
        for i in 0..entries.len() - 1 {
            run += entries[i].1;
            let target = mass_left.div_ceil(bins_left);
            let next_heavy = entries[i + 1].1 >= target;
            if bins_left > 1 && (run >= target || next_heavy) {
                upper.push(midpoint(entries[i].0, entries[i + 1].0));
                mass_left -= run;
                bins_left -= 1;
                run = 0;
            }
        }
    }
    // Rounding to f32 can merge bounds of very close values.
    upper.dedup();
    upper.push(f32::INFINITY);
    FeatureBins::Numeric { upper }
}

fn midpoint(a: f64, b: f64) -> f32 {
    let mid = (a / 2.0 + b / 2.0) as f32;
    // A bound must keep `a` at or below it.
    if f64::from(mid) < a { (a as f32).next_up() } else { mid }
}

/// Categorical bins: the most frequent categories (by training count, ties
/// to the lower index) get a bin each, up to `max_bins - 1`; the rest share
/// the last bin with categories never seen.
pub fn categorical_bins(counts: &[u64], max_bins: usize) -> FeatureBins {
    let own = max_bins.clamp(2, MAX_BINS) - 1;
    let mut order: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] > 0).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    order.truncate(own);
    let other = (order.len() + 1) as u8;
    let mut bin_of = vec![other; counts.len()];
    for (rank, &category) in order.iter().enumerate() {
        bin_of[category] = (rank + 1) as u8;
    }
    FeatureBins::Categorical { bin_of, other }
}

/// Bins for every feature a fitted pipeline outputs, from the merged
/// statistics of the training rows (sketches of numeric columns, counts of
/// categories). Text features are refused: trees split on values, and
/// hashed TF-IDF buckets are better left to linear models.
pub fn for_pipeline(
    pipeline: &FittedPipeline,
    summary: &DataSummary,
    max_bins: usize,
) -> Result<Vec<FeatureBins>, String> {
    // Bins map the column transforms' output only; a job record asking
    // for trees on crossed or projected features (submission refuses it,
    // a crafted record need not) would get fewer bins than features.
    if !pipeline.crosses.is_empty() || pipeline.projection.is_some() {
        return Err("tree models split on the columns themselves; crosses and principal components are for \
                    linear and mlp models"
            .into());
    }
    let mut bins = Vec::with_capacity(pipeline.features);
    for (i, transform) in pipeline.transforms.iter().enumerate() {
        let column = summary.columns.get(i).ok_or("the statistics have fewer columns than the pipeline")?;
        match transform {
            ColumnTransform::Drop => {}
            ColumnTransform::Numeric { .. } => bins.push(numeric_bins(&column.sketch, max_bins)),
            ColumnTransform::Ordinal { categories } => {
                let counts: Vec<u64> =
                    categories.iter().map(|c| column.categories.get(c).copied().unwrap_or(0)).collect();
                bins.push(categorical_bins(&counts, max_bins));
            }
            ColumnTransform::OneHot { categories, .. } => {
                bins.extend(categories.iter().map(|_| FeatureBins::Numeric { upper: vec![0.5, f32::INFINITY] }));
            }
            ColumnTransform::Binned { edges, .. } => {
                bins.extend((0..=edges.len()).map(|_| FeatureBins::Numeric { upper: vec![0.5, f32::INFINITY] }));
            }
            ColumnTransform::Tfidf { .. } => {
                return Err(format!(
                    "column '{}' is text: tree models take numeric and categorical columns only; drop it or use a linear or mlp model",
                    pipeline.columns[i]
                ));
            }
        }
    }
    Ok(bins)
}

/// Rows binned, feature by feature (column-major: a histogram pass reads
/// one feature's bytes in row order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BinnedRows {
    pub rows: usize,
    pub columns: Vec<Vec<u8>>,
}

impl BinnedRows {
    /// Bins every value of `x` (rows x features).
    pub fn new(x: ArrayView2<'_, f32>, bins: &[FeatureBins]) -> Self {
        assert_eq!(x.ncols(), bins.len(), "one bin map per feature");
        let columns = bins.iter().enumerate().map(|(f, b)| x.column(f).iter().map(|v| b.bin(*v)).collect()).collect();
        Self { rows: x.nrows(), columns }
    }

    /// The rows of `parts`, one after the other.
    pub fn concat(parts: &[BinnedRows]) -> Self {
        let features = parts.first().map_or(0, |p| p.columns.len());
        let columns =
            (0..features).map(|f| parts.iter().flat_map(|p| p.columns[f].iter().copied()).collect()).collect();
        Self { rows: parts.iter().map(|p| p.rows).sum(), columns }
    }

    pub fn features(&self) -> usize {
        self.columns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::sketch::sketch;

    /// Fuzz regression: a crafted job record asking for trees on crossed
    /// features got a setup with fewer bins than features, which every
    /// worker then refused; it is now refused where the setup is made.
    #[test]
    fn crossed_or_projected_features_get_no_bins() {
        use mass_protocol::{features::*, jobs::Task};
        let numeric = ColumnTransform::Numeric { fill: 0.0, offset: 0.0, scale: 1.0 };
        let pipeline = FittedPipeline {
            spec: PipelineSpec::default(),
            columns: vec!["x".into(), "y".into(), "label".into()],
            transforms: vec![numeric.clone(), numeric, ColumnTransform::Drop],
            label: 2,
            classes: vec![],
            features: 3,
            task: Task::Regression,
            target: None,
            crosses: vec![Cross::Product { a: 0, b: 1 }],
            projection: None,
        };
        let summary = DataSummary { rows: 0, columns: vec![ColumnSummary::default(); 3] };
        let err = for_pipeline(&pipeline, &summary, 16).unwrap_err();
        assert!(err.contains("crosses and principal components"), "{err}");
        let plain = FittedPipeline { crosses: vec![], features: 2, ..pipeline };
        assert_eq!(for_pipeline(&plain, &summary, 16).map(|b| b.len()), Ok(2));
    }

    #[test]
    fn few_values_get_a_bin_each_and_missing_gets_zero() {
        let bins = numeric_bins(&sketch([1.0, 2.0, 2.0, 5.0].into_iter(), 64), 255);
        assert_eq!(bins, FeatureBins::Numeric { upper: vec![1.5, 3.5, f32::INFINITY] });
        assert_eq!([0.0, 1.0, 1.6, 2.0, 4.0, 5.0, 99.0].map(|v| bins.bin(v)), [1, 1, 2, 2, 3, 3, 3]);
        assert_eq!(bins.bin(f32::NAN), MISSING);
        assert_eq!(bins.len(), 4);
    }

    #[test]
    fn many_values_get_bins_of_about_equal_counts() {
        let values: Vec<f64> = (0..10_000).map(|i| i as f64).collect();
        let bins = numeric_bins(&sketch(values.iter().copied(), 4096), 100);
        assert!(bins.len() <= 101, "{}", bins.len());
        let mut counts = vec![0usize; bins.len()];
        for v in &values {
            counts[usize::from(bins.bin(*v as f32))] += 1;
        }
        assert_eq!(counts[0], 0);
        assert!(counts[1..].iter().all(|&c| (50..=200).contains(&c)), "{counts:?}");
    }

    #[test]
    fn a_heavy_value_stands_alone() {
        let mut values = vec![0.0; 9_000];
        values.extend((1..1_000).map(f64::from));
        let bins = numeric_bins(&sketch(values.into_iter(), 4096), 16);
        let zero = bins.bin(0.0);
        assert_ne!(zero, bins.bin(1.0));
        assert!(bins.len() <= 17);
    }

    #[test]
    fn rare_and_unseen_categories_share_the_other_bin() {
        let bins = categorical_bins(&[5, 100, 1, 0, 50], 3);
        // Two own bins: categories 1 (most frequent) and 4.
        assert_eq!([1.0, 4.0, 0.0, 2.0, 3.0, 17.0, -1.0].map(|v| bins.bin(v)), [1, 2, 3, 3, 3, 3, 3]);
        assert_eq!(bins.bin(f32::NAN), MISSING);
        assert_eq!(bins.len(), 4);
    }
}
