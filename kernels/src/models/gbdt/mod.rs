//! Gradient-boosted decision trees, histogram-based (as LightGBM and
//! XGBoost's `hist` grow them), built so that the rows can stay on the nodes
//! that hold them.
//!
//! Features are binned ([`bins`]) from quantile sketches merged across
//! shards. Each round computes every row's gradient ([`objective`]),
//! quantized so that histograms ([`histogram`]) of rows held apart merge
//! exactly. A tree grows leaf-wise ([`tree::Grower`]): the leaf whose best
//! split ([`split`]) gains most is split next; the smaller child's
//! histogram is built and the larger's is its parent's minus it.
//! [`fit`] runs all of it in one process; the node runs the same pieces
//! with rows on many nodes and gets the same trees.
//!
//! # Layout
//! - [`bins`]: value -> bin maps, binned rows.
//! - [`histogram`]: quantized gradients and exact histograms.
//! - [`split`]: best split of a leaf (numeric with a learned direction for
//!   missing values, categorical many-vs-many).
//! - [`tree`]: trees and the leaf-wise grower (a pure state machine).
//! - [`objective`]: losses.
//! - [`rows`]: the rows a trainer holds: scores, gradients, leaf membership.

pub mod bins;
pub mod histogram;
pub mod objective;
mod par;
pub mod rows;
pub mod split;
mod team;
pub mod tree;

use std::collections::HashMap;

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use bins::{BinnedRows, FeatureBins};
use histogram::{BinSum, Histogram, Layout, Quantizer};
use objective::{Objective, Targets};
use rows::{RowState, tree_features};
use split::{Candidate, SplitLimits, best_split};
use tree::{Grower, SplitOrder, Tree, TreeShape};

/// How to boost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoostParams {
    /// Boosting rounds (trees per output).
    pub rounds: usize,
    pub shape: TreeShape,
    pub limits: SplitLimits,
    pub learning_rate: f64,
    /// Fraction of rows each round samples (1: all).
    pub row_fraction: f64,
    /// Fraction of features each tree may split on (1: all).
    pub feature_fraction: f64,
    pub seed: u64,
    /// Stop after this many rounds without a better validation loss, and
    /// keep the best round's trees (0: never stop early).
    pub patience: usize,
}

impl Default for BoostParams {
    fn default() -> Self {
        Self {
            rounds: 100,
            shape: TreeShape { max_leaves: 31, max_depth: 0 },
            limits: SplitLimits::default(),
            learning_rate: 0.1,
            row_fraction: 1.0,
            feature_fraction: 1.0,
            seed: 0,
            patience: 0,
        }
    }
}

/// A boosted model: bins, starting scores and trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gbdt {
    pub bins: Vec<FeatureBins>,
    pub objective: Objective,
    pub init: Vec<f64>,
    /// Round-major: round `r`'s tree for output `k` is `trees[r * K + k]`.
    pub trees: Vec<Tree>,
}

impl Gbdt {
    /// Scores of every row (`rows x K`, row-major).
    pub fn scores(&self, x: ArrayView2<'_, f32>) -> Vec<f64> {
        let binned = BinnedRows::new(x, &self.bins);
        let width = self.objective.scores_per_row();
        let mut scores: Vec<f64> = (0..x.nrows()).flat_map(|_| self.init.iter().copied()).collect();
        for (i, tree) in self.trees.iter().enumerate() {
            let k = i % width;
            for (r, row) in scores.chunks_mut(width).enumerate() {
                row[k] += tree.value(|f| binned.columns[f][r]);
            }
        }
        scores
    }

    /// Outputs: values (regression) or class probabilities.
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let width = self.objective.scores_per_row();
        let outputs = self.objective.outputs_per_row();
        let scores = self.scores(x);
        let values: Vec<f32> =
            scores.chunks(width).flat_map(|row| self.objective.outputs(row)).map(|v| v as f32).collect();
        Array2::from_shape_vec((x.nrows(), outputs), values).expect("outputs per row")
    }

    /// Checks what a peer could have forged before the model is used.
    pub fn validate(&self, features: usize) -> Result<(), String> {
        if self.bins.len() != features {
            return Err(format!("the trees read {} features but the pipeline gives {features}", self.bins.len()));
        }
        if self.init.len() != self.objective.scores_per_row() || self.init.iter().any(|v| !v.is_finite()) {
            return Err("the trees' starting scores do not fit their objective".into());
        }
        if self.trees.len() % self.objective.scores_per_row() != 0 {
            return Err("the trees do not make whole rounds".into());
        }
        self.trees.iter().try_for_each(|t| t.validate(features))
    }
}

