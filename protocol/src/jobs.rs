//! Training jobs: what a user asks for, and the record a driver keeps (and
//! checkpoints as `job/<id>`) so that another node can take over.

use serde::{Deserialize, Serialize};

use crate::{ContentId, features::PipelineSpec};

/// What a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// A class out of the label's values.
    Classification,
    /// A number: the label's value.
    Regression,
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        })
    }
}

/// A model family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Learner {
    /// Softmax (logistic) regression for classes, ridge regression for
    /// numbers: convex, so solved exactly (L-BFGS, normal equations).
    Linear,
    /// A dense network with these hidden layer widths.
    Mlp { hidden: Vec<usize> },
    /// Gradient-boosted decision trees, built where the shards live.
    Gbdt(TreeSpec),
}

impl Learner {
    /// `linear` (also `softmax`, `logistic`, `ridge`), `mlp:W1,W2,...` or
    /// `gbdt` (with default tree settings).
    pub fn parse(text: &str) -> Result<Learner, String> {
        match text.split_once(':') {
            None if matches!(text, "linear" | "softmax" | "logistic" | "ridge") => Ok(Learner::Linear),
            None if text == "gbdt" => Ok(Learner::Gbdt(TreeSpec::default())),
            Some(("mlp", widths)) => Ok(Learner::Mlp {
                hidden: widths
                    .split(',')
                    .map(|w| w.trim().parse::<usize>().map_err(|_| format!("model {text}: '{w}' is not a layer width")))
                    .collect::<Result<_, _>>()?,
            }),
            _ => Err(format!("model {text}: expected linear, mlp:WIDTH[,WIDTH...] or gbdt")),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Learner::Linear => "linear".into(),
            Learner::Mlp { hidden } => {
                format!("mlp:{}", hidden.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(","))
            }
            Learner::Gbdt(_) => "gbdt".into(),
        }
    }
}

/// Settings of gradient-boosted trees (LightGBM's defaults where it has one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TreeSpec {
    /// Boosting rounds (one tree per round, or one per class and round).
    pub trees: usize,
    /// Leaves per tree at most.
    pub leaves: usize,
    /// Depth at most; 0: no limit.
    pub max_depth: usize,
    /// Training rows per leaf at least.
    pub min_rows: u64,
    pub learning_rate: f64,
    /// L2 penalty on leaf values.
    pub l2: f64,
    /// Fraction of rows each round samples.
    pub row_fraction: f64,
    /// Fraction of features each tree may use.
    pub feature_fraction: f64,
    /// Value bins per feature at most (2-255).
    pub bins: usize,
}

impl Default for TreeSpec {
    fn default() -> Self {
        Self {
            trees: 100,
            leaves: 31,
            max_depth: 0,
            min_rows: 20,
            learning_rate: 0.1,
            l2: 0.0,
            row_fraction: 1.0,
            feature_fraction: 1.0,
            bins: 255,
        }
    }
}

impl TreeSpec {
    pub fn validate(&self) -> Result<(), String> {
        let fraction = |v: f64| v > 0.0 && v <= 1.0;
        if !(1..=100_000).contains(&self.trees) {
            return Err("spec.learner.gbdt.trees must be 1-100000".into());
        }
        if !(2..=131_072).contains(&self.leaves) {
            return Err("spec.learner.gbdt.leaves must be 2-131072".into());
        }
        if self.max_depth > 64 || self.min_rows == 0 {
            return Err("spec.learner.gbdt: max_depth at most 64, min_rows at least 1".into());
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) || !(self.l2 >= 0.0 && self.l2.is_finite()) {
            return Err("spec.learner.gbdt: learning_rate in (0, 1], l2 not negative".into());
        }
        if !fraction(self.row_fraction) || !fraction(self.feature_fraction) {
            return Err("spec.learner.gbdt: row_fraction and feature_fraction in (0, 1]".into());
        }
        if !(2..=255).contains(&self.bins) {
            return Err("spec.learner.gbdt.bins must be 2-255".into());
        }
        Ok(())
    }
}

/// The loss a regressor minimizes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegressionLoss {
    Squared,
    /// Squared within `delta` (in target standard deviations), linear beyond:
    /// robust to outliers.
    Huber {
        delta: f32,
    },
}

/// A model family and its training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    pub learner: Learner,
    /// Epochs of a network. `None`: as many as it takes, a budget of
    /// optimizer steps with early stopping (the default converges on small
    /// and large data alike).
    pub epochs: Option<usize>,
    pub batch_size: usize,
    pub learning_rate: f32,
    /// L2 penalty on the weights. `None`: the learner's default (for
    /// linear models scikit-learn's, 1 / training rows).
    pub l2: Option<f32>,
    pub loss: RegressionLoss,
    /// Epochs (or boosting rounds) without a better validation loss before
    /// training stops and keeps its best. `None`: the learner's default.
    pub patience: Option<usize>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            learner: Learner::Mlp { hidden: vec![128] },
            epochs: None,
            batch_size: 64,
            learning_rate: 1e-3,
            l2: None,
            loss: RegressionLoss::Squared,
            patience: None,
        }
    }
}

impl ModelSpec {
    /// A spec for `learner` with every other setting at its default.
    pub fn of(learner: Learner) -> Self {
        Self { learner, ..Self::default() }
    }

