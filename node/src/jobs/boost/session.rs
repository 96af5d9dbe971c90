//! One node's part in one boosted job: the rows it holds (a worker) and
//! the slice of features whose histograms it merges (an owner). Plain
//! state and methods; [`super::sessions`] runs them off the event loop.

use std::{collections::HashMap, ops::Range};

use mass_kernels::models::gbdt::{
    BoostSetup,
    bins::BinnedRows,
    histogram::{BinSum, Histogram, Layout},
    objective::Targets,
    rows::RowState,
    split::{Candidate, best_for_feature, better},
    tree::Tree,
};
use mass_protocol::ContentId;

use super::messages::{Generation, MergeItem, SliceItem, SparseSlice};
use crate::jobs::learners::{Labels, RowSet};

/// The rows a worker holds, and the histograms it built this step.
pub struct Rows {
    pub train: RowState,
    pub validation: RowState,
    /// Rows of each shard (in the order opened) in `train` and `validation`.
    train_ranges: Vec<Range<usize>>,
    validation_ranges: Vec<Range<usize>>,
    round: u32,
    /// Whether a round has started (and so every output has gradients).
    started: bool,
    /// Histograms built for the current step, by (output, node).
    built: HashMap<(u32, u32), Histogram>,
}

/// Why a worker cannot answer a request for histogram slices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SliceError {
    #[error("no round has started on these rows; start one before asking for histograms")]
    NotStarted,
    #[error("output {output} is not one of the job's {outputs} outputs")]
    Output { output: u32, outputs: usize },
}

/// The merged histograms of the owned slice of features, by (output, node).
#[derive(Default)]
pub struct Owned {
    merged: HashMap<(u32, u32), Vec<BinSum>>,
}

/// What every part of a session reads and never changes.
pub struct Plan {
    pub job: ContentId,
    pub generation: Generation,
    pub setup: BoostSetup,
    pub layout: Layout,
    /// Features whose histograms this node merges.
    pub slice: Range<usize>,
    pub workers: Vec<String>,
}

impl Plan {
    /// The bins of `features` (a range of feature indices), in layout order.
    pub fn bins_of(&self, features: &Range<usize>) -> Range<usize> {
        if features.is_empty() {
            return 0..0;
        }
        self.layout.offsets[features.start]..self.layout.offsets[features.end]
    }
}

fn targets(labels: &Labels) -> Targets {
    match labels {
        Labels::Classes(c) => Targets::Classes(c.iter().map(|&c| c as u32).collect()),
        Labels::Values(v) => Targets::Values(v.iter().map(|&v| f64::from(v)).collect()),
    }
}

fn row_state(plan: &Plan, parts: &[RowSet]) -> (RowState, Vec<Range<usize>>) {
    let mut ranges = Vec::new();
    let mut at = 0;
    let mut binned = Vec::new();
    let mut labels = Vec::new();
    let mut global = Vec::new();
    for part in parts {
        ranges.push(at..at + part.rows());
        at += part.rows();
        binned.push(BinnedRows::new(part.x().view(), &plan.setup.bins));
        labels.push(targets(&part.labels));
        global.extend(part.global_rows.iter().copied());
    }
    let state = RowState::new(
        BinnedRows::concat(&binned),
        Targets::concat(&labels),
        global,
        plan.setup.objective,
        &plan.setup.init,
    );
    (state, ranges)
}

impl Rows {
    /// Rows of each shard (training and validation parts), with the trees
    /// of finished rounds added to their scores.
    pub fn new(plan: &Plan, train: &[RowSet], validation: &[RowSet], rounds: &[Vec<Tree>]) -> Self {
        let (mut train, train_ranges) = row_state(plan, train);
        let (mut validation, validation_ranges) = row_state(plan, validation);
        for trees in rounds {
            for (k, tree) in trees.iter().enumerate() {
                train.apply(tree, k);
                validation.apply(tree, k);
            }
        }
        Self { train, validation, train_ranges, validation_ranges, round: 0, started: false, built: HashMap::new() }
    }

    /// Gradients and sample of round `round`, every output's tree started;
    /// each output's root sums here.
    pub fn start_round(&mut self, plan: &Plan, round: u32) -> Vec<BinSum> {
        let params = &plan.setup.params;
        self.round = round;
        self.started = true;
        self.built.clear();
        self.train.start_round(&plan.setup.quantizer, params.seed, u64::from(round), params.row_fraction);
        let outputs = plan.setup.objective.scores_per_row();
        (0..outputs)
            .map(|k| {
                self.train.start_tree(k);
                self.train.sum(k, 0)
            })
            .collect()
    }

