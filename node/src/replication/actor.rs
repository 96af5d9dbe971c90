//! The replication actor: pushes new blobs to their homes, answers
//! `Replicate` by pulling, fetches blobs for local readers, and runs the
//! periodic repair walk, whose decisions are [`super::plan`]'s.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;

use actix::{
    Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, MessageResult, ResponseFuture, WrapFuture,
};
use libp2p::PeerId;
use mass_protocol::{
    ContentId,
    rpc::{Request, Response},
    storage::BlobMeta,
};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::{
    FetchError,
    fetch::fetch,
    homes,
    plan::{self, Action, Confirmations, Keep},
    possession,
    queue::{Admission, FetchQueue, Limits, Origin},
};
use crate::{
    drain::Leaving,
    membership::{GetLivePeers, GetUpPeers, MembershipActor},
    metrics::Metrics,
    net::NetClient,
    storage::{self, Storage},
};

/// How often unreferenced blobs past the grace period are collected.
const GC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);
/// How long a fetch waits for the DHT's providers before asking every live
/// peer instead.
const PROVIDERS_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Up to this many live peers not yet asked, a fetch asks them all rather
/// than the DHT.
const ASK_ALL_UP_TO: usize = 32;
/// Blobs a repair walk works on at once.
const WALK_CONCURRENCY: usize = 8;
/// How often a draining node checks whether to start its next walk.
const DRAIN_WALK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// Bounds on fetches in flight (see [`super::queue`]). A fetch keeps a few
/// chunk requests in flight, so 8 running fetches use a peer's whole share
/// of its inbound requests; a peer's `Replicate`s run 4 at a time and 128 at
/// most wait; readers on this node have 8 slots of their own.
const FETCH_LIMITS: Limits = Limits { running: 8, running_per_peer: 4, local_running: 8, queued: 1024, per_peer: 128 };

/// A blob was just stored here by a client: tell its homes.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PlaceNew(pub ContentId);

/// A peer says this node is a home of `id`; returns whether it already has it
/// (if not, a fetch starts, from that peer first), or why no fetch can start.
/// With `wait`, answers when the fetch is over (at most [`HOLD_NOW_WAIT`]):
/// whether the blob is held then.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, String>")]
pub struct ReplicateFrom {
    pub peer: PeerId,
    pub id: ContentId,
    pub wait: bool,
}

/// The longest a `HoldNow` waits for its fetch; the asker's checkpoint
/// wait ([`crate::mesh::CHECKPOINT_HOLD_WAIT`]) is as long.
pub const HOLD_NOW_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How far a draining node's walks got in handing its blobs off.
#[derive(Debug, Message)]
#[rtype(result = "Handoff")]
pub struct GetHandoff;

/// What the walks that began after draining did found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Handoff {
    /// Walks finished that began once every peer had seen the drain.
    pub walks: u64,
    /// In the last of them: blobs held here, and those every home showed.
    pub blobs: usize,
    pub handed_off: usize,
}

/// Fetch a blob this node lacks from whichever peer holds it.
#[derive(Debug, Message)]
#[rtype(result = "Result<BlobMeta, FetchError>")]
pub struct FetchBlob(pub ContentId);

pub struct ReplicationActor {
    local: PeerId,
    net: NetClient,
    storage: Storage,
    membership: Addr<MembershipActor>,
    config: storage::Config,
    metrics: Metrics,
    /// What each home said about each held blob; forgotten when the view
    /// changes.
    confirmed: HashMap<ContentId, Confirmations<PeerId>>,
    view: Vec<PeerId>,
    /// Fetches running and waiting, with whoever waits for each one's outcome.
    fetching: FetchQueue<PeerId, oneshot::Sender<Result<BlobMeta, FetchError>>>,
    repairing: bool,
    /// Set while the node drains: it is no home of anything.
    leaving: Leaving,
    handoff: Handoff,
}

