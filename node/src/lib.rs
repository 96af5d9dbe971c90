//! mass-node: the Mass daemon and the `mass` command line.
//!
//! A node is an actix system. One tokio task owns the libp2p Swarm
//! ([`net`]); actors own everything else and talk to it through a
//! [`net::NetClient`]. There is no coordinator: every node runs the same code
//! and derives the same answers from the same membership view.
//!
//! # Layout
//! - [`node`]: start-up and shutdown of a whole node ([`node::run`]).
//! - [`compute`]: the pool all CPU-heavy work runs on, with admission.
//! - [`config`]: TOML file plus CLI overrides, validated.
//! - [`net`]: the Swarm, its transport (TCP, pnet, Noise, Yamux), keys, codec.
//! - [`membership`]: the peer table (pure) and its actor.
//! - [`hardware`]: detection, GEMM measurement, load sampling, the advertiser.
//! - [`bridge`]: accelerators behind a bridge process (protocol, the
//!   reference bridge, probing, placement, fallback to the CPU).
//! - [`http`]: the HTTP API.
//! - [`metrics`]: Prometheus counters.
//! - [`datasets`]: CSV ingest, validation, sharding and splits.
//! - [`storage`]: blobs and refs in RocksDB, behind the storage actor.
//! - [`placement`]: weighted rendezvous hashing (pure).
//! - [`replication`]: fetching blobs from peers, keeping k copies alive.
//! - [`drain`]: leaving the mesh with everything handed off first.
//! - [`service`]: answers to peers' requests and ref gossip.
//! - [`shard_work`]: which node computes each piece of per-shard work (pure).
//! - [`shared_refs`]: ref writes held by k nodes, reads that ask peers.
//! - [`jobs`]: training jobs, driven by the top-ranked peer, checkpointed.
//! - [`serving`]: predictions from any node, model versions, replicas.
//! - [`mesh`]: the handle background work uses to reach storage and peers.
//! - [`auth`]: API tokens and their roles.
//! - [`cli`]: the `mass` subcommands.
//! - `fuzz`: fuzz targets for every decoder of outside input (the node's
//!   tests and the `fuzzing` feature only; see `fuzz/README.md`).

pub mod auth;
pub mod bridge;
pub mod cli;
pub mod compute;
pub mod config;
pub mod datasets;
pub mod drain;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod grpc;
pub mod hardware;
pub mod http;
pub mod jobs;
pub mod membership;
pub mod mesh;
pub mod metrics;
pub mod net;
pub mod node;
pub mod placement;
pub mod replication;
pub mod service;
pub mod serving;
pub mod shard_work;
pub mod shared_refs;
pub mod storage;
pub mod studies;
