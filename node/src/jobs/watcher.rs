//! Every node watches open jobs (and studies) and drives those it ranks
//! first for. What is watched is a [`Drivable`]: a ref prefix, a way to
//! tell whether a record is over, and the drive itself.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use libp2p::PeerId;
use mass_protocol::ContentId;
use tracing::{debug, warn};

use super::{REF_PREFIX, driver};
use crate::{mesh::Mesh, replication::homes};

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
    /// Jobs this node is driving now.
    driving: HashSet<ContentId>,
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
            driving: HashSet::new(),
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
                watcher.driving.iter().chain(&watcher.finished).chain(watcher.retry_after.keys()).copied().collect();
            let scan = async move {
                let records = mesh.storage.refs().await.unwrap_or_default();
                let mut live = mesh.up_peers().await;
                live.push(mesh.net.local_peer_id());
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
                (mine, over)
            };
            ctx.spawn(scan.into_actor(watcher).map(|(mine, over), watcher, ctx| {
                watcher.scanning = false;
                watcher.finished.extend(over);
                for id in mine {
                    if !watcher.driving.insert(id) {
                        continue;
                    }
                    watcher.count_driving();
                    let mesh = watcher.mesh.clone();
                    ctx.spawn(D::drive(mesh, id).into_actor(watcher).map(move |result, watcher, _| {
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
                }
            }));
        });
    }
}
