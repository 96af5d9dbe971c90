//! mass-sdk: the client for a Mass mesh.
//!
//! Give [`Client`] one or more node URLs; every call goes to the node that
//! last answered and moves on to the next one when a node is unreachable.
//! [`local`] starts a mesh of `mass` processes on this machine, for examples,
//! tests and trying Mass out.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mass_sdk::Error> {
//! let client = mass_sdk::Client::new(["http://127.0.0.1:8080", "http://127.0.0.1:8081"])?;
//! for peer in client.peers().await? {
//!     println!("{} {:?}", peer.peer_id, peer.state);
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`client`]: [`Client`] and its failover.
//! - [`error`]: [`Error`], saying which node failed and how.
//! - [`local`]: [`local::LocalNode`], a `mass node` process this program owns.

pub mod client;
pub mod error;
pub mod local;

pub use client::{Client, IngestRequest};
pub use error::Error;
pub use mass_protocol::api;
