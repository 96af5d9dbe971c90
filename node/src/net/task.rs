//! The event loop that owns the Swarm.

use std::{
    collections::{HashMap, HashSet},
    time::Instant,
};

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm, connection_limits, gossipsub, identify, kad, mdns, ping, request_response,
    swarm::{
        ConnectionDenied, ConnectionId, DialError, ListenError, SwarmEvent, dial_opts::DialOpts,
        dial_opts::PeerCondition,
    },
};
use mass_protocol::{
    Advert, codec,
    jobs::TrainingProgress,
    names,
    rpc::{RefUpdate, Request, Response, RpcError, RpcErrorKind},
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{
    Config, MAX_PENDING_PROVIDER_QUERIES, MAX_PENDING_REQUESTS, MAX_REF_VALIDATIONS, MAX_REF_VALIDATIONS_PER_PEER,
    behaviour::{Behaviour, BehaviourEvent},
    client::{Command, InboundRequest, NetError, NetEvent, PeerNotice, Sinks},
    dht,
    gossip::{Verdict, check_ref_update},
    quota::Quota,
};
use crate::metrics::{Metrics, Protocol};

/// Who is waiting for an outbound request's answer.
enum PendingRequest {
    /// The node asked a newly connected peer for its advert.
    Advert,
    External(oneshot::Sender<Result<Response, NetError>>),
}

/// Owns the Swarm; driven by [`NetTask::run`].
pub struct NetTask {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    /// To hand answers computed elsewhere back to this loop.
    own_commands: mpsc::Sender<Command>,
    sinks: Sinks,
    metrics: Metrics,
    max_connections: usize,
    advert_topic: gossipsub::IdentTopic,
    ref_topic: gossipsub::IdentTopic,
    progress_topic: gossipsub::IdentTopic,
    local_advert: Option<Box<Advert>>,
    /// Peer requests in progress, bounded overall and per peer.
    inbound: Quota<PeerId>,
    /// Gossiped ref updates awaiting the store's checks, per publisher.
    ref_validations: Quota<PeerId>,
    /// Blobs peers announced holders of, apart from this node's own.
    providers: dht::ProviderLedger,
    pending_dials: HashMap<ConnectionId, (Multiaddr, oneshot::Sender<Result<PeerId, NetError>>)>,
    pending_requests: HashMap<request_response::OutboundRequestId, PendingRequest>,
    pending_providers: HashMap<kad::QueryId, (HashSet<PeerId>, oneshot::Sender<Vec<PeerId>>)>,
}

impl NetTask {
    pub(crate) fn new(
        mut swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        own_commands: mpsc::Sender<Command>,
        sinks: Sinks,
        metrics: Metrics,
        config: &Config,
    ) -> Result<Self, String> {
        let advert_topic = gossipsub::IdentTopic::new(names::ADVERT_TOPIC);
        let ref_topic = gossipsub::IdentTopic::new(names::REF_TOPIC);
        let progress_topic = gossipsub::IdentTopic::new(names::PROGRESS_TOPIC);
        for topic in [&advert_topic, &ref_topic, &progress_topic] {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(topic)
                .map_err(|e| format!("cannot subscribe to {topic}: {e}"))?;
        }
        Ok(Self {
            swarm,
            commands,
            own_commands,
            sinks,
            metrics,
            max_connections: config.max_connections,
            advert_topic,
            ref_topic,
            progress_topic,
            local_advert: None,
            inbound: Quota::new(config.max_inbound_requests, config.max_inbound_requests_per_peer),
            ref_validations: Quota::new(MAX_REF_VALIDATIONS, MAX_REF_VALIDATIONS_PER_PEER),
            providers: dht::ProviderLedger::new(config.dht_max_provider_keys),
            pending_dials: HashMap::new(),
            pending_requests: HashMap::new(),
            pending_providers: HashMap::new(),
        })
    }

    /// The bound on peers' requests in progress, shared with whoever else
    /// answers them (the lanes).
    pub fn inbound_quota(&self) -> Quota<PeerId> {
        self.inbound.clone()
    }

    /// Runs until a shutdown command arrives or every client is gone.
    pub async fn run(mut self) {
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { done }) => {
                        self.close_all();
                        let _ = done.send(());
                        return;
                    }
                    Some(command) => self.on_command(command),
                    None => return self.close_all(),
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
            }
        }
    }

    fn close_all(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        info!("network stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial { addr, reply } => {
                let opts = DialOpts::from(addr.clone());
                let connection = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(connection, (addr, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial { addr, reason: e.to_string() }));
                    }
                }
            }
            Command::Advertise { advert } => {
                self.publish_advert(&advert);
                self.local_advert = Some(advert);
            }
            Command::Request { peer, request, reply } => {
                if !self.room_for_request() {
                    let reason = format!("{MAX_PENDING_REQUESTS} requests already await answers on this node");
                    let _ = reply.send(Err(NetError::Request { peer, reason }));
                    return;
                }
                let id = self.swarm.behaviour_mut().rpc.send_request(&peer, request);
                self.pending_requests.insert(id, PendingRequest::External(reply));
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::PublishRef { update } => self.publish_ref(&update),
            Command::PublishProgress { progress } => {
                let topic = self.progress_topic.clone();
                // Progress is advisory: a peer that misses an epoch hears the next.
                self.publish(topic, &progress, Protocol::Progress);
            }
            Command::Respond { channel, response } => {
                if self.swarm.behaviour_mut().rpc.send_response(channel, response).is_err() {
                    debug!("peer left before the response was sent");
                }
            }
            Command::Provide { id } => {
                if let Err(e) = self.swarm.behaviour_mut().kad.start_providing(dht::key_of(&id)) {
                    warn!(%id, "cannot announce blob in the DHT: {e}");
                }
            }
            Command::FindProviders { id, reply } => {
                if self.pending_providers.len() >= MAX_PENDING_PROVIDER_QUERIES {
                    // The caller falls back to asking live peers.
                    let _ = reply.send(Vec::new());
                    return;
                }
                let query = self.swarm.behaviour_mut().kad.get_providers(dht::key_of(&id));
                self.pending_providers.insert(query, (HashSet::new(), reply));
            }
            Command::ReportGossip { id, source, acceptance } => {
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &source, acceptance);
            }
            Command::Shutdown { .. } => unreachable!("handled in run"),
        }
    }

    /// Whether another outbound request may wait for an answer. Callers give
    /// up after their own timeout while libp2p keeps the entry until its
    /// longer one, so entries nobody waits for are dropped first.
    fn room_for_request(&mut self) -> bool {
        if self.pending_requests.len() < MAX_PENDING_REQUESTS {
            return true;
        }
        self.pending_requests.retain(|_, pending| match pending {
            PendingRequest::External(reply) => !reply.is_closed(),
            PendingRequest::Advert => true,
        });
        self.pending_requests.len() < MAX_PENDING_REQUESTS
    }

    fn publish_advert(&mut self, advert: &Advert) {
        let topic = self.advert_topic.clone();
        // Alone in the mesh, or no subscriber yet: peers get the advert on connect.
        self.publish(topic, advert, Protocol::Advert);
    }

    fn publish_ref(&mut self, update: &RefUpdate) {
        let topic = self.ref_topic.clone();
        // Peers that connect later catch up through ListRefs.
        self.publish(topic, update, Protocol::Ref);
    }

    /// Gossips a message. Having no subscribed peer yet is not an error: each
    /// topic has its own way for late peers to catch up.
    fn publish(&mut self, topic: gossipsub::IdentTopic, message: &impl serde::Serialize, protocol: Protocol) {
        let bytes = match codec::encode(message) {
            Ok(bytes) => bytes,
            Err(e) => return warn!(?protocol, "cannot encode gossip: {e}"),
        };
        let len = bytes.len();
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) => self.metrics.sent(protocol, len),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => debug!(?protocol, "gossip not published: {e}"),
        }
    }

    /// Hands an event to the actors without waiting; a full mailbox drops it
    /// (adverts repeat) rather than letting peers grow a queue.
    fn emit(&self, event: NetEvent) {
        if self.sinks.membership.try_send(event).is_err() {
            self.metrics.dropped_event();
        }
    }

    fn notify(&self, notice: PeerNotice) {
        if self.sinks.notices.try_send(notice).is_err() {
            self.metrics.dropped_event();
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => info!("listening on {address}"),
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, num_established, endpoint, .. } => {
                debug!(%peer_id, addr = %endpoint.get_remote_address(), "connected");
                if let Some((_, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                if endpoint.is_dialer() {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, endpoint.get_remote_address().clone());
                }
                if num_established.get() == 1 {
                    if self.room_for_request() {
                        let id = self.swarm.behaviour_mut().rpc.send_request(&peer_id, Request::GetAdvert);
                        self.pending_requests.insert(id, PendingRequest::Advert);
                    }
                    self.notify(PeerNotice::Connected { peer: peer_id });
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, cause, .. } => {
                debug!(%peer_id, ?cause, "disconnected");
            }
            SwarmEvent::OutgoingConnectionError { connection_id, peer_id, error } => {
                match &error {
                    DialError::Denied { cause } if is_limit(cause) => self.metrics.connection_denied(),
                    _ => self.metrics.failed_handshake(),
                }
                match self.pending_dials.remove(&connection_id) {
                    Some((addr, reply)) => {
                        let _ = reply.send(Err(NetError::Dial { addr, reason: error.to_string() }));
                    }
                    None => debug!(?peer_id, "dial failed: {error}"),
                }
            }
            SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                match &error {
                    ListenError::Denied { cause } if is_limit(cause) => self.metrics.connection_denied(),
                    _ => self.metrics.failed_handshake(),
                }
                debug!(%send_back_addr, "refused incoming connection: {error}");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if info.protocol_version != names::IDENTIFY_PROTOCOL {
                    warn!(%peer_id, version = %info.protocol_version, "not a Mass peer of this version; disconnecting");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            BehaviourEvent::Ping(ping::Event { peer, result: Ok(_), .. }) => {
                self.emit(NetEvent::Alive { peer });
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message }) => {
                self.on_gossip(propagation_source, message_id, message);
            }
            BehaviourEvent::Rpc(event) => self.on_rpc(event),
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    debug!(%peer, %addr, "found by mDNS");
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                    self.dial_learned(peer, vec![addr]);
                }
            }
            BehaviourEvent::Kad(kad::Event::InboundRequest { request }) => self.on_dht_inbound(request),
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, addresses, .. }) => {
                self.dial_learned(peer, addresses.into_vec());
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(result),
                step,
                ..
            }) => {
                let finished = step.last || !matches!(result, Ok(kad::GetProvidersOk::FoundProviders { .. }));
                if let Some((found, _)) = self.pending_providers.get_mut(&id)
                    && let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = result
                {
                    found.extend(providers);
                }
                if finished && let Some((found, reply)) = self.pending_providers.remove(&id) {
                    let _ = reply.send(found.into_iter().collect());
                }
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, message: gossipsub::Message) {
        let len = message.data.len();
        if message.topic == self.ref_topic.hash() {
            return self.on_ref_gossip(source, id, message);
        }
        if message.topic == self.progress_topic.hash() {
            let acceptance =
                match (message.source, codec::decode::<TrainingProgress>(&message.data, codec::MAX_GOSSIP_MESSAGE)) {
                    (Some(publisher), Ok(progress)) => {
                        self.metrics.received(Protocol::Progress, len);
                        self.notify(PeerNotice::Progress { source: publisher, progress });
                        gossipsub::MessageAcceptance::Accept
                    }
                    _ => {
                        self.metrics.decode_failure(Protocol::Progress);
                        gossipsub::MessageAcceptance::Reject
                    }
                };
            self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &source, acceptance);
            return;
        }
        let acceptance = match (message.topic == self.advert_topic.hash(), message.source) {
            (true, Some(publisher)) => match codec::decode::<Advert>(&message.data, codec::MAX_GOSSIP_MESSAGE) {
                Ok(advert) => {
                    self.metrics.received(Protocol::Advert, len);
                    let addrs = advert.listen_addrs.iter().filter_map(|a| a.parse().ok()).collect();
                    self.dial_learned(publisher, addrs);
                    self.emit(NetEvent::Advert { peer: publisher, advert: Box::new(advert) });
                    gossipsub::MessageAcceptance::Accept
                }
                Err(e) => {
                    self.metrics.decode_failure(Protocol::Advert);
                    warn!(%source, "dropped malformed advert: {e}");
                    gossipsub::MessageAcceptance::Reject
                }
            },
            _ => {
                self.metrics.decode_failure(Protocol::Advert);
                gossipsub::MessageAcceptance::Reject
            }
        };
        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &source, acceptance);
    }

    /// A gossiped ref update: refused at once when its own bytes give it away
    /// (forged origin, bad signature: the sender pays in peer score), else
    /// handed to the service actor, which reports the verdict once the store
    /// has checked the version and clock bounds.
    fn on_ref_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, message: gossipsub::Message) {
        let len = message.data.len();
        let decoded = codec::decode::<RefUpdate>(&message.data, codec::MAX_GOSSIP_MESSAGE);
        let (publisher, update) = match (message.source, decoded) {
            (Some(publisher), Ok(update)) => (publisher, update),
            (_, result) => {
                self.metrics.decode_failure(Protocol::Ref);
                warn!(%source, error = ?result.err(), "dropped malformed ref update");
                return self.report(&id, &source, gossipsub::MessageAcceptance::Reject);
            }
        };
        self.metrics.received(Protocol::Ref, len);
        if let Err(reason) = check_ref_update(&publisher, &update) {
            self.metrics.ref_refused();
            warn!(%source, %publisher, name = %update.name, "refused a forged ref update: {reason}");
            return self.report(&id, &source, gossipsub::MessageAcceptance::Reject);
        }
        let Ok(slot) = self.ref_validations.try_admit(publisher) else {
            // This publisher has many updates in the store's queue: skip this
            // one without blame (an honest burst catches up through ListRefs).
            self.metrics.dropped_event();
            return self.report(&id, &source, gossipsub::MessageAcceptance::Ignore);
        };
        let verdict = Verdict::new(id, source, self.own_commands.clone(), slot);
        // A full mailbox drops the notice, and with it the verdict: "ignore".
        self.notify(PeerNotice::RefUpdate { source: publisher, update, verdict });
    }

    fn report(&mut self, id: &gossipsub::MessageId, source: &PeerId, acceptance: gossipsub::MessageAcceptance) {
        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(id, source, acceptance);
    }

    /// A peer asks this node to store a DHT record or provider announcement
    /// (kad filters every insert): stored only when it checks out and fits.
    fn on_dht_inbound(&mut self, request: kad::InboundRequest) {
        match request {
            kad::InboundRequest::AddProvider { record: Some(record) } => {
                let checked = dht::check_provider(&record).and_then(|()| {
                    let now = Instant::now();
                    let local = *self.swarm.local_peer_id();
                    let store = self.swarm.behaviour_mut().kad.store_mut();
                    let admitted =
                        self.providers.admit(&record.key, now, |key| dht::prune_key(store, key, &local, now));
                    if !admitted {
                        return Err(dht::Refusal::Full);
                    }
                    use kad::store::RecordStore;
                    store.add_provider(record.clone()).map_err(|_| dht::Refusal::Full)
                });
                match checked {
                    Ok(()) => self.metrics.dht_stored(),
                    Err(refusal) => {
                        self.metrics.dht_refused(refusal.label());
                        debug!(provider = %record.provider, "refused a DHT provider record: {refusal}");
                    }
                }
            }
            kad::InboundRequest::PutRecord { source, record: Some(record), .. } => {
                let refusal = dht::check_record(&record).err().unwrap_or(dht::Refusal::Kind);
                self.metrics.dht_refused(refusal.label());
                debug!(%source, "refused a DHT record: {refusal}");
            }
            _ => {}
        }
    }

    fn on_rpc(&mut self, event: request_response::Event<Request, Response>) {
        use request_response::{Event, Message};
        match event {
            Event::Message { peer, message: Message::Request { request: Request::GetAdvert, channel, .. }, .. } => {
                let response = self.own_advert();
                if self.swarm.behaviour_mut().rpc.send_response(channel, response).is_err() {
                    debug!(%peer, "peer left before the response was sent");
                }
            }
            Event::Message { peer, message: Message::Request { request, channel, .. }, .. } => {
                self.forward(peer, request, channel);
            }
            Event::Message { peer, message: Message::Response { request_id, response }, .. } => {
                match self.pending_requests.remove(&request_id) {
                    Some(PendingRequest::Advert) => match response {
                        Response::Advert(advert) => self.emit(NetEvent::Advert { peer, advert }),
                        other => debug!(%peer, ?other, "peer did not send its advert"),
                    },
                    Some(PendingRequest::External(reply)) => {
                        let _ = reply.send(Ok(response));
                    }
                    None => {}
                }
            }
            Event::OutboundFailure { peer, request_id, error, .. } => {
                if let Some(PendingRequest::External(reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request { peer, reason: error.to_string() }));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, "inbound request failed: {error}")
            }
            Event::ResponseSent { .. } => {}
        }
    }

    fn own_advert(&self) -> Response {
        match &self.local_advert {
            Some(advert) => Response::Advert(advert.clone()),
            None => {
                Response::Error(RpcError { kind: RpcErrorKind::Unavailable, message: "node is still starting".into() })
            }
        }
    }

    /// Hands a request to the service actor and sends its answer back through
    /// this loop. At most `net.max_inbound_requests` are in progress, and at
    /// most `net.max_inbound_requests_per_peer` of one peer; past either a
    /// peer is told the node is busy instead of growing a queue, so one peer
    /// flooding cannot take the slots honest peers need.
    fn forward(&mut self, peer: PeerId, request: Request, channel: request_response::ResponseChannel<Response>) {
        let permit = match self.inbound.try_admit(peer) {
            Ok(permit) => permit,
            Err(refusal) => {
                self.metrics.request_refused();
                let busy = Response::Error(RpcError { kind: RpcErrorKind::Overloaded, message: refusal.to_string() });
                let _ = self.swarm.behaviour_mut().rpc.send_response(channel, busy);
                return;
            }
        };
        let commands = self.own_commands.clone();
        let request = match (request, &self.sinks.predictions) {
            (Request::Predict(call), Some(predict)) => {
                let answer = predict(*call);
                tokio::spawn(async move {
                    let response = answer.await;
                    let _ = commands.send(Command::Respond { channel, response }).await;
                    drop(permit);
                });
                return;
            }
            (request, _) => request,
        };
        let service = self.sinks.requests.clone();
        tokio::spawn(async move {
            let response = service.send(InboundRequest { peer, request }).await.unwrap_or_else(|e| {
                Response::Error(RpcError {
                    kind: RpcErrorKind::Unavailable,
                    message: format!("service unavailable: {e}"),
                })
            });
            let _ = commands.send(Command::Respond { channel, response }).await;
            drop(permit);
        });
    }

    /// Connects to a peer learned from gossip, the DHT or mDNS, so the mesh
    /// becomes well connected without anyone listing every node.
    fn dial_learned(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == *self.swarm.local_peer_id()
            || addrs.is_empty()
            || self.swarm.is_connected(&peer)
            || self.swarm.connected_peers().count() >= self.max_connections
        {
            return;
        }
        let opts = DialOpts::peer_id(peer).addresses(addrs).condition(PeerCondition::DisconnectedAndNotDialing).build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(%peer, "not dialing learned peer: {e}");
        }
    }
}

/// Whether a connection was refused by the connection limits (and not by,
/// say, a failed handshake).
fn is_limit(cause: &ConnectionDenied) -> bool {
    cause.downcast_ref::<connection_limits::Exceeded>().is_some()
}
