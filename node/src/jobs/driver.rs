//! Driving one job from its checkpointed record to a named model.

use std::sync::Arc;

use futures::{StreamExt, stream::FuturesUnordered};
use mass_kernels::models::{Member, Mlp, boosting, ensemble::argmax_rows};
use mass_protocol::{
    ContentId,
    dataset::{DatasetManifest, Shard, Split},
    evaluation::EvaluationRows,
    features::{Encode, FittedPipeline, Impute, PipelineSpec, Scale},
    jobs::{
        Assignment, Combine, CrossValidation, EnsembleSpec, JobRecord, JobSpec, JobState, Learner, ModelManifest,
        Placement, Task, TaskRecord, resolve_task,
    },
    rpc::{Request, Response, RpcErrorKind},
};
use tracing::{debug, info, warn};

use super::{
    MODEL_PREFIX, REF_PREFIX, boost,
    dispatch::Dispatch,
    evaluate, judge, learners,
    task::{self, Trained},
};
use crate::{
    compute::{SLOTS_QUEUE, Work},
    membership::GetPeers,
    mesh::{FitFailure, Mesh},
    net::client::WORK_TIMEOUT,
    placement,
    replication::homes,
};
use libp2p::PeerId;
use mass_protocol::api::PeerState;

/// The ref that marks job `id` cancelled. It is written once and never
/// moved, so a cancellation cannot be lost to a driver's concurrent
/// checkpoint (record versions are last-writer-wins; this flag is not).
pub fn cancel_ref(id: &ContentId) -> String {
    format!("{REF_PREFIX}{id}/cancel")
}

