//! Training jobs driven through crashes, failures, lost peers, cancels and
//! late events.
//!
//! One job per run, of a kind drawn from the seed (single, bagged, stacked,
//! boosted, data-parallel, trees boosted across nodes; with or without
//! cross-validation). Its drivers run the node's own
//! [`mass_node::jobs::machine`]: a simulated executor answers each
//! [`Command`] with the events the real one would hand back, one event per
//! step, and faults land between them:
//! - **driver crashes**: the driver's memory is dropped and a new driver
//!   resumes from the last checkpointed record; what the old driver had
//!   not yet delivered becomes late events;
//! - **task failures and transient errors**: a trainer fails a task, a
//!   blob is unreachable (the drive yields; the watcher retries), a
//!   member's only copy is lost;
//! - **peers going down** (and coming back);
//! - **cancel**, at any time: the flag is set, and every later checkpoint
//!   is refused, as the node's `checkpoint` does;
//! - **late and duplicate events**: an old driver's event reaches the
//!   current drive.
//!
//! Invariants, checked after every step (by this module, not by asking the
//! machine):
//! - **the record never goes back**, in memory and in storage: the state
//!   only moves forward and an over job does not change; a decided result
//!   (task, pipeline, a task's weights or weight, a fold's score, boosting
//!   rounds, the model) is never changed, except a lost task's weights,
//!   cleared by the event that says so;
//! - **cancel wins**: once the flag is set the stored record does not
//!   change, and a drive that saw the cancel stays cancelled;
//! - **one model per job**: once a record names a model it names no other;
//! - **every job ends**: once faults stop, the job is Completed, Failed or
//!   Cancelled within [`Scenario::calm_bound`] steps.

use std::collections::VecDeque;

use mass_node::jobs::machine::{self, BoostRound, Command, Drive, Event, Outcome, Refused, Save, TaskList, Training};
use mass_protocol::{
    ContentId,
    jobs::{EnsembleSpec, Evaluation, JobRecord, JobSpec, JobState, Learner, ModelSpec, Task, TaskRecord, TreeSpec},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    /// Steps during which faults happen; after them, none do.
    pub fault_steps: usize,
    /// Steps a job may take to end once faults stop.
    pub calm_bound: usize,
    /// Per step, during the fault phase.
    pub crash: f64,
    pub late_event: f64,
    pub peer_down: f64,
    pub cancel: f64,
    /// Per task or step outcome, during the fault phase.
    pub failure: f64,
}

impl Scenario {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            fault_steps: 150,
            calm_bound: 400,
            crash: 0.04,
            late_event: 0.08,
            peer_down: 0.03,
            cancel: 0.004,
            failure: 0.08,
        }
    }
}

/// What a run saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub state: JobState,
    pub steps: usize,
    pub crashes: u32,
    pub yields: u32,
    /// Late events the machine refused, and ones it took (duplicates, or
    /// outcomes it still lacked).
    pub late_refused: u32,
    pub late_taken: u32,
}

/// An invariant did not hold.
#[derive(Debug, thiserror::Error)]
#[error("seed {seed}: step {step}: {what}")]
pub struct Violation {
    pub seed: u64,
    pub step: usize,
    pub what: String,
}

const PEERS: [&str; 4] = ["n0", "n1", "n2", "n3"];
/// Late events delivered after a job ended.
const AFTERMATH: usize = 10;
/// Rounds of a tree job (its setup, which the record does not hold).
const TREE_ROUNDS: usize = 4;

fn id(text: &str) -> ContentId {
    ContentId::of(text.as_bytes())
}

