//! Building the Swarm: TCP, optional pnet, Noise, Yamux, and the behaviour.

use std::time::Duration;

use either::Either;
use libp2p::{
    Swarm, SwarmBuilder, Transport,
    core::upgrade::Version,
    identity::Keypair,
    noise,
    pnet::{PnetConfig, PreSharedKey},
    tcp, yamux,
};

use super::{Config, behaviour::Behaviour};
use crate::metrics::Metrics;

/// Connections with no active protocol are kept this long; liveness comes from
/// ping and adverts, not from closing and reopening connections.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on a connection's security and multiplexing handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("cannot build the network stack: {0}")]
pub struct BuildError(String);

/// Builds the node's Swarm. With a pre-shared key, every connection first
/// completes the pnet handshake; a peer with another key or none fails there,
/// before it can be authenticated or speak any protocol.
pub fn build(
    keypair: Keypair,
    psk: Option<PreSharedKey>,
    config: &Config,
    metrics: Metrics,
) -> Result<Swarm<Behaviour>, BuildError> {
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
            let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
            let base = match psk {
                Some(psk) => Either::Left(tcp.and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))),
                None => Either::Right(tcp),
            };
            Ok(base
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default())
                .timeout(HANDSHAKE_TIMEOUT))
        })
        .map_err(|e| BuildError(e.to_string()))?
        .with_dns()
        .map_err(|e| BuildError(format!("DNS resolver: {e}")))?
        .with_behaviour(|key| Behaviour::new(key, config, metrics).map_err(Into::into))
        .map_err(|e| BuildError(e.to_string()))?
        // Every request (a forwarded prediction, a shard read) opens a
        // substream; lazy multistream-select sends the request with its
        // protocol's name instead of waiting a round trip for the peer to
        // confirm it (every node speaks the same protocols).
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT)
                .with_substream_upgrade_protocol_override(Version::V1Lazy)
        })
        .build();
    Ok(swarm)
}

impl From<String> for BuildError {
    fn from(message: String) -> Self {
        Self(message)
    }
}
