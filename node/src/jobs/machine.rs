//! The job driver's decisions, as a state machine without I/O.
//!
//! A [`Drive`] is one driver's view of a job: the checkpointed
//! [`JobRecord`] plus what this drive did that no checkpoint holds (members
//! loaded, the model judged). [`Drive::next`] says which step comes next;
//! the driver ([`super::driver`]) executes it and hands back what happened
//! as an [`Event`]; [`Drive::apply`] folds the event into the record,
//! refuses what would break an invariant, and says whether the change must
//! be checkpointed. Nothing here awaits or touches the mesh, so a
//! simulation (`mass_simulations::jobs`) drives this same code through
//! crashes, lost peers, cancels and late events.
//!
//! What `apply` holds, whatever arrives:
//! - **The record never goes back.** Pending < Running < Completed, Failed
//!   or Cancelled, and a job that is over records nothing more. A finished
//!   task keeps its result; the one way back is [`Event::WeightsLost`] for
//!   exactly the weights it holds (their only copy is gone, so the task is
//!   trained again), never once the model is published.
//! - **Cancel wins.** After [`Event::CancelSeen`] the job is Cancelled.
//! - **One model per job.** A second [`Event::Published`] naming another
//!   model is refused.
//! - **Steps in order.** An outcome that arrives before its step (a slow
//!   old driver's event reaching a new drive) is refused.

use std::collections::BTreeMap;

use mass_protocol::{
    ContentId,
    jobs::{
        Assignment, BoostRecord, Combine, EnsembleSpec, Evaluation, JobRecord, JobSpec, JobState, Learner, Task,
        TaskRecord,
    },
};

/// Which of a record's task lists an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TaskList {
    SubModels,
    Folds,
}

impl std::fmt::Display for TaskList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskList::SubModels => "sub-model",
            TaskList::Folds => "fold",
        })
    }
}

/// How a job's members are trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Training {
    /// Each task on its own (a single model, bagging, stacking).
    Bagged,
    /// One after another, each told the ones before it (boosting of any learner).
    Boosted,
    /// Rounds of all workers at once, averaged between rounds.
    DataParallel { rounds: usize },
    /// A single tree model grown across the shards' homes (`jobs::boost`).
    BoostedAcross,
}

/// How `spec`'s members are trained.
pub fn training(spec: &JobSpec) -> Training {
    match spec.ensemble {
        EnsembleSpec::Single if matches!(spec.spec.learner, Learner::Gbdt(_)) => Training::BoostedAcross,
        EnsembleSpec::Boosting { .. } => Training::Boosted,
        EnsembleSpec::DataParallel { rounds, .. } => Training::DataParallel { rounds },
        _ => Training::Bagged,
    }
}

/// The next step of a drive.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// The job is over: nothing to do.
    Done,
    /// Stop this drive and leave the record open; the watcher retries.
    Yield(String),
    /// Record this peer as the job's driver and the job as running.
    MarkRunning,
    /// Classification or regression, from the dataset's label.
    ResolveTask,
    /// Fit the pipeline where the shards live (and trees' setup).
    FitPipeline { task: Task },
    /// Split the work into tasks ([`plan_tasks`]).
    PlanTasks,
    /// Train every unfinished member and load them all.
    TrainMembers { pipeline: ContentId },
    /// Combine the members and judge the model on each test shard.
    Evaluate,
    /// Cross-validation: one task per fold ([`plan_folds`]).
    PlanFolds { folds: u32 },
    /// Train every unfinished fold.
    TrainFolds { pipeline: ContentId, folds: u32 },
    /// Judge fold `fold`'s model on its rows.
    JudgeFold { fold: usize, folds: u32 },
    /// Store the model manifest and name it.
    Publish,
}

impl Command {
    /// The step's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Done => "done",
            Command::Yield(_) => "yield",
            Command::MarkRunning => "mark running",
            Command::ResolveTask => "resolve task",
            Command::FitPipeline { .. } => "fit pipeline",
            Command::PlanTasks => "plan tasks",
            Command::TrainMembers { .. } => "train members",
            Command::Evaluate => "evaluate",
            Command::PlanFolds { .. } => "plan folds",
            Command::TrainFolds { .. } => "train folds",
            Command::JudgeFold { .. } => "judge fold",
            Command::Publish => "publish",
        }
    }
}

/// What a trainer reported for one task.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub peer: String,
    pub weights: ContentId,
    pub rows: u64,
    pub curve: Vec<f64>,
    pub backend: String,
}

/// One finished round of trees grown across the shards' homes.
#[derive(Debug, Clone, PartialEq)]
pub struct BoostRound {
    pub round: usize,
    pub trees: ContentId,
    pub train_loss: f64,
    pub validation_loss: Option<f64>,
    /// Early stopping's state after the round.
    pub stopped: bool,
    pub best: Option<(u32, f64)>,
    /// Whether to checkpoint the record now; rounds in between are kept in
    /// memory (a new driver grows them again, to the same trees). A round
    /// that stops early is always checkpointed.
    pub checkpoint: bool,
}