/// The current record of job `id`, cancelled if its cancel flag is set.
pub async fn record(mesh: &Mesh, id: ContentId) -> Result<Option<JobRecord>, String> {
    let Some((target, mut record)) = mesh.load_checkpoint::<JobRecord>(&format!("{REF_PREFIX}{id}")).await? else {
        return Ok(None);
    };
    record.validate().map_err(|e| format!("job record {target}: {e}"))?;
    if record.id != id {
        return Err(format!("job record {target} names job {}, not {id}", record.id));
    }
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

/// The pipeline a job's model reads its rows through: the user's, for the
/// task; tree learners see raw values (missing kept, categories as
/// indices, no scaling) and get quantile sketches for their bins.
pub fn pipeline_spec(spec: &JobSpec, task: Task) -> PipelineSpec {
    let mut pipeline = PipelineSpec { task, ..spec.pipeline.clone() };
    if matches!(spec.spec.learner, Learner::Gbdt(_)) {
        pipeline.impute = Impute::Keep;
        pipeline.scale = Scale::None;
        pipeline.encode = Encode::Ordinal;
        pipeline.quantiles = true;
    }
    pipeline
}

async fn run(mesh: &Mesh, record: &mut JobRecord) -> Result<(), Stop> {
    if record.drivers.last() != Some(&mesh.peer_id) {
        record.drivers.push(mesh.peer_id.clone());
    }
    record.state = JobState::Running;
    checkpoint(mesh, record).await?;
    info!(id = %record.id, resumed = record.drivers.len() > 1, "driving job");

    let (manifest_id, manifest) = mesh.dataset(&record.spec.dataset).await.map_err(Stop::Invalid)?;
    let task = match record.task {
        Some(task) => task,
        None => {
            let label = &manifest.schema.columns[manifest.schema.label];
            resolve_task(record.spec.task, &label.name, label.kind, manifest.label_histogram())
                .map_err(Stop::Invalid)?
        }
    };
    record.task = Some(task);
    if record.pipeline.is_none() {
        let spec = pipeline_spec(&record.spec, task);
        let (pipeline, summary, _) = mesh.fit_pipeline(&manifest, &spec).await.map_err(|e| match e {
            FitFailure::Unavailable(m) => Stop::Transient(m),
            FitFailure::Invalid(m) => Stop::Invalid(m),
        })?;
        if let Learner::Gbdt(trees) = &record.spec.spec.learner {
            let setup = learners::boost_setup(&record.spec.spec, trees, &pipeline, &summary, record.spec.seed)
                .map_err(Stop::Invalid)?;
            record.setup = Some(mesh.save_kept(&setup).await?);
        }
        record.pipeline = Some(mesh.save_kept(&pipeline).await?);
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
            // Every boosted member sees all training rows (the ones before it decide how).
            EnsembleSpec::Boosting { members } => {
                (0..members).map(|i| TaskRecord::new(shards.clone(), seed + i as u64)).collect()
            }
            EnsembleSpec::Bagging { members } | EnsembleSpec::Stacking { members } => {
                (0..members).map(|i| TaskRecord::new(vec![shards[i % shards.len()]], seed + i as u64)).collect()
            }
        };
        checkpoint(mesh, record).await?;
    }

    let pipeline = mesh.load_pipeline(pipeline_id).await?;
    let boosted_across =
        matches!(record.spec.spec.learner, Learner::Gbdt(_)) && matches!(record.spec.ensemble, EnsembleSpec::Single);
    let (members, member_ids) = match record.spec.ensemble {
        _ if boosted_across => {
            let model = Member::Gbdt(boost::driver::boost(mesh, record, &manifest, pipeline_id).await?);
            let id = mesh.save_kept(&model).await?;
            let task = &mut record.tasks[0];
            (task.peer, task.weights, task.rows) = (Some(mesh.peer_id.clone()), Some(id), manifest.split_rows[0]);
            (vec![model], vec![id])
        }
        EnsembleSpec::Boosting { .. } => {
            let members = boosted(mesh, record, pipeline_id, &pipeline, &manifest).await?;
            (members, record.tasks.iter().filter_map(|t| t.weights).collect())
        }
        EnsembleSpec::DataParallel { rounds, .. } => {
            let model = Member::Mlp(data_parallel(mesh, record, &manifest, pipeline_id, rounds).await?);
            let id = mesh.save_kept(&model).await?;
            (vec![model], vec![id])
        }
        _ => {
            let members = bagged(mesh, record, pipeline_id).await?;
            (members, record.tasks.iter().filter_map(|t| t.weights).collect())
        }
    };
    let outputs = match task {
        Task::Classification => pipeline.classes.len(),
        Task::Regression => 1,
    };
    for (index, member) in members.iter().enumerate() {
        member.validate(pipeline.features, outputs).map_err(|e| Stop::Invalid(format!("sub-model {index}: {e}")))?;
    }
    let classes = pipeline.classes.clone();
    let combine = match record.spec.ensemble {
        EnsembleSpec::Stacking { .. } => Combine::Stacked,
        EnsembleSpec::Boosting { .. } => {
            let weights: Vec<f64> = record.tasks.iter().map(|t| t.weight.unwrap_or(0.0)).collect();
            match task {
                Task::Regression => Combine::WeightedSum(weights),
                // Members no better than chance get no vote; if none is, all vote alike.
                Task::Classification if weights.iter().sum::<f64>() > 0.0 => Combine::WeightedMean(weights),
                Task::Classification => Combine::Mean,
            }
        }
        _ => Combine::Mean,
    };
    let (meta_id, meta) = match record.spec.ensemble {
        EnsembleSpec::Stacking { .. } => {
            let meta = fit_meta(mesh, &manifest, &pipeline, &members, record.spec.seed).await?;
            (Some(mesh.save_kept(&Member::Mlp(meta.clone())).await?), Some(meta))
        }
        _ => (None, None),
    };
    // A study's trials are judged on the validation rows; the test rows are
    // for the winner alone, and only a registered model gets a report.
    let trial = record.spec.trial.is_some();
    let split = if trial { Split::Validation } else { Split::Test };
    let judged = judge::Judged {
        pipeline_id,
        pipeline: Arc::new(pipeline),
        member_ids: member_ids.clone(),
        members: Arc::new(members),
        meta_id,
        meta: Arc::new(meta),
        combine: combine.clone(),
    };
    let tallies = judge::across_shards(mesh, &manifest, &judged, EvaluationRows::Split(split), !trial).await?;
    let (evaluation, member_scores) = tallies.evaluation(&evaluate::what(split)).map_err(Stop::Invalid)?;
    let cross_validation = match record.spec.cv {
        Some(folds) => Some(cross_validate(mesh, record, &manifest, &judged, folds).await?),
        None => None,
    };
    // Bagged members are models of their own; data-parallel workers are not.
    if !matches!(record.spec.ensemble, EnsembleSpec::DataParallel { .. }) {
        for (task, score) in record.tasks.iter_mut().zip(member_scores) {
            task.test_score = Some(score);
        }
    }
    let model = ModelManifest {
        name: record.spec.model.clone(),
        job: record.id,
        spec: record.spec.clone(),
        dataset_manifest: manifest_id,
        pipeline: pipeline_id,
        members: member_ids,
        meta: meta_id,
        curves: record.tasks.iter().map(|t| t.curve.clone()).collect(),
        classes,
        evaluation: evaluation.clone(),
        trained_on: record.tasks.iter().filter_map(|t| t.peer.clone()).collect(),
        task,
        combine,
        parts: vec![],
        study: None,
        compression: None,
        cross_validation,
    };
    // A trial's model stays unnamed (pinned: its study may name it).
    let model_id = if record.spec.trial.is_some() { mesh.save_kept(&model).await? } else { mesh.save(&model).await? };
    if record.spec.trial.is_none() {
        mesh.write_ref(format!("{MODEL_PREFIX}{}", record.spec.model), Some(model_id))
            .await
            .map_err(|e| Stop::Transient(e.to_string()))?;
    }
    record.evaluation = Some(evaluation);
    record.model = Some(model_id);
    record.state = JobState::Completed;
    checkpoint(mesh, record).await?;
    info!(id = %record.id, model = %model_id, "job completed");
    Ok(())
}

