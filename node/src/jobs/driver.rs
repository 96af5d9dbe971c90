//! Driving one job from its checkpointed record to a named model.

use futures::{StreamExt, stream::FuturesUnordered};
use mass_kernels::models::{
    Mlp,
    ensemble::{self, argmax_rows},
    metrics,
};
use mass_protocol::{
    ContentId,
    dataset::{Shard, Split},
    features::FittedPipeline,
    jobs::{
        Assignment, EnsembleSpec, Evaluation, JobRecord, JobState, ModelManifest, TaskRecord, held_out_for_stacking,
    },
    rpc::{Request, Response},
};
use ndarray::Array2;
use tracing::{info, warn};

use super::{
    MODEL_PREFIX, REF_PREFIX,
    task::{self, Trained},
};
use crate::{
    mesh::{FitFailure, Mesh},
    placement::{self, Candidate},
    replication::homes,
};
use libp2p::PeerId;

/// The ref that marks job `id` cancelled. It is written once and never
/// moved, so a cancellation cannot be lost to a driver's concurrent
/// checkpoint (record versions are last-writer-wins; this flag is not).
pub fn cancel_ref(id: &ContentId) -> String {
    format!("{REF_PREFIX}{id}/cancel")
}

/// The current record of job `id`, cancelled if its cancel flag is set.
pub async fn record(mesh: &Mesh, id: ContentId) -> Result<Option<JobRecord>, String> {
    let Some(target) = mesh.resolve(&format!("{REF_PREFIX}{id}")).await? else { return Ok(None) };
    let mut record: JobRecord = mesh.load(target).await?;
    if !record.state.is_over() && mesh.resolve(&cancel_ref(&id)).await?.is_some() {
        record.state = JobState::Cancelled;
    }
    Ok(Some(record))
}

/// Stores the record and points `job/<id>` at it: the checkpoint. A job
/// cancelled meanwhile stays cancelled: the driver's write is refused.
pub async fn checkpoint(mesh: &Mesh, record: &JobRecord) -> Result<(), String> {
    if mesh.resolve(&cancel_ref(&record.id)).await?.is_some() {
        return Err(format!("job {} was cancelled", record.id));
    }
    let id = mesh.save(record).await?;
    mesh.write_ref(format!("{REF_PREFIX}{}", record.id), Some(id)).await.map(|_| ()).map_err(|e| e.to_string())
}

/// Why a drive stopped short.
#[derive(Debug)]
enum Stop {
    /// The job cannot succeed (no such dataset, data that does not fit): it
    /// is recorded as failed.
    Invalid(String),
    /// Something may work later (a peer went away, a blob is not reachable
    /// yet): the record stays open and the watcher tries again.
    Transient(String),
}

impl From<String> for Stop {
    fn from(message: String) -> Self {
        Stop::Transient(message)
    }
}

/// Runs job `id` to the end from wherever its record stands.
pub async fn drive(mesh: Mesh, id: ContentId) -> Result<(), String> {
    let Some(mut record) = record(&mesh, id).await? else { return Err(format!("no record for job {id}")) };
    if record.state.is_over() {
        return Ok(());
    }
    match run(&mesh, &mut record).await {
        Ok(()) => Ok(()),
        Err(Stop::Invalid(message)) => {
            warn!(%id, "job failed: {message}");
            record.state = JobState::Failed(message);
            checkpoint(&mesh, &record).await
        }
        Err(Stop::Transient(message)) => Err(message),
    }
}

