//! From a job's model spec and rows to a trained member: which algorithm
//! each learner runs and the defaults that make it converge. Pure: no mesh,
//! no I/O, so it is tested on its own.

use mass_kernels::models::{
    Loss, Member, Mlp, MlpConfig, Optimizer, Target,
    gbdt::{
        self, BoostParams, BoostSetup,
        bins::BinnedRows,
        objective::{Objective, Targets},
        split::SplitLimits,
        tree::TreeShape,
    },
    lbfgs, linear,
};
use mass_kernels::{Backend, cpu::CpuBackend};
use mass_protocol::{
    features::{DataSummary, FittedPipeline},
    jobs::{Learner, ModelSpec, RegressionLoss, Task, TreeSpec},
};
use std::borrow::Cow;

use ndarray::{Array2, Axis};
use tracing::warn;

use crate::hardware::Gpu;

/// Optimizer steps a network gets when its epochs are not given: enough
/// for small sets to converge (a 150-row set gets thousands of epochs, cut
/// short by early stopping), while large sets still see 20 epochs.
pub const STEP_BUDGET: usize = 10_000;
pub const MIN_AUTO_EPOCHS: usize = 20;
pub const MAX_AUTO_EPOCHS: usize = 2_000;
/// Epochs (or rounds) without improvement before stopping, by default.
pub const DEFAULT_PATIENCE: usize = 10;
/// L-BFGS iterations at most for the linear models.
pub const LINEAR_MAX_ITERATIONS: usize = 1_000;

/// The targets of some rows: class indices, or standardized values.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    Classes(Vec<usize>),
    Values(Vec<f32>),
}

impl Labels {
    pub fn empty(task: Task) -> Self {
        match task {
            Task::Classification => Labels::Classes(vec![]),
            Task::Regression => Labels::Values(vec![]),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Labels::Classes(c) => c.len(),
            Labels::Values(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn extend(&mut self, other: Labels) {
        match (self, other) {
            (Labels::Classes(a), Labels::Classes(b)) => a.extend(b),
            (Labels::Values(a), Labels::Values(b)) => a.extend(b),
            _ => panic!("labels of one task"),
        }
    }

    /// The rows `rows` of these labels.
    pub fn select(&self, rows: &[usize]) -> Labels {
        match self {
            Labels::Classes(c) => Labels::Classes(rows.iter().map(|&r| c[r]).collect()),
            Labels::Values(v) => Labels::Values(rows.iter().map(|&r| v[r]).collect()),
        }
    }

    fn values(&self) -> Array2<f32> {
        match self {
            Labels::Values(v) => Array2::from_shape_vec((v.len(), 1), v.clone()).expect("one value per row"),
            Labels::Classes(_) => Array2::zeros((0, 1)),
        }
    }

    fn targets(&self) -> Targets {
        match self {
            Labels::Classes(c) => Targets::Classes(c.iter().map(|&c| c as u32).collect()),
            Labels::Values(v) => Targets::Values(v.iter().map(|&v| f64::from(v)).collect()),
        }
    }
}

/// Rows to train or validate on: features, labels, and each row's number
/// in the dataset.
#[derive(Debug, Clone)]
pub struct RowSet {
    pub features: Features,
    pub labels: Labels,
    pub global_rows: Vec<u64>,
}

/// Rows' features: f32, or the bytes they are made from where every
/// feature is a column of bytes scaled (MNIST's pixels), which linear
/// models train on directly: a quarter of the memory, and no f32 matrix
/// made (a fifth of a bagged member's time on MNIST went into making it).
#[derive(Debug, Clone)]
pub enum Features {
    Floats(Array2<f32>),
    Bytes(ByteRows),
}

/// Rows of bytes whose features are `(byte - shift) * scale` by column.
#[derive(Debug, Clone)]
pub struct ByteRows {
    pub values: Array2<u8>,
    pub shift: Vec<f64>,
    pub scale: Vec<f64>,
}

impl ByteRows {
    /// These scalings with `values`.
    fn with(&self, values: Array2<u8>) -> ByteRows {
        ByteRows { values, shift: self.shift.clone(), scale: self.scale.clone() }
    }

    /// As the linear trainer reads them.
    pub fn scaled(&self) -> linear::ScaledBytes<'_> {
        linear::ScaledBytes { values: self.values.view(), shift: &self.shift, scale: &self.scale }
    }
}

impl RowSet {
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// The features as f32 (bytes decoded, to the bits the pipeline gives).
    pub fn x(&self) -> Cow<'_, Array2<f32>> {
        match &self.features {
            Features::Floats(x) => Cow::Borrowed(x),
            Features::Bytes(bytes) => Cow::Owned(bytes.scaled().decoded()),
        }
    }

    /// The rows as a linear model trains on them.
    pub fn linear_rows(&self) -> linear::Rows<'_> {
        match &self.features {
            Features::Floats(x) => linear::Rows::Floats(x.view()),
            Features::Bytes(bytes) => linear::Rows::Bytes(bytes.scaled()),
        }
    }

