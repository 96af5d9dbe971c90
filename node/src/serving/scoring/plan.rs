//! A scoring job's decisions, pure: the record a submission opens, what a
//! record read from a peer must satisfy, which shards are left, and what a
//! scored shard or a failed drive changes.

use mass_protocol::{
    ContentId,
    serving::{ScoredShard, ScoringRecord, ScoringSpec, ScoringState},
};

/// Drives that may stop short (a shard no node could score) before the
/// job fails with the last reason; each retry keeps the shards scored.
pub const MAX_ATTEMPTS: u32 = 4;

/// The record of a job just submitted: every shard left.
pub fn open(id: ContentId, spec: ScoringSpec, shards: usize) -> ScoringRecord {
    ScoringRecord {
        id,
        spec,
        shards: vec![None; shards],
        drivers: Vec::new(),
        state: ScoringState::Running,
        result: None,
        attempts: 0,
    }
}

/// A record is peer bytes: it must be the job's, have one slot per shard
/// of its dataset, and be over exactly when it has a state saying so.
pub fn check(record: &ScoringRecord, id: ContentId, shards: usize) -> Result<(), String> {
    if record.id != id {
        return Err(format!("the record names scoring job {}, not {id}", record.id));
    }
    if record.shards.len() != shards {
        return Err(format!("the record has {} shard slots for a dataset of {shards} shards", record.shards.len()));
    }
    if (record.state == ScoringState::Completed) != record.result.is_some() {
        return Err("the record's result does not match its state".into());
    }
    if record.state == ScoringState::Completed && record.shards.iter().any(Option::is_none) {
        return Err("the record is completed with shards left".into());
    }
    Ok(())
}

/// The shards not yet scored, in shard order.
pub fn left(record: &ScoringRecord) -> Vec<usize> {
    record.shards.iter().enumerate().filter(|(_, s)| s.is_none()).map(|(i, _)| i).collect()
}

/// Records shard `index`'s scores.
pub fn scored(record: &mut ScoringRecord, index: usize, part: ScoredShard) -> Result<(), String> {
    let slot = record.shards.get_mut(index).ok_or_else(|| format!("no shard {index} in this job"))?;
    *slot = Some(part);
    Ok(())
}

/// A drive stopped short for `reason`: the job fails once it has stopped
/// short [`MAX_ATTEMPTS`] times; until then the next drive retries.
pub fn stopped_short(record: &mut ScoringRecord, reason: &str) {
    record.attempts += 1;
    if record.attempts >= MAX_ATTEMPTS {
        record.state = ScoringState::Failed(format!("after {} attempts: {reason}", record.attempts));
    }
}

/// How many shards are scored, of how many.
pub fn progress(record: &ScoringRecord) -> (usize, usize) {
    (record.shards.iter().filter(|s| s.is_some()).count(), record.shards.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mass_protocol::serving::BatchPrediction;

    fn spec() -> ScoringSpec {
        ScoringSpec {
            model: "m".into(),
            version: 1,
            manifest: ContentId::of(b"model"),
            dataset: "d".into(),
            dataset_manifest: ContentId::of(b"data"),
            into: None,
            nonce: 7,
        }
    }

    fn part(peer: &str) -> ScoredShard {
        ScoredShard { blob: ContentId::of(peer.as_bytes()), peer: peer.into() }
    }

    #[test]
    fn shards_are_left_until_scored_and_a_scored_shard_is_not_scored_again() {
        let id = ContentId::of(b"job");
        let mut record = open(id, spec(), 3);
        assert_eq!(left(&record), vec![0, 1, 2]);
        scored(&mut record, 1, part("a")).unwrap();
        assert_eq!(left(&record), vec![0, 2]);
        assert_eq!(progress(&record), (1, 3));
        assert!(scored(&mut record, 3, part("a")).unwrap_err().contains("no shard 3"));
        check(&record, id, 3).unwrap();
    }

    #[test]
    fn a_record_that_is_not_the_jobs_or_does_not_fit_its_dataset_is_refused() {
        let id = ContentId::of(b"job");
        let record = open(id, spec(), 3);
        assert!(check(&record, ContentId::of(b"other"), 3).unwrap_err().contains("names scoring job"));
        assert!(check(&record, id, 4).unwrap_err().contains("3 shard slots"));
        let mut done = record.clone();
        done.state = ScoringState::Completed;
        assert!(check(&done, id, 3).unwrap_err().contains("result"));
        done.result = Some(BatchPrediction {
            model: "m".into(),
            version: 1,
            dataset: "d".into(),
            blob: id,
            rows: 3,
            test: None,
            shard_peers: vec![],
            into: None,
        });
        assert!(check(&done, id, 3).unwrap_err().contains("shards left"));
    }

    #[test]
    fn the_job_fails_after_its_last_attempt_and_not_before() {
        let mut record = open(ContentId::of(b"job"), spec(), 1);
        for _ in 1..MAX_ATTEMPTS {
            stopped_short(&mut record, "no node holds shard 0");
            assert_eq!(record.state, ScoringState::Running);
        }
        stopped_short(&mut record, "no node holds shard 0");
        assert_eq!(record.state, ScoringState::Failed(format!("after {MAX_ATTEMPTS} attempts: no node holds shard 0")));
    }
}
