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

use super::{
    bins::{BinnedRows, FeatureBins},
    par,
};

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
        let q = |v: f64, scale: f64| round_half_away((v * scale).clamp(-FIXED_ONE, FIXED_ONE));
        GradPair { g: q(g, self.g_scale), h: q(h, self.h_scale) }
    }

    /// The real gradient and hessian sums of a quantized sum.
    pub fn real(&self, sum: BinSum) -> (f64, f64) {
        (sum.g as f64 / self.g_scale, sum.h as f64 / self.h_scale)
    }
}

/// `x.round() as i64` for `|x| <= 2^30` (NaN gives 0, as the cast does),
/// without the call to libm's `round` that x86-64's baseline instruction
/// set needs: truncate, then step away from zero when the dropped fraction
/// (exact, as `|x| < 2^52`) is at least a half.
fn round_half_away(x: f64) -> i64 {
    let whole = x as i64;
    let fraction = x - whole as f64;
    whole + i64::from(fraction >= 0.5) - i64::from(fraction <= -0.5)
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

    /// [`Histogram::subtract`] in place: a parent's histogram becomes its
    /// other child's, with no new histogram to allocate and fill.
    pub fn remove(&mut self, child: &Histogram) {
        for (p, c) in self.sums.iter_mut().zip(&child.sums) {
            *p -= *c;
        }
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

/// Features of a block, at most: a row's bins of a block span at most one
/// or two cache lines, and a block's histogram stays in the core's cache.
const BLOCK_FEATURES: usize = 32;

/// A feature whose most common bin holds at least this share of the rows
/// is sparse: its rows in other bins are listed, and the common bin's sums
/// are the leaf's minus the other bins' (exact, the sums being integers).
const SPARSE_SHARE: f64 = 0.5;

/// Sparse features needed at least to keep them apart: the sparse pass
/// pays a loop per row, worth it only when it skips many updates.
const MIN_SPARSE_FEATURES: usize = 8;

/// Binned rows stored row by row, for histogram passes over a leaf's rows
/// (scattered through the data).
///
/// Dense features sit in blocks: a pass reads each row's bins of a block
/// from one place instead of one byte per feature column, and the
/// features' bin updates of one row are independent of each other, so the
/// core overlaps them (a column pass over a sorted column adds to the same
/// bin row after row and waits on each addition). Sparse features (mostly
/// one value, as the blank pixels of an image) list each row's other
/// values only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowBlocks {
    rows: usize,
    blocks: Vec<RowBlock>,
    sparse: SparseRows,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RowBlock {
    features: Vec<usize>,
    /// `rows x features.len()`, row-major.
    bytes: Vec<u8>,
}

/// Sparse features' bins other than each one's common bin, row by row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SparseRows {
    /// `(feature, common bin)`.
    features: Vec<(usize, u8)>,
    /// Row `r`'s entries are `entries[starts[r]..starts[r + 1]]`.
    starts: Vec<usize>,
    /// `feature << 8 | bin`.
    entries: Vec<u32>,
}

impl RowBlocks {
    pub fn new(data: &BinnedRows) -> Self {
        let (dense, sparse) = split_sparse(data);
        let blocks = dense
            .chunks(BLOCK_FEATURES)
            .map(|features| {
                let width = features.len();
                let mut bytes = vec![0u8; data.rows * width];
                for (j, &f) in features.iter().enumerate() {
                    for (row, &bin) in bytes.chunks_exact_mut(width).zip(&data.columns[f]) {
                        row[j] = bin;
                    }
                }
                RowBlock { features: features.to_vec(), bytes }
            })
            .collect();
        Self { rows: data.rows, blocks, sparse: SparseRows::new(data, sparse) }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// For each block holding some of `features`: the block, and each such
    /// feature's place in the block's rows with its first bin's index in
    /// the histogram.
    fn plan(&self, features: &[usize], layout: &Layout) -> Vec<(&RowBlock, Vec<(usize, usize)>)> {
        let wanted = wanted(features, layout.features());
        self.blocks
            .iter()
            .filter_map(|block| {
                let places: Vec<(usize, usize)> = (block.features.iter().enumerate())
                    .filter(|(_, f)| wanted[**f])
                    .map(|(place, &f)| (place, layout.offsets[f]))
                    .collect();
                (!places.is_empty()).then_some((block, places))
            })
            .collect()
    }
}

/// Whether each of `count` features is among `features`.
fn wanted(features: &[usize], count: usize) -> Vec<bool> {
    let mut wanted = vec![false; count];
    for &f in features {
        if let Some(w) = wanted.get_mut(f) {
            *w = true;
        }
    }
    wanted
}

/// The dense features, and the sparse ones with their common bins.
/// Features of one value here are always sparse (they cost nothing there:
/// no entries), and keep whole blocks free of features no tree reads.
fn split_sparse(data: &BinnedRows) -> (Vec<usize>, Vec<(usize, u8)>) {
    let mut dense = Vec::new();
    let mut sparse = Vec::new();
    let mut constant = Vec::new();
    for (f, column) in data.columns.iter().enumerate() {
        let mut counts = [0usize; 256];
        for &bin in column {
            counts[usize::from(bin)] += 1;
        }
        let (common, &count) = counts.iter().enumerate().max_by_key(|(b, c)| (**c, usize::MAX - b)).unwrap_or((0, &0));
        if count == data.rows {
            constant.push((f, common as u8));
        } else if count as f64 >= SPARSE_SHARE * data.rows as f64 {
            sparse.push((f, common as u8));
        } else {
            dense.push(f);
        }
    }
    if sparse.len() < MIN_SPARSE_FEATURES {
        dense.extend(sparse.drain(..).map(|(f, _)| f));
        dense.sort_unstable();
    }
    sparse.extend(constant);
    sparse.sort_unstable();
    (dense, sparse)
}

impl SparseRows {
    fn new(data: &BinnedRows, features: Vec<(usize, u8)>) -> Self {
        if features.is_empty() {
            return Self::default();
        }
        let mut starts = Vec::with_capacity(data.rows + 1);
        let mut entries = Vec::new();
        for r in 0..data.rows {
            starts.push(entries.len());
            for &(f, common) in &features {
                let bin = data.columns[f][r];
                if bin != common {
                    entries.push((f as u32) << 8 | u32::from(bin));
                }
            }
        }
        starts.push(entries.len());
        Self { features, starts, entries }
    }

    /// Adds `rows` to the bins of every sparse feature (the common bins
    /// too, from the rows' total); zeroes the features not `wanted`.
    fn add(&self, sums: &mut [BinSum], rows: &[u32], grads: &[GradPair], wanted: &[bool], layout: &Layout) {
        if self.features.is_empty() {
            return;
        }
        let mut total = BinSum::default();
        for &r in rows {
            let r = r as usize;
            let gp = grads[r];
            total += BinSum { g: gp.g, h: gp.h, n: 1 };
            for &e in &self.entries[self.starts[r]..self.starts[r + 1]] {
                let bin = &mut sums[layout.offsets[(e >> 8) as usize] + (e & 0xff) as usize];
                bin.g += gp.g;
                bin.h += gp.h;
                bin.n += 1;
            }
        }
        for &(f, common) in &self.features {
            let range = layout.range(f);
            if !wanted[f] {
                sums[range].fill(BinSum::default());
                continue;
            }
            let others = sums[range.clone()].iter().fold(BinSum::default(), |a, b| a + *b);
            sums[range.start + usize::from(common)] = total - others;
        }
    }
}

impl Histogram {
    /// The histogram of `rows` (indices into `blocks`' rows, with their
    /// quantized gradients in `grads`, indexed like the rows) over
    /// `features`, on up to `threads` threads (each sums a part of the rows;
    /// the parts' integer sums add up to the same histogram).
    pub fn from_blocks(
        blocks: &RowBlocks,
        rows: &[u32],
        grads: &[GradPair],
        features: &[usize],
        layout: &Layout,
        threads: usize,
    ) -> Self {
        let plan = blocks.plan(features, layout);
        let wanted = wanted(features, layout.features());
        let updates = rows.len() * features.len();
        let parts = par::threads_for(updates, threads);
        let mut partials = par::map_chunks(rows, parts, |rows| {
            let mut hist = Histogram::zeros(layout);
            for (block, places) in &plan {
                add_block(&mut hist.sums, block, places, rows, grads);
            }
            blocks.sparse.add(&mut hist.sums, rows, grads, &wanted, layout);
            hist
        });
        let mut hist = partials.swap_remove(0);
        for other in &partials {
            hist.merge(other);
        }
        hist
    }
}

/// Adds `rows` to the bins of every feature of a block (`bytes`, rows of
/// `offsets.len()` bins), feature `j`'s bins starting at `offsets[j]`.
fn add_whole_block(sums: &mut [BinSum], bytes: &[u8], offsets: &[usize], rows: &[u32], grads: &[GradPair]) {
    let width = offsets.len();
    for &r in rows {
        let r = r as usize;
        let gp = grads[r];
        let row = &bytes[r * width..r * width + width];
        for (&value, &offset) in row.iter().zip(offsets) {
            let bin = &mut sums[offset + usize::from(value)];
            bin.g += gp.g;
            bin.h += gp.h;
            bin.n += 1;
        }
    }
}

/// Adds `rows` to the bins of the features at `places` of one block.
fn add_block(sums: &mut [BinSum], block: &RowBlock, places: &[(usize, usize)], rows: &[u32], grads: &[GradPair]) {
    let width = block.features.len();
    if places.len() == width {
        // Every feature of the block (the usual case): the row's bins and
        // the features' offsets in step, with no place to look up.
        let offsets: Vec<usize> = places.iter().map(|&(_, offset)| offset).collect();
        return add_whole_block(sums, &block.bytes, &offsets, rows, grads);
    }
    for &r in rows {
        let r = r as usize;
        let gp = grads[r];
        let row = &block.bytes[r * width..r * width + width];
        for &(place, offset) in places {
            let bin = &mut sums[offset + usize::from(row[place])];
            bin.g += gp.g;
            bin.h += gp.h;
            bin.n += 1;
        }
    }
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
    fn row_blocks_give_the_column_histograms() {
        // 40 features: dense ones, and sparse ones (mostly one value, some
        // missing) that the blocks list row by row.
        let mut rng = StdRng::seed_from_u64(2);
        // Enough rows for a build over all of them to use two threads.
        let rows = 30_000;
        let x = Array2::from_shape_fn((rows, 40), |(_, f)| {
            if f % 3 == 0 {
                rng.random_range(-3.0f32..3.0)
            } else if rng.random_bool(0.1) {
                if rng.random_bool(0.3) { f32::NAN } else { rng.random_range(1.0f32..9.0) }
            } else {
                0.0
            }
        });
        let bins: Vec<FeatureBins> =
            (0..40).map(|f| numeric_bins(&sketch(x.column(f).iter().map(|v| f64::from(*v)), 4096), 64)).collect();
        let data = BinnedRows::new(x.view(), &bins);
        let layout = Layout::new(&bins);
        let blocks = RowBlocks::new(&data);
        assert!(blocks.sparse.features.len() >= MIN_SPARSE_FEATURES, "some features are sparse");
        let q = Quantizer::new(1.0, 0.25);
        let grads: Vec<GradPair> =
            (0..rows).map(|_| q.quantize(rng.random_range(-1.0..1.0), rng.random_range(0.0..0.25))).collect();
        for fraction in [1.0, 0.5, 0.1] {
            let picked: Vec<u32> = (0..rows as u32).filter(|_| rng.random_bool(fraction)).collect();
            let features: Vec<usize> = (0..40).filter(|f| fraction == 1.0 || f % 4 != 1).collect();
            let whole = Histogram::build(&data, &picked, &grads, &features, &layout);
            for threads in [1, 2, 3] {
                assert_eq!(Histogram::from_blocks(&blocks, &picked, &grads, &features, &layout, threads), whole);
            }
        }
    }

    #[test]
    fn rounding_matches_the_standard_library() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut values: Vec<f64> = vec![0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, f64::NAN, FIXED_ONE, -FIXED_ONE];
        values.extend([0.5f64.next_down(), (-0.5f64).next_up(), 2.5f64.next_down(), 2.5f64.next_up()]);
        values.extend((0..100_000).map(|_| rng.random_range(-FIXED_ONE..FIXED_ONE)));
        values.extend((0..100_000).map(|_| f64::from(rng.random_range(-1000..1000)) / 4.0));
        for v in values {
            assert_eq!(round_half_away(v), v.round() as i64, "{v}");
        }
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
