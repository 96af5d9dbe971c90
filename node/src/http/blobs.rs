//! `/v1/blobs`: streamed upload and download, listing, unpinning, GC.

use actix_web::{HttpResponse, http::StatusCode, web};
use futures::StreamExt;
use mass_protocol::{ContentId, api::BlobInfo, storage::BlobMeta};
use serde::Deserialize;

use super::openapi::schemas as doc;
use super::{State, error};
use crate::{
    replication::{FetchBlob, FetchError, PlaceNew},
    storage::{BlobWriter, StoreError, store::pin_name},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutQuery {
    /// Keep the blob until it is unpinned (default), rather than only while a
    /// ref points at it.
    #[serde(default = "yes")]
    pin: bool,
}

fn yes() -> bool {
    true
}

fn parse_id(text: &str) -> Result<ContentId, HttpResponse> {
    text.parse()
        .map_err(|e: mass_protocol::content_id::ParseContentIdError| error(StatusCode::BAD_REQUEST, e.to_string()))
}

pub(super) fn store_error(e: StoreError) -> HttpResponse {
    let status = match e {
        StoreError::Forbidden(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

/// Writes a ref on this node and gossips it.
pub(super) async fn write_ref(
    state: &State,
    name: String,
    target: Option<ContentId>,
) -> Result<mass_protocol::storage::RefEntry, StoreError> {
    state.mesh().write_ref(name, target).await
}

/// `PUT /v1/blobs`: the body, streamed, becomes a blob; answered once durable.
#[utoipa::path(
    put,
    path = "/v1/blobs",
    operation_id = "blobs_put",
    tag = "blobs",
    summary = "Store a blob (raw body); answers its content id",
    params(
        ("pin" = Option<bool>, Query),
    ),
    request_body(content = doc::Binary, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "OK", body = doc::BlobInfo, content_type = "application/json"),
        (status = 400, description = "bad query", body = doc::ErrorBody),
        (status = 413, description = "body over this node's upload limit (http.max_upload)", body = doc::ErrorBody),
    ),
)]
pub async fn put(state: web::Data<State>, query: web::Query<PutQuery>, mut body: web::Payload) -> HttpResponse {
    let mut writer = BlobWriter::new(state.mesh.storage.clone(), mass_protocol::storage::BlobKind::Other);
    while let Some(piece) = body.next().await {
        let piece = match piece {
            Ok(piece) => piece,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("upload interrupted after {} bytes: {e}", writer.size()),
                );
            }
        };
        if writer.size() + piece.len() as u64 > state.max_upload {
            // The staged chunks are unreferenced: GC removes them.
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body: over this node's upload limit of {} bytes (http.max_upload)", state.max_upload),
            );
        }
        if let Err(e) = writer.write(&piece).await {
            return store_error(e);
        }
    }
    let meta = match writer.finish(None).await {
        Ok(meta) => meta,
        Err(e) => return store_error(e),
    };
    if query.pin {
        // Pinning twice is one pin: only write when not already pinned.
        let pinned = match state.mesh.storage.get_ref(pin_name(&meta.id)).await {
            Ok(record) => record.and_then(|r| r.current().and_then(|c| c.target)).is_some(),
            Err(e) => return store_error(e),
        };
        if !pinned && let Err(e) = write_ref(&state, pin_name(&meta.id), Some(meta.id)).await {
            return store_error(e);
        }
    }
    state.mesh.replication.do_send(PlaceNew(meta.id));
    HttpResponse::Ok().json(BlobInfo { id: meta.id, size: meta.size })
}

/// Fetches `id` from peers; `damage` says why the local copy was dropped.
async fn fetch(state: &State, id: ContentId, damage: Option<String>) -> Result<BlobMeta, HttpResponse> {
    match state.mesh.replication.send(FetchBlob(id)).await {
        Ok(Ok(meta)) => Ok(meta),
        Ok(Err(FetchError::Unavailable { failures, .. })) => Err(match damage {
            Some(damage) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{damage}; no peer had a good copy ({})", failures.join("; ")),
            ),
            None if failures.is_empty() => error(StatusCode::NOT_FOUND, format!("blob {id} is not stored on any node")),
            None => error(StatusCode::NOT_FOUND, format!("blob {id} could not be fetched: {}", failures.join("; "))),
        }),
        Ok(Err(FetchError::Store(e))) => Err(store_error(e)),
        Err(e) => Err(error(StatusCode::SERVICE_UNAVAILABLE, format!("replication unavailable: {e}"))),
    }
}

/// Makes sure this node holds `id`, fetching it from peers when it does not.
pub(super) async fn local_copy(state: &State, id: ContentId) -> Result<BlobMeta, HttpResponse> {
    match state.mesh.storage.meta(id).await {
        Ok(Some(meta)) => Ok(meta),
        Ok(None) => fetch(state, id, None).await,
        Err(e @ StoreError::Integrity { .. }) => {
            let _ = state.mesh.storage.remove(id).await;
            fetch(state, id, Some(e.to_string())).await
        }
        Err(e) => Err(store_error(e)),
    }
}

