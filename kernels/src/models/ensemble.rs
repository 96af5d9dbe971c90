//! Combining models: ensembles of sub-models (bagging's vote or average) and
//! parameter averaging (the step of data-parallel training).

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use super::{Mlp, MlpConfig, Optimizer, Target};

/// How an ensemble turns its members' outputs into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Mean of the members' outputs (soft vote for classifiers).
    Average,
    /// Each member votes for its most probable class; ties go to the lower class.
    Vote,
}

/// Sub-models trained apart (on shards or bootstrap samples) and combined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    pub members: Vec<Mlp>,
    pub combine: Combine,
}

impl Ensemble {
    /// Combined outputs: probabilities (Average), vote shares (Vote), or
    /// mean values for regressors.
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let outputs: Vec<Array2<f32>> = self.members.iter().map(|m| m.predict(x)).collect();
        let mut combined = Array2::<f32>::zeros(outputs[0].raw_dim());
        let n = outputs.len() as f32;
        for out in &outputs {
            match self.combine {
                Combine::Average => combined += &(out / n),
                Combine::Vote => {
                    for (r, best) in argmax_rows(out).into_iter().enumerate() {
                        combined[[r, best]] += 1.0 / n;
                    }
                }
            }
        }
        combined
    }

    pub fn predict_classes(&self, x: ArrayView2<'_, f32>) -> Vec<usize> {
        argmax_rows(&self.predict(x))
    }
}

/// One output from the members' outputs on the same rows: their mean, or,
/// for a stacked model, the meta-model's output on their concatenation.
pub fn combine_outputs(outputs: &[Array2<f32>], meta: Option<&Mlp>) -> Array2<f32> {
    match meta {
        Some(meta) => meta.predict(stacked_inputs(outputs).view()),
        None => combine(outputs, &mass_protocol::jobs::Combine::Mean, None),
    }
}

/// One output from the members' outputs on the same rows, by `rule`
/// (stacking reads `meta`; without one it falls back to the mean).
pub fn combine(outputs: &[Array2<f32>], rule: &mass_protocol::jobs::Combine, meta: Option<&Mlp>) -> Array2<f32> {
    use mass_protocol::jobs::Combine as Rule;
    let weighted = |weights: &[f64], normalize: bool| {
        let total: f64 = if normalize { weights.iter().sum() } else { 1.0 };
        let mut combined = Array2::<f32>::zeros(outputs[0].raw_dim());
        for (out, w) in outputs.iter().zip(weights) {
            combined.scaled_add((w / total) as f32, out);
        }
        combined
    };
    match (rule, meta) {
        (Rule::Stacked, Some(meta)) => meta.predict(stacked_inputs(outputs).view()),
        (Rule::WeightedMean(w), _) => weighted(w, true),
        (Rule::WeightedSum(w), _) => weighted(w, false),
        // A serial chain is run part by part by its caller; alone, a mean.
        (Rule::Mean | Rule::Stacked | Rule::Serial, _) => weighted(&vec![1.0; outputs.len()], true),
    }
}

/// Fits stacking's meta-model, a softmax regression, on the members' outputs
/// for rows none of them trained on, and those rows' classes.
pub fn fit_meta(outputs: &[Array2<f32>], labels: &[usize], classes: usize, seed: u64) -> Mlp {
    let x = stacked_inputs(outputs);
    let config = MlpConfig {
        hidden: vec![],
        optimizer: Optimizer::Adam { learning_rate: 1e-2 },
        batch_size: 64,
        epochs: 30,
        l2: 1e-4,
        seed,
        ..MlpConfig::default()
    };
    Mlp::fit(x.view(), Target::Classes { labels, classes }, None, &config).0
}

/// Fits stacking's meta-model for a regressor: ridge regression of the
/// held-out rows' (scaled) targets on the members' outputs.
pub fn fit_meta_regressor(outputs: &[Array2<f32>], targets: ArrayView2<'_, f32>) -> Result<Mlp, String> {
    let x = stacked_inputs(outputs);
    let mut gram = super::linear::Gram::new(x.ncols(), targets.ncols());
    gram.add(x.view(), targets);
    gram.solve(1.0 / x.nrows().max(1) as f64)
}

