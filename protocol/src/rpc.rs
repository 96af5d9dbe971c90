//! Request-response messages between nodes, on [`crate::names::RPC_PROTOCOL`].
//!
//! Append variants only: their order is the wire format.

use serde::{Deserialize, Serialize};

use crate::advert::Advert;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Ask a peer for its current advert (sent on first connection, so a new
    /// peer is known with its hardware before the next gossip round).
    GetAdvert,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Advert(Box<Advert>),
    Error(RpcError),
}

/// A request the peer understood but could not serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct RpcError {
    pub kind: RpcErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcErrorKind {
    /// The peer is not ready to answer yet (e.g. still starting).
    Unavailable,
    /// The request was well-formed but the peer refused it.
    Refused,
}