    /// Settings a trainer accepts, whoever sent them (a user or a peer).
    pub fn validate(&self) -> Result<(), String> {
        if self.epochs.is_some_and(|e| e == 0 || e > 10_000)
            || self.batch_size == 0
            || self.batch_size > 1 << 20
            || !(self.learning_rate > 0.0 && self.learning_rate.is_finite())
            || self.l2.is_some_and(|l2| !(l2 >= 0.0 && l2.is_finite()))
            || self.patience.is_some_and(|p| p > 10_000)
        {
            return Err(
                "spec: epochs must be 1-10000, batch_size 1-1048576, learning_rate positive, l2 not negative, patience at most 10000".into()
            );
        }
        if let RegressionLoss::Huber { delta } = self.loss
            && !(delta > 0.0 && delta.is_finite())
        {
            return Err("spec.loss: huber's delta must be positive".into());
        }
        match &self.learner {
            Learner::Mlp { hidden } if hidden.is_empty() || hidden.len() > 16 => {
                Err("spec.learner.mlp.hidden: 1 to 16 layers (use the linear learner for none)".into())
            }
            Learner::Mlp { hidden } if hidden.iter().any(|w| *w == 0 || *w > 65_536) => {
                Err("spec.learner.mlp.hidden: every layer needs 1 to 65536 units".into())
            }
            Learner::Gbdt(trees) => trees.validate(),
            _ => Ok(()),
        }
    }
}

/// Numeric labels with at most this many distinct whole values are read as
/// classes when the task is not given.
pub const MAX_INFERRED_CLASSES: usize = 20;

