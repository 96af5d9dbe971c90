//! The API's OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! annotations and the body types' schemas, and served at
//! `GET /v1/openapi.json`; the roles come from the server's own check
//! (`security`). `docs/openapi.json` is a copy for readers; a test keeps it
//! equal to what the code generates.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::OpenApi;

pub mod schemas;
mod security;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Mass node API",
        version = "1",
        description = "Every node of a Mass mesh serves this API; any node answers for the whole mesh. Errors are JSON objects {\"error\": message} naming what was wrong."
    ),
    tags(
        (name = "node", description = "This node: health, peers, drain, metrics, this document"),
        (name = "dashboard", description = "The web dashboard, built into the node"),
        (name = "blobs", description = "Content-addressed blobs and garbage collection"),
        (name = "refs", description = "Named, versioned pointers to blobs"),
        (name = "datasets", description = "Sharded datasets and their feature pipelines"),
        (name = "jobs", description = "Training jobs"),
        (name = "studies", description = "Hyperparameter studies"),
        (name = "models", description = "The model registry, predictions, scoring, export, import, compression"),
        (name = "pipelines", description = "Feature pipelines fitted where the data lives"),
    )
)]
struct Info;

/// The whole document: the info above, every routed handler's operation,
/// and the role each operation needs.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = Info::openapi().merge_from(super::routes::Operations::openapi());
    security::add(&mut document);
    document
}

/// Built once: the document does not change while the node runs.
static JSON: LazyLock<String> = LazyLock::new(|| document().to_pretty_json().expect("the document serializes"));

#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "node_openapi",
    tag = "node",
    summary = "This document",
    responses(
        (status = 200, description = "OpenAPI JSON", body = Object, content_type = "application/json"),
    ),
)]
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(JSON.as_str())
}

#[cfg(test)]
mod tests;
