//! Hyperparameter studies without a driver to lose.
//!
//! A study is a spec blob; its id names it. Its journal (every trial's
//! parameters, runs, scores and where they ran) is checkpointed under
//! `study/<id>` after every change. Every node's watcher looks at open
//! studies and the top-ranked live peer for a study's id drives it
//! ([`driver`]): it proposes trials ([`plan`]), runs each as a training job
//! (placed by capacity like any job, driven by its own top-ranked peer),
//! reads their validation scores back, and registers the winner
//! ([`register`]). A driver that dies is replaced by the next-ranked peer,
//! which continues from the journal: a trial's job is named in the journal
//! before it is submitted, and submitting a job again is a no-op, so no
//! trial is lost or run twice.
//!
//! # Layout
//! - [`plan`]: the decisions (proposals, successive halving, the winner), pure.
//! - [`driver`]: one study, from its journal to a registered model.
//! - [`register`]: the winner judged on the test rows and named.

pub mod driver;
pub mod plan;
pub mod register;

use mass_protocol::{
    ContentId,
    studies::{StudyRecord, StudyState},
};

use crate::{
    jobs::watcher::{Drivable, Seen, Watcher},
    mesh::Mesh,
};

/// Refs of study journals are `study/<id>`.
pub const REF_PREFIX: &str = "study/";

/// The ref that marks study `id` cancelled (written once, never moved).
pub fn cancel_ref(id: &ContentId) -> String {
    format!("{REF_PREFIX}{id}/cancel")
}

/// The journal of study `id`, if there is one.
pub async fn record(mesh: &Mesh, id: ContentId) -> Result<Option<StudyRecord>, String> {
    let Some((target, record)) = mesh.load_checkpoint::<StudyRecord>(&format!("{REF_PREFIX}{id}")).await? else {
        return Ok(None);
    };
    plan::check_journal(&record).map_err(|e| format!("study journal {target}: {e}"))?;
    if record.id != id {
        return Err(format!("study journal {target} names study {}, not {id}", record.id));
    }
    Ok(Some(record))
}

/// Stores the journal and points `study/<id>` at it.
pub async fn checkpoint(mesh: &Mesh, record: &StudyRecord) -> Result<(), String> {
    let id = mesh.save_checkpoint(record).await?;
    mesh.write_ref(format!("{REF_PREFIX}{}", record.id), Some(id)).await.map(|_| ()).map_err(|e| e.to_string())
}

/// Studies, watched like jobs.
pub struct Studies;

impl Drivable for Studies {
    const PREFIX: &'static str = REF_PREFIX;
    const KIND: &'static str = "study";

    fn state(mesh: &Mesh, id: ContentId) -> futures::future::BoxFuture<'_, Result<Option<Seen>, String>> {
        Box::pin(async move { Ok(record(mesh, id).await?.map(|r| study_state(&r.state))) })
    }

    fn drive(mesh: Mesh, id: ContentId) -> futures::future::BoxFuture<'static, Result<(), String>> {
        Box::pin(driver::drive(mesh, id))
    }
}

pub type StudyWatcher = Watcher<Studies>;

/// A study's state as a label of `mass_studies`.
pub fn study_state(state: &StudyState) -> Seen {
    let label = match state {
        StudyState::Running => "running",
        StudyState::Completed => "completed",
        StudyState::Failed(_) => "failed",
        StudyState::Cancelled => "cancelled",
    };
    Seen { over: state.is_over(), state: label }
}
