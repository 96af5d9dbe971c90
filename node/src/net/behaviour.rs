//! The combined libp2p behaviour of a Mass node.

use std::time::Duration;

use libp2p::{
    StreamProtocol, connection_limits, gossipsub, identify,
    identity::Keypair,
    kad, mdns, ping, request_response,
    swarm::{NetworkBehaviour, behaviour::toggle::Toggle},
};
use mass_protocol::{codec, names};

use super::{Config, rpc_codec::RpcCodec};
use crate::metrics::Metrics;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// First, so a connection over a limit is refused before any other
    /// behaviour sets anything up for it.
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub rpc: request_response::Behaviour<RpcCodec>,
    /// Long-lived streams for forwarded predictions ([`super::lanes`]).
    pub lanes: libp2p_stream::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

/// How long a peer has to answer a request before libp2p fails it: the
/// longest work request's bound; callers bound each request themselves
/// (`NetClient::request` waits 30 s).
pub const RPC_TIMEOUT: Duration = super::client::WORK_TIMEOUT;
/// Concurrent inbound or outbound request streams per connection.
pub const RPC_MAX_STREAMS: usize = 64;

impl Behaviour {
    pub fn new(key: &Keypair, config: &Config, metrics: Metrics) -> Result<Self, String> {
        let peer_id = key.public().to_peer_id();

        let identify = identify::Behaviour::new(
            identify::Config::new(names::IDENTIFY_PROTOCOL.to_owned(), key.public())
                .with_agent_version(format!("mass/{}", env!("CARGO_PKG_VERSION"))),
        );

        let ping = ping::Behaviour::new(ping::Config::new().with_interval(config.ping_interval));

        let mut kad_config = kad::Config::new(StreamProtocol::new(names::KAD_PROTOCOL));
        // Records are validated before they are stored (STACK.md).
        kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
        kad_config.set_periodic_bootstrap_interval(Some(Duration::from_secs(60)));
        // Not kad's 60 s: a query that waits on peers cut off by a partition
        // holds one of the few provider queries a node runs at once.
        kad_config.set_query_timeout(Duration::from_secs(10));
        let store = kad::store::MemoryStore::with_config(peer_id, super::dht::store_config(config));
        let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
        // Every Mass node serves the DHT, even when it only knows private addresses.
        kad.set_mode(Some(kad::Mode::Server));

        let gossip_config = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_millis(700))
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .max_transmit_size(codec::MAX_GOSSIP_MESSAGE)
            .build()
            .map_err(|e| format!("gossipsub config: {e}"))?;
        let mut gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_config)
                .map_err(|e| format!("gossipsub: {e}"))?;
        let topics = super::scoring::topic_weights(
            gossipsub::IdentTopic::new(names::ADVERT_TOPIC).hash(),
            gossipsub::IdentTopic::new(names::REF_TOPIC).hash(),
            gossipsub::IdentTopic::new(names::PROGRESS_TOPIC).hash(),
        );
        gossipsub
            .with_peer_score(super::scoring::params(topics), super::scoring::thresholds())
            .map_err(|e| format!("gossipsub peer scoring: {e}"))?;

        // Values were checked to fit in u32 by `Config::validate`.
        let limit = |n: usize| Some(u32::try_from(n).unwrap_or(u32::MAX));
        let limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(limit(config.max_connections))
                .with_max_established_per_peer(limit(config.max_connections_per_peer))
                .with_max_pending_incoming(limit(config.max_pending_incoming))
                .with_max_pending_outgoing(limit(config.max_pending_outgoing)),
        );

        let rpc = request_response::Behaviour::with_codec(
            RpcCodec::new(metrics),
            [(StreamProtocol::new(names::RPC_PROTOCOL), request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(RPC_TIMEOUT)
                .with_max_concurrent_streams(RPC_MAX_STREAMS),
        );

        let mdns = if config.mdns {
            let mdns_config = mdns::Config { query_interval: Duration::from_secs(5), ..Default::default() };
            Some(mdns::tokio::Behaviour::new(mdns_config, peer_id).map_err(|e| format!("mDNS: {e}"))?)
        } else {
            None
        };

        let lanes = libp2p_stream::Behaviour::new();
        Ok(Self { limits, identify, ping, kad, gossipsub, rpc, lanes, mdns: mdns.into() })
    }
}
