//! The network side of a node: one libp2p Swarm, owned by one task.
//!
//! Everyone else holds a [`NetClient`] (a bounded command channel with oneshot
//! replies) and receives [`NetEvent`]s. Transport: TCP, optionally wrapped in a
//! pre-shared-key layer (pnet), then Noise and Yamux. Behaviours: identify,
//! ping, Kademlia, gossipsub, request-response and (optionally) mDNS.
//!
//! # Layout
//! - [`behaviour`]: the combined behaviour and its configuration.
//! - [`swarm`]: building the transport and the Swarm.
//! - [`task`]: the event loop that owns the Swarm.
//! - [`client`]: the handle actors use, and the events they receive.
//! - [`identity`], [`network_key`]: the keys on disk.
//! - [`rpc_codec`]: framing of request-response messages.

pub mod behaviour;
pub mod client;
pub mod identity;
pub mod network_key;
pub mod rpc_codec;
pub mod swarm;
pub mod task;

use std::{path::PathBuf, time::Duration};

pub use client::{InboundRequest, NetClient, NetError, NetEvent, PeerNotice, Sinks};
use libp2p::Multiaddr;

/// Where a node listens when nothing else is said.
pub const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/4001";

/// Capacity of the command channel into the network task.
pub const COMMAND_CAPACITY: usize = 256;
/// Peer requests being answered at once; past it, peers are told "busy".
pub const MAX_INBOUND_REQUESTS: usize = 64;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub network_key: Option<PathBuf>,
    pub mdns: bool,
    /// How long to wait for at least one bootstrap peer at start.
    pub bootstrap_timeout: Duration,
    pub ping_interval: Duration,
    /// Peers learned from gossip or mDNS are dialed only below this many connections.
    pub max_connections: usize,
}

impl Config {
    pub const DEFAULT_BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(1);
    pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

    pub fn validate(&self) -> Result<(), String> {
        if self.bootstrap_timeout.is_zero() {
            return Err("net.bootstrap_timeout must be greater than zero".into());
        }
        if self.ping_interval.is_zero() {
            return Err("net.ping_interval must be greater than zero".into());
        }
        if self.max_connections == 0 {
            return Err("net.max_connections must be at least 1".into());
        }
        Ok(())
    }
}
