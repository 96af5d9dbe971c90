//! Keeping k copies of every blob alive, with no coordinator.
//!
//! A blob's homes are the top-k live peers for its id by rendezvous hashing
//! over the membership view. Each node periodically walks the blobs it holds
//! and asks each home to hold a copy (`Replicate`); a home that lacks the blob
//! pulls it, chunk by verified chunk. A holder that is no longer a home drops
//! its copy once every home confirms one and shows chunks of it, picked at
//! random, that check against the blob's layout. The same loop therefore repairs
//! (a home went down, the next-ranked peer becomes a home) and migrates (a
//! joining peer outranks a holder). A draining node ([`crate::drain`])
//! leaves itself out of its view, so the same walks hand its blobs off.
//!
//! # Layout
//! - [`plan`]: the rule itself, pure: which homes to ask, which to check,
//!   when a copy may go. The whole-mesh simulation runs it too.
//! - [`fetch`]: pulling one blob from a list of candidate peers.
//! - [`queue`]: which fetches run, wait or are refused (bounded per peer).
//! - [`possession`]: checking that a home holds a blob before dropping a copy.
//! - [`actor`]: runs the plan's actions (the repair loop) and the requests
//!   that start fetches.

pub mod actor;
pub mod fetch;
pub mod plan;
pub mod possession;
pub mod queue;

pub use actor::{FetchBlob, GetHandoff, Handoff, PlaceNew, ReplicateFrom, ReplicationActor};
pub use fetch::FetchError;
pub use plan::homes;
