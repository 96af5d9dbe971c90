//! mass-protocol: what Mass nodes and clients say to each other.
//!
//! Nothing in this crate does I/O. It defines the values that cross a process
//! boundary and the one place where they are turned into bytes.
//!
//! # Layout
//! - [`codec`]: the only encoder/decoder (bincode 2 behind a size limit).
//! - [`content_id`]: [`ContentId`], the blake3 name of every stored artifact.
//! - [`hardware`]: what a node has: CPU, memory, measured GEMM speed, GPUs, bridges.
//! - [`advert`]: the periodic gossip a node publishes about itself ([`Advert`], [`Load`]).
//! - [`rpc`]: request-response messages between nodes.
//! - [`api`]: JSON bodies of the HTTP API under `/v1`.
//! - [`names`]: protocol names, gossip topics and the protocol version.
//! - [`chunking`]: cutting blobs into independently verifiable chunks.
//! - [`storage`]: blob layouts and refs.
//! - [`dataset`]: dataset manifests, schemas, shards, statistics and splits.
//! - [`shard_column`]: a shard column's numbers in their narrowest exact layout.
//! - [`features`]: feature pipeline specs, mergeable statistics, fitted pipelines.
//! - [`jobs`]: training job specs, checkpointed job records, model manifests.
//! - [`studies`]: hyperparameter studies: spaces, strategies, journals.
//! - [`serving`]: prediction requests and answers, model versions.
//!
//! # Wire rules
//! With bincode the order of enum variants and struct fields *is* the wire
//! format: append variants, never reorder, and leave retired slots in place.
//! `tests/golden.rs`-style tests beside each module pin the bytes.
//!
//! ```
//! use mass_protocol::{codec, rpc::Request};
//! let bytes = codec::encode(&Request::GetAdvert).unwrap();
//! let back: Request = codec::decode(&bytes, codec::MAX_RPC_MESSAGE).unwrap();
//! assert_eq!(back, Request::GetAdvert);
//! ```

pub mod advert;
pub mod api;
pub mod chunking;
pub mod codec;
pub mod content_id;
pub mod dataset;
pub mod evaluation;
pub mod features;
pub mod hardware;
pub mod jobs;
pub mod names;
pub mod npy;
pub mod rpc;
pub mod serving;
pub mod shard_column;
pub mod storage;
pub mod studies;

pub use advert::{Advert, Load, QueueDepth};
pub use content_id::ContentId;
pub use hardware::{BridgeInfo, BridgeStatus, CpuInfo, GpuAdapter, GpuDeviceType, GpuLimits, HardwareProfile};