/// A stacking meta-model's inputs: the members' outputs side by side.
pub fn stacked_inputs(outputs: &[Array2<f32>]) -> Array2<f32> {
    let views: Vec<_> = outputs.iter().map(|o| o.view()).collect();
    ndarray::concatenate(ndarray::Axis(1), &views).expect("members answer for the same rows")
}

/// Index of the largest value of each row (the first one on ties).
pub fn argmax_rows(values: &Array2<f32>) -> Vec<usize> {
    values
        .rows()
        .into_iter()
        .map(|row| row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &p)| if p > b.1 { (i, p) } else { b }).0)
        .collect()
}

/// Why models cannot be averaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AverageError {
    #[error("no models to average")]
    Empty,
    #[error("model {index} has a different shape from the first")]
    Shape { index: usize },
}

/// Weighted mean of the parameters of models with the same shape (weights
/// are typically the rows each was trained on). This is the averaging step
/// of data-parallel training: peers train locally, then average.
pub fn average(models: &[(&Mlp, f64)]) -> Result<Mlp, AverageError> {
    let first = check_shapes(models)?;
    let total: f64 = models.iter().map(|(_, w)| w).sum();
    let mut out = first.clone();
    for l in 0..out.weights.len() {
        out.weights[l].fill(0.0);
        out.biases[l].fill(0.0);
        for (m, w) in models {
            let share = (w / total) as f32;
            out.weights[l].scaled_add(share, &m.weights[l]);
            out.biases[l].scaled_add(share, &m.biases[l]);
        }
    }
    Ok(out)
}

/// The first model, once every model has its shape.
fn check_shapes<'a>(models: &[(&'a Mlp, f64)]) -> Result<&'a Mlp, AverageError> {
    let (first, _) = models.first().ok_or(AverageError::Empty)?;
    for (index, (m, _)) in models.iter().enumerate() {
        // Biases too: a stored member is peer bytes, and one with fewer
        // biases than weight layers panicked the averaging loops.
        let same = m.weights.len() == first.weights.len()
            && m.biases.len() == m.weights.len()
            && m.weights.iter().zip(&first.weights).all(|(a, b)| a.raw_dim() == b.raw_dim())
            && m.biases.iter().zip(&first.biases).all(|(a, b)| a.raw_dim() == b.raw_dim())
            && m.activation == first.activation
            && m.loss == first.loss;
        if !same {
            return Err(AverageError::Shape { index });
        }
    }
    Ok(first)
}

/// How many of `workers` answers a robust average may drop: one in five,
/// at least one from three workers on; none below three, where no majority
/// can outvote a liar.
pub fn trim_for(workers: usize) -> usize {
    if workers >= 3 { (workers / 5).max(1) } else { 0 }
}

/// How many times the median distance from the coordinate-wise median a
/// model must lie to be dropped by [`robust_average`]. Honest workers that
/// start from the same weights land within about one median distance of
/// each other; a sign flip lands at twice the model's norm, a scaled model
/// at a hundred times it.
pub const FAR: f32 = 2.0;

