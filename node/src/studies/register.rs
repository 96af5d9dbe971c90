//! Naming a study's winner: its trial model (kept unnamed, judged on the
//! validation rows) is judged on the test rows, which no trial saw, each
//! shard by a node holding it, and
//! registered as a new version of `model/<name>` with the study in its
//! lineage.

use std::sync::Arc;

use mass_protocol::{
    ContentId,
    dataset::{DatasetManifest, Split},
    evaluation::EvaluationRows,
    jobs::Evaluation,
    storage::BlobKind,
    studies::StudyRecord,
};

use crate::{
    jobs::{MODEL_PREFIX, driver, evaluate, judge},
    mesh::Mesh,
};

/// Registers trial `trial`'s model; its manifest id and test figures.
pub async fn register(mesh: &Mesh, record: &StudyRecord, trial: usize) -> Result<(ContentId, Evaluation), String> {
    let run = record.trials.get(trial).and_then(|t| t.runs.last()).ok_or(format!("no trial {trial} to register"))?;
    let job = driver::record(mesh, run.job).await?.ok_or_else(|| format!("the winner's job {} is gone", run.job))?;
    let model_id = job.model.ok_or_else(|| format!("the winner's job {} has no model", run.job))?;
    let mut model = mesh.load_model(model_id).await?;
    let pipeline = mesh.load_pipeline(model.pipeline).await?;
    let (members, meta) = judge::members(mesh, &model.members, model.meta).await?;
    let dataset: DatasetManifest = mesh.load(model.dataset_manifest).await?;
    // Judged where the test rows live, as a job's model is.
    let judged = judge::Judged {
        pipeline_id: model.pipeline,
        pipeline: Arc::new(pipeline),
        member_ids: model.members.clone(),
        members: Arc::new(members),
        meta_id: model.meta,
        meta: Arc::new(meta),
        combine: model.combine.clone(),
    };
    let tallies = judge::across_shards(mesh, &dataset, &judged, EvaluationRows::Split(Split::Test), true).await?;
    let (test, _) = tallies.evaluation(&evaluate::what(Split::Test))?;
    model.name = record.spec.name.clone();
    model.evaluation = test.clone();
    model.study = Some(record.id);
    let id = mesh.save(&model, BlobKind::Model).await?;
    mesh.write_ref(format!("{MODEL_PREFIX}{}", record.spec.name), Some(id)).await.map_err(|e| e.to_string())?;
    Ok((id, test))
}