/// K-fold cross-validation of the job's learner: one model per fold, each
/// trained (all folds at once, placed like sub-models) on the training
/// rows outside its fold, then judged on its fold's rows where each shard
/// lives. Every step is checkpointed in `record.folds`.
async fn cross_validate(
    mesh: &Mesh,
    record: &mut JobRecord,
    manifest: &DatasetManifest,
    model: &judge::Judged,
    folds: u32,
) -> Result<CrossValidation, Stop> {
    if record.folds.is_empty() {
        let shards: Vec<ContentId> = manifest.shards.iter().map(|s| s.id).collect();
        let seed = record.spec.seed;
        record.folds = (0..folds).map(|k| TaskRecord::new(shards.clone(), seed.wrapping_add(u64::from(k)))).collect();
        checkpoint(mesh, record).await?;
    }
    let untrained: Vec<usize> = (0..record.folds.len()).filter(|k| record.folds[*k].weights.is_none()).collect();
    let pipeline = model.pipeline_id;
    train_planned(
        mesh,
        record,
        Tasks::Folds,
        untrained,
        |record, k| fold_assignment(record, k, pipeline, folds),
        |record, k, result| {
            let (peer, trained) = result?;
            finish(&mut record.folds[k], peer, trained);
            Ok(true)
        },
    )
    .await?;
    for k in 0..record.folds.len() {
        if record.folds[k].test_score.is_some() {
            continue;
        }
        let weights = record.folds[k].weights.expect("trained above");
        let member = match mesh.load::<Member>(weights).await {
            Ok(member) => member,
            Err(message) => {
                record.folds[k].weights = None;
                checkpoint(mesh, record).await?;
                return Err(Stop::Transient(format!(
                    "fold {k}'s model is unreachable ({message}); it will be retrained"
                )));
            }
        };
        let judged = judge::Judged {
            pipeline_id: model.pipeline_id,
            pipeline: model.pipeline.clone(),
            member_ids: vec![weights],
            members: Arc::new(vec![member]),
            meta_id: None,
            meta: Arc::new(None),
            combine: Combine::Mean,
        };
        let rows = EvaluationRows::Fold { fold: k as u32, folds };
        let tallies = judge::across_shards(mesh, manifest, &judged, rows, false).await?;
        let (evaluation, _) = tallies.evaluation(&format!("fold {k}")).map_err(Stop::Invalid)?;
        record.folds[k].test_score = evaluation.accuracy.or(evaluation.r2);
        checkpoint(mesh, record).await?;
    }
    Ok(CrossValidation::of(record.folds.iter().filter_map(|t| t.test_score).collect()))
}

/// What fold `k` of `record` asks a trainer to do: the job's learner, alone,
/// on every shard's training rows outside the fold.
fn fold_assignment(record: &JobRecord, k: usize, pipeline: ContentId, folds: u32) -> Assignment {
    let task = &record.folds[k];
    Assignment {
        job: record.id,
        // Past the sub-models' numbers, so progress tells them apart.
        task: (record.tasks.len() + k) as u32,
        shards: task.shards.clone(),
        pipeline,
        spec: record.spec.spec.clone(),
        seed: task.seed,
        start: vec![],
        holdout: false,
        setup: record.setup,
        boost_from: vec![],
        fold: Some((k as u32, folds)),
    }
}

