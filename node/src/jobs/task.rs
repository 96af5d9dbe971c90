//! One sub-model: read the training rows of some shards through a fitted
//! pipeline and train on them, off the event loop.

use std::collections::HashMap;

use mass_kernels::{
    features::{summarize::label_text, transform},
    models::{Mlp, MlpConfig, Optimizer, Target},
};
use mass_protocol::{
    ContentId,
    dataset::{Shard, Split},
    features::FittedPipeline,
    jobs::ModelSpec,
};
use ndarray::{Array2, Axis, concatenate};

use crate::mesh::Mesh;

/// Features and class indices of the rows of `shard` in `split`.
pub fn rows_of(pipeline: &FittedPipeline, shard: &Shard, split: Split) -> Result<(Array2<f32>, Vec<usize>), String> {
    let classes: HashMap<&str, usize> = pipeline.classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    let features = transform(pipeline, shard).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for r in (0..shard.rows()).filter(|&r| shard.splits[r] == split) {
        // Rows whose class never appeared in training rows cannot be scored.
        if let Some(&class) = label_text(shard, pipeline.label, r).as_deref().and_then(|l| classes.get(l)) {
            rows.push(r);
            labels.push(class);
        }
    }
    Ok((features.select(Axis(0), &rows), labels))
}

pub fn config(spec: &ModelSpec, seed: u64) -> MlpConfig {
    MlpConfig {
        hidden: spec.hidden.clone(),
        optimizer: Optimizer::Adam { learning_rate: spec.learning_rate },
        batch_size: spec.batch_size,
        epochs: spec.epochs,
        l2: spec.l2,
        seed,
        ..MlpConfig::default()
    }
}

/// The row-weighted average of stored weights: the all-reduce step of
/// data-parallel training, computed by whoever needs it from the blobs.
pub async fn average(mesh: &Mesh, weights: &[(ContentId, u64)]) -> Result<Mlp, String> {
    let mut models = Vec::new();
    for (id, rows) in weights {
        models.push((mesh.load::<Mlp>(*id).await?, *rows as f64));
    }
    let refs: Vec<(&Mlp, f64)> = models.iter().map(|(m, w)| (m, *w)).collect();
    mass_kernels::models::ensemble::average(&refs).map_err(|e| e.to_string())
}

/// Trains one sub-model on the training rows of `shards` (fetched if this
/// node lacks them), starting from the average of `start` when given, and
/// stores its weights. Returns the weights' id and rows.
pub async fn train(
    mesh: &Mesh,
    shards: &[ContentId],
    pipeline: ContentId,
    spec: ModelSpec,
    seed: u64,
    start: &[(ContentId, u64)],
) -> Result<(ContentId, u64), String> {
    // Peers send specs too; a trainer checks what it is asked to do.
    spec.validate()?;
    let start = if start.is_empty() { None } else { Some(average(mesh, start).await?) };
    let pipeline: FittedPipeline = mesh.load(pipeline).await?;
    let mut loaded = Vec::new();
    for id in shards {
        loaded.push(mesh.load::<Shard>(*id).await?);
    }
    let model = tokio::task::spawn_blocking(move || -> Result<(Mlp, u64), String> {
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for shard in &loaded {
            let (x, y) = rows_of(&pipeline, shard, Split::Train)?;
            xs.push(x);
            ys.extend(y);
        }
        if ys.is_empty() {
            return Err("the shards hold no training rows".into());
        }
        let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
        let x = concatenate(Axis(0), &views).map_err(|e| e.to_string())?;
        let target = Target::Classes { labels: &ys, classes: pipeline.classes.len() };
        let (model, _) = Mlp::fit_from(start, x.view(), target, None, &config(&spec, seed));
        Ok((model, ys.len() as u64))
    })
    .await
    .map_err(|e| format!("training task failed: {e}"))??;
    let (model, rows) = model;
    Ok((mesh.save(&model).await?, rows))
}
