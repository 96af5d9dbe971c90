//! `/v1/datasets`: streamed ingest, listing, and where each shard lives.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use futures::StreamExt;
use mass_protocol::{
    ContentId,
    dataset::{ColumnKind, DatasetSummary, DatasetView},
    rpc::{Request, Response},
    storage::RefRecord,
};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::openapi::schemas as doc;
use super::{
    State,
    blobs::{local_copy, write_ref},
    error,
};
use crate::{
    datasets::{
        DataError, Format, IngestOptions, REF_PREFIX, SplitChoice,
        ingest::parse_test_rows,
        service::{ingest_pieces, read_blob, read_manifest},
    },
    membership::GetUpPeers,
    replication::PlaceNew,
    storage::store::pin_name,
};

/// Query of `POST /v1/datasets`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestQuery {
    name: String,
    label: String,
    /// Column kinds the user fixes: `col:numeric,other:text`.
    types: Option<String>,
    shard_rows: Option<usize>,
    seed: Option<u64>,
    validation: Option<f64>,
    test: Option<f64>,
    /// Id of a stored blob listing 0-based test rows, one per line.
    test_rows: Option<String>,
    /// `csv`, `jsonl`, `npy` or `parquet`; by default the `Content-Type`
    /// decides (`application/x-ndjson` is JSON Lines,
    /// `application/vnd.apache.parquet` Parquet), else the bytes (NumPy's or
    /// Parquet's magic, or CSV).
    format: Option<String>,
}

