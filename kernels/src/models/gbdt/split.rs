//! Finding the best split of a leaf from its histogram.
//!
//! Gains are computed from exact integer sums, so every node that looks at
//! the same merged histogram finds the same split; ties go to the lower
//! feature, then the lower threshold.

use serde::{Deserialize, Serialize};

use super::{
    bins::{FeatureBins, MISSING},
    histogram::{BinSum, Histogram, Layout, Quantizer},
};

/// Limits on a split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitLimits {
    /// Rows each child must hold at least.
    pub min_rows: u64,
    /// Hessian sum each child must hold at least (keeps leaf values finite).
    pub min_hessian: f64,
    /// L2 penalty on leaf values.
    pub l2: f64,
    /// Gain a split must exceed.
    pub min_gain: f64,
    /// Categories on the left of a categorical split at most.
    pub max_categories: usize,
    /// Added to each category's hessian when ordering categories (keeps
    /// rare categories from looking extreme).
    pub category_smoothing: f64,
}

impl Default for SplitLimits {
    fn default() -> Self {
        Self { min_rows: 20, min_hessian: 1e-3, l2: 0.0, min_gain: 0.0, max_categories: 32, category_smoothing: 10.0 }
    }
}

/// Which rows go left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rule {
    /// Value bins up to and including this one.
    UpTo(u8),
    /// Value bins in this set (a 256-bit mask).
    In([u64; 4]),
}

impl Rule {
    pub fn goes_left(&self, bin: u8) -> bool {
        match self {
            Rule::UpTo(t) => bin <= *t,
            Rule::In(mask) => mask[usize::from(bin >> 6)] >> (bin & 63) & 1 == 1,
        }
    }
}

/// A split of a leaf: the feature, the rule, and where missing values go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub feature: u32,
    pub rule: Rule,
    pub default_left: bool,
}

impl Split {
    pub fn goes_left(&self, bin: u8) -> bool {
        if bin == MISSING { self.default_left } else { self.rule.goes_left(bin) }
    }
}

/// The best split found for a leaf, with its children's sums.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub split: Split,
    pub gain: f64,
    pub left: BinSum,
    pub right: BinSum,
}

impl Candidate {
    /// Whether `self` beats `other`: more gain, then the lower feature.
    pub fn beats(&self, other: &Candidate) -> bool {
        self.gain > other.gain || (self.gain == other.gain && self.split.feature < other.split.feature)
    }
}

/// The better of two optional candidates.
pub fn better(a: Option<Candidate>, b: Option<Candidate>) -> Option<Candidate> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.beats(&x) { y } else { x }),
        (x, y) => x.or(y),
    }
}

/// The value of a leaf with these sums (before the learning rate): -G / (H + λ).
pub fn leaf_value(q: &Quantizer, sum: BinSum, l2: f64) -> f64 {
    let (g, h) = q.real(sum);
    if h + l2 <= 0.0 { 0.0 } else { -g / (h + l2) }
}

/// Gains of splits of one leaf, from what a leaf with sums (G, H) is
/// worth: G² / (H + λ), with G and H as [`Quantizer::real`] gives them;
/// computed with fewer divisions (a split search tries
/// every threshold, and divisions are most of its cost): dividing by a
/// power-of-two scale is multiplying by its exact inverse, and the
/// minimum-hessian test is one integer comparison.
struct Scorer<'a> {
    q: &'a Quantizer,
    limits: &'a SplitLimits,
    parent: f64,
    g_inverse: Option<f64>,
    h_inverse: Option<f64>,
    /// The least quantized hessian sum that passes the minimum-hessian
    /// test (`None`: test each sum as it comes).
    least_h: Option<i64>,
}

/// `1 / scale`, when multiplying by it gives exactly what dividing by
/// `scale` gives: `scale` is a positive power of two whose inverse is a
/// normal number.
fn exact_inverse(scale: f64) -> Option<f64> {
    const MANTISSA: u64 = (1 << 52) - 1;
    let inverse = 1.0 / scale;
    let power_of_two = scale.is_normal() && scale > 0.0 && scale.to_bits() & MANTISSA == 0;
    (power_of_two && inverse.is_normal() && inverse * scale == 1.0).then_some(inverse)
}