    /// The rows `rows` (repeats allowed).
    pub fn select(&self, rows: &[usize]) -> RowSet {
        let features = match &self.features {
            Features::Floats(x) => Features::Floats(x.select(Axis(0), rows)),
            Features::Bytes(b) => Features::Bytes(b.with(b.values.select(Axis(0), rows))),
        };
        RowSet {
            features,
            labels: self.labels.select(rows),
            global_rows: rows.iter().map(|&r| self.global_rows[r]).collect(),
        }
    }

    /// The sets one after the other (empty ones, which may come from a
    /// shard not put through the pipeline, left out): bytes where every
    /// part is bytes (parts of one pipeline share their scaling), else f32.
    pub fn concat(mut parts: Vec<RowSet>, task: Task, features: usize) -> Result<RowSet, String> {
        parts.retain(|p| p.rows() > 0);
        if parts.len() == 1 {
            return Ok(parts.pop().expect("one part"));
        }
        let bytes: Option<Vec<&ByteRows>> = parts
            .iter()
            .map(|p| match &p.features {
                Features::Bytes(b) => Some(b),
                Features::Floats(_) => None,
            })
            .collect();
        let features = match bytes {
            Some(all) if !all.is_empty() => {
                let views: Vec<_> = all.iter().map(|b| b.values.view()).collect();
                Features::Bytes(all[0].with(ndarray::concatenate(Axis(0), &views).map_err(|e| e.to_string())?))
            }
            _ if parts.is_empty() => Features::Floats(Array2::zeros((0, features))),
            _ => {
                let floats: Vec<_> = parts.iter().map(RowSet::x).collect();
                let views: Vec<_> = floats.iter().map(|x| x.view()).collect();
                Features::Floats(ndarray::concatenate(Axis(0), &views).map_err(|e| e.to_string())?)
            }
        };
        let mut labels = Labels::empty(task);
        let mut global_rows = Vec::new();
        for part in parts {
            labels.extend(part.labels);
            global_rows.extend(part.global_rows);
        }
        Ok(RowSet { features, labels, global_rows })
    }
}

/// What training a member gave.
pub struct Fitted {
    pub member: Member,
    /// Training loss per epoch, L-BFGS iteration or boosting round.
    pub curve: Vec<f64>,
    /// The backend it trained on: "cpu" or "wgpu:<adapter>".
    pub backend: String,
}

/// The name the CPU backend goes by in job records.
pub const CPU: &str = "cpu";

/// The loss a network or linear model minimizes for this task.
fn loss_of(task: Task, spec: &ModelSpec) -> Loss {
    match (task, spec.loss) {
        (Task::Classification, _) => Loss::SoftmaxCrossEntropy,
        (Task::Regression, RegressionLoss::Squared) => Loss::SquaredError,
        (Task::Regression, RegressionLoss::Huber { delta }) => Loss::Huber { delta },
    }
}

