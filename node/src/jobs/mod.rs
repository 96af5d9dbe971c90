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
pub mod watcher;

pub use watcher::JobWatcher;

/// Refs of job records are `job/<id>`.
pub const REF_PREFIX: &str = "job/";
/// Refs of trained models are `model/<name>`.
pub const MODEL_PREFIX: &str = "model/";
