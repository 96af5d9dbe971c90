//! Features made from other features: quantile bins, crosses of column
//! pairs, and principal components fitted from moments merged across shards.

use mass_protocol::{
    dataset::{ColumnKind, Schema, Shard, ShardColumn},
    features::{ColumnTransform, Cross, FittedPipeline, Moments, Projection, QuantileSketch},
};
use ndarray::{Array2, ArrayView2, Axis, s};

use super::{FitError, sketch::quantile};

/// Edges of `bins` quantile bins of a column: the values at quantiles
/// 1/bins, 2/bins, ... (repeated values merged, so a column with few values
/// gets fewer bins).
pub fn bin_edges(sketch: &QuantileSketch, bins: usize) -> Vec<f64> {
    let mut edges: Vec<f64> = (1..bins).filter_map(|j| quantile(sketch, j as f64 / bins as f64)).collect();
    edges.dedup();
    if edges.last() == sketch.entries.last().map(|e| &e.0) {
        // The largest value as an edge would leave the last bin empty.
        edges.pop();
    }
    edges
}

/// The bin of `value` among `edges`.
pub fn bin_of(edges: &[f64], value: f64) -> usize {
    edges.partition_point(|e| *e < value)
}

/// Resolves crossed column names to crosses of the fitted column transforms.
pub fn crosses(
    pairs: &[(String, String)],
    buckets: u32,
    schema: &Schema,
    transforms: &[ColumnTransform],
) -> Result<Vec<Cross>, FitError> {
    let index = |name: &str| -> Result<usize, FitError> {
        let i = schema
            .columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| FitError::Cross(format!("no column named '{name}'")))?;
        if i == schema.label {
            return Err(FitError::Cross(format!("'{name}' is the label; it cannot be a feature")));
        }
        Ok(i)
    };
    // Feature index of each column's first output.
    let mut starts = Vec::with_capacity(transforms.len());
    let mut at = 0;
    for t in transforms {
        starts.push(at);
        at += width(t);
    }
    let mut out = Vec::new();
    for (a, b) in pairs {
        let (i, j) = (index(a)?, index(b)?);
        let (ka, kb) = (schema.columns[i].kind, schema.columns[j].kind);
        // A number times itself is its square; a category paired with itself is itself.
        if i == j && ka != ColumnKind::Numeric {
            return Err(FitError::Cross(format!("'{a}' crossed with itself adds nothing")));
        }
        match (ka, kb) {
            (ColumnKind::Numeric, ColumnKind::Numeric) => {
                for (name, t) in [(a, &transforms[i]), (b, &transforms[j])] {
                    if !matches!(t, ColumnTransform::Numeric { .. }) {
                        return Err(FitError::Cross(format!(
                            "'{name}' is not a scaled number here (dropped by selection, or binned); it cannot be multiplied"
                        )));
                    }
                }
                out.push(Cross::Product { a: starts[i], b: starts[j] });
            }
            (ColumnKind::Categorical, ColumnKind::Categorical) => {
                if buckets == 0 {
                    return Err(FitError::Cross("cross_buckets must be at least 1".into()));
                }
                out.push(Cross::Hashed { a: i, b: j, buckets });
            }
            _ => {
                return Err(FitError::Cross(format!(
                    "'{a}' ({ka:?}) and '{b}' ({kb:?}): a cross pairs two numeric or two categorical columns"
                )));
            }
        }
    }
    Ok(out)
}

/// Features a column transform outputs.
pub fn width(t: &ColumnTransform) -> usize {
    match t {
        ColumnTransform::Drop => 0,
        ColumnTransform::Numeric { .. } | ColumnTransform::Ordinal { .. } => 1,
        ColumnTransform::OneHot { categories, .. } => categories.len(),
        ColumnTransform::Tfidf { idf, .. } => idf.len(),
        ColumnTransform::Binned { edges, .. } => edges.len() + 1,
    }
}

/// Features a cross outputs.
pub fn cross_width(c: &Cross) -> usize {
    match c {
        Cross::Product { .. } => 1,
        Cross::Hashed { buckets, .. } => *buckets as usize,
    }
}

