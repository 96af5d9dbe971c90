//! JSON bodies of the HTTP API (`/v1/...`). Shared by the node and the SDK.

use serde::{Deserialize, Serialize};

use crate::{advert::Load, hardware::HardwareProfile};

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    pub status: String,
    pub peer_id: String,
    pub version: String,
    pub protocol_version: u16,
}

/// Whether a peer is believed alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    Up,
    Down,
    /// Alive but leaving (`mass node drain`, SIGTERM): no longer a home of
    /// blobs, a serving replica, a trainer or a driver.
    Draining,
}

impl PeerState {
    /// The state as `mass peers` and the API spell it.
    pub fn name(self) -> &'static str {
        match self {
            PeerState::Up => "up",
            PeerState::Down => "down",
            PeerState::Draining => "draining",
        }
    }
}

/// Where a node is in leaving the mesh (`GET /v1/node/drain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DrainState {
    /// Not leaving.
    Serving,
    /// Handing its blobs, replicas and jobs to the other nodes.
    Draining,
    /// Done handing off (or gave up, see `waiting_for`); waiting for its
    /// peers to route around it before it exits.
    Leaving,
    /// The node exits.
    Drained,
}

impl DrainState {
    /// The state as the API and `mass node drain` spell it.
    pub fn name(self) -> &'static str {
        match self {
            DrainState::Serving => "serving",
            DrainState::Draining => "draining",
            DrainState::Leaving => "leaving",
            DrainState::Drained => "drained",
        }
    }
}

/// `GET /v1/node/drain` and the answer to `POST /v1/node/drain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrainStatus {
    pub state: DrainState,
    /// Blobs this node holds.
    pub blobs: usize,
    /// Of those, the ones every new home has shown it holds.
    pub handed_off: usize,
    /// Other nodes up, which can take what this node holds.
    pub peers_up: usize,
    /// Pieces of work (training, evaluation) still running here.
    pub working: usize,
    /// Jobs and studies this node still drives.
    pub driving: usize,
    /// What the drain waits for now, in words; `None` once drained.
    pub waiting_for: Option<String>,
    /// Milliseconds since draining began (0 while serving).
    pub elapsed_ms: u64,
}

/// One row of `GET /v1/peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeerView {
    pub peer_id: String,
    /// True for the node answering the request.
    #[serde(rename = "self")]
    pub is_self: bool,
    pub addresses: Vec<String>,
    pub http_addr: Option<String>,
    pub state: PeerState,
    /// Wall-clock time the peer was last heard from, in Unix milliseconds.
    pub last_seen: u64,
    /// Unknown until the peer's first advert arrives.
    #[schema(value_type = Option<Object>)]
    pub hardware: Option<HardwareProfile>,
    #[schema(value_type = Option<Object>)]
    pub load: Option<Load>,
}

/// What an API token may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read the mesh's state: peers, datasets, jobs, models, blobs.
    Read,
    /// Read, and ask for predictions.
    Predict,
    /// Predict, and change things: upload data, train, promote, compose.
    Write,
    /// Write, and destroy or override: unpin, collect garbage, set raw refs.
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Role::Read),
            "predict" => Some(Role::Predict),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Predict => "predict",
            Role::Write => "write",
            Role::Admin => "admin",
        })
    }
}

/// Body of every HTTP error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// Written by a node to `<data dir>/node.json` once it serves: where to reach
/// it. Launchers (the SDK's local mesh, tests) read it instead of guessing ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEndpoints {
    pub peer_id: String,
    /// HTTP API base URL, e.g. "http://127.0.0.1:8080".
    pub http_url: String,
    /// gRPC prediction service URL, when the node serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_url: Option<String>,
    /// libp2p listen addresses, dialable by other nodes.
    pub listen_addrs: Vec<String>,
    pub pid: u32,
}

/// File name of [`NodeEndpoints`] inside a node's data dir.
pub const ENDPOINTS_FILE: &str = "node.json";

/// A stored blob: answer of `PUT /v1/blobs`, rows of `GET /v1/blobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlobInfo {
    pub id: crate::ContentId,
    pub size: u64,
}

/// The current version of a ref (`GET /v1/refs/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefView {
    pub name: String,
    pub version: u64,
    pub target: crate::ContentId,
    /// Peer id of the node that wrote this version.
    pub origin: String,
    /// Unix milliseconds.
    pub set_at: u64,
}

/// Body of `PUT /v1/refs/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRef {
    pub target: String,
}

/// Body of `POST /v1/refs/{name}/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    pub version: u64,
}

/// Body of `POST /v1/datasets/{name}/pipelines`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FitPipeline {
    /// The pipeline's name; it is stored as `pipeline/<dataset>/<name>`.
    pub name: String,
    /// The pipeline spec, as a job's `pipeline`; default: every field's default.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub spec: crate::features::PipelineSpec,
}

/// Answer of `POST /v1/datasets/{name}/pipelines`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedPipelineView {
    pub id: crate::ContentId,
    pub version: u64,
    pub pipeline: crate::features::FittedPipeline,
    /// For each shard, the peer that computed its statistics.
    pub summarized_by: Vec<String>,
}