async fn run(mesh: &Mesh, record: &mut JobRecord) -> Result<(), Stop> {
    if record.drivers.last() != Some(&mesh.peer_id) {
        record.drivers.push(mesh.peer_id.clone());
    }
    record.state = JobState::Running;
    checkpoint(mesh, record).await?;
    info!(id = %record.id, resumed = record.drivers.len() > 1, "driving job");

    let (manifest_id, manifest) = mesh.dataset(&record.spec.dataset).await.map_err(Stop::Invalid)?;
    if record.pipeline.is_none() {
        let (pipeline, _) = mesh.fit_pipeline(&manifest, &record.spec.pipeline).await.map_err(|e| match e {
            FitFailure::Unavailable(m) => Stop::Transient(m),
            FitFailure::Invalid(m) => Stop::Invalid(m),
        })?;
        record.pipeline = Some(mesh.save(&pipeline).await?);
        record.dataset_manifest = Some(manifest_id);
        checkpoint(mesh, record).await?;
    }
    let pipeline_id = record.pipeline.expect("set above");
    if record.tasks.is_empty() {
        let shards: Vec<ContentId> = manifest.shards.iter().map(|s| s.id).collect();
        let seed = record.spec.seed;
        record.tasks = match record.spec.ensemble {
            EnsembleSpec::Single => vec![TaskRecord::new(shards, seed)],
            // The same seed everywhere: every worker starts from the same weights.
            EnsembleSpec::DataParallel { workers, .. } => (0..workers.min(shards.len()))
                .map(|w| TaskRecord::new(shards.iter().skip(w).step_by(workers).copied().collect(), seed))
                .collect(),
            EnsembleSpec::Bagging { members } | EnsembleSpec::Stacking { members } => {
                (0..members).map(|i| TaskRecord::new(vec![shards[i % shards.len()]], seed + i as u64)).collect()
            }
        };
        checkpoint(mesh, record).await?;
    }

    let pipeline: FittedPipeline = mesh.load(pipeline_id).await?;
    let (members, member_ids) = match record.spec.ensemble {
        EnsembleSpec::DataParallel { rounds, .. } => {
            let model = data_parallel(mesh, record, pipeline_id, rounds).await?;
            let id = mesh.save(&model).await?;
            (vec![model], vec![id])
        }
        _ => {
            let members = bagged(mesh, record, pipeline_id).await?;
            (members, record.tasks.iter().filter_map(|t| t.weights).collect())
        }
    };
    let mut shards = Vec::new();
    for info in &manifest.shards {
        shards.push(mesh.load::<Shard>(info.id).await?);
    }
    let classes = pipeline.classes.clone();
    let stacked = matches!(record.spec.ensemble, EnsembleSpec::Stacking { .. });
    let seed = record.spec.seed;
    let (meta, evaluation, member_accuracy) = tokio::task::spawn_blocking(move || {
        let meta = if stacked { Some(fit_meta(&pipeline, &members, &shards, seed)?) } else { None };
        let (evaluation, accuracy) = evaluate(&pipeline, &members, meta.as_ref(), &shards)?;
        Ok::<_, String>((meta, evaluation, accuracy))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(Stop::Invalid)?;
    let meta = match meta {
        Some(meta) => Some(mesh.save(&meta).await?),
        None => None,
    };
    // Bagged members are models of their own; data-parallel workers are not.
    if !matches!(record.spec.ensemble, EnsembleSpec::DataParallel { .. }) {
        for (task, accuracy) in record.tasks.iter_mut().zip(member_accuracy) {
            task.test_accuracy = Some(accuracy);
        }
    }
    let model = ModelManifest {
        name: record.spec.model.clone(),
        job: record.id,
        spec: record.spec.clone(),
        dataset_manifest: manifest_id,
        pipeline: pipeline_id,
        members: member_ids,
        meta,
        curves: record.tasks.iter().map(|t| t.curve.clone()).collect(),
        classes,
        evaluation: evaluation.clone(),
        trained_on: record.tasks.iter().filter_map(|t| t.peer.clone()).collect(),
    };
    let model_id = mesh.save(&model).await?;
    mesh.write_ref(format!("{MODEL_PREFIX}{}", record.spec.model), Some(model_id))
        .await
        .map_err(|e| Stop::Transient(e.to_string()))?;
    record.evaluation = Some(evaluation);
    record.model = Some(model_id);
    record.state = JobState::Completed;
    checkpoint(mesh, record).await?;
    info!(id = %record.id, model = %model_id, "job completed");
    Ok(())
}

/// What task `index` of `record` asks a trainer to do.
fn assignment(record: &JobRecord, index: usize, pipeline: ContentId, start: &[(ContentId, u64)]) -> Assignment {
    let task = &record.tasks[index];
    Assignment {
        job: record.id,
        task: index as u32,
        shards: task.shards.clone(),
        pipeline,
        spec: record.spec.spec.clone(),
        seed: task.seed,
        start: start.to_vec(),
        holdout: matches!(record.spec.ensemble, EnsembleSpec::Stacking { .. }),
    }
}

fn finish(task: &mut TaskRecord, peer: String, trained: Trained) {
    (task.peer, task.weights, task.rows, task.curve) = (Some(peer), Some(trained.weights), trained.rows, trained.curve);
}

/// Trains every unfinished sub-model (of a single, bagged or stacked model)
/// where its shard lives, then loads them all.
async fn bagged(mesh: &Mesh, record: &mut JobRecord, pipeline: ContentId) -> Result<Vec<Mlp>, Stop> {
    let mut running = FuturesUnordered::new();
    let plans = plan_trainers(mesh, &record.id, &record.tasks).await;
    for (index, order) in plans.into_iter().enumerate().filter(|(i, _)| record.tasks[*i].weights.is_none()) {
        let (mesh, work) = (mesh.clone(), assignment(record, index, pipeline, &[]));
        running.push(async move { (index, train_somewhere(&mesh, work, order).await) });
    }
    while let Some((index, result)) = running.next().await {
        let (peer, trained) = result?;
        finish(&mut record.tasks[index], peer, trained);
        checkpoint(mesh, record).await?;
    }
    let mut members = Vec::new();
    for index in 0..record.tasks.len() {
        let weights = record.tasks[index].weights.expect("trained above");
        match mesh.load::<Mlp>(weights).await {
            Ok(member) => members.push(member),
            Err(message) => {
                // Its only copy went down with a node: train it again.
                record.tasks[index].weights = None;
                checkpoint(mesh, record).await?;
                return Err(Stop::Transient(format!(
                    "sub-model {index} is unreachable ({message}); it will be retrained"
                )));
            }
        }
    }
    Ok(members)
}

/// Runs the remaining rounds of a data-parallel job. In each round every
/// worker averages the previous round's weights itself, trains on its shards,
/// and stores the result; a worker that fails is left out of that round's
/// average. Returns the final averaged model.
async fn data_parallel(mesh: &Mesh, record: &mut JobRecord, pipeline: ContentId, rounds: usize) -> Result<Mlp, Stop> {
    while record.rounds_done < rounds {
        let start = record.averaged_from.clone();
        let mut running = FuturesUnordered::new();
        let plans = plan_trainers(mesh, &record.id, &record.tasks).await;
        for (index, order) in plans.into_iter().enumerate() {
            let (mesh, work) = (mesh.clone(), assignment(record, index, pipeline, &start));
            running.push(async move { (index, train_somewhere(&mesh, work, order).await) });
        }
        let mut outputs: Vec<Option<(ContentId, u64)>> = vec![None; record.tasks.len()];
        while let Some((index, result)) = running.next().await {
            match result {
                Ok((peer, trained)) => {
                    outputs[index] = Some((trained.weights, trained.rows));
                    finish(&mut record.tasks[index], peer, trained);
                }
                Err(e) => warn!(worker = index, round = record.rounds_done, "worker left out of this round: {e}"),
            }
        }
        let outputs: Vec<(ContentId, u64)> = outputs.into_iter().flatten().collect();
        if outputs.is_empty() {
            return Err(Stop::Transient(format!("no worker finished round {}", record.rounds_done)));
        }
        record.averaged_from = outputs;
        record.rounds_done += 1;
        checkpoint(mesh, record).await?;
    }
    Ok(task::average(mesh, &record.averaged_from).await?)
}

/// For each task, the nodes to ask to train it, best first: the homes of
/// its first shard, the less busy one first (tasks already planned count as
/// load, ties go by rank for the task), so a job's sub-models spread evenly
/// over the nodes that hold its data.
async fn plan_trainers(mesh: &Mesh, job: &ContentId, tasks: &[TaskRecord]) -> Vec<Vec<PeerId>> {
    let mut live = mesh.up_peers().await;
    live.push(mesh.net.local_peer_id());
    let mut load: std::collections::HashMap<PeerId, usize> = std::collections::HashMap::new();
    tasks
        .iter()
        .enumerate()
        .map(|(index, task)| {
            let key = [job.as_bytes().as_slice(), &(index as u64).to_le_bytes()].concat();
            let keys: Vec<Vec<u8>> = homes(&task.shards[0], &live, 2).iter().map(|p| p.to_bytes()).collect();
            let ranked: Vec<PeerId> = placement::rank(&key, keys.iter().map(|id| Candidate { id, weight: 1.0 }))
                .into_iter()
                .filter_map(|b| PeerId::from_bytes(b).ok())
                .collect();
            let mut order = ranked.clone();
            order.sort_by_key(|p| load.get(p).copied().unwrap_or(0));
            if let Some(first) = order.first() {
                *load.entry(*first).or_default() += 1;
            }
            order
        })
        .collect()
}

/// Trains a task on the first of `order` that can (this node trains it when
/// it comes first, or when every other node fails).
async fn train_somewhere(mesh: &Mesh, work: Assignment, order: Vec<PeerId>) -> Result<(String, Trained), String> {
    let local = mesh.net.local_peer_id();
    for peer in order {
        if peer == local {
            break;
        }
        match mesh.net.request(peer, Request::TrainTask(Box::new(work.clone()))).await {
            Ok(Response::Trained { weights, rows, curve }) => {
                return Ok((peer.to_string(), Trained { weights, rows, curve }));
            }
            Ok(Response::Error(e)) => warn!(%peer, "training elsewhere failed: {e}"),
            Ok(_) => warn!(%peer, "unexpected answer to a training task"),
            Err(e) => warn!(%peer, "training elsewhere failed: {e}"),
        }
    }
    Ok((mesh.peer_id.clone(), task::train(mesh, work).await?))
}

/// Fits stacking's meta-model on the members' outputs for the training rows
/// they were all trained without.
fn fit_meta(pipeline: &FittedPipeline, members: &[Mlp], shards: &[Shard], seed: u64) -> Result<Mlp, String> {
    let mut outputs: Vec<Vec<Array2<f32>>> = vec![Vec::new(); members.len()];
    let mut labels = Vec::new();
    for shard in shards {
        let (x, y) = task::rows_where(pipeline, shard, |s, row| s == Split::Train && held_out_for_stacking(row))?;
        for (member, out) in members.iter().zip(&mut outputs) {
            out.push(member.predict(x.view()));
        }
        labels.extend(y);
    }
    if labels.is_empty() {
        return Err("stacking found no held-out training rows to fit its meta-model on".into());
    }
    let outputs: Vec<Array2<f32>> = outputs
        .iter()
        .map(|parts| ndarray::concatenate(ndarray::Axis(0), &parts.iter().map(|p| p.view()).collect::<Vec<_>>()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    Ok(ensemble::fit_meta(&outputs, &labels, pipeline.classes.len(), seed))
}

/// Metrics of the combined members, and each member's accuracy, on test rows.
fn evaluate(
    pipeline: &FittedPipeline,
    members: &[Mlp],
    meta: Option<&Mlp>,
    shards: &[Shard],
) -> Result<(Evaluation, Vec<f64>), String> {
    let classes = pipeline.classes.len();
    let mut truth = Vec::new();
    let mut combined: Vec<Vec<f64>> = Vec::new();
    let mut member_predictions: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
    for shard in shards {
        let (x, y) = task::rows_of(pipeline, shard, Split::Test)?;
        if y.is_empty() {
            continue;
        }
        let outputs: Vec<Array2<f32>> = members.iter().map(|m| m.predict(x.view())).collect();
        for (predictions, out) in member_predictions.iter_mut().zip(&outputs) {
            predictions.extend(argmax_rows(out));
        }
        let combined_here = ensemble::combine_outputs(&outputs, meta);
        combined.extend(combined_here.rows().into_iter().map(|r| r.iter().map(|v| f64::from(*v)).collect::<Vec<_>>()));
        truth.extend(y);
    }
    if truth.is_empty() {
        return Err("the dataset has no test rows to evaluate on".into());
    }
    let predicted: Vec<usize> = combined
        .iter()
        .map(|p| p.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0)
        .collect();
    let scores = metrics::class_scores(&truth, &predicted, classes);
    let evaluation = Evaluation {
        rows: truth.len() as u64,
        accuracy: metrics::accuracy(&truth, &predicted),
        macro_f1: scores.macro_f1,
        log_loss: metrics::log_loss(&truth, &combined),
        confusion: metrics::confusion_matrix(&truth, &predicted, classes),
    };
    let member_accuracy = member_predictions.iter().map(|p| metrics::accuracy(&truth, p)).collect();
    Ok((evaluation, member_accuracy))
}
