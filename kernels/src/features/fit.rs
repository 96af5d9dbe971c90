//! Fitting a pipeline from merged statistics.

use std::collections::BTreeMap;

use mass_protocol::{
    dataset::{ColumnKind, Schema},
    features::{
        ColumnSummary, ColumnTransform, DataSummary, Encode, FittedPipeline, Impute, Moments, PipelineSpec, Scale,
        Select, TargetScale, Unseen, from_order_key,
    },
    jobs::Task,
};

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum FitError {
    #[error("column '{0}': no training values to fit from")]
    NoValues(String),
    #[error("column '{column}': more than {limit} distinct values; the {what} cannot be computed exactly")]
    TooManyValues { column: String, limit: usize, what: &'static str },
    #[error("the statistics have {got} columns but the schema has {expected}")]
    Shape { got: usize, expected: usize },
    #[error("no training rows")]
    NoRows,
    #[error("mutual-information selection scores columns against classes; a regression label has none")]
    MutualInfoNeedsClasses,
    #[error("label '{0}' has no numeric training values to regress on")]
    NoTarget(String),
    #[error("label '{0}' has the same value in every training row: nothing to regress")]
    ConstantTarget(String),
    #[error("cross: {0}")]
    Cross(String),
    #[error("pca: {0}")]
    Pca(String),
    #[error("bins: {0} bins asked; quantile binning takes 2 to 256")]
    Bins(usize),
}

/// The fill value for missing numbers.
fn fill(name: &str, s: &ColumnSummary, impute: Impute) -> Result<f64, FitError> {
    match impute {
        Impute::Constant(value) => return Ok(value),
        Impute::Keep => return Ok(f64::NAN),
        _ => {}
    }
    if s.present == 0 {
        return Err(FitError::NoValues(name.to_owned()));
    }
    let exact = |what| {
        if s.overflow {
            Err(FitError::TooManyValues { column: name.to_owned(), limit: super::summarize::MAX_DISTINCT, what })
        } else {
            Ok(())
        }
    };
    Ok(match impute {
        Impute::Mean => s.sum / s.present as f64,
        Impute::Median => {
            exact("median")?;
            // The mean of the two middle values for an even count, as numpy does.
            let lower = nth(&s.numbers, (s.present - 1) / 2);
            let upper = nth(&s.numbers, s.present / 2);
            (lower + upper) / 2.0
        }
        Impute::MostFrequent => {
            exact("most frequent value")?;
            // Ties go to the smallest value, as scikit-learn does.
            let (key, _) =
                s.numbers.iter().fold((0u64, 0u64), |best, (k, n)| if *n > best.1 { (*k, *n) } else { best });
            from_order_key(key)
        }
        Impute::Constant(_) | Impute::Keep => unreachable!("handled above"),
    })
}

/// The value at 0-based position `index` of the sorted present values.
fn nth(counts: &BTreeMap<u64, u64>, index: u64) -> f64 {
    let mut seen = 0;
    for (key, n) in counts {
        seen += n;
        if seen > index {
            return from_order_key(*key);
        }
    }
    f64::NAN
}

/// Mean and population variance after missing values are filled (of the
/// present values when they are kept missing).
fn moments(s: &ColumnSummary, fill: f64) -> (f64, f64) {
    if fill.is_nan() {
        let n = s.present.max(1) as f64;
        let mean = s.sum / n;
        return (mean, (s.sum_sq / n - mean * mean).max(0.0));
    }
    let n = (s.present + s.missing) as f64;
    let sum = s.sum + s.missing as f64 * fill;
    let sum_sq = s.sum_sq + s.missing as f64 * fill * fill;
    let mean = sum / n;
    (mean, (sum_sq / n - mean * mean).max(0.0))
}

/// Mutual information (nats) between a column's present values and the label.
fn mutual_information(s: &ColumnSummary) -> f64 {
    let total: u64 = s.joint.values().flat_map(|m| m.values()).sum();
    if total == 0 {
        return 0.0;
    }
    let n = total as f64;
    let mut by_label: BTreeMap<&str, u64> = BTreeMap::new();
    for m in s.joint.values() {
        for (label, c) in m {
            *by_label.entry(label).or_default() += c;
        }
    }
    let mut mi = 0.0;
    for m in s.joint.values() {
        let by_value: u64 = m.values().sum();
        for (label, c) in m {
            let p = *c as f64 / n;
            mi += p * (p / ((by_value as f64 / n) * (by_label[label.as_str()] as f64 / n))).ln();
        }
    }
    mi.max(0.0)
}

/// Most indicators one-hot encoding makes for one column. A column of
/// thousands of values (airports, zip codes) would otherwise make the
/// network's input, and its first layer, thousands wide for values seen a
/// few times each; the rarer values encode as unseen ones do (all zeros).
pub const MAX_ONE_HOT: usize = 128;

/// The categories a one-hot column keeps: all of them when unseen values
/// are refused (a rare training value must not be refused later), else the
/// [`MAX_ONE_HOT`] most frequent (ties by name), in name order.
fn one_hot_categories(counts: &BTreeMap<String, u64>, unseen: Unseen) -> Vec<String> {
    if unseen == Unseen::Error || counts.len() <= MAX_ONE_HOT {
        return counts.keys().cloned().collect();
    }
    let mut by_count: Vec<(&String, &u64)> = counts.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let mut kept: Vec<String> = by_count.into_iter().take(MAX_ONE_HOT).map(|(c, _)| c.clone()).collect();
    kept.sort();
    kept
}

/// Fits `spec` to the merged statistics of a dataset's training rows.
pub fn fit(spec: &PipelineSpec, schema: &Schema, summary: &DataSummary) -> Result<FittedPipeline, FitError> {
    if summary.columns.len() != schema.columns.len() {
        return Err(FitError::Shape { got: summary.columns.len(), expected: schema.columns.len() });
    }
    if summary.rows == 0 {
        return Err(FitError::NoRows);
    }
    if let Some(bins) = spec.bins
        && !(2..=256).contains(&bins)
    {
        return Err(FitError::Bins(bins));
    }
    let mut keep_numeric: Option<Vec<usize>> = None;
    if let Select::MutualInfo { k } = spec.select {
        if spec.task == Task::Regression {
            return Err(FitError::MutualInfoNeedsClasses);
        }
        let mut scored: Vec<(f64, usize)> = schema
            .columns
            .iter()
            .enumerate()
            .filter(|(i, c)| *i != schema.label && c.kind == ColumnKind::Numeric)
            .map(|(i, c)| {
                if summary.columns[i].overflow {
                    Err(FitError::TooManyValues {
                        column: c.name.clone(),
                        limit: super::summarize::MAX_DISTINCT,
                        what: "mutual information",
                    })
                } else {
                    Ok((mutual_information(&summary.columns[i]), i))
                }
            })
            .collect::<Result<_, _>>()?;
        // Highest information first; ties keep the earlier column.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        keep_numeric = Some(scored.into_iter().take(k).map(|(_, i)| i).collect());
    }

    let mut transforms = Vec::with_capacity(schema.columns.len());
    let mut features = 0;
    for (i, column) in schema.columns.iter().enumerate() {
        let s = &summary.columns[i];
        if i == schema.label {
            transforms.push(ColumnTransform::Drop);
            continue;
        }
        let transform = match column.kind {
            ColumnKind::Numeric => {
                let fill = fill(&column.name, s, spec.impute)?;
                let (mean, variance) = moments(s, fill);
                let selected = match (&spec.select, &keep_numeric) {
                    (Select::VarianceThreshold(threshold), _) => variance > *threshold,
                    (_, Some(keep)) => keep.contains(&i),
                    _ => true,
                };
                if !selected {
                    ColumnTransform::Drop
                } else if let Some(bins) = spec.bins {
                    let edges = super::derived::bin_edges(&s.sketch, bins);
                    features += edges.len() + 1;
                    ColumnTransform::Binned { fill, edges }
                } else {
                    let (offset, scale) = match spec.scale {
                        Scale::None => (0.0, 1.0),
                        Scale::Standard => {
                            let std = variance.sqrt();
                            (mean, if std > 0.0 { 1.0 / std } else { 1.0 })
                        }
                        Scale::MinMax => {
                            let (mut lo, mut hi) = (s.min.unwrap_or(fill), s.max.unwrap_or(fill));
                            if s.missing > 0 {
                                lo = lo.min(fill);
                                hi = hi.max(fill);
                            }
                            (lo, if hi > lo { 1.0 / (hi - lo) } else { 1.0 })
                        }
                    };
                    features += 1;
                    ColumnTransform::Numeric { fill, offset, scale }
                }
            }
            ColumnKind::Categorical => match spec.encode {
                Encode::OneHot => {
                    let categories = one_hot_categories(&s.categories, spec.unseen);
                    features += categories.len();
                    ColumnTransform::OneHot { categories, unseen: spec.unseen }
                }
                Encode::Ordinal => {
                    features += 1;
                    ColumnTransform::Ordinal { categories: s.categories.keys().cloned().collect() }
                }
            },
            ColumnKind::Text => {
                let n = s.documents as f64;
                // Smoothed idf, as scikit-learn's TfidfVectorizer computes it.
                let idf: BTreeMap<u32, f64> = s
                    .document_frequency
                    .iter()
                    .filter(|(_, df)| **df >= spec.text.min_df)
                    .map(|(bucket, df)| (*bucket, ((1.0 + n) / (1.0 + *df as f64)).ln() + 1.0))
                    .collect();
                features += idf.len();
                ColumnTransform::Tfidf { spec: spec.text, idf }
            }
        };
        transforms.push(transform);
    }
    let crosses = super::derived::crosses(&spec.cross, spec.cross_buckets, schema, &transforms)?;
    features += crosses.iter().map(super::derived::cross_width).sum::<usize>();
    let label = &summary.columns[schema.label];
    let (classes, target) = match spec.task {
        Task::Classification => (class_order(label), None),
        Task::Regression => (vec![], Some(target_scale(&schema.columns[schema.label].name, label)?)),
    };
    Ok(FittedPipeline {
        spec: spec.clone(),
        columns: schema.columns.iter().map(|c| c.name.clone()).collect(),
        transforms,
        label: schema.label,
        classes,
        features,
        task: spec.task,
        target,
        crosses,
        projection: None,
    })
}

/// Checks what can be checked of `spec` against the columns alone, before
/// any statistics are computed: crossed columns exist and pair, bins and
/// components are in range.
pub fn check(spec: &PipelineSpec, schema: &Schema) -> Result<(), FitError> {
    if let Some(bins) = spec.bins
        && !(2..=256).contains(&bins)
    {
        return Err(FitError::Bins(bins));
    }
    let numeric =
        schema.columns.iter().enumerate().filter(|(i, c)| *i != schema.label && c.kind == ColumnKind::Numeric);
    let numeric = numeric.count();
    if let Some(k) = spec.pca {
        if spec.bins.is_some() {
            return Err(FitError::Pca(
                "binned columns are indicators, not numbers to project; drop bins or pca".into(),
            ));
        }
        if k == 0 || k > numeric {
            return Err(FitError::Pca(format!(
                "{k} components asked of {numeric} numeric columns; ask for 1 to {numeric}"
            )));
        }
    }
    // Crosses of columns as if every numeric column were kept and scaled.
    let transforms: Vec<ColumnTransform> = schema
        .columns
        .iter()
        .map(|c| match c.kind {
            ColumnKind::Numeric if spec.bins.is_none() => {
                ColumnTransform::Numeric { fill: 0.0, offset: 0.0, scale: 1.0 }
            }
            ColumnKind::Numeric => ColumnTransform::Binned { fill: 0.0, edges: vec![] },
            _ => ColumnTransform::Drop,
        })
        .collect();
    super::derived::crosses(&spec.cross, spec.cross_buckets, schema, &transforms).map(|_| ())
}

/// Adds principal components to a fitted pipeline, from the moments of its
/// numeric features merged across shards: they replace those features.
pub fn fit_projection(pipeline: &mut FittedPipeline, moments: &Moments, components: usize) -> Result<(), FitError> {
    let inputs = super::derived::numeric_features(pipeline);
    if inputs.is_empty() {
        return Err(FitError::Pca("the pipeline gives no scaled numeric features to project".into()));
    }
    let projection = super::derived::principal_components(moments, inputs, components)?;
    pipeline.features = pipeline.features - projection.inputs.len() + projection.components.len();
    pipeline.projection = Some(projection);
    Ok(())
}

/// How a numeric label is standardized for regression.
fn target_scale(name: &str, label: &ColumnSummary) -> Result<TargetScale, FitError> {
    if label.present == 0 {
        return Err(FitError::NoTarget(name.to_owned()));
    }
    let (mean, variance) = moments(label, f64::NAN);
    let std = variance.sqrt();
    if !(std > 0.0) || !std.is_finite() {
        return Err(FitError::ConstantTarget(name.to_owned()));
    }
    let (min, max) = (label.min.unwrap_or(mean), label.max.unwrap_or(mean));
    Ok(TargetScale { mean, std, min: (min - mean) / std, max: (max - mean) / std })
}

/// Class names in a stable order: numerically when every class is a number.
fn class_order(label: &ColumnSummary) -> Vec<String> {
    let mut classes: Vec<String> = label.categories.keys().cloned().collect();
    if classes.iter().all(|c| c.parse::<f64>().is_ok()) {
        classes.sort_by(|a, b| a.parse::<f64>().unwrap().total_cmp(&b.parse::<f64>().unwrap()));
    }
    classes
}