/// A job of a kind drawn from `rng`, as `submit` writes it.
pub fn job(rng: &mut StdRng) -> JobRecord {
    let (ensemble, learner) = match rng.random_range(0..6) {
        0 => (EnsembleSpec::Single, Learner::Linear),
        1 => (EnsembleSpec::Bagging { members: rng.random_range(1..5) }, Learner::Linear),
        2 => (EnsembleSpec::Stacking { members: rng.random_range(2..4) }, Learner::Linear),
        3 => (EnsembleSpec::Boosting { members: rng.random_range(1..4) }, Learner::Linear),
        4 => (
            EnsembleSpec::DataParallel { workers: rng.random_range(1..4), rounds: rng.random_range(1..4) },
            Learner::Mlp { hidden: vec![4] },
        ),
        _ => (EnsembleSpec::Single, Learner::Gbdt(TreeSpec::default())),
    };
    let spec = JobSpec {
        model: "m".into(),
        dataset: "d".into(),
        pipeline: Default::default(),
        spec: ModelSpec::of(learner),
        ensemble,
        seed: rng.random_range(0..1000),
        task: None,
        placement: Default::default(),
        trial: None,
        cv: rng.random_bool(0.4).then(|| rng.random_range(2..4)),
    };
    JobRecord::pending(id(&format!("job {}", spec.seed)), spec)
}

struct World {
    scenario: Scenario,
    rng: StdRng,
    shards: Vec<ContentId>,
    up: Vec<bool>,
    /// The last checkpoint: what a new driver resumes from.
    stored: JobRecord,
    cancel_flag: bool,
    driver: usize,
    drive: Drive,
    /// Events of the current command not yet delivered.
    queue: VecDeque<Event>,
    /// Events of old drivers, deliverable late.
    late: Vec<Event>,
    /// Whether this drive saw the cancel (applied or refused at checkpoint).
    saw_cancel: bool,
    aftermath: usize,
    step: usize,
    report: Report,
}

/// Runs one job through `scenario` and checks the invariants after every step.
pub fn run(scenario: &Scenario) -> Result<Report, Violation> {
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    let record = job(&mut rng);
    let shards = (0..rng.random_range(1..4)).map(|i| id(&format!("shard {i}"))).collect();
    let mut world = World {
        scenario: scenario.clone(),
        rng,
        shards,
        up: vec![true; PEERS.len()],
        stored: record.clone(),
        cancel_flag: false,
        driver: 0,
        drive: Drive::resume(record, PEERS[0].into()),
        queue: VecDeque::new(),
        late: Vec::new(),
        saw_cancel: false,
        aftermath: 0,
        step: 0,
        report: Report { state: JobState::Pending, steps: 0, crashes: 0, yields: 0, late_refused: 0, late_taken: 0 },
    };
    let limit = scenario.fault_steps + scenario.calm_bound;
    while world.step < limit {
        world.step += 1;
        if world.step_once()? {
            world.report.state = world.visible_state();
            world.report.steps = world.step;
            return Ok(world.report);
        }
    }
    Err(world.violation(format!(
        "the job did not end within {} calm steps: {:?}, next {:?}",
        scenario.calm_bound,
        world.drive.record().state,
        world.drive.next()
    )))
}

impl World {
    fn faulty(&self) -> bool {
        self.step <= self.scenario.fault_steps
    }

    fn chance(&mut self, p: f64) -> bool {
        self.faulty() && self.rng.random_bool(p)
    }

    fn violation(&self, what: String) -> Violation {
        Violation { seed: self.scenario.seed, step: self.step, what }
    }

    /// What every node reads: the stored record, cancelled by the flag.
    fn visible_state(&self) -> JobState {
        match &self.stored.state {
            state if state.is_over() => state.clone(),
            _ if self.cancel_flag => JobState::Cancelled,
            state => state.clone(),
        }
    }

