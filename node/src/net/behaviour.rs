//! The combined libp2p behaviour of a Mass node.

use std::time::Duration;

use libp2p::{
    StreamProtocol, gossipsub, identify,
    identity::Keypair,
    kad, mdns, ping, request_response,
    swarm::{NetworkBehaviour, behaviour::toggle::Toggle},
};
use mass_protocol::{codec, names};

use super::{Config, rpc_codec::RpcCodec};
use crate::metrics::Metrics;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub rpc: request_response::Behaviour<RpcCodec>,
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
        let mut kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        // Every Mass node serves the DHT, even when it only knows private addresses.
        kad.set_mode(Some(kad::Mode::Server));

        let gossip_config = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_millis(700))
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .max_transmit_size(codec::MAX_GOSSIP_MESSAGE)
            .build()
            .map_err(|e| format!("gossipsub config: {e}"))?;
        let gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_config)
            .map_err(|e| format!("gossipsub: {e}"))?;

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

        Ok(Self { identify, ping, kad, gossipsub, rpc, mdns: mdns.into() })
    }
}
