//! Every node watches open jobs (and studies) and drives those it ranks
//! first for, while it sees a majority of the mesh up ([`has_majority`]).
//! What is watched is a [`Drivable`]: a ref prefix, a way to tell whether a
//! record is over, and the drive itself.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use actix::{Actor, ActorFutureExt, AsyncContext, Context, SpawnHandle, WrapFuture};
use libp2p::PeerId;
use mass_protocol::{ContentId, api::PeerState};
use tracing::{debug, info, warn};

use super::{REF_PREFIX, driver};
use crate::{membership::GetPeers, mesh::Mesh, replication::homes};

/// How often open jobs are looked at.
const INTERVAL: Duration = Duration::from_millis(500);
/// Pause before driving a job again after a drive stopped short.
const RETRY: Duration = Duration::from_secs(2);

/// Something driven by the top-ranked live peer, checkpointed under a ref prefix.
pub trait Drivable: 'static {
    /// Refs `<PREFIX><id>` name the records.
    const PREFIX: &'static str;
    /// `Some(over)` for a readable record.
    fn state(mesh: &Mesh, id: ContentId) -> futures::future::BoxFuture<'_, Result<Option<bool>, String>>;
    fn drive(mesh: Mesh, id: ContentId) -> futures::future::BoxFuture<'static, Result<(), String>>;
}

/// Training jobs.
pub struct Jobs;

impl Drivable for Jobs {
    const PREFIX: &'static str = REF_PREFIX;

    fn state(mesh: &Mesh, id: ContentId) -> futures::future::BoxFuture<'_, Result<Option<bool>, String>> {
        Box::pin(async move { Ok(driver::record(mesh, id).await?.map(|r| r.state.is_over())) })
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
    /// Jobs known to be over; never looked at again.
    finished: HashSet<ContentId>,
    /// When a drive last stopped short, to wait before retrying.
    retry_after: HashMap<ContentId, Instant>,
    scanning: bool,
}

impl<D: Drivable> Watcher<D> {
    pub fn new(mesh: Mesh) -> Self {
        Self {
            kind: std::marker::PhantomData,
            mesh,
            driving: HashMap::new(),
            finished: HashSet::new(),
            retry_after: HashMap::new(),
            scanning: false,
        }
    }
}

impl<D: Drivable> Watcher<D> {
    /// Publishes how many records of this kind the node drives now.
    fn count_driving(&self) {
        let kind = if D::PREFIX == super::REF_PREFIX { "job" } else { "study" };
        self.mesh.metrics.set_driving(kind, self.driving.len());
        self.mesh.leaving.set_driving(kind, self.driving.len());
    }
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
        ctx.run_interval(INTERVAL, |watcher, ctx| {
            if watcher.scanning {
                return;
            }
            watcher.scanning = true;
            let mesh = watcher.mesh.clone();
            let now = Instant::now();
            watcher.retry_after.retain(|_, at| *at > now);
            let skip: HashSet<ContentId> =
                watcher.driving.keys().chain(&watcher.finished).chain(watcher.retry_after.keys()).copied().collect();
            let scan = async move {
                let table = mesh.membership.send(GetPeers).await.unwrap_or_default();
                // A draining peer is alive: it counts towards a majority.
                let alive = table.iter().filter(|p| p.state != PeerState::Down).count();
                // The table lists this node itself first; a draining node
                // drives nothing (the next-ranked takes its drives over).
                if !has_majority(alive.max(1), table.len().max(1)) || mesh.leaving.is_set() {
                    return (false, Vec::new(), Vec::new());
                }
                let records = mesh.storage.refs().await.unwrap_or_default();
                let live = mesh.placement_view().await;
                let mut mine = Vec::new();
                let mut over = Vec::new();
                for id in record_ids(&records, D::PREFIX) {
                    if skip.contains(&id) {
                        continue;
                    }
                    match D::state(&mesh, id).await {
                        Ok(Some(true)) => over.push(id),
                        Ok(Some(false)) if driver_of(&id, &live) == Some(mesh.net.local_peer_id()) => mine.push(id),
                        Ok(_) => {}
                        Err(e) => debug!(%id, "job record unreadable for now: {e}"),
                    }
                }
                (true, mine, over)
            };
            ctx.spawn(scan.into_actor(watcher).map(|(majority, mine, over), watcher, ctx| {
                watcher.scanning = false;
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
            }));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::has_majority;

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
