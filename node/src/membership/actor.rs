//! The actor shell around [`PeerTable`]: fed by the network task, ticked by a
//! timer, asked by the HTTP API.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::{Actor, AsyncContext, Context, Handler, Message, MessageResult};
use libp2p::PeerId;
use mass_protocol::{
    Advert,
    api::{PeerState, PeerView},
};
use tracing::{debug, info};

use super::{Config, PeerTable, Transition};
use crate::{metrics::Metrics, net::NetEvent};

/// Mailbox size: adverts from a large mesh arrive in bursts.
const MAILBOX_CAPACITY: usize = 4096;
/// How often timeouts are applied.
const TICK: Duration = Duration::from_millis(250);

/// Asks for the peer table, this node first.
#[derive(Debug, Message)]
#[rtype(result = "Vec<PeerView>")]
pub struct GetPeers;

/// Asks for the ids of the peers currently up (this node excluded).
#[derive(Debug, Message)]
#[rtype(result = "Vec<PeerId>")]
pub struct GetUpPeers;

/// Asks for the ids of the peers alive: up or draining (this node excluded).
/// A draining peer places nothing new but still serves what it holds.
#[derive(Debug, Message)]
#[rtype(result = "Vec<PeerId>")]
pub struct GetLivePeers;

/// Asks for the live peers with the depth of one of their advertised work
/// queues (0 when a peer did not advertise it).
#[derive(Debug, Message)]
#[rtype(result = "Vec<(PeerId, u32)>")]
pub struct GetQueueDepths(pub &'static str);

/// Whom to tell when a peer that was down is up again: refs written on
/// either side while they were apart (a partition shorter than the
/// connection timeouts opens no new connection) are synced then.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct OnRecovered(pub actix::Recipient<crate::net::PeerNotice>);

/// Tells the actor what this node currently advertises, for its own row.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetLocalAdvert(pub Box<Advert>);

pub struct MembershipActor {
    local_peer_id: PeerId,
    local_advert: Option<Box<Advert>>,
    table: PeerTable<PeerId, Box<Advert>>,
    origin: Instant,
    metrics: Metrics,
    on_recovered: Option<actix::Recipient<crate::net::PeerNotice>>,
    /// Whether this node drains, for its own row.
    leaving: crate::drain::Leaving,
}

impl MembershipActor {
    pub fn new(local_peer_id: PeerId, config: Config, metrics: Metrics, leaving: crate::drain::Leaving) -> Self {
        Self {
            local_peer_id,
            local_advert: None,
            table: PeerTable::new(config),
            origin: Instant::now(),
            metrics,
            on_recovered: None,
            leaving,
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn record(&self, transition: Option<Transition<PeerId>>) {
        match transition {
            Some(Transition::Joined(peer)) => info!(%peer, "peer joined"),
            Some(Transition::Recovered(peer)) => {
                info!(%peer, "peer is up again");
                // Bounded: a full mailbox skips this sync; the next one catches up.
                if let Some(listener) = &self.on_recovered {
                    let _ = listener.try_send(crate::net::PeerNotice::Connected { peer });
                }
            }
            Some(Transition::WentDown(peer)) => info!(%peer, "peer is down"),
            Some(Transition::Forgotten(peer)) => info!(%peer, "peer forgotten"),
            // Debug only: a flood of fresh ids would otherwise flood the log.
            Some(Transition::Refused(peer)) => {
                return debug!(%peer, max = self.table.len(), "peer table full of live peers; not listing a new one");
            }
            None => return,
        }
        self.metrics.set_peers(self.table.count(PeerState::Up), self.table.count(PeerState::Down));
    }

    fn view(&self) -> Vec<PeerView> {
        let now_ms = self.now_ms();
        let unix_now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let local = PeerView {
            peer_id: self.local_peer_id.to_string(),
            is_self: true,
            addresses: self.local_advert.as_ref().map(|a| a.listen_addrs.clone()).unwrap_or_default(),
            http_addr: self.local_advert.as_ref().and_then(|a| a.http_addr.clone()),
            state: if self.leaving.is_set() { PeerState::Draining } else { PeerState::Up },
            last_seen: unix_now_ms,
            hardware: self.local_advert.as_ref().map(|a| a.hardware.clone()),
            load: self.local_advert.as_ref().map(|a| a.load.clone()),
        };
        let peers = self.table.iter().map(|(peer, entry)| PeerView {
            peer_id: peer.to_string(),
            is_self: false,
            addresses: entry.info.as_ref().map(|a| a.listen_addrs.clone()).unwrap_or_default(),
            http_addr: entry.info.as_ref().and_then(|a| a.http_addr.clone()),
            state: entry.state,
            last_seen: unix_now_ms.saturating_sub(now_ms.saturating_sub(entry.last_seen_ms)),
            hardware: entry.info.as_ref().map(|a| a.hardware.clone()),
            load: entry.info.as_ref().map(|a| a.load.clone()),
        });
        std::iter::once(local).chain(peers).collect()
    }
}

impl Actor for MembershipActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.run_interval(TICK, |actor, _| {
            let now = actor.now_ms();
            for transition in actor.table.tick(now) {
                actor.record(Some(transition));
            }
        });
    }
}

impl Handler<NetEvent> for MembershipActor {
    type Result = ();

    fn handle(&mut self, event: NetEvent, _: &mut Self::Context) {
        let now = self.now_ms();
        let transition = match event {
            NetEvent::Advert { peer, .. } if peer == self.local_peer_id => None,
            NetEvent::Advert { peer, advert } => {
                let draining = advert.draining;
                let transition = self.table.observe_advert(peer, advert, now);
                if self.table.set_draining(&peer, draining) && draining {
                    info!(%peer, "peer is draining: it hands its work to the others and leaves");
                }
                transition
            }
            NetEvent::Alive { peer } => self.table.observe_alive(&peer, now),
        };
        self.record(transition);
    }
}

impl Handler<OnRecovered> for MembershipActor {
    type Result = ();

    fn handle(&mut self, OnRecovered(listener): OnRecovered, _: &mut Self::Context) {
        self.on_recovered = Some(listener);
    }
}

impl Handler<GetPeers> for MembershipActor {
    type Result = MessageResult<GetPeers>;

    fn handle(&mut self, _: GetPeers, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.view())
    }
}

impl Handler<SetLocalAdvert> for MembershipActor {
    type Result = ();

    fn handle(&mut self, SetLocalAdvert(advert): SetLocalAdvert, _: &mut Self::Context) {
        self.local_advert = Some(advert);
    }
}

impl Handler<GetUpPeers> for MembershipActor {
    type Result = MessageResult<GetUpPeers>;

    fn handle(&mut self, _: GetUpPeers, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.table.up().copied().collect())
    }
}

impl Handler<GetLivePeers> for MembershipActor {
    type Result = MessageResult<GetLivePeers>;

    fn handle(&mut self, _: GetLivePeers, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.table.iter().filter(|(_, e)| e.state != PeerState::Down).map(|(p, _)| *p).collect())
    }
}

impl Handler<GetQueueDepths> for MembershipActor {
    type Result = MessageResult<GetQueueDepths>;

    fn handle(&mut self, GetQueueDepths(queue): GetQueueDepths, _: &mut Self::Context) -> Self::Result {
        let depth = |peer: &PeerId| {
            let advert = self.table.get(peer).and_then(|entry| entry.info.as_ref());
            advert.and_then(|a| a.load.queues.iter().find(|q| q.name == queue)).map_or(0, |q| q.depth)
        };
        MessageResult(self.table.up().map(|peer| (*peer, depth(peer))).collect())
    }
}