/// What an executed step (or part of one) came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// This peer drives the job now.
    Started,
    TaskResolved(Task),
    PipelineFitted {
        dataset_manifest: ContentId,
        pipeline: ContentId,
        setup: Option<ContentId>,
    },
    TasksPlanned(Vec<TaskRecord>),
    /// A task was handed to `peer`.
    TaskStarted {
        list: TaskList,
        index: usize,
        peer: String,
    },
    /// `peer` refused or failed a task: it goes back to unassigned.
    TaskFailed {
        list: TaskList,
        index: usize,
        peer: String,
    },
    TaskFinished {
        list: TaskList,
        index: usize,
        outcome: Outcome,
    },
    /// The task's weights cannot be had any more: train it again.
    WeightsLost {
        list: TaskList,
        index: usize,
        weights: ContentId,
    },
    /// A boosted member's weight in the combination.
    MemberWeighed {
        index: usize,
        weight: f64,
    },
    /// A data-parallel worker finished round `round`.
    WorkerFinished {
        round: usize,
        index: usize,
        outcome: Outcome,
    },
    /// Round `round` of data-parallel training is over; the next starts from `from`.
    RoundAveraged {
        round: usize,
        from: Vec<(ContentId, u64)>,
    },
    /// The nodes holding the rows of a boosted job, with their shards.
    BoostOpened {
        workers: Vec<(String, Vec<ContentId>)>,
    },
    BoostRound(BoostRound),
    /// Every member is trained and loaded.
    MembersReady,
    /// The model on the test (or, for a trial, validation) rows, and each member's score.
    Evaluated {
        evaluation: Evaluation,
        member_scores: Vec<f64>,
    },
    FoldsPlanned(Vec<TaskRecord>),
    /// Every fold is trained.
    FoldsTrained,
    FoldJudged {
        fold: usize,
        score: f64,
    },
    Published {
        model: ContentId,
    },
    /// The job cannot succeed.
    Failed(String),
    /// Something may work later: this drive stops, the record stays open.
    Transient(String),
    /// The job's cancel flag is set.
    CancelSeen,
    /// A peer is gone: tasks handed to it and not finished are unassigned.
    PeerDown(String),
}

impl Event {
    /// The event's name, for refusals.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::TaskResolved(_) => "task resolved",
            Event::PipelineFitted { .. } => "pipeline fitted",
            Event::TasksPlanned(_) => "tasks planned",
            Event::TaskStarted { .. } => "task started",
            Event::TaskFailed { .. } => "task failed",
            Event::TaskFinished { .. } => "task finished",
            Event::WeightsLost { .. } => "weights lost",
            Event::MemberWeighed { .. } => "member weighed",
            Event::WorkerFinished { .. } => "worker finished",
            Event::RoundAveraged { .. } => "round averaged",
            Event::BoostOpened { .. } => "boosting opened",
            Event::BoostRound(_) => "boosting round",
            Event::MembersReady => "members ready",
            Event::Evaluated { .. } => "evaluated",
            Event::FoldsPlanned(_) => "folds planned",
            Event::FoldsTrained => "folds trained",
            Event::FoldJudged { .. } => "fold judged",
            Event::Published { .. } => "published",
            Event::Failed(_) => "failed",
            Event::Transient(_) => "transient failure",
            Event::CancelSeen => "cancel seen",
            Event::PeerDown(_) => "peer down",
        }
    }
}

/// Whether an applied event's change must survive the driver.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Save {
    /// Checkpoint the record now: the next driver resumes from here.
    Checkpoint,
    /// Kept in memory: lost with this driver, which is fine (redone, or
    /// written with the next checkpoint).
    InMemory,
}

