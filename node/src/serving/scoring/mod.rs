//! Batch predictions as jobs without a driver to lose.
//!
//! A submission resolves the model's served version and the dataset's
//! manifest into a spec blob, whose id names the job, and opens its record
//! under `scoring/<id>`. Every node's watcher looks at open scoring jobs and
//! the top-ranked live peer for an id drives it ([`driver`]): each shard is
//! scored on a node holding it, its scores stored as a blob of their own
//! (the sharded result), and the record, listing them, is checkpointed
//! every few seconds. A driver that dies is replaced by the next-ranked
//! peer, which scores only the shards its record does not list. When every
//! shard is scored, the parts become one CSV blob named
//! `predictions/<model>/<dataset>`, exactly as an uninterrupted run writes.
//!
//! # Layout
//! - [`plan`]: the decisions (shards left, what a result or a failure changes), pure.
//! - [`driver`]: one job, from its record to the result.

pub mod driver;
pub mod plan;

use std::time::Duration;

use mass_protocol::{
    ContentId,
    serving::{BatchPrediction, ScoringRecord, ScoringSpec, ScoringState},
    storage::BlobKind,
};

use super::{batch, registry, router::ServeError};
use crate::{
    jobs::watcher::{Drivable, Seen, Watcher},
    mesh::Mesh,
};

/// Refs of scoring jobs' records are `scoring/<id>`.
pub const REF_PREFIX: &str = "scoring/";
/// The longest a caller waiting for a job waits for a write of its record
/// before it reads the record anyway.
const WAIT_AT_MOST: Duration = Duration::from_secs(1);

/// The record of scoring job `id`, if there is one.
pub async fn record(mesh: &Mesh, id: ContentId) -> Result<Option<ScoringRecord>, String> {
    let Some((target, record)) = mesh.load_checkpoint::<ScoringRecord>(&format!("{REF_PREFIX}{id}")).await? else {
        return Ok(None);
    };
    plan::check(&record, id, record.shards.len()).map_err(|e| format!("scoring record {target}: {e}"))?;
    Ok(Some(record))
}

/// Stores the record and points `scoring/<id>` at it.
pub async fn checkpoint(mesh: &Mesh, record: &ScoringRecord) -> Result<(), String> {
    let id = mesh.save_checkpoint(record).await?;
    mesh.write_ref(format!("{REF_PREFIX}{}", record.id), Some(id)).await.map(|_| ()).map_err(|e| e.to_string())
}

/// Opens a scoring job of the served version of `model` over `dataset`;
/// with `into`, the rows with the outputs become dataset `into` as well.
pub async fn submit(mesh: &Mesh, model: &str, dataset: &str, into: Option<&str>) -> Result<ContentId, ServeError> {
    batch::check_into(dataset, into)?;
    let (manifest, version) = registry::current(mesh, model).await?;
    let (dataset_manifest, data) = mesh.dataset(dataset).await.map_err(ServeError::NotFound)?;
    let spec = ScoringSpec {
        model: model.to_owned(),
        version,
        manifest,
        dataset: dataset.to_owned(),
        dataset_manifest,
        into: into.map(str::to_owned),
        nonce: rand::random(),
    };
    let id = mesh.save(&spec, BlobKind::Checkpoint).await.map_err(ServeError::Unavailable)?;
    checkpoint(mesh, &plan::open(id, spec, data.shards.len())).await.map_err(ServeError::Unavailable)?;
    Ok(id)
}

/// Waits up to `within` for scoring job `id` to be over; its result, or
/// why it failed.
pub async fn wait(mesh: &Mesh, id: ContentId, within: Duration) -> Result<BatchPrediction, ServeError> {
    let name = format!("{REF_PREFIX}{id}");
    let deadline = tokio::time::Instant::now() + within;
    let mut writes = mesh.storage.ref_writes();
    loop {
        // The driver may be another node: ask the ref's homes, not only gossip.
        crate::shared_refs::refresh(mesh, &name).await;
        if let Some(record) = record(mesh, id).await.map_err(ServeError::Unavailable)? {
            match (record.state, record.result) {
                (ScoringState::Completed, Some(result)) => return Ok(result),
                (ScoringState::Failed(reason), _) => return Err(ServeError::Unavailable(reason)),
                _ => {}
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServeError::Unavailable(format!(
                "scoring job {id} is still running; follow it at GET /v1/scorings/{id}"
            )));
        }
        crate::storage::ref_written(&mut writes, WAIT_AT_MOST, |written| written == name).await;
    }
}

/// Scoring jobs, watched like training jobs.
pub struct Scorings;

impl Drivable for Scorings {
    const PREFIX: &'static str = REF_PREFIX;
    const KIND: &'static str = "scoring";

    fn state(mesh: &Mesh, id: ContentId) -> futures::future::BoxFuture<'_, Result<Option<Seen>, String>> {
        Box::pin(async move { Ok(record(mesh, id).await?.map(|r| scoring_state(&r.state))) })
    }

    fn drive(mesh: Mesh, id: ContentId) -> futures::future::BoxFuture<'static, Result<(), String>> {
        Box::pin(driver::drive(mesh, id))
    }
}

pub type ScoringWatcher = Watcher<Scorings>;

/// A scoring job's state as a label of `mass_scorings`.
pub fn scoring_state(state: &ScoringState) -> Seen {
    let label = match state {
        ScoringState::Running => "running",
        ScoringState::Completed => "completed",
        ScoringState::Failed(_) => "failed",
    };
    Seen { over: state.is_over(), state: label }
}
