//! `/v1/jobs`: submit a training job to any node, follow it from any node.

use actix_web::{HttpResponse, http::StatusCode, web};
use mass_protocol::{
    ContentId,
    jobs::{JobRecord, JobSpec, JobState},
};

use super::openapi::schemas as doc;
use super::{
    State, error,
    wait::{WaitQuery, after_change},
};
use crate::jobs::{
    REF_PREFIX,
    driver::{cancel_ref, record},
    submit::SubmitError,
};

fn refuse(message: impl Into<String>) -> HttpResponse {
    error(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// `POST /v1/jobs`: checks the job can run, then records it as pending; the
/// top-ranked live peer for its id picks it up.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    operation_id = "jobs_submit",
    tag = "jobs",
    summary = "Submit a training job; answers its id at once",
    request_body(content = doc::JobSpecSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "OK", body = doc::Submitted, content_type = "application/json"),
        (status = 400, description = "bad model name", body = doc::ErrorBody),
        (status = 422, description = "the job cannot run, with the reason", body = doc::ErrorBody),
    ),
)]
pub async fn submit(state: web::Data<State>, body: web::Json<JobSpec>) -> HttpResponse {
    match crate::jobs::submit::submit(&state.mesh(), body.into_inner()).await {
        Ok(id) => HttpResponse::Ok().json(serde_json::json!({ "id": id })),
        Err(SubmitError::BadRequest(m)) => error(StatusCode::BAD_REQUEST, m),
        Err(SubmitError::Refused(m)) => refuse(m),
        Err(SubmitError::Internal(m)) => error(StatusCode::INTERNAL_SERVER_ERROR, m),
    }
}

/// `GET /v1/jobs/{id}`: the job's last checkpoint.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    operation_id = "jobs_show",
    tag = "jobs",
    summary = "A job's last checkpoint: state, drivers, tasks and where they ran, metrics",
    params(
        ("id" = String, Path, description = "64 hex digits (blake3)"),
        ("wait_ms" = Option<u64>, Query, description = "for an open job: answer when its record is next written here (a step done, its end, a cancel) or after this many milliseconds, whichever is first (at most 30000)"),
    ),
    responses(
        (status = 200, description = "OK", body = Object),
        (status = 400, description = "not a job id (64 hex digits), or wait_ms over 30000", body = doc::ErrorBody),
        (status = 404, description = "unknown job", body = doc::ErrorBody),
    ),
)]
pub async fn show(state: web::Data<State>, id: web::Path<String>, query: web::Query<WaitQuery>) -> HttpResponse {
    let id: ContentId = match id.parse() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("{e}")),
    };
    let wait = match query.wait() {
        Ok(wait) => wait,
        Err(refused) => return refused,
    };
    let mesh = state.mesh();
    // Its ref, or its cancel flag, written.
    let names = [format!("{REF_PREFIX}{id}"), cancel_ref(&id)];
    match after_change(&mesh, &names, wait, || record(&mesh, id), |r: &JobRecord| r.state.is_over()).await {
        Ok(Some(record)) => HttpResponse::Ok().json(record),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(message) => error(StatusCode::SERVICE_UNAVAILABLE, message),
    }
}

/// `GET /v1/jobs/{id}/progress`: the epoch and loss each running task of
/// the job last reported, as this node heard them.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/progress",
    operation_id = "jobs_progress",
    tag = "jobs",
    summary = "Epoch and loss each running task last reported",
    params(
        ("id" = String, Path, description = "64 hex digits (blake3)"),
    ),
    responses(
        (status = 200, description = "OK", body = Vec<Object>),
        (status = 400, description = "not a job id (64 hex digits)", body = doc::ErrorBody),
    ),
)]
pub async fn progress(state: web::Data<State>, id: web::Path<String>) -> HttpResponse {
    match id.parse::<ContentId>() {
        Ok(id) => HttpResponse::Ok().json(state.mesh.progress.of(&id)),
        Err(e) => error(StatusCode::BAD_REQUEST, format!("{e}")),
    }
}

/// `POST /v1/jobs/{id}/cancel`: stops the job at its driver's next checkpoint.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    operation_id = "jobs_cancel",
    tag = "jobs",
    summary = "Cancel a job",
    params(
        ("id" = String, Path, description = "64 hex digits (blake3)"),
    ),
    responses(
        (status = 200, description = "OK", body = Object),
        (status = 400, description = "not a job id (64 hex digits)", body = doc::ErrorBody),
        (status = 404, description = "unknown job", body = doc::ErrorBody),
        (status = 409, description = "already over", body = doc::ErrorBody),
    ),
)]
pub async fn cancel(state: web::Data<State>, id: web::Path<String>) -> HttpResponse {
    let id: ContentId = match id.parse() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("{e}")),
    };
    let mesh = state.mesh();
    let current = match record(&mesh, id).await {
        Ok(Some(record)) => record,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(message) => return error(StatusCode::SERVICE_UNAVAILABLE, message),
    };
    if current.state.is_over() {
        return error(StatusCode::CONFLICT, format!("job {id} is already {:?}", current.state));
    }
    match mesh.write_ref(cancel_ref(&id), Some(id)).await {
        Ok(_) => HttpResponse::Ok().json(JobRecord { state: JobState::Cancelled, ..current }),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /v1/jobs`: every job this node knows, with its state.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    operation_id = "jobs_list",
    tag = "jobs",
    summary = "Every job this node knows",
    responses(
        (status = 200, description = "OK", body = Vec<Object>),
    ),
)]
pub async fn list(state: web::Data<State>) -> HttpResponse {
    let mesh = state.mesh();
    let refs = match state.mesh.storage.refs().await {
        Ok(refs) => refs,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut out = Vec::new();
    for id in crate::jobs::watcher::record_ids(&refs, REF_PREFIX) {
        if let Ok(Some(record)) = record(&mesh, id).await {
            out.push(record);
        }
    }
    HttpResponse::Ok().json(out)
}
