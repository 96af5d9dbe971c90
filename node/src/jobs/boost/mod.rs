//! Boosted trees grown across the nodes that hold a dataset's shards.
//!
//! # Layout
//! - [`messages`]: what the driver, workers and owners say to each other.
//! - [`session`]: one node's rows and owned feature slice for one job.
//! - [`sessions`]: the jobs a node takes part in, and answering requests.
//! - [`driver`]: the rounds, from the driver's side.

pub mod driver;
pub mod messages;
pub mod session;
pub mod sessions;

pub use sessions::BoostSessions;
