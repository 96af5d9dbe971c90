//! Driving one study from its journal to a registered model. The decisions
//! are [`plan`]'s; this reads the trials' job records, checkpoints the
//! journal, submits jobs, and registers the winner.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use mass_protocol::{
    ContentId, codec,
    jobs::{JobSpec, JobState},
    studies::{StudyRecord, StudyState, TrialState},
};
use tracing::{info, warn};

use super::{cancel_ref, checkpoint, plan, record, register};
use crate::{
    jobs::{self, submit::SubmitError},
    mesh::Mesh,
    storage::ref_written,
};

/// The longest the driver waits for a write of a running trial's job
/// record (or of the cancel flag) before it looks at the trials anyway.
/// Waking on each write is safe: successive halving decides in trial order,
/// not by what has finished when the driver looks ([`plan::advance`]).
const WAIT_AT_MOST: Duration = Duration::from_secs(1);

/// A job spec's id: the hash of its encoding, as storing it names it.
fn id_of(job: &JobSpec) -> ContentId {
    ContentId::of(&codec::encode(job).expect("a job spec encodes"))
}

/// How a trial's job stands.
async fn outcome(mesh: &Mesh, job: ContentId) -> Result<plan::Outcome, String> {
    let Some(record) = jobs::driver::record(mesh, job).await? else { return Ok(plan::Outcome::Missing) };
    Ok(match record.state {
        JobState::Completed => match record.evaluation {
            Some(evaluation) => {
                let mut peers: Vec<String> = record.tasks.iter().filter_map(|t| t.peer.clone()).collect();
                peers.dedup();
                plan::Outcome::Completed { evaluation, peer: (!peers.is_empty()).then(|| peers.join(",")) }
            }
            None => plan::Outcome::Failed("the trial's job completed without an evaluation".into()),
        },
        JobState::Failed(reason) => plan::Outcome::Failed(reason),
        JobState::Cancelled => plan::Outcome::Failed("the trial's job was cancelled".into()),
        _ => plan::Outcome::Open,
    })
}

/// Drives study `id` until it is over. Returns early (for the watcher to
/// retry) when the mesh is not reachable enough to go on.
pub async fn drive(mesh: Mesh, id: ContentId) -> Result<(), String> {
    let mut record = record(&mesh, id).await?.ok_or_else(|| format!("no journal for study {id}"))?;
    if record.state.is_over() {
        return Ok(());
    }
    if record.drivers.last() != Some(&mesh.peer_id) {
        record.drivers.push(mesh.peer_id.clone());
        checkpoint(&mesh, &record).await?;
        info!(%id, trials = record.trials.len(), "driving study");
    }
    // Subscribed before the first read: a write during a pass wakes the next wait.
    let mut writes = mesh.storage.ref_writes();
    let cancel_flag = cancel_ref(&id);
    loop {
        if mesh.resolve(&cancel_flag).await?.is_some() {
            return cancel(&mesh, &mut record).await;
        }
        let mut outcomes = BTreeMap::new();
        for run in open_runs(&record) {
            outcomes.insert(run, outcome(&mesh, run).await?);
        }
        let plan = plan::advance(&mut record, &outcomes, &id_of);
        // The journal names every job before it is submitted: a driver
        // that dies in between leaves jobs its successor submits again.
        if plan.changed {
            checkpoint(&mesh, &record).await?;
        }
        let mut refused = false;
        for (t, run) in plan.submit {
            let job = plan::run_job(&record.spec, id, &record.trials[t], run)?;
            match jobs::submit::submit(&mesh, job).await {
                Ok(_) => {}
                Err(SubmitError::Internal(e)) => return Err(e),
                Err(SubmitError::Refused(reason) | SubmitError::BadRequest(reason)) => {
                    warn!(%id, trial = t, "trial refused: {reason}");
                    record.trials[t].state = TrialState::Failed(reason);
                    refused = true;
                }
            }
        }
        if refused {
            checkpoint(&mesh, &record).await?;
            continue;
        }
        match plan::winner(&record) {
            None => {}
            Some(Err(reason)) => {
                record.state = StudyState::Failed(reason);
                return checkpoint(&mesh, &record).await;
            }
            Some(Ok(best)) => {
                let (model, test) = register::register(&mesh, &record, best).await?;
                (record.best, record.test, record.state) = (Some((best, model)), Some(test), StudyState::Completed);
                info!(%id, trial = best, %model, "study completed");
                return checkpoint(&mesh, &record).await;
            }
        }
        let watched: BTreeSet<String> =
            open_runs(&record).map(|job| format!("{}{job}", jobs::REF_PREFIX)).chain([cancel_flag.clone()]).collect();
        ref_written(&mut writes, WAIT_AT_MOST, |name| watched.contains(name)).await;
    }
}

/// The jobs of the trials' runs that have no score yet.
fn open_runs(record: &StudyRecord) -> impl Iterator<Item = ContentId> + '_ {
    record
        .trials
        .iter()
        .filter(|t| !t.is_over())
        .filter_map(|t| t.runs.last())
        .filter(|r| r.score.is_none())
        .map(|r| r.job)
}

/// Cancels the study and its running trials' jobs.
async fn cancel(mesh: &Mesh, record: &mut StudyRecord) -> Result<(), String> {
    for trial in record.trials.iter_mut().filter(|t| !t.is_over()) {
        if let Some(run) = trial.runs.last() {
            // A job that already finished keeps its record; the flag is then moot.
            let _ = mesh.write_ref(jobs::driver::cancel_ref(&run.job), Some(run.job)).await;
        }
        trial.state = TrialState::Failed("the study was cancelled".into());
    }
    record.state = StudyState::Cancelled;
    checkpoint(mesh, record).await
}