/// Loss per round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BoostCurve {
    /// Mean training loss after each round.
    pub train_loss: Vec<f64>,
    pub validation_loss: Vec<f64>,
    /// Rounds kept (after early stopping).
    pub rounds_kept: usize,
}

/// Rows with their targets, for [`fit`].
pub struct Rows {
    pub binned: BinnedRows,
    pub targets: Targets,
    /// Each row's number in the dataset (row sampling depends on it, so the
    /// same rows are sampled wherever they are held).
    pub global_rows: Vec<u64>,
}

/// What a boosting run starts from, the same for one process or many nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoostSetup {
    pub bins: Vec<FeatureBins>,
    pub objective: Objective,
    pub init: Vec<f64>,
    pub quantizer: Quantizer,
    pub params: BoostParams,
}

impl BoostSetup {
    pub fn layout(&self) -> Layout {
        Layout::new(&self.bins)
    }

    /// Features worth splitting on (more than one value bin).
    pub fn usable_features(&self) -> Vec<usize> {
        (0..self.bins.len()).filter(|&f| self.bins[f].len() > 2).collect()
    }

    /// The features tree `(round, output)` may split on.
    pub fn tree_features(&self, round: usize, output: usize) -> Vec<usize> {
        tree_features(
            self.params.seed,
            round as u64,
            output as u64,
            &self.usable_features(),
            self.params.feature_fraction,
        )
    }

    /// Whether a leaf with `rows` rows could be split at all.
    pub fn splittable(&self, rows: i64) -> bool {
        rows as u64 >= 2 * self.params.limits.min_rows.max(1)
    }

    pub fn finish_tree(&self, grower: Grower) -> Tree {
        grower.finish(&self.quantizer, self.params.limits.l2, self.params.learning_rate)
    }

    /// Checks a stored setup against the pipeline whose rows it boosts:
    /// one bin map per feature with bins a histogram can hold, an objective
    /// for the pipeline's task and classes, a starting score per output and
    /// finite scales. A crafted setup (a peer can store any bytes) is
    /// refused here instead of panicking the rows that use it.
    pub fn check(&self, pipeline: &mass_protocol::features::FittedPipeline) -> Result<(), InvalidSetup> {
        if self.bins.len() != pipeline.features {
            return Err(InvalidSetup::Features { bins: self.bins.len(), features: pipeline.features });
        }
        for (feature, bins) in self.bins.iter().enumerate() {
            let fits = match bins {
                FeatureBins::Numeric { upper } => upper.len() < 256,
                FeatureBins::Categorical { bin_of, other } => bin_of.iter().all(|b| b <= other),
            };
            if !fits {
                return Err(InvalidSetup::Bins { feature });
            }
        }
        let expected = match pipeline.task {
            mass_protocol::jobs::Task::Regression => Objective::Squared,
            mass_protocol::jobs::Task::Classification => Objective::for_task(Some(pipeline.classes.len())),
        };
        if self.objective != expected {
            return Err(InvalidSetup::Objective { got: self.objective, expected });
        }
        if self.init.len() != self.objective.scores_per_row() || self.init.iter().any(|v| !v.is_finite()) {
            return Err(InvalidSetup::Init { got: self.init.len(), expected: self.objective.scores_per_row() });
        }
        let p = &self.params;
        let scales = [self.quantizer.g_scale, self.quantizer.h_scale, p.learning_rate, p.limits.l2];
        let fractions = [p.row_fraction, p.feature_fraction];
        if scales.iter().any(|v| !v.is_finite() || *v < 0.0) || fractions.iter().any(|f| !(*f > 0.0 && *f <= 1.0)) {
            return Err(InvalidSetup::Params);
        }
        Ok(())
    }
}

/// Why a stored boosting setup cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidSetup {
    #[error("the setup bins {bins} features but the pipeline makes {features}")]
    Features { bins: usize, features: usize },
    #[error("feature {feature}'s bins do not fit a histogram (at most 256, categories within them)")]
    Bins { feature: usize },
    #[error("the setup's objective is {got:?} but the pipeline's task needs {expected:?}")]
    Objective { got: Objective, expected: Objective },
    #[error("the setup has {got} finite starting scores, not the {expected} its objective needs")]
    Init { got: usize, expected: usize },
    #[error("the setup's scales or fractions are not finite, or out of range")]
    Params,
}

