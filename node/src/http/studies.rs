//! `/v1/studies`: hyperparameter studies, submitted to any node and
//! followed from any node.

use actix_web::{HttpResponse, http::StatusCode, web};
use mass_protocol::{
    ContentId,
    storage::{BlobKind, validate_ref_name},
    studies::{StudyRecord, StudySpec, StudyState, default_metric},
};

use super::openapi::schemas as doc;
use super::{
    State, error,
    wait::{WaitQuery, after_change},
};
use crate::{
    mesh::Mesh,
    studies::{REF_PREFIX, cancel_ref, checkpoint, plan, record},
};

fn refuse(message: impl Into<String>) -> HttpResponse {
    error(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// Everything that can be checked before any trial starts; a sentence
/// names what is wrong.
/// Fills in the default metric of the dataset's task.
async fn check(mesh: &Mesh, spec: &mut StudySpec, max_trials: usize) -> Result<(), String> {
    plan::check(spec, max_trials)?;
    let (_, manifest) = mesh.dataset(&spec.base.dataset).await?;
    let task = crate::jobs::submit::runnable(&spec.base, &manifest)?;
    let metric = *spec.metric.get_or_insert(default_metric(task));
    if metric.task() != task {
        return Err(format!(
            "metric: {} measures {:?}, and dataset '{}' makes a {:?} task",
            metric.name(),
            metric.task(),
            spec.base.dataset,
            task
        )
        .to_lowercase());
    }
    if manifest.split_rows[1] == 0 {
        return Err(format!(
            "dataset '{}' has no validation rows to judge trials on: ingest it with a validation fraction \
             (mass data put --validation 0.2)",
            spec.base.dataset
        ));
    }
    Ok(())
}

/// `POST /v1/studies`: checks the study, then opens its journal; the
/// top-ranked live peer for its id drives it. The same spec is the same
/// study.
#[utoipa::path(
    post,
    path = "/v1/studies",
    operation_id = "studies_submit",
    tag = "studies",
    summary = "Open a hyperparameter study (search space, strategy grid|random|tpe|genetic, optional ASHA, \
        metric on the validation rows, trial budget, parallelism); answers its id at once; the mesh drives it",
    request_body(content = doc::StudySpecSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "OK", body = doc::Submitted, content_type = "application/json"),
        (status = 400, description = "bad name", body = doc::ErrorBody),
        (status = 422, description = "the study cannot run (unknown parameter, empty or inverted range, budget past http.max_trials, a metric of the other task, no validation rows), with the reason", body = doc::ErrorBody),
    ),
)]
pub async fn submit(state: web::Data<State>, body: web::Json<StudySpec>) -> HttpResponse {
    let mut spec = body.into_inner();
    if let Err(reason) = validate_ref_name(&format!("model/{}", spec.name)) {
        return error(StatusCode::BAD_REQUEST, format!("name: {reason}"));
    }
    let mesh = state.mesh();
    if let Err(reason) = check(&mesh, &mut spec, state.max_trials).await {
        return refuse(reason);
    }
    let id = match mesh.save(&spec, BlobKind::Checkpoint).await {
        Ok(id) => id,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    match record(&mesh, id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            if let Err(e) = checkpoint(&mesh, &plan::open(id, spec)).await {
                return error(StatusCode::INTERNAL_SERVER_ERROR, e);
            }
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
    HttpResponse::Ok().json(serde_json::json!({ "id": id }))
}

/// The journal as a reader sees it: cancelled once the flag is set, even
/// before the driver has written so.
async fn current(mesh: &Mesh, id: ContentId) -> Result<Option<StudyRecord>, String> {
    let Some(mut record) = record(mesh, id).await? else { return Ok(None) };
    if !record.state.is_over() && mesh.resolve(&cancel_ref(&id)).await?.is_some() {
        record.state = StudyState::Cancelled;
    }
    Ok(Some(record))
}

fn parse(id: &str) -> Result<ContentId, HttpResponse> {
    id.parse().map_err(|e| error(StatusCode::BAD_REQUEST, format!("{e}")))
}

/// `GET /v1/studies/{id}`: the study's journal.
#[utoipa::path(
    get,
    path = "/v1/studies/{id}",
    operation_id = "studies_show",
    tag = "studies",
    summary = "A study's journal: every trial's parameters, runs (resource, job, score, where it ran), state; \
        the winner and its test metrics",
    params(
        ("id" = String, Path, description = "64 hex digits (blake3)"),
        ("wait_ms" = Option<u64>, Query, description = "for an open study: answer when its journal is next written here (a trial proposed, scored or stopped, its end, a cancel) or after this many milliseconds, whichever is first (at most 30000)"),
    ),
    responses(
        (status = 200, description = "OK", body = Object),
        (status = 400, description = "not a study id (64 hex digits), or wait_ms over 30000", body = doc::ErrorBody),
        (status = 404, description = "no such study", body = doc::ErrorBody),
    ),
)]
pub async fn show(state: web::Data<State>, id: web::Path<String>, query: web::Query<WaitQuery>) -> HttpResponse {
    let id = match parse(&id) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let wait = match query.wait() {
        Ok(wait) => wait,
        Err(refused) => return refused,
    };
    let mesh = state.mesh();
    // Its journal's ref, or its cancel flag, written.
    let names = [format!("{REF_PREFIX}{id}"), cancel_ref(&id)];
    match after_change(&mesh, &names, wait, || current(&mesh, id), |r: &StudyRecord| r.state.is_over()).await {
        Ok(Some(record)) => HttpResponse::Ok().json(record),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no study {id}")),
        Err(message) => error(StatusCode::SERVICE_UNAVAILABLE, message),
    }
}

