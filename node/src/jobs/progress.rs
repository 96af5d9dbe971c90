//! What running training tasks last reported, per job, as this node heard it
//! (its own tasks directly, peers' by gossip). Lost on restart; it is only
//! for showing progress while a job runs.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Instant,
};

use mass_protocol::{
    ContentId,
    jobs::{LiveTask, TrainingProgress},
};

/// Jobs remembered at once; the one heard from longest ago goes first.
const MAX_JOBS: usize = 256;
/// Tasks remembered per job (a job has at most 256 sub-models or workers);
/// reports beyond it, which only a misbehaving peer sends, are dropped.
const MAX_TASKS: usize = 256;

/// When a job was last heard from, and its tasks' latest reports.
type JobProgress = (Instant, BTreeMap<u32, LiveTask>);

#[derive(Clone, Default)]
pub struct ProgressBoard {
    jobs: Arc<Mutex<HashMap<ContentId, JobProgress>>>,
}

impl ProgressBoard {
    pub fn record(&self, peer: String, progress: TrainingProgress) {
        if progress.task as usize >= MAX_TASKS {
            return;
        }
        let mut jobs = self.jobs.lock().expect("progress lock");
        if !jobs.contains_key(&progress.job)
            && jobs.len() >= MAX_JOBS
            && let Some(stalest) = jobs.iter().min_by_key(|(_, (heard, _))| *heard).map(|(id, _)| *id)
        {
            jobs.remove(&stalest);
        }
        let (heard, tasks) = jobs.entry(progress.job).or_insert_with(|| (Instant::now(), BTreeMap::new()));
        *heard = Instant::now();
        let live =
            LiveTask { task: progress.task, peer, epoch: progress.epoch, epochs: progress.epochs, loss: progress.loss };
        tasks.insert(progress.task, live);
    }

    /// The latest report of each task of `job`, by task index.
    pub fn of(&self, job: &ContentId) -> Vec<LiveTask> {
        let jobs = self.jobs.lock().expect("progress lock");
        jobs.get(job).map(|(_, tasks)| tasks.values().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u32) -> ContentId {
        ContentId::of(&n.to_le_bytes())
    }

    fn report(n: u32, task: u32, epoch: u32) -> TrainingProgress {
        TrainingProgress { job: job(n), task, epoch, epochs: 10, loss: 1.0 / f64::from(epoch + 1) }
    }

    #[test]
    fn keeps_the_latest_report_of_each_task() {
        let board = ProgressBoard::default();
        board.record("a".into(), report(1, 0, 1));
        board.record("b".into(), report(1, 1, 1));
        board.record("a".into(), report(1, 0, 2));
        let live = board.of(&job(1));
        assert_eq!(live.len(), 2);
        assert_eq!((live[0].task, live[0].epoch, live[0].peer.as_str()), (0, 2, "a"));
        assert!(board.of(&job(2)).is_empty());
    }

    #[test]
    fn forgets_the_stalest_job_when_full() {
        let board = ProgressBoard::default();
        for n in 0..=MAX_JOBS as u32 {
            board.record("a".into(), report(n, 0, 1));
        }
        assert_eq!(board.jobs.lock().unwrap().len(), MAX_JOBS);
    }

    #[test]
    fn task_numbers_past_any_job_are_dropped() {
        let board = ProgressBoard::default();
        board.record("rogue".into(), report(1, u32::MAX, 1));
        assert!(board.of(&job(1)).is_empty());
    }
}