/// The layout and verified first chunk of a local copy of `id`. A damaged copy
/// is dropped (never served or kept) and a good one fetched from peers.
async fn readable(state: &State, id: ContentId) -> Result<(BlobMeta, Vec<u8>), HttpResponse> {
    let meta = local_copy(state, id).await?;
    match state.mesh.storage.chunk(meta.clone(), 0).await {
        Ok(first) => Ok((meta, first)),
        Err(e @ StoreError::Integrity { .. }) => {
            let _ = state.mesh.storage.remove(id).await;
            let meta = fetch(state, id, Some(e.to_string())).await?;
            let first = state.mesh.storage.chunk(meta.clone(), 0).await.map_err(store_error)?;
            Ok((meta, first))
        }
        Err(e) => Err(store_error(e)),
    }
}

/// `GET /v1/blobs/{id}`: the bytes, streamed chunk by verified chunk. The
/// first chunk is checked before the answer starts; a later chunk that fails
/// its check ends the response early (the client sees a short body, never
/// wrong bytes) and drops the damaged copy.
#[utoipa::path(
    get,
    path = "/v1/blobs/{id}",
    operation_id = "blobs_get",
    tag = "blobs",
    summary = "Blob bytes, fetched from peers when not held here (verified chunk by chunk)",
    params(
        ("id" = String, Path, description = "64 hex digits (blake3)"),
    ),
    responses(
        (status = 200, description = "bytes", body = doc::Binary, content_type = "application/octet-stream"),
        (status = 400, description = "bad id", body = doc::ErrorBody),
        (status = 404, description = "unknown blob", body = doc::ErrorBody),
    ),
)]
pub async fn get(state: web::Data<State>, id: web::Path<String>) -> HttpResponse {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let (meta, first) = match readable(&state, id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let storage = state.mesh.storage.clone();
    let size = meta.size;
    let rest = futures::stream::iter(1..meta.chunks.len()).then(move |index| {
        let storage = storage.clone();
        let meta = meta.clone();
        async move {
            let chunk = storage.chunk(meta, index).await;
            if let Err(StoreError::Integrity { .. }) = &chunk {
                let _ = storage.remove(id).await;
            }
            chunk.map(web::Bytes::from).map_err(|e| actix_web::error::ErrorInternalServerError(e.to_string()))
        }
    });
    let body = futures::stream::once(async move { Ok(web::Bytes::from(first)) }).chain(rest);
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("x-mass-content-id", id.to_string()))
        .no_chunking(size)
        .streaming(body)
}

/// `GET /v1/blobs`: the blobs stored on this node.
#[utoipa::path(
    get,
    path = "/v1/blobs",
    operation_id = "blobs_list",
    tag = "blobs",
    summary = "Blobs stored on this node",
    responses(
        (status = 200, description = "OK", body = Vec<doc::BlobInfo>, content_type = "application/json"),
    ),
)]
pub async fn list(state: web::Data<State>) -> HttpResponse {
    match state.mesh.storage.list().await {
        Ok(blobs) => HttpResponse::Ok()
            .json(blobs.into_iter().map(|s| BlobInfo { id: s.meta.id, size: s.meta.size }).collect::<Vec<_>>()),
        Err(e) => store_error(e),
    }
}

/// `DELETE /v1/blobs/{id}`: unpins the blob mesh-wide; GC then removes it
/// wherever no ref keeps it.
#[utoipa::path(
    delete,
    path = "/v1/blobs/{id}",
    operation_id = "blobs_unpin",
    tag = "blobs",
    summary = "Unpin a blob",
    params(
        ("id" = String, Path, description = "64 hex digits (blake3)"),
    ),
    responses(
        (status = 200, description = "OK", body = Object),
        (status = 400, description = "bad id", body = doc::ErrorBody),
        (status = 404, description = "the blob is not pinned", body = doc::ErrorBody),
    ),
)]
pub async fn unpin(state: web::Data<State>, id: web::Path<String>) -> HttpResponse {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(response) => return response,
    };
    match state.mesh.storage.get_ref(pin_name(&id)).await {
        Ok(Some(record)) if record.current().is_some_and(|c| c.target.is_some()) => {}
        Ok(_) => return error(StatusCode::NOT_FOUND, format!("blob {id} is not pinned")),
        Err(e) => return store_error(e),
    }
    match write_ref(&state, pin_name(&id), None).await {
        Ok(_) => HttpResponse::Ok().json(serde_json::json!({ "id": id, "pinned": false })),
        Err(e) => store_error(e),
    }
}

/// `POST /v1/gc`: removes unreferenced blobs past the grace period now.
#[utoipa::path(
    post,
    path = "/v1/gc",
    operation_id = "blobs_gc",
    tag = "blobs",
    summary = "Remove unpinned, unreferenced blobs older than the grace period",
    params(
        ("grace_ms" = Option<u64>, Query, description = "The grace period in milliseconds; default: the node's gc grace."),
    ),
    responses(
        (status = 200, description = "OK", body = Object),
    ),
)]
pub async fn gc(state: web::Data<State>, query: web::Query<GcQuery>) -> HttpResponse {
    let grace_ms = query.grace_ms.unwrap_or(state.gc_grace_ms);
    match state.mesh.storage.gc(grace_ms).await {
        Ok(report) => HttpResponse::Ok().json(report),
        Err(e) => store_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcQuery {
    grace_ms: Option<u64>,
}