impl ReplicationActor {
    pub fn new(
        local: PeerId,
        net: NetClient,
        storage: Storage,
        membership: Addr<MembershipActor>,
        config: storage::Config,
        metrics: Metrics,
        leaving: Leaving,
    ) -> Self {
        Self {
            local,
            net,
            storage,
            membership,
            config,
            metrics,
            confirmed: HashMap::new(),
            view: Vec::new(),
            fetching: FetchQueue::new(FETCH_LIMITS),
            repairing: false,
            leaving,
            handoff: Handoff::default(),
        }
    }
}

/// Live peers plus this node, unless it is leaving: the view placement
/// ranks over.
async fn view(membership: &Addr<MembershipActor>, local: PeerId, leaving: bool) -> Vec<PeerId> {
    let mut peers = membership.send(GetUpPeers).await.unwrap_or_default();
    if !leaving {
        peers.push(local);
    }
    peers
}

/// What a fetch needs, cloned out of the actor into the task that runs it.
#[derive(Clone)]
struct Reach {
    net: NetClient,
    storage: Storage,
    metrics: Metrics,
    membership: Addr<MembershipActor>,
    local: PeerId,
    k: usize,
    leaving: Leaving,
}

impl Reach {
    /// Fetches `id`: from `first` and its homes, where it should be; only if
    /// they cannot supply it, from every other live peer (in a mesh of more
    /// than [`ASK_ALL_UP_TO`] others, DHT providers first).
    async fn fetch_anywhere(&self, id: ContentId, first: Option<PeerId>) -> Result<BlobMeta, FetchError> {
        let Self { net, storage, metrics, membership, local, k, leaving } = self;
        let peers = view(membership, *local, leaving.is_set()).await;
        let mut seen = HashSet::from([*local]);
        let mut likely: Vec<PeerId> = first.into_iter().chain(homes(&id, &peers, *k)).collect();
        likely.retain(|p| seen.insert(*p));
        let failures = match fetch(net, storage, metrics, id, &likely).await {
            Ok(meta) => return Ok(meta),
            Err(FetchError::Unavailable { failures, .. }) => failures,
            Err(e) => return Err(e),
        };
        // Only peers alive (up, or draining: they hold what they had until
        // they leave): a peer cut off by a partition would hold the fetch
        // until the request timeout.
        let live = membership.send(GetLivePeers).await.unwrap_or_default();
        let mut rest: Vec<PeerId> = live.iter().copied().filter(|p| !seen.contains(p)).collect();
        // A small mesh is asked whole at once: the DHT query costs rounds of
        // lookups, and across a partition it waits on peers that no longer
        // answer (a job's next driver reads its record through here, older
        // checkpoints in turn). A large one asks the providers first.
        if rest.len() > ASK_ALL_UP_TO {
            let providers = tokio::time::timeout(PROVIDERS_WAIT, net.find_providers(id)).await;
            let mut first: Vec<PeerId> = providers.ok().and_then(Result::ok).unwrap_or_default();
            first.retain(|p| live.contains(p));
            rest.splice(0..0, first);
        }
        rest.retain(|p| seen.insert(*p));
        match fetch(net, storage, metrics, id, &rest).await {
            Err(FetchError::Unavailable { failures: more, .. }) => {
                Err(FetchError::Unavailable { id, failures: failures.into_iter().chain(more).collect() })
            }
            other => other,
        }
    }
}

/// What a repair walk needs, cloned out of the actor. It only runs the
/// actions [`plan::decide`] chooses.
struct Walk {
    net: NetClient,
    storage: Storage,
    metrics: Metrics,
    local: PeerId,
    k: usize,
    /// Whether this node drains: a copy every home showed is then kept
    /// (the disk is left as it was), only counted as handed off.
    leaving: bool,
}

