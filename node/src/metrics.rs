//! Prometheus metrics of a node, served at `GET /metrics`.
//!
//! The handles are cheap clones of atomics; every actor and the network task
//! keeps its own clone and only ever adds to it.
//!
//! Units follow Prometheus conventions: durations in seconds
//! (`_seconds`), sizes in bytes (`_bytes`), counters end in `_total` (the
//! text format adds it). Gauges of what a node holds or runs now are set
//! where that changes (the compute pool, the job watchers) or, when they
//! are cheap to read, when `/metrics` is scraped (blobs held, the inference
//! queue).

use std::{fmt::Write as _, sync::Arc};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// The wire protocols counted separately.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Protocol {
    /// gossipsub adverts.
    Advert,
    /// node-to-node request-response.
    Rpc,
    /// forwarded predictions on long-lived streams.
    Lane,
    /// gossipsub ref updates.
    Ref,
    /// gossipsub training progress.
    Progress,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: Protocol,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum PeerStateLabel {
    Up,
    Down,
}

/// Label values are lowercase, as Prometheus convention has them.
impl EncodeLabelValue for Protocol {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        encoder.write_str(match self {
            Protocol::Advert => "advert",
            Protocol::Rpc => "rpc",
            Protocol::Lane => "lane",
            Protocol::Ref => "ref",
            Protocol::Progress => "progress",
        })
    }
}

