//! Driving one job from its checkpointed record to a named model.
//!
//! The decisions are [`machine`]'s: which step comes next, what an outcome
//! changes in the record, when to checkpoint. This module executes the
//! steps against the mesh and hands each outcome back to the machine.

use std::sync::Arc;

use futures::{StreamExt, stream::FuturesUnordered};
use mass_kernels::models::{Member, Mlp, boosting, ensemble::argmax_rows};
use mass_protocol::{
    ContentId, codec,
    dataset::{DatasetManifest, Shard, Split},
    evaluation::EvaluationRows,
    features::{Encode, FittedPipeline, Impute, PipelineSpec, Scale},
    jobs::{
        Assignment, Combine, CrossValidation, JobRecord, JobSpec, JobState, Learner, ModelManifest, Placement, Task,
        TaskRecord, resolve_task,
    },
    rpc::{Request, Response, RpcErrorKind},
    storage::BlobKind,
};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::{
    MODEL_PREFIX, REF_PREFIX, boost,
    dispatch::Dispatch,
    evaluate, judge, learners,
    machine::{self, Command, Drive, Event, Outcome, Save, StepError, TaskList, Training},
    task::{self, Trained},
};
use crate::{
    compute::Work,
    datasets,
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
    save_checkpoint(mesh, record).await.map_err(|e| e.to_string())
}

/// [`checkpoint`], saying whether it was refused for a cancel.
async fn save_checkpoint(mesh: &Mesh, record: &JobRecord) -> Result<(), StepError> {
    if mesh.resolve(&cancel_ref(&record.id)).await?.is_some() {
        return Err(StepError::Cancelled(record.id));
    }
    still_driving(mesh, record).await?;
    let id = mesh.save_checkpoint(record).await?;
    mesh.write_ref(format!("{REF_PREFIX}{}", record.id), Some(id))
        .await
        .map(|_| ())
        .map_err(|e| StepError::Unavailable(e.to_string()))
}

/// Fencing. A driver that stalled (SIGSTOP, a long pause) can wake up after
/// the next-ranked peer took its job over. Before each write it reads the
/// job's record as the ref's homes hold it (where every acknowledged write
/// is): if another driver wrote since this one started, or the job is over,
/// this drive stops without writing. Job records carry their drivers in
/// order, so a successor's record lists more drivers, or ends in another.
async fn still_driving(mesh: &Mesh, record: &JobRecord) -> Result<(), StepError> {
    let name = format!("{REF_PREFIX}{}", record.id);
    crate::shared_refs::refresh(mesh, &name).await;
    let Some((_, stored)) = mesh.load_checkpoint::<JobRecord>(&name).await? else { return Ok(()) };
    let (ours, theirs) = (&record.drivers, &stored.drivers);
    let taken = theirs.len() > ours.len() || (theirs.len() == ours.len() && theirs.last() != ours.last());
    if taken {
        let by = theirs.last().cloned().unwrap_or_default();
        return Err(StepError::Superseded(record.id, format!("taken over by {by}")));
    }
    if stored.state.is_over() {
        return Err(StepError::Superseded(record.id, format!("its record says {:?}", stored.state)));
    }
    Ok(())
}

/// A model version that the job's model ref names already and that this
/// job made: a driver that was taken over may have named it before its
/// completed checkpoint was refused. Naming another would give one job
/// two models, so the job adopts it.
async fn named_by_this_job(mesh: &Mesh, record: &JobRecord) -> Option<ContentId> {
    let name = format!("{MODEL_PREFIX}{}", record.spec.model);
    crate::shared_refs::refresh(mesh, &name).await;
    let history = crate::shared_refs::find(mesh, &name).await.ok()??.history;
    // Newest first; a version another driver of this job named is recent.
    for target in history.iter().rev().filter_map(|e| e.target).take(8) {
        if mesh.load_model(target).await.is_ok_and(|m| m.job == record.id) {
            return Some(target);
        }
    }
    None
}

