//! Leaving the mesh without losing anything (`mass node drain`, SIGTERM).
//!
//! A draining node stops counting itself in the views that place blobs,
//! serving replicas, training and drives, and advertises that it is leaving
//! so its peers stop counting it too. Its repair walks then see it as no
//! home of anything: they ask each blob's new homes to hold a copy and
//! check that they do. Meanwhile the next-ranked node takes over the jobs it
//! drove (from their last checkpoint), and it keeps answering the requests
//! that still reach it. It exits once every blob it holds has been shown by
//! its new homes and no work runs here.
//!
//! [`Leaving`] is the flag the node's parts read; [`verdict`] decides, from
//! a [`Progress`] snapshot, whether the node may go (pure, so it is tested
//! alone); [`Drain`] runs the loop around it and keeps the status that
//! `GET /v1/node/drain` shows.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use mass_protocol::api::{DrainState, DrainStatus};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::{compute::Work, mesh::Mesh, replication::GetHandoff};

/// How long `leaving` shows at least before the node exits.
const SHOW_LEAVING: Duration = Duration::from_secs(1);

/// Set once when the node starts leaving; never cleared (a drained node
/// exits, and a restarted one starts serving again).
#[derive(Debug, Clone, Default)]
pub struct Leaving {
    set: Arc<AtomicBool>,
    since: Arc<std::sync::OnceLock<Instant>>,
    /// How long after it starts leaving every peer has seen it leave.
    settle: Duration,
    /// Jobs and studies driven now, by kind, as the watchers report them.
    driving: Arc<Mutex<BTreeMap<&'static str, usize>>>,
}

impl Leaving {
    /// Peers see a node leave within `settle` (a few advert intervals).
    pub fn new(settle: Duration) -> Self {
        Self { settle, ..Self::default() }
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Whether every peer has seen this node leave by now: a peer that had
    /// not could still count it as a home of a blob and drop its own copy,
    /// so only proofs gathered after this count as handed off.
    pub fn settled(&self) -> bool {
        self.since.get().is_some_and(|since| since.elapsed() >= self.settle)
    }

    /// Starts leaving; returns whether this call started it.
    fn set(&self) -> bool {
        let _ = self.since.set(Instant::now());
        !self.set.swap(true, Ordering::SeqCst)
    }

    /// A watcher reports how many records of `kind` it drives now.
    pub fn set_driving(&self, kind: &'static str, count: usize) {
        self.driving.lock().expect("driving lock").insert(kind, count);
    }

    fn driving(&self) -> usize {
        self.driving.lock().expect("driving lock").values().sum()
    }
}

/// What a draining node knows about its handoff at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Repair walks finished that began once every peer had seen this node
    /// leave ([`Leaving::settled`]); what the last one found is below.
    pub walks: u64,
    /// Blobs held here.
    pub blobs: usize,
    /// Blobs whose every new home showed it holds them.
    pub handed_off: usize,
    /// Other nodes up (draining ones not counted).
    pub peers_up: usize,
    /// Pieces of work running here besides inference.
    pub working: usize,
    /// Jobs and studies still driven here.
    pub driving: usize,
}

/// Whether a draining node may exit now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Everything is handed off.
    Done,
    /// No other node is up: there is nobody to hand anything to, so
    /// waiting would only delay the exit. What is here stays on this disk.
    Alone,
    /// Not yet, for this reason.
    Waiting(String),
}

/// Whether a node that reports `progress` has handed everything off.
/// Running work and drives are waited for first: a task that finishes
/// stores its result here, and that blob must be handed off too.
pub fn verdict(progress: &Progress) -> Verdict {
    let Progress { walks, blobs, handed_off, peers_up, working, driving } = *progress;
    if working > 0 {
        return Verdict::Waiting(format!("{working} pieces of work still running here"));
    }
    if driving > 0 {
        return Verdict::Waiting(format!("{driving} jobs or studies still driven here"));
    }
    if peers_up == 0 {
        return Verdict::Alone;
    }
    if walks == 0 {
        return Verdict::Waiting("peers to see this node leave, then a repair walk".into());
    }
    if handed_off < blobs {
        return Verdict::Waiting(format!("{handed_off} of {blobs} blobs shown by their new homes"));
    }
    Verdict::Done
}

/// How a drain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Alone,
    /// `drain_timeout` passed first; the status says what was left.
    TimedOut(String),
}

/// Starts and runs a node's drain, and keeps its status for the API.
#[derive(Clone)]
pub struct Drain {
    leaving: Leaving,
    status: Arc<Mutex<DrainStatus>>,
    requested: Arc<Notify>,
}

impl Drain {
    pub fn new(leaving: Leaving) -> Self {
        let status = DrainStatus {
            state: DrainState::Serving,
            blobs: 0,
            handed_off: 0,
            peers_up: 0,
            working: 0,
            driving: 0,
            waiting_for: None,
            elapsed_ms: 0,
        };
        Self { leaving, status: Arc::new(Mutex::new(status)), requested: Arc::new(Notify::new()) }
    }

    /// Asks the node to drain and exit (`POST /v1/node/drain`); asking again
    /// changes nothing.
    pub fn request(&self) {
        let mut status = self.status.lock().expect("drain status lock");
        if status.state == DrainState::Serving {
            status.state = DrainState::Draining;
            status.waiting_for = Some("the drain to start".into());
        }
        self.requested.notify_one();
    }

