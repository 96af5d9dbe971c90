//! Training jobs without a coordinator.
//!
//! A job is a spec blob; its id names it. Whoever receives it writes a
//! `Pending` record under `job/<id>`. Every node's [`watcher`] looks at open
//! jobs and, when it ranks first for a job's id among the live peers, drives
//! it ([`driver`]): fits the pipeline where the shards live, sends each
//! sub-model's training to a node holding its shards ([`task`]), has each
//! test shard's holder judge the model ([`judge`]), and names the model.
//! The record is checkpointed after every step, so when a driver dies the next-ranked peer resumes from it.
//!
//! # Layout
//! - [`boost`]: boosted trees grown across the shards' homes.
//! - [`dispatch`]: handing tasks to nodes within their compute slots.
//! - [`learners`]: which algorithm each learner runs, with defaults that converge.
//! - [`task`]: training one sub-model on shards, and reading rows for it.
//! - [`teacher`]: a student trained on a teacher model's outputs (distillation where the shards live).
//! - [`evaluate`]: test metrics as mergeable tallies, and stacking's meta-model.
//! - [`judge`]: a model judged on each shard where it lives, tallies added.
//! - [`machine`]: the driver's decisions, pure: the next step, what an outcome changes, the invariants.
//! - [`driver`]: one job, from its record to a named model: executes the machine's steps.
//! - [`submit`]: accepting a job (every check before it runs).
//! - [`watcher`]: which jobs this node drives.
//! - [`progress`]: epochs and losses of running tasks, heard by gossip.
//! - [`byzantine`]: fault injection for tests, a node that lies as a data-parallel worker.

pub mod boost;
pub mod byzantine;
pub mod dispatch;
pub mod driver;
pub mod evaluate;
pub mod judge;
pub mod learners;
pub mod machine;
pub mod progress;
pub mod robustness;
pub mod submit;
pub mod task;
pub mod teacher;
pub mod watcher;

pub use watcher::JobWatcher;

/// Work made of many like pieces (boosting rounds, scored shards) is
/// checkpointed at most this often, and at its end. A checkpoint costs a
/// few round trips (the fencing read, two homes holding the record, the
/// ref write): on a small set, more than a piece itself. Pieces done since
/// are done again, to the same result, by a driver that takes over.
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether to checkpoint after a piece of work.
pub fn checkpoint_due(since_last: std::time::Duration, last_piece: bool) -> bool {
    last_piece || since_last >= CHECKPOINT_EVERY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_checkpointed_every_few_seconds_and_at_the_end() {
        assert!(!checkpoint_due(std::time::Duration::from_millis(300), false));
        assert!(checkpoint_due(std::time::Duration::from_millis(300), true));
        assert!(checkpoint_due(CHECKPOINT_EVERY, false));
    }
}

/// Refs of job records are `job/<id>`.
pub const REF_PREFIX: &str = "job/";
/// Refs of trained models are `model/<name>`.
pub const MODEL_PREFIX: &str = "model/";