/// Early stopping's bookkeeping: the best validation loss and its round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stopper {
    pub best: Option<(usize, f64)>,
}

impl Stopper {
    /// Records round `round`'s validation loss; whether to stop now.
    pub fn record(&mut self, round: usize, loss: f64, patience: usize) -> bool {
        if self.best.is_none_or(|(_, b)| loss < b) {
            self.best = Some((round, loss));
        }
        patience > 0 && self.best.is_some_and(|(b, _)| round - b >= patience)
    }

    /// Rounds to keep out of `done`.
    pub fn rounds_kept(&self, done: usize, patience: usize) -> usize {
        match self.best {
            Some((b, _)) if patience > 0 => b + 1,
            _ => done,
        }
    }
}

/// Where the rows of a tree being grown are: one [`RowState`], or the
/// parts of a [`team::Team`].
trait LeafRows {
    /// Starts the tree on `features` (every sampled row in the root); the
    /// root's sums.
    fn start(&mut self, features: &[usize]) -> BinSum;
    /// Moves a leaf's rows into its children.
    fn split(&mut self, order: &SplitOrder);
    /// The histogram of a leaf's rows over the tree's features.
    fn histogram(&mut self, node: u32) -> Histogram;
    /// The larger child's histogram and the children's best splits (of
    /// those wanted) over the tree's `features`.
    fn children(&mut self, children: Children, setup: &BoostSetup, layout: &Layout, features: &[usize]) -> Evaluated {
        children.evaluate(setup, layout, features)
    }
}

/// The best split of a leaf over a tree's `features`.
fn find_best(
    setup: &BoostSetup,
    layout: &Layout,
    features: &[usize],
    hist: &Histogram,
    total: BinSum,
) -> Option<Candidate> {
    best_split(hist, layout, &setup.bins, features, total, &setup.quantizer, &setup.params.limits)
}

/// A split leaf's children to evaluate: the smaller one's histogram
/// (built), the parent's (the larger one's once the smaller's is taken
/// away), and the sums of those whose best split is wanted.
struct Children {
    parent: Histogram,
    small: Histogram,
    small_total: Option<BinSum>,
    large_total: Option<BinSum>,
}

/// Both children's histograms and best splits.
struct Evaluated {
    small: Histogram,
    large: Histogram,
    small_best: Option<Candidate>,
    large_best: Option<Candidate>,
}

impl Children {
    /// Evaluates both children on this thread.
    fn evaluate(self, setup: &BoostSetup, layout: &Layout, features: &[usize]) -> Evaluated {
        let mut large = self.parent;
        large.remove(&self.small);
        let best = |hist, total: Option<BinSum>| total.and_then(|t| find_best(setup, layout, features, hist, t));
        let (small_best, large_best) = (best(&self.small, self.small_total), best(&large, self.large_total));
        Evaluated { small: self.small, large, small_best, large_best }
    }
}

/// One output's tree on one [`RowState`].
struct OneState<'a> {
    state: &'a mut RowState,
    layout: &'a Layout,
    output: usize,
    features: Vec<usize>,
}

impl LeafRows for OneState<'_> {
    fn start(&mut self, features: &[usize]) -> BinSum {
        self.features = features.to_vec();
        self.state.start_tree(self.output);
        self.state.sum(self.output, 0)
    }

    fn split(&mut self, order: &SplitOrder) {
        self.state.split(self.output, order);
    }

    fn histogram(&mut self, node: u32) -> Histogram {
        self.state.histogram(self.output, node, &self.features, self.layout)
    }
}

/// Grows one tree for output `output` on one process's rows.
pub fn grow_tree(setup: &BoostSetup, state: &mut RowState, layout: &Layout, round: usize, output: usize) -> Tree {
    grow(setup, &mut OneState { state, layout, output, features: vec![] }, layout, round, output)
}