/// Hands `event` to the machine, and checkpoints when it says the change
/// must survive this driver.
pub async fn step(mesh: &Mesh, drive: &mut Drive, event: Event) -> Result<(), StepError> {
    if drive.apply(event)? == Save::Checkpoint {
        let started = std::time::Instant::now();
        save_checkpoint(mesh, drive.record()).await?;
        debug!(id = %drive.record().id, ms = started.elapsed().as_millis() as u64, "checkpoint written");
    }
    Ok(())
}

/// Reads and decodes blob `id` (`what` names it in errors). Bytes that
/// arrive match their id, so bytes that do not decode are corrupt for good:
/// fetching them again cannot help.
pub async fn load_blob<T: DeserializeOwned>(mesh: &Mesh, id: ContentId, what: &'static str) -> Result<T, StepError> {
    let bytes = mesh.load_bytes(id, u64::MAX).await?;
    codec::decode(&bytes, codec::MAX_RECORD).map_err(|e| StepError::Corrupt { blob: id, what, reason: e.to_string() })
}

async fn load_shard(mesh: &Mesh, id: ContentId) -> Result<Shard, StepError> {
    let shard: Shard = load_blob(mesh, id, "shard").await?;
    shard.validate().map_err(|e| StepError::Corrupt { blob: id, what: "shard", reason: e.to_string() })?;
    Ok(shard)
}

async fn load_pipeline(mesh: &Mesh, id: ContentId) -> Result<FittedPipeline, StepError> {
    let pipeline: FittedPipeline = load_blob(mesh, id, "fitted pipeline").await?;
    pipeline.validate().map_err(|e| StepError::Corrupt { blob: id, what: "fitted pipeline", reason: e.to_string() })?;
    Ok(pipeline)
}

/// Runs job `id` to the end from wherever its record stands. `Err` leaves
/// the job open for a retry.
pub async fn drive(mesh: Mesh, id: ContentId) -> Result<(), String> {
    let Some(record) = record(&mesh, id).await? else { return Err(format!("no record for job {id}")) };
    if record.state.is_over() {
        return Ok(());
    }
    let mut drive = Drive::resume(record, mesh.peer_id.clone());
    let mut loaded = Loaded::default();
    loop {
        let command = drive.next();
        let started = std::time::Instant::now();
        let event = match &command {
            Command::Done => return Ok(()),
            Command::Yield(reason) => return Err(reason.clone()),
            _ => match execute(&mesh, &mut drive, &mut loaded, command.clone()).await {
                Ok(event) => event,
                Err(error @ StepError::Superseded(..)) => {
                    info!(%id, "stopped driving: {error}");
                    return Err(error.to_string());
                }
                Err(error) => {
                    let event = error.into_event();
                    match &event {
                        Event::Failed(message) => warn!(%id, "job failed: {message}"),
                        Event::CancelSeen => info!(%id, "job cancelled"),
                        _ => {}
                    }
                    event
                }
            },
        };
        match step(&mesh, &mut drive, event).await {
            Ok(()) => {}
            Err(StepError::Cancelled(_)) => {
                info!(%id, "job cancelled");
                // Refused only when the job is over already in memory; the
                // flag, not this record, is what every node reads then.
                let _ = drive.apply(Event::CancelSeen);
            }
            // The stored record stands; the watcher retries from it.
            Err(e) => return Err(e.to_string()),
        }
        // Where a job's wall time goes, step by step.
        info!(%id, step = command.name(), ms = started.elapsed().as_millis() as u64, "step done");
        let record = drive.record();
        match command {
            Command::MarkRunning => info!(%id, resumed = record.drivers.len() > 1, "driving job"),
            Command::Publish if record.state == JobState::Completed => {
                info!(%id, model = %record.model.map_or(String::new(), |m| m.to_string()), "job completed")
            }
            _ => {}
        }
    }
}

/// What this drive has loaded: lost with the driver, loaded again by the next.
#[derive(Default)]
struct Loaded {
    dataset: Option<(ContentId, Arc<DatasetManifest>)>,
    pipeline: Option<Arc<FittedPipeline>>,
    members: Option<(Arc<Vec<Member>>, Vec<ContentId>)>,
    judged: Option<judge::Judged>,
}