impl<'a> Scorer<'a> {
    fn new(q: &'a Quantizer, limits: &'a SplitLimits, total: BinSum) -> Self {
        let mut scorer = Scorer {
            q,
            limits,
            parent: 0.0,
            g_inverse: exact_inverse(q.g_scale),
            h_inverse: exact_inverse(q.h_scale),
            least_h: None,
        };
        scorer.least_h = scorer.least_hessian();
        scorer.parent = scorer.score(total);
        scorer
    }

    /// `q.real(sum)`, to the bit.
    fn real(&self, sum: BinSum) -> (f64, f64) {
        let g = match self.g_inverse {
            Some(inverse) => sum.g as f64 * inverse,
            None => sum.g as f64 / self.q.g_scale,
        };
        let h = match self.h_inverse {
            Some(inverse) => sum.h as f64 * inverse,
            None => sum.h as f64 / self.q.h_scale,
        };
        (g, h)
    }

    fn hessian_passes(&self, h: i64) -> bool {
        h as f64 / self.q.h_scale >= self.limits.min_hessian
    }

    /// The least `h` that passes [`Scorer::hessian_passes`], found by
    /// stepping from the real-valued bound: the test is monotone in `h`
    /// (converting and dividing by a positive scale keep order), so one
    /// `h` passing where `h - 1` fails is the bound. `None` where the scale
    /// or the bound is out of the range where this holds.
    fn least_hessian(&self) -> Option<i64> {
        const EXACT: f64 = (1u64 << 52) as f64;
        let start = (self.limits.min_hessian * self.q.h_scale).ceil();
        if !(self.q.h_scale > 0.0 && self.q.h_scale.is_finite() && start.abs() < EXACT) {
            return None;
        }
        let mut h = start as i64;
        for _ in 0..64 {
            match (self.hessian_passes(h - 1), self.hessian_passes(h)) {
                (false, true) => return Some(h),
                (true, _) => h -= 1,
                (false, false) => h += 1,
            }
        }
        None
    }

    /// What a leaf with these sums is worth: G² / (H + λ).
    fn score(&self, sum: BinSum) -> f64 {
        let (g, h) = self.real(sum);
        g * g / (h + self.limits.l2)
    }

    fn allowed(&self, side: BinSum) -> bool {
        side.n as u64 >= self.limits.min_rows
            && match self.least_h {
                Some(least) => side.h >= least,
                None => self.q.real(side).1 >= self.limits.min_hessian,
            }
    }

    /// The gain of splitting into `left` and `right`, if allowed.
    fn gain(&self, left: BinSum, right: BinSum) -> Option<f64> {
        if !self.allowed(left) || !self.allowed(right) {
            return None;
        }
        let gain = self.score(left) + self.score(right) - self.parent;
        (gain > self.limits.min_gain).then_some(gain)
    }
}

/// The best split of one feature, given its bins' sums and the leaf's totals.
pub fn best_for_feature(
    feature: u32,
    bins: &FeatureBins,
    sums: &[BinSum],
    total: BinSum,
    q: &Quantizer,
    limits: &SplitLimits,
) -> Option<Candidate> {
    best_with(&Scorer::new(q, limits, total), feature, bins, sums, total)
}

fn best_with(
    scorer: &Scorer<'_>,
    feature: u32,
    bins: &FeatureBins,
    sums: &[BinSum],
    total: BinSum,
) -> Option<Candidate> {
    if bins.is_categorical() {
        categorical(feature, sums, total, scorer)
    } else {
        numeric(feature, sums, total, scorer)
    }
}