    /// Resolves once a drain was asked for through the API.
    pub async fn requested(&self) {
        self.requested.notified().await;
    }

    pub fn status(&self) -> DrainStatus {
        self.status.lock().expect("drain status lock").clone()
    }

    fn update(&self, progress: &Progress, state: DrainState, waiting_for: Option<String>, started: Instant) {
        *self.status.lock().expect("drain status lock") = DrainStatus {
            state,
            blobs: progress.blobs,
            handed_off: progress.handed_off,
            peers_up: progress.peers_up,
            working: progress.working,
            driving: progress.driving,
            waiting_for,
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
    }

    /// Leaves: stops taking new work and hands everything off, then waits
    /// `linger` from the start at least (so every peer has seen an advert
    /// saying this node is leaving and routes elsewhere). Gives up after
    /// `timeout`.
    pub async fn run(&self, mesh: &Mesh, timeout: Duration, linger: Duration) -> Outcome {
        let started = Instant::now();
        if self.leaving.set() {
            info!("draining: handing blobs, replicas and jobs to the other nodes");
        }
        let (outcome, progress) = loop {
            let progress = self.progress(mesh).await;
            match verdict(&progress) {
                Verdict::Done => break (Outcome::Done, progress),
                Verdict::Alone => break (Outcome::Alone, progress),
                Verdict::Waiting(reason) if started.elapsed() >= timeout => {
                    break (Outcome::TimedOut(reason), progress);
                }
                Verdict::Waiting(reason) => self.update(&progress, DrainState::Draining, Some(reason), started),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        match &outcome {
            Outcome::Done => info!(blobs = progress.blobs, "drained: every blob is held by its new homes"),
            Outcome::Alone => warn!(blobs = progress.blobs, "no other node is up: leaving with the blobs on this disk"),
            Outcome::TimedOut(reason) => {
                warn!(?timeout, "drain timed out, leaving anyway; it was waiting for {reason}")
            }
        }
        let left = match &outcome {
            Outcome::TimedOut(reason) => format!("peers to route around this node (timed out waiting for {reason})"),
            _ => "peers to route around this node".into(),
        };
        self.update(&progress, DrainState::Leaving, Some(left), started);
        // `leaving` shows for a moment at least, so that whoever follows the
        // drain (`mass node drain` polls) sees it end rather than go silent.
        tokio::time::sleep(linger.saturating_sub(started.elapsed()).max(SHOW_LEAVING)).await;
        self.update(&progress, DrainState::Drained, None, started);
        outcome
    }

    async fn progress(&self, mesh: &Mesh) -> Progress {
        let handoff = mesh.replication.send(GetHandoff).await.unwrap_or_default();
        let running = mesh.compute.running();
        let working = running.iter().filter(|(kind, _)| *kind != Work::Inference).map(|(_, n)| n).sum();
        Progress {
            walks: handoff.walks,
            blobs: handoff.blobs,
            handed_off: handoff.handed_off,
            peers_up: mesh.up_peers().await.len(),
            working,
            driving: self.leaving.driving(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handed(walks: u64, blobs: usize, handed_off: usize) -> Progress {
        Progress { walks, blobs, handed_off, peers_up: 3, working: 0, driving: 0 }
    }

    #[test]
    fn done_once_a_walk_since_draining_began_found_every_blob_shown() {
        assert_eq!(verdict(&handed(1, 5, 5)), Verdict::Done);
        assert_eq!(verdict(&handed(4, 0, 0)), Verdict::Done);
    }

    #[test]
    fn a_walk_from_before_draining_proves_nothing() {
        // Its homes counted this node; its evidence is for another view.
        assert!(matches!(verdict(&handed(0, 5, 5)), Verdict::Waiting(_)));
        assert!(matches!(verdict(&handed(0, 0, 0)), Verdict::Waiting(_)));
    }

    #[test]
    fn a_blob_not_yet_shown_keeps_the_node() {
        let Verdict::Waiting(reason) = verdict(&handed(3, 5, 4)) else { panic!() };
        assert!(reason.contains("4 of 5"), "{reason}");
    }

    #[test]
    fn running_work_and_drives_are_waited_for_before_the_blobs() {
        let busy = Progress { working: 1, ..handed(3, 5, 5) };
        assert!(matches!(verdict(&busy), Verdict::Waiting(r) if r.contains("work")));
        let driving = Progress { driving: 2, ..handed(3, 5, 5) };
        assert!(matches!(verdict(&driving), Verdict::Waiting(r) if r.contains("driven")));
    }

    #[test]
    fn a_lone_node_leaves_at_once() {
        let alone = Progress { peers_up: 0, ..handed(0, 9, 0) };
        assert_eq!(verdict(&alone), Verdict::Alone);
    }

    #[test]
    fn leaving_is_set_once_and_settles_after_its_delay() {
        let leaving = Leaving::new(Duration::from_millis(30));
        assert!(!leaving.is_set() && !leaving.settled());
        assert!(leaving.set());
        assert!(!leaving.settled());
        std::thread::sleep(Duration::from_millis(40));
        assert!(leaving.settled());
        assert!(!leaving.set());
        assert!(leaving.is_set());
        leaving.set_driving("job", 2);
        leaving.set_driving("study", 1);
        leaving.set_driving("job", 0);
        assert_eq!(leaving.driving(), 1);
    }
}
