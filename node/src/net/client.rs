//! The handle every actor uses to reach the network task, and the events the
//! task sends out.

use actix::Message;
use libp2p::{Multiaddr, PeerId, request_response::ResponseChannel};
use mass_protocol::{
    Advert, ContentId,
    jobs::TrainingProgress,
    rpc::{RefUpdate, Request, Response},
};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the network task tells the rest of the node.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum NetEvent {
    /// A peer's advert arrived (by gossip or as a direct reply).
    Advert { peer: PeerId, advert: Box<Advert> },
    /// A connected peer answered a ping.
    Alive { peer: PeerId },
}

/// A peer's request that needs the node's subsystems (storage, replication);
/// answered by the [`crate::service`] actor.
#[derive(Debug, Message)]
#[rtype(result = "Response")]
pub struct InboundRequest {
    pub peer: PeerId,
    pub request: Request,
}

/// Things peers did that the service actor acts on.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum PeerNotice {
    /// A ref update arrived by gossip from its (authenticated) publisher,
    /// already checked for its name, origin and signature; `verdict` takes
    /// the outcome of the remaining checks back to gossipsub.
    RefUpdate { source: PeerId, update: RefUpdate, verdict: super::gossip::Verdict },
    /// A peer's training task reported an epoch.
    Progress { source: PeerId, progress: TrainingProgress },
    /// A first connection to a peer was established, or membership saw a
    /// peer that was down come back: its refs are synced.
    Connected { peer: PeerId },
}

/// Where the network task delivers what it receives.
#[derive(Clone)]
pub struct Sinks {
    pub membership: actix::Recipient<NetEvent>,
    pub requests: actix::Recipient<InboundRequest>,
    pub notices: actix::Recipient<PeerNotice>,
    /// Answers forwarded predictions on the network task's runtime, without
    /// a hop through the service actor (`None`: they go to `requests`).
    pub predictions: Option<PredictHandler>,
}

/// Answers one forwarded prediction.
pub type PredictHandler = std::sync::Arc<
    dyn Fn(mass_protocol::serving::PredictCall) -> futures::future::BoxFuture<'static, Response> + Send + Sync,
>;

/// Why a network operation failed.
/// How long most requests may take: a peer that stalls is given up on.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request that runs work on the peer may take (training a
/// sub-model, holding a boosted job's rows, scoring a shard).
pub const WORK_TIMEOUT: Duration = Duration::from_secs(900);

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("the network task has stopped")]
    Stopped,
    #[error("cannot reach {addr}: {reason}")]
    Dial { addr: Multiaddr, reason: String },
    #[error("request to {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
}

/// Commands into the network task.
#[derive(Debug)]
pub(crate) enum Command {
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, NetError>>,
    },
    Advertise {
        advert: Box<Advert>,
    },
    Request {
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Response, NetError>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    PublishRef {
        update: RefUpdate,
    },
    PublishProgress {
        progress: TrainingProgress,
    },
    Respond {
        channel: ResponseChannel<Response>,
        response: Response,
    },
    /// The outcome of validating a gossiped message (see [`super::gossip`]).
    ReportGossip {
        id: libp2p::gossipsub::MessageId,
        source: PeerId,
        acceptance: libp2p::gossipsub::MessageAcceptance,
    },
    Provide {
        id: ContentId,
    },
    FindProviders {
        id: ContentId,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// Cloneable handle to the network task.
#[derive(Debug, Clone)]
pub struct NetClient {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    /// Long-lived streams for forwarded predictions, where the swarm has them.
    lanes: Option<super::lanes::Lanes>,
}

impl NetClient {
    pub(crate) fn new(commands: mpsc::Sender<Command>, local_peer_id: PeerId) -> Self {
        Self { commands, local_peer_id, lanes: None }
    }

    /// Forwarded predictions go on lanes opened with `lanes`.
    pub(crate) fn with_lanes(self, lanes: super::lanes::Lanes) -> Self {
        Self { lanes: Some(lanes), ..self }
    }

    pub(crate) fn sender(&self) -> mpsc::Sender<Command> {
        self.commands.clone()
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Commands waiting for the network task: the node's network queue depth.
    pub fn queued(&self) -> usize {
        self.commands.max_capacity() - self.commands.capacity()
    }

    async fn send(&self, command: Command) -> Result<(), NetError> {
        self.commands.send(command).await.map_err(|_| NetError::Stopped)
    }

    /// Dials an address (with or without a `/p2p/` suffix) and resolves once a
    /// connection is authenticated, with the peer's id.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NetError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Dial { addr, reply }).await?;
        answer.await.map_err(|_| NetError::Stopped)?
    }

    /// Publishes this node's advert and keeps it to answer direct requests.
    pub async fn advertise(&self, advert: Advert) -> Result<(), NetError> {
        self.send(Command::Advertise { advert: Box::new(advert) }).await
    }

    /// Sends a request to a peer and waits for its response, at most
    /// [`REQUEST_TIMEOUT`].
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, NetError> {
        self.request_within(peer, request, REQUEST_TIMEOUT).await
    }

    /// Sends a request and waits for its response at most `limit` (work
    /// requests such as training take [`WORK_TIMEOUT`]).
    pub async fn request_within(&self, peer: PeerId, request: Request, limit: Duration) -> Result<Response, NetError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Request { peer, request, reply }).await?;
        match tokio::time::timeout(limit, answer).await {
            Ok(answer) => answer.map_err(|_| NetError::Stopped)?,
            Err(_) => Err(NetError::Request {
                peer,
                reason: format!("no answer within {limit:?} (the peer may still be working on it)"),
            }),
        }
    }

    /// Sends a forwarded prediction: on the peer's lane when it fits one
    /// (no substream and no trip through the swarm task per call),
    /// otherwise, or when the peer has no lane, by request-response.
    pub async fn predict(&self, peer: PeerId, request: Request) -> Result<Response, NetError> {
        if let Some(lanes) = &self.lanes {
            match lanes.call(peer, &request).await {
                Ok(response) => return Ok(response),
                Err(super::lanes::LaneError::Lost(reason)) => return Err(NetError::Request { peer, reason }),
                Err(super::lanes::LaneError::NotSent(reason)) => {
                    tracing::trace!(%peer, "prediction by request-response: {reason}");
                }
            }
        }
        self.request(peer, request).await
    }

    /// The addresses the Swarm listens on so far.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::ListenAddrs { reply }).await?;
        answer.await.map_err(|_| NetError::Stopped)
    }

    /// Gossips a ref update to the mesh.
    pub async fn publish_ref(&self, update: RefUpdate) -> Result<(), NetError> {
        self.send(Command::PublishRef { update }).await
    }

    /// Gossips training progress without waiting: called from training
    /// threads, and a progress report is worth dropping when the task is busy.
    pub fn publish_progress(&self, progress: TrainingProgress) {
        let _ = self.commands.try_send(Command::PublishProgress { progress });
    }

    /// Announces in the DHT that this node holds a blob.
    pub async fn provide(&self, id: ContentId) -> Result<(), NetError> {
        self.send(Command::Provide { id }).await
    }

    /// Peers the DHT knows to hold a blob.
    pub async fn find_providers(&self, id: ContentId) -> Result<Vec<PeerId>, NetError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::FindProviders { id, reply }).await?;
        answer.await.map_err(|_| NetError::Stopped)
    }

    /// Stops the task and closes every connection; resolves when it is done.
    pub async fn shutdown(&self) {
        let (done, finished) = oneshot::channel();
        if self.send(Command::Shutdown { done }).await.is_ok() {
            let _ = finished.await;
        }
    }
}