/// The task of a job on a dataset whose label has kind `label_kind` and
/// training values `values` (each with its count): `asked` when given and
/// possible, else inferred; an ambiguous numeric label is refused with a
/// sentence asking for the task.
pub fn resolve_task(
    asked: Option<Task>,
    label: &str,
    label_kind: crate::dataset::ColumnKind,
    values: &std::collections::BTreeMap<String, u64>,
) -> Result<Task, String> {
    use crate::dataset::ColumnKind;
    let numeric = label_kind == ColumnKind::Numeric;
    let classes = values.len();
    match asked {
        Some(Task::Regression) if !numeric => {
            Err(format!("label '{label}' is {label_kind:?}, not numeric: regression needs a numeric label"))
        }
        Some(Task::Regression) if classes < 2 => {
            Err(format!("label '{label}' has {classes} distinct value(s): nothing to regress"))
        }
        Some(Task::Regression) => Ok(Task::Regression),
        Some(Task::Classification) | None if label_kind == ColumnKind::Text && classes > 10_000 => {
            Err(format!("label '{label}' is free text with {classes} distinct values; it cannot be a class"))
        }
        Some(Task::Classification) if classes < 2 => {
            Err(format!("label '{label}' has {classes} class(es); a classifier needs at least 2"))
        }
        Some(Task::Classification) if classes > 10_000 => {
            Err(format!("label '{label}' has {classes} distinct values; a classifier takes at most 10000 classes"))
        }
        Some(Task::Classification) => Ok(Task::Classification),
        None if !numeric && classes < 2 => {
            Err(format!("label '{label}' has {classes} class(es); a classifier needs at least 2"))
        }
        None if !numeric => Ok(Task::Classification),
        None => {
            let whole = values.keys().all(|v| v.parse::<f64>().is_ok_and(|x| x.fract() == 0.0));
            if whole && (2..=MAX_INFERRED_CLASSES).contains(&classes) {
                Ok(Task::Classification)
            } else if classes < 2 {
                Err(format!("label '{label}' has {classes} distinct value(s): nothing to learn"))
            } else {
                Err(format!(
                    "label '{label}' is numeric with {classes} distinct values: say whether to predict it as a number \
                     (--task regression) or as one of {classes} classes (--task classification)"
                ))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnsembleSpec {
    /// One model on all training rows.
    Single,
    /// `members` sub-models, each trained where its shards live, combined by
    /// averaging their probabilities.
    Bagging { members: usize },
    /// One model trained by `workers` nodes on disjoint shards; after each of
    /// `rounds` rounds of local epochs every worker averages all workers'
    /// weights itself (all-reduce through content-addressed blobs, no
    /// parameter server). A worker that fails a round is left out of it.
    DataParallel { workers: usize, rounds: usize },
    /// `members` sub-models trained like bagging's, but without the training
    /// rows [`held_out_for_stacking`] keeps back; a softmax meta-model learns
    /// to combine the members' probabilities on those held-out rows, which
    /// no member has seen (out-of-fold predictions).
    Stacking { members: usize },
    /// `members` sub-models trained one after another on all training rows,
    /// each on what the ones before it got wrong: regressors fit their
    /// residuals, classifiers train on rows drawn by weight (SAMME) and vote
    /// with their accuracy's weight.
    Boosting { members: usize },
}

/// Training rows (by global row number) that stacking keeps back from the
/// members to fit its meta-model on: one in five.
pub fn held_out_for_stacking(row: u64) -> bool {
    row % 5 == 4
}

impl EnsembleSpec {
    /// `single`, `bagging:N`, `stacking:N`, `boosting:N` or
    /// `data-parallel:WORKERS:ROUNDS`.
    pub fn parse(text: &str) -> Result<EnsembleSpec, String> {
        let count = |v: &str| v.parse::<usize>().map_err(|_| format!("ensemble {text}: '{v}' is not a count"));
        match text.split_once(':') {
            None if text == "single" => Ok(EnsembleSpec::Single),
            Some(("data-parallel", rest)) => {
                let (workers, rounds) = rest
                    .split_once(':')
                    .ok_or_else(|| format!("ensemble {text}: expected data-parallel:WORKERS:ROUNDS"))?;
                Ok(EnsembleSpec::DataParallel { workers: count(workers)?, rounds: count(rounds)? })
            }
            Some(("bagging", n)) => Ok(EnsembleSpec::Bagging { members: count(n)? }),
            Some(("boosting", n)) => Ok(EnsembleSpec::Boosting { members: count(n)? }),
            Some(("stacking", n)) => Ok(EnsembleSpec::Stacking { members: count(n)? }),
            _ => Err(format!(
                "ensemble {text}: expected single, bagging:N, stacking:N, boosting:N or data-parallel:WORKERS:ROUNDS"
            )),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        match *self {
            EnsembleSpec::Bagging { members } if !(1..=256).contains(&members) => {
                Err("ensemble: bagging needs 1 to 256 members".into())
            }
            EnsembleSpec::Stacking { members } if !(2..=256).contains(&members) => {
                Err("ensemble: stacking needs 2 to 256 members".into())
            }
            EnsembleSpec::Boosting { members } if !(1..=64).contains(&members) => {
                Err("ensemble: boosting needs 1 to 64 members (they train one after another)".into())
            }
            EnsembleSpec::DataParallel { workers, rounds }
                if !(1..=256).contains(&workers) || !(1..=10_000).contains(&rounds) =>
            {
                Err("ensemble: data-parallel needs 1 to 256 workers and 1 to 10000 rounds".into())
            }
            _ => Ok(()),
        }
    }
}

/// `POST /v1/jobs`. Stored as a blob; its id is the job id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The trained model is named `model/<model>`.
    pub model: String,
    pub dataset: String,
    #[serde(default)]
    pub pipeline: PipelineSpec,
    #[serde(default)]
    pub spec: ModelSpec,
    pub ensemble: EnsembleSpec,
    #[serde(default)]
    pub seed: u64,
    /// Classification or regression; inferred from the label when omitted.
    #[serde(default)]
    pub task: Option<Task>,
    /// How sub-models are placed on nodes.
    #[serde(default)]
    pub placement: Placement,
    /// A study's trial: evaluated on the validation rows, its model kept
    /// unnamed (the study names the winner).
    #[serde(default)]
    pub trial: Option<TrialOf>,
    /// Cross-validation (`--cv K`): K more models of the job's learner, each
    /// trained without one fold of the training rows and judged on it.
    /// Appended last (bincode reads fields in order; older records are read
    /// through [`legacy`]).
    #[serde(default)]
    pub cv: Option<u32>,
}

/// Folds a job may ask for.
pub const MAX_FOLDS: u32 = 20;

/// Which study and trial a job runs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialOf {
    pub study: ContentId,
    pub trial: u32,
    /// Epochs or trees of this run (successive halving runs a trial at
    /// growing resources).
    pub resource: u32,
}

/// How a job's sub-models are placed on nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Where each finishes soonest, by the nodes' measured capacity and
    /// load (a node twice as fast gets about twice the work).
    #[default]
    Capacity,
    /// The same share on every node holding the data, whatever its speed.
    Uniform,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    Completed,
    Failed(String),
    Cancelled,
}

impl JobState {
    /// Whether the job will never run again.
    pub fn is_over(&self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed(_) | JobState::Cancelled)
    }
}

/// One sub-model: which shards, where it was trained, what came out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub shards: Vec<ContentId>,
    pub seed: u64,
    /// Peer that trained it, once done.
    pub peer: Option<String>,
    /// The trained weights (a blob), once done.
    pub weights: Option<ContentId>,
    pub rows: u64,
    /// Accuracy (or R2) of this sub-model alone on the test rows.
    pub test_score: Option<f64>,
    /// Training loss after each epoch (of the last round, data-parallel).
    #[serde(default)]
    pub curve: Vec<f64>,
    /// Boosting: the member's weight in the combination.
    #[serde(default)]
    pub weight: Option<f64>,
    /// The backend that trained it, once done: "cpu", or "wgpu:" and the
    /// adapter's name. Empty in records written before it was recorded.
    #[serde(default)]
    pub backend: String,
}

impl TaskRecord {
    pub fn new(shards: Vec<ContentId>, seed: u64) -> Self {
        Self {
            shards,
            seed,
            peer: None,
            weights: None,
            rows: 0,
            test_score: None,
            curve: vec![],
            weight: None,
            backend: String::new(),
        }
    }
}

