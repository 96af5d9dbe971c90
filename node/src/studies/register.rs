//! Naming a study's winner: its trial model (kept unnamed, judged on the
//! validation rows) is judged on the test rows, which no trial saw, and
//! registered as a new version of `model/<name>` with the study in its
//! lineage.

use mass_kernels::models::Member;
use mass_protocol::{ContentId, dataset::DatasetManifest, jobs::Evaluation, storage::BlobKind, studies::StudyRecord};

use crate::{
    compute::Work,
    jobs::{MODEL_PREFIX, driver, evaluate},
    mesh::Mesh,
};

/// Registers trial `trial`'s model; its manifest id and test figures.
pub async fn register(mesh: &Mesh, record: &StudyRecord, trial: usize) -> Result<(ContentId, Evaluation), String> {
    let run = record.trials.get(trial).and_then(|t| t.runs.last()).ok_or(format!("no trial {trial} to register"))?;
    let job = driver::record(mesh, run.job).await?.ok_or_else(|| format!("the winner's job {} is gone", run.job))?;
    let model_id = job.model.ok_or_else(|| format!("the winner's job {} has no model", run.job))?;
    let mut model = mesh.load_model(model_id).await?;
    let pipeline = mesh.load_pipeline(model.pipeline).await?;
    let mut members: Vec<Member> = Vec::new();
    for id in &model.members {
        members.push(mesh.load(*id).await?);
    }
    let meta = match model.meta {
        Some(id) => match mesh.load::<Member>(id).await? {
            Member::Mlp(meta) => Some(meta),
            _ => return Err(format!("the winner's meta-model {id} is not a network")),
        },
        None => None,
    };
    let dataset: DatasetManifest = mesh.load(model.dataset_manifest).await?;
    let mut shards = Vec::new();
    for info in &dataset.shards {
        shards.push(mesh.load_shard(info.id).await?);
    }
    let combine = model.combine.clone();
    let test = mesh
        .compute
        .run_waiting(Work::Evaluation, move || {
            evaluate::evaluate_and_report(&pipeline, &members, &combine, meta.as_ref(), &shards)
        })
        .await?;
    model.name = record.spec.name.clone();
    model.evaluation = test.clone();
    model.study = Some(record.id);
    let id = mesh.save(&model, BlobKind::Model).await?;
    mesh.write_ref(format!("{MODEL_PREFIX}{}", record.spec.name), Some(id)).await.map_err(|e| e.to_string())?;
    Ok((id, test))
}
