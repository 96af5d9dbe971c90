//! Pulling a blob from peers: the layout is checked against the id before any
//! chunk is trusted, and each chunk against its hash as it arrives. A peer that
//! serves a wrong chunk is dropped at that chunk and the fetch resumes from the
//! next candidate at the same chunk.

use std::time::Duration;

use futures::StreamExt;
use libp2p::PeerId;
use mass_protocol::{
    ContentId,
    rpc::{Request, Response, RpcErrorKind},
    storage::{BlobKind, BlobMeta},
};
use tracing::warn;

use crate::{
    metrics::Metrics,
    net::NetClient,
    storage::{Storage, StoreError},
};

/// Chunk requests in flight to one peer (at most this many MiB buffered).
pub const PIPELINE: usize = 4;
/// Times a request answered "busy" is sent again to the same peer before
/// moving on: a holder past its per-peer share frees a slot in moments.
const BUSY_RETRIES: u32 = 4;
/// Wait before the first retry; doubled each time (100 to 800 ms).
const BUSY_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("no peer could supply blob {id}: {}", if failures.is_empty() { "no peer holds it".to_owned() } else { failures.join("; ") })]
    Unavailable { id: ContentId, failures: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fetches `id` into local storage from the first candidates that can supply it.
pub async fn fetch(
    net: &NetClient,
    storage: &Storage,
    metrics: &Metrics,
    id: ContentId,
    candidates: &[PeerId],
) -> Result<BlobMeta, FetchError> {
    if let Some(meta) = storage.meta(id).await? {
        return Ok(meta);
    }
    let mut failures = Vec::new();
    let mut layout: Option<BlobMeta> = None;
    let mut kind = BlobKind::Unknown;
    let mut next_chunk = 0usize;
    for &peer in candidates {
        if layout.is_none() {
            match patiently(net, peer, Request::GetBlobMeta { id }).await {
                Ok(Response::BlobMeta(Some(meta))) if meta.id == id && meta.is_consistent() => {
                    layout = Some(meta);
                    kind = kind_at(net, peer, id).await;
                }
                Ok(Response::BlobMeta(Some(_))) => {
                    metrics.integrity_failure();
                    warn!(%peer, %id, "peer sent a layout that does not hash to the id");
                    failures.push(format!("{peer} sent a false layout"));
                    continue;
                }
                Ok(Response::BlobMeta(None)) => continue,
                Ok(other) => {
                    failures.push(format!("{peer}: {}", describe(&other)));
                    continue;
                }
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            }
        }
        let meta = layout.as_ref().expect("set above");
        // Keep a few chunk requests in flight to hide the round trip; they are
        // still checked and stored strictly in order.
        let mut answers = futures::stream::iter(next_chunk..meta.chunks.len())
            .map(|index| {
                let net = net.clone();
                async move { patiently(&net, peer, Request::GetChunk { id, index: index as u32 }).await }
            })
            .buffered(PIPELINE);
        while let Some(answer) = answers.next().await {
            let bytes = match answer {
                Ok(Response::Chunk(Some(bytes))) => bytes,
                Ok(other) => {
                    failures.push(format!("{peer}: chunk {next_chunk}: {}", describe(&other)));
                    break;
                }
                Err(e) => {
                    failures.push(format!("chunk {next_chunk}: {e}"));
                    break;
                }
            };
            // Storing computes the chunk's hash on a storage thread; a wrong
            // chunk is left unreferenced and removed by the next GC.
            let good = if meta.chunks.len() == 1 {
                bytes.len() as u64 == meta.size && storage.put_small(bytes, kind).await?.id == id
            } else if bytes.len() == meta.chunk_len(next_chunk) {
                storage.put_chunk(next_chunk as u64, bytes).await? == meta.chunks[next_chunk]
            } else {
                false
            };
            if !good {
                metrics.integrity_failure();
                warn!(%peer, %id, chunk = next_chunk, "peer served bytes that do not match the hash; trying another holder");
                failures.push(format!("{peer} served wrong bytes for chunk {next_chunk}"));
                break;
            }
            next_chunk += 1;
        }
        if next_chunk == meta.chunks.len() {
            if meta.chunks.len() == 1 {
                return Ok(meta.clone());
            }
            return Ok(storage.commit(meta.size, meta.chunks.clone(), Some(id), kind).await?);
        }
    }
    Err(FetchError::Unavailable { id, failures })
}

/// What `peer`, which holds `id`, says the blob is: a label for this node's
/// accounting, trusted for nothing else. Unknown when the peer does not say
/// (a node built before kinds were kept cannot decode the question).
async fn kind_at(net: &NetClient, peer: PeerId, id: ContentId) -> BlobKind {
    match patiently(net, peer, Request::GetBlobKind { id }).await {
        Ok(Response::BlobKind(Some(kind))) => kind,
        _ => BlobKind::Unknown,
    }
}

/// Sends `request`, again after a pause while the peer answers that it is
/// busy (over its share of inbound requests), at most [`BUSY_RETRIES`] times.
pub(super) async fn patiently(
    net: &NetClient,
    peer: PeerId,
    request: Request,
) -> Result<Response, crate::net::NetError> {
    let mut backoff = BUSY_BACKOFF;
    for _ in 0..BUSY_RETRIES {
        match net.request(peer, request.clone()).await? {
            Response::Error(e) if e.kind == RpcErrorKind::Overloaded => {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            answer => return Ok(answer),
        }
    }
    net.request(peer, request).await
}

fn describe(response: &Response) -> String {
    match response {
        Response::Error(e) => e.to_string(),
        Response::BlobMeta(None) | Response::Chunk(None) => "does not hold it".into(),
        other => format!("unexpected answer {:?}", std::mem::discriminant(other)),
    }
}