impl Walk {
    /// Runs the plan for one held blob, in up to three rounds: ask the homes
    /// without a claim; once all claim a copy, check each (the first failed
    /// check ends the walk's checks); once all are checked, drop the copy.
    /// Returns whether every home (none of them this node) showed the blob.
    async fn blob(&self, meta: &BlobMeta, peers: &[PeerId], evidence: &mut Confirmations<PeerId>) -> bool {
        let id = meta.id;
        let homes = homes(&id, peers, self.k);
        // A proof is evidence for this walk only; a claim for a few walks.
        evidence.begin_walk();
        evidence.clear_verified();
        let mut actions = plan::decide(&self.local, &homes, evidence);
        if actions.iter().any(|a| matches!(a, Action::AskHome(_))) {
            for action in &actions {
                if let Action::AskHome(home) = action {
                    self.ask(meta, *home, evidence).await;
                }
            }
            actions = plan::decide(&self.local, &homes, evidence);
        }
        if actions.iter().any(|a| matches!(a, Action::Verify(_))) {
            for action in &actions {
                if let Action::Verify(home) = action
                    && !self.check(meta, *home, evidence).await
                {
                    return false;
                }
            }
            actions = plan::decide(&self.local, &homes, evidence);
        }
        match actions.as_slice() {
            [Action::Drop { .. }] if self.leaving => return true,
            [Action::Drop { .. }] if self.storage.remove(id).await.unwrap_or(false) => {
                info!(%id, "blob migrated to its homes; local copy dropped");
            }
            [Action::Drop { .. }] => {}
            [.., Action::Keep(keep)] if !matches!(keep, Keep::Home | Keep::Unclaimed) => {
                debug!(%id, ?keep, "keeping a surplus copy")
            }
            _ => {}
        }
        matches!(actions.as_slice(), [Action::Drop { .. }])
    }

    /// Asks `home` to hold a copy; a yes is recorded as its claim.
    async fn ask(&self, meta: &BlobMeta, home: PeerId, evidence: &mut Confirmations<PeerId>) {
        let id = meta.id;
        match self.net.request(home, Request::Replicate { id }).await {
            Ok(Response::Has(true)) => evidence.claim(home),
            Ok(Response::Has(false)) => {
                self.metrics.repaired(meta.size);
                debug!(%id, %home, "home lacks blob; it is fetching");
            }
            other => debug!(%id, %home, ?other, "home did not confirm"),
        }
    }

    /// Asks `home` to show chunks of the blob; returns whether it did. A home
    /// that fails loses its claim, which is asked for again on the next walk.
    async fn check(&self, meta: &BlobMeta, home: PeerId, evidence: &mut Confirmations<PeerId>) -> bool {
        match possession::verify(&self.net, meta, home).await {
            Ok(()) => {
                evidence.verify(home);
                true
            }
            Err(e) => {
                warn!(id = %meta.id, %home, "a home claims the blob but does not show it ({e}); keeping this copy");
                self.metrics.possession_failure();
                evidence.refute(&home);
                false
            }
        }
    }
}

impl Actor for ReplicationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.config.repair_interval, |actor, ctx| actor.repair(ctx));
        // A draining node walks again as soon as a walk ends: its exit
        // waits on the walks, not on the repair interval.
        ctx.run_interval(DRAIN_WALK_INTERVAL, |actor, ctx| {
            if actor.leaving.is_set() {
                actor.repair(ctx);
            }
        });
        ctx.run_interval(GC_INTERVAL, |actor, ctx| {
            let storage = actor.storage.clone();
            let grace_ms = actor.config.gc_grace.as_millis() as u64;
            ctx.spawn(
                async move {
                    match storage.gc(grace_ms).await {
                        Ok(report) if report.blobs + report.chunks > 0 => info!(?report, "garbage collected"),
                        Ok(_) => {}
                        Err(e) => warn!("GC failed: {e}"),
                    }
                }
                .into_actor(actor),
            );
        });
    }
}

