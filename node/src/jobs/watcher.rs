//! Every node watches open jobs (and studies) and drives those it ranks
//! first for, while it sees a majority of the mesh up ([`has_majority`]).
//! What is watched is a [`Drivable`]: a ref prefix, a way to tell whether a
//! record is over, and the drive itself.
//!
//! The watcher also publishes how many records of its kind this node knows
//! in each state (`mass_jobs{state}`, `mass_studies{state}`), from the
//! reads it makes anyway: an open record is read every scan, a record that
//! is over once more, then never again.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use actix::{Actor, ActorFutureExt, AsyncContext, Context, SpawnHandle, WrapFuture};
use libp2p::PeerId;
use mass_protocol::{ContentId, api::PeerState, jobs::JobState};
use tracing::{debug, info, warn};

use super::{REF_PREFIX, driver};
use crate::{membership::GetPeers, mesh::Mesh, replication::homes};

/// How often open jobs are looked at.
const INTERVAL: Duration = Duration::from_millis(500);
/// Pause before driving a job again after a drive stopped short.
const RETRY: Duration = Duration::from_secs(2);

/// What a read of a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The record will never run again.
    pub over: bool,
    /// Its state as a metric label (`crate::metrics::JOB_STATES`, `STUDY_STATES`).
    pub state: &'static str,
}

/// Something driven by the top-ranked live peer, checkpointed under a ref prefix.
pub trait Drivable: 'static {
    /// Refs `<PREFIX><id>` name the records.
    const PREFIX: &'static str;
    /// What the records are, for metrics: "job" or "study".
    const KIND: &'static str;
    /// `Some` for a readable record.
    fn state(mesh: &Mesh, id: ContentId) -> futures::future::BoxFuture<'_, Result<Option<Seen>, String>>;
    fn drive(mesh: Mesh, id: ContentId) -> futures::future::BoxFuture<'static, Result<(), String>>;
}

/// Training jobs.
pub struct Jobs;

/// A job's state as a label of `mass_jobs`.
pub fn job_state(state: &JobState) -> Seen {
    let label = match state {
        JobState::Pending => "pending",
        JobState::Running => "running",
        JobState::Completed => "completed",
        JobState::Failed(_) => "failed",
        JobState::Cancelled => "cancelled",
    };
    Seen { over: state.is_over(), state: label }
}

impl Drivable for Jobs {
    const PREFIX: &'static str = REF_PREFIX;
    const KIND: &'static str = "job";

    fn state(mesh: &Mesh, id: ContentId) -> futures::future::BoxFuture<'_, Result<Option<Seen>, String>> {
        Box::pin(async move { Ok(driver::record(mesh, id).await?.map(|r| job_state(&r.state))) })
    }

    fn drive(mesh: Mesh, id: ContentId) -> futures::future::BoxFuture<'static, Result<(), String>> {
        Box::pin(driver::drive(mesh, id))
    }
}

pub type JobWatcher = Watcher<Jobs>;

pub struct Watcher<D: Drivable> {
    kind: std::marker::PhantomData<D>,
    mesh: Mesh,
    /// Jobs this node is driving now, with the handle that stops the drive.
    driving: HashMap<ContentId, SpawnHandle>,
    /// Jobs known to be over; never driven again, and read again only
    /// until their state says over (a drive of this node ended them).
    finished: HashSet<ContentId>,
    /// When a drive last stopped short, to wait before retrying.
    retry_after: HashMap<ContentId, Instant>,
    /// What the last read of each record known said, for metrics.
    states: HashMap<ContentId, Seen>,
    scanning: bool,
    /// A record was written during the scan under way: scan again after it.
    again: bool,
}

/// What one scan found.
#[derive(Default)]
struct Scan {
    /// Whether this node sees a majority of the mesh up.
    majority: bool,
    /// Open records this node should drive.
    mine: Vec<ContentId>,
    /// Records that are over.
    over: Vec<ContentId>,
    /// Every record named by a ref; `None` when the refs could not be read.
    known: Option<HashSet<ContentId>>,
    /// The records read, and what they said.
    seen: Vec<(ContentId, Seen)>,
}

impl<D: Drivable> Watcher<D> {
    pub fn new(mesh: Mesh) -> Self {
        Self {
            kind: std::marker::PhantomData,
            mesh,
            driving: HashMap::new(),
            finished: HashSet::new(),
            retry_after: HashMap::new(),
            states: HashMap::new(),
            scanning: false,
            again: false,
        }
    }
}

impl<D: Drivable> Watcher<D> {
    /// Publishes how many records of this kind the node drives now.
    fn count_driving(&self) {
        self.mesh.metrics.set_driving(D::KIND, self.driving.len());
        self.mesh.leaving.set_driving(D::KIND, self.driving.len());
    }

    /// Publishes how many records of this kind the node knows, by state.
    fn count_states(&self) {
        let counts = count_states(&self.states, &self.driving.keys().copied().collect());
        self.mesh.metrics.set_record_states(D::KIND, &counts);
    }
}