/// Epochs a network trains: as given, or the step budget over the batches
/// an epoch has, within bounds.
pub fn epochs_for(spec: &ModelSpec, rows: usize) -> usize {
    spec.epochs.unwrap_or_else(|| {
        let batches = rows.div_ceil(spec.batch_size.max(1)).max(1);
        STEP_BUDGET.div_ceil(batches).clamp(MIN_AUTO_EPOCHS, MAX_AUTO_EPOCHS)
    })
}

/// Early stopping's patience: as given, or the default when the epochs
/// are left to the budget (a user who names the epochs gets them all).
pub fn patience_for(spec: &ModelSpec) -> Option<usize> {
    match (spec.patience, spec.epochs) {
        (Some(0), _) => None,
        (Some(p), _) => Some(p),
        (None, None) => Some(DEFAULT_PATIENCE),
        (None, Some(_)) => None,
    }
}

/// The network settings for a spec.
pub fn mlp_config(spec: &ModelSpec, hidden: &[usize], task: Task, rows: usize, seed: u64) -> MlpConfig {
    MlpConfig {
        hidden: hidden.to_vec(),
        loss: loss_of(task, spec),
        optimizer: Optimizer::Adam { learning_rate: spec.learning_rate },
        batch_size: spec.batch_size,
        epochs: epochs_for(spec, rows),
        l2: spec.l2.unwrap_or(1e-4),
        seed,
        patience: patience_for(spec),
        ..MlpConfig::default()
    }
}

fn target<'a>(labels: &'a Labels, values: &'a Array2<f32>, classes: usize) -> Target<'a> {
    match labels {
        Labels::Classes(c) => Target::Classes { labels: c, classes },
        Labels::Values(_) => Target::Values(values.view()),
    }
}

/// Trains one member on `train`, checking `validation` (when it has rows)
/// for early stopping. `classes`: the class count (ignored for
/// regression). `start`: weights to continue from (data-parallel rounds).
/// `setup`: the trees' bins and objective (tree learners only). `gpu`: the
/// node's GPU, which trains networks whose shapes it measures faster on
/// (linear models and trees train on the CPU).
#[allow(clippy::too_many_arguments)]
pub fn fit(
    spec: &ModelSpec,
    task: Task,
    classes: usize,
    train: &RowSet,
    validation: Option<&RowSet>,
    start: Option<Mlp>,
    setup: Option<&BoostSetup>,
    seed: u64,
    gpu: Option<&Gpu>,
    on_epoch: &mut dyn FnMut(usize, usize, f64),
) -> Result<Fitted, String> {
    if train.rows() == 0 {
        return Err("the shards hold no training rows".into());
    }
    let validation = validation.filter(|v| v.rows() > 0);
    let values = train.labels.values();
    match &spec.learner {
        Learner::Linear => {
            let l2 = spec.l2.map_or(1.0 / train.rows() as f64, f64::from);
            let stop =
                lbfgs::Stop { max_iterations: spec.epochs.unwrap_or(LINEAR_MAX_ITERATIONS), gradient_tolerance: 1e-6 };
            let most = stop.max_iterations;
            let mut curve = Vec::new();
            let mut report = |i: usize, loss: f64| {
                curve.push(loss);
                on_epoch(i, most, loss);
            };
            let (model, _) = linear::fit(
                train.linear_rows(),
                target(&train.labels, &values, classes),
                loss_of(task, spec),
                l2,
                stop,
                &mut report,
            )?;
            Ok(Fitted { member: Member::Mlp(model), curve, backend: CPU.into() })
        }
        Learner::Mlp { hidden } => {
            let config = mlp_config(spec, hidden, task, train.rows(), seed);
            let epochs = config.epochs;
            let valid_values = validation.map(|v| v.labels.values());
            let (train_x, valid_x) = (train.x(), validation.map(RowSet::x));
            let valid = validation
                .zip(valid_x.as_ref())
                .zip(valid_values.as_ref())
                .map(|((v, x), vv)| (x.view(), target(&v.labels, vv, classes)));
            let mut report = |epoch: usize, loss: f64| on_epoch(epoch, epochs, loss);
            let outputs = match &train.labels {
                Labels::Classes(_) => classes,
                Labels::Values(_) => values.ncols(),
            };
            let y = target(&train.labels, &values, classes);
            if let Some(device) = gpu.and_then(|g| g.for_network(train_x.ncols(), outputs, &config)) {
                match Mlp::fit_on(&*device, start.clone(), train_x.view(), y, valid, &config, &mut report) {
                    Ok((model, curve)) => {
                        return Ok(Fitted {
                            member: Member::Mlp(model),
                            curve: curve.train_loss,
                            backend: device.name(),
                        });
                    }
                    // A device that fails (lost, out of memory) costs the time spent, not the task.
                    Err(e) => warn!(backend = %device.name(), "training on the GPU failed, training on the CPU: {e}"),
                }
            }
            let (model, curve) = Mlp::fit_on(&CpuBackend::new(), start, train_x.view(), y, valid, &config, &mut report)
                .map_err(|e| e.to_string())?;
            Ok(Fitted { member: Member::Mlp(model), curve: curve.train_loss, backend: CPU.into() })
        }
        Learner::Gbdt(_) => {
            let setup = setup.ok_or("a tree learner needs its bins (the job's setup)")?;
            let rows = |set: &RowSet| gbdt::Rows {
                binned: BinnedRows::new(set.x().view(), &setup.bins),
                targets: set.labels.targets(),
                global_rows: set.global_rows.clone(),
            };
            let rounds = setup.params.rounds;
            let mut report = |round: usize, loss: f64, _: Option<f64>| on_epoch(round, rounds, loss);
            let (model, curve) = gbdt::fit(setup, rows(train), validation.map(rows), &mut report);
            Ok(Fitted { member: Member::Gbdt(model), curve: curve.train_loss, backend: CPU.into() })
        }
    }
}