impl EncodeLabelValue for PeerStateLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        encoder.write_str(match self {
            PeerStateLabel::Up => "up",
            PeerStateLabel::Down => "down",
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: PeerStateLabel,
}

/// All counters and gauges of one node.
#[derive(Debug, Clone)]
pub struct Metrics {
    messages_in: Family<ProtocolLabels, Counter>,
    messages_out: Family<ProtocolLabels, Counter>,
    bytes_in: Family<ProtocolLabels, Counter>,
    bytes_out: Family<ProtocolLabels, Counter>,
    decode_failures: Family<ProtocolLabels, Counter>,
    peers: Family<StateLabels, Gauge>,
    dropped_events: Counter,
    failed_handshakes: Counter,
    bytes_stored: Counter,
    bytes_replicated: Counter,
    bytes_repaired: Counter,
    integrity_failures: Counter,
    auth_refusals: Family<StatusLabels, Counter>,
    refs_refused: Counter,
    connections_denied: Counter,
    requests_refused: Counter,
    predictions_refused: Counter,
    driving: Family<KindLabels, Gauge>,
    dht_refused: Family<ReasonLabels, Counter>,
    dht_stored: Counter,
    possession_failures: Counter,
    shards_judged: Counter,
    http_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    predict_latency: Family<ModelLabels, Histogram, fn() -> Histogram>,
    forwarded: Counter,
    hedged: Counter,
    inference_queue: Gauge,
    batch_rows: Histogram,
    batch_requests: Histogram,
    jobs: Family<RecordStateLabels, Gauge>,
    studies: Family<RecordStateLabels, Gauge>,
    scorings: Family<RecordStateLabels, Gauge>,
    compute_tasks: Family<ComputeLabels, Gauge>,
    compute_done: Family<KindLabels, Counter>,
    compute_refused: Family<KindLabels, Counter>,
    blobs: Family<KindLabels, Gauge>,
    blob_bytes: Family<KindLabels, Gauge>,
}

/// The states of a job record (`JobState`), as labels.
pub const JOB_STATES: [&str; 5] = ["pending", "running", "completed", "failed", "cancelled"];
/// The states of a study record (`StudyState`), as labels.
pub const STUDY_STATES: [&str; 4] = ["running", "completed", "failed", "cancelled"];
/// The states of a scoring job's record (`ScoringState`), as labels.
pub const SCORING_STATES: [&str; 3] = ["running", "completed", "failed"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordStateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComputeLabels {
    kind: &'static str,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

/// Latency buckets in seconds: 100 µs doubling to about 6.5 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-4, 2.0, 17))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

impl Metrics {
    /// Creates the metrics and the registry that exposes them.
    pub fn new() -> (Self, Arc<Registry>) {
        let metrics = Self {
            messages_in: Family::default(),
            messages_out: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            decode_failures: Family::default(),
            peers: Family::default(),
            dropped_events: Counter::default(),
            failed_handshakes: Counter::default(),
            bytes_stored: Counter::default(),
            bytes_replicated: Counter::default(),
            bytes_repaired: Counter::default(),
            integrity_failures: Counter::default(),
            auth_refusals: Family::default(),
            refs_refused: Counter::default(),
            connections_denied: Counter::default(),
            requests_refused: Counter::default(),
            predictions_refused: Counter::default(),
            driving: Family::default(),
            dht_refused: Family::default(),
            dht_stored: Counter::default(),
            possession_failures: Counter::default(),
            shards_judged: Counter::default(),
            http_latency: Family::new_with_constructor(latency_histogram),
            predict_latency: Family::new_with_constructor(latency_histogram),
            forwarded: Counter::default(),
            hedged: Counter::default(),
            inference_queue: Gauge::default(),
            batch_rows: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            batch_requests: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            jobs: Family::default(),
            studies: Family::default(),
            scorings: Family::default(),
            compute_tasks: Family::default(),
            compute_done: Family::default(),
            compute_refused: Family::default(),
            blobs: Family::default(),
            blob_bytes: Family::default(),
        };
        let mut registry = Registry::with_prefix("mass");
        registry.register("messages_in", "Messages received, by protocol", metrics.messages_in.clone());
        registry.register("messages_out", "Messages sent, by protocol", metrics.messages_out.clone());
        registry.register("bytes_in", "Payload bytes received, by protocol", metrics.bytes_in.clone());
        registry.register("bytes_out", "Payload bytes sent, by protocol", metrics.bytes_out.clone());
        registry.register(
            "decode_failures",
            "Messages from peers dropped as malformed or oversized, by protocol",
            metrics.decode_failures.clone(),
        );
        registry.register("peers", "Peers in the membership table, by state", metrics.peers.clone());
        registry.register(
            "dropped_events",
            "Network events dropped because an actor's mailbox was full",
            metrics.dropped_events.clone(),
        );
        registry.register(
            "failed_handshakes",
            "Incoming or outgoing connections that failed before the peer was authenticated (wrong network key, not a Mass node)",
            metrics.failed_handshakes.clone(),
        );
        registry.register(
            "stored_bytes",
            "Bytes of blobs committed to this node's store",
            metrics.bytes_stored.clone(),
        );
        registry.register(
            "replicated_bytes",
            "Bytes of blobs this node fetched from peers, as a home or to serve a read",
            metrics.bytes_replicated.clone(),
        );
        registry.register(
            "repaired_bytes",
            "Bytes of blobs this node found missing at a home and had it re-replicate",
            metrics.bytes_repaired.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests by method and route pattern, from arrival to the response's head",
            metrics.http_latency.clone(),
        );
        registry.register(
            "predict_duration_seconds",
            "Predictions by model name, resolution and any forwarding included",
            metrics.predict_latency.clone(),
        );
        registry.register(
            "forwarded_predictions",
            "Predictions this node forwarded to a replica (first tries)",
            metrics.forwarded.clone(),
        );
        registry.register(
            "inference_queue_requests",
            "Prediction requests waiting in this node's inference queue, when scraped",
            metrics.inference_queue.clone(),
        );
        registry.register(
            "inference_batch_rows",
            "Rows in each inference batch this node ran",
            metrics.batch_rows.clone(),
        );
        registry.register(
            "inference_batch_requests",
            "Requests batched into each inference batch this node ran",
            metrics.batch_requests.clone(),
        );
        registry.register(
            "hedged_predictions",
            "Forwarded predictions also sent to a second replica because the first was slower than its recent p95",
            metrics.hedged.clone(),
        );
        registry.register(
            "shards_judged",
            "Shards this node judged a model on (its test or fold rows, for its own job or a peer's)",
            metrics.shards_judged.clone(),
        );
        registry.register(
            "integrity_failures",
            "Chunks or layouts that did not match their hash, read from disk or received from a peer",
            metrics.integrity_failures.clone(),
        );
        registry.register(
            "auth_refusals",
            "HTTP requests refused for a missing or unknown token (401) or a role too small (403)",
            metrics.auth_refusals.clone(),
        );
        registry.register(
            "refs_refused",
            "Ref entries from peers refused: unsigned, signed by another than their origin, or out of bounds",
            metrics.refs_refused.clone(),
        );
        registry.register(
            "connections_denied",
            "Connections refused by a connection limit (total, per peer, pending)",
            metrics.connections_denied.clone(),
        );
        registry.register(
            "requests_refused",
            "Peer requests answered busy: the node was full or the peer had its share in progress",
            metrics.requests_refused.clone(),
        );
        registry.register(
            "predictions_refused",
            "Predict requests answered 503 at once: admission bounds or the inference queue were full",
            metrics.predictions_refused.clone(),
        );
        registry.register(
            "driving",
            "Jobs, studies and scoring jobs this node drives now, by kind",
            metrics.driving.clone(),
        );
        for kind in ["job", "study"] {
            metrics.driving.get_or_create(&KindLabels { kind }).set(0);
        }
        registry.register(
            "dht_refused",
            "DHT records and provider announcements from peers refused, by reason",
            metrics.dht_refused.clone(),
        );
        registry.register(
            "dht_stored",
            "Provider announcements from peers stored in this node's part of the DHT",
            metrics.dht_stored.clone(),
        );
        registry.register(
            "possession_failures",
            "Homes that claimed a blob but could not show sampled chunks of it when this node checked before dropping its copy",
            metrics.possession_failures.clone(),
        );
        registry.register(
            "jobs",
            "Training jobs whose records this node knows, by state (as last read; those this node drives count as running)",
            metrics.jobs.clone(),
        );
        registry.register(
            "studies",
            "Hyperparameter studies whose records this node knows, by state (as last read; those this node drives count as running)",
            metrics.studies.clone(),
        );
        for state in JOB_STATES {
            metrics.jobs.get_or_create(&RecordStateLabels { state }).set(0);
        }
        registry.register(
            "scorings",
            "Batch-prediction jobs whose records this node knows, by state (as last read; those this node drives count as running)",
            metrics.scorings.clone(),
        );
        for state in STUDY_STATES {
            metrics.studies.get_or_create(&RecordStateLabels { state }).set(0);
        }
        for state in SCORING_STATES {
            metrics.scorings.get_or_create(&RecordStateLabels { state }).set(0);
        }
        registry.register(
            "compute_tasks",
            "Pieces of work in this node's compute pool, by kind (training, boosting, inference, statistics, evaluation) and state (running on a slot, waiting for one)",
            metrics.compute_tasks.clone(),
        );
        registry.register(
            "compute_finished",
            "Pieces of work this node's compute pool finished (or that panicked), by kind",
            metrics.compute_done.clone(),
        );
        registry.register(
            "compute_refused",
            "Pieces of work this node's compute pool refused at once as busy (every slot taken, the queue full), by kind",
            metrics.compute_refused.clone(),
        );
        registry.register(
            "blobs",
            "Blobs held in this node's store now, by kind (dataset, model, pipeline, checkpoint, prediction, other, unknown)",
            metrics.blobs.clone(),
        );
        registry.register(
            "blob_bytes",
            "Bytes of the blobs held in this node's store now (the sum of their sizes), by kind",
            metrics.blob_bytes.clone(),
        );
        for kind in mass_protocol::storage::BlobKind::ALL {
            metrics.set_blobs(kind.label(), 0, 0);
        }
        for reason in ["key_shape", "too_large", "kind", "full"] {
            let _ = metrics.dht_refused.get_or_create(&ReasonLabels { reason });
        }
        for status in [401, 403] {
            let _ = metrics.auth_refusals.get_or_create(&StatusLabels { status });
        }
        // Every series is visible from the first scrape, at zero.
        metrics.set_peers(0, 0);
        for protocol in [Protocol::Advert, Protocol::Rpc, Protocol::Lane, Protocol::Ref, Protocol::Progress] {
            let labels = ProtocolLabels { protocol };
            for family in [
                &metrics.messages_in,
                &metrics.messages_out,
                &metrics.bytes_in,
                &metrics.bytes_out,
                &metrics.decode_failures,
            ] {
                let _ = family.get_or_create(&labels);
            }
        }
        (metrics, Arc::new(registry))
    }

    pub fn ref_refused(&self) {
        self.refs_refused.inc();
    }

    pub fn connection_denied(&self) {
        self.connections_denied.inc();
    }

    pub fn request_refused(&self) {
        self.requests_refused.inc();
    }

    /// How many jobs or studies (`kind`) this node drives now.
    pub fn set_driving(&self, kind: &'static str, count: usize) {
        self.driving.get_or_create(&KindLabels { kind }).set(count as i64);
    }

    /// A predict request refused at once: the node was full.
    pub fn prediction_refused(&self) {
        self.predictions_refused.inc();
    }

    /// A peer's DHT record refused; `reason` is a [`crate::net::dht::Refusal`] label.
    pub fn dht_refused(&self, reason: &'static str) {
        self.dht_refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn dht_stored(&self) {
        self.dht_stored.inc();
    }

    /// An HTTP request answered, by method and matched route pattern.
    pub fn http_request(&self, method: &str, route: &str, seconds: f64) {
        // A client may send any method: unknown ones share one series.
        let method = match method {
            "GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH" => method,
            _ => "other",
        };
        let labels = RouteLabels { method: method.to_owned(), route: route.to_owned() };
        self.http_latency.get_or_create(&labels).observe(seconds);
    }

    /// A prediction of a registered model answered (or refused).
    pub fn prediction(&self, model: &str, seconds: f64) {
        self.predict_latency.get_or_create(&ModelLabels { model: model.to_owned() }).observe(seconds);
    }

    /// An inference batch of `rows` rows from `requests` requests.
    pub fn inference_batch(&self, rows: usize, requests: usize) {
        self.batch_rows.observe(rows as f64);
        self.batch_requests.observe(requests as f64);
    }

    pub fn set_inference_queue(&self, depth: usize) {
        self.inference_queue.set(depth as i64);
    }

    /// How many job (or study, `kind`) records are in each state; states
    /// not given are set to zero.
    pub fn set_record_states(&self, kind: &'static str, counts: &[(&'static str, usize)]) {
        let (family, states): (_, &[&'static str]) = match kind {
            "study" => (&self.studies, &STUDY_STATES),
            "scoring" => (&self.scorings, &SCORING_STATES),
            _ => (&self.jobs, &JOB_STATES),
        };
        for &state in states {
            let count = counts.iter().filter(|(s, _)| *s == state).map(|(_, n)| n).sum::<usize>();
            family.get_or_create(&RecordStateLabels { state }).set(count as i64);
        }
    }

    /// Makes a compute kind's series visible at zero.
    pub fn compute_kind(&self, kind: &'static str) {
        for state in ["running", "waiting"] {
            let _ = self.compute_tasks.get_or_create(&ComputeLabels { kind, state });
        }
        let _ = self.compute_done.get_or_create(&KindLabels { kind });
        let _ = self.compute_refused.get_or_create(&KindLabels { kind });
    }

    /// Work of `kind` entering (`delta` 1) or leaving (-1) `state` in the compute pool.
    pub fn compute_tasks(&self, kind: &'static str, state: &'static str, delta: i64) {
        self.compute_tasks.get_or_create(&ComputeLabels { kind, state }).inc_by(delta);
    }

    pub fn compute_task_done(&self, kind: &'static str) {
        self.compute_done.get_or_create(&KindLabels { kind }).inc();
    }

    pub fn compute_refused(&self, kind: &'static str) {
        self.compute_refused.get_or_create(&KindLabels { kind }).inc();
    }

    /// Blobs and their bytes held now, by kind label.
    pub fn set_blobs(&self, kind: &'static str, blobs: u64, bytes: u64) {
        self.blobs.get_or_create(&KindLabels { kind }).set(blobs as i64);
        self.blob_bytes.get_or_create(&KindLabels { kind }).set(bytes as i64);
    }

    pub fn forwarded(&self) {
        self.forwarded.inc();
    }

    pub fn hedged(&self) {
        self.hedged.inc();
    }

    /// A model judged on the rows of a shard held here.
    pub fn shard_judged(&self) {
        self.shards_judged.inc();
    }

    /// A home could not show a blob it claimed (see `replication::possession`).
    pub fn possession_failure(&self) {
        self.possession_failures.inc();
    }

    /// An HTTP request refused by the token check.
    pub fn auth_refused(&self, status: u16) {
        self.auth_refusals.get_or_create(&StatusLabels { status }).inc();
    }

    pub fn received(&self, protocol: Protocol, bytes: usize) {
        let labels = ProtocolLabels { protocol };
        self.messages_in.get_or_create(&labels).inc();
        self.bytes_in.get_or_create(&labels).inc_by(bytes as u64);
    }

    pub fn sent(&self, protocol: Protocol, bytes: usize) {
        let labels = ProtocolLabels { protocol };
        self.messages_out.get_or_create(&labels).inc();
        self.bytes_out.get_or_create(&labels).inc_by(bytes as u64);
    }

    pub fn decode_failure(&self, protocol: Protocol) {
        self.decode_failures.get_or_create(&ProtocolLabels { protocol }).inc();
    }

    pub fn decode_failures(&self, protocol: Protocol) -> u64 {
        self.decode_failures.get_or_create(&ProtocolLabels { protocol }).get()
    }

    pub fn set_peers(&self, up: usize, down: usize) {
        self.peers.get_or_create(&StateLabels { state: PeerStateLabel::Up }).set(up as i64);
        self.peers.get_or_create(&StateLabels { state: PeerStateLabel::Down }).set(down as i64);
    }

    pub fn dropped_event(&self) {
        self.dropped_events.inc();
    }

    pub fn failed_handshake(&self) {
        self.failed_handshakes.inc();
    }

    pub fn stored(&self, bytes: u64) {
        self.bytes_stored.inc_by(bytes);
    }

    pub fn replicated(&self, bytes: u64) {
        self.bytes_replicated.inc_by(bytes);
    }

    pub fn repaired(&self, bytes: u64) {
        self.bytes_repaired.inc_by(bytes);
    }

    pub fn integrity_failure(&self) {
        self.integrity_failures.inc();
    }
}

/// Renders the registry in the Prometheus/OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_up_in_the_text_format() {
        let (metrics, registry) = Metrics::new();
        metrics.received(Protocol::Advert, 120);
        metrics.decode_failure(Protocol::Rpc);
        let text = render(&registry);
        assert!(text.contains("mass_messages_in_total{protocol=\"advert\"} 1"), "{text}");
        assert!(text.contains("mass_bytes_in_total{protocol=\"advert\"} 120"), "{text}");
        assert!(text.contains("mass_decode_failures_total{protocol=\"rpc\"} 1"), "{text}");
        assert!(text.contains("mass_peers{state=\"up\"} 0"), "{text}");
    }
}