    /// The bins of `features` of each item's node, applying its split first
    /// (once: several owners ask for the same node). Items come from a
    /// peer: an output the job lacks, or a request before any round
    /// started (no gradients yet), is refused rather than indexed.
    pub fn slices(
        &mut self,
        plan: &Plan,
        features: Range<usize>,
        items: &[SliceItem],
    ) -> Result<Vec<SparseSlice>, SliceError> {
        if !self.started {
            return Err(SliceError::NotStarted);
        }
        let outputs = plan.setup.objective.scores_per_row();
        if let Some(item) = items.iter().find(|i| i.output as usize >= outputs) {
            return Err(SliceError::Output { output: item.output, outputs });
        }
        let bins = plan.bins_of(&features);
        let slices = items
            .iter()
            .map(|item| {
                let output = item.output as usize;
                if let Some(order) = &item.order
                    && self.train.has_leaf(output, order.node)
                {
                    self.train.split(output, order);
                    // The previous step's histograms of this tree are done with.
                    self.built.retain(|(o, _), _| *o != item.output);
                }
                let key = (item.output, item.node);
                if !self.built.contains_key(&key) {
                    let features = plan.setup.tree_features(self.round as usize, output);
                    let hist = self.train.histogram(output, item.node, &features, &plan.layout);
                    self.built.insert(key, hist);
                }
                let hist = &self.built[&key];
                SparseSlice {
                    bins: hist.sums[bins.clone()]
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.n != 0)
                        .map(|(i, s)| (i as u32, *s))
                        .collect(),
                }
            })
            .collect();
        Ok(slices)
    }

    /// Adds the round's trees to every row's score; the summed loss of
    /// each shard's training and validation rows.
    pub fn end_round(&mut self, trees: &[Tree]) -> (Vec<(f64, u64)>, Vec<(f64, u64)>) {
        for (k, tree) in trees.iter().enumerate() {
            self.train.apply(tree, k);
            self.validation.apply(tree, k);
        }
        self.built.clear();
        let train = self.train_ranges.iter().map(|r| self.train.loss_of(r.clone())).collect();
        let validation = self.validation_ranges.iter().map(|r| self.validation.loss_of(r.clone())).collect();
        (train, validation)
    }

    pub fn rows(&self) -> u64 {
        self.train.rows() as u64
    }
}

impl Owned {
    /// Merges each item's slice from every worker (`parts[w][i]` is worker
    /// `w`'s slice of item `i`), derives siblings by subtraction, and finds
    /// the best split over the owned features of each wanted node.
    pub fn merge(
        &mut self,
        plan: &Plan,
        round: u32,
        items: &[MergeItem],
        parts: &[Vec<SparseSlice>],
    ) -> Vec<(u32, u32, Option<Candidate>)> {
        let width = plan.bins_of(&plan.slice).len();
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let mut small = vec![BinSum::default(); width];
            for worker in parts {
                if let Some(slice) = worker.get(i) {
                    for (bin, sum) in &slice.bins {
                        if let Some(at) = small.get_mut(*bin as usize) {
                            *at += *sum;
                        }
                    }
                }
            }
            let parent = item.order.and_then(|o| self.merged.remove(&(item.output, o.node)));
            let features = plan.setup.tree_features(round as usize, item.output as usize);
            let best = |hist: &[BinSum], total: BinSum| best_in_slice(plan, &features, hist, total);
            if item.want_small {
                out.push((item.output, item.small, best(&small, item.small_sum)));
            }
            if let (Some((large, large_sum, want_large)), Some(parent)) = (item.large, parent) {
                let sibling: Vec<BinSum> = parent.iter().zip(&small).map(|(p, s)| *p - *s).collect();
                if want_large {
                    out.push((item.output, large, best(&sibling, large_sum)));
                    self.merged.insert((item.output, large), sibling);
                }
            }
            if item.want_small {
                self.merged.insert((item.output, item.small), small);
            }
        }
        out
    }

    /// Forgets every merged histogram (a new round).
    pub fn clear(&mut self) {
        self.merged.clear();
    }
}

/// The best split over the owned features among `features`, from a merged
/// slice histogram.
fn best_in_slice(plan: &Plan, features: &[usize], hist: &[BinSum], total: BinSum) -> Option<Candidate> {
    let base = plan.layout.offsets[plan.slice.start];
    features.iter().filter(|f| plan.slice.contains(*f)).fold(None, |best, &f| {
        let range = plan.layout.range(f);
        let sums = &hist[range.start - base..range.end - base];
        let found = best_for_feature(
            f as u32,
            &plan.setup.bins[f],
            sums,
            total,
            &plan.setup.quantizer,
            &plan.setup.params.limits,
        );
        better(best, found)
    })
}