/// Records by state: as last read, except that those in `driving` are
/// running (a pending job's record says pending until its driver's first
/// checkpoint), also when their ref is gone.
pub fn count_states(states: &HashMap<ContentId, Seen>, driving: &HashSet<ContentId>) -> Vec<(&'static str, usize)> {
    let mut counts: Vec<(&'static str, usize)> = vec![("running", driving.len())];
    for (id, seen) in states {
        if driving.contains(id) {
            continue;
        }
        match counts.iter_mut().find(|(state, _)| *state == seen.state) {
            Some((_, n)) => *n += 1,
            None => counts.push((seen.state, 1)),
        }
    }
    counts
}

/// The ids of the records named `<prefix><id>` among `refs`. Other refs
/// under the prefix (cancel flags) do not parse as ids and are left out.
pub fn record_ids<'a>(
    refs: &'a [mass_protocol::storage::RefRecord],
    prefix: &'a str,
) -> impl Iterator<Item = ContentId> + 'a {
    refs.iter().filter_map(move |r| r.name.strip_prefix(prefix)?.parse().ok())
}

/// The peer that should drive `id`: the top-ranked live peer for its id.
pub fn driver_of(id: &ContentId, live: &[PeerId]) -> Option<PeerId> {
    homes(id, live, 1).first().copied()
}

/// Whether a node that sees `up` members up out of the `known` members in
/// its peer table (up or down, not yet forgotten; both counts include the
/// node itself) may drive jobs and studies: only with a strict majority.
/// In a partition at most one side has one, so two sides never both drive
/// the same job and name two models. A side that lost a majority by deaths
/// rather than a split waits until the dead are forgotten
/// (`membership.forget_after`), which shrinks what it counts as the mesh.
pub fn has_majority(up: usize, known: usize) -> bool {
    2 * up > known
}

impl<D: Drivable + Unpin> Actor for Watcher<D> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(INTERVAL, |watcher, ctx| watcher.scan(ctx));
        // A record written here (submitted here, or heard from a peer) is
        // looked at at once, not at the next scan: a job starts in
        // milliseconds, not in up to half a second.
        let mut writes = self.mesh.storage.ref_writes();
        let watcher = ctx.address();
        actix::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let named = match writes.recv().await {
                    Ok(name) => match name.strip_prefix(D::PREFIX).map(str::parse::<ContentId>) {
                        Some(Ok(id)) => Some(id),
                        _ => continue,
                    },
                    Err(RecvError::Lagged(_)) => None,
                    Err(RecvError::Closed) => return,
                };
                // No pause after each: a record's own checkpoints are
                // writes too, and a pause after each of them held back the
                // next job's first look (94-438 ms behind a finished job's
                // seven). The handler ignores records it knows, and scans
                // asked for during a scan are folded into one after it.
                if watcher.try_send(ScanNow(named)).is_err() && !watcher.connected() {
                    return;
                }
            }
        });
    }
}

/// Look at the records now: record `.0` was written (`None`: writes were
/// missed).
#[derive(actix::Message)]
#[rtype(result = "()")]
struct ScanNow(Option<ContentId>);

impl<D: Drivable + Unpin> actix::Handler<ScanNow> for Watcher<D> {
    type Result = ();

    fn handle(&mut self, ScanNow(written): ScanNow, ctx: &mut Self::Context) {
        // A record known here already (a running job's checkpoints) waits
        // for the next scan: only new records are worth one now.
        if written.is_some_and(|id| self.states.contains_key(&id) || self.driving.contains_key(&id)) {
            return;
        }
        if self.scanning {
            self.again = true;
        } else {
            self.scan(ctx);
        }
    }
}

