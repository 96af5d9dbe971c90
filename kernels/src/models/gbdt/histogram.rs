//! Gradient histograms: for each feature and bin, the sums of the rows'
//! gradients and hessians and the row count.
//!
//! Gradients are quantized to integers before they are summed, so a
//! histogram is exact: the same rows give the same sums however they are
//! split between shards and nodes and in whatever order the parts are
//! merged, and a sibling's histogram is its parent's minus the other child's
//! with nothing lost. This is what lets nodes build parts of a histogram
//! where their rows live and still grow the tree one machine would.

use std::ops::{AddAssign, SubAssign};

use serde::{Deserialize, Serialize};

use super::bins::{BinnedRows, FeatureBins};

/// Sums over some rows: gradient, hessian (both quantized) and count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinSum {
    pub g: i64,
    pub h: i64,
    pub n: i64,
}

impl AddAssign for BinSum {
    fn add_assign(&mut self, o: Self) {
        self.g += o.g;
        self.h += o.h;
        self.n += o.n;
    }
}

impl SubAssign for BinSum {
    fn sub_assign(&mut self, o: Self) {
        self.g -= o.g;
        self.h -= o.h;
        self.n -= o.n;
    }
}

impl std::ops::Sub for BinSum {
    type Output = BinSum;
    fn sub(mut self, o: Self) -> BinSum {
        self -= o;
        self
    }
}

/// A row's gradient and hessian, quantized.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GradPair {
    pub g: i64,
    pub h: i64,
}

/// Fixed-point scales of gradients and hessians. A quantized value is at
/// most 2^30 in magnitude, so sums over 2^33 rows fit in an i64.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantizer {
    pub g_scale: f64,
    pub h_scale: f64,
}

const FIXED_ONE: f64 = (1u64 << 30) as f64;

impl Quantizer {
    /// Scales for gradients bounded by `g_max` and hessians by `h_max` in
    /// magnitude (larger values saturate).
    pub fn new(g_max: f64, h_max: f64) -> Self {
        Self { g_scale: FIXED_ONE / g_max.max(1e-12), h_scale: FIXED_ONE / h_max.max(1e-12) }
    }

    pub fn quantize(&self, g: f64, h: f64) -> GradPair {
        let q = |v: f64, scale: f64| (v * scale).round().clamp(-FIXED_ONE, FIXED_ONE) as i64;
        GradPair { g: q(g, self.g_scale), h: q(h, self.h_scale) }
    }

    /// The real gradient and hessian sums of a quantized sum.
    pub fn real(&self, sum: BinSum) -> (f64, f64) {
        (sum.g as f64 / self.g_scale, sum.h as f64 / self.h_scale)
    }
}

/// Where each feature's bins start in a flattened histogram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// `offsets[f]..offsets[f + 1]` are feature `f`'s bins.
    pub offsets: Vec<usize>,
}

impl Layout {
    pub fn new(bins: &[FeatureBins]) -> Self {
        let mut offsets = vec![0];
        for b in bins {
            offsets.push(offsets.last().expect("starts at 0") + b.len());
        }
        Self { offsets }
    }

    pub fn features(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn total_bins(&self) -> usize {
        *self.offsets.last().expect("starts at 0")
    }

    pub fn range(&self, feature: usize) -> std::ops::Range<usize> {
        self.offsets[feature]..self.offsets[feature + 1]
    }
}

/// The sums of every bin of some features (others stay zero).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    pub sums: Vec<BinSum>,
}

impl Histogram {
    pub fn zeros(layout: &Layout) -> Self {
        Self { sums: vec![BinSum::default(); layout.total_bins()] }
    }

    /// The histogram of `rows` (indices into `data`, with their quantized
    /// gradients in `grads`, indexed like `data`) over `features`.
    pub fn build(data: &BinnedRows, rows: &[u32], grads: &[GradPair], features: &[usize], layout: &Layout) -> Self {
        let mut hist = Self::zeros(layout);
        hist.add_rows(data, rows, grads, features, layout);
        hist
    }