/// One sub-model to train: on the training rows of `shards` (fetched if the
/// trainer lacks them), through a fitted pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The job and task index, naming the work in the progress gossiped.
    pub job: ContentId,
    pub task: u32,
    pub shards: Vec<ContentId>,
    pub pipeline: ContentId,
    pub spec: ModelSpec,
    pub seed: u64,
    /// Weights (with their rows) to average into the starting model; empty
    /// starts from fresh weights.
    pub start: Vec<(ContentId, u64)>,
    /// Leave out the rows [`held_out_for_stacking`] keeps for a meta-model.
    pub holdout: bool,
    /// Tree learners: the blob of the trees' bins and objective.
    pub setup: Option<ContentId>,
    /// Boosting: the members before this one, with their combining weights.
    pub boost_from: Vec<(ContentId, f64)>,
    /// Cross-validation: `(fold, folds)`, train without that fold's rows
    /// ([`crate::evaluation::in_fold`]).
    pub fold: Option<(u32, u32)>,
    /// Distillation: the manifest of the model whose outputs on the rows
    /// are the targets (the teacher), in place of the rows' labels.
    pub teacher: Option<ContentId>,
}

/// Gossiped on [`crate::names::PROGRESS_TOPIC`] by a trainer after each epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingProgress {
    pub job: ContentId,
    pub task: u32,
    /// Epochs finished, of `epochs`.
    pub epoch: u32,
    pub epochs: u32,
    pub loss: f64,
}

/// A running task as the nodes last heard of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveTask {
    pub task: u32,
    pub peer: String,
    pub epoch: u32,
    pub epochs: u32,
    pub loss: f64,
}

/// Metrics on the test rows: a classifier's or a regressor's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub rows: u64,
    pub task: Task,
    pub accuracy: Option<f64>,
    pub macro_f1: Option<f64>,
    pub log_loss: Option<f64>,
    /// `confusion[truth][predicted]`; empty for regression.
    pub confusion: Vec<Vec<u64>>,
    pub rmse: Option<f64>,
    pub mae: Option<f64>,
    pub r2: Option<f64>,
    /// Area under the ROC curve: of the second class when there are two,
    /// else the mean of each class against the rest.
    pub roc_auc: Option<f64>,
    /// Expected calibration error: how far the top class's probability is
    /// from how often it is right, over 15 equal-width bins.
    pub calibration_error: Option<f64>,
    /// The metric on the same rows with degraded input; empty until run.
    pub robustness: Vec<RobustnessCheck>,
    /// The headline metric (accuracy, or R2) on the validation rows, which
    /// early stopping and studies judge by; `None` without such rows.
    pub validation: Option<f64>,
}

/// The task's headline metric (accuracy, or R2) on the evaluation rows once
/// perturbed, to say how far to trust the model on noisy or incomplete input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustnessCheck {
    /// What was done to the input, e.g. "gaussian noise 0.5 sd".
    pub perturbation: String,
    /// `None` when the model could not answer (`note` says why).
    pub metric: Option<f64>,
    pub note: Option<String>,
}

impl Evaluation {
    pub fn classification(rows: u64, accuracy: f64, macro_f1: f64, log_loss: f64, confusion: Vec<Vec<u64>>) -> Self {
        Self {
            rows,
            task: Task::Classification,
            accuracy: Some(accuracy),
            macro_f1: Some(macro_f1),
            log_loss: Some(log_loss),
            confusion,
            rmse: None,
            mae: None,
            r2: None,
            roc_auc: None,
            calibration_error: None,
            robustness: vec![],
            validation: None,
        }
    }

    pub fn regression(rows: u64, rmse: f64, mae: f64, r2: f64) -> Self {
        Self {
            rows,
            task: Task::Regression,
            accuracy: None,
            macro_f1: None,
            log_loss: None,
            confusion: vec![],
            rmse: Some(rmse),
            mae: Some(mae),
            r2: Some(r2),
            roc_auc: None,
            calibration_error: None,
            robustness: vec![],
            validation: None,
        }
    }

    /// The headline figure: accuracy, or R2 for a regressor.
    pub fn score(&self) -> f64 {
        self.accuracy.or(self.r2).unwrap_or(f64::NAN)
    }

    /// The figures as one line of text.
    pub fn line(&self) -> String {
        match self.task {
            Task::Classification => format!(
                "test rows {}  accuracy {:.4}  macro F1 {:.4}  log-loss {:.4}  ROC AUC {:.4}  calibration error {:.4}{}",
                self.rows,
                self.accuracy.unwrap_or(f64::NAN),
                self.macro_f1.unwrap_or(f64::NAN),
                self.log_loss.unwrap_or(f64::NAN),
                self.roc_auc.unwrap_or(f64::NAN),
                self.calibration_error.unwrap_or(f64::NAN),
                self.validation.map(|v| format!("  (validation accuracy {v:.4})")).unwrap_or_default()
            ),
            Task::Regression => format!(
                "test rows {}  R2 {:.4}  RMSE {:.4}  MAE {:.4}{}",
                self.rows,
                self.r2.unwrap_or(f64::NAN),
                self.rmse.unwrap_or(f64::NAN),
                self.mae.unwrap_or(f64::NAN),
                self.validation.map(|v| format!("  (validation R2 {v:.4})")).unwrap_or_default()
            ),
        }
    }
}

impl RobustnessCheck {
    /// One line: the perturbation and the metric, or why there is none.
    pub fn line(&self, metric: &str) -> String {
        match (self.metric, &self.note) {
            (Some(value), _) => format!("{:<32} {metric} {value:.4}", self.perturbation),
            (None, note) => format!("{:<32} {}", self.perturbation, note.as_deref().unwrap_or("no answer")),
        }
    }
}

