//! Composition: a model made of registered models, in a chain (each reads
//! the rows plus the outputs of the one before) or side by side (their
//! answers averaged with weights). It is stored as a model of its own whose
//! manifest names its parts' versions, so it is versioned, promoted, rolled
//! back and served under one name like any model.

use std::sync::Arc;

use mass_protocol::{
    ContentId,
    jobs::{Combine, Evaluation, ModelManifest},
    serving::{Compose, ModelVersion},
    storage::{BlobKind, validate_ref_name},
};

use super::{
    batch::{ShardScores, score_shard, test_metrics},
    model::{LoadedModel, chained, same_columns},
    registry,
    router::ServeError,
};
use crate::{datasets::service::read_manifest, jobs::MODEL_PREFIX, mesh::Mesh};

/// Parts of one composition at most.
pub const MAX_PARTS: usize = 16;

/// The parts' names and weights, checked.
fn parts_of(name: &str, request: &Compose) -> Result<Vec<(String, f64)>, String> {
    let parts: Vec<(String, f64)> = match request {
        Compose::Serial(models) => models.iter().map(|m| (m.clone(), 1.0)).collect(),
        Compose::Parallel(parts) => parts.iter().map(|p| (p.model.clone(), p.weight)).collect(),
    };
    if !(2..=MAX_PARTS).contains(&parts.len()) {
        return Err(format!("a composition takes 2 to {MAX_PARTS} models, not {}", parts.len()));
    }
    if let Some((part, _)) = parts.iter().find(|(p, _)| p == name) {
        return Err(format!("model '{part}' cannot be a part of itself"));
    }
    if let Some((part, weight)) = parts.iter().find(|(_, w)| !w.is_finite() || *w < 0.0) {
        return Err(format!("model '{part}': weight {weight} must be a number not below 0"));
    }
    if parts.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
        return Err("the weights are all 0".into());
    }
    Ok(parts)
}

/// Composes registered models into model `name` (a new version of it).
pub async fn compose(mesh: &Mesh, name: &str, request: Compose) -> Result<ModelVersion, ServeError> {
    validate_ref_name(&format!("{MODEL_PREFIX}{name}")).map_err(|e| ServeError::BadInput(format!("name: {e}")))?;
    let parts = parts_of(name, &request).map_err(ServeError::BadInput)?;
    let mut loaded: Vec<Arc<LoadedModel>> = Vec::new();
    for (part, _) in &parts {
        let (manifest, _) = registry::current(mesh, part).await?;
        loaded.push(mesh.serving.models.get(mesh, manifest).await.map_err(ServeError::Unavailable)?);
    }
    let (first, last) = (&loaded[0], &loaded[loaded.len() - 1]);
    let combine = match &request {
        Compose::Serial(_) => {
            for pair in loaded.windows(2) {
                chained(&pair[0], &pair[1]).map_err(ServeError::BadInput)?;
            }
            Combine::Serial
        }
        Compose::Parallel(_) => {
            for (part, (part_name, _)) in loaded.iter().zip(&parts) {
                same_columns(&first.schema, &part.schema)
                    .map_err(|e| ServeError::BadInput(format!("model '{part_name}': {e}")))?;
                if part.manifest.task != first.manifest.task {
                    return Err(ServeError::BadInput(format!(
                        "model '{part_name}' does {}, model '{}' does {}: parts must share a task",
                        part.manifest.task, parts[0].0, first.manifest.task
                    )));
                }
                if part.manifest.classes != first.manifest.classes {
                    return Err(ServeError::BadInput(format!(
                        "model '{part_name}' predicts other classes than model '{}'",
                        parts[0].0
                    )));
                }
            }
            Combine::WeightedMean(parts.iter().map(|(_, w)| *w).collect())
        }
    };
    let answering = if matches!(combine, Combine::Serial) { last } else { first };
    let mut manifest = ModelManifest {
        name: name.to_owned(),
        job: mesh.save_kept(&request, BlobKind::Model).await.map_err(ServeError::Unavailable)?,
        spec: answering.manifest.spec.clone(),
        dataset_manifest: first.manifest.dataset_manifest,
        pipeline: first.manifest.pipeline,
        members: vec![],
        meta: None,
        curves: vec![],
        classes: answering.manifest.classes.clone(),
        evaluation: answering.manifest.evaluation.clone(),
        trained_on: vec![],
        task: answering.manifest.task,
        combine,
        parts: loaded.iter().map(|p| p.id).collect(),
        study: None,
        compression: None,
        cross_validation: None,
    };
    let model = LoadedModel::composed(ContentId::of(b"new"), manifest.clone(), first.schema.clone(), loaded.clone())
        .map_err(ServeError::BadInput)?;
    manifest.evaluation = evaluate(mesh, model).await?;
    let id = mesh.save(&manifest, BlobKind::Model).await.map_err(ServeError::Unavailable)?;
    mesh.write_ref(format!("{MODEL_PREFIX}{name}"), Some(id))
        .await
        .map_err(|e| ServeError::Unavailable(e.to_string()))?;
    let (versions, _) = registry::versions(mesh, name).await?;
    Ok(versions.into_iter().find(|v| v.manifest == id).expect("just published"))
}

/// The composed model's figures on its first part's test rows.
async fn evaluate(mesh: &Mesh, model: LoadedModel) -> Result<Evaluation, ServeError> {
    let meta = mesh.ensure_local(model.manifest.dataset_manifest).await.map_err(ServeError::Unavailable)?;
    let data = read_manifest(&mesh.storage, &meta).await.map_err(|e| ServeError::Unavailable(e.to_string()))?;
    let mut shards = Vec::new();
    for info in &data.shards {
        shards.push(mesh.load_shard(info.id).await.map_err(ServeError::Unavailable)?);
    }
    let classes = model.manifest.classes.len();
    let scores = mesh.compute.run_waiting(crate::compute::Work::Evaluation, move || {
        let mut all = ShardScores::default();
        for shard in &shards {
            let (scores, _) = score_shard(&model, shard)?;
            all.classes.extend(scores.classes);
            all.values.extend(scores.values);
        }
        Ok::<_, String>(all)
    });
    let scores = scores.await.map_err(ServeError::BadInput)?;
    test_metrics(&scores, classes).ok_or_else(|| ServeError::BadInput("the parts' dataset has no test rows".into()))
}

#[cfg(test)]
mod tests {
    use mass_protocol::serving::ComposePart;

    use super::*;

    #[test]
    fn bad_compositions_are_named() {
        let part = |m: &str, w| ComposePart { model: m.into(), weight: w };
        let err = |r| parts_of("c", &r).unwrap_err();
        assert!(err(Compose::Serial(vec!["a".into()])).contains("2 to 16 models"));
        assert!(err(Compose::Serial(vec!["a".into(), "c".into()])).contains("'c' cannot be a part of itself"));
        assert!(err(Compose::Parallel(vec![part("a", -1.0), part("b", 1.0)])).contains("'a': weight -1"));
        assert!(err(Compose::Parallel(vec![part("a", 0.0), part("b", 0.0)])).contains("all 0"));
        assert_eq!(parts_of("c", &Compose::Parallel(vec![part("a", 0.3), part("b", 0.7)])).unwrap().len(), 2);
    }
}