/// Why an event was not recorded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("the job is over; '{event}' is not recorded")]
    Over { event: &'static str },
    #[error("'{event}' arrived before its step")]
    OutOfOrder { event: &'static str },
    #[error("'{event}' names {list} {index}, which the job does not have")]
    NoSuchTask { event: &'static str, list: TaskList, index: usize },
    /// The event would change something already decided.
    #[error("'{event}' conflicts with the record: {reason}")]
    Conflict { event: &'static str, reason: String },
}

/// Why a step of a drive stopped short.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The job cannot succeed (no such dataset, data that does not fit the spec).
    #[error("{0}")]
    Invalid(String),
    /// A blob the job needs decodes to nothing valid. Its bytes match its
    /// id, so fetching it again cannot help.
    #[error("blob {blob} ({what}) is corrupt: {reason}")]
    Corrupt { blob: ContentId, what: &'static str, reason: String },
    /// A peer or a blob cannot be reached now.
    #[error("{0}")]
    Unavailable(String),
    /// The job's cancel flag is set.
    #[error("job {0} was cancelled")]
    Cancelled(ContentId),
    /// The machine refused the executor's own outcome: a retry from the
    /// same record would be refused again.
    #[error("the driver's step was refused: {0}")]
    Refused(#[from] Refused),
    /// Another driver wrote the job's record after this one started (this
    /// one stalled and was taken over), or the job is over: this drive
    /// stops without writing anything more.
    #[error("job {0} is driven elsewhere now ({1})")]
    Superseded(ContentId, String),
}

impl From<String> for StepError {
    /// Untyped errors (of the mesh, a peer) are taken to pass.
    fn from(message: String) -> Self {
        StepError::Unavailable(message)
    }
}

impl StepError {
    /// What the error means for the job: invalid input, a corrupt blob or a
    /// refused step fail it; an unreachable peer or blob leaves it open.
    pub fn into_event(self) -> Event {
        match self {
            StepError::Unavailable(message) => Event::Transient(message),
            StepError::Cancelled(_) => Event::CancelSeen,
            // Never applied: the driver stops first (`driver::drive`).
            StepError::Superseded(_, message) => Event::Transient(message),
            failed => Event::Failed(failed.to_string()),
        }
    }
}

/// One driver's view of a job.
#[derive(Debug, Clone)]
pub struct Drive {
    record: JobRecord,
    me: String,
    // What follows is this drive's alone: a new driver starts without it.
    started: bool,
    members_ready: bool,
    evaluated: Option<(Evaluation, Vec<f64>)>,
    stopped: Option<String>,
    in_flight: BTreeMap<(TaskList, usize), String>,
}

impl Drive {
    /// Peer `me` takes the job up from its checkpointed `record`.
    pub fn resume(record: JobRecord, me: String) -> Self {
        Self {
            record,
            me,
            started: false,
            members_ready: false,
            evaluated: None,
            stopped: None,
            in_flight: BTreeMap::new(),
        }
    }

    pub fn record(&self) -> &JobRecord {
        &self.record
    }

    pub fn into_record(self) -> JobRecord {
        self.record
    }

    /// The model's evaluation and each member's score, once judged by this drive.
    pub fn evaluated(&self) -> Option<&(Evaluation, Vec<f64>)> {
        self.evaluated.as_ref()
    }

    /// Tasks handed to a peer and not finished, with the peer.
    pub fn in_flight(&self) -> &BTreeMap<(TaskList, usize), String> {
        &self.in_flight
    }

    /// The step to execute next.
    pub fn next(&self) -> Command {
        let record = &self.record;
        if record.state.is_over() {
            return Command::Done;
        }
        if let Some(reason) = &self.stopped {
            return Command::Yield(reason.clone());
        }
        if !self.started {
            return Command::MarkRunning;
        }
        let Some(task) = record.task else { return Command::ResolveTask };
        let Some(pipeline) = record.pipeline else { return Command::FitPipeline { task } };
        if record.tasks.is_empty() {
            return Command::PlanTasks;
        }
        if !self.members_ready {
            return Command::TrainMembers { pipeline };
        }
        if self.evaluated.is_none() {
            return Command::Evaluate;
        }
        if let Some(folds) = record.spec.cv {
            if record.folds.is_empty() {
                return Command::PlanFolds { folds };
            }
            if record.folds.iter().any(|f| f.weights.is_none()) {
                return Command::TrainFolds { pipeline, folds };
            }
            if let Some(fold) = record.folds.iter().position(|f| f.test_score.is_none()) {
                return Command::JudgeFold { fold, folds };
            }
        }
        Command::Publish
    }

    /// Folds `event` into the record, or refuses it and changes nothing.
    pub fn apply(&mut self, event: Event) -> Result<Save, Refused> {
        let name = event.name();
        if self.record.state.is_over() {
            return match event {
                Event::CancelSeen if self.record.state == JobState::Cancelled => Ok(Save::InMemory),
                Event::Published { model } if self.record.model.is_some_and(|m| m != model) => {
                    Err(self.second_model(model))
                }
                _ => Err(Refused::Over { event: name }),
            };
        }
        let out_of_order = Err(Refused::OutOfOrder { event: name });
        let always = matches!(event, Event::Failed(_) | Event::Transient(_) | Event::CancelSeen | Event::PeerDown(_));
        if !self.started && !always && event != Event::Started {
            return out_of_order;
        }
        let training = training(&self.record.spec);
        let conflict = |reason: String| Err(Refused::Conflict { event: name, reason });
        match event {
            Event::Started => {
                if self.record.drivers.last() != Some(&self.me) {
                    self.record.drivers.push(self.me.clone());
                }
                self.record.state = JobState::Running;
                self.started = true;
                Ok(Save::Checkpoint)
            }
            Event::TaskResolved(task) => match self.record.task {
                Some(known) if known != task => conflict(format!("the task is {known:?}")),
                _ => {
                    self.record.task = Some(task);
                    Ok(Save::InMemory)
                }
            },
            Event::PipelineFitted { dataset_manifest, pipeline, setup } => {
                if self.record.task.is_none() {
                    return out_of_order;
                }
                if setup.is_some() != matches!(self.record.spec.spec.learner, Learner::Gbdt(_)) {
                    return conflict("a tree setup goes with tree learners, and only with them".into());
                }
                match self.record.pipeline {
                    Some(known) if known == pipeline && self.record.setup == setup => Ok(Save::InMemory),
                    Some(known) => conflict(format!("the pipeline is {known}")),
                    None => {
                        (self.record.dataset_manifest, self.record.pipeline) = (Some(dataset_manifest), Some(pipeline));
                        self.record.setup = setup;
                        Ok(Save::Checkpoint)
                    }
                }
            }
            Event::TasksPlanned(tasks) => {
                if self.record.pipeline.is_none() {
                    return out_of_order;
                }
                if tasks.is_empty() {
                    return conflict("a plan of no tasks".into());
                }
                if !self.record.tasks.is_empty() {
                    return if self.record.tasks == tasks {
                        Ok(Save::InMemory)
                    } else {
                        conflict("the tasks are planned already".into())
                    };
                }
                self.record.tasks = tasks;
                Ok(Save::Checkpoint)
            }
            Event::TaskStarted { list, index, peer } => {
                let task = self.task(name, list, index)?;
                let rounds = list == TaskList::SubModels && matches!(training, Training::DataParallel { .. });
                if task.weights.is_some() && !rounds {
                    return conflict(format!("{list} {index} is trained"));
                }
                // The executor hands a task out again only once it gave up on
                // the last peer: the newest hand-over is the one that counts.
                self.in_flight.insert((list, index), peer);
                Ok(Save::InMemory)
            }
            Event::TaskFailed { list, index, peer } => {
                self.task(name, list, index)?;
                if self.in_flight.get(&(list, index)) == Some(&peer) {
                    self.in_flight.remove(&(list, index));
                }
                Ok(Save::InMemory)
            }
            Event::TaskFinished { list, index, outcome } => {
                if list == TaskList::SubModels && matches!(training, Training::DataParallel { .. }) {
                    return conflict("data-parallel workers report per round".into());
                }
                let task = self.task(name, list, index)?;
                match task.weights {
                    Some(known) if known == outcome.weights => {
                        self.in_flight.remove(&(list, index));
                        Ok(Save::InMemory)
                    }
                    Some(known) => conflict(format!("{list} {index} is trained already, to {known}")),
                    None => {
                        self.in_flight.remove(&(list, index));
                        finish(self.task_mut(list, index), outcome);
                        // Boosted members are saved with their weight; a
                        // model boosted across nodes with the job.
                        let later = list == TaskList::SubModels
                            && matches!(training, Training::Boosted | Training::BoostedAcross);
                        Ok(if later { Save::InMemory } else { Save::Checkpoint })
                    }
                }
            }
            Event::WeightsLost { list, index, weights } => {
                if list == TaskList::SubModels && training != Training::Bagged {
                    return conflict("only bagged sub-models and folds are trained again".into());
                }
                let task = self.task(name, list, index)?;
                if task.weights != Some(weights) {
                    return conflict(format!("{list} {index} does not hold {weights}"));
                }
                if task.test_score.is_some() && list == TaskList::Folds {
                    return conflict(format!("fold {index} is judged"));
                }
                self.task_mut(list, index).weights = None;
                self.members_ready = false;
                Ok(Save::Checkpoint)
            }
            Event::MemberWeighed { index, weight } => {
                if training != Training::Boosted {
                    return conflict("only boosted members are weighed".into());
                }
                let task = self.task(name, TaskList::SubModels, index)?;
                let earlier = &self.record.tasks[..index];
                if task.weights.is_none() || earlier.iter().any(|t| t.weights.is_none() || t.weight.is_none()) {
                    return out_of_order;
                }
                match task.weight {
                    Some(known) if known.to_bits() == weight.to_bits() => Ok(Save::InMemory),
                    Some(known) => conflict(format!("member {index} weighs {known}")),
                    None => {
                        self.record.tasks[index].weight = Some(weight);
                        Ok(Save::Checkpoint)
                    }
                }
            }
            Event::WorkerFinished { round, index, outcome } => {
                if !matches!(training, Training::DataParallel { .. }) {
                    return conflict("only data-parallel jobs have workers".into());
                }
                self.task(name, TaskList::SubModels, index)?;
                if round != self.record.rounds_done {
                    return conflict(format!("round {round} is not the current round"));
                }
                self.in_flight.remove(&(TaskList::SubModels, index));
                finish(&mut self.record.tasks[index], outcome);
                Ok(Save::InMemory)
            }
            Event::RoundAveraged { round, from } => {
                let Training::DataParallel { rounds } = training else {
                    return conflict("only data-parallel jobs have rounds".into());
                };
                if round != self.record.rounds_done || round >= rounds {
                    return conflict(format!("round {round} is not the current round"));
                }
                if from.is_empty() {
                    return conflict(format!("no worker finished round {round}"));
                }
                self.record.averaged_from = from;
                self.record.rounds_done += 1;
                Ok(Save::Checkpoint)
            }
            Event::BoostOpened { workers } => {
                if training != Training::BoostedAcross {
                    return conflict("only tree models boosted across nodes open workers".into());
                }
                self.record.boost.get_or_insert_with(BoostRecord::default).workers = workers;
                Ok(Save::InMemory)
            }
            Event::BoostRound(round) => {
                if training != Training::BoostedAcross {
                    return conflict("only tree models boosted across nodes have rounds".into());
                }
                let (stopped, done) = self.record.boost.as_ref().map_or((false, 0), |b| (b.stopped, b.rounds.len()));
                if stopped {
                    return conflict("early stopping ended the rounds".into());
                }
                if round.round != done {
                    return conflict(format!("round {} is not the current round", round.round));
                }
                let state = self.record.boost.get_or_insert_with(BoostRecord::default);
                state.rounds.push(round.trees);
                state.train_loss.push(round.train_loss);
                if let Some(loss) = round.validation_loss {
                    state.validation_loss.push(loss);
                }
                (state.stopped, state.best) = (round.stopped, round.best);
                if let Some(task) = self.record.tasks.first_mut() {
                    task.curve.push(round.train_loss);
                }
                Ok(if round.checkpoint || round.stopped { Save::Checkpoint } else { Save::InMemory })
            }
            Event::MembersReady => {
                let tasks = &self.record.tasks;
                let ready = match training {
                    Training::Bagged => tasks.iter().all(|t| t.weights.is_some()),
                    Training::Boosted => tasks.iter().all(|t| t.weights.is_some() && t.weight.is_some()),
                    Training::DataParallel { rounds } => self.record.rounds_done >= rounds,
                    Training::BoostedAcross => tasks.first().is_some_and(|t| t.weights.is_some()),
                };
                if !ready {
                    return out_of_order;
                }
                self.members_ready = true;
                Ok(Save::InMemory)
            }
            Event::Evaluated { evaluation, member_scores } => {
                if !self.members_ready {
                    return out_of_order;
                }
                self.evaluated.get_or_insert((evaluation, member_scores));
                Ok(Save::InMemory)
            }
            Event::FoldsPlanned(folds) => {
                if self.evaluated.is_none() {
                    return out_of_order;
                }
                if self.record.spec.cv != Some(folds.len() as u32) {
                    return conflict(format!("{} folds where the job asks for {:?}", folds.len(), self.record.spec.cv));
                }
                if !self.record.folds.is_empty() {
                    return if self.record.folds == folds {
                        Ok(Save::InMemory)
                    } else {
                        conflict("the folds are planned already".into())
                    };
                }
                self.record.folds = folds;
                Ok(Save::Checkpoint)
            }
            Event::FoldsTrained => {
                if self.record.folds.is_empty() || self.record.folds.iter().any(|f| f.weights.is_none()) {
                    return out_of_order;
                }
                Ok(Save::InMemory)
            }
            Event::FoldJudged { fold, score } => {
                let task = self.task(name, TaskList::Folds, fold)?;
                if task.weights.is_none() || self.evaluated.is_none() {
                    return out_of_order;
                }
                match task.test_score {
                    Some(known) if known.to_bits() == score.to_bits() => Ok(Save::InMemory),
                    Some(known) => conflict(format!("fold {fold} scored {known}")),
                    None => {
                        self.record.folds[fold].test_score = Some(score);
                        Ok(Save::Checkpoint)
                    }
                }
            }
            Event::Published { model } => {
                if let Some(known) = self.record.model
                    && known != model
                {
                    return Err(self.second_model(model));
                }
                let Some((evaluation, member_scores)) = self.evaluated.clone() else { return out_of_order };
                let cross_validated = self.record.folds.iter().all(|f| f.test_score.is_some())
                    && self.record.spec.cv.is_none_or(|k| self.record.folds.len() == k as usize);
                if !cross_validated {
                    return out_of_order;
                }
                // Bagged members are models of their own; data-parallel workers are not.
                if !matches!(training, Training::DataParallel { .. }) {
                    for (task, score) in self.record.tasks.iter_mut().zip(member_scores) {
                        task.test_score = Some(score);
                    }
                }
                self.record.evaluation = Some(evaluation);
                self.record.model = Some(model);
                self.record.state = JobState::Completed;
                Ok(Save::Checkpoint)
            }
            Event::Failed(message) => {
                self.record.state = JobState::Failed(message);
                Ok(Save::Checkpoint)
            }
            Event::Transient(message) => {
                self.stopped.get_or_insert(message);
                Ok(Save::InMemory)
            }
            Event::CancelSeen => {
                // The cancel flag is the durable record: a checkpoint would be refused.
                self.record.state = JobState::Cancelled;
                Ok(Save::InMemory)
            }
            Event::PeerDown(peer) => {
                self.in_flight.retain(|_, p| *p != peer);
                Ok(Save::InMemory)
            }
        }
    }

    fn second_model(&self, model: ContentId) -> Refused {
        Refused::Conflict {
            event: "published",
            reason: format!(
                "the job's model is {}, not {model}",
                self.record.model.map_or("none".into(), |m| m.to_string())
            ),
        }
    }

    fn task(&self, event: &'static str, list: TaskList, index: usize) -> Result<&TaskRecord, Refused> {
        let tasks = match list {
            TaskList::SubModels => &self.record.tasks,
            TaskList::Folds => &self.record.folds,
        };
        tasks.get(index).ok_or(Refused::NoSuchTask { event, list, index })
    }

    fn task_mut(&mut self, list: TaskList, index: usize) -> &mut TaskRecord {
        match list {
            TaskList::SubModels => &mut self.record.tasks[index],
            TaskList::Folds => &mut self.record.folds[index],
        }
    }
}

fn finish(task: &mut TaskRecord, outcome: Outcome) {
    (task.peer, task.weights, task.rows, task.curve) =
        (Some(outcome.peer), Some(outcome.weights), outcome.rows, outcome.curve);
    task.backend = outcome.backend;
}

/// The tasks of a job over a dataset of `shards`, by ensemble kind.
pub fn plan_tasks(spec: &JobSpec, shards: &[ContentId]) -> Result<Vec<TaskRecord>, String> {
    if shards.is_empty() {
        return Err(format!("dataset '{}' has no shards", spec.dataset));
    }
    let seed = spec.seed;
    Ok(match spec.ensemble {
        EnsembleSpec::Single => vec![TaskRecord::new(shards.to_vec(), seed)],
        // The same seed everywhere: every worker starts from the same weights.
        EnsembleSpec::DataParallel { workers, .. } => (0..workers.min(shards.len()))
            .map(|w| TaskRecord::new(shards.iter().skip(w).step_by(workers).copied().collect(), seed))
            .collect(),
        // Every boosted member sees all training rows (the ones before it decide how).
        EnsembleSpec::Boosting { members } => {
            (0..members).map(|i| TaskRecord::new(shards.to_vec(), seed + i as u64)).collect()
        }
        EnsembleSpec::Bagging { members } | EnsembleSpec::Stacking { members } => {
            (0..members).map(|i| TaskRecord::new(vec![shards[i % shards.len()]], seed + i as u64)).collect()
        }
    })
}

/// One task per fold of cross-validation, each over every shard.
pub fn plan_folds(spec: &JobSpec, shards: &[ContentId], folds: u32) -> Vec<TaskRecord> {
    (0..folds).map(|k| TaskRecord::new(shards.to_vec(), spec.seed.wrapping_add(u64::from(k)))).collect()
}

/// How the members' outputs become the model's, given each task's weight.
pub fn combine(spec: &JobSpec, task: Task, tasks: &[TaskRecord]) -> Combine {
    match spec.ensemble {
        EnsembleSpec::Stacking { .. } => Combine::Stacked,
        EnsembleSpec::Boosting { .. } => {
            let weights: Vec<f64> = tasks.iter().map(|t| t.weight.unwrap_or(0.0)).collect();
            match task {
                Task::Regression => Combine::WeightedSum(weights),
                // Members no better than chance get no vote; if none is, all vote alike.
                Task::Classification if weights.iter().sum::<f64>() > 0.0 => Combine::WeightedMean(weights),
                Task::Classification => Combine::Mean,
            }
        }
        _ => Combine::Mean,
    }
}

/// What sub-model `index` of `record` asks a trainer to do.
pub fn assignment(record: &JobRecord, index: usize, pipeline: ContentId, start: &[(ContentId, u64)]) -> Assignment {
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
        teacher: None,
        fold: None,
    }
}

/// What fold `k` of `record` asks a trainer to do: the job's learner, alone,
/// on every shard's training rows outside the fold.
pub fn fold_assignment(record: &JobRecord, k: usize, pipeline: ContentId, folds: u32) -> Assignment {
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
        teacher: None,
        fold: Some((k as u32, folds)),
    }
}

#[cfg(test)]
mod tests {
    use mass_protocol::jobs::{ModelSpec, TreeSpec};

    use super::*;

    fn id(name: &str) -> ContentId {
        ContentId::of(name.as_bytes())
    }

    fn spec(ensemble: EnsembleSpec, learner: Learner, cv: Option<u32>) -> JobSpec {
        JobSpec {
            model: "m".into(),
            dataset: "d".into(),
            pipeline: Default::default(),
            spec: ModelSpec::of(learner),
            ensemble,
            seed: 7,
            task: None,
            placement: Default::default(),
            trial: None,
            cv,
        }
    }

    fn pending(spec: JobSpec) -> JobRecord {
        JobRecord::pending(id("job"), spec)
    }

    /// Applies an event the test expects to be taken.
    fn take(drive: &mut Drive, event: Event) {
        if let Err(refused) = drive.apply(event) {
            panic!("refused: {refused}");
        }
    }

    fn trained(name: &str) -> Outcome {
        Outcome { peer: "p1".into(), weights: id(name), rows: 10, curve: vec![1.0], backend: "cpu".into() }
    }

    fn evaluated() -> Event {
        Event::Evaluated { evaluation: Evaluation::regression(10, 1.0, 1.0, 0.5), member_scores: vec![0.5, 0.6] }
    }

    /// A bagging job of two members, its tasks planned.
    fn planned(cv: Option<u32>) -> Drive {
        let mut drive =
            Drive::resume(pending(spec(EnsembleSpec::Bagging { members: 2 }, Learner::Linear, cv)), "me".into());
        let shards = [id("s0"), id("s1")];
        for event in [
            Event::Started,
            Event::TaskResolved(Task::Regression),
            Event::PipelineFitted { dataset_manifest: id("d"), pipeline: id("p"), setup: None },
            Event::TasksPlanned(plan_tasks(&drive.record().spec, &shards).unwrap()),
        ] {
            take(&mut drive, event);
        }
        drive
    }

    /// The steps a drive takes, in order, and which outcomes are checkpointed.
    #[test]
    fn a_bagged_job_with_cross_validation_goes_step_by_step() {
        let mut drive =
            Drive::resume(pending(spec(EnsembleSpec::Bagging { members: 2 }, Learner::Linear, Some(2))), "me".into());
        let pipeline = id("p");
        let script: Vec<(Command, Event, Save)> = vec![
            (Command::MarkRunning, Event::Started, Save::Checkpoint),
            (Command::ResolveTask, Event::TaskResolved(Task::Regression), Save::InMemory),
            (
                Command::FitPipeline { task: Task::Regression },
                Event::PipelineFitted { dataset_manifest: id("d"), pipeline, setup: None },
                Save::Checkpoint,
            ),
            (
                Command::PlanTasks,
                Event::TasksPlanned(plan_tasks(&drive.record().spec, &[id("s")]).unwrap()),
                Save::Checkpoint,
            ),
            (
                Command::TrainMembers { pipeline },
                Event::TaskFinished { list: TaskList::SubModels, index: 0, outcome: trained("w0") },
                Save::Checkpoint,
            ),
            (
                Command::TrainMembers { pipeline },
                Event::TaskFinished { list: TaskList::SubModels, index: 1, outcome: trained("w1") },
                Save::Checkpoint,
            ),
            (Command::TrainMembers { pipeline }, Event::MembersReady, Save::InMemory),
            (Command::Evaluate, evaluated(), Save::InMemory),
            (
                Command::PlanFolds { folds: 2 },
                Event::FoldsPlanned(plan_folds(&drive.record().spec, &[id("s")], 2)),
                Save::Checkpoint,
            ),
            (
                Command::TrainFolds { pipeline, folds: 2 },
                Event::TaskFinished { list: TaskList::Folds, index: 0, outcome: trained("f0") },
                Save::Checkpoint,
            ),
            (
                Command::TrainFolds { pipeline, folds: 2 },
                Event::TaskFinished { list: TaskList::Folds, index: 1, outcome: trained("f1") },
                Save::Checkpoint,
            ),
            (Command::JudgeFold { fold: 0, folds: 2 }, Event::FoldJudged { fold: 0, score: 0.4 }, Save::Checkpoint),
            (Command::JudgeFold { fold: 1, folds: 2 }, Event::FoldJudged { fold: 1, score: 0.5 }, Save::Checkpoint),
            (Command::Publish, Event::Published { model: id("model") }, Save::Checkpoint),
        ];
        for (command, event, save) in script {
            assert_eq!(drive.next(), command, "before {event:?}");
            assert_eq!(drive.apply(event), Ok(save));
        }
        assert_eq!(drive.next(), Command::Done);
        let record = drive.record();
        assert_eq!(record.state, JobState::Completed);
        assert_eq!(record.drivers, vec!["me".to_string()]);
        assert_eq!(record.tasks.iter().map(|t| t.test_score).collect::<Vec<_>>(), vec![Some(0.5), Some(0.6)]);
        assert_eq!(record.model, Some(id("model")));
    }

    #[test]
    fn a_finished_task_keeps_its_result_and_a_duplicate_changes_nothing() {
        let mut drive = planned(None);
        let finished = Event::TaskFinished { list: TaskList::SubModels, index: 0, outcome: trained("w0") };
        assert_eq!(drive.apply(finished.clone()), Ok(Save::Checkpoint));
        assert_eq!(drive.apply(finished), Ok(Save::InMemory));
        let other = Event::TaskFinished { list: TaskList::SubModels, index: 0, outcome: trained("other") };
        assert!(matches!(drive.apply(other), Err(Refused::Conflict { .. })));
        assert_eq!(drive.record().tasks[0].weights, Some(id("w0")));
        let started = Event::TaskStarted { list: TaskList::SubModels, index: 0, peer: "p2".into() };
        assert!(matches!(drive.apply(started), Err(Refused::Conflict { .. })));
        let missing = Event::TaskFinished { list: TaskList::SubModels, index: 9, outcome: trained("w9") };
        assert!(matches!(drive.apply(missing), Err(Refused::NoSuchTask { index: 9, .. })));
    }

    #[test]
    fn lost_weights_send_only_their_own_task_back() {
        let mut drive = planned(None);
        for index in 0..2 {
            let outcome = trained(&format!("w{index}"));
            take(&mut drive, Event::TaskFinished { list: TaskList::SubModels, index, outcome });
        }
        take(&mut drive, Event::MembersReady);
        let stale = Event::WeightsLost { list: TaskList::SubModels, index: 0, weights: id("older") };
        assert!(matches!(drive.apply(stale), Err(Refused::Conflict { .. })));
        let lost = Event::WeightsLost { list: TaskList::SubModels, index: 0, weights: id("w0") };
        assert_eq!(drive.apply(lost), Ok(Save::Checkpoint));
        assert_eq!(drive.record().tasks[0].weights, None);
        assert_eq!(drive.record().tasks[1].weights, Some(id("w1")));
        assert_eq!(drive.next(), Command::TrainMembers { pipeline: id("p") });
        assert_eq!(drive.apply(Event::MembersReady), Err(Refused::OutOfOrder { event: "members ready" }));
    }

    #[test]
    fn cancel_wins_over_every_later_outcome() {
        let mut drive = planned(None);
        assert_eq!(drive.apply(Event::CancelSeen), Ok(Save::InMemory));
        assert_eq!(drive.next(), Command::Done);
        for event in [
            Event::TaskFinished { list: TaskList::SubModels, index: 0, outcome: trained("w0") },
            Event::Failed("late".into()),
            Event::Started,
            Event::Published { model: id("model") },
        ] {
            assert!(matches!(drive.apply(event), Err(Refused::Over { .. })));
        }
        assert_eq!(drive.apply(Event::CancelSeen), Ok(Save::InMemory));
        assert_eq!(drive.record().state, JobState::Cancelled);
        assert_eq!(drive.record().tasks[0].weights, None);
    }

    #[test]
    fn a_job_has_one_model() {
        let mut drive = planned(None);
        for index in 0..2 {
            let outcome = trained(&format!("w{index}"));
            take(&mut drive, Event::TaskFinished { list: TaskList::SubModels, index, outcome });
        }
        take(&mut drive, Event::MembersReady);
        assert_eq!(drive.apply(Event::Published { model: id("a") }), Err(Refused::OutOfOrder { event: "published" }));
        take(&mut drive, evaluated());
        assert_eq!(drive.apply(Event::Published { model: id("a") }), Ok(Save::Checkpoint));
        assert!(matches!(drive.apply(Event::Published { model: id("b") }), Err(Refused::Conflict { .. })));
        assert!(matches!(drive.apply(Event::CancelSeen), Err(Refused::Over { .. })));
        assert_eq!((drive.record().model, &drive.record().state), (Some(id("a")), &JobState::Completed));
    }

    #[test]
    fn outcomes_before_their_step_are_refused() {
        let mut drive = Drive::resume(pending(spec(EnsembleSpec::Single, Learner::Linear, None)), "me".into());
        let early = Event::TaskFinished { list: TaskList::SubModels, index: 0, outcome: trained("w0") };
        assert_eq!(drive.apply(early), Err(Refused::OutOfOrder { event: "task finished" }));
        take(&mut drive, Event::Started);
        let fitted = Event::PipelineFitted { dataset_manifest: id("d"), pipeline: id("p"), setup: None };
        assert_eq!(drive.apply(fitted), Err(Refused::OutOfOrder { event: "pipeline fitted" }));
        assert_eq!(drive.record().pipeline, None);
        assert_eq!(drive.apply(evaluated()), Err(Refused::OutOfOrder { event: "evaluated" }));
    }

    #[test]
    fn a_lost_peer_gives_back_its_unfinished_tasks_only() {
        let mut drive = planned(None);
        take(&mut drive, Event::TaskStarted { list: TaskList::SubModels, index: 0, peer: "p1".into() });
        take(&mut drive, Event::TaskStarted { list: TaskList::SubModels, index: 1, peer: "p1".into() });
        take(&mut drive, Event::TaskFinished { list: TaskList::SubModels, index: 0, outcome: trained("w0") });
        assert_eq!(drive.apply(Event::PeerDown("p1".into())), Ok(Save::InMemory));
        assert!(drive.in_flight().is_empty());
        assert_eq!(drive.record().tasks[0].weights, Some(id("w0")));
        take(&mut drive, Event::TaskStarted { list: TaskList::SubModels, index: 1, peer: "p2".into() });
        assert_eq!(drive.in_flight().get(&(TaskList::SubModels, 1)), Some(&"p2".to_string()));
    }

    #[test]
    fn a_late_data_parallel_round_is_refused() {
        let dp = spec(EnsembleSpec::DataParallel { workers: 2, rounds: 2 }, Learner::Linear, None);
        let mut drive = Drive::resume(pending(dp), "me".into());
        take(&mut drive, Event::Started);
        take(&mut drive, Event::TaskResolved(Task::Regression));
        take(&mut drive, Event::PipelineFitted { dataset_manifest: id("d"), pipeline: id("p"), setup: None });
        let tasks = plan_tasks(&drive.record().spec, &[id("a"), id("b")]).unwrap();
        take(&mut drive, Event::TasksPlanned(tasks));
        let round0 = Event::RoundAveraged { round: 0, from: vec![(id("w"), 5)] };
        assert_eq!(drive.apply(round0.clone()), Ok(Save::Checkpoint));
        assert!(matches!(drive.apply(round0), Err(Refused::Conflict { .. })));
        let stale = Event::WorkerFinished { round: 0, index: 0, outcome: trained("old") };
        assert!(matches!(drive.apply(stale), Err(Refused::Conflict { .. })));
        assert_eq!(drive.apply(Event::MembersReady), Err(Refused::OutOfOrder { event: "members ready" }));
        take(&mut drive, Event::RoundAveraged { round: 1, from: vec![(id("w2"), 5)] });
        let beyond = Event::RoundAveraged { round: 2, from: vec![(id("w3"), 5)] };
        assert!(matches!(drive.apply(beyond), Err(Refused::Conflict { .. })));
        assert_eq!(drive.record().rounds_done, 2);
        assert_eq!(drive.apply(Event::MembersReady), Ok(Save::InMemory));
    }

    #[test]
    fn boosted_members_are_weighed_in_order() {
        let boosting = spec(EnsembleSpec::Boosting { members: 2 }, Learner::Linear, None);
        let mut drive = Drive::resume(pending(boosting), "me".into());
        take(&mut drive, Event::Started);
        take(&mut drive, Event::TaskResolved(Task::Regression));
        take(&mut drive, Event::PipelineFitted { dataset_manifest: id("d"), pipeline: id("p"), setup: None });
        let tasks = plan_tasks(&drive.record().spec, &[id("a")]).unwrap();
        take(&mut drive, Event::TasksPlanned(tasks));
        let first = Event::TaskFinished { list: TaskList::SubModels, index: 0, outcome: trained("w0") };
        assert_eq!(drive.apply(first), Ok(Save::InMemory));
        take(&mut drive, Event::TaskFinished { list: TaskList::SubModels, index: 1, outcome: trained("w1") });
        let second = Event::MemberWeighed { index: 1, weight: 0.5 };
        assert_eq!(drive.apply(second.clone()), Err(Refused::OutOfOrder { event: "member weighed" }));
        assert_eq!(drive.apply(Event::MemberWeighed { index: 0, weight: 1.0 }), Ok(Save::Checkpoint));
        assert_eq!(drive.apply(second), Ok(Save::Checkpoint));
        assert!(matches!(drive.apply(Event::MemberWeighed { index: 1, weight: 0.7 }), Err(Refused::Conflict { .. })));
        let lost = Event::WeightsLost { list: TaskList::SubModels, index: 0, weights: id("w0") };
        assert!(matches!(drive.apply(lost), Err(Refused::Conflict { .. })));
    }

    #[test]
    fn a_tree_job_needs_its_setup_and_rounds_come_in_order() {
        let trees = spec(EnsembleSpec::Single, Learner::Gbdt(TreeSpec::default()), None);
        assert_eq!(training(&trees), Training::BoostedAcross);
        let mut drive = Drive::resume(pending(trees), "me".into());
        take(&mut drive, Event::Started);
        take(&mut drive, Event::TaskResolved(Task::Classification));
        let without = Event::PipelineFitted { dataset_manifest: id("d"), pipeline: id("p"), setup: None };
        assert!(matches!(drive.apply(without), Err(Refused::Conflict { .. })));
        take(
            &mut drive,
            Event::PipelineFitted { dataset_manifest: id("d"), pipeline: id("p"), setup: Some(id("setup")) },
        );
        let tasks = plan_tasks(&drive.record().spec, &[id("a")]).unwrap();
        take(&mut drive, Event::TasksPlanned(tasks));
        let round = |round, stopped, checkpoint| BoostRound {
            round,
            trees: id(&format!("t{round}")),
            train_loss: 1.0,
            validation_loss: Some(1.0),
            stopped,
            best: Some((0, 1.0)),
            checkpoint,
        };
        assert_eq!(drive.apply(Event::BoostRound(round(1, false, true))).map_err(|_| ()), Err(()));
        assert_eq!(drive.apply(Event::BoostRound(round(0, false, false))), Ok(Save::InMemory));
        assert_eq!(drive.apply(Event::BoostRound(round(1, false, true))), Ok(Save::Checkpoint));
        assert_eq!(drive.apply(Event::BoostRound(round(2, true, false))), Ok(Save::Checkpoint));
        assert!(matches!(drive.apply(Event::BoostRound(round(3, false, true))), Err(Refused::Conflict { .. })));
        let state = drive.record().boost.clone().unwrap();
        assert_eq!((state.rounds.len(), state.stopped), (3, true));
        assert_eq!(drive.record().tasks[0].curve, vec![1.0, 1.0, 1.0]);
    }

    #[test]
    fn a_transient_failure_yields_and_the_next_driver_starts_over_from_the_record() {
        let mut drive = planned(None);
        take(&mut drive, Event::Transient("peer gone".into()));
        assert_eq!(drive.next(), Command::Yield("peer gone".into()));
        let mut next = Drive::resume(drive.into_record(), "other".into());
        assert_eq!(next.next(), Command::MarkRunning);
        take(&mut next, Event::Started);
        assert_eq!(next.record().drivers, vec!["me".to_string(), "other".to_string()]);
        assert_eq!(next.next(), Command::TrainMembers { pipeline: id("p") });
    }

    #[test]
    fn errors_say_whether_the_job_fails() {
        let corrupt = StepError::Corrupt { blob: id("x"), what: "sub-model", reason: "truncated".into() };
        let Event::Failed(message) = corrupt.into_event() else { panic!("a corrupt blob fails the job") };
        assert!(message.contains(&id("x").to_string()) && message.contains("sub-model"), "{message}");
        assert_eq!(StepError::Unavailable("gone".into()).into_event(), Event::Transient("gone".into()));
        assert_eq!(StepError::Cancelled(id("job")).into_event(), Event::CancelSeen);
        assert!(matches!(StepError::Invalid("bad".into()).into_event(), Event::Failed(_)));
        let refused = StepError::from(Refused::Over { event: "x" });
        assert!(matches!(refused.into_event(), Event::Failed(_)));
    }

    #[test]
    fn tasks_are_planned_per_ensemble_kind() {
        let shards = [id("a"), id("b"), id("c")];
        let plan = |ensemble| plan_tasks(&spec(ensemble, Learner::Linear, None), &shards).unwrap();
        assert_eq!(plan(EnsembleSpec::Single).len(), 1);
        assert_eq!(plan(EnsembleSpec::Single)[0].shards.len(), 3);
        let bagged = plan(EnsembleSpec::Bagging { members: 4 });
        assert_eq!(bagged.iter().map(|t| t.shards[0]).collect::<Vec<_>>(), vec![id("a"), id("b"), id("c"), id("a")]);
        assert_eq!(bagged.iter().map(|t| t.seed).collect::<Vec<_>>(), vec![7, 8, 9, 10]);
        let workers = plan(EnsembleSpec::DataParallel { workers: 2, rounds: 1 });
        assert_eq!(workers.iter().map(|t| t.shards.len()).collect::<Vec<_>>(), vec![2, 1]);
        assert!(workers.iter().all(|t| t.seed == 7));
        assert!(plan_tasks(&spec(EnsembleSpec::Single, Learner::Linear, None), &[]).is_err());
        let weighed = |weights: [Option<f64>; 2], task| {
            let mut tasks = plan(EnsembleSpec::Boosting { members: 2 });
            tasks.iter_mut().zip(weights).for_each(|(t, w)| t.weight = w);
            combine(&spec(EnsembleSpec::Boosting { members: 2 }, Learner::Linear, None), task, &tasks)
        };
        assert_eq!(weighed([Some(1.0), None], Task::Classification), Combine::WeightedMean(vec![1.0, 0.0]));
        assert_eq!(weighed([Some(0.0), Some(0.0)], Task::Classification), Combine::Mean);
        assert_eq!(weighed([Some(1.0), Some(0.5)], Task::Regression), Combine::WeightedSum(vec![1.0, 0.5]));
    }
}