/// The job as its driver last checkpointed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: ContentId,
    pub spec: JobSpec,
    pub state: JobState,
    /// Every peer that drove the job, in order (more than one after a takeover).
    pub drivers: Vec<String>,
    pub dataset_manifest: Option<ContentId>,
    pub pipeline: Option<ContentId>,
    pub tasks: Vec<TaskRecord>,
    /// Data-parallel jobs: rounds finished, and the weights (with their rows)
    /// the next round starts by averaging.
    #[serde(default)]
    pub rounds_done: usize,
    #[serde(default)]
    pub averaged_from: Vec<(ContentId, u64)>,
    pub evaluation: Option<Evaluation>,
    /// The model manifest, once completed.
    pub model: Option<ContentId>,
    /// The task, once the driver resolved it from the dataset.
    pub task: Option<Task>,
    /// Tree learners: the blob of the trees' bins and objective.
    pub setup: Option<ContentId>,
    /// A boosted model grown across the shards' homes: its rounds so far.
    pub boost: Option<BoostRecord>,
    /// Cross-validation: one task per fold (its `test_score`: the fold's
    /// model on the fold's rows). Appended last, as `JobSpec::cv`.
    #[serde(default)]
    pub folds: Vec<TaskRecord>,
}

impl JobRecord {
    /// The record of job `id` as submitted: pending, nothing done yet.
    pub fn pending(id: ContentId, spec: JobSpec) -> Self {
        JobRecord {
            id,
            spec,
            state: JobState::Pending,
            drivers: vec![],
            dataset_manifest: None,
            pipeline: None,
            tasks: vec![],
            rounds_done: 0,
            averaged_from: vec![],
            evaluation: None,
            model: None,
            task: None,
            setup: None,
            boost: None,
            folds: vec![],
        }
    }

    /// A stored record: today's layout, or the one written before
    /// cross-validation (Mass up to 2026-12-02), read with no folds.
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::codec::DecodeError> {
        legacy::decode_or(bytes, legacy::decode_as::<legacy::JobRecordV1, _>)
    }

    /// Checks what the driver indexes by and the bounds a peer's record could
    /// break, so a record however crafted cannot panic a node.
    pub fn validate(&self) -> Result<(), String> {
        self.spec.spec.validate()?;
        self.spec.ensemble.validate()?;
        if self.tasks.len() > 4096 || self.tasks.iter().any(|t| t.shards.is_empty() || t.shards.len() > 1 << 20) {
            return Err("its tasks are empty or too many".into());
        }
        if self.spec.cv.is_some_and(|k| !(2..=MAX_FOLDS).contains(&k))
            || self.folds.len() > MAX_FOLDS as usize
            || self.folds.iter().any(|t| t.shards.is_empty() || t.shards.len() > 1 << 20)
        {
            return Err(format!("its cross-validation asks for other than 2 to {MAX_FOLDS} folds"));
        }
        if self.drivers.len() > 1 << 16 || self.averaged_from.len() > 4096 {
            return Err("its drivers or averaged weights are too many".into());
        }
        if let Some(boost) = &self.boost
            && (boost.rounds.len() > 1 << 20 || boost.workers.len() > 4096)
        {
            return Err("its boosting rounds or workers are too many".into());
        }
        Ok(())
    }
}

/// The checkpoint of trees grown across nodes: one blob per finished round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BoostRecord {
    /// Each finished round's trees (one per output), as a blob.
    pub rounds: Vec<ContentId>,
    /// Mean training loss after each round.
    pub train_loss: Vec<f64>,
    /// Mean validation loss after each round (when the data has validation rows).
    pub validation_loss: Vec<f64>,
    /// Early stopping: the round with the best validation loss, and the loss.
    pub best: Option<(u32, f64)>,
    /// Early stopping ended the job's rounds.
    pub stopped: bool,
    /// The nodes holding the rows in the last drive, with their shards.
    pub workers: Vec<(String, Vec<ContentId>)>,
}

/// How a model's members' outputs become one output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Their mean (bagging, data-parallel, a single model).
    Mean,
    /// The manifest's meta-model over their outputs side by side (stacking).
    Stacked,
    /// `sum(w_k * out_k) / sum(w_k)`: boosted classifiers, parallel compositions.
    WeightedMean(Vec<f64>),
    /// `sum(w_k * out_k)`: boosted regressors (each member fitted to what
    /// the ones before it left).
    WeightedSum(Vec<f64>),
    /// Composed models in a chain: each part reads the rows plus the
    /// outputs of the part before it ([`output_columns`]); the last answers.
    Serial,
}

impl Combine {
    /// Checks the rule against the member count.
    pub fn validate(&self, members: usize) -> Result<(), String> {
        match self {
            Combine::WeightedMean(w) | Combine::WeightedSum(w) if w.len() != members => {
                Err(format!("{} combining weights for {members} members", w.len()))
            }
            Combine::WeightedMean(w) | Combine::WeightedSum(w) if w.iter().any(|v| !v.is_finite()) => {
                Err("combining weights must be finite".into())
            }
            Combine::WeightedMean(w) if w.iter().any(|v| *v < 0.0) || w.iter().sum::<f64>() <= 0.0 => {
                Err("weighted means need weights that are not negative, and not all zero".into())
            }
            _ => Ok(()),
        }
    }
}

