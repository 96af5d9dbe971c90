//! Driving one job from its checkpointed record to a named model.

use futures::{StreamExt, stream::FuturesUnordered};
use mass_kernels::models::{Member, Mlp, boosting, ensemble::argmax_rows};
use mass_protocol::{
    ContentId,
    dataset::{DatasetManifest, Shard},
    features::{Encode, FittedPipeline, Impute, PipelineSpec, Scale},
    jobs::{
        Assignment, Combine, EnsembleSpec, JobRecord, JobSpec, JobState, Learner, ModelManifest, Task, TaskRecord,
        resolve_task,
    },
    rpc::{Request, Response},
};
use tracing::{info, warn};

use super::{
    MODEL_PREFIX, REF_PREFIX, boost, evaluate, learners,
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

    let pipeline: FittedPipeline = mesh.load(pipeline_id).await?;
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
            let model = Member::Mlp(data_parallel(mesh, record, pipeline_id, rounds).await?);
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
    let mut shards = Vec::new();
    for info in &manifest.shards {
        shards.push(mesh.load::<Shard>(info.id).await?);
    }
    let classes = pipeline.classes.clone();
    let stacked = matches!(record.spec.ensemble, EnsembleSpec::Stacking { .. });
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
    let seed = record.spec.seed;
    let rule = combine.clone();
    let (meta, evaluation, member_scores) = tokio::task::spawn_blocking(move || {
        let meta = if stacked { Some(evaluate::fit_meta(&pipeline, &members, &shards, seed)?) } else { None };
        let (evaluation, scores) = evaluate::evaluate(&pipeline, &members, &rule, meta.as_ref(), &shards)?;
        Ok::<_, String>((meta, evaluation, scores))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(Stop::Invalid)?;
    let meta = match meta {
        Some(meta) => Some(mesh.save_kept(&Member::Mlp(meta)).await?),
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
        meta,
        curves: record.tasks.iter().map(|t| t.curve.clone()).collect(),
        classes,
        evaluation: evaluation.clone(),
        trained_on: record.tasks.iter().filter_map(|t| t.peer.clone()).collect(),
        task,
        combine,
        parts: vec![],
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
        setup: record.setup,
        boost_from: vec![],
    }
}

fn finish(task: &mut TaskRecord, peer: String, trained: Trained) {
    (task.peer, task.weights, task.rows, task.curve) = (Some(peer), Some(trained.weights), trained.rows, trained.curve);
}

/// Trains every unfinished sub-model (of a single, bagged or stacked model)
/// where its shard lives, then loads them all.
async fn bagged(mesh: &Mesh, record: &mut JobRecord, pipeline: ContentId) -> Result<Vec<Member>, Stop> {
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
            shards.push(mesh.load::<Shard>(info.id).await?);
        }
    }
    let shards = std::sync::Arc::new(shards);
    let plans = plan_trainers(mesh, &record.id, &record.tasks).await;
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
                    tokio::task::spawn_blocking(move || samme_alpha(&pipeline, &shards, &votes, &member))
                        .await
                        .map_err(|e| e.to_string())?
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
