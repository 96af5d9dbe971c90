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

/// Features the default pipeline would make of the dataset's columns (an
/// upper bound before it is fitted): one per number, one per category seen,
/// the hash buckets of each text column.
fn feature_bound(spec: &JobSpec, manifest: &DatasetManifest) -> u64 {
    manifest
        .schema
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != manifest.schema.label)
        .map(|(i, c)| match c.kind {
            ColumnKind::Numeric => spec.pipeline.bins.map_or(1, |b| b as u64),
            ColumnKind::Categorical => (manifest.stats[i].counts.len() as u64).max(1),
            ColumnKind::Text => u64::from(spec.pipeline.text.buckets),
        })
        .sum::<u64>()
        .saturating_add(spec.pipeline.cross.len() as u64 * u64::from(spec.pipeline.cross_buckets))
}

/// Whether one node has the free memory training the job's largest task
/// needs (from the nodes' adverts).
async fn fits_a_node(
    mesh: &crate::mesh::Mesh,
    spec: &JobSpec,
    manifest: &DatasetManifest,
    task: Task,
) -> Result<(), String> {
    let rows = match spec.ensemble {
        // Bagged and stacked members train on one shard each.
        EnsembleSpec::Bagging { .. } | EnsembleSpec::Stacking { .. } => {
            manifest.shards.iter().map(|s| s.rows).max().unwrap_or(0)
        }
        _ => manifest.rows,
    };
    let outputs = match task {
        Task::Classification => manifest.label_histogram().len() as u64,
        Task::Regression => 1,
    };
    let needed = crate::jobs::learners::estimate_bytes(&spec.spec, rows, feature_bound(spec, manifest), outputs);
    let peers = mesh.membership.send(crate::membership::GetPeers).await.unwrap_or_default();
    let most = peers.iter().filter_map(|p| p.load.as_ref()).map(|l| l.free_memory_bytes).max();
    match most {
        Some(free) if needed > free => Err(format!(
            "this job needs about {:.1} GiB on one trainer; the most free memory on any node is {:.1} GiB \
             (smaller layers, fewer trees or leaves, or more shards would fit)",
            needed as f64 / (1u64 << 30) as f64,
            free as f64 / (1u64 << 30) as f64
        )),
        _ => Ok(()),
    }
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
    let task = match runnable(&spec, &manifest) {
        Ok(task) => task,
        Err(reason) => return refuse(reason),
    };
    if let Err(reason) = fits_a_node(&mesh, &spec, &manifest, task).await {
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
