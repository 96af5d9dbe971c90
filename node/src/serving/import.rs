//! Models entering the mesh: a safetensors weight file of dense networks
//! trained elsewhere, registered as a new version of a model that reads a
//! stored dataset's columns.
//!
//! Everything is checked before anything is stored: the file's tensors
//! against their declared shapes and each other, the pipeline against the
//! dataset's columns, the networks against the pipeline's features and the
//! classes, and the whole model by predicting the dataset's test rows. A
//! refused file leaves nothing registered (its uploaded blob, unpinned, is
//! collected like any other).

use mass_kernels::{
    formats::safetensors::{self, ImportError, parse_activation},
    models::{Member, Mlp},
};
use mass_protocol::{
    ContentId,
    dataset::DatasetManifest,
    features::FittedPipeline,
    jobs::{EnsembleSpec, JobSpec, Learner, ModelManifest, ModelSpec},
    serving::{ImportModel, ImportPipeline, ModelVersion},
    storage::{BlobKind, validate_ref_name},
};

use super::{model::LoadedModel, registry, router::ServeError};
use crate::{
    compute::Work,
    jobs::{MODEL_PREFIX, evaluate},
    mesh::{FitFailure, Mesh},
};

/// The largest weight file imported: 1 GiB.
pub const MAX_IMPORT: u64 = 1 << 30;

/// Registers the weight file of `request` as a new version of model `name`.
pub async fn import(mesh: &Mesh, name: &str, request: ImportModel) -> Result<ModelVersion, ServeError> {
    validate_ref_name(&format!("{MODEL_PREFIX}{name}")).map_err(|e| ServeError::BadInput(format!("name: {e}")))?;
    let (dataset_id, dataset) = mesh.dataset(&request.dataset).await.map_err(ServeError::NotFound)?;
    let bytes = mesh
        .load_bytes(request.blob, MAX_IMPORT)
        .await
        .map_err(|e| ServeError::NotFound(format!("weight file: {e}")))?;
    let refused = |e: ImportError| ServeError::BadInput(format!("weight file {}: {e}", request.blob));
    let file = safetensors::read(&bytes).map_err(refused)?;
    let activation = request.activation.as_deref().map(parse_activation).transpose().map_err(refused)?;
    let pipeline = match &request.pipeline {
        Some(ImportPipeline::Spec(spec)) => match mesh.fit_pipeline(&dataset, spec).await {
            Ok((pipeline, _, _)) => pipeline,
            Err(FitFailure::Invalid(m)) => return Err(ServeError::BadInput(format!("pipeline spec: {m}"))),
            Err(FitFailure::Unavailable(m)) => return Err(ServeError::Unavailable(m)),
        },
        Some(ImportPipeline::Fitted(pipeline)) => (**pipeline).clone(),
        None => file.pipeline().map_err(refused)?.ok_or_else(|| refused(ImportError::NoPipeline))?,
    };
    reads_dataset(&pipeline, &request.dataset, &dataset).map_err(ServeError::BadInput)?;
    let networks = file.into_networks(pipeline, activation).map_err(refused)?;
    let (pipeline, combine) = (networks.pipeline, networks.combine);
    let members: Vec<Member> = networks.members.into_iter().map(Member::Mlp).collect();

    let placeholder = ContentId::of(b"imported");
    let mut manifest = ModelManifest {
        name: name.to_owned(),
        job: placeholder,
        spec: job_spec(name, &request.dataset, &pipeline, &members),
        dataset_manifest: dataset_id,
        pipeline: placeholder,
        members: vec![placeholder; members.len()],
        meta: None,
        curves: vec![],
        classes: pipeline.classes.clone(),
        // Measured below, once the model is known to be whole.
        evaluation: mass_protocol::jobs::Evaluation::regression(0, 0.0, 0.0, 0.0),
        trained_on: vec![],
        task: pipeline.task,
        combine: combine.clone(),
        parts: vec![],
        study: None,
        compression: None,
        cross_validation: None,
    };
    LoadedModel::trained(
        placeholder,
        manifest.clone(),
        dataset.schema.clone(),
        pipeline.clone(),
        members.clone(),
        None,
    )
    .map_err(|e| ServeError::BadInput(format!("weight file {}: {e}", request.blob)))?;
    manifest.evaluation = evaluate_on_test_rows(mesh, &dataset, &pipeline, &members, &combine).await?;

    // Checked: store the parts (pinned, as a job's are), then the version.
    manifest.pipeline = mesh.save_kept(&pipeline, BlobKind::Pipeline).await.map_err(ServeError::Unavailable)?;
    for (slot, member) in manifest.members.iter_mut().zip(&members) {
        *slot = mesh.save_kept(member, BlobKind::Model).await.map_err(ServeError::Unavailable)?;
    }
    manifest.job = mesh.save_kept(&request, BlobKind::Model).await.map_err(ServeError::Unavailable)?;
    let id = mesh.save(&manifest, BlobKind::Model).await.map_err(ServeError::Unavailable)?;
    mesh.write_ref(format!("{MODEL_PREFIX}{name}"), Some(id))
        .await
        .map_err(|e| ServeError::Unavailable(e.to_string()))?;
    let (versions, _) = registry::versions(mesh, name).await?;
    Ok(versions.into_iter().find(|v| v.manifest == id).expect("just published"))
}

