//! Hyperparameter studies: a search space over a job's settings, a
//! strategy, and the journal a driver checkpoints (as `study/<id>`) so that
//! another node can take over.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    ContentId,
    jobs::{JobSpec, Task, legacy},
};

/// How one parameter may vary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// One of these values (numbers or text, as the parameter takes them).
    Choice(Vec<ParamValue>),
    Uniform([f64; 2]),
    LogUniform([f64; 2]),
    Int([i64; 2]),
    LogInt([i64; 2]),
}

/// A parameter's value in a trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamValue {
    Number(f64),
    Text(String),
}

impl ParamValue {
    pub fn number(&self) -> Option<f64> {
        match self {
            ParamValue::Number(v) => Some(*v),
            ParamValue::Text(t) => t.parse().ok(),
        }
    }

    pub fn text(&self) -> String {
        match self {
            ParamValue::Number(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", *v as i64),
            ParamValue::Number(v) => v.to_string(),
            ParamValue::Text(t) => t.clone(),
        }
    }
}

/// The parameters a study may vary, and what each sets in a job spec.
pub const PARAMETERS: [(&str, &str); 14] = [
    ("model", "the learner: linear, mlp:W[,W...] or gbdt"),
    ("ensemble", "single, bagging:N, stacking:N or boosting:N"),
    ("learning_rate", "a network's learning rate (Adam)"),
    ("epochs", "a network's epochs"),
    ("batch_size", "a network's batch size"),
    ("l2", "L2 penalty (weights, or tree leaf values)"),
    ("trees", "boosting rounds of trees"),
    ("leaves", "leaves per tree at most"),
    ("max_depth", "tree depth at most (0: no limit)"),
    ("min_rows", "training rows per leaf at least"),
    ("tree_learning_rate", "trees' learning rate"),
    ("row_fraction", "fraction of rows each boosting round samples"),
    ("feature_fraction", "fraction of features each tree may use"),
    ("scale", "scaling of numeric columns: standard, min-max or none"),
];

/// A search space: parameter name to domain.
pub type Space = BTreeMap<String, Domain>;

/// How trials are proposed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every combination of choices (continuous ranges at `steps` points).
    Grid {
        steps: usize,
    },
    Random,
    /// Tree-structured Parzen estimators after `startup` random trials.
    Tpe {
        startup: usize,
    },
    /// Generations of `population`: tournament parents, uniform crossover,
    /// each parameter resampled with probability `mutation`.
    Genetic {
        population: usize,
        mutation: f64,
    },
}

/// Asynchronous successive halving: a trial first runs with `min_resource`
/// epochs (or trees); the best 1/`eta` at each rung go on with `eta` times
/// the resource, up to the trial's own.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Asha {
    pub min_resource: usize,
    pub eta: usize,
}

/// What a study maximizes or minimizes, on the validation rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Accuracy,
    MacroF1,
    LogLoss,
    R2,
    Rmse,
    Mae,
}

impl Metric {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "accuracy" => Metric::Accuracy,
            "macro_f1" | "f1" => Metric::MacroF1,
            "log_loss" | "logloss" => Metric::LogLoss,
            "r2" => Metric::R2,
            "rmse" => Metric::Rmse,
            "mae" => Metric::Mae,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::MacroF1 => "macro_f1",
            Metric::LogLoss => "log_loss",
            Metric::R2 => "r2",
            Metric::Rmse => "rmse",
            Metric::Mae => "mae",
        }
    }

    /// Whether larger is better.
    pub fn maximize(self) -> bool {
        matches!(self, Metric::Accuracy | Metric::MacroF1 | Metric::R2)
    }

    /// The task the metric belongs to.
    pub fn task(self) -> Task {
        match self {
            Metric::Accuracy | Metric::MacroF1 | Metric::LogLoss => Task::Classification,
            Metric::R2 | Metric::Rmse | Metric::Mae => Task::Regression,
        }
    }

    /// The metric's value in an evaluation.
    pub fn of(self, e: &crate::jobs::Evaluation) -> Option<f64> {
        match self {
            Metric::Accuracy => e.accuracy,
            Metric::MacroF1 => e.macro_f1,
            Metric::LogLoss => e.log_loss,
            Metric::R2 => e.r2,
            Metric::Rmse => e.rmse,
            Metric::Mae => e.mae,
        }
    }
}

/// `POST /v1/studies`: stored as a blob; its id is the study id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySpec {
    /// The winner is registered as `model/<name>`.
    pub name: String,
    /// What every trial starts from (dataset, pipeline, task, seed); the
    /// space's parameters override it.
    pub base: JobSpec,
    pub space: Space,
    pub strategy: Strategy,
    #[serde(default)]
    pub asha: Option<Asha>,
    /// Accuracy for classes, R2 for numbers when omitted (the node that
    /// accepts the study fills it in).
    #[serde(default)]
    pub metric: Option<Metric>,
    pub trials: usize,
    /// Trials running at once.
    pub parallel: usize,
    #[serde(default)]
    pub seed: u64,
}

impl StudySpec {
    pub fn metric(&self) -> Metric {
        self.metric.unwrap_or(Metric::Accuracy)
    }
}

/// The metric a study of `task` is judged by when it names none.
pub fn default_metric(task: Task) -> Metric {
    match task {
        Task::Classification => Metric::Accuracy,
        Task::Regression => Metric::R2,
    }
}

/// Where a trial stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    Running,
    /// Finished its last rung (or its only run).
    Completed,
    /// Stopped by successive halving after a rung.
    Stopped,
    Failed(String),
}

