//! Hyperparameter studies: the `POST /v1/studies` body and the stored
//! journal, run forward as a driver runs them (every open trial job
//! finishing at once, with a score drawn from its id).

use std::collections::BTreeMap;

use mass_protocol::{
    ContentId, codec,
    jobs::{Evaluation, JobSpec},
    storage::validate_ref_name,
    studies::{StudyRecord, StudySpec},
};

use crate::studies::plan::{self, Outcome};

/// Trials a study may ask for here: small, so that a run stays quick.
const MAX_TRIALS: usize = 16;
/// Steps of the driver per run, at most.
const STEPS: usize = 24;

/// A study, read as `POST /v1/studies` reads it and checked as it checks
/// it; an accepted one is driven to its end.
pub fn study_json(data: &[u8]) {
    let Ok(spec) = serde_json::from_slice::<StudySpec>(data) else { return };
    if validate_ref_name(&format!("model/{}", spec.name)).is_err() || plan::check(&spec, MAX_TRIALS).is_err() {
        return;
    }
    let mut record = plan::open(ContentId::of(data), spec);
    drive(&mut record);
}

/// A stored journal, checked as `studies::record` checks it, then one
/// driver step (some runs finished, the rest missing) and the winner.
pub fn study_record(data: &[u8]) {
    let Ok(mut record) = StudyRecord::decode(data) else { return };
    if plan::check_journal(&record).is_err() {
        return;
    }
    let outcomes = record
        .trials
        .iter()
        .flat_map(|t| &t.runs)
        .map(|r| (r.job, if r.job.as_bytes()[0] % 2 == 0 { finished(&r.job) } else { Outcome::Missing }))
        .collect();
    plan::advance(&mut record, &outcomes, &id_of);
    let _ = plan::winner(&record);
}

fn id_of(job: &JobSpec) -> ContentId {
    ContentId::of(&codec::encode(job).expect("job specs encode"))
}

/// A finished run, its score drawn from its job's id.
fn finished(job: &ContentId) -> Outcome {
    let score = f64::from(job.as_bytes()[1]) / 255.0;
    Outcome::Completed { evaluation: Evaluation::classification(10, score, score, 1.0 - score, vec![]), peer: None }
}

/// Runs the journal until a winner is known (or `STEPS` steps).
fn drive(record: &mut StudyRecord) {
    for _ in 0..STEPS {
        let outcomes: BTreeMap<ContentId, Outcome> =
            record.trials.iter().flat_map(|t| &t.runs).map(|r| (r.job, finished(&r.job))).collect();
        plan::advance(record, &outcomes, &id_of);
        if plan::winner(record).is_some() {
            return;
        }
    }
}
