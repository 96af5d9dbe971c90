//! `POST /v1/datasets/{name}/pipelines`: fit a feature pipeline where the
//! data lives. Each shard is summarized by a node that holds it; only the
//! summaries travel; this node merges them, fits, and stores the result.

use actix_web::{HttpResponse, http::StatusCode, web};
use mass_protocol::{
    api::{FitPipeline, FittedPipelineView},
    storage::{BlobKind, validate_ref_name},
};

use super::openapi::schemas as doc;
use super::{State, error};
use crate::mesh::FitFailure;

#[utoipa::path(
    post,
    path = "/v1/datasets/{name}/pipelines",
    operation_id = "pipelines_fit",
    tag = "pipelines",
    summary = "Fit a feature pipeline where the shards live",
    params(
        ("name" = String, Path),
    ),
    request_body(content = doc::FitPipeline, content_type = "application/json"),
    responses(
        (status = 200, description = "OK", body = Object),
        (status = 400, description = "bad pipeline name", body = doc::ErrorBody),
        (status = 404, description = "unknown dataset", body = doc::ErrorBody),
        (status = 422, description = "spec does not fit the data", body = doc::ErrorBody),
    ),
)]
pub async fn fit(state: web::Data<State>, dataset: web::Path<String>, body: web::Json<FitPipeline>) -> HttpResponse {
    let request = body.into_inner();
    let ref_name = format!("pipeline/{dataset}/{}", request.name);
    if let Err(reason) = validate_ref_name(&ref_name) {
        return error(StatusCode::BAD_REQUEST, format!("pipeline name: {reason}"));
    }
    let mesh = state.mesh();
    let manifest = match mesh.dataset(&dataset).await {
        Ok((_, manifest)) => manifest,
        Err(message) => return error(StatusCode::NOT_FOUND, message),
    };
    let (pipeline, _, summarized_by) = match mesh.fit_pipeline(&manifest, &request.spec).await {
        Ok(fitted) => fitted,
        Err(FitFailure::Unavailable(message)) => return error(StatusCode::SERVICE_UNAVAILABLE, message),
        Err(FitFailure::Invalid(message)) => return error(StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    let id = match mesh.save(&pipeline, BlobKind::Pipeline).await {
        Ok(id) => id,
        Err(message) => return error(StatusCode::INTERNAL_SERVER_ERROR, message),
    };
    match mesh.write_ref(ref_name, Some(id)).await {
        Ok(entry) => {
            HttpResponse::Ok().json(FittedPipelineView { id, version: entry.version, pipeline, summarized_by })
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