impl<D: Drivable + Unpin> Watcher<D> {
    /// Reads the open records and starts the drives this node ranks first for.
    fn scan(&mut self, ctx: &mut Context<Self>) {
        let watcher = self;
        if watcher.scanning {
            return;
        }
        watcher.scanning = true;
        let mesh = watcher.mesh.clone();
        let now = Instant::now();
        watcher.retry_after.retain(|_, at| *at > now);
        // Finished records whose last read did not say over (this
        // node's drive ended them) are read once more, for their state.
        let settled = |id: &&ContentId| watcher.states.get(id).is_some_and(|s| s.over);
        let skip: HashSet<ContentId> = watcher
            .driving
            .keys()
            .chain(watcher.finished.iter().filter(settled))
            .chain(watcher.retry_after.keys())
            .copied()
            .collect();
        let relabel: HashSet<ContentId> =
            watcher.finished.iter().filter(|id| !watcher.states.get(id).is_some_and(|s| s.over)).copied().collect();
        let scan = async move {
            let table = mesh.membership.send(GetPeers).await.unwrap_or_default();
            // A draining peer is alive: it counts towards a majority.
            let alive = table.iter().filter(|p| p.state != PeerState::Down).count();
            // The table lists this node itself first; a draining node
            // drives nothing (the next-ranked takes its drives over).
            if !has_majority(alive.max(1), table.len().max(1)) || mesh.leaving.is_set() {
                return Scan::default();
            }
            let records = mesh.storage.refs().await;
            let mut scan = Scan { majority: true, ..Scan::default() };
            scan.known = records.as_ref().ok().map(|r| record_ids(r, D::PREFIX).collect());
            let records = records.unwrap_or_default();
            let live = mesh.placement_view().await;
            for id in record_ids(&records, D::PREFIX) {
                if skip.contains(&id) {
                    continue;
                }
                match D::state(&mesh, id).await {
                    Ok(Some(seen)) => {
                        scan.seen.push((id, seen));
                        if relabel.contains(&id) {
                            continue;
                        }
                        if seen.over {
                            scan.over.push(id);
                        } else if driver_of(&id, &live) == Some(mesh.net.local_peer_id()) {
                            scan.mine.push(id);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => debug!(%id, "job record unreadable for now: {e}"),
                }
            }
            scan
        };
        ctx.spawn(scan.into_actor(watcher).map(|scan, watcher, ctx| {
            watcher.scanning = false;
            if std::mem::take(&mut watcher.again) {
                ctx.notify(ScanNow(None));
            }
            let Scan { majority, mine, over, known, seen } = scan;
            if let Some(known) = known {
                watcher.states.retain(|id, _| known.contains(id));
            }
            watcher.states.extend(seen);
            watcher.count_states();
            if !majority {
                // A drive on a minority side (or on a node that drains)
                // stops where it is, as if this node had died: the
                // record keeps its last checkpoint, and the next-ranked
                // node with a majority in sight resumes it.
                if !watcher.driving.is_empty() {
                    info!(
                        count = watcher.driving.len(),
                        "no majority of the mesh in sight, or draining; stopping drives"
                    );
                }
                for (id, handle) in watcher.driving.drain() {
                    ctx.cancel_future(handle);
                    watcher.retry_after.insert(id, Instant::now() + RETRY);
                }
                watcher.count_driving();
                watcher.count_states();
                return;
            }
            watcher.finished.extend(over);
            for id in mine {
                if watcher.driving.contains_key(&id) {
                    continue;
                }
                let mesh = watcher.mesh.clone();
                let handle = ctx.spawn(D::drive(mesh, id).into_actor(watcher).map(move |result, watcher, _| {
                    watcher.driving.remove(&id);
                    watcher.count_driving();
                    watcher.count_states();
                    match result {
                        Ok(()) => {
                            watcher.finished.insert(id);
                        }
                        Err(e) => {
                            warn!(%id, "driving stopped; retrying soon: {e}");
                            watcher.retry_after.insert(id, Instant::now() + RETRY);
                        }
                    }
                }));
                watcher.driving.insert(id, handle);
                watcher.count_driving();
            }
            watcher.count_states();
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_counted_by_state_and_those_driven_here_as_running() {
        let id = |n: u8| ContentId::of(&[n]);
        let states: HashMap<ContentId, Seen> = [
            (id(1), job_state(&JobState::Completed)),
            (id(2), job_state(&JobState::Failed("diverged".into()))),
            (id(3), job_state(&JobState::Pending)),
            (id(4), job_state(&JobState::Completed)),
        ]
        .into();
        // Job 3 is driven here: its record still says pending.
        let driving: HashSet<ContentId> = [id(3)].into();
        let mut counts = count_states(&states, &driving);
        counts.sort();
        assert_eq!(counts, [("completed", 2), ("failed", 1), ("running", 1)]);
        assert!(job_state(&JobState::Cancelled).over && !job_state(&JobState::Running).over);
        let (metrics, registry) = crate::metrics::Metrics::new();
        metrics.set_record_states("job", &counts);
        let text = crate::metrics::render(&registry);
        for line in [
            "mass_jobs{state=\"completed\"} 2",
            "mass_jobs{state=\"running\"} 1",
            "mass_jobs{state=\"pending\"} 0",
            "mass_studies{state=\"running\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
    }

    #[test]
    fn a_lone_node_drives() {
        assert!(has_majority(1, 1));
    }

    #[test]
    fn a_mesh_that_lost_a_minority_still_drives() {
        // Three nodes, one killed (jobs::a_job_survives_the_death_of_its_driver).
        assert!(has_majority(2, 3));
        assert!(has_majority(3, 5));
        assert!(has_majority(5, 5));
    }

    #[test]
    fn a_minority_or_an_even_split_does_not_drive() {
        // Five split 2|3: only the three drive.
        assert!(!has_majority(2, 5));
        // Two of four, one of two: neither side of an even split drives.
        assert!(!has_majority(2, 4));
        assert!(!has_majority(1, 2));
        assert!(!has_majority(1, 3));
    }

    #[test]
    fn forgetting_the_dead_restores_a_majority() {
        // One of three left: once the two down peers are forgotten the
        // table holds one member, which is a majority of itself.
        assert!(!has_majority(1, 3));
        assert!(has_majority(1, 1));
    }

    #[test]
    fn both_sides_of_any_split_never_drive_together() {
        for known in 1..=12 {
            for side in 0..=known {
                assert!(!(has_majority(side, known) && has_majority(known - side, known)), "{side}|{}", known - side);
            }
        }
    }
}
