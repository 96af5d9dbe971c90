//! The network side of a node: one libp2p Swarm, owned by one task.
//!
//! Everyone else holds a [`NetClient`] (a bounded command channel with oneshot
//! replies) and receives [`NetEvent`]s. Transport: TCP, optionally wrapped in a
//! pre-shared-key layer (pnet), then Noise and Yamux. Behaviours: identify,
//! ping, Kademlia, gossipsub, request-response, lanes (libp2p-stream) and
//! (optionally) mDNS.
//!
//! # Layout
//! - [`behaviour`]: the combined behaviour and its configuration.
//! - [`swarm`]: building the transport and the Swarm.
//! - [`task`]: the event loop that owns the Swarm.
//! - [`client`]: the handle actors use, and the events they receive.
//! - [`identity`], [`network_key`]: the keys on disk.
//! - [`rpc_codec`]: framing of request-response messages.
//! - [`lanes`]: long-lived streams carrying forwarded predictions.
//! - [`quota`]: inbound work bounded overall and per peer.
//! - [`gossip`], [`scoring`]: validating gossip, and what invalid gossip costs.
//! - [`dht`]: what peers may store in this node's part of the DHT.

pub mod behaviour;
pub mod client;
pub mod dht;
pub mod gossip;
pub mod identity;
pub mod lanes;
pub mod network_key;
pub mod quota;
pub mod rpc_codec;
pub mod scoring;
pub mod swarm;
pub mod task;

use std::{path::PathBuf, time::Duration};

pub use client::{InboundRequest, NetClient, NetError, NetEvent, PeerNotice, Sinks};
use libp2p::{Multiaddr, multiaddr::Protocol};

/// Where a node listens when nothing else is said.
pub const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/4001";

/// Capacity of the command channel into the network task.
pub const COMMAND_CAPACITY: usize = 256;
/// Outbound requests awaiting an answer; past it, callers are told at once.
pub const MAX_PENDING_REQUESTS: usize = 4096;
/// DHT provider lookups in progress at once.
pub const MAX_PENDING_PROVIDER_QUERIES: usize = 256;
/// Gossiped ref updates being checked against the store at once, overall and
/// per publisher: a publisher spamming refs waits its turn, others go on.
pub const MAX_REF_VALIDATIONS: usize = 512;
pub const MAX_REF_VALIDATIONS_PER_PEER: usize = 64;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub network_key: Option<PathBuf>,
    pub mdns: bool,
    /// How long to wait for at least one bootstrap peer at start.
    pub bootstrap_timeout: Duration,
    pub ping_interval: Duration,
    /// Established connections, in and out together; peers learned from
    /// gossip or mDNS are dialed only below it.
    pub max_connections: usize,
    /// Established connections with any one peer.
    pub max_connections_per_peer: usize,
    /// Incoming connections still in their handshake.
    pub max_pending_incoming: usize,
    /// Outgoing dials in progress.
    pub max_pending_outgoing: usize,
    /// Peer requests being answered at once; past it, peers are told "busy".
    pub max_inbound_requests: usize,
    /// Of those, how many one peer may have in progress.
    pub max_inbound_requests_per_peer: usize,
    /// Blobs whose holders peers may announce to this node in the DHT.
    pub dht_max_provider_keys: usize,
    /// Holders kept per blob in the DHT.
    pub dht_max_providers_per_key: usize,
}

impl Config {
    pub const DEFAULT_BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(1);
    pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
    /// Two nodes dialing each other at once make two connections; a few more
    /// leave room for a redial while an old connection closes.
    pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 4;
    pub const DEFAULT_MAX_PENDING_INCOMING: usize = 16;
    pub const DEFAULT_MAX_PENDING_OUTGOING: usize = 32;
    pub const DEFAULT_MAX_INBOUND_REQUESTS: usize = 64;
    /// A quarter of the slots: a fetch keeps 4 chunk requests in flight, so a
    /// peer fetching a few blobs at once still fits.
    pub const DEFAULT_MAX_INBOUND_REQUESTS_PER_PEER: usize = 16;
    pub const DEFAULT_DHT_MAX_PROVIDER_KEYS: usize = 65_536;
    /// Kademlia's replication factor: more holders than that are never asked.
    pub const DEFAULT_DHT_MAX_PROVIDERS_PER_KEY: usize = 20;

    pub fn validate(&self) -> Result<(), String> {
        if self.bootstrap_timeout.is_zero() {
            return Err("net.bootstrap_timeout must be greater than zero".into());
        }
        if self.ping_interval.is_zero() {
            return Err("net.ping_interval must be greater than zero".into());
        }
        for (key, value) in [
            ("max_connections", self.max_connections),
            ("max_connections_per_peer", self.max_connections_per_peer),
            ("max_pending_incoming", self.max_pending_incoming),
            ("max_pending_outgoing", self.max_pending_outgoing),
            ("max_inbound_requests", self.max_inbound_requests),
            ("max_inbound_requests_per_peer", self.max_inbound_requests_per_peer),
            ("dht_max_provider_keys", self.dht_max_provider_keys),
            ("dht_max_providers_per_key", self.dht_max_providers_per_key),
        ] {
            if value == 0 {
                return Err(format!("net.{key} must be at least 1"));
            }
            if value > u32::MAX as usize {
                return Err(format!("net.{key} ({value}) must be at most {}", u32::MAX));
            }
        }
        if self.max_connections_per_peer > self.max_connections {
            return Err(format!(
                "net.max_connections_per_peer ({}) must not exceed net.max_connections ({})",
                self.max_connections_per_peer, self.max_connections
            ));
        }
        if self.max_inbound_requests_per_peer > self.max_inbound_requests {
            return Err(format!(
                "net.max_inbound_requests_per_peer ({}) must not exceed net.max_inbound_requests ({}): \
                 a peer's share is part of the whole",
                self.max_inbound_requests_per_peer, self.max_inbound_requests
            ));
        }
        Ok(())
    }

    /// The listen addresses other machines can reach (not loopback).
    pub fn exposed_listen_addrs(&self) -> Vec<&Multiaddr> {
        self.listen.iter().filter(|addr| !is_loopback(addr)).collect()
    }
}

/// Whether an address only reaches this machine. An unspecified address
/// (0.0.0.0, ::) listens on every interface, so it is not loopback.
pub fn is_loopback(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        Some(Protocol::Dns(host) | Protocol::Dns4(host) | Protocol::Dns6(host)) => host == "localhost",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_count_as_private() {
        for (addr, loopback) in [
            ("/ip4/127.0.0.1/tcp/1", true),
            ("/ip6/::1/tcp/1", true),
            ("/dns4/localhost/tcp/1", true),
            ("/ip4/0.0.0.0/tcp/1", false),
            ("/ip4/10.0.0.2/tcp/1", false),
            ("/ip6/::/tcp/1", false),
            ("/dns4/example.org/tcp/1", false),
        ] {
            assert_eq!(is_loopback(&addr.parse().unwrap()), loopback, "{addr}");
        }
    }
}
