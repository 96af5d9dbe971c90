//! The advert: what a node gossips about itself at start and periodically.

use serde::{Deserialize, Serialize};

use crate::hardware::HardwareProfile;

/// Published on [`crate::names::ADVERT_TOPIC`]. The sender's peer id is not in
/// the body: gossipsub signs messages, so the authenticated source is used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advert {
    pub protocol_version: u16,
    /// Increases with every advert a node publishes; a restart starts again at 0.
    pub seq: u64,
    /// Software name and version, e.g. "mass/0.1.0".
    pub agent: String,
    /// Multiaddrs the node listens on, as text.
    pub listen_addrs: Vec<String>,
    /// The node's HTTP API address, when it serves one.
    pub http_addr: Option<String>,
    pub hardware: HardwareProfile,
    pub load: Load,
    /// The node is leaving: peers stop placing blobs, replicas, training and
    /// drives on it while it hands off what it has.
    pub draining: bool,
}

/// How busy a node is right now; placement and routing rank over this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Load {
    pub free_memory_bytes: u64,
    /// 1-minute load average divided by cores (1.0 = every core busy).
    pub cpu_load: f32,
    /// Depth of each named work queue on the node, and counters of its
    /// share of the mesh's work (`done.<kind>`, `serving.replicas`).
    pub queues: Vec<QueueDepth>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    pub name: String,
    pub depth: u32,
}

impl Load {
    /// Total queued work across all queues.
    pub fn total_queued(&self) -> u64 {
        self.queues.iter().map(|q| u64::from(q.depth)).sum()
    }
}
