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
    jobs::{Assignment, ModelSpec, TrainingProgress, held_out_for_stacking},
};
use ndarray::{Array2, Axis, concatenate};

use crate::mesh::Mesh;

/// Features and class indices of the rows of `shard` in `split`.
pub fn rows_of(pipeline: &FittedPipeline, shard: &Shard, split: Split) -> Result<(Array2<f32>, Vec<usize>), String> {
    rows_where(pipeline, shard, |s, _| s == split)
}

/// Features and class indices of the rows of `shard` for which
/// `keep(split, global row number)` holds.
pub fn rows_where(
    pipeline: &FittedPipeline,
    shard: &Shard,
    keep: impl Fn(Split, u64) -> bool,
) -> Result<(Array2<f32>, Vec<usize>), String> {
    let classes: HashMap<&str, usize> = pipeline.classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    let features = transform(pipeline, shard).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for r in (0..shard.rows()).filter(|&r| keep(shard.splits[r], shard.first_row + r as u64)) {
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

/// What a trainer reports back.
pub struct Trained {
    pub weights: ContentId,
    pub rows: u64,
    /// Training loss after each epoch.
    pub curve: Vec<f64>,
}

/// Trains one sub-model on the training rows of its shards (fetched if this
/// node lacks them), starting from the average of `start` when given, and
/// stores its weights. Every epoch is reported on the progress board and
/// gossiped, so any node can show how the job is going.
pub async fn train(mesh: &Mesh, work: Assignment) -> Result<Trained, String> {
    // Peers send specs too; a trainer checks what it is asked to do.
    work.spec.validate()?;
    let start = if work.start.is_empty() { None } else { Some(average(mesh, &work.start).await?) };
    let pipeline: FittedPipeline = mesh.load(work.pipeline).await?;
    let mut loaded = Vec::new();
    for id in &work.shards {
        loaded.push(mesh.load::<Shard>(*id).await?);
    }
    let (net, board, peer) = (mesh.net.clone(), mesh.progress.clone(), mesh.peer_id.clone());
    let (model, rows, curve) = tokio::task::spawn_blocking(move || -> Result<(Mlp, u64, Vec<f64>), String> {
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        let holdout = work.holdout;
        for shard in &loaded {
            let (x, y) =
                rows_where(&pipeline, shard, |s, row| s == Split::Train && !(holdout && held_out_for_stacking(row)))?;
            xs.push(x);
            ys.extend(y);
        }
        if ys.is_empty() {
            return Err("the shards hold no training rows".into());
        }
        let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
        let x = concatenate(Axis(0), &views).map_err(|e| e.to_string())?;
        let target = Target::Classes { labels: &ys, classes: pipeline.classes.len() };
        let epochs = work.spec.epochs as u32;
        let mut report = |epoch: usize, loss: f64| {
            let progress = TrainingProgress { job: work.job, task: work.task, epoch: epoch as u32 + 1, epochs, loss };
            board.record(peer.clone(), progress.clone());
            net.publish_progress(progress);
        };
        let config = config(&work.spec, work.seed);
        let (model, curve) = Mlp::fit_reporting(start, x.view(), target, None, &config, &mut report);
        Ok((model, ys.len() as u64, curve.train_loss))
    })
    .await
    .map_err(|e| format!("training task failed: {e}"))??;
    Ok(Trained { weights: mesh.save(&model).await?, rows, curve })
}
