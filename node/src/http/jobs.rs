//! `/v1/jobs`: submit a training job to any node, follow it from any node.

use actix_web::{HttpResponse, http::StatusCode, web};
use mass_protocol::{
    ContentId,
    dataset::{ColumnKind, DatasetManifest},
    features::Select,
    jobs::{EnsembleSpec, JobRecord, JobSpec, JobState, Learner, Task, resolve_task},
    storage::validate_ref_name,
};

use super::{State, error};
use crate::jobs::{
    REF_PREFIX,
    driver::{cancel_ref, checkpoint, record},
};

fn refuse(message: impl Into<String>) -> HttpResponse {
    error(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// Whether `spec` can run on the dataset `manifest` describes: a sentence
/// naming what is wrong when it cannot.
pub fn runnable(spec: &JobSpec, manifest: &DatasetManifest) -> Result<Task, String> {
    let label = &manifest.schema.columns[manifest.schema.label];
    let task = resolve_task(spec.task, &label.name, label.kind, manifest.label_histogram())?;
    let missing = manifest.stats[manifest.schema.label].missing;
    if missing > 0 {
        return Err(format!(
            "label '{}' is missing in {missing} row(s); drop those rows or fill them in before training",
            label.name
        ));
    }
    if task == Task::Regression && matches!(spec.pipeline.select, Select::MutualInfo { .. }) {
        return Err("pipeline.select: mutual information needs classes; a regression label has none".into());
    }
    mass_kernels::features::fit::check(&spec.pipeline, &manifest.schema).map_err(|e| format!("pipeline.{e}"))?;
    match &spec.spec.learner {
        Learner::Gbdt(_) => {
            let p = &spec.pipeline;
            if p.pca.is_some() || p.bins.is_some() || !p.cross.is_empty() {
                return Err("pipeline: tree models split on the columns themselves; crosses, bins and \
                            principal components are for linear and mlp models"
                    .into());
            }
            if let Some(text) = manifest
                .schema
                .columns
                .iter()
                .enumerate()
                .find(|(i, c)| *i != manifest.schema.label && c.kind == ColumnKind::Text)
            {
                return Err(format!(
                    "column '{}' is text: tree models take numeric and categorical columns only; \
                     drop it or train a linear or mlp model",
                    text.1.name
                ));
            }
        }
        Learner::Linear | Learner::Mlp { .. } => {}
    }
    if matches!(spec.ensemble, EnsembleSpec::DataParallel { .. }) && !matches!(spec.spec.learner, Learner::Mlp { .. }) {
        return Err(format!(
            "ensemble: data-parallel averages network weights; the {} learner cannot be averaged (use bagging)",
            spec.spec.learner.name()
        ));
    }
    if manifest.split_rows[0] == 0 || manifest.split_rows[2] == 0 {
        return Err("the dataset needs both training and test rows".into());
    }
    Ok(task)
}

/// `POST /v1/jobs`: checks the job can run, then records it as pending; the
/// top-ranked live peer for its id picks it up.
pub async fn submit(state: web::Data<State>, body: web::Json<JobSpec>) -> HttpResponse {
    let spec = body.into_inner();
    if let Err(reason) = validate_ref_name(&format!("model/{}", spec.model)) {
        return error(StatusCode::BAD_REQUEST, format!("model name: {reason}"));
    }
    if let Err(reason) = spec.spec.validate().and_then(|()| spec.ensemble.validate()) {
        return refuse(reason);
    }
    let mesh = state.mesh();
    let manifest = match mesh.dataset(&spec.dataset).await {
        Ok((_, manifest)) => manifest,
        Err(message) => return refuse(message),
    };
    if let Err(reason) = runnable(&spec, &manifest) {
        return refuse(reason);
    }
    let id = match mesh.save(&spec).await {
        Ok(id) => id,
        Err(message) => return error(StatusCode::INTERNAL_SERVER_ERROR, message),
    };
    // The same spec is the same job: submitting it again follows the first.
    match record(&mesh, id).await {
        Ok(Some(_)) => return HttpResponse::Ok().json(serde_json::json!({ "id": id })),
        Ok(None) => {}
        Err(message) => return error(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
    let pending = JobRecord {
        task: None,
        setup: None,
        boost: None,
        id,
        spec,
        state: JobState::Pending,
        drivers: vec![],
        dataset_manifest: None,
        pipeline: None,
        tasks: vec![],
        rounds_done: 0,
        averaged_from: vec![],
        evaluation: None,
        model: None,
    };
    match checkpoint(&mesh, &pending).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "id": id })),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

/// `GET /v1/jobs/{id}`: the job's last checkpoint.
pub async fn show(state: web::Data<State>, id: web::Path<String>) -> HttpResponse {
    let id: ContentId = match id.parse() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("{e}")),
    };
    match record(&state.mesh(), id).await {
        Ok(Some(record)) => HttpResponse::Ok().json(record),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(message) => error(StatusCode::SERVICE_UNAVAILABLE, message),
    }
}

/// `GET /v1/jobs/{id}/progress`: the epoch and loss each running task of
/// the job last reported, as this node heard them.
pub async fn progress(state: web::Data<State>, id: web::Path<String>) -> HttpResponse {
    match id.parse::<ContentId>() {
        Ok(id) => HttpResponse::Ok().json(state.mesh.progress.of(&id)),
        Err(e) => error(StatusCode::BAD_REQUEST, format!("{e}")),
    }
}

/// `POST /v1/jobs/{id}/cancel`: stops the job at its driver's next checkpoint.
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
pub async fn list(state: web::Data<State>) -> HttpResponse {
    let mesh = state.mesh();
    let refs = match state.mesh.storage.refs().await {
        Ok(refs) => refs,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut out = Vec::new();
    for r in refs.iter().filter(|r| r.name.starts_with(REF_PREFIX)) {
        if let Ok(id) = r.name[REF_PREFIX.len()..].parse::<ContentId>()
            && let Ok(Some(record)) = record(&mesh, id).await
        {
            out.push(record);
        }
    }
    HttpResponse::Ok().json(out)
}
