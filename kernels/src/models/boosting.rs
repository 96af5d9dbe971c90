//! Boosting of whole models: members trained one after another, each on
//! what the ones before it got wrong. Regressors fit the residuals of the
//! members before them (gradient boosting with squared error); classifiers
//! train on rows drawn by weight, the weight growing on rows earlier members
//! misclassified (SAMME, the multi-class AdaBoost), and vote with weight
//! `alpha`.

use ndarray::Array2;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Weight of every regressor after the first: each fits what the ones
/// before it left, and only half of its fit is kept (shrinkage, so that a
/// member that overfits its residuals cannot undo the others).
pub const SHRINKAGE: f64 = 0.5;

/// A classifier's error rate below which it counts as perfect (its alpha
/// stays finite).
const MIN_ERROR: f64 = 1e-10;

/// The weight of regressor `index` in the sum.
pub fn regressor_weight(index: usize) -> f64 {
    if index == 0 { 1.0 } else { SHRINKAGE }
}

/// What the members before leave to fit: `targets - sum(w_k * out_k)`.
pub fn residuals(targets: &[f32], previous: &[(Array2<f32>, f64)]) -> Vec<f32> {
    let mut left: Vec<f64> = targets.iter().map(|t| f64::from(*t)).collect();
    for (outputs, weight) in previous {
        for (r, value) in left.iter_mut().enumerate() {
            *value -= weight * f64::from(outputs[[r, 0]]);
        }
    }
    left.into_iter().map(|v| v as f32).collect()
}

/// SAMME's row weights (summing to 1) after members whose predictions are
/// `previous` (each with its alpha): `exp(sum of alpha over members that
/// got the row wrong)`.
pub fn row_weights(truth: &[usize], previous: &[(Vec<usize>, f64)]) -> Vec<f64> {
    let raw: Vec<f64> = (0..truth.len())
        .map(|r| previous.iter().filter(|(p, _)| p[r] != truth[r]).map(|(_, a)| a).sum::<f64>())
        .collect();
    // Subtract the largest exponent so that exp cannot overflow.
    let top = raw.iter().copied().fold(0.0, f64::max);
    let weights: Vec<f64> = raw.iter().map(|v| (v - top).exp()).collect();
    let total: f64 = weights.iter().sum();
    weights.into_iter().map(|w| w / total).collect()
}

/// SAMME's vote of a member with weighted error `error` among `classes`:
/// `ln((1 - e) / e) + ln(K - 1)`; zero for a member no better than chance.
pub fn alpha(error: f64, classes: usize) -> f64 {
    let e = error.clamp(MIN_ERROR, 1.0 - MIN_ERROR);
    (((1.0 - e) / e).ln() + ((classes.max(2) - 1) as f64).ln()).max(0.0)
}

/// The weighted error of `predicted` against `truth`.
pub fn weighted_error(truth: &[usize], predicted: &[usize], weights: &[f64]) -> f64 {
    truth.iter().zip(predicted).zip(weights).filter(|((t, p), _)| t != p).map(|(_, w)| w).sum::<f64>()
        / weights.iter().sum::<f64>().max(f64::MIN_POSITIVE)
}

/// `n` row indices drawn with replacement, each with probability its
/// weight (weights sum to 1), from `seed`.
pub fn resample(weights: &[f64], n: usize, seed: u64) -> Vec<usize> {
    let mut cumulative = Vec::with_capacity(weights.len());
    let mut total = 0.0;
    for w in weights {
        total += w;
        cumulative.push(total);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rows: Vec<usize> = (0..n)
        .map(|_| {
            let u = rng.random_range(0.0..total.max(f64::MIN_POSITIVE));
            cumulative.partition_point(|c| *c <= u).min(weights.len().saturating_sub(1))
        })
        .collect();
    rows.sort_unstable();
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residuals_subtract_the_weighted_members() {
        let a = Array2::from_shape_vec((2, 1), vec![1.0f32, 2.0]).unwrap();
        let b = Array2::from_shape_vec((2, 1), vec![0.5f32, -1.0]).unwrap();
        assert_eq!(residuals(&[3.0, 3.0], &[(a, 1.0), (b, 0.5)]), vec![1.75, 1.5]);
    }

    #[test]
    fn misclassified_rows_gain_weight_and_chance_gets_no_vote() {
        let truth = [0, 1, 2, 0];
        let w = row_weights(&truth, &[(vec![0, 1, 0, 0], alpha(0.25, 3))]);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(w[2] > w[0] && (w[0] - w[1]).abs() < 1e-12);
        assert!(alpha(2.0 / 3.0, 3) < 1e-12);
        assert!(alpha(0.0, 2) > 20.0 && alpha(0.0, 2).is_finite());
        assert!((weighted_error(&truth, &[0, 1, 0, 0], &[0.25; 4]) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn resampling_follows_the_weights() {
        let rows = resample(&[0.0, 0.9, 0.1], 10_000, 3);
        assert!(!rows.contains(&0));
        let ones = rows.iter().filter(|r| **r == 1).count();
        assert!((8_700..9_300).contains(&ones), "{ones}");
        assert_eq!(rows, resample(&[0.0, 0.9, 0.1], 10_000, 3));
    }
}