/// `POST /v1/studies/{id}/cancel`: stops proposing trials and cancels the
/// running ones at the driver's next look.
#[utoipa::path(
    post,
    path = "/v1/studies/{id}/cancel",
    operation_id = "studies_cancel",
    tag = "studies",
    summary = "Cancel a study and its running trials",
    params(
        ("id" = String, Path, description = "64 hex digits (blake3)"),
    ),
    responses(
        (status = 200, description = "OK", body = Object),
        (status = 404, description = "no such study", body = doc::ErrorBody),
        (status = 409, description = "already over", body = doc::ErrorBody),
    ),
)]
pub async fn cancel(state: web::Data<State>, id: web::Path<String>) -> HttpResponse {
    let id = match parse(&id) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let mesh = state.mesh();
    let record = match current(&mesh, id).await {
        Ok(Some(record)) => record,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no study {id}")),
        Err(message) => return error(StatusCode::SERVICE_UNAVAILABLE, message),
    };
    if record.state.is_over() {
        return error(StatusCode::CONFLICT, format!("study {id} is already {:?}", record.state).to_lowercase());
    }
    match mesh.write_ref(cancel_ref(&id), Some(id)).await {
        Ok(_) => HttpResponse::Ok().json(StudyRecord { state: StudyState::Cancelled, ..record }),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /v1/studies`: every study this node knows.
#[utoipa::path(
    get,
    path = "/v1/studies",
    operation_id = "studies_list",
    tag = "studies",
    summary = "Every study this node knows, with its journal",
    responses(
        (status = 200, description = "OK", body = Vec<Object>),
    ),
)]
pub async fn list(state: web::Data<State>) -> HttpResponse {
    let mesh = state.mesh();
    let refs = match mesh.storage.refs().await {
        Ok(refs) => refs,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut out = Vec::new();
    for id in crate::jobs::watcher::record_ids(&refs, REF_PREFIX) {
        if let Ok(Some(record)) = current(&mesh, id).await {
            out.push(record);
        }
    }
    HttpResponse::Ok().json(out)
}