    /// One step: a fault, or one event delivered. True when the job is over.
    fn step_once(&mut self) -> Result<bool, Violation> {
        if self.chance(self.scenario.crash) {
            self.crash();
            return Ok(false);
        }
        if self.chance(self.scenario.cancel) {
            self.cancel_flag = true;
        }
        if self.chance(self.scenario.peer_down) {
            let peer = self.rng.random_range(0..PEERS.len());
            self.up[peer] = !self.up[peer];
            if !self.up[peer] {
                return self.deliver(Event::PeerDown(PEERS[peer].into()), false).map(|_| false);
            }
        }
        if !self.late.is_empty() && self.chance(self.scenario.late_event) {
            let event = self.late[self.rng.random_range(0..self.late.len())].clone();
            return self.deliver(event, true).map(|_| false);
        }
        let Some(event) = self.queue.pop_front() else {
            match self.drive.next() {
                Command::Done => {
                    if !self.drive.record().state.is_over() {
                        return Err(self.violation("next says done for an open job".into()));
                    }
                    // Every node reads the stored record, with the flag, from now on.
                    if !self.visible_state().is_over() {
                        return Err(self.violation(format!(
                            "the drive ended {:?} but the job reads {:?}",
                            self.drive.record().state,
                            self.visible_state()
                        )));
                    }
                    // Old drivers' events still arrive after the end.
                    if self.aftermath < AFTERMATH && !self.late.is_empty() {
                        self.aftermath += 1;
                        let event = self.late[self.rng.random_range(0..self.late.len())].clone();
                        return self.deliver(event, true).map(|_| false);
                    }
                    return Ok(true);
                }
                Command::Yield(_) => {
                    // The watcher retries: a new drive from the stored record.
                    self.report.yields += 1;
                    self.restart(self.driver);
                }
                command => self.queue = self.execute(command).into(),
            }
            return Ok(false);
        };
        self.deliver(event, false).map(|_| false)
    }

    fn crash(&mut self) {
        self.report.crashes += 1;
        // What the dead driver had not delivered may still arrive, late.
        self.late.extend(self.queue.drain(..));
        let next = (self.driver + 1 + self.rng.random_range(0..PEERS.len() - 1)) % PEERS.len();
        self.restart(next);
    }

    fn restart(&mut self, driver: usize) {
        self.queue.clear();
        self.driver = driver;
        self.saw_cancel = false;
        let mut record = self.stored.clone();
        if self.cancel_flag && !record.state.is_over() {
            // As `driver::record` reads it: the watcher will not drive it.
            record.state = JobState::Cancelled;
        }
        self.drive = Drive::resume(record, PEERS[driver].into());
    }

