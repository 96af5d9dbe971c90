//! Deterministic simulations of many Mass nodes.
//!
//! Each simulation drives the node's own pure modules (no copies) over a
//! simulated network with delay and loss, takes all randomness from one seed,
//! and checks invariants after every step. A failing run prints its seed, so
//! it can be replayed exactly.
//!
//! # Layout
//! - [`membership`]: liveness detection of the peer table under message loss,
//!   crashes and restarts.
//! - [`placement`]: blob homes and repair over thousands of nodes, with the
//!   node's rendezvous ranking.
//! - [`replication`]: the whole mesh running the node's replication plan
//!   under delay, loss, partitions, crashes, joins and lost disks (the
//!   default binary, `mesh`).

pub mod jobs;
pub mod membership;
pub mod placement;
pub mod replication;