impl ReplicationActor {
    /// One repair walk over every local blob. At most one runs at a time.
    fn repair(&mut self, ctx: &mut Context<Self>) {
        if self.repairing {
            return;
        }
        self.repairing = true;
        let walk = Walk {
            net: self.net.clone(),
            storage: self.storage.clone(),
            local: self.local,
            k: self.config.replication,
            metrics: self.metrics.clone(),
            leaving: self.leaving.is_set(),
        };
        // Only a walk that began once every peer saw this node leave counts
        // for its drain ([`Leaving::settled`]).
        let counts_for_drain = self.leaving.settled();
        let membership = self.membership.clone();
        let previous_view = std::mem::take(&mut self.view);
        let mut confirmed = std::mem::take(&mut self.confirmed);
        let work = async move {
            let peers = view(&membership, walk.local, walk.leaving).await;
            if peers.iter().collect::<HashSet<_>>() != previous_view.iter().collect::<HashSet<_>>() {
                // A peer came or went: homes may have moved, and a home that
                // saw a newcomer first may have dropped a copy it claimed
                // (the whole-mesh simulation found a blob left one copy
                // short that way). Every claim is asked for again.
                confirmed.clear();
            }
            let blobs = match walk.storage.list().await {
                Ok(blobs) => blobs,
                Err(e) => {
                    warn!("repair skipped: {e}");
                    return (peers, confirmed, None);
                }
            };
            // Evidence about blobs no longer here is of no use.
            let listed: HashSet<ContentId> = blobs.iter().map(|stored| stored.meta.id).collect();
            confirmed.retain(|id, _| listed.contains(id));
            // Blobs are walked a few at a time: each costs round trips to
            // its homes, and after a heal or a join every blob moves at once.
            let total = blobs.len();
            let walked: Vec<(ContentId, Confirmations<PeerId>, bool)> = futures::stream::iter(blobs)
                .map(|stored| {
                    let mut evidence = confirmed.remove(&stored.meta.id).unwrap_or_default();
                    let (walk, peers) = (&walk, &peers);
                    async move {
                        let handed_off = walk.blob(&stored.meta, peers, &mut evidence).await;
                        (stored.meta.id, evidence, handed_off)
                    }
                })
                .buffer_unordered(WALK_CONCURRENCY)
                .collect()
                .await;
            let mut handed_off = 0;
            for (id, evidence, handed) in walked {
                confirmed.insert(id, evidence);
                handed_off += usize::from(handed);
            }
            (peers, confirmed, counts_for_drain.then_some((total, handed_off)))
        };
        ctx.spawn(work.into_actor(self).map(|(peers, confirmed, handoff), actor, _| {
            actor.view = peers;
            actor.confirmed = confirmed;
            actor.repairing = false;
            if let Some((blobs, handed_off)) = handoff {
                actor.handoff = Handoff { walks: actor.handoff.walks + 1, blobs, handed_off };
            }
        }));
    }

    /// Asks for a fetch of `id` unless one is already running or waiting;
    /// `waiter`, if any, gets the outcome either way. Returns why it was
    /// refused, when over a bound.
    fn request_fetch(
        &mut self,
        ctx: &mut Context<Self>,
        id: ContentId,
        origin: Origin<PeerId>,
        waiter: Option<oneshot::Sender<Result<BlobMeta, FetchError>>>,
    ) -> Result<(), String> {
        match self.fetching.admit(id, origin, waiter) {
            (Admission::Start(id, origin), _) => self.run_fetch(ctx, id, origin),
            (Admission::Queued | Admission::Joined, _) => {}
            (Admission::Refused(reason), waiter) => {
                debug!(%id, "fetch refused: {reason}");
                if let Some(waiter) = waiter {
                    let failures = vec![format!("this node is busy fetching: {reason}")];
                    let _ = waiter.send(Err(FetchError::Unavailable { id, failures }));
                }
                return Err(reason);
            }
        }
        Ok(())
    }