fn numeric(feature: u32, sums: &[BinSum], total: BinSum, scorer: &Scorer<'_>) -> Option<Candidate> {
    let missing = sums[usize::from(MISSING)];
    let mut best: Option<Candidate> = None;
    let mut left = BinSum::default();
    // Thresholds after each value bin but the last.
    for t in 1..sums.len().saturating_sub(1) {
        if sums[t].n == 0 {
            // An empty bin (no rows: zero sums) moves nothing: the split
            // after it is the one before it, already tried, and ties keep
            // the first. Small leaves have mostly empty bins.
            continue;
        }
        left += sums[t];
        if left.n == 0 {
            continue;
        }
        let right = total - missing - left;
        if right.n == 0 {
            break;
        }
        let options: &[bool] = if missing.n == 0 {
            // No missing values here: they will go with the larger side.
            &[left.n >= right.n]
        } else {
            &[true, false]
        };
        for &default_left in options {
            let (l, r) = if default_left && missing.n > 0 {
                (left + missing, right)
            } else if missing.n > 0 {
                (left, right + missing)
            } else {
                (left, right)
            };
            if let Some(gain) = scorer.gain(l, r) {
                let candidate = Candidate {
                    split: Split { feature, rule: Rule::UpTo(t as u8), default_left },
                    gain,
                    left: l,
                    right: r,
                };
                if best.as_ref().is_none_or(|b| candidate.gain > b.gain) {
                    best = Some(candidate);
                }
            }
        }
    }
    best
}

impl std::ops::Add for BinSum {
    type Output = BinSum;
    fn add(mut self, o: Self) -> BinSum {
        self += o;
        self
    }
}

/// Categories ordered by gradient over (hessian + smoothing), then every
/// prefix (from either end) as the left set: the best many-vs-many split
/// without trying every subset (as LightGBM does).
fn categorical(feature: u32, sums: &[BinSum], total: BinSum, scorer: &Scorer<'_>) -> Option<Candidate> {
    let missing = sums[usize::from(MISSING)];
    let mut present: Vec<(f64, usize)> = (1..sums.len())
        .filter(|&b| sums[b].n > 0)
        .map(|b| {
            let (g, h) = scorer.real(sums[b]);
            (g / (h + scorer.limits.category_smoothing), b)
        })
        .collect();
    if present.len() < 2 {
        return None;
    }
    present.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut best: Option<Candidate> = None;
    let most = scorer.limits.max_categories.min(present.len() - 1);
    for reversed in [false, true] {
        let order: Vec<usize> =
            if reversed { present.iter().rev().map(|p| p.1).collect() } else { present.iter().map(|p| p.1).collect() };
        let mut mask = [0u64; 4];
        let mut left = BinSum::default();
        for &bin in order.iter().take(most) {
            mask[bin >> 6] |= 1 << (bin & 63);
            left += sums[bin];
            let right = total - missing - left;
            for default_left in [false, true] {
                if default_left && missing.n == 0 {
                    continue;
                }
                let (l, r) = if default_left { (left + missing, right) } else { (left, right + missing) };
                if let Some(gain) = scorer.gain(l, r) {
                    let candidate = Candidate {
                        split: Split { feature, rule: Rule::In(mask), default_left },
                        gain,
                        left: l,
                        right: r,
                    };
                    if best.as_ref().is_none_or(|b| candidate.gain > b.gain) {
                        best = Some(candidate);
                    }
                }
            }
        }
    }
    best
}