/// Data-parallel averaging that a few lying workers cannot steer: the
/// models lying farthest from the coordinate-wise median of all of them
/// (at most `trim`, and only those farther than [`FAR`] times the median
/// of the distances) are dropped whole, and the rest are averaged with
/// their weights, none counting for more than the median weight. With
/// `trim` 0 it is the weighted [`average`].
///
/// A liar is dropped with everything it said, so one liar in five costs
/// its shards' rows and no more; with no liar nothing is dropped and the
/// average is the plain weighted mean. (A coordinate-wise trimmed mean,
/// [`trimmed_mean`], drops an honest value at the other end of every
/// coordinate as well, so its result leans away from the liar by a margin
/// that depends on which shards the liar held: 0.6 to 2.8 points of
/// accuracy on digits.) A liar that stays within [`FAR`] median distances
/// moves the average by at most its share of that distance. A model with a
/// NaN or infinite parameter is farthest of all.
pub fn robust_average(models: &[(&Mlp, f64)], trim: usize) -> Result<Mlp, AverageError> {
    if trim == 0 || models.len() <= 2 * trim {
        return average(models);
    }
    let median = trimmed_mean(models, (models.len() - 1) / 2)?;
    let distances: Vec<f32> = models
        .iter()
        .map(|(m, _)| {
            let d = distance(m, &median);
            if d.is_finite() { d } else { f32::INFINITY }
        })
        .collect();
    let mut sorted = distances.clone();
    sorted.sort_unstable_by(f32::total_cmp);
    let typical = sorted[(sorted.len() - 1) / 2];
    let mut farthest: Vec<usize> = (0..models.len()).collect();
    farthest.sort_by(|&a, &b| distances[b].total_cmp(&distances[a]).then(a.cmp(&b)));
    let dropped: Vec<usize> = farthest.into_iter().take(trim).filter(|&i| distances[i] > FAR * typical).collect();
    // A weight is a worker's word too (the rows it claims): none counts for
    // more than the median claim.
    let mut claims: Vec<f64> = models.iter().map(|(_, w)| *w).collect();
    claims.sort_unstable_by(f64::total_cmp);
    let cap = claims[(claims.len() - 1) / 2];
    let kept: Vec<(&Mlp, f64)> = models
        .iter()
        .enumerate()
        .filter(|(i, _)| !dropped.contains(i))
        .map(|(_, (m, w))| (*m, if w.is_finite() { w.min(cap).max(0.0) } else { cap }))
        .collect();
    average(&kept)
}

/// Euclidean distance between two models' parameters (same shapes).
fn distance(a: &Mlp, b: &Mlp) -> f32 {
    let weights = a.weights.iter().zip(&b.weights).flat_map(|(x, y)| x.iter().zip(y.iter()));
    let biases = a.biases.iter().zip(&b.biases).flat_map(|(x, y)| x.iter().zip(y.iter()));
    weights.chain(biases).map(|(p, q)| (p - q) * (p - q)).sum::<f32>().sqrt()
}

