//! What can go wrong talking to a mesh.

/// Why an SDK call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no node URL given")]
    NoNodes,
    #[error("'{url}' is not a node URL ({reason}); expected something like http://127.0.0.1:8080")]
    InvalidUrl { url: String, reason: String },
    #[error("no node answered: {}", attempts.join("; "))]
    Unreachable { attempts: Vec<String> },
    #[error("{url} answered {status}: {message}")]
    Api { url: String, status: u16, message: String },
    #[error("{url} sent a response this client cannot read: {reason}")]
    Decode { url: String, reason: String },
    #[error("cannot start a local node: {0}")]
    Launch(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {reason}")]
    Io { what: String, reason: String },
}