/// One run of a trial: a job at one resource (epochs or trees).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RungRun {
    pub resource: usize,
    pub job: ContentId,
    /// The validation metric, once the job completed.
    pub score: Option<f64>,
    /// The peer that drove the job.
    pub peer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub number: usize,
    pub params: BTreeMap<String, ParamValue>,
    pub state: TrialState,
    /// Runs in order of resource (one without successive halving).
    pub runs: Vec<RungRun>,
}

impl Trial {
    /// The score of the trial's last finished run.
    pub fn score(&self) -> Option<f64> {
        self.runs.iter().rev().find_map(|r| r.score)
    }

    pub fn is_over(&self) -> bool {
        !matches!(self.state, TrialState::Running)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StudyState {
    Running,
    Completed,
    Failed(String),
    Cancelled,
}

impl StudyState {
    pub fn is_over(&self) -> bool {
        !matches!(self, StudyState::Running)
    }
}

/// The journal: everything a driver needs to continue, checkpointed as
/// `study/<id>` after every change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyRecord {
    pub id: ContentId,
    pub spec: StudySpec,
    pub state: StudyState,
    pub drivers: Vec<String>,
    pub trials: Vec<Trial>,
    /// The winner: trial number, and the registered model manifest.
    pub best: Option<(usize, ContentId)>,
    /// The winner's metrics on the test rows (reported for it alone).
    pub test: Option<crate::jobs::Evaluation>,
}

/// Trials a journal may ask for, and run at once, however it was written.
pub const MAX_TRIALS: usize = 100_000;
pub const MAX_PARALLEL: usize = 64;

impl StudyRecord {
    /// A stored journal: today's layout, or the one written before jobs had
    /// cross-validation (Mass up to 2026-12-02).
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::codec::DecodeError> {
        legacy::decode_or(bytes, legacy::decode_as::<StudyRecordV1, _>)
    }

    /// Checks what a driver reads: a journal is peer bytes (any peer may
    /// write its own `study/<id>` ref), and the driver proposes trials up
    /// to the spec's `parallel` and `trials` in one step, so those are
    /// bounded here as well as at submission.
    pub fn validate(&self) -> Result<(), String> {
        if self.trials.len() > MAX_TRIALS || self.trials.iter().any(|t| t.runs.len() > 64) {
            return Err("the journal has too many trials or runs".into());
        }
        // A trial gets its first run as it is proposed; the driver reads a
        // running trial's last run.
        if let Some(t) = self.trials.iter().find(|t| !t.is_over() && t.runs.is_empty()) {
            return Err(format!("trial {} is running but has no run", t.number));
        }
        if self.spec.trials > MAX_TRIALS || self.spec.parallel == 0 || self.spec.parallel > MAX_PARALLEL {
            return Err(format!(
                "the journal asks for {} trials, {} at once (at most {MAX_TRIALS}, 1-{MAX_PARALLEL} at once)",
                self.spec.trials, self.spec.parallel
            ));
        }
        validate_space(&self.spec.space)
    }
}

/// Checks a space against the known parameters; a sentence names what is wrong.
pub fn validate_space(space: &Space) -> Result<(), String> {
    if space.is_empty() {
        return Err("space: no parameters to search".into());
    }
    for (name, domain) in space {
        if !PARAMETERS.iter().any(|(p, _)| p == name) {
            let known: Vec<&str> = PARAMETERS.iter().map(|(p, _)| *p).collect();
            return Err(format!("space.{name}: unknown parameter; known: {}", known.join(", ")));
        }
        let bad = |why: &str| Err(format!("space.{name}: {why}"));
        match domain {
            Domain::Choice(values) if values.is_empty() => return bad("an empty list of choices"),
            Domain::Uniform([lo, hi]) if !(lo.is_finite() && hi.is_finite() && lo < hi) => {
                return bad("the range must be finite with low < high");
            }
            Domain::LogUniform([lo, hi]) if !(lo.is_finite() && hi.is_finite() && *lo > 0.0 && lo < hi) => {
                return bad("a log range must be positive with low < high");
            }
            Domain::Int([lo, hi]) if lo > hi => return bad("the range is inverted (low > high)"),
            Domain::LogInt([lo, hi]) if *lo < 1 || lo > hi => {
                return bad("a log range must be positive with low <= high");
            }
            _ => {}
        }
    }
    Ok(())
}

/// The journal's layout before jobs had cross-validation (its base job spec
/// one field shorter); see `jobs::legacy`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StudyRecordV1 {
    id: ContentId,
    spec: StudySpecV1,
    state: StudyState,
    drivers: Vec<String>,
    trials: Vec<Trial>,
    best: Option<(usize, ContentId)>,
    test: Option<crate::jobs::Evaluation>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StudySpecV1 {
    name: String,
    base: legacy::JobSpecV1,
    space: Space,
    strategy: Strategy,
    asha: Option<Asha>,
    metric: Option<Metric>,
    trials: usize,
    parallel: usize,
    seed: u64,
}

impl From<StudyRecordV1> for StudyRecord {
    fn from(old: StudyRecordV1) -> Self {
        let spec = old.spec;
        Self {
            id: old.id,
            spec: StudySpec {
                name: spec.name,
                base: spec.base.into(),
                space: spec.space,
                strategy: spec.strategy,
                asha: spec.asha,
                metric: spec.metric,
                trials: spec.trials,
                parallel: spec.parallel,
                seed: spec.seed,
            },
            state: old.state,
            drivers: old.drivers,
            trials: old.trials,
            best: old.best,
            test: old.test,
        }
    }
}