    /// Applies `event` to the current drive, checkpoints as told, and
    /// checks every invariant.
    fn deliver(&mut self, event: Event, late: bool) -> Result<(), Violation> {
        let before = self.drive.record().clone();
        let stored_before = self.stored.clone();
        if !late && self.rng.random_bool(0.2) {
            self.late.push(event.clone());
        }
        let lost = match &event {
            Event::WeightsLost { list, index, weights } => Some((*list, *index, *weights)),
            _ => None,
        };
        let cancel = event == Event::CancelSeen;
        match self.drive.apply(event) {
            Ok(save) => {
                if late {
                    self.report.late_taken += 1;
                }
                if cancel {
                    self.saw_cancel = true;
                }
                if save == Save::Checkpoint {
                    self.checkpoint();
                }
            }
            Err(refused) => {
                if late {
                    self.report.late_refused += 1;
                } else {
                    // The executor's own outcome no longer fits (a late
                    // event got there first): it asks the machine again.
                    self.queue.clear();
                }
                if let Refused::Over { .. } = refused
                    && !before.state.is_over()
                {
                    return Err(self.violation(format!("refused as over while {:?}", before.state)));
                }
                if *self.drive.record() != before {
                    return Err(self.violation(format!("a refused event changed the record: {refused}")));
                }
            }
        }
        let after = self.drive.record().clone();
        never_back(&before, &after, lost).map_err(|e| self.violation(format!("in memory: {e}")))?;
        never_back(&stored_before, &self.stored, lost).map_err(|e| self.violation(format!("in storage: {e}")))?;
        if self.cancel_flag && self.stored != stored_before {
            return Err(self.violation("the stored record changed after the cancel".into()));
        }
        if self.saw_cancel && after.state != JobState::Cancelled {
            return Err(self.violation(format!("the drive saw the cancel but is {:?}", after.state)));
        }
        for ((list, index), peer) in self.drive.in_flight() {
            let tasks = if *list == TaskList::Folds { &after.folds } else { &after.tasks };
            let rounds = matches!(machine::training(&after.spec), Training::DataParallel { .. });
            if tasks[*index].weights.is_some() && !(rounds && *list == TaskList::SubModels) {
                return Err(self.violation(format!("{list} {index} is finished yet running on {peer}")));
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self) {
        if self.cancel_flag {
            // The node's checkpoint refuses; the driver records the cancel.
            self.queue.clear();
            self.saw_cancel = self.drive.apply(Event::CancelSeen).is_ok();
        } else {
            self.stored = self.drive.record().clone();
        }
    }

    fn live_peer(&mut self) -> Option<String> {
        let live: Vec<usize> = (0..PEERS.len()).filter(|p| self.up[*p]).collect();
        (!live.is_empty()).then(|| PEERS[live[self.rng.random_range(0..live.len())]].to_string())
    }

    fn failed(&mut self) -> bool {
        let p = self.scenario.failure;
        self.chance(p)
    }

    /// The events the node's executor would hand back for `command`.
    fn execute(&mut self, command: Command) -> Vec<Event> {
        let record = self.drive.record().clone();
        let me = PEERS[self.driver].to_string();
        let transient = |what: &str| Event::Transient(format!("{what} is unreachable"));
        match command {
            Command::Done | Command::Yield(_) => vec![],
            Command::MarkRunning => vec![Event::Started],
            Command::ResolveTask => vec![Event::TaskResolved(Task::Classification)],
            Command::FitPipeline { .. } if self.failed() => vec![transient("a shard")],
            Command::FitPipeline { .. } => {
                let trees = matches!(record.spec.spec.learner, Learner::Gbdt(_));
                let setup = trees.then(|| id("setup"));
                vec![Event::PipelineFitted { dataset_manifest: id("manifest"), pipeline: id("pipeline"), setup }]
            }
            Command::PlanTasks => match machine::plan_tasks(&record.spec, &self.shards) {
                Ok(tasks) => vec![Event::TasksPlanned(tasks)],
                Err(e) => vec![Event::Failed(e)],
            },
            Command::TrainMembers { .. } => self.train_members(&record, &me),
            Command::Evaluate if self.failed() => vec![transient("a test shard's holder")],
            Command::Evaluate => vec![Event::Evaluated {
                evaluation: Evaluation::regression(10, 1.0, 1.0, 0.5),
                member_scores: record.tasks.iter().map(|t| t.seed as f64).collect(),
            }],
            Command::PlanFolds { folds } => {
                vec![Event::FoldsPlanned(machine::plan_folds(&record.spec, &self.shards, folds))]
            }
            Command::TrainFolds { .. } => {
                let mut events = self.train_each(TaskList::Folds, &record.folds, &me);
                if !matches!(events.last(), Some(Event::Transient(_))) {
                    events.push(Event::FoldsTrained);
                }
                events
            }
            Command::JudgeFold { fold, .. } => {
                let weights = record.folds[fold].weights.expect("judged after training");
                if self.failed() {
                    vec![
                        Event::WeightsLost { list: TaskList::Folds, index: fold, weights },
                        transient("a fold's model"),
                    ]
                } else {
                    vec![Event::FoldJudged { fold, score: fold as f64 / 10.0 }]
                }
            }
            Command::Publish if self.failed() => vec![transient("the model's homes")],
            // The manifest names who trained what, so drivers' models differ.
            Command::Publish => vec![Event::Published { model: id(&format!("model by {me}")) }],
        }
    }

    /// Each untrained task of `list`: handed to a live peer, maybe refused
    /// and taken by the driver, which may fail it too (the drive yields).
    fn train_each(&mut self, list: TaskList, tasks: &[TaskRecord], me: &str) -> Vec<Event> {
        let mut events = Vec::new();
        for (index, task) in tasks.iter().enumerate().filter(|(_, t)| t.weights.is_none()) {
            if let Some(peer) = self.live_peer() {
                events.push(Event::TaskStarted { list, index, peer: peer.clone() });
                if !self.failed() {
                    events.push(Event::TaskFinished { list, index, outcome: trained(list, index, task, &peer) });
                    continue;
                }
                events.push(Event::TaskFailed { list, index, peer });
            }
            events.push(Event::TaskStarted { list, index, peer: me.into() });
            if self.failed() {
                events.push(Event::TaskFailed { list, index, peer: me.into() });
                events.push(Event::Transient(format!("{list} {index} failed here too")));
                return events;
            }
            events.push(Event::TaskFinished { list, index, outcome: trained(list, index, task, me) });
        }
        events
    }

    fn train_members(&mut self, record: &JobRecord, me: &str) -> Vec<Event> {
        let sub = TaskList::SubModels;
        let mut events = Vec::new();
        match machine::training(&record.spec) {
            Training::Bagged => {
                events = self.train_each(sub, &record.tasks, me);
                if matches!(events.last(), Some(Event::Transient(_))) {
                    return events;
                }
                // Loading every member: one may have lost its only copy.
                if let Some(index) = (0..record.tasks.len()).find(|_| self.failed()) {
                    let trained_now = events.iter().find_map(|e| match e {
                        Event::TaskFinished { index: i, outcome, .. } if *i == index => Some(outcome.weights),
                        _ => None,
                    });
                    let Some(weights) = record.tasks[index].weights.or(trained_now) else { return events };
                    events.push(Event::WeightsLost { list: sub, index, weights });
                    events.push(Event::Transient(format!("sub-model {index} is unreachable")));
                    return events;
                }
            }
            Training::Boosted => {
                for (index, task) in record.tasks.iter().enumerate() {
                    if self.failed() {
                        events.push(Event::Transient(format!("member {index} could not be trained")));
                        return events;
                    }
                    if task.weights.is_none() {
                        events.push(Event::TaskFinished { list: sub, index, outcome: trained(sub, index, task, me) });
                    }
                    if task.weight.is_none() {
                        events.push(Event::MemberWeighed { index, weight: 1.0 / (index as f64 + 1.0) });
                    }
                }
            }
            Training::DataParallel { rounds } => {
                for round in record.rounds_done..rounds {
                    let mut from = Vec::new();
                    for (index, task) in record.tasks.iter().enumerate() {
                        if self.failed() {
                            continue; // left out of this round
                        }
                        let outcome = trained(sub, index, task, &format!("{me} round {round}"));
                        from.push((outcome.weights, outcome.rows));
                        events.push(Event::WorkerFinished { round, index, outcome });
                    }
                    if from.is_empty() {
                        events.push(Event::Transient(format!("no worker finished round {round}")));
                        return events;
                    }
                    events.push(Event::RoundAveraged { round, from });
                }
            }
            Training::BoostedAcross => {
                let state = record.boost.clone().unwrap_or_default();
                if !state.stopped && state.rounds.len() < TREE_ROUNDS {
                    events.push(Event::BoostOpened { workers: vec![(me.into(), self.shards.clone())] });
                    for round in state.rounds.len()..TREE_ROUNDS {
                        if self.failed() {
                            events.push(Event::Transient(format!("a worker missed round {round}")));
                            return events;
                        }
                        let stopped = round == 2 && record.spec.seed % 2 == 0;
                        let trees = id(&format!("{} trees {round}", record.id));
                        let best = Some((round.min(1) as u32, 0.5));
                        events.push(Event::BoostRound(BoostRound {
                            round,
                            trees,
                            train_loss: 1.0 / (round as f64 + 1.0),
                            validation_loss: Some(0.5),
                            stopped,
                            best,
                            // Every other round in memory: a driver that dies grows those again.
                            checkpoint: round % 2 == 1,
                        }));
                        if stopped {
                            break;
                        }
                    }
                }
                // The model is a function of the rounds: any driver saves the same blob.
                let model = Outcome {
                    peer: me.into(),
                    weights: id(&format!("{} trees", record.id)),
                    rows: 100,
                    curve: vec![],
                    backend: "cpu".into(),
                };
                events.push(Event::TaskFinished { list: sub, index: 0, outcome: model });
            }
        }
        events.push(Event::MembersReady);
        events
    }
}

/// Training is deterministic per backend: the same task gives the same
/// weights on every CPU node, other bits on the GPU nodes (n2 and n3).
fn trained(list: TaskList, index: usize, task: &TaskRecord, peer: &str) -> Outcome {
    let gpu = peer.starts_with("n2") || peer.starts_with("n3");
    let weights = if peer.contains("round") {
        id(&format!("{list} {index} {} {peer}", task.seed))
    } else {
        id(&format!("{list} {index} {} {gpu}", task.seed))
    };
    Outcome { peer: peer.into(), weights, rows: 10, curve: vec![0.5], backend: "cpu".into() }
}

fn rank(state: &JobState) -> u8 {
    match state {
        JobState::Pending => 0,
        JobState::Running => 1,
        _ => 2,
    }
}

/// Checks that `after` does not undo anything `before` decided; `lost` is
/// the one task whose weights the applied event may clear.
pub fn never_back(
    before: &JobRecord,
    after: &JobRecord,
    lost: Option<(TaskList, usize, ContentId)>,
) -> Result<(), String> {
    if rank(&after.state) < rank(&before.state) {
        return Err(format!("the state went back from {:?} to {:?}", before.state, after.state));
    }
    if before.state.is_over() && after != before {
        return Err(format!("a job {:?} changed", before.state));
    }
    if !after.drivers.starts_with(&before.drivers) {
        return Err("drivers were forgotten".into());
    }
    let kept = |what: &str, a: bool| if a { Ok(()) } else { Err(format!("the {what} changed once decided")) };
    kept("task", before.task.is_none() || after.task == before.task)?;
    kept("pipeline", before.pipeline.is_none() || (after.pipeline, after.setup) == (before.pipeline, before.setup))?;
    kept("model", before.model.is_none() || after.model == before.model)?;
    kept("rounds done", after.rounds_done >= before.rounds_done)?;
    if let Training::DataParallel { rounds } = machine::training(&after.spec)
        && after.rounds_done > rounds
    {
        return Err(format!("{} rounds done of {rounds}", after.rounds_done));
    }
    if let Some(b) = &before.boost {
        let a = after.boost.clone().unwrap_or_default();
        kept("boosting rounds", a.rounds.starts_with(&b.rounds) && (a.stopped || !b.stopped))?;
    }
    let per_round = matches!(machine::training(&before.spec), Training::DataParallel { .. });
    for (list, b, a) in
        [(TaskList::SubModels, &before.tasks, &after.tasks), (TaskList::Folds, &before.folds, &after.folds)]
    {
        if b.is_empty() {
            continue;
        }
        kept(&format!("{list} plan"), a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.shards == y.shards))?;
        for (index, (a, b)) in a.iter().zip(b).enumerate() {
            let cleared = lost == b.weights.map(|w| (list, index, w)) && a.weights.is_none();
            let rounds = per_round && list == TaskList::SubModels;
            if b.weights.is_some() && a.weights != b.weights && !cleared && !rounds {
                return Err(format!("{list} {index} went from {:?} to {:?}", b.weights, a.weights));
            }
            kept(&format!("{list} {index}'s weight"), b.weight.is_none() || a.weight == b.weight)?;
            kept(&format!("{list} {index}'s score"), b.test_score.is_none() || a.test_score == b.test_score)?;
        }
    }
    Ok(())
}