/// How the body is read: `format` when given, else the `Content-Type`,
/// else the bytes themselves.
fn format_of(request: &HttpRequest, format: Option<&str>) -> Result<Format, HttpResponse> {
    if let Some(text) = format {
        return Format::parse(text).ok_or_else(|| bad(format!("format: '{text}' is not csv, jsonl, npy or parquet")));
    }
    let content_type = request.headers().get(actix_web::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    Ok(content_type.and_then(Format::of_content_type).unwrap_or_default())
}

fn bad(message: impl Into<String>) -> HttpResponse {
    error(StatusCode::BAD_REQUEST, message)
}

fn data_error(e: DataError) -> HttpResponse {
    match e {
        DataError::Store(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
        other => error(StatusCode::UNPROCESSABLE_ENTITY, other.to_string()),
    }
}

async fn options(state: &State, query: IngestQuery) -> Result<IngestOptions, HttpResponse> {
    let mut kinds = std::collections::BTreeMap::new();
    for pair in query.types.iter().flat_map(|t| t.split(',')).filter(|p| !p.trim().is_empty()) {
        let (column, kind) = pair.rsplit_once(':').ok_or_else(|| bad(format!("types: '{pair}' is not column:kind")))?;
        let kind = ColumnKind::parse(kind.trim())
            .ok_or_else(|| bad(format!("types: '{kind}' is not numeric, categorical or text")))?;
        kinds.insert(column.trim().to_owned(), kind);
    }
    let seed = query.seed.unwrap_or(42);
    let validation = query.validation.unwrap_or(0.0);
    let split = match query.test_rows {
        Some(list) => {
            if query.test.is_some() {
                return Err(bad("give either test (a fraction) or test_rows (a list), not both"));
            }
            let list: ContentId = list.parse().map_err(|e| bad(format!("test_rows: {e}")))?;
            let meta = local_copy(state, list).await?;
            let bytes = read_blob(&state.mesh.storage, &meta)
                .await
                .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            let text = String::from_utf8(bytes).map_err(|_| bad("test_rows: the list is not UTF-8 text"))?;
            let rows = parse_test_rows(&text).map_err(data_error)?;
            SplitChoice::TestRows { rows, list, seed, validation }
        }
        None => SplitChoice::Seeded { seed, validation, test: query.test.unwrap_or(0.2) },
    };
    let options = IngestOptions {
        name: query.name,
        label: query.label,
        kinds,
        shard_rows: query.shard_rows.unwrap_or(state.shard_rows),
        split,
        // The node's compute share: the cores it offers to the mesh.
        threads: state.mesh.compute.config().slots.min(std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    options.validate().map_err(data_error)?;
    Ok(options)
}

/// `POST /v1/datasets?name=NAME&label=COLUMN`: the body (CSV or JSON Lines,
/// plain or gzip, Parquet, or NumPy arrays) becomes a dataset. Nothing is
/// referenced unless the whole file is valid.
#[utoipa::path(
    post,
    path = "/v1/datasets",
    operation_id = "datasets_ingest",
    tag = "datasets",
    summary = "Ingest a CSV or JSON Lines body (either optionally gzip), a Parquet file, or .npy arrays, as a \
        sharded dataset",
    description = "CSV has a header line; JSON Lines has one object of column -> value per line (the columns \
        are the first line's keys, in order; numbers and strings are values, null is missing, booleans are \
        categories; a later line with another key, a missing key or a nested value is refused naming its line \
        and key); Parquet is read as the CSV of the same data (flat columns only; nulls are missing, booleans \
        categories, decimals exact text, dates and timestamps ISO 8601 text; snappy, gzip or zstd pages), \
        spooled to the node's disk first since its index is at its end; .npy is the labels vector followed by \
        the features matrix. The body is read as `format` when given, else as its Content-Type says \
        (application/x-ndjson: JSON Lines; application/vnd.apache.parquet or application/x-parquet: Parquet), \
        else as CSV or, when it starts with NumPy's or Parquet's magic, .npy or Parquet.",
    params(
        ("name" = String, Query),
        ("label" = String, Query),
        ("format" = Option<String>, Query, description = "How the body is read; default: by Content-Type, else CSV, .npy or Parquet by its first bytes. One of: csv, jsonl, npy, parquet."),
        ("shard_rows" = Option<u64>, Query),
        ("test" = Option<f64>, Query),
        ("seed" = Option<u64>, Query),
        ("types" = Option<String>, Query, description = "Column kinds to fix: column:numeric|categorical|text, comma-separated."),
        ("validation" = Option<f64>, Query, description = "Fraction of rows for validation."),
        ("test_rows" = Option<String>, Query, description = "Id of a stored blob listing 0-based test rows, one per line (instead of test)."),
    ),
    request_body(
        description = "CSV or JSON Lines (plain or gzip), Parquet, or .npy arrays (labels, then features); any \
            other Content-Type is read as CSV, or as .npy or Parquet by its magic bytes",
        content(
            (String = "text/csv"),
            (String = "application/x-ndjson"),
            (String = "application/ndjson"),
            (String = "application/jsonl"),
            (String = "application/x-jsonlines"),
            (doc::Binary = "application/vnd.apache.parquet"),
            (doc::Binary = "application/x-parquet"),
            (doc::Binary = "application/x-npy"),
            (doc::Binary = "application/octet-stream"),
        ),
    ),
    responses(
        (status = 200, description = "OK", body = Object),
        (status = 400, description = "a query that does not parse: name or label missing, an unknown parameter, a bad format or types", body = doc::ErrorBody),
        (status = 413, description = "body over this node's upload limit (http.max_upload)", body = doc::ErrorBody),
        (status = 422, description = "malformed data, naming the row, line and column (a JSON Lines key), a Parquet file's problem (not Parquet, truncated, an unreadable footer or row group, a column that is not flat, named), or options the data cannot take (no such label column, split fractions)", body = doc::ErrorBody),
    ),
)]
pub async fn ingest(
    state: web::Data<State>,
    request: HttpRequest,
    query: web::Query<IngestQuery>,
    mut body: web::Payload,
) -> HttpResponse {
    let mut query = query.into_inner();
    let format = match format_of(&request, query.format.take().as_deref()) {
        Ok(format) => format,
        Err(response) => return response,
    };
    let options = match options(&state, query).await {
        Ok(options) => options,
        Err(response) => return response,
    };
    let name = options.name.clone();
    let (pieces, rx) = mpsc::channel(16);
    let job = tokio::spawn(ingest_pieces(state.mesh.storage.clone(), options, format, rx, state.spool_dir.clone()));
    let mut received = 0u64;
    while let Some(piece) = body.next().await {
        received += piece.as_ref().map_or(0, |p| p.len() as u64);
        if received > state.max_upload {
            drop(pieces);
            let _ = job.await;
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body: over this node's upload limit of {} bytes (http.max_upload)", state.max_upload),
            );
        }
        // A parser that stopped early (bad row) no longer listens.
        if pieces.send(piece.map_err(|e| format!("upload interrupted: {e}"))).await.is_err() {
            break;
        }
    }
    drop(pieces);
    let (meta, manifest) = match job.await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return data_error(e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("ingest failed: {e}")),
    };
    // Shards are pinned first and the name last: a reader never sees a
    // dataset whose shards could be collected. The pins are written at
    // once: on a mesh each waits for its copies at the ref's homes, which
    // one after another added a round trip per shard to every upload.
    let pins = manifest.shards.iter().map(|shard| write_ref(&state, pin_name(&shard.id), Some(shard.id)));
    if let Err(e) = futures::future::try_join_all(pins).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    for shard in &manifest.shards {
        state.mesh.replication.do_send(PlaceNew(shard.id));
    }
    state.mesh.replication.do_send(PlaceNew(meta.id));
    let entry = match write_ref(&state, format!("{REF_PREFIX}{name}"), Some(meta.id)).await {
        Ok(entry) => entry,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    HttpResponse::Ok().json(DatasetView {
        manifest_id: meta.id,
        version: entry.version,
        manifest,
        shard_holders: vec![],
    })
}

async fn load(
    state: &State,
    record: &RefRecord,
) -> Result<Option<(ContentId, u64, mass_protocol::dataset::DatasetManifest)>, HttpResponse> {
    let Some(current) = record.current() else { return Ok(None) };
    let Some(target) = current.target else { return Ok(None) };
    let meta = local_copy(state, target).await?;
    let manifest = read_manifest(&state.mesh.storage, &meta).await.map_err(data_error)?;
    Ok(Some((target, current.version, manifest)))
}

/// `GET /v1/datasets`.
#[utoipa::path(
    get,
    path = "/v1/datasets",
    operation_id = "datasets_list",
    tag = "datasets",
    summary = "Datasets",
    responses(
        (status = 200, description = "OK", body = Vec<Object>),
    ),
)]
pub async fn list(state: web::Data<State>) -> HttpResponse {
    let records = match state.mesh.storage.refs().await {
        Ok(records) => records,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut out = Vec::new();
    for record in records.iter().filter(|r| r.name.starts_with(REF_PREFIX)) {
        match load(&state, record).await {
            Ok(Some((id, version, manifest))) => out.push(DatasetSummary {
                name: manifest.name.clone(),
                manifest: id,
                version,
                rows: manifest.rows,
                columns: manifest.schema.columns.len(),
                shards: manifest.shards.len(),
            }),
            Ok(None) => {}
            Err(response) => return response,
        }
    }
    HttpResponse::Ok().json(out)
}

/// `GET /v1/datasets/{name}`: the manifest and which peers hold each shard.
#[utoipa::path(
    get,
    path = "/v1/datasets/{name}",
    operation_id = "datasets_show",
    tag = "datasets",
    summary = "A dataset's manifest, statistics and shard holders",
    params(
        ("name" = String, Path),
    ),
    responses(
        (status = 200, description = "OK", body = Object),
        (status = 404, description = "unknown dataset", body = doc::ErrorBody),
    ),
)]
pub async fn show(state: web::Data<State>, name: web::Path<String>) -> HttpResponse {
    let ref_name = format!("{REF_PREFIX}{name}");
    let record = match crate::shared_refs::find(&state.mesh, &ref_name).await {
        Ok(Some(record)) => record,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no dataset named '{name}'")),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let (manifest_id, version, manifest) = match load(&state, &record).await {
        Ok(Some(found)) => found,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("dataset '{name}' was deleted")),
        Err(response) => return response,
    };
    let peers = state.mesh.membership.send(GetUpPeers).await.unwrap_or_default();
    let mut shard_holders = Vec::new();
    for shard in &manifest.shards {
        let mut holders = Vec::new();
        if state.mesh.storage.has(shard.id).await.unwrap_or(false) {
            holders.push(state.mesh.peer_id.clone());
        }
        let asks = peers.iter().map(|peer| {
            let net = state.mesh.net.clone();
            async move { (peer, net.request(*peer, Request::HasBlob { id: shard.id }).await) }
        });
        for (peer, answer) in futures::future::join_all(asks).await {
            if let Ok(Response::Has(true)) = answer {
                holders.push(peer.to_string());
            }
        }
        shard_holders.push(holders);
    }
    HttpResponse::Ok().json(DatasetView { manifest_id, version, manifest, shard_holders })
}
