//! Training jobs: what a user asks for, and the record a driver keeps (and
//! checkpoints as `job/<id>`) so that another node can take over.

use serde::{Deserialize, Serialize};

use crate::{ContentId, features::PipelineSpec};

/// A model family and its training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    /// Hidden layer widths; empty is softmax (logistic) regression.
    pub hidden: Vec<usize>,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f32,
    pub l2: f32,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self { hidden: vec![128], epochs: 20, batch_size: 64, learning_rate: 1e-3, l2: 1e-4 }
    }
}

impl ModelSpec {
    /// Settings a trainer accepts, whoever sent them (a user or a peer).
    pub fn validate(&self) -> Result<(), String> {
        if self.epochs == 0
            || self.epochs > 10_000
            || self.batch_size == 0
            || !(self.learning_rate > 0.0 && self.learning_rate.is_finite())
            || !(self.l2 >= 0.0 && self.l2.is_finite())
        {
            return Err(
                "spec: epochs must be 1-10000, batch_size at least 1, learning_rate positive, l2 not negative".into()
            );
        }
        if self.hidden.iter().any(|w| *w == 0 || *w > 65_536) {
            return Err("spec.hidden: every layer needs 1 to 65536 units".into());
        }
        Ok(())
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
}

/// Training rows (by global row number) that stacking keeps back from the
/// members to fit its meta-model on: one in five.
pub fn held_out_for_stacking(row: u64) -> bool {
    row % 5 == 4
}

impl EnsembleSpec {
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            EnsembleSpec::Bagging { members } if !(1..=256).contains(&members) => {
                Err("ensemble: bagging needs 1 to 256 members".into())
            }
            EnsembleSpec::Stacking { members } if !(2..=256).contains(&members) => {
                Err("ensemble: stacking needs 2 to 256 members".into())
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
    /// Accuracy of this sub-model alone on the test rows.
    pub test_accuracy: Option<f64>,
    /// Training loss after each epoch (of the last round, data-parallel).
    #[serde(default)]
    pub curve: Vec<f64>,
}

impl TaskRecord {
    pub fn new(shards: Vec<ContentId>, seed: u64) -> Self {
        Self { shards, seed, peer: None, weights: None, rows: 0, test_accuracy: None, curve: vec![] }
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

/// Metrics on the test rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub rows: u64,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub log_loss: f64,
    pub confusion: Vec<Vec<u64>>,
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
}