/// What tree learners start from: bins from the merged statistics, the
/// objective for the task, starting scores from the training labels, and
/// the boosting settings.
pub fn boost_setup(
    spec: &ModelSpec,
    trees: &TreeSpec,
    pipeline: &FittedPipeline,
    summary: &DataSummary,
    seed: u64,
) -> Result<BoostSetup, String> {
    let bins = gbdt::bins::for_pipeline(pipeline, summary, trees.bins)?;
    let objective = match pipeline.task {
        Task::Classification => Objective::for_task(Some(pipeline.classes.len())),
        Task::Regression => Objective::Squared,
    };
    let label = summary.columns.get(pipeline.label).ok_or("the statistics lack the label column")?;
    let counts: Vec<u64> = pipeline.classes.iter().map(|c| label.categories.get(c).copied().unwrap_or(0)).collect();
    // Standardized targets have mean 0; their extremes bound the gradients.
    let init = objective.initial_scores(&counts, 0.0);
    let bound = pipeline.target.map_or(1.0, |t| 2.0 * t.min.abs().max(t.max.abs()) + 1.0);
    let params = BoostParams {
        rounds: trees.trees,
        shape: TreeShape { max_leaves: trees.leaves, max_depth: trees.max_depth },
        limits: SplitLimits { min_rows: trees.min_rows, l2: trees.l2, ..SplitLimits::default() },
        learning_rate: trees.learning_rate,
        row_fraction: trees.row_fraction,
        feature_fraction: trees.feature_fraction,
        seed,
        patience: spec.patience.unwrap_or(DEFAULT_PATIENCE),
    };
    Ok(BoostSetup { bins, objective, init, quantizer: objective.quantizer(bound), params })
}

