//! `POST /v1/datasets/{name}/pipelines`: fit a feature pipeline where the
//! data lives. Each shard is summarized by a node that holds it; only the
//! summaries travel; this node merges them, fits, and stores the result.

use actix_web::{HttpResponse, http::StatusCode, web};
use libp2p::PeerId;
use mass_protocol::{
    ContentId,
    api::{FitPipeline, FittedPipelineView},
    codec,
    dataset::DatasetManifest,
    features::DataSummary,
    rpc::{Request, Response},
    storage::validate_ref_name,
};

use super::{
    State,
    blobs::{local_copy, write_ref},
    error,
};
use crate::{
    datasets::{
        REF_PREFIX,
        service::{read_manifest, summarize_shard, write_blob},
    },
    membership::GetUpPeers,
    replication::homes,
};

async fn manifest(state: &State, name: &str) -> Result<DatasetManifest, HttpResponse> {
    let record = match state.storage.get_ref(format!("{REF_PREFIX}{name}")).await {
        Ok(Some(record)) => record,
        Ok(None) => return Err(error(StatusCode::NOT_FOUND, format!("no dataset named '{name}'"))),
        Err(e) => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    let Some(target) = record.current().and_then(|c| c.target) else {
        return Err(error(StatusCode::NOT_FOUND, format!("dataset '{name}' was deleted")));
    };
    let meta = local_copy(state, target).await?;
    read_manifest(&state.storage, &meta).await.map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Summarizes one shard: here if this node holds it, else on its homes, else
/// on any live peer that has it.
async fn summarize(
    state: &State,
    manifest: &DatasetManifest,
    shard: ContentId,
    spec: &mass_protocol::features::PipelineSpec,
    peers: &[PeerId],
) -> Result<(String, DataSummary), String> {
    if let Ok(Some(meta)) = state.storage.meta(shard).await {
        let summary = summarize_shard(&state.storage, &meta, manifest.schema.clone(), spec.clone())
            .await
            .map_err(|e| e.to_string())?;
        return Ok((state.peer_id.clone(), summary));
    }
    let local: PeerId = state.net.local_peer_id();
    let mut view = peers.to_vec();
    view.push(local);
    let mut candidates = homes(&shard, &view, view.len());
    candidates.retain(|p| *p != local);
    let mut failures = Vec::new();
    for peer in candidates {
        let request = Request::SummarizeShard { shard, schema: manifest.schema.clone(), spec: spec.clone() };
        match state.net.request(peer, request).await {
            Ok(Response::Summary(summary)) => return Ok((peer.to_string(), summary)),
            Ok(Response::Error(e)) => failures.push(format!("{peer}: {e}")),
            Ok(_) => failures.push(format!("{peer}: unexpected answer")),
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(format!("no node could summarize shard {shard}: {}", failures.join("; ")))
}

pub async fn fit(state: web::Data<State>, dataset: web::Path<String>, body: web::Json<FitPipeline>) -> HttpResponse {
    let request = body.into_inner();
    let ref_name = format!("pipeline/{dataset}/{}", request.name);
    if let Err(reason) = validate_ref_name(&ref_name) {
        return error(StatusCode::BAD_REQUEST, format!("pipeline name: {reason}"));
    }
    let manifest = match manifest(&state, &dataset).await {
        Ok(manifest) => manifest,
        Err(response) => return response,
    };
    let peers = state.membership.send(GetUpPeers).await.unwrap_or_default();
    let jobs = manifest.shards.iter().map(|shard| summarize(&state, &manifest, shard.id, &request.spec, &peers));
    let mut merged = DataSummary::default();
    let mut summarized_by = Vec::new();
    for result in futures::future::join_all(jobs).await {
        match result {
            Ok((peer, summary)) => {
                mass_kernels::features::merge(&mut merged, &summary);
                summarized_by.push(peer);
            }
            Err(message) => return error(StatusCode::SERVICE_UNAVAILABLE, message),
        }
    }
    let pipeline = match mass_kernels::features::fit(&request.spec, &manifest.schema, &merged) {
        Ok(pipeline) => pipeline,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    let bytes = codec::encode(&pipeline).expect("pipelines encode");
    let meta = match write_blob(&state.storage, &bytes).await {
        Ok(meta) => meta,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    state.replication.do_send(crate::replication::PlaceNew(meta.id));
    match write_ref(&state, ref_name, Some(meta.id)).await {
        Ok(entry) => {
            HttpResponse::Ok().json(FittedPipelineView { id: meta.id, version: entry.version, pipeline, summarized_by })
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