    fn run_fetch(&mut self, ctx: &mut Context<Self>, id: ContentId, origin: Origin<PeerId>) {
        let first = match origin {
            Origin::Peer(peer) => Some(peer),
            Origin::Local => None,
        };
        let reach = Reach {
            net: self.net.clone(),
            storage: self.storage.clone(),
            metrics: self.metrics.clone(),
            membership: self.membership.clone(),
            local: self.local,
            k: self.config.replication,
            leaving: self.leaving.clone(),
        };
        let work = async move {
            let result = reach.fetch_anywhere(id, first).await;
            if let Ok(meta) = &result {
                reach.metrics.replicated(meta.size);
                let _ = reach.net.provide(id).await;
            }
            result
        };
        ctx.spawn(work.into_actor(self).map(move |result, actor, ctx| {
            match (&result, origin) {
                (Ok(_), _) => debug!(%id, "blob fetched"),
                (Err(e), Origin::Local) => warn!(%id, "fetch failed: {e}"),
                // Any peer can ask for any id: its failures are not worth a warning.
                (Err(e), Origin::Peer(peer)) => debug!(%id, %peer, "fetch a peer asked for failed: {e}"),
            }
            let (waiters, next) = actor.fetching.finish(&id);
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
            for (next, origin) in next {
                actor.run_fetch(ctx, next, origin);
            }
        }));
    }
}

impl Handler<PlaceNew> for ReplicationActor {
    type Result = ();

    fn handle(&mut self, PlaceNew(id): PlaceNew, ctx: &mut Self::Context) {
        let (net, membership, local, k) =
            (self.net.clone(), self.membership.clone(), self.local, self.config.replication);
        let leaving = self.leaving.clone();
        ctx.spawn(
            async move {
                let _ = net.provide(id).await;
                let peers = view(&membership, local, leaving.is_set()).await;
                // A new blob has no evidence yet: the plan asks every other home.
                for action in plan::plan(&id, &local, &peers, k, true, &Confirmations::default()) {
                    let Action::AskHome(home) = action else {
                        continue;
                    };
                    if let Err(e) = net.request(home, Request::Replicate { id }).await {
                        debug!(%id, %home, "push failed; repair will retry: {e}");
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl Handler<ReplicateFrom> for ReplicationActor {
    type Result = ResponseFuture<Result<bool, String>>;

    fn handle(&mut self, ReplicateFrom { peer, id, wait }: ReplicateFrom, ctx: &mut Self::Context) -> Self::Result {
        let storage = self.storage.clone();
        let addr = ctx.address();
        Box::pin(async move {
            if storage.has(id).await.unwrap_or(false) {
                return Ok(true);
            }
            let (waiter, outcome) = if wait {
                let (waiter, outcome) = oneshot::channel();
                (Some(waiter), Some(outcome))
            } else {
                (None, None)
            };
            match addr.send(StartFetch { id, peer, waiter }).await {
                Ok(admitted) => admitted?,
                Err(e) => return Err(format!("replication unavailable: {e}")),
            }
            let Some(outcome) = outcome else { return Ok(false) };
            Ok(matches!(tokio::time::timeout(HOLD_NOW_WAIT, outcome).await, Ok(Ok(Ok(_)))))
        })
    }
}

/// Asks for a fetch a peer's `Replicate` (or `HoldNow`, with a waiter) calls for.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
struct StartFetch {
    id: ContentId,
    peer: PeerId,
    waiter: Option<oneshot::Sender<Result<BlobMeta, FetchError>>>,
}

impl Handler<StartFetch> for ReplicationActor {
    type Result = Result<(), String>;

    fn handle(&mut self, StartFetch { id, peer, waiter }: StartFetch, ctx: &mut Self::Context) -> Self::Result {
        self.request_fetch(ctx, id, Origin::Peer(peer), waiter)
    }
}

impl Handler<GetHandoff> for ReplicationActor {
    type Result = MessageResult<GetHandoff>;

    fn handle(&mut self, _: GetHandoff, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.handoff)
    }
}

impl Handler<FetchBlob> for ReplicationActor {
    type Result = ResponseFuture<Result<BlobMeta, FetchError>>;

    fn handle(&mut self, FetchBlob(id): FetchBlob, ctx: &mut Self::Context) -> Self::Result {
        let (waiter, outcome) = oneshot::channel();
        // A refusal reaches the waiter.
        let _ = self.request_fetch(ctx, id, Origin::Local, Some(waiter));
        Box::pin(async move {
            outcome
                .await
                .unwrap_or_else(|_| Err(FetchError::Unavailable { id, failures: vec!["fetch abandoned".into()] }))
        })
    }
}