/// Grows output `output`'s tree of round `round` on `rows`.
fn grow(setup: &BoostSetup, rows: &mut impl LeafRows, layout: &Layout, round: usize, output: usize) -> Tree {
    let features = setup.tree_features(round, output);
    let root = rows.start(&features);
    let mut grower = Grower::new(setup.params.shape, root);
    let mut histograms: HashMap<u32, Histogram> = HashMap::new();
    if setup.splittable(root.n) {
        let hist = rows.histogram(0);
        grower.offer(0, find_best(setup, layout, &features, &hist, root));
        histograms.insert(0, hist);
    } else {
        grower.offer(0, None);
    }
    while let Some(order) = grower.next() {
        rows.split(&order);
        let parent = histograms.remove(&order.node).expect("a split leaf has its histogram");
        let (small, large) = order.children();
        let sum_of = |node| if node == order.left { order.left_sum } else { order.right_sum };
        let (want_small, want_large) = (
            grower.may_split(small) && setup.splittable(sum_of(small).n),
            grower.may_split(large) && setup.splittable(sum_of(large).n),
        );
        if !want_small && !want_large {
            grower.offer(small, None);
            grower.offer(large, None);
            continue;
        }
        let children = Children {
            parent,
            small: rows.histogram(small),
            small_total: want_small.then(|| sum_of(small)),
            large_total: want_large.then(|| sum_of(large)),
        };
        let done = rows.children(children, setup, layout, &features);
        for (node, hist, best, wanted) in
            [(small, done.small, done.small_best, want_small), (large, done.large, done.large_best, want_large)]
        {
            grower.offer(node, best);
            if wanted {
                histograms.insert(node, hist);
            }
        }
    }
    setup.finish_tree(grower)
}

/// Boosts on one process: `train`'s rows, early stopping on `validation`'s.
/// `on_round(round, train loss, validation loss)` after each round.
pub fn fit(
    setup: &BoostSetup,
    train: Rows,
    validation: Option<Rows>,
    on_round: &mut dyn FnMut(usize, f64, Option<f64>),
) -> (Gbdt, BoostCurve) {
    let plan = team::Plan::for_machine(setup, train.binned.rows);
    fit_with(setup, (train, validation), plan, on_round)
}

/// [`fit`] with threads used as `plan` says (which never changes the model).
fn fit_with(
    setup: &BoostSetup,
    rows: (Rows, Option<Rows>),
    plan: team::Plan,
    on_round: &mut dyn FnMut(usize, f64, Option<f64>),
) -> (Gbdt, BoostCurve) {
    let layout = setup.layout();
    let train_rows = rows.0.binned.rows;
    let held_rows = rows.1.as_ref().map_or(0, |v| v.binned.rows);
    let (trees, curve) = std::thread::scope(|scope| {
        let engine = team::Engine::new(scope, setup, &layout, rows, plan);
        boost(setup, engine, (train_rows, held_rows), on_round)
    });
    (Gbdt { bins: setup.bins.clone(), objective: setup.objective, init: setup.init.clone(), trees }, curve)
}

