//! Long polls: a record answered when it next changes on this node. A
//! client following a job sees its end when it comes, where polling saw it
//! up to a pause later.

use std::{future::Future, time::Duration};

use actix_web::{HttpResponse, http::StatusCode};

use super::error;
use crate::mesh::Mesh;

/// Longest a `?wait_ms=` may wait.
pub const MAX_WAIT_MS: u64 = 30_000;

/// The `?wait_ms=` of a record's `GET`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    wait_ms: Option<u64>,
}

impl WaitQuery {
    /// How long to wait, or the 400 naming the limit.
    pub fn wait(&self) -> Result<Duration, HttpResponse> {
        match self.wait_ms.unwrap_or(0) {
            ms if ms > MAX_WAIT_MS => {
                Err(error(StatusCode::BAD_REQUEST, format!("wait_ms: {ms}; at most {MAX_WAIT_MS}")))
            }
            ms => Ok(Duration::from_millis(ms)),
        }
    }
}

/// What `read` gives, at once when it is missing or `over`; else once one
/// of the refs `names` is next written on this node (a driver's
/// checkpoints reach every node as they are written), or after `wait`.
pub async fn after_change<T, Read, Reading>(
    mesh: &Mesh,
    names: &[String],
    wait: Duration,
    read: Read,
    over: impl Fn(&T) -> bool,
) -> Result<Option<T>, String>
where
    Read: Fn() -> Reading,
    Reading: Future<Output = Result<Option<T>, String>>,
{
    // Listening before the first read: a write between the two is not missed.
    let mut writes = mesh.storage.ref_writes();
    let first = read().await?;
    if wait.is_zero() || first.as_ref().is_none_or(&over) {
        return Ok(first);
    }
    let changed = async {
        loop {
            match writes.recv().await {
                Ok(written) if names.contains(&written) => return,
                Ok(_) => {}
                // Missed writes, or the store stopped: read again now.
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(wait, changed).await;
    read().await
}