/// Whether `pipeline` reads the columns of `dataset`, in order, with the
/// label in the same place.
fn reads_dataset(pipeline: &FittedPipeline, name: &str, dataset: &DatasetManifest) -> Result<(), String> {
    let columns: Vec<&str> = dataset.schema.columns.iter().map(|c| c.name.as_str()).collect();
    let read: Vec<&str> = pipeline.columns.iter().map(String::as_str).collect();
    if columns != read {
        return Err(format!(
            "the pipeline reads columns {}, but dataset '{name}' has {}",
            read.join(", "),
            columns.join(", ")
        ));
    }
    if pipeline.label != dataset.schema.label {
        return Err(format!(
            "the pipeline's label is column '{}', but dataset '{name}''s is '{}'",
            read.get(pipeline.label).unwrap_or(&"?"),
            columns[dataset.schema.label]
        ));
    }
    Ok(())
}

/// What the registry shows as the "training" of an imported model.
fn job_spec(name: &str, dataset: &str, pipeline: &FittedPipeline, members: &[Member]) -> JobSpec {
    let hidden = match members.first() {
        Some(Member::Mlp(Mlp { weights, .. })) => weights[1..].iter().map(|w| w.nrows()).collect(),
        _ => vec![],
    };
    JobSpec {
        model: name.to_owned(),
        dataset: dataset.to_owned(),
        pipeline: pipeline.spec.clone(),
        spec: ModelSpec {
            learner: if hidden.is_empty() { Learner::Linear } else { Learner::Mlp { hidden } },
            ..ModelSpec::default()
        },
        ensemble: if members.len() == 1 {
            EnsembleSpec::Single
        } else {
            EnsembleSpec::Bagging { members: members.len() }
        },
        seed: 0,
        task: Some(pipeline.task),
        placement: Default::default(),
        trial: None,
        cv: None,
    }
}

/// The model's figures on the dataset's test rows.
async fn evaluate_on_test_rows(
    mesh: &Mesh,
    dataset: &DatasetManifest,
    pipeline: &FittedPipeline,
    members: &[Member],
    combine: &mass_protocol::jobs::Combine,
) -> Result<mass_protocol::jobs::Evaluation, ServeError> {
    let mut shards = Vec::with_capacity(dataset.shards.len());
    for info in &dataset.shards {
        shards.push(mesh.load_shard(info.id).await.map_err(ServeError::Unavailable)?);
    }
    let (pipeline, members, combine) = (pipeline.clone(), members.to_vec(), combine.clone());
    let evaluated = mesh.compute.run_waiting(Work::Evaluation, move || {
        evaluate::evaluate_and_report(&pipeline, &members, &combine, None, &shards)
    });
    evaluated.await.map_err(|e| ServeError::BadInput(format!("evaluating the model: {e}")))
}

#[cfg(test)]
mod tests {
    use mass_protocol::{
        dataset::{Column, ColumnKind, Schema},
        features::{ColumnTransform, PipelineSpec},
        jobs::Task,
    };

    use super::*;

    fn pipeline(columns: &[&str], label: usize) -> FittedPipeline {
        FittedPipeline {
            spec: PipelineSpec::default(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            transforms: vec![ColumnTransform::Drop; columns.len()],
            label,
            classes: vec!["a".into(), "b".into()],
            features: 0,
            task: Task::Classification,
            target: None,
            crosses: vec![],
            projection: None,
        }
    }

    fn dataset(columns: &[&str], label: usize) -> DatasetManifest {
        DatasetManifest {
            name: "d".into(),
            schema: Schema {
                columns: columns.iter().map(|c| Column { name: c.to_string(), kind: ColumnKind::Numeric }).collect(),
                label,
            },
            rows: 0,
            shards: vec![],
            stats: vec![],
            split: mass_protocol::dataset::SplitSpec::Seeded { seed: 0, validation: 0.0, test: 0.0 },
            split_rows: [0; 3],
            content: ContentId::of(b""),
        }
    }

    #[test]
    fn a_pipeline_of_other_columns_is_refused_by_name() {
        let data = dataset(&["x", "y", "label"], 2);
        assert_eq!(reads_dataset(&pipeline(&["x", "y", "label"], 2), "d", &data), Ok(()));
        let err = reads_dataset(&pipeline(&["x", "z", "label"], 2), "d", &data).unwrap_err();
        assert_eq!(err, "the pipeline reads columns x, z, label, but dataset 'd' has x, y, label");
        let err = reads_dataset(&pipeline(&["x", "y", "label"], 1), "d", &data).unwrap_err();
        assert!(err.contains("label is column 'y'") && err.contains("is 'label'"), "{err}");
    }
}
