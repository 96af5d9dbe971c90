//! Driving one job from its checkpointed record to a named model.

use futures::{StreamExt, stream::FuturesUnordered};
use mass_kernels::models::{Mlp, ensemble::argmax_rows, metrics};
use mass_protocol::{
    ContentId,
    dataset::{Shard, Split},
    features::FittedPipeline,
    jobs::{EnsembleSpec, Evaluation, JobRecord, JobState, ModelManifest, TaskRecord},
    rpc::{Request, Response},
};
use ndarray::Array2;
use tracing::{info, warn};

use super::{MODEL_PREFIX, REF_PREFIX, task};
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
        record.tasks = match record.spec.ensemble {
            EnsembleSpec::Single => vec![TaskRecord {
                shards,
                seed: record.spec.seed,
                peer: None,
                weights: None,
                rows: 0,
                test_accuracy: None,
            }],
            EnsembleSpec::DataParallel { workers, .. } => (0..workers.min(shards.len()))
                .map(|w| TaskRecord {
                    shards: shards.iter().skip(w).step_by(workers).copied().collect(),
                    // The same seed everywhere: every worker starts from the same weights.
                    seed: record.spec.seed,
                    peer: None,
                    weights: None,
                    rows: 0,
                    test_accuracy: None,
                })
                .collect(),
            EnsembleSpec::Bagging { members } => (0..members)
                .map(|i| TaskRecord {
                    shards: vec![shards[i % shards.len()]],
                    seed: record.spec.seed + i as u64,
                    peer: None,
                    weights: None,
                    rows: 0,
                    test_accuracy: None,
                })
                .collect(),
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
    let (evaluation, member_accuracy) = tokio::task::spawn_blocking(move || evaluate(&pipeline, &members, &shards))
        .await
        .map_err(|e| e.to_string())?
        .map_err(Stop::Invalid)?;
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

/// Trains every unfinished bagged sub-model where its shard lives, then
/// loads them all.
async fn bagged(mesh: &Mesh, record: &mut JobRecord, pipeline: ContentId) -> Result<Vec<Mlp>, Stop> {
    let mut running = FuturesUnordered::new();
    let plans = plan_trainers(mesh, &record.id, &record.tasks).await;
    for ((index, task), order) in record.tasks.iter().enumerate().zip(plans).filter(|((_, t), _)| t.weights.is_none()) {
        let (mesh, task, spec) = (mesh.clone(), task.clone(), record.spec.spec.clone());
        running.push(async move { (index, train_somewhere(&mesh, &task, order, pipeline, spec, &[]).await) });
    }
    while let Some((index, result)) = running.next().await {
        let (peer, weights, rows) = result?;
        let task = &mut record.tasks[index];
        (task.peer, task.weights, task.rows) = (Some(peer), Some(weights), rows);
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
        for ((index, task), order) in record.tasks.iter().enumerate().zip(plans) {
            let (mesh, task, spec, start) = (mesh.clone(), task.clone(), record.spec.spec.clone(), start.clone());
            running.push(async move { (index, train_somewhere(&mesh, &task, order, pipeline, spec, &start).await) });
        }
        let mut outputs: Vec<Option<(ContentId, u64)>> = vec![None; record.tasks.len()];
        while let Some((index, result)) = running.next().await {
            match result {
                Ok((peer, weights, rows)) => {
                    let task = &mut record.tasks[index];
                    (task.peer, task.weights, task.rows) = (Some(peer), Some(weights), rows);
                    outputs[index] = Some((weights, rows));
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
async fn train_somewhere(
    mesh: &Mesh,
    task: &TaskRecord,
    order: Vec<PeerId>,
    pipeline: ContentId,
    spec: mass_protocol::jobs::ModelSpec,
    start: &[(ContentId, u64)],
) -> Result<(String, ContentId, u64), String> {
    let local = mesh.net.local_peer_id();
    for peer in order {
        if peer == local {
            break;
        }
        let request = Request::TrainTask {
            shards: task.shards.clone(),
            pipeline,
            spec: spec.clone(),
            seed: task.seed,
            start: start.to_vec(),
        };
        match mesh.net.request(peer, request).await {
            Ok(Response::Trained { weights, rows }) => return Ok((peer.to_string(), weights, rows)),
            Ok(Response::Error(e)) => warn!(%peer, "training elsewhere failed: {e}"),
            Ok(_) => warn!(%peer, "unexpected answer to a training task"),
            Err(e) => warn!(%peer, "training elsewhere failed: {e}"),
        }
    }
    let (weights, rows) = task::train(mesh, &task.shards, pipeline, spec, task.seed, start).await?;
    Ok((mesh.peer_id.clone(), weights, rows))
}

/// Metrics of the averaged members, and each member's accuracy, on test rows.
fn evaluate(pipeline: &FittedPipeline, members: &[Mlp], shards: &[Shard]) -> Result<(Evaluation, Vec<f64>), String> {
    let classes = pipeline.classes.len();
    let mut truth = Vec::new();
    let mut combined: Vec<Vec<f64>> = Vec::new();
    let mut member_predictions: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
    for shard in shards {
        let (x, y) = task::rows_of(pipeline, shard, Split::Test)?;
        if y.is_empty() {
            continue;
        }
        let mut sum = Array2::<f32>::zeros((x.nrows(), classes));
        for (i, member) in members.iter().enumerate() {
            let p = member.predict(x.view());
            member_predictions[i].extend(argmax_rows(&p));
            sum += &p;
        }
        sum /= members.len() as f32;
        combined.extend(sum.rows().into_iter().map(|r| r.iter().map(|v| f64::from(*v)).collect::<Vec<_>>()));
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