impl Loaded {
    /// The job's dataset manifest, read once per drive (by name, as submitted).
    async fn dataset(&mut self, mesh: &Mesh, name: &str) -> Result<(ContentId, Arc<DatasetManifest>), StepError> {
        if let Some(dataset) = &self.dataset {
            return Ok(dataset.clone());
        }
        let id = mesh
            .resolve(&format!("{}{name}", datasets::REF_PREFIX))
            .await?
            .ok_or_else(|| StepError::Invalid(format!("no dataset named '{name}'")))?;
        let manifest: DatasetManifest = load_blob(mesh, id, "dataset manifest").await?;
        manifest.validate().map_err(|reason| StepError::Corrupt { blob: id, what: "dataset manifest", reason })?;
        let dataset = (id, Arc::new(manifest));
        self.dataset = Some(dataset.clone());
        Ok(dataset)
    }

    async fn pipeline(&mut self, mesh: &Mesh, id: ContentId) -> Result<Arc<FittedPipeline>, StepError> {
        if let Some(pipeline) = &self.pipeline {
            return Ok(pipeline.clone());
        }
        let pipeline = Arc::new(load_pipeline(mesh, id).await?);
        self.pipeline = Some(pipeline.clone());
        Ok(pipeline)
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

/// Executes one command; its outcome is the event returned (and, for the
/// long steps, the events they handed to the machine on the way).
async fn execute(mesh: &Mesh, drive: &mut Drive, loaded: &mut Loaded, command: Command) -> Result<Event, StepError> {
    let spec = drive.record().spec.clone();
    match command {
        // The loop ends on these before executing anything.
        Command::Done | Command::Yield(_) => Err(machine::Refused::OutOfOrder { event: "done" }.into()),
        Command::MarkRunning => Ok(Event::Started),
        Command::ResolveTask => {
            let (_, manifest) = loaded.dataset(mesh, &spec.dataset).await?;
            let label = &manifest.schema.columns[manifest.schema.label];
            let task = resolve_task(spec.task, &label.name, label.kind, manifest.label_histogram())
                .map_err(StepError::Invalid)?;
            Ok(Event::TaskResolved(task))
        }
        Command::FitPipeline { task } => {
            let (manifest_id, manifest) = loaded.dataset(mesh, &spec.dataset).await?;
            let (pipeline, summary, _) =
                mesh.fit_pipeline(&manifest, &pipeline_spec(&spec, task)).await.map_err(|e| match e {
                    FitFailure::Unavailable(m) => StepError::Unavailable(m),
                    FitFailure::Invalid(m) => StepError::Invalid(m),
                })?;
            let setup = match &spec.spec.learner {
                Learner::Gbdt(trees) => {
                    let setup = learners::boost_setup(&spec.spec, trees, &pipeline, &summary, spec.seed)
                        .map_err(StepError::Invalid)?;
                    Some(mesh.save_kept(&setup, BlobKind::Model).await?)
                }
                _ => None,
            };
            let pipeline = mesh.save_kept(&pipeline, BlobKind::Pipeline).await?;
            Ok(Event::PipelineFitted { dataset_manifest: manifest_id, pipeline, setup })
        }
        Command::PlanTasks => {
            let (_, manifest) = loaded.dataset(mesh, &spec.dataset).await?;
            let shards: Vec<ContentId> = manifest.shards.iter().map(|s| s.id).collect();
            machine::plan_tasks(&spec, &shards).map(Event::TasksPlanned).map_err(StepError::Invalid)
        }
        Command::TrainMembers { pipeline } => train_members(mesh, drive, loaded, pipeline).await,
        Command::Evaluate => evaluate_model(mesh, drive.record(), loaded).await,
        Command::PlanFolds { folds } => {
            let (_, manifest) = loaded.dataset(mesh, &spec.dataset).await?;
            let shards: Vec<ContentId> = manifest.shards.iter().map(|s| s.id).collect();
            Ok(Event::FoldsPlanned(machine::plan_folds(&spec, &shards, folds)))
        }
        Command::TrainFolds { pipeline, folds } => {
            let untrained: Vec<usize> =
                (0..drive.record().folds.len()).filter(|k| drive.record().folds[*k].weights.is_none()).collect();
            train_planned(
                mesh,
                drive,
                TaskList::Folds,
                untrained,
                |record, k| machine::fold_assignment(record, k, pipeline, folds),
                |_, fold, result| {
                    let (peer, trained) = result?;
                    Ok(Some(Event::TaskFinished {
                        list: TaskList::Folds,
                        index: fold,
                        outcome: outcome(peer, trained),
                    }))
                },
            )
            .await?;
            Ok(Event::FoldsTrained)
        }
        Command::JudgeFold { fold, folds } => judge_fold(mesh, drive, loaded, fold, folds).await,
        Command::Publish => publish(mesh, drive, loaded).await,
    }
}

fn outcome(peer: String, trained: Trained) -> Outcome {
    Outcome { peer, weights: trained.weights, rows: trained.rows, curve: trained.curve, backend: trained.backend }
}

/// Trains the members as the job's ensemble says, loads them and checks
/// they fit the pipeline.
async fn train_members(
    mesh: &Mesh,
    drive: &mut Drive,
    loaded: &mut Loaded,
    pipeline_id: ContentId,
) -> Result<Event, StepError> {
    let spec = drive.record().spec.clone();
    let (_, manifest) = loaded.dataset(mesh, &spec.dataset).await?;
    let pipeline = loaded.pipeline(mesh, pipeline_id).await?;
    let (members, member_ids) = match machine::training(&spec) {
        Training::BoostedAcross => {
            let model = Member::Gbdt(boost::driver::boost(mesh, drive, &manifest, pipeline_id).await?);
            let id = mesh.save_kept(&model, BlobKind::Model).await?;
            let task = &drive.record().tasks[0];
            let trained = Outcome {
                peer: mesh.peer_id.clone(),
                weights: id,
                rows: manifest.split_rows[0],
                curve: task.curve.clone(),
                backend: task.backend.clone(),
            };
            step(mesh, drive, Event::TaskFinished { list: TaskList::SubModels, index: 0, outcome: trained }).await?;
            (vec![model], vec![id])
        }
        Training::Boosted => {
            let members = boosted(mesh, drive, pipeline_id, &pipeline, &manifest).await?;
            (members, drive.record().tasks.iter().filter_map(|t| t.weights).collect())
        }
        Training::DataParallel { rounds } => {
            let model = Member::Mlp(data_parallel(mesh, drive, &manifest, pipeline_id, rounds).await?);
            let id = mesh.save_kept(&model, BlobKind::Model).await?;
            (vec![model], vec![id])
        }
        Training::Bagged => {
            let members = bagged(mesh, drive, pipeline_id).await?;
            (members, drive.record().tasks.iter().filter_map(|t| t.weights).collect())
        }
    };
    let outputs = match pipeline.task {
        Task::Classification => pipeline.classes.len(),
        Task::Regression => 1,
    };
    for (index, member) in members.iter().enumerate() {
        member
            .validate(pipeline.features, outputs)
            .map_err(|e| StepError::Invalid(format!("sub-model {index}: {e}")))?;
    }
    loaded.members = Some((Arc::new(members), member_ids));
    Ok(Event::MembersReady)
}

/// Combines the members (stacking: fits the meta-model) and judges the
/// model on each shard where it lives.
async fn evaluate_model(mesh: &Mesh, record: &JobRecord, loaded: &mut Loaded) -> Result<Event, StepError> {
    let (_, manifest) = loaded.dataset(mesh, &record.spec.dataset).await?;
    let pipeline_id = record.pipeline.ok_or(machine::Refused::OutOfOrder { event: "evaluate" })?;
    let pipeline = loaded.pipeline(mesh, pipeline_id).await?;
    let (members, member_ids) = loaded.members.clone().ok_or(machine::Refused::OutOfOrder { event: "evaluate" })?;
    let task = pipeline.task;
    let combine = machine::combine(&record.spec, task, &record.tasks);
    let (meta_id, meta) = match combine {
        Combine::Stacked => {
            let meta = fit_meta(mesh, &manifest, &pipeline, &members, record.spec.seed).await?;
            (Some(mesh.save_kept(&Member::Mlp(meta.clone()), BlobKind::Model).await?), Some(meta))
        }
        _ => (None, None),
    };
    // A study's trials are judged on the validation rows; the test rows are
    // for the winner alone, and only a registered model gets a report.
    let trial = record.spec.trial.is_some();
    let split = if trial { Split::Validation } else { Split::Test };
    let judged = judge::Judged { pipeline_id, pipeline, member_ids, members, meta_id, meta: Arc::new(meta), combine };
    let tallies = judge::across_shards(mesh, &manifest, &judged, EvaluationRows::Split(split), !trial).await?;
    let (evaluation, member_scores) = tallies.evaluation(&evaluate::what(split)).map_err(StepError::Invalid)?;
    loaded.judged = Some(judged);
    Ok(Event::Evaluated { evaluation, member_scores })
}

/// Judges fold `fold`'s model on the fold's rows where each shard lives.
async fn judge_fold(
    mesh: &Mesh,
    drive: &mut Drive,
    loaded: &mut Loaded,
    fold: usize,
    folds: u32,
) -> Result<Event, StepError> {
    let (_, manifest) = loaded.dataset(mesh, &drive.record().spec.dataset).await?;
    let model = loaded.judged.as_ref().ok_or(machine::Refused::OutOfOrder { event: "judge fold" })?;
    let weights = drive.record().folds[fold].weights.ok_or(machine::Refused::OutOfOrder { event: "judge fold" })?;
    let member = match load_blob::<Member>(mesh, weights, "fold model").await {
        Ok(member) => member,
        Err(StepError::Unavailable(message)) => {
            step(mesh, drive, Event::WeightsLost { list: TaskList::Folds, index: fold, weights }).await?;
            return Err(StepError::Unavailable(format!(
                "fold {fold}'s model is unreachable ({message}); it will be retrained"
            )));
        }
        Err(e) => return Err(e),
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
    let rows = EvaluationRows::Fold { fold: fold as u32, folds };
    let tallies = judge::across_shards(mesh, &manifest, &judged, rows, false).await?;
    let (evaluation, _) = tallies.evaluation(&format!("fold {fold}")).map_err(StepError::Invalid)?;
    let score = evaluation
        .accuracy
        .or(evaluation.r2)
        .ok_or_else(|| StepError::Invalid(format!("fold {fold}'s evaluation has neither accuracy nor R2")))?;
    Ok(Event::FoldJudged { fold, score })
}

/// Stores the model manifest and names it `model/<name>` (a study's trial
/// stays unnamed).
async fn publish(mesh: &Mesh, drive: &Drive, loaded: &mut Loaded) -> Result<Event, StepError> {
    let record = drive.record();
    let (manifest_id, _) = loaded.dataset(mesh, &record.spec.dataset).await?;
    let out_of_order = machine::Refused::OutOfOrder { event: "publish" };
    let (judged, (evaluation, _)) = loaded.judged.as_ref().zip(drive.evaluated()).ok_or(out_of_order.clone())?;
    let task = record.task.ok_or(out_of_order)?;
    let cross_validation =
        record.spec.cv.map(|_| CrossValidation::of(record.folds.iter().filter_map(|t| t.test_score).collect()));
    let model = ModelManifest {
        name: record.spec.model.clone(),
        job: record.id,
        spec: record.spec.clone(),
        dataset_manifest: manifest_id,
        pipeline: judged.pipeline_id,
        members: judged.member_ids.clone(),
        meta: judged.meta_id,
        curves: record.tasks.iter().map(|t| t.curve.clone()).collect(),
        classes: judged.pipeline.classes.clone(),
        evaluation: evaluation.clone(),
        trained_on: record.tasks.iter().filter_map(|t| t.peer.clone()).collect(),
        task,
        combine: judged.combine.clone(),
        parts: vec![],
        study: None,
        compression: None,
        cross_validation,
    };
    // A trial's model stays unnamed (pinned: its study may name it).
    let model_id = if record.spec.trial.is_some() {
        mesh.save_kept(&model, BlobKind::Model).await?
    } else {
        mesh.save(&model, BlobKind::Model).await?
    };
    if record.spec.trial.is_none() {
        still_driving(mesh, record).await?;
        if let Some(named) = named_by_this_job(mesh, record).await {
            info!(id = %record.id, model = %named, "another driver of this job named its model already");
            return Ok(Event::Published { model: named });
        }
        mesh.write_ref(format!("{MODEL_PREFIX}{}", record.spec.model), Some(model_id))
            .await
            .map_err(|e| StepError::Unavailable(e.to_string()))?;
    }
    Ok(Event::Published { model: model_id })
}

/// Stacking's meta-model, fitted on the training rows every member was
/// trained without (read here from every shard: the fit needs them all).
async fn fit_meta(
    mesh: &Mesh,
    manifest: &DatasetManifest,
    pipeline: &FittedPipeline,
    members: &[Member],
    seed: u64,
) -> Result<Mlp, StepError> {
    let mut shards = Vec::new();
    for info in &manifest.shards {
        shards.push(load_shard(mesh, info.id).await?);
    }
    let (pipeline, members) = (pipeline.clone(), members.to_vec());
    mesh.compute
        .run_waiting(Work::Evaluation, move || evaluate::fit_meta(&pipeline, &members, &shards, seed))
        .await
        .map_err(StepError::Invalid)
}

/// Trains every unfinished sub-model (of a single, bagged or stacked model)
/// where its shard lives, then loads them all.
async fn bagged(mesh: &Mesh, drive: &mut Drive, pipeline: ContentId) -> Result<Vec<Member>, StepError> {
    let tasks = &drive.record().tasks;
    let untrained: Vec<usize> = (0..tasks.len()).filter(|i| tasks[*i].weights.is_none()).collect();
    train_planned(
        mesh,
        drive,
        TaskList::SubModels,
        untrained,
        |record, index| machine::assignment(record, index, pipeline, &[]),
        |_, index, result| {
            let (peer, trained) = result?;
            Ok(Some(Event::TaskFinished { list: TaskList::SubModels, index, outcome: outcome(peer, trained) }))
        },
    )
    .await?;
    let mut members = Vec::new();
    for index in 0..drive.record().tasks.len() {
        let weights = drive.record().tasks[index].weights.ok_or(machine::Refused::OutOfOrder { event: "load" })?;
        match load_blob::<Member>(mesh, weights, "sub-model").await {
            Ok(member) => members.push(member),
            Err(StepError::Unavailable(message)) => {
                // Its only copy went down with a node: train it again.
                step(mesh, drive, Event::WeightsLost { list: TaskList::SubModels, index, weights }).await?;
                return Err(StepError::Unavailable(format!(
                    "sub-model {index} is unreachable ({message}); it will be retrained"
                )));
            }
            Err(e) => return Err(e),
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
    drive: &mut Drive,
    pipeline_id: ContentId,
    pipeline: &FittedPipeline,
    manifest: &DatasetManifest,
) -> Result<Vec<Member>, StepError> {
    let mut shards = Vec::new();
    if pipeline.task == Task::Classification {
        for info in &manifest.shards {
            shards.push(load_shard(mesh, info.id).await?);
        }
    }
    let shards = std::sync::Arc::new(shards);
    let plans = plan_trainers(mesh, &drive.record().tasks, drive.record().spec.placement).await;
    let mut members: Vec<Member> = Vec::new();
    for (index, order) in plans.into_iter().enumerate() {
        if drive.record().tasks[index].weights.is_none() {
            let record = drive.record();
            let mut work = machine::assignment(record, index, pipeline_id, &[]);
            work.boost_from = record.tasks[..index]
                .iter()
                .map(|t| t.weights.zip(t.weight))
                .collect::<Option<_>>()
                .ok_or(machine::Refused::OutOfOrder { event: "boost" })?;
            let (peer, trained) = train_somewhere(mesh, work, order).await?;
            let event = Event::TaskFinished { list: TaskList::SubModels, index, outcome: outcome(peer, trained) };
            step(mesh, drive, event).await?;
        }
        let weights = drive.record().tasks[index].weights.ok_or(machine::Refused::OutOfOrder { event: "boost" })?;
        let member: Member = load_blob(mesh, weights, "boosted member").await?;
        if drive.record().tasks[index].weight.is_none() {
            let weight = match pipeline.task {
                Task::Regression => boosting::regressor_weight(index),
                Task::Classification => {
                    let (pipeline, shards, member) = (pipeline.clone(), shards.clone(), member.clone());
                    let votes: Vec<(Member, f64)> = members
                        .iter()
                        .cloned()
                        .zip(drive.record().tasks.iter().map(|t| t.weight.unwrap_or(0.0)))
                        .collect();
                    mesh.compute
                        .run_waiting(Work::Evaluation, move || samme_alpha(&pipeline, &shards, &votes, &member))
                        .await
                        .map_err(StepError::Invalid)?
                }
            };
            step(mesh, drive, Event::MemberWeighed { index, weight }).await?;
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
        previous.iter().map(|(m, a)| (argmax_rows(&m.predict(rows.x().view())), *a)).collect();
    let weights = boosting::row_weights(truth, &votes);
    let predicted = argmax_rows(&member.predict(rows.x().view()));
    Ok(boosting::alpha(boosting::weighted_error(truth, &predicted, &weights), pipeline.classes.len()))
}

/// Runs the remaining rounds of a data-parallel job. In each round every
/// worker averages the previous round's weights itself (a robust average,
/// [`task::average`]), trains on its shards, and stores the result; a
/// worker that fails is left out of that round's average, and the rows a
/// worker claims are capped at its shards' rows in the dataset's manifest.
/// Returns the final averaged model.
async fn data_parallel(
    mesh: &Mesh,
    drive: &mut Drive,
    manifest: &DatasetManifest,
    pipeline: ContentId,
    rounds: usize,
) -> Result<Mlp, StepError> {
    while drive.record().rounds_done < rounds {
        let (round, start) = (drive.record().rounds_done, drive.record().averaged_from.clone());
        let mut outputs: Vec<Option<(ContentId, u64)>> = vec![None; drive.record().tasks.len()];
        let all: Vec<usize> = (0..drive.record().tasks.len()).collect();
        train_planned(
            mesh,
            drive,
            TaskList::SubModels,
            all,
            |record, index| machine::assignment(record, index, pipeline, &start),
            |record, index, result| match result {
                Ok((peer, trained)) => {
                    let held: u64 = manifest
                        .shards
                        .iter()
                        .filter(|s| record.tasks[index].shards.contains(&s.id))
                        .map(|s| s.rows)
                        .sum();
                    outputs[index] = Some((trained.weights, trained.rows.min(held)));
                    Ok(Some(Event::WorkerFinished { round, index, outcome: outcome(peer, trained) }))
                }
                Err(e) => {
                    warn!(worker = index, round, "worker left out of this round: {e}");
                    Ok(None)
                }
            },
        )
        .await?;
        let from: Vec<(ContentId, u64)> = outputs.into_iter().flatten().collect();
        if from.is_empty() {
            return Err(StepError::Unavailable(format!("no worker finished round {round}")));
        }
        step(mesh, drive, Event::RoundAveraged { round, from }).await?;
    }
    Ok(task::average(mesh, &drive.record().averaged_from).await?)
}

/// For each task, the nodes to ask to train it, best first: where it
/// would finish soonest given each live node's measured capacity and the
/// training it is already running (a node that must fetch the task's
/// shards pays a penalty), or, with uniform placement, spread evenly.
pub(crate) async fn plan_trainers(mesh: &Mesh, tasks: &[TaskRecord], placement: Placement) -> Vec<Vec<PeerId>> {
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
            Err(task::TrainError::Busy(_) | task::TrainError::Leaving) => Attempt::Busy,
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

/// Trains tasks `indices` of the record (of its sub-models or its folds)
/// where their plan says, at most as many at once per node as it has
/// compute slots; a node that refuses or fails a task passes it to the
/// task's next choice, and this node takes what every other refused.
/// Every hand-over and refusal goes to the machine; `outcome` turns each
/// result (an error only when this node failed it too) into the event
/// that records it, if any.
async fn train_planned(
    mesh: &Mesh,
    drive: &mut Drive,
    list: TaskList,
    indices: Vec<usize>,
    work_of: impl Fn(&JobRecord, usize) -> Assignment,
    mut outcome: impl FnMut(&JobRecord, usize, Result<(String, Trained), String>) -> Result<Option<Event>, StepError>,
) -> Result<(), StepError> {
    let record = drive.record();
    let tasks = if list == TaskList::Folds { &record.folds } else { &record.tasks };
    let plans = plan_trainers(mesh, tasks, record.spec.placement).await;
    let local = mesh.net.local_peer_id();
    let planned = indices.into_iter().map(|i| (i, plans[i].clone())).collect();
    let mut dispatch = Dispatch::new(planned, mesh.slots_by_peer().await, local);
    let mut running = FuturesUnordered::new();
    // The checkpoint being written, and whether the record changed since.
    // Tasks are handed out while it is written: on a mesh a checkpoint is a
    // round trip to the record's homes, which a home busy training answers
    // late (7-23 ms on two pinned nodes), and a task that ended meanwhile
    // left its node idle until the write was over.
    let mut saving: Option<futures::future::BoxFuture<'_, Result<(), StepError>>> = None;
    let mut unsaved = false;
    let trained = async {
        loop {
            for (index, peer, queue) in dispatch.ready() {
                unsaved |= drive.apply(Event::TaskStarted { list, index, peer: peer.to_string() })? == Save::Checkpoint;
                let (mesh, work) = (mesh.clone(), work_of(drive.record(), index));
                running.push(async move {
                    let started = std::time::Instant::now();
                    let attempted = attempt(&mesh, work, peer, queue).await;
                    info!(task = index, %peer, ms = started.elapsed().as_millis() as u64, "task attempt over");
                    (index, peer, attempted)
                });
            }
            if unsaved && saving.is_none() {
                // A finished task's checkpoint is taken once the slot it freed
                // has its next task, so that task goes out first.
                let record = drive.record().clone();
                saving = Some(Box::pin(async move { save_checkpoint(mesh, &record).await }));
                unsaved = false;
            }
            if saving.is_none() && running.is_empty() {
                break;
            }
            let written = async {
                match saving.as_mut() {
                    Some(write) => write.await,
                    None => std::future::pending().await,
                }
            };
            let (index, peer, attempted) = tokio::select! {
                written = written => {
                    saving = None;
                    written?;
                    continue;
                }
                Some(over) = running.next() => over,
            };
            let result = match attempted {
                Attempt::Busy => {
                    info!(job = %drive.record().id, task = index, %peer, "busy: the task goes to its next choice");
                    unsaved |=
                        drive.apply(Event::TaskFailed { list, index, peer: peer.to_string() })? == Save::Checkpoint;
                    dispatch.refused(index, &peer);
                    continue;
                }
                Attempt::Failed(e) if peer != local => {
                    warn!(%peer, "training elsewhere failed: {e}");
                    unsaved |=
                        drive.apply(Event::TaskFailed { list, index, peer: peer.to_string() })? == Save::Checkpoint;
                    dispatch.refused(index, &peer);
                    continue;
                }
                Attempt::Failed(e) => {
                    unsaved |=
                        drive.apply(Event::TaskFailed { list, index, peer: peer.to_string() })? == Save::Checkpoint;
                    Err(e)
                }
                Attempt::Trained(by, trained) => Ok((by, trained)),
            };
            dispatch.done(index, &peer);
            if let Some(event) = outcome(drive.record(), index, result)? {
                unsaved |= drive.apply(event)? == Save::Checkpoint;
            }
        }
        Ok(())
    }
    .await;
    if trained.is_err() {
        // A task failed for good: what finished before it is kept, so the
        // next drive does not train it again.
        if let Some(write) = saving.take() {
            let _ = write.await;
        }
        if unsaved {
            let _ = save_checkpoint(mesh, drive.record()).await;
        }
    }
    trained
}

/// Trains a task on the first of `order` that can (this node trains it when
/// it comes first, waiting for a slot, or when every other node refuses or
/// fails).
pub(crate) async fn train_somewhere(
    mesh: &Mesh,
    work: Assignment,
    order: Vec<PeerId>,
) -> Result<(String, Trained), String> {
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