/// The best split over `features` of a leaf's histogram.
pub fn best_split(
    hist: &Histogram,
    layout: &Layout,
    bins: &[FeatureBins],
    features: &[usize],
    total: BinSum,
    q: &Quantizer,
    limits: &SplitLimits,
) -> Option<Candidate> {
    let scorer = Scorer::new(q, limits, total);
    features
        .iter()
        .fold(None, |best, &f| better(best, best_with(&scorer, f as u32, &bins[f], hist.feature(layout, f), total)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// What a leaf is worth, computed plainly (the scorer must agree to the bit).
    fn score(q: &Quantizer, sum: BinSum, l2: f64) -> f64 {
        let (g, h) = q.real(sum);
        g * g / (h + l2)
    }

    #[test]
    fn the_scorer_computes_what_the_plain_formulas_do() {
        let mut rng = StdRng::seed_from_u64(9);
        let quantizers = [
            Quantizer::new(1.0, 0.25),
            Quantizer::new(7.3, 1.0),
            Quantizer::new(1.0, 0.25 * 10.0 / 9.0),
            Quantizer::new(3.0, 1e-9),
        ];
        for q in quantizers {
            for min_hessian in [1e-3, 0.0, 0.7, 1e-9, 5.0] {
                let limits = SplitLimits { min_hessian, min_rows: 0, l2: 0.5, ..SplitLimits::default() };
                let total = BinSum { g: 12_345, h: 1 << 33, n: 100 };
                let scorer = Scorer::new(&q, &limits, total);
                assert_eq!(scorer.parent.to_bits(), score(&q, total, limits.l2).to_bits());
                let near = scorer.least_h.unwrap_or(0);
                for i in 0..20_000 {
                    let h = if i % 2 == 0 { rng.random_range(0..1i64 << 40) } else { near + rng.random_range(-40..40) };
                    let sum = BinSum { g: rng.random_range(-(1i64 << 40)..1 << 40), h, n: 1 };
                    let (g, h) = q.real(sum);
                    let (sg, sh) = scorer.real(sum);
                    assert_eq!((sg.to_bits(), sh.to_bits()), (g.to_bits(), h.to_bits()), "{q:?} {sum:?}");
                    assert_eq!(scorer.score(sum).to_bits(), score(&q, sum, limits.l2).to_bits());
                    assert_eq!(scorer.allowed(sum), h >= min_hessian, "{q:?} {min_hessian} {sum:?}");
                }
            }
        }
    }

    fn sum(g: f64, h: f64, n: i64, q: &Quantizer) -> BinSum {
        let p = q.quantize(g, h);
        BinSum { g: p.g, h: p.h, n }
    }

    #[test]
    fn numeric_split_separates_opposite_gradients_and_places_missing() {
        let q = Quantizer::new(100.0, 100.0);
        // missing rows pull like the right side
        let sums =
            vec![sum(5.0, 5.0, 5, &q), sum(-10.0, 10.0, 10, &q), sum(-10.0, 10.0, 10, &q), sum(10.0, 10.0, 10, &q)];
        let total = sums.iter().fold(BinSum::default(), |a, b| a + *b);
        let limits = SplitLimits { min_rows: 1, ..SplitLimits::default() };
        let bins = FeatureBins::Numeric { upper: vec![1.0, 2.0, f32::INFINITY] };
        let best = best_for_feature(3, &bins, &sums, total, &q, &limits).unwrap();
        assert_eq!(best.split, Split { feature: 3, rule: Rule::UpTo(2), default_left: false });
        assert_eq!(best.left.n, 20);
        assert_eq!(best.right.n, 15);
        assert!(best.gain > 0.0);
    }

    #[test]
    fn small_children_are_refused() {
        let q = Quantizer::new(100.0, 100.0);
        let sums = vec![BinSum::default(), sum(-10.0, 10.0, 3, &q), sum(10.0, 10.0, 30, &q)];
        let total = sums.iter().fold(BinSum::default(), |a, b| a + *b);
        let bins = FeatureBins::Numeric { upper: vec![1.0, f32::INFINITY] };
        assert!(best_for_feature(0, &bins, &sums, total, &q, &SplitLimits::default()).is_none());
    }

    #[test]
    fn categorical_split_groups_categories_by_their_pull() {
        let q = Quantizer::new(100.0, 100.0);
        // Bins 1 and 3 pull down, 2 and 4 up: the best split groups {1,3} against {2,4}.
        let sums = vec![
            BinSum::default(),
            sum(-20.0, 10.0, 30, &q),
            sum(20.0, 10.0, 30, &q),
            sum(-20.0, 10.0, 30, &q),
            sum(20.0, 10.0, 30, &q),
        ];
        let total = sums.iter().fold(BinSum::default(), |a, b| a + *b);
        let bins = FeatureBins::Categorical { bin_of: vec![1, 2, 3], other: 4 };
        let best = best_for_feature(0, &bins, &sums, total, &q, &SplitLimits::default()).unwrap();
        let left: Vec<u8> = (1..=4).filter(|b| best.split.rule.goes_left(*b)).collect();
        assert!(left == vec![1, 3] || left == vec![2, 4], "{left:?}");
        assert_eq!(best.left.n, 60);
    }
}