/// Bins one owner merges per split before the features are sliced among
/// more owners: 64k bins from each worker is about 1.5 MB a split.
pub const OWNER_BINS: usize = 1 << 16;

/// How many workers own a slice of the features. Each split the owners
/// pull every worker's histograms of their slices; when the driver is the
/// only owner that is one exchange, while several owners cost two (the
/// driver asks them, they ask the workers). So one owner does it all until
/// the bins it would pull pass [`OWNER_BINS`] per worker.
pub fn owner_count(total_bins: usize, workers: usize) -> usize {
    total_bins.div_ceil(OWNER_BINS).clamp(1, workers.max(1))
}

/// Splits features `0..features` into `parts` contiguous slices of about
/// equal bins, so owners merge about equal work.
pub fn feature_slices(layout: &Layout, parts: usize) -> Vec<Range<usize>> {
    let features = layout.features();
    let parts = parts.max(1);
    let total = layout.total_bins().max(1);
    let mut slices = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 0..parts {
        let goal = total * (p + 1) / parts;
        let mut end = start;
        while end < features && (layout.offsets[end + 1] <= goal || p + 1 == parts) {
            end += 1;
        }
        slices.push(start..end);
        start = end;
    }
    slices
}

#[cfg(test)]
mod tests {
    use super::*;
    use mass_kernels::models::gbdt::{BoostParams, bins::FeatureBins, histogram::Quantizer, objective::Objective};

    /// Fuzz regression: a peer's slice request naming an output the job
    /// lacks, or arriving before any round started, indexed gradients that
    /// do not exist (`rows.rs`, index out of bounds) and panicked a worker.
    #[test]
    fn slices_of_an_unknown_output_or_before_a_round_are_refused() {
        let setup = BoostSetup {
            bins: vec![FeatureBins::Numeric { upper: vec![0.5, f32::INFINITY] }],
            objective: Objective::Logistic,
            init: vec![0.0],
            quantizer: Quantizer { g_scale: 1.0, h_scale: 1.0 },
            params: BoostParams::default(),
        };
        let layout = Layout::new(&setup.bins);
        let plan = Plan { job: ContentId::of(b"job"), generation: 1, setup, layout, slice: 0..1, workers: vec![] };
        let part = RowSet {
            features: crate::jobs::learners::Features::Floats(
                ndarray::Array2::from_shape_vec((4, 1), vec![0.0, 1.0, 0.0, 1.0]).unwrap(),
            ),
            labels: Labels::Classes(vec![0, 1, 0, 1]),
            global_rows: vec![0, 1, 2, 3],
        };
        let mut rows = Rows::new(&plan, &[part], &[], &[]);
        let item = |output| SliceItem { output, order: None, node: 0 };
        assert_eq!(rows.slices(&plan, 0..1, &[item(0)]), Err(SliceError::NotStarted));
        rows.start_round(&plan, 0);
        assert_eq!(rows.slices(&plan, 0..1, &[item(7)]), Err(SliceError::Output { output: 7, outputs: 1 }));
        assert_eq!(rows.slices(&plan, 0..1, &[item(0)]).map(|s| s.len()), Ok(1));
    }

    #[test]
    fn one_owner_until_its_bins_are_many_then_at_most_one_per_worker() {
        assert_eq!(owner_count(2_500, 3), 1);
        assert_eq!(owner_count(OWNER_BINS, 3), 1);
        assert_eq!(owner_count(OWNER_BINS + 1, 3), 2);
        assert_eq!(owner_count(200_000, 3), 3);
        assert_eq!(owner_count(200_000, 1), 1);
        assert_eq!(owner_count(0, 0), 1);
    }

    #[test]
    fn slices_cover_every_feature_once_with_about_equal_bins() {
        let bins: Vec<FeatureBins> =
            (0..10).map(|f| FeatureBins::Numeric { upper: (0..(f * 10 + 1)).map(|i| i as f32).collect() }).collect();
        let layout = Layout::new(&bins);
        for parts in 1..5 {
            let slices = feature_slices(&layout, parts);
            assert_eq!(slices.len(), parts);
            assert_eq!(slices.first().unwrap().start, 0);
            assert_eq!(slices.last().unwrap().end, 10);
            assert!(slices.windows(2).all(|w| w[0].end == w[1].start));
        }
        let halves = feature_slices(&layout, 2);
        let bins_of = |r: &Range<usize>| layout.offsets[r.end] - layout.offsets[r.start];
        let (a, b) = (bins_of(&halves[0]), bins_of(&halves[1]));
        assert!(a.abs_diff(b) < 150, "{a} vs {b}");
    }
}