/// Stacking's meta-model, fitted on the training rows every member was
/// trained without (read here from every shard: the fit needs them all).
async fn fit_meta(
    mesh: &Mesh,
    manifest: &DatasetManifest,
    pipeline: &FittedPipeline,
    members: &[Member],
    seed: u64,
) -> Result<Mlp, Stop> {
    let mut shards = Vec::new();
    for info in &manifest.shards {
        shards.push(mesh.load_shard(info.id).await?);
    }
    let (pipeline, members) = (pipeline.clone(), members.to_vec());
    mesh.compute
        .run_waiting(Work::Evaluation, move || evaluate::fit_meta(&pipeline, &members, &shards, seed))
        .await
        .map_err(Stop::Invalid)
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
        setup: record.setup,
        boost_from: vec![],
        fold: None,
    }
}

fn finish(task: &mut TaskRecord, peer: String, trained: Trained) {
    (task.peer, task.weights, task.rows, task.curve) = (Some(peer), Some(trained.weights), trained.rows, trained.curve);
    task.backend = trained.backend;
}

/// Trains every unfinished sub-model (of a single, bagged or stacked model)
/// where its shard lives, then loads them all.
async fn bagged(mesh: &Mesh, record: &mut JobRecord, pipeline: ContentId) -> Result<Vec<Member>, Stop> {
    let untrained: Vec<usize> = (0..record.tasks.len()).filter(|i| record.tasks[*i].weights.is_none()).collect();
    train_planned(
        mesh,
        record,
        Tasks::SubModels,
        untrained,
        |record, index| assignment(record, index, pipeline, &[]),
        |record, index, result| {
            let (peer, trained) = result?;
            finish(&mut record.tasks[index], peer, trained);
            Ok(true)
        },
    )
    .await?;
    let mut members = Vec::new();
    for index in 0..record.tasks.len() {
        let weights = record.tasks[index].weights.expect("trained above");
        match mesh.load::<Member>(weights).await {
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

/// Trains the members of a boosted ensemble one after another: each is told
/// the members before it (and their weights), and once trained gets its own
/// weight (a shrinkage for regressors, SAMME's alpha for classifiers, from
/// its weighted error on the training rows).
async fn boosted(
    mesh: &Mesh,
    record: &mut JobRecord,
    pipeline_id: ContentId,
    pipeline: &FittedPipeline,
    manifest: &DatasetManifest,
) -> Result<Vec<Member>, Stop> {
    let mut shards = Vec::new();
    if pipeline.task == Task::Classification {
        for info in &manifest.shards {
            shards.push(mesh.load_shard(info.id).await?);
        }
    }
    let shards = std::sync::Arc::new(shards);
    let plans = plan_trainers(mesh, &record.tasks, record.spec.placement).await;
    let mut members: Vec<Member> = Vec::new();
    for (index, order) in plans.into_iter().enumerate() {
        if record.tasks[index].weights.is_none() || record.tasks[index].weight.is_none() {
            let mut work = assignment(record, index, pipeline_id, &[]);
            work.boost_from = record.tasks[..index]
                .iter()
                .map(|t| (t.weights.expect("trained in order"), t.weight.expect("weighed in order")))
                .collect();
            let (peer, trained) = train_somewhere(mesh, work, order).await?;
            finish(&mut record.tasks[index], peer, trained);
        }
        let member: Member = mesh.load(record.tasks[index].weights.expect("trained above")).await?;
        if record.tasks[index].weight.is_none() {
            let weight = match pipeline.task {
                Task::Regression => boosting::regressor_weight(index),
                Task::Classification => {
                    let (pipeline, shards, member) = (pipeline.clone(), shards.clone(), member.clone());
                    let votes: Vec<(Member, f64)> =
                        members.iter().cloned().zip(record.tasks.iter().map(|t| t.weight.unwrap_or(0.0))).collect();
                    mesh.compute
                        .run_waiting(Work::Evaluation, move || samme_alpha(&pipeline, &shards, &votes, &member))
                        .await
                        .map_err(Stop::Invalid)?
                }
            };
            record.tasks[index].weight = Some(weight);
            checkpoint(mesh, record).await?;
        }
        members.push(member);
    }
    Ok(members)
}

/// SAMME's alpha of `member`: its error on the training rows weighted by
/// what the members before it (`previous`, with their alphas) got wrong.
fn samme_alpha(
    pipeline: &FittedPipeline,
    shards: &[Shard],
    previous: &[(Member, f64)],
    member: &Member,
) -> Result<f64, String> {
    let mut parts = Vec::new();
    for shard in shards {
        parts.push(task::rows_of(pipeline, shard, mass_protocol::dataset::Split::Train)?);
    }
    let rows = learners::RowSet::concat(parts, pipeline.task, pipeline.features)?;
    let learners::Labels::Classes(truth) = &rows.labels else { return Err("classes expected".into()) };
    let votes: Vec<(Vec<usize>, f64)> =
        previous.iter().map(|(m, a)| (argmax_rows(&m.predict(rows.x.view())), *a)).collect();
    let weights = boosting::row_weights(truth, &votes);
    let predicted = argmax_rows(&member.predict(rows.x.view()));
    Ok(boosting::alpha(boosting::weighted_error(truth, &predicted, &weights), pipeline.classes.len()))
}

/// Runs the remaining rounds of a data-parallel job. In each round every
/// worker averages the previous round's weights itself (a trimmed mean,
/// [`task::average`]), trains on its shards, and stores the result; a
/// worker that fails is left out of that round's average, and the rows a
/// worker claims are capped at its shards' rows in the dataset's manifest.
/// Returns the final averaged model.
async fn data_parallel(
    mesh: &Mesh,
    record: &mut JobRecord,
    manifest: &DatasetManifest,
    pipeline: ContentId,
    rounds: usize,
) -> Result<Mlp, Stop> {
    while record.rounds_done < rounds {
        let start = record.averaged_from.clone();
        let mut outputs: Vec<Option<(ContentId, u64)>> = vec![None; record.tasks.len()];
        let all: Vec<usize> = (0..record.tasks.len()).collect();
        train_planned(
            mesh,
            record,
            Tasks::SubModels,
            all,
            |record, index| assignment(record, index, pipeline, &start),
            |record, index, result| {
                match result {
                    Ok((peer, trained)) => {
                        let held: u64 = manifest
                            .shards
                            .iter()
                            .filter(|s| record.tasks[index].shards.contains(&s.id))
                            .map(|s| s.rows)
                            .sum();
                        outputs[index] = Some((trained.weights, trained.rows.min(held)));
                        finish(&mut record.tasks[index], peer, trained);
                    }
                    Err(e) => warn!(worker = index, round = record.rounds_done, "worker left out of this round: {e}"),
                }
                Ok(false)
            },
        )
        .await?;
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

/// For each task, the nodes to ask to train it, best first: where it
/// would finish soonest given each live node's measured capacity and the
/// training it is already running (a node that must fetch the task's
/// shards pays a penalty), or, with uniform placement, spread evenly.
async fn plan_trainers(mesh: &Mesh, tasks: &[TaskRecord], placement: Placement) -> Vec<Vec<PeerId>> {
    let views = mesh.membership.send(GetPeers).await.unwrap_or_default();
    let mut workers = Vec::new();
    for view in views.iter().filter(|v| v.state == PeerState::Up) {
        let (Ok(id), Some(hardware)) = (view.peer_id.parse::<PeerId>(), &view.hardware) else { continue };
        let capacity = if hardware.capacity_gflops > 0.0 { hardware.capacity_gflops } else { hardware.gemm_gflops };
        let running = view
            .load
            .as_ref()
            .and_then(|l| l.queues.iter().find(|q| q.name == Work::Training.queue_name()))
            .map_or(0, |q| q.depth);
        workers.push(placement::Worker { id, capacity: f64::from(capacity), load: f64::from(running) });
    }
    if workers.is_empty() {
        // No advert yet (a node just started): this node alone.
        workers.push(placement::Worker { id: mesh.net.local_peer_id(), capacity: 1.0, load: 0.0 });
    }
    let live: Vec<PeerId> = workers.iter().map(|w| w.id).collect();
    let tasks: Vec<placement::Task<PeerId>> = tasks
        .iter()
        .map(|t| placement::Task { cost: t.shards.len() as f64, homes: homes(&t.shards[0], &live, 2) })
        .collect();
    placement::plan_by_capacity(&tasks, &workers, placement == Placement::Uniform)
}

/// How one try at training a task on one node went.
enum Attempt {
    Trained(String, Trained),
    /// The node had no free compute slot (other work): try the next.
    Busy,
    Failed(String),
}

/// Trains `work` on `peer`; this node trains it itself when it is `peer`,
/// refusing like a peer would unless `queue` (the last resort) says wait.
async fn attempt(mesh: &Mesh, work: Assignment, peer: PeerId, queue: bool) -> Attempt {
    if peer == mesh.net.local_peer_id() {
        let admission = if queue { task::Admission::Wait } else { task::Admission::Now };
        return match task::train(mesh, work, admission).await {
            Ok(trained) => Attempt::Trained(mesh.peer_id.clone(), trained),
            Err(task::TrainError::Busy(_)) => Attempt::Busy,
            Err(e) => Attempt::Failed(e.to_string()),
        };
    }
    match mesh.net.request_within(peer, Request::TrainTask(Box::new(work)), WORK_TIMEOUT).await {
        Ok(Response::Trained { weights, rows, curve, backend }) => {
            Attempt::Trained(peer.to_string(), Trained { weights, rows, curve, backend })
        }
        Ok(Response::Error(e)) if e.kind == RpcErrorKind::Overloaded => {
            debug!(%peer, "busy: {}", e.message);
            Attempt::Busy
        }
        Ok(Response::Error(e)) => Attempt::Failed(format!("{peer}: {e}")),
        Ok(_) => Attempt::Failed(format!("{peer}: unexpected answer to a training task")),
        Err(e) => Attempt::Failed(e.to_string()),
    }
}

/// Each node's compute slots, from the adverts.
async fn slots_by_peer(mesh: &Mesh) -> std::collections::HashMap<PeerId, usize> {
    let views = mesh.membership.send(GetPeers).await.unwrap_or_default();
    views
        .iter()
        .filter_map(|v| {
            let id = v.peer_id.parse::<PeerId>().ok()?;
            let slots = v.load.as_ref()?.queues.iter().find(|q| q.name == SLOTS_QUEUE)?.depth;
            Some((id, slots as usize))
        })
        .collect()
}

/// Which of a record's task lists a training round works on.
#[derive(Clone, Copy, PartialEq)]
enum Tasks {
    SubModels,
    Folds,
}

/// Trains tasks `indices` of `record` (of its sub-models or its folds)
/// where their plan says, at most as many at once per node as it has
/// compute slots; a node that refuses or fails a task passes it to the
/// task's next choice, and this node takes what every other refused.
/// `after` sees each outcome (an error only when this node failed it too)
/// and says whether to checkpoint.
async fn train_planned(
    mesh: &Mesh,
    record: &mut JobRecord,
    which: Tasks,
    indices: Vec<usize>,
    work_of: impl Fn(&JobRecord, usize) -> Assignment,
    mut after: impl FnMut(&mut JobRecord, usize, Result<(String, Trained), String>) -> Result<bool, Stop>,
) -> Result<(), Stop> {
    let tasks = if which == Tasks::Folds { &record.folds } else { &record.tasks };
    let plans = plan_trainers(mesh, tasks, record.spec.placement).await;
    let local = mesh.net.local_peer_id();
    let planned = indices.into_iter().map(|i| (i, plans[i].clone())).collect();
    let mut dispatch = Dispatch::new(planned, slots_by_peer(mesh).await, local);
    let mut running = FuturesUnordered::new();
    loop {
        for (index, peer, queue) in dispatch.ready() {
            let (mesh, work) = (mesh.clone(), work_of(record, index));
            running.push(async move { (index, peer, attempt(&mesh, work, peer, queue).await) });
        }
        let Some((index, peer, outcome)) = running.next().await else { break };
        let result = match outcome {
            Attempt::Busy => {
                info!(job = %record.id, task = index, %peer, "busy: the task goes to its next choice");
                dispatch.refused(index, &peer);
                continue;
            }
            Attempt::Failed(e) if peer != local => {
                warn!(%peer, "training elsewhere failed: {e}");
                dispatch.refused(index, &peer);
                continue;
            }
            Attempt::Failed(e) => Err(e),
            Attempt::Trained(by, trained) => Ok((by, trained)),
        };
        dispatch.done(index, &peer);
        if after(record, index, result)? {
            checkpoint(mesh, record).await?;
        }
    }
    Ok(())
}

/// Trains a task on the first of `order` that can (this node trains it when
/// it comes first, waiting for a slot, or when every other node refuses or
/// fails).
async fn train_somewhere(mesh: &Mesh, work: Assignment, order: Vec<PeerId>) -> Result<(String, Trained), String> {
    let local = mesh.net.local_peer_id();
    for peer in order {
        match attempt(mesh, work.clone(), peer, false).await {
            Attempt::Trained(by, trained) => return Ok((by, trained)),
            Attempt::Busy => {}
            Attempt::Failed(e) => warn!(%peer, "training elsewhere failed: {e}"),
        }
    }
    match attempt(mesh, work, local, true).await {
        Attempt::Trained(by, trained) => Ok((by, trained)),
        Attempt::Busy => Err("busy".into()),
        Attempt::Failed(e) => Err(e),
    }
}