/// The coordinate-wise trimmed mean of the models' parameters: the `trim`
/// largest and smallest values of each coordinate dropped, the rest
/// averaged alike, whatever weight each model has. `(n - 1) / 2` gives the
/// coordinate-wise median of `n` models (for odd `n`). With `trim` 0, or
/// too few models to trim, it is the weighted [`average`].
pub fn trimmed_mean(models: &[(&Mlp, f64)], trim: usize) -> Result<Mlp, AverageError> {
    if trim == 0 || models.len() <= 2 * trim {
        return average(models);
    }
    let first = check_shapes(models)?;
    let mut out = first.clone();
    let kept = (models.len() - 2 * trim) as f32;
    let mut column = Vec::with_capacity(models.len());
    let trimmed_mean = |values: &mut Vec<f32>| {
        // NaN sorts last, so a model of NaNs is trimmed like an extreme one.
        values.sort_unstable_by(f32::total_cmp);
        values[trim..values.len() - trim].iter().sum::<f32>() / kept
    };
    for l in 0..out.weights.len() {
        for (index, value) in out.weights[l].indexed_iter_mut() {
            column.clear();
            column.extend(models.iter().map(|(m, _)| m.weights[l][index]));
            *value = trimmed_mean(&mut column);
        }
        for (index, value) in out.biases[l].indexed_iter_mut() {
            column.clear();
            column.extend(models.iter().map(|(m, _)| m.biases[l][index]));
            *value = trimmed_mean(&mut column);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{MlpConfig, Target, metrics::accuracy};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Fuzz regression: a member with fewer bias vectors than weight
    /// layers (or biases of another width) panicked averaging.
    #[test]
    fn members_whose_biases_do_not_fit_their_weights_are_not_averaged() {
        let (x, y) = problem(40, 1);
        let config = MlpConfig { hidden: vec![4], epochs: 1, ..MlpConfig::default() };
        let model = Mlp::fit(x.view(), Target::Classes { labels: &y, classes: 3 }, None, &config).0;
        let mut short = model.clone();
        short.biases.pop();
        assert_eq!(average(&[(&short, 1.0)]).unwrap_err(), AverageError::Shape { index: 0 });
        let mut wide = model.clone();
        wide.biases[0] = ndarray::Array1::zeros(9);
        assert_eq!(average(&[(&model, 1.0), (&wide, 1.0)]).unwrap_err(), AverageError::Shape { index: 1 });
        assert!(average(&[(&model, 1.0), (&model, 2.0)]).is_ok());
    }

    fn problem(rows: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let x = Array2::from_shape_simple_fn((rows, 6), || rng.random_range(-1.0f32..1.0));
        let y =
            (0..rows).map(|r| usize::from(x[[r, 0]] + 0.5 * x[[r, 1]] > 0.0) + usize::from(x[[r, 2]] > 0.5)).collect();
        (x, y)
    }

    #[test]
    fn stacking_learns_how_to_read_its_members() {
        let (x, y) = problem(3000, 7);
        let (train, held) = (x.slice(ndarray::s![..2000, ..]), x.slice(ndarray::s![2000.., ..]));
        let config = MlpConfig { hidden: vec![16], epochs: 30, seed: 3, ..MlpConfig::default() };
        let good = Mlp::fit(train, Target::Classes { labels: &y[..2000], classes: 3 }, None, &config).0;
        // A member that learned to answer the next class: confidently wrong,
        // yet informative to a meta-model that learns how to read it.
        let shifted: Vec<usize> = y[..2000].iter().map(|c| (c + 1) % 3).collect();
        let bad = Mlp::fit(train, Target::Classes { labels: &shifted, classes: 3 }, None, &config).0;
        let outputs = |rows: ArrayView2<'_, f32>| vec![good.predict(rows), bad.predict(rows), bad.predict(rows)];
        let meta = fit_meta(&outputs(held.slice(ndarray::s![..500, ..])), &y[2000..2500], 3, 1);
        let test = held.slice(ndarray::s![500.., ..]);
        let truth = &y[2500..];
        let stacked = accuracy(truth, &argmax_rows(&combine_outputs(&outputs(test), Some(&meta))));
        let averaged = accuracy(truth, &argmax_rows(&combine_outputs(&outputs(test), None)));
        let alone = accuracy(truth, &good.predict_classes(test));
        assert!(stacked > averaged, "stacked {stacked} should beat the plain average {averaged}");
        assert!(stacked > alone - 0.02, "stacked {stacked} should be about as good as the good member {alone}");
    }

    #[test]
    fn averaging_identical_models_changes_nothing_and_mismatches_are_refused() {
        let config = MlpConfig { hidden: vec![4], ..MlpConfig::default() };
        let a = Mlp::new(3, 2, &config, &mut StdRng::seed_from_u64(1));
        assert_eq!(average(&[(&a, 1.0), (&a, 3.0)]).unwrap(), a);
        let other = Mlp::new(3, 3, &config, &mut StdRng::seed_from_u64(1));
        assert_eq!(average(&[(&a, 1.0), (&other, 1.0)]), Err(AverageError::Shape { index: 1 }));
        assert_eq!(average(&[]), Err(AverageError::Empty));
    }

    #[test]
    fn one_liar_in_five_cannot_steer_the_robust_average() {
        let (x, y) = problem(2500, 11);
        let (tx, ty) = problem(800, 12);
        let config = MlpConfig { hidden: vec![8], epochs: 10, seed: 5, ..MlpConfig::default() };
        let train = |rows: std::ops::Range<usize>, labels: &[usize]| {
            let sx = x.slice(ndarray::s![rows.clone(), ..]);
            Mlp::fit(sx, Target::Classes { labels: &labels[rows], classes: 3 }, None, &config).0
        };
        let honest: Vec<Mlp> = (0..5).map(|w| train(w * 500..(w + 1) * 500, &y)).collect();
        let clean = accuracy(&ty, &average(&weighted(&honest, &[500.0; 5])).unwrap().predict_classes(tx.view()));
        let mut sign_flip = honest[4].clone();
        sign_flip.weights.iter_mut().for_each(|w| w.mapv_inplace(|v| -v));
        let mut scaled = honest[4].clone();
        scaled.weights.iter_mut().for_each(|w| w.mapv_inplace(|v| v * 1e4));
        let flipped_labels: Vec<usize> = y.iter().map(|c| (c + 1) % 3).collect();
        let label_flip = train(2000..2500, &flipped_labels);
        let mut nan = honest[4].clone();
        nan.biases[0].fill(f32::NAN);
        for (name, liar, claimed) in [
            ("sign flip", sign_flip, 500.0),
            ("scaled x1e4", scaled, 500.0),
            ("label flip", label_flip, 500.0),
            ("NaN", nan, 500.0),
            ("claims u64::MAX rows", honest[4].clone(), u64::MAX as f64),
        ] {
            let mut models = honest[..4].to_vec();
            models.push(liar);
            let mut rows = [500.0; 5];
            rows[4] = claimed;
            let robust = robust_average(&weighted(&models, &rows), trim_for(5)).unwrap();
            if matches!(name, "sign flip" | "scaled x1e4" | "NaN") {
                // Far off: dropped whole, the four honest models averaged.
                assert_eq!(robust, average(&weighted(&honest[..4], &[500.0; 4])).unwrap(), "{name}");
            }
            let acc = accuracy(&ty, &robust.predict_classes(tx.view()));
            assert!(acc >= clean - 0.02, "{name}: robust average {acc} against the clean run's {clean}");
        }
        // The plain weighted mean is steered by a sign flip.
        let mut models = honest[..4].to_vec();
        let mut flipped = honest[4].clone();
        flipped.weights.iter_mut().for_each(|w| w.mapv_inplace(|v| -v * 10.0));
        models.push(flipped);
        let plain = accuracy(&ty, &average(&weighted(&models, &[500.0; 5])).unwrap().predict_classes(tx.view()));
        assert!(plain < clean - 0.05, "the plain mean {plain} should suffer from a scaled sign flip (clean {clean})");
    }

    fn weighted<'a>(models: &'a [Mlp], rows: &[f64]) -> Vec<(&'a Mlp, f64)> {
        models.iter().zip(rows).map(|(m, r)| (m, *r)).collect()
    }

    /// Linear models whose every weight is `v` and every bias `-v`.
    fn constant_models(values: &[f32]) -> Vec<Mlp> {
        let config = MlpConfig { hidden: vec![], ..MlpConfig::default() };
        values
            .iter()
            .map(|v| {
                let mut m = Mlp::new(2, 2, &config, &mut StdRng::seed_from_u64(1));
                m.weights[0].fill(*v);
                m.biases[0].fill(-*v);
                m
            })
            .collect()
    }

    #[test]
    fn trimmed_mean_drops_the_extremes_of_each_coordinate() {
        let models = constant_models(&[1.0, 2.0, 3.0, 4.0, 1000.0]);
        let trimmed = trimmed_mean(&weighted(&models, &[1.0; 5]), 1).unwrap();
        assert_eq!(trimmed.weights[0][[0, 0]], 3.0, "mean of 2, 3, 4");
        assert_eq!(trimmed.biases[0][0], -3.0);
        let median = trimmed_mean(&weighted(&models, &[1.0; 5]), 2).unwrap();
        assert_eq!(median.weights[0][[0, 0]], 3.0);
        // Too few to trim: the weighted mean.
        let two = trimmed_mean(&weighted(&models[..2], &[1.0, 3.0]), 1).unwrap();
        assert_eq!(two.weights[0][[0, 0]], 1.75);
    }

    #[test]
    fn robust_average_drops_a_far_model_whole_and_nothing_when_none_is_far() {
        // 1000 lies far from the median (3): dropped; 1 to 4 are averaged
        // whole, the 1 and 4 a trimmed mean would have cut included.
        let models = constant_models(&[1.0, 2.0, 3.0, 4.0, 1000.0]);
        let robust = robust_average(&weighted(&models, &[1.0; 5]), 1).unwrap();
        assert_eq!(robust.weights[0][[0, 0]], 2.5, "mean of 1, 2, 3, 4");
        assert_eq!(robust.biases[0][0], -2.5);
        // No model far off: the plain weighted mean, weights honoured.
        let honest = constant_models(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        let robust = robust_average(&weighted(&honest, &[1.0, 1.0, 2.0, 2.0, 2.0]), 1).unwrap();
        assert_eq!(robust.weights[0][[0, 0]], 27.0 / 8.0);
        // At most `trim` dropped, however many are far.
        let two_far = constant_models(&[1.0, 2.0, 3.0, 500.0, 1000.0]);
        let robust = robust_average(&weighted(&two_far, &[1.0; 5]), 1).unwrap();
        assert_eq!(robust.weights[0][[0, 0]], 506.0 / 4.0, "1000 dropped, 500 kept");
        // A model of NaNs, or of infinities, is the farthest of all.
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let models = constant_models(&[1.0, 2.0, bad, 3.0, 4.0]);
            let robust = robust_average(&weighted(&models, &[1.0; 5]), 1).unwrap();
            assert_eq!(robust.weights[0][[0, 0]], 2.5, "{bad} dropped");
        }
        // Identical honest models: the odd one out goes.
        let same = constant_models(&[2.0, 2.0, 2.0, 2.0, -2.0]);
        assert_eq!(robust_average(&weighted(&same, &[1.0; 5]), 1).unwrap().weights[0][[0, 0]], 2.0);
        assert_eq!(trim_for(2), 0);
        assert_eq!(trim_for(3), 1);
        assert_eq!(trim_for(10), 2);
        // Too few to drop any: the weighted mean.
        let two = robust_average(&weighted(&models[..2], &[1.0, 3.0]), 1).unwrap();
        assert_eq!(two.weights[0][[0, 0]], 1.75);
    }

    #[test]
    fn no_weight_counts_for_more_than_the_median_weight_in_a_robust_average() {
        let models = constant_models(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        for claim in [u64::MAX as f64, f64::INFINITY, f64::NAN] {
            let robust = robust_average(&weighted(&models, &[1.0, 1.0, 1.0, 1.0, claim]), 1).unwrap();
            assert_eq!(robust.weights[0][[0, 0]], 3.0, "a claim of {claim} rows counts as the median claim");
        }
        let robust = robust_average(&weighted(&models, &[2.0, 2.0, 2.0, 2.0, -50.0]), 1).unwrap();
        assert_eq!(robust.weights[0][[0, 0]], 2.5, "a negative claim counts for nothing");
    }

    #[test]
    fn weighted_average_is_the_weighted_mean_of_parameters() {
        let config = MlpConfig { hidden: vec![], ..MlpConfig::default() };
        let a = Mlp::new(2, 2, &config, &mut StdRng::seed_from_u64(1));
        let b = Mlp::new(2, 2, &config, &mut StdRng::seed_from_u64(2));
        let m = average(&[(&a, 1.0), (&b, 3.0)]).unwrap();
        let expected = 0.25 * a.weights[0][[1, 0]] + 0.75 * b.weights[0][[1, 0]];
        assert!((m.weights[0][[1, 0]] - expected).abs() < 1e-6);
    }

    #[test]
    fn a_bagged_ensemble_is_at_least_as_accurate_as_its_mean_member() {
        let (x, y) = problem(1600, 3);
        let (tx, ty) = problem(600, 4);
        let config = MlpConfig { hidden: vec![8], epochs: 15, ..MlpConfig::default() };
        // One member per shard, as bagging over a dataset's shards trains them.
        let members: Vec<Mlp> = (0..4)
            .map(|shard| {
                let rows: Vec<usize> = (shard * 400..(shard + 1) * 400).collect();
                let sx = x.select(ndarray::Axis(0), &rows);
                let sy: Vec<usize> = rows.iter().map(|&r| y[r]).collect();
                Mlp::fit(
                    sx.view(),
                    Target::Classes { labels: &sy, classes: 3 },
                    None,
                    &MlpConfig { seed: shard as u64, ..config.clone() },
                )
                .0
            })
            .collect();
        let mean_member = members.iter().map(|m| accuracy(&ty, &m.predict_classes(tx.view()))).sum::<f64>() / 4.0;
        for combine in [Combine::Average, Combine::Vote] {
            let ensemble = Ensemble { members: members.clone(), combine };
            let acc = accuracy(&ty, &ensemble.predict_classes(tx.view()));
            assert!(acc >= mean_member, "{combine:?}: ensemble {acc} < mean member {mean_member}");
        }
    }
}