/// [`fit`]'s rounds on an engine holding `rows` (training, validation) rows.
fn boost<'scope, 'env, 's: 'scope>(
    setup: &BoostSetup,
    mut engine: team::Engine<'scope, 'env, 's>,
    (train_rows, held_rows): (usize, usize),
    on_round: &mut dyn FnMut(usize, f64, Option<f64>),
) -> (Vec<Tree>, BoostCurve) {
    let params = &setup.params;
    let outputs = setup.objective.scores_per_row();
    let mut trees = Vec::new();
    let mut curve = BoostCurve::default();
    let mut stopper = Stopper::default();
    for round in 0..params.rounds {
        engine.start_round(round as u64);
        let grown = engine.grow_round(round);
        let losses = engine.finish(&grown);
        trees.extend(grown);
        // Summed in row order across the parts: the sum one part holding
        // every row would make.
        let loss: f64 = losses.train.iter().flatten().sum();
        let loss = loss / train_rows.max(1) as f64;
        curve.train_loss.push(loss);
        let valid = (held_rows > 0).then(|| losses.held.iter().flatten().sum::<f64>() / held_rows as f64);
        on_round(round, loss, valid);
        if let Some(v) = valid {
            curve.validation_loss.push(v);
            if stopper.record(round, v, params.patience) {
                break;
            }
        }
    }
    let done = trees.len() / outputs;
    let kept = stopper.rounds_kept(done, params.patience);
    trees.truncate(kept * outputs);
    curve.rounds_kept = kept;
    (trees, curve)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzz regression: a stored setup whose starting scores or objective
    /// did not match the pipeline's classes panicked the rows computing
    /// gradients (`objective.rs`, index out of range); now refused by name.
    #[test]
    fn a_setup_that_does_not_fit_the_pipeline_is_refused() {
        use mass_protocol::{features::*, jobs::Task};
        let pipeline = FittedPipeline {
            spec: PipelineSpec::default(),
            columns: vec!["x".into(), "label".into()],
            transforms: vec![ColumnTransform::Numeric { fill: 0.0, offset: 0.0, scale: 1.0 }, ColumnTransform::Drop],
            label: 1,
            classes: vec!["a".into(), "b".into(), "c".into()],
            features: 1,
            task: Task::Classification,
            target: None,
            crosses: vec![],
            projection: None,
        };
        let setup = BoostSetup {
            bins: vec![FeatureBins::Numeric { upper: vec![0.5, f32::INFINITY] }],
            objective: Objective::Softmax { classes: 3 },
            init: vec![0.0; 3],
            quantizer: Quantizer { g_scale: 1.0, h_scale: 1.0 },
            params: BoostParams::default(),
        };
        assert_eq!(setup.check(&pipeline), Ok(()));
        let short = BoostSetup { init: vec![0.0], ..setup.clone() };
        assert_eq!(short.check(&pipeline), Err(InvalidSetup::Init { got: 1, expected: 3 }));
        let wrong = BoostSetup { objective: Objective::Softmax { classes: 9 }, ..setup.clone() };
        assert!(matches!(wrong.check(&pipeline), Err(InvalidSetup::Objective { .. })));
        let bins = BoostSetup { bins: vec![FeatureBins::Categorical { bin_of: vec![0, 9], other: 2 }], ..setup };
        assert_eq!(bins.check(&pipeline), Err(InvalidSetup::Bins { feature: 0 }));
    }
    use crate::features::sketch::sketch;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Rows with a numeric signal, a categorical one and missing values.
    fn problem(rows: usize, seed: u64) -> (Array2<f32>, Vec<u32>, Vec<f64>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut x = Array2::<f32>::zeros((rows, 4));
        let mut classes = Vec::new();
        let mut values = Vec::new();
        for r in 0..rows {
            let a: f32 = rng.random_range(-2.0..2.0);
            let b: f32 = rng.random_range(-2.0..2.0);
            let cat = rng.random_range(0..6u32);
            let noise: f32 = rng.random_range(-0.3..0.3);
            x[[r, 0]] = if rng.random_bool(0.1) { f32::NAN } else { a };
            x[[r, 1]] = b;
            x[[r, 2]] = cat as f32;
            x[[r, 3]] = rng.random_range(-1.0..1.0);
            let signal = a * a.signum() + b + if cat % 2 == 0 { 1.5 } else { -1.5 } + noise;
            classes.push(u32::from(signal > 0.5));
            values.push(f64::from(signal));
        }
        (x, classes, values)
    }

    fn bins_for(x: &Array2<f32>) -> Vec<FeatureBins> {
        (0..x.ncols())
            .map(|f| {
                if f == 2 {
                    bins::categorical_bins(&[10; 6], 255)
                } else {
                    bins::numeric_bins(&sketch(x.column(f).iter().map(|v| f64::from(*v)), 4096), 255)
                }
            })
            .collect()
    }

    fn setup(x: &Array2<f32>, objective: Objective, init: Vec<f64>) -> BoostSetup {
        BoostSetup {
            bins: bins_for(x),
            objective,
            init,
            quantizer: objective.quantizer(20.0),
            params: BoostParams { rounds: 60, ..BoostParams::default() },
        }
    }

    fn rows(x: &Array2<f32>, bins: &[FeatureBins], targets: Targets, first: u64) -> Rows {
        Rows {
            binned: BinnedRows::new(x.view(), bins),
            targets,
            global_rows: (first..first + x.nrows() as u64).collect(),
        }
    }

    #[test]
    fn boosting_learns_a_classifier_with_missing_values_and_categories() {
        let (x, y, _) = problem(4000, 1);
        let (tx, ty, _) = problem(1000, 2);
        let counts = [y.iter().filter(|c| **c == 0).count() as u64, y.iter().filter(|c| **c == 1).count() as u64];
        let s = setup(&x, Objective::Logistic, Objective::Logistic.initial_scores(&counts, 0.0));
        let (model, curve) = fit(&s, rows(&x, &s.bins, Targets::Classes(y), 0), None, &mut |_, _, _| {});
        assert!(curve.train_loss.windows(2).all(|w| w[1] <= w[0] + 1e-9), "training loss never rises");
        let p = model.predict(tx.view());
        let accuracy =
            ty.iter().enumerate().filter(|(r, c)| u32::from(p[[*r, 1]] > 0.5) == **c).count() as f64 / 1000.0;
        assert!(accuracy > 0.9, "{accuracy}");
        model.validate(4).unwrap();
    }

    #[test]
    fn boosting_regresses_and_stops_early() {
        let (x, _, y) = problem(4000, 3);
        let (vx, _, vy) = problem(1000, 4);
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        let mut s = setup(&x, Objective::Squared, vec![mean]);
        s.params.rounds = 500;
        s.params.patience = 5;
        s.params.learning_rate = 0.3;
        let (model, curve) = fit(
            &s,
            rows(&x, &s.bins, Targets::Values(y), 0),
            Some(rows(&vx, &s.bins, Targets::Values(vy.clone()), 4000)),
            &mut |_, _, _| {},
        );
        assert!(curve.validation_loss.len() < 500, "stopped early");
        assert_eq!(model.trees.len(), curve.rounds_kept);
        let p = model.predict(vx.view());
        let mse = vy.iter().enumerate().map(|(r, v)| (f64::from(p[[r, 0]]) - v).powi(2)).sum::<f64>() / 1000.0;
        let var = vy.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 1000.0;
        assert!(1.0 - mse / var > 0.9, "R2 {}", 1.0 - mse / var);
    }

    #[test]
    fn softmax_grows_a_tree_per_class_and_rows_held_apart_give_the_same_model() {
        let (x, _, v) = problem(3000, 5);
        let y: Vec<u32> = v
            .iter()
            .map(|s| {
                if *s < -1.0 {
                    0
                } else if *s < 1.0 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let objective = Objective::Softmax { classes: 3 };
        let mut counts = [0u64; 3];
        y.iter().for_each(|c| counts[*c as usize] += 1);
        let mut s = setup(&x, objective, objective.initial_scores(&counts, 0.0));
        s.params.rounds = 10;
        s.params.row_fraction = 0.7;
        s.params.feature_fraction = 0.75;
        let (model, _) = fit(&s, rows(&x, &s.bins, Targets::Classes(y.clone()), 0), None, &mut |_, _, _| {});
        assert_eq!(model.trees.len(), 30);
        // The same rows in another order give the same trees: the sums are
        // exact and sampling depends on global row numbers only.
        let order: Vec<usize> = (0..3000).rev().collect();
        let shuffled = x.select(ndarray::Axis(0), &order);
        let again = Rows {
            binned: BinnedRows::new(shuffled.view(), &s.bins),
            targets: Targets::Classes(order.iter().map(|&r| y[r]).collect()),
            global_rows: order.iter().map(|&r| r as u64).collect(),
        };
        let (same, _) = fit(&s, again, None, &mut |_, _, _| {});
        assert_eq!(model, same);
    }

    #[test]
    fn threads_parts_and_trees_at_once_grow_the_same_models() {
        let (x, y, v) = problem(5000, 7);
        let (vx, vy, vv) = problem(1000, 8);
        let softmax = Objective::Softmax { classes: 3 };
        let classes = |v: &[f64]| v.iter().map(|s| u32::from(*s > -1.0) + u32::from(*s > 1.0)).collect::<Vec<u32>>();
        let cases = [
            (softmax, Targets::Classes(classes(&v)), Targets::Classes(classes(&vv))),
            (Objective::Squared, Targets::Values(v), Targets::Values(vv)),
            (Objective::Logistic, Targets::Classes(y), Targets::Classes(vy)),
        ];
        for (objective, targets, held) in cases {
            let init = match objective {
                Objective::Squared => vec![0.5],
                _ => objective.initial_scores(&[1, 1, 1][..objective.outputs_per_row().min(3)], 0.0),
            };
            let mut s = setup(&x, objective, init);
            s.params.rounds = 12;
            s.params.row_fraction = 0.8;
            s.params.feature_fraction = 0.75;
            let run = |plan| {
                let train = rows(&x, &s.bins, targets.clone(), 0);
                let validation = rows(&vx, &s.bins, held.clone(), 5000);
                let mut losses = Vec::new();
                let (model, curve) = fit_with(&s, (train, Some(validation)), plan, &mut |_, t, v| {
                    losses.push((t.to_bits(), v.map(f64::to_bits)))
                });
                (model, curve, losses)
            };
            let one = run(team::Plan::Parts(1));
            for plan in [team::Plan::Parts(2), team::Plan::Parts(3), team::Plan::Trees(2)] {
                assert!(run(plan) == one, "{objective:?} {plan:?}");
            }
        }
    }
}
