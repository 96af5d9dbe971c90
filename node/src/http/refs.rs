//! `/v1/refs`: mutable names for content ids, with history and rollback.

use actix_web::{HttpResponse, http::StatusCode, web};
use mass_protocol::{
    ContentId,
    api::{RefView, Rollback, SetRef},
    storage::{RefRecord, validate_ref_name},
};

use super::openapi::schemas as doc;
use super::{
    State,
    blobs::{local_copy, store_error, write_ref},
    error,
};

fn view(record: &RefRecord) -> Option<RefView> {
    let current = record.current()?;
    Some(RefView {
        name: record.name.clone(),
        version: current.version,
        target: current.target?,
        origin: current.origin.clone(),
        set_at: current.set_at,
    })
}

async fn record(state: &State, name: &str) -> Result<RefRecord, HttpResponse> {
    if let Err(reason) = validate_ref_name(name) {
        return Err(error(StatusCode::BAD_REQUEST, reason));
    }
    match crate::shared_refs::find(&state.mesh, name).await {
        Ok(Some(record)) => Ok(record),
        Ok(None) => Err(error(StatusCode::NOT_FOUND, format!("no ref named '{name}'"))),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

/// `GET /v1/refs`: every live ref and its current target.
#[utoipa::path(
    get,
    path = "/v1/refs",
    operation_id = "refs_list",
    tag = "refs",
    summary = "Every ref",
    responses(
        (status = 200, description = "OK", body = Vec<doc::RefView>, content_type = "application/json"),
    ),
)]
pub async fn list(state: web::Data<State>) -> HttpResponse {
    match state.mesh.storage.refs().await {
        Ok(records) => HttpResponse::Ok().json(records.iter().filter_map(view).collect::<Vec<_>>()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /v1/refs/{name}`.
#[utoipa::path(
    get,
    path = "/v1/refs/{name}",
    operation_id = "refs_get",
    tag = "refs",
    summary = "A ref's current target",
    params(
        ("name" = String, Path),
    ),
    responses(
        (status = 200, description = "OK", body = doc::RefView, content_type = "application/json"),
        (status = 404, description = "unknown ref", body = doc::ErrorBody),
    ),
)]
pub async fn get(state: web::Data<State>, name: web::Path<String>) -> HttpResponse {
    match record(&state, &name).await {
        Ok(record) => match view(&record) {
            Some(view) => HttpResponse::Ok().json(view),
            None => error(StatusCode::NOT_FOUND, format!("ref '{name}' was deleted")),
        },
        Err(response) => response,
    }
}

/// `GET /v1/refs/{name}/history`: every version, oldest first.
#[utoipa::path(
    get,
    path = "/v1/refs/{name}/history",
    operation_id = "refs_history",
    tag = "refs",
    summary = "Every version of a ref",
    params(
        ("name" = String, Path),
    ),
    responses(
        (status = 200, description = "OK", body = Object),
    ),
)]
pub async fn history(state: web::Data<State>, name: web::Path<String>) -> HttpResponse {
    match record(&state, &name).await {
        Ok(record) => HttpResponse::Ok().json(record),
        Err(response) => response,
    }
}

/// Points `name` at `target` as a new version, once a copy of the target is
/// known to exist.
async fn point(state: &State, name: String, target: ContentId) -> HttpResponse {
    if let Err(response) = local_copy(state, target).await {
        return response;
    }
    match write_ref(state, name.clone(), Some(target)).await {
        Ok(entry) => HttpResponse::Ok().json(RefView {
            name,
            version: entry.version,
            target,
            origin: entry.origin,
            set_at: entry.set_at,
        }),
        Err(e) => store_error(e),
    }
}

/// `PUT /v1/refs/{name}` with `{"target": "<id>"}`.
#[utoipa::path(
    put,
    path = "/v1/refs/{name}",
    operation_id = "refs_set",
    tag = "refs",
    summary = "Point a ref at a blob (new version)",
    params(
        ("name" = String, Path),
    ),
    request_body(content = doc::SetRef, content_type = "application/json"),
    responses(
        (status = 200, description = "OK", body = doc::RefView, content_type = "application/json"),
        (status = 400, description = "bad name or target", body = doc::ErrorBody),
    ),
)]
pub async fn set(state: web::Data<State>, name: web::Path<String>, body: web::Json<SetRef>) -> HttpResponse {
    if let Err(reason) = validate_ref_name(&name) {
        return error(StatusCode::BAD_REQUEST, reason);
    }
    let target = match body.target.parse::<ContentId>() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("target: {e}")),
    };
    point(&state, name.into_inner(), target).await
}

/// `POST /v1/refs/{name}/rollback` with `{"version": N}`: a new version that
/// points where version N pointed.
#[utoipa::path(
    post,
    path = "/v1/refs/{name}/rollback",
    operation_id = "refs_rollback",
    tag = "refs",
    summary = "Point a ref back at an earlier version's target",
    params(
        ("name" = String, Path),
    ),
    request_body(content = doc::Rollback, content_type = "application/json"),
    responses(
        (status = 200, description = "OK", body = doc::RefView, content_type = "application/json"),
        (status = 404, description = "no such version", body = doc::ErrorBody),
        (status = 409, description = "that version is a deletion", body = doc::ErrorBody),
    ),
)]
pub async fn rollback(state: web::Data<State>, name: web::Path<String>, body: web::Json<Rollback>) -> HttpResponse {
    let record = match record(&state, &name).await {
        Ok(record) => record,
        Err(response) => return response,
    };
    let Some(old) =
        record.history.iter().filter(|e| e.version == body.version).max_by(|a, b| a.order_key().cmp(&b.order_key()))
    else {
        let versions: Vec<String> = record.history.iter().map(|e| e.version.to_string()).collect();
        return error(
            StatusCode::NOT_FOUND,
            format!("ref '{name}' has no version {} (versions: {})", body.version, versions.join(", ")),
        );
    };
    let Some(target) = old.target else {
        return error(StatusCode::CONFLICT, format!("version {} of '{name}' is a deletion", body.version));
    };
    point(&state, name.into_inner(), target).await
}
