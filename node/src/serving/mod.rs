//! Serving predictions from any node.
//!
//! A request names a model; the node resolves `model/<name>` to the version
//! served now, and answers from its own copy when it holds one, else
//! forwards to a replica ([`router`]). Replicas ([`keeper`]) keep every
//! blob of the versions they serve and load them ahead of requests
//! ([`model`]). Rows are checked against the dataset's columns ([`rows`])
//! by the batch they join ([`inference`]), each request on its own, so a bad
//! one fails alone; versions are numbered and moved
//! by the [`registry`]; [`compose`] makes models of registered models;
//! [`export`] writes a version as safetensors or ONNX and [`import`]
//! registers weights trained elsewhere. A version a node forwards many requests for is
//! loaded there too ([`Demand`]): hot models spread to more nodes.
//! [`admission`] bounds the predict requests a node takes at once.
//! Offline, [`scoring`] runs a batch prediction over a stored dataset as a
//! checkpointed job, each shard scored where it lives ([`batch`]).

pub mod admission;
pub mod batch;
pub mod choice;
pub mod compose;
pub mod compress;
pub mod distill;
pub mod export;
pub mod hedge;
pub mod import;
pub mod inference;
pub mod keeper;
pub mod model;
pub mod peers;
pub mod registry;
pub mod router;
pub mod rows;
pub mod scoring;

use std::time::Duration;

use mass_protocol::ContentId;

pub use inference::Inference;
pub use model::ModelCache;

/// Name of the inference queue in load adverts.
pub const INFERENCE_QUEUE: &str = "inference";
/// The advert's count of models a node serves as a replica.
pub const REPLICAS_QUEUE: &str = "serving.replicas";

#[derive(Debug, Clone)]
pub struct Config {
    /// Requests that may wait for inference; past it the node answers 503.
    pub queue: usize,
    /// Most rows run as one batch.
    pub max_batch_rows: usize,
    /// How long a batch that is not full waits for more requests.
    pub batch_wait: Duration,
    /// How long a request may take, retries on other replicas included.
    pub deadline: Duration,
    /// Nodes that keep a loaded copy of each model version.
    pub replicas: usize,
    /// A node that forwards this many requests for one version within
    /// [`HOT_WINDOW`] loads it and serves it too (0: never).
    pub hot_after: u32,
    /// Predict requests the HTTP API takes at once; past it, 503 at once.
    pub max_in_flight: usize,
    /// MiB of predict bodies the HTTP API holds at once; past it, 503 at once.
    pub max_in_flight_mib: usize,
    /// Shards a scoring job this node drives scores at once (each on a
    /// node holding it): bounds the load one batch prediction puts on the mesh.
    pub scoring_parallel: usize,
}

/// The window over which forwarded requests are counted.
pub const HOT_WINDOW: Duration = Duration::from_secs(10);

impl Config {
    pub const DEFAULT: Self = Self {
        queue: 1024,
        max_batch_rows: 4096,
        batch_wait: Duration::ZERO,
        deadline: Duration::from_secs(2),
        replicas: 2,
        hot_after: 500,
        max_in_flight: 512,
        max_in_flight_mib: 256,
        scoring_parallel: 8,
    };

    pub fn validate(&self) -> Result<(), String> {
        if self.queue == 0 || self.max_batch_rows == 0 || self.replicas == 0 || self.scoring_parallel == 0 {
            return Err("serving: queue, max_batch_rows, replicas and scoring_parallel must be at least 1".into());
        }
        if self.max_in_flight == 0 || !(16..=1 << 20).contains(&self.max_in_flight_mib) {
            return Err("serving: max_in_flight must be at least 1 and max_in_flight_mib 16 to 1048576 (one \
                        largest body is 16 MiB)"
                .into());
        }
        if self.deadline < Duration::from_millis(10) || self.batch_wait > Duration::from_millis(100) {
            return Err("serving: deadline must be at least 10ms and batch_wait at most 100ms".into());
        }
        Ok(())
    }
}

/// The nodes that serve version `id`: the `replicas` live nodes (this one
/// included, unless it drains) ranked first for it, as blob homes are ranked.
pub async fn replica_set(mesh: &crate::mesh::Mesh, id: &ContentId) -> Vec<libp2p::PeerId> {
    crate::replication::homes(id, &mesh.placement_view().await, mesh.serving.config.replicas)
}

/// [`replica_set`] over the peers as `seen` (a recent read, for forwarding).
pub fn replica_set_seen(mesh: &crate::mesh::Mesh, id: &ContentId, seen: &peers::PeersSeen) -> Vec<libp2p::PeerId> {
    let view = seen.placement_view(mesh.net.local_peer_id(), mesh.leaving.is_set());
    crate::replication::homes(id, &view, mesh.serving.config.replicas)
}

/// What serving needs on a node, shared by the HTTP handlers and the
/// service answering peers.
#[derive(Clone)]
pub struct Serving {
    pub config: Config,
    pub inference: Inference,
    pub admission: admission::Admission,
    pub models: ModelCache,
    pub demand: Demand,
    /// Recent forwarded latencies per version, for hedging.
    pub hedging: std::sync::Arc<hedge::Hedging>,
    /// Accelerators that may run loaded models' networks (none by default).
    pub bridges: crate::bridge::Bridges,
    /// How many served models this node is a loaded replica of, as the
    /// keeper last counted: its share of serving, in adverts.
    pub replicas: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// The live peers and their queue depths, as forwarding reads them.
    pub peers: peers::PeerView,
}

impl Serving {
    /// Starts the inference queue (inside a Tokio runtime).
    pub fn start(config: Config, compute: crate::compute::Compute, metrics: crate::metrics::Metrics) -> Self {
        let inference = Inference::start(config.queue, config.max_batch_rows, config.batch_wait, compute, metrics);
        Self {
            admission: admission::Admission::new(config.max_in_flight, config.max_in_flight_mib),
            config,
            inference,
            models: ModelCache::default(),
            demand: Demand::default(),
            hedging: Default::default(),
            bridges: Default::default(),
            replicas: Default::default(),
            peers: Default::default(),
        }
    }

    /// Offers the versions this node loads to `bridges`.
    pub fn with_bridges(mut self, bridges: crate::bridge::Bridges) -> Self {
        self.bridges = bridges;
        self
    }
}

/// Requests this node forwarded per version in the current window: a version
/// asked for often enough here becomes worth a local copy.
#[derive(Clone, Default)]
pub struct Demand {
    counts: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<ContentId, (std::time::Instant, u32)>>>,
}

impl Demand {
    /// Counts one forwarded request for `id`; true once, when the count
    /// within the window reaches `threshold`.
    pub fn forwarded(&self, id: ContentId, threshold: u32) -> bool {
        if threshold == 0 {
            return false;
        }
        let now = std::time::Instant::now();
        let mut counts = self.counts.lock().expect("demand lock");
        counts.retain(|_, (since, _)| now.duration_since(*since) < HOT_WINDOW);
        let (_, count) = counts.entry(id).or_insert((now, 0));
        *count += 1;
        *count == threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_hot_once_its_count_reaches_the_threshold() {
        let demand = Demand::default();
        let (a, b) = (ContentId::of(b"a"), ContentId::of(b"b"));
        assert!(!demand.forwarded(a, 0), "0 turns it off");
        let hot: Vec<bool> = (0..5).map(|_| demand.forwarded(a, 3)).collect();
        assert_eq!(hot, [false, false, true, false, false]);
        assert!(!demand.forwarded(b, 3));
    }
}
