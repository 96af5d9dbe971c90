//! Accepting a job: every check that can be made before it runs (its
//! settings, its dataset, the task, the memory it needs), then a pending
//! record that the top-ranked live peer picks up.

use mass_protocol::{
    ContentId,
    dataset::{ColumnKind, DatasetManifest},
    features::Select,
    jobs::{EnsembleSpec, JobRecord, JobSpec, Learner, MAX_FOLDS, Task, resolve_task},
    storage::{BlobKind, validate_ref_name},
};

use super::driver::{checkpoint, record};
use crate::mesh::Mesh;

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
    if let Some(folds) = spec.cv {
        if !(2..=MAX_FOLDS).contains(&folds) {
            return Err(format!("cv: {folds} folds; cross-validation takes 2 to {MAX_FOLDS}"));
        }
        if spec.trial.is_some() {
            return Err("cv: a study's trial is judged on the validation rows, not cross-validated".into());
        }
        if manifest.split_rows[0] < u64::from(folds) * 2 {
            return Err(format!(
                "cv: {} training rows cannot make {folds} folds of at least two rows",
                manifest.split_rows[0]
            ));
        }
    }
    if spec.trial.is_some() && manifest.split_rows[1] == 0 {
        return Err("a study judges trials on validation rows, and the dataset has none: ingest it with a \
                    validation fraction (mass data put --validation 0.2)"
            .into());
    }
    Ok(task)
}

/// Features the default pipeline would make of the dataset's columns (an
/// upper bound before it is fitted): one per number, one per category seen,
/// the hash buckets of each text column.
pub(crate) fn feature_bound(spec: &JobSpec, manifest: &DatasetManifest) -> u64 {
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

/// Why a job was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The request itself is malformed (a bad model name).
    #[error("{0}")]
    BadRequest(String),
    /// The job cannot run: a sentence says why.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Internal(String),
}

/// Checks the job can run, then records it as pending (the top-ranked live
/// peer for its id picks it up). The same spec is the same job: submitting
/// it again returns the first one's id.
pub async fn submit(mesh: &Mesh, spec: JobSpec) -> Result<ContentId, SubmitError> {
    validate_ref_name(&format!("model/{}", spec.model))
        .map_err(|reason| SubmitError::BadRequest(format!("model name: {reason}")))?;
    spec.spec.validate().and_then(|()| spec.ensemble.validate()).map_err(SubmitError::Refused)?;
    let started = std::time::Instant::now();
    let (_, manifest) = mesh.dataset(&spec.dataset).await.map_err(SubmitError::Refused)?;
    let task = runnable(&spec, &manifest).map_err(SubmitError::Refused)?;
    fits_a_node(mesh, &spec, &manifest, task).await.map_err(SubmitError::Refused)?;
    let id = mesh.save(&spec, BlobKind::Checkpoint).await.map_err(SubmitError::Internal)?;
    if record(mesh, id).await.map_err(SubmitError::Internal)?.is_some() {
        return Ok(id);
    }
    let pending = JobRecord::pending(id, spec);
    checkpoint(mesh, &pending).await.map_err(SubmitError::Internal)?;
    let ms = started.elapsed().as_millis() as u64;
    tracing::info!(%id, model = %pending.spec.model, ms, "job submitted");
    Ok(id)
}