/// The crossed features of rows whose column features are `base`.
pub fn apply_crosses(crosses: &[Cross], base: ArrayView2<'_, f32>, shard: &Shard, out: &mut Array2<f32>, at: usize) {
    let mut offset = at;
    for cross in crosses {
        match cross {
            Cross::Product { a, b } => {
                for r in 0..base.nrows() {
                    out[[r, offset]] = base[[r, *a]] * base[[r, *b]];
                }
            }
            Cross::Hashed { a, b, buckets } => {
                let (
                    ShardColumn::Categorical { values: va, codes: ca },
                    ShardColumn::Categorical { values: vb, codes: cb },
                ) = (&shard.columns[*a], &shard.columns[*b])
                else {
                    continue;
                };
                for r in 0..base.nrows() {
                    if let (Some(x), Some(y)) = (va.get(ca[r] as usize), vb.get(cb[r] as usize)) {
                        let bucket = super::text::hash(&format!("{x}\u{1f}{y}")) % u64::from(*buckets);
                        out[[r, offset + bucket as usize]] = 1.0;
                    }
                }
            }
        }
        offset += cross_width(cross);
    }
}

/// The numeric features PCA replaces: the outputs of scaled numeric columns.
pub fn numeric_features(pipeline: &FittedPipeline) -> Vec<usize> {
    let mut at = 0;
    let mut out = Vec::new();
    for t in &pipeline.transforms {
        if matches!(t, ColumnTransform::Numeric { .. }) {
            out.push(at);
        }
        at += width(t);
    }
    out
}

/// The sums PCA needs over some rows of `features` (columns of `x`).
pub fn moments(x: ArrayView2<'_, f32>, features: &[usize]) -> Moments {
    let d = features.len();
    let mut m = Moments { rows: 0, sum: vec![0.0; d], outer: vec![0.0; d * d] };
    for start in (0..x.nrows()).step_by(4096) {
        let end = (start + 4096).min(x.nrows());
        let part = x.slice(s![start..end, ..]).select(Axis(1), features).mapv(f64::from);
        let outer = part.t().dot(&part);
        m.outer.iter_mut().zip(outer.iter()).for_each(|(a, b)| *a += b);
        m.sum.iter_mut().zip(part.sum_axis(Axis(0))).for_each(|(a, b)| *a += b);
    }
    m.rows = x.nrows() as u64;
    m
}

/// Adds `other` into `into`.
pub fn merge_moments(into: &mut Moments, other: &Moments) {
    if into.sum.is_empty() {
        *into = other.clone();
        return;
    }
    into.rows += other.rows;
    into.sum.iter_mut().zip(&other.sum).for_each(|(a, b)| *a += b);
    into.outer.iter_mut().zip(&other.outer).for_each(|(a, b)| *a += b);
}

/// The `k` leading principal components of the covariance the moments give
/// (orthogonal iteration, deterministic from a fixed start).
pub fn principal_components(m: &Moments, inputs: Vec<usize>, k: usize) -> Result<Projection, FitError> {
    let d = inputs.len();
    if k == 0 || k > d {
        return Err(FitError::Pca(format!("{k} components asked of {d} numeric features; ask for 1 to {d}")));
    }
    if m.rows < 2 || m.sum.len() != d || m.outer.len() != d * d {
        return Err(FitError::Pca("too few rows, or statistics of another shape".into()));
    }
    let n = m.rows as f64;
    let mean: Vec<f64> = m.sum.iter().map(|s| s / n).collect();
    let cov = Array2::from_shape_fn((d, d), |(i, j)| (m.outer[i * d + j] - n * mean[i] * mean[j]) / (n - 1.0));
    // Start from the identity's first k columns, then iterate Q <- orth(C Q).
    let mut q =
        Array2::from_shape_fn((d, k), |(i, j)| if i == j { 1.0 } else { 0.0 } + 1e-3 * ((i * 7 + j * 13) % 17) as f64);
    orthonormalize(&mut q);
    for _ in 0..1000 {
        let mut next = cov.dot(&q);
        orthonormalize(&mut next);
        let change = (&next - &q).iter().map(|v| v.abs()).fold(0.0, f64::max);
        q = next;
        if change < 1e-12 {
            break;
        }
    }
    // Order by explained variance; fix each sign (largest entry positive).
    let mut pairs: Vec<(f64, Vec<f64>)> = (0..k)
        .map(|j| {
            let v = q.column(j).to_vec();
            let variance = v.iter().zip(cov.dot(&q.column(j))).map(|(a, b)| a * b).sum::<f64>();
            let top = v.iter().copied().fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
            (variance, v.into_iter().map(|x| if top < 0.0 { -x } else { x }).collect())
        })
        .collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok(Projection {
        inputs,
        mean,
        explained: pairs.iter().map(|p| p.0).collect(),
        components: pairs.into_iter().map(|p| p.1).collect(),
    })
}