/// A trained model: everything needed to predict, and its lineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelManifest {
    pub name: String,
    pub job: ContentId,
    pub spec: JobSpec,
    pub dataset_manifest: ContentId,
    pub pipeline: ContentId,
    /// Sub-model weight blobs; their outputs are averaged, or combined by
    /// `meta` when the model is stacked.
    pub members: Vec<ContentId>,
    /// Stacking's meta-model: a softmax regression over the members'
    /// concatenated probabilities.
    #[serde(default)]
    pub meta: Option<ContentId>,
    /// Training loss per epoch of each member.
    #[serde(default)]
    pub curves: Vec<Vec<f64>>,
    pub classes: Vec<String>,
    pub evaluation: Evaluation,
    /// Peer that trained each member.
    pub trained_on: Vec<String>,
    pub task: Task,
    pub combine: Combine,
    /// A composed model: the manifests of its parts (it has no members).
    pub parts: Vec<ContentId>,
    /// The study whose winner this model is.
    #[serde(default)]
    pub study: Option<ContentId>,
    /// A compressed version: its parent, how it was made, its size and
    /// latency beside the parent's. Appended last (bincode reads fields in
    /// order): manifests stored before it do not decode, as with `study`.
    #[serde(default)]
    pub compression: Option<Compression>,
    /// The job's cross-validation, when it asked for one.
    #[serde(default)]
    pub cross_validation: Option<CrossValidation>,
}

/// K-fold cross-validation of a job's learner: the headline metric
/// (accuracy, or R2) of each fold's model on the training rows it was
/// trained without.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossValidation {
    pub folds: Vec<f64>,
    pub mean: f64,
    /// Sample standard deviation of the fold scores.
    pub sd: f64,
}

impl CrossValidation {
    pub fn of(folds: Vec<f64>) -> Self {
        let n = folds.len().max(1) as f64;
        let mean = folds.iter().sum::<f64>() / n;
        let sd = if folds.len() < 2 {
            0.0
        } else {
            (folds.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        };
        Self { folds, mean, sd }
    }
}

/// How a compressed version was made from its parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompressMethod {
    /// Dense layers quantized to int8 per output column.
    Int8,
    /// Each layer's smallest weights removed down to `sparsity`, then
    /// `fine_tune_epochs` epochs of training keeping them removed.
    Prune { sparsity: f64, fine_tune_epochs: u32 },
    /// One network with these hidden layers trained on the parent's outputs.
    Distill { hidden: Vec<usize> },
}

impl CompressMethod {
    pub fn name(&self) -> String {
        match self {
            CompressMethod::Int8 => "int8".into(),
            CompressMethod::Prune { sparsity, fine_tune_epochs: 0 } => format!("prune {sparsity}"),
            CompressMethod::Prune { sparsity, fine_tune_epochs } => {
                format!("prune {sparsity} + {fine_tune_epochs} epochs")
            }
            CompressMethod::Distill { hidden } => format!("distill {}", Learner::Mlp { hidden: hidden.clone() }.name()),
        }
    }
}

/// Time to predict, measured on one node (the model's members and their
/// combination on featurized rows, after the pipeline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median over single rows, microseconds.
    pub one_row_us: f64,
    /// Median of 1,000-row batches, milliseconds.
    pub thousand_rows_ms: f64,
}

/// What a compressed version records of its making.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compression {
    /// The manifest compressed, and its version number then.
    pub parent: ContentId,
    pub parent_version: u64,
    pub method: CompressMethod,
    /// Bytes of the members (and meta-model) as stored, this and the parent.
    pub bytes: u64,
    pub parent_bytes: u64,
    /// This and the parent measured side by side on `measured_on`.
    pub latency: Latency,
    pub parent_latency: Latency,
    pub measured_on: String,
    /// Fraction of the weights that are zero (pruning).
    pub sparsity: Option<f64>,
}

impl ModelManifest {
    /// Decodes a stored manifest, also in the layout nodes wrote before
    /// evaluation reports and compression were recorded (Mass up to
    /// 2026-12-01), so models registered by an older node stay served after
    /// an upgrade; their new fields read as absent.
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::codec::DecodeError> {
        legacy::decode_or(bytes, |bytes| {
            legacy::decode_as::<legacy::ModelManifestV1, _>(bytes)
                .or_else(|_| legacy::decode_as::<legacy::ModelManifestV0, _>(bytes))
        })
    }
}

/// Record layouts earlier nodes wrote, read for compatibility. bincode
/// reads fields in order, so a field appended to a stored type changes its
/// layout: the layout before is kept here, and read when today's fails.
/// V0: before evaluation reports and compression (to 2026-12-01); V1:
/// before cross-validation (to 2026-12-02).
pub(crate) mod legacy {
    use serde::{Deserialize, Serialize, de::DeserializeOwned};

    use super::{
        BoostRecord, Combine, Compression, EnsembleSpec, Evaluation, JobRecord, JobSpec, JobState, ModelManifest,
        ModelSpec, Placement, Task, TaskRecord, TrialOf,
    };
    use crate::{ContentId, codec::DecodeError, features::PipelineSpec};

