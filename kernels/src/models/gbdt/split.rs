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

/// What a leaf with these sums is worth: G² / (H + λ).
fn score(q: &Quantizer, sum: BinSum, l2: f64) -> f64 {
    let (g, h) = q.real(sum);
    g * g / (h + l2)
}

/// The value of a leaf with these sums (before the learning rate): -G / (H + λ).
pub fn leaf_value(q: &Quantizer, sum: BinSum, l2: f64) -> f64 {
    let (g, h) = q.real(sum);
    if h + l2 <= 0.0 { 0.0 } else { -g / (h + l2) }
}

struct Scorer<'a> {
    q: &'a Quantizer,
    limits: &'a SplitLimits,
    parent: f64,
}

impl Scorer<'_> {
    fn allowed(&self, side: BinSum) -> bool {
        side.n as u64 >= self.limits.min_rows && self.q.real(side).1 >= self.limits.min_hessian
    }

    /// The gain of splitting into `left` and `right`, if allowed.
    fn gain(&self, left: BinSum, right: BinSum) -> Option<f64> {
        if !self.allowed(left) || !self.allowed(right) {
            return None;
        }
        let gain = score(self.q, left, self.limits.l2) + score(self.q, right, self.limits.l2) - self.parent;
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
    let scorer = Scorer { q, limits, parent: score(q, total, limits.l2) };
    if bins.is_categorical() {
        categorical(feature, sums, total, &scorer)
    } else {
        numeric(feature, sums, total, &scorer)
    }
}

fn numeric(feature: u32, sums: &[BinSum], total: BinSum, scorer: &Scorer<'_>) -> Option<Candidate> {
    let missing = sums[usize::from(MISSING)];
    let mut best: Option<Candidate> = None;
    let mut left = BinSum::default();
    // Thresholds after each value bin but the last.
    for t in 1..sums.len().saturating_sub(1) {
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
            let (g, h) = scorer.q.real(sums[b]);
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
    features.iter().fold(None, |best, &f| {
        better(best, best_for_feature(f as u32, &bins[f], hist.feature(layout, f), total, q, limits))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