/// Gram-Schmidt on the columns.
fn orthonormalize(q: &mut Array2<f64>) {
    for j in 0..q.ncols() {
        for p in 0..j {
            let dot = q.column(j).dot(&q.column(p));
            let prev = q.column(p).to_owned();
            q.column_mut(j).scaled_add(-dot, &prev);
        }
        let norm = q.column(j).dot(&q.column(j)).sqrt().max(1e-300);
        q.column_mut(j).mapv_inplace(|v| v / norm);
    }
}

/// Rows' features with the projected inputs replaced by their components
/// (appended after the other features).
pub fn project(projection: &Projection, x: Array2<f32>) -> Array2<f32> {
    let keep: Vec<usize> = (0..x.ncols()).filter(|c| !projection.inputs.contains(c)).collect();
    let k = projection.components.len();
    let mut out = Array2::<f32>::zeros((x.nrows(), keep.len() + k));
    for (to, &from) in keep.iter().enumerate() {
        out.column_mut(to).assign(&x.column(from));
    }
    for (r, row) in x.rows().into_iter().enumerate() {
        for (c, component) in projection.components.iter().enumerate() {
            let value: f64 = projection
                .inputs
                .iter()
                .zip(&projection.mean)
                .zip(component)
                .map(|((&i, m), w)| (f64::from(row[i]) - m) * w)
                .sum();
            out[[r, keep.len() + c]] = value as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::sketch::sketch;

    #[test]
    fn quantile_bins_split_a_column_into_equal_counts() {
        let s = sketch((0..1000).map(f64::from), 4096);
        let edges = bin_edges(&s, 4);
        assert_eq!(edges, vec![249.0, 499.0, 749.0]);
        let counts = (0..1000).fold([0; 4], |mut c, v| {
            c[bin_of(&edges, f64::from(v))] += 1;
            c
        });
        assert_eq!(counts, [250; 4]);
        assert_eq!(bin_edges(&sketch([1.0, 1.0, 2.0].into_iter(), 16), 10), vec![1.0]);
    }

    #[test]
    fn principal_components_find_the_direction_of_most_variance() {
        // Points along (1, 1) with a little spread along (1, -1).
        let x = Array2::from_shape_fn((400, 2), |(r, c)| {
            let t = (r as f32 - 200.0) / 50.0;
            let noise = if r % 2 == 0 { 0.1 } else { -0.1 };
            if c == 0 { t + noise } else { t - noise }
        });
        let mut merged = Moments::default();
        for part in [0..150, 150..400] {
            merge_moments(&mut merged, &moments(x.slice(s![part, ..]), &[0, 1]));
        }
        let p = principal_components(&merged, vec![0, 1], 2).unwrap();
        let first = &p.components[0];
        assert!((first[0] - first[1]).abs() < 1e-3 && (first[0] - 0.5f64.sqrt()).abs() < 1e-3, "{first:?}");
        assert!(p.explained[0] > 100.0 * p.explained[1]);
        let projected = project(&p, x.clone());
        assert_eq!(projected.ncols(), 2);
        assert!(principal_components(&merged, vec![0, 1], 3).unwrap_err().to_string().contains("3 components"));
    }
}