/// About how many bytes training one model of `spec` on `rows` rows of
/// `features` features takes on a trainer: the rows as f32, and for networks
/// the weights four times over (values, gradients, Adam's two moments) plus
/// a batch of activations; for trees a byte per value and a histogram per
/// leaf. A job whose estimate exceeds every node's free memory is refused
/// before it starts instead of exhausting its trainers.
pub fn estimate_bytes(spec: &ModelSpec, rows: u64, features: u64, outputs: u64) -> u64 {
    let data = rows.saturating_mul(features).saturating_mul(4);
    match &spec.learner {
        Learner::Linear => data.saturating_add(features.saturating_mul(outputs).saturating_mul(16)),
        Learner::Mlp { hidden } => {
            let widths: Vec<u64> =
                std::iter::once(features).chain(hidden.iter().map(|w| *w as u64)).chain([outputs]).collect();
            let params: u64 = widths.windows(2).map(|w| w[0].saturating_mul(w[1])).fold(0, u64::saturating_add);
            let activations: u64 =
                widths.iter().map(|w| w.saturating_mul(spec.batch_size as u64)).fold(0, u64::saturating_add);
            data.saturating_add(params.saturating_mul(16)).saturating_add(activations.saturating_mul(8))
        }
        Learner::Gbdt(trees) => {
            let bins = rows.saturating_mul(features);
            let histograms = features.saturating_mul(256 * 24).saturating_mul(trees.leaves as u64);
            data.saturating_add(bins).saturating_add(histograms.saturating_mul(outputs.max(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Iris-sized: 120 rows, 4 features, 3 classes, separable with a little noise.
    fn small(rows: usize, seed: u64) -> RowSet {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut x = Array2::<f32>::zeros((rows, 4));
        let mut classes = Vec::new();
        for r in 0..rows {
            let c = r % 3;
            for f in 0..4 {
                x[[r, f]] = c as f32 * (0.8 + 0.2 * f as f32) + rng.random_range(-0.6..0.6);
            }
            classes.push(c);
        }
        RowSet {
            features: Features::Floats(x),
            labels: Labels::Classes(classes),
            global_rows: (0..rows as u64).collect(),
        }
    }

    fn accuracy(member: &Member, set: &RowSet) -> f64 {
        let Labels::Classes(truth) = &set.labels else { panic!() };
        let p = mass_kernels::models::ensemble::argmax_rows(&member.predict(set.x().view()));
        p.iter().zip(truth).filter(|(a, b)| a == b).count() as f64 / truth.len() as f64
    }

    #[test]
    fn a_huge_hidden_layer_is_estimated_as_huge() {
        let huge = ModelSpec::of(Learner::Mlp { hidden: vec![65_536, 65_536] });
        assert!(estimate_bytes(&huge, 1_000, 64, 10) > 64 << 30, "two 64k layers need tens of GiB");
        let small = ModelSpec::of(Learner::Mlp { hidden: vec![128] });
        assert!(estimate_bytes(&small, 56_000, 784, 10) < 1 << 30);
    }

    #[test]
    fn default_epochs_follow_a_step_budget() {
        let spec = ModelSpec::default();
        assert_eq!(epochs_for(&spec, 120), MAX_AUTO_EPOCHS.min(STEP_BUDGET / 2));
        assert_eq!(epochs_for(&spec, 56_000), MIN_AUTO_EPOCHS);
        assert_eq!(epochs_for(&ModelSpec { epochs: Some(7), ..spec.clone() }, 120), 7);
        assert_eq!(patience_for(&spec), Some(DEFAULT_PATIENCE));
        assert_eq!(patience_for(&ModelSpec { epochs: Some(7), ..spec }), None);
    }

    /// Issue 10: the defaults converge on a small set (softmax scored chance
    /// with 40 optimizer steps).
    #[test]
    fn defaults_converge_on_a_small_set() {
        let (train, test) = (small(120, 1), small(60, 2));
        for learner in [Learner::Linear, Learner::Mlp { hidden: vec![32] }] {
            let spec = ModelSpec::of(learner.clone());
            let fitted =
                fit(&spec, Task::Classification, 3, &train, None, None, None, 7, None, &mut |_, _, _| {}).unwrap();
            let acc = accuracy(&fitted.member, &test);
            assert!(acc > 0.9, "{learner:?}: {acc}");
        }
    }
}