    /// Today's layout, or what `older` reads; today's error when neither does.
    pub fn decode_or<T: DeserializeOwned>(
        bytes: &[u8],
        older: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        crate::codec::decode(bytes, crate::codec::MAX_RECORD).or_else(|error| older(bytes).map_err(|_| error))
    }

    /// `bytes` read as the older layout `Old`, brought to today's.
    pub fn decode_as<Old: DeserializeOwned + Into<T>, T>(bytes: &[u8]) -> Result<T, DecodeError> {
        crate::codec::decode::<Old>(bytes, crate::codec::MAX_RECORD).map(Into::into)
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct JobSpecV1 {
        pub model: String,
        pub dataset: String,
        pub pipeline: PipelineSpec,
        pub spec: ModelSpec,
        pub ensemble: EnsembleSpec,
        pub seed: u64,
        pub task: Option<Task>,
        pub placement: Placement,
        pub trial: Option<TrialOf>,
    }

    impl From<JobSpecV1> for JobSpec {
        fn from(old: JobSpecV1) -> Self {
            Self {
                model: old.model,
                dataset: old.dataset,
                pipeline: old.pipeline,
                spec: old.spec,
                ensemble: old.ensemble,
                seed: old.seed,
                task: old.task,
                placement: old.placement,
                trial: old.trial,
                cv: None,
            }
        }
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct JobRecordV1 {
        pub id: ContentId,
        pub spec: JobSpecV1,
        pub state: JobState,
        pub drivers: Vec<String>,
        pub dataset_manifest: Option<ContentId>,
        pub pipeline: Option<ContentId>,
        pub tasks: Vec<TaskRecord>,
        pub rounds_done: usize,
        pub averaged_from: Vec<(ContentId, u64)>,
        pub evaluation: Option<Evaluation>,
        pub model: Option<ContentId>,
        pub task: Option<Task>,
        pub setup: Option<ContentId>,
        pub boost: Option<BoostRecord>,
    }

    impl From<JobRecordV1> for JobRecord {
        fn from(old: JobRecordV1) -> Self {
            Self {
                id: old.id,
                spec: old.spec.into(),
                state: old.state,
                drivers: old.drivers,
                dataset_manifest: old.dataset_manifest,
                pipeline: old.pipeline,
                tasks: old.tasks,
                rounds_done: old.rounds_done,
                averaged_from: old.averaged_from,
                evaluation: old.evaluation,
                model: old.model,
                task: old.task,
                setup: old.setup,
                boost: old.boost,
                folds: vec![],
            }
        }
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct ModelManifestV1 {
        pub name: String,
        pub job: ContentId,
        pub spec: JobSpecV1,
        pub dataset_manifest: ContentId,
        pub pipeline: ContentId,
        pub members: Vec<ContentId>,
        pub meta: Option<ContentId>,
        pub curves: Vec<Vec<f64>>,
        pub classes: Vec<String>,
        pub evaluation: Evaluation,
        pub trained_on: Vec<String>,
        pub task: Task,
        pub combine: Combine,
        pub parts: Vec<ContentId>,
        pub study: Option<ContentId>,
        pub compression: Option<Compression>,
    }

    impl From<ModelManifestV1> for ModelManifest {
        fn from(old: ModelManifestV1) -> Self {
            Self {
                name: old.name,
                job: old.job,
                spec: old.spec.into(),
                dataset_manifest: old.dataset_manifest,
                pipeline: old.pipeline,
                members: old.members,
                meta: old.meta,
                curves: old.curves,
                classes: old.classes,
                evaluation: old.evaluation,
                trained_on: old.trained_on,
                task: old.task,
                combine: old.combine,
                parts: old.parts,
                study: old.study,
                compression: old.compression,
                cross_validation: None,
            }
        }
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct EvaluationV0 {
        pub rows: u64,
        pub task: Task,
        pub accuracy: Option<f64>,
        pub macro_f1: Option<f64>,
        pub log_loss: Option<f64>,
        pub confusion: Vec<Vec<u64>>,
        pub rmse: Option<f64>,
        pub mae: Option<f64>,
        pub r2: Option<f64>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct ModelManifestV0 {
        pub name: String,
        pub job: ContentId,
        pub spec: JobSpecV1,
        pub dataset_manifest: ContentId,
        pub pipeline: ContentId,
        pub members: Vec<ContentId>,
        pub meta: Option<ContentId>,
        pub curves: Vec<Vec<f64>>,
        pub classes: Vec<String>,
        pub evaluation: EvaluationV0,
        pub trained_on: Vec<String>,
        pub task: Task,
        pub combine: Combine,
        pub parts: Vec<ContentId>,
        pub study: Option<ContentId>,
    }

    impl From<ModelManifestV0> for ModelManifest {
        fn from(old: ModelManifestV0) -> Self {
            let e = old.evaluation;
            Self {
                name: old.name,
                job: old.job,
                spec: old.spec.into(),
                dataset_manifest: old.dataset_manifest,
                pipeline: old.pipeline,
                members: old.members,
                meta: old.meta,
                curves: old.curves,
                classes: old.classes,
                evaluation: Evaluation {
                    rows: e.rows,
                    task: e.task,
                    accuracy: e.accuracy,
                    macro_f1: e.macro_f1,
                    log_loss: e.log_loss,
                    confusion: e.confusion,
                    rmse: e.rmse,
                    mae: e.mae,
                    r2: e.r2,
                    roc_auc: None,
                    calibration_error: None,
                    robustness: vec![],
                    validation: None,
                },
                trained_on: old.trained_on,
                task: old.task,
                combine: old.combine,
                parts: old.parts,
                study: old.study,
                compression: None,
                cross_validation: None,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn spec_v1() -> JobSpecV1 {
            JobSpecV1 {
                model: "m".into(),
                dataset: "d".into(),
                pipeline: PipelineSpec::default(),
                spec: ModelSpec::default(),
                ensemble: EnsembleSpec::Bagging { members: 2 },
                seed: 3,
                task: Some(Task::Classification),
                placement: Placement::Uniform,
                trial: None,
            }
        }

        #[test]
        fn records_written_before_cross_validation_still_read() {
            let record = JobRecordV1 {
                id: ContentId::of(b"job"),
                spec: spec_v1(),
                state: JobState::Completed,
                drivers: vec!["peer".into()],
                dataset_manifest: None,
                pipeline: Some(ContentId::of(b"pipeline")),
                tasks: vec![TaskRecord::new(vec![ContentId::of(b"shard")], 3)],
                rounds_done: 0,
                averaged_from: vec![],
                evaluation: None,
                model: Some(ContentId::of(b"model")),
                task: Some(Task::Classification),
                setup: None,
                boost: None,
            };
            let read = JobRecord::decode(&crate::codec::encode(&record).unwrap()).unwrap();
            assert_eq!((read.spec.seed, read.spec.placement, read.spec.cv), (3, Placement::Uniform, None));
            assert_eq!((read.tasks.len(), read.model, read.folds.len()), (1, record.model, 0));
            let mut today = read.clone();
            today.folds = today.tasks.clone();
            today.spec.cv = Some(5);
            assert_eq!(JobRecord::decode(&crate::codec::encode(&today).unwrap()).unwrap(), today);

            let manifest = ModelManifestV1 {
                name: "m".into(),
                job: record.id,
                spec: spec_v1(),
                dataset_manifest: ContentId::of(b"dataset"),
                pipeline: ContentId::of(b"pipeline"),
                members: vec![ContentId::of(b"member")],
                meta: None,
                curves: vec![],
                classes: vec!["a".into(), "b".into()],
                evaluation: Evaluation::regression(4, 1.0, 0.5, 0.9),
                trained_on: vec!["peer".into()],
                task: Task::Regression,
                combine: Combine::Mean,
                parts: vec![],
                study: None,
                compression: None,
            };
            let read = ModelManifest::decode(&crate::codec::encode(&manifest).unwrap()).unwrap();
            assert_eq!(
                (read.evaluation.r2, read.spec.ensemble, read.cross_validation),
                (Some(0.9), EnsembleSpec::Bagging { members: 2 }, None)
            );
        }

        #[test]
        fn a_manifest_written_before_reports_and_compression_still_reads() {
            let spec = spec_v1();
            let old = ModelManifestV0 {
                name: "m".into(),
                job: ContentId::of(b"job"),
                spec,
                dataset_manifest: ContentId::of(b"dataset"),
                pipeline: ContentId::of(b"pipeline"),
                members: vec![ContentId::of(b"member")],
                meta: None,
                curves: vec![vec![0.5, 0.25]],
                classes: vec!["a".into(), "b".into()],
                evaluation: EvaluationV0 {
                    rows: 10,
                    task: Task::Classification,
                    accuracy: Some(0.9),
                    macro_f1: Some(0.85),
                    log_loss: Some(0.3),
                    confusion: vec![vec![5, 0], vec![1, 4]],
                    rmse: None,
                    mae: None,
                    r2: None,
                },
                trained_on: vec!["peer".into()],
                task: Task::Classification,
                combine: Combine::Mean,
                parts: vec![],
                study: None,
            };
            let bytes = crate::codec::encode(&old).unwrap();
            let read = ModelManifest::decode(&bytes).unwrap();
            assert_eq!(read.evaluation.accuracy, Some(0.9));
            assert_eq!(read.evaluation.confusion, vec![vec![5, 0], vec![1, 4]]);
            assert_eq!((read.members, read.trained_on, read.curves), (old.members, old.trained_on, old.curves));
            assert!(read.evaluation.robustness.is_empty() && read.compression.is_none());
            // Today's layout reads as itself, and garbage is refused with the new layout's error.
            let mut new = ModelManifest::decode(&bytes).unwrap();
            new.evaluation.roc_auc = Some(0.95);
            assert_eq!(ModelManifest::decode(&crate::codec::encode(&new).unwrap()).unwrap(), new);
            assert!(ModelManifest::decode(&bytes[..bytes.len() / 2]).is_err());
        }
    }
}

/// The columns a model's outputs become when the next model of a serial
/// composition reads them: `<model>:<class>` (each class's probability),
/// or `<model>` (the predicted value).
pub fn output_columns(model: &str, task: Task, classes: &[String]) -> Vec<String> {
    match task {
        Task::Classification => classes.iter().map(|c| format!("{model}:{c}")).collect(),
        Task::Regression => vec![model.to_owned()],
    }
}