    /// Adds `rows` to the bins of `features`, splitting the features over
    /// the machine's cores when there is enough work.
    pub fn add_rows(
        &mut self,
        data: &BinnedRows,
        rows: &[u32],
        grads: &[GradPair],
        features: &[usize],
        layout: &Layout,
    ) {
        // Gradients in row order once, so every feature pass reads them
        // sequentially.
        let ordered: Vec<GradPair> = rows.iter().map(|&r| grads[r as usize]).collect();
        let threads = worker_threads(rows.len() * features.len());
        if threads <= 1 {
            for &f in features {
                let range = layout.range(f);
                add_feature(&mut self.sums[range], &data.columns[f], rows, &ordered);
            }
            return;
        }
        // Each thread takes every `threads`-th feature: disjoint bins, and
        // the same sums as one thread (integer addition).
        let mut slices: Vec<(usize, &mut [BinSum])> = Vec::new();
        let mut rest: &mut [BinSum] = &mut self.sums;
        let mut at = 0;
        let mut wanted: Vec<usize> = features.to_vec();
        wanted.sort_unstable();
        for &f in &wanted {
            let range = layout.range(f);
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(range.start - at);
            let (mine, tail) = tail.split_at_mut(range.len());
            slices.push((f, mine));
            rest = tail;
            at = range.end;
        }
        let mut groups: Vec<Vec<(usize, &mut [BinSum])>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, slice) in slices.into_iter().enumerate() {
            groups[i % threads].push(slice);
        }
        let ordered = &ordered;
        std::thread::scope(|scope| {
            for group in groups {
                scope.spawn(move || {
                    for (f, sums) in group {
                        add_feature(sums, &data.columns[f], rows, ordered);
                    }
                });
            }
        });
    }

    /// Adds another histogram of the same layout (merging nodes' parts).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            *a += *b;
        }
    }

    /// `self - child`: the histogram of a sibling from its parent's.
    pub fn subtract(&self, child: &Histogram) -> Histogram {
        Histogram { sums: self.sums.iter().zip(&child.sums).map(|(p, c)| *p - *c).collect() }
    }

    /// The sums of one feature's bins.
    pub fn feature<'a>(&'a self, layout: &Layout, feature: usize) -> &'a [BinSum] {
        &self.sums[layout.range(feature)]
    }

    /// The bins of features `features` only (a slice to send to the node that
    /// merges them), in layout order.
    pub fn slice(&self, layout: &Layout, features: std::ops::Range<usize>) -> Vec<BinSum> {
        if features.is_empty() {
            return vec![];
        }
        self.sums[layout.offsets[features.start]..layout.offsets[features.end]].to_vec()
    }
}

fn add_feature(sums: &mut [BinSum], column: &[u8], rows: &[u32], ordered: &[GradPair]) {
    for (&r, gp) in rows.iter().zip(ordered) {
        let bin = &mut sums[usize::from(column[r as usize])];
        bin.g += gp.g;
        bin.h += gp.h;
        bin.n += 1;
    }
}

/// Threads worth starting for `work` bin updates (a thread costs tens of
/// microseconds; below about a million updates one core is faster).
fn worker_threads(work: usize) -> usize {
    if work < 1 << 20 { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::sketch::sketch;
    use crate::models::gbdt::bins::{FeatureBins, numeric_bins};
    use ndarray::Array2;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn problem(rows: usize) -> (BinnedRows, Vec<GradPair>, Layout) {
        let mut rng = StdRng::seed_from_u64(1);
        let x = Array2::from_shape_simple_fn((rows, 5), || {
            if rng.random_bool(0.1) { f32::NAN } else { rng.random_range(-3.0f32..3.0) }
        });
        let bins: Vec<FeatureBins> =
            (0..5).map(|f| numeric_bins(&sketch(x.column(f).iter().map(|v| f64::from(*v)), 4096), 32)).collect();
        let q = Quantizer::new(1.0, 0.25);
        let grads = (0..rows).map(|_| q.quantize(rng.random_range(-1.0..1.0), rng.random_range(0.0..0.25))).collect();
        (BinnedRows::new(x.view(), &bins), grads, Layout::new(&bins))
    }

    #[test]
    fn parts_built_apart_merge_into_the_whole() {
        let (data, grads, layout) = problem(3000);
        let features: Vec<usize> = (0..5).collect();
        let all: Vec<u32> = (0..3000).collect();
        let whole = Histogram::build(&data, &all, &grads, &features, &layout);
        // Three "nodes", each with a third of the rows, merged in another order.
        let parts: Vec<Histogram> =
            all.chunks(1000).map(|rows| Histogram::build(&data, rows, &grads, &features, &layout)).collect();
        let mut merged = parts[2].clone();
        merged.merge(&parts[0]);
        merged.merge(&parts[1]);
        assert_eq!(merged, whole);
        // A sibling by subtraction equals the sibling built directly.
        assert_eq!(whole.subtract(&parts[0]), {
            let mut rest = parts[1].clone();
            rest.merge(&parts[2]);
            rest
        });
        for f in 0..5 {
            assert_eq!(whole.feature(&layout, f).iter().map(|s| s.n).sum::<i64>(), 3000);
        }
    }

    #[test]
    fn threaded_and_single_threaded_builds_agree() {
        let (data, grads, layout) = problem(300_000);
        let all: Vec<u32> = (0..300_000).collect();
        let threaded = Histogram::build(&data, &all, &grads, &[0, 1, 2, 3, 4], &layout);
        let mut single = Histogram::zeros(&layout);
        let ordered: Vec<GradPair> = grads.clone();
        for f in 0..5 {
            add_feature(&mut single.sums[layout.range(f)], &data.columns[f], &all, &ordered);
        }
        assert_eq!(threaded, single);
    }

    #[test]
    fn quantizing_saturates_and_round_trips() {
        let q = Quantizer::new(2.0, 1.0);
        let p = q.quantize(1.0, 0.5);
        let (g, h) = q.real(BinSum { g: p.g, h: p.h, n: 1 });
        assert!((g - 1.0).abs() < 1e-8 && (h - 0.5).abs() < 1e-8);
        assert_eq!(q.quantize(1e9, 0.0).g, 1 << 30);
    }
}
