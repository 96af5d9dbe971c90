//! What a study does next, decided from its journal alone: which trial
//! jobs finished and with what score, which trials successive halving
//! stops or promotes, which new trials to propose, and which trial won.
//! Pure, so a simulation or a test can drive it, and so a driver that
//! takes over decides what its predecessor would have.

use std::collections::BTreeMap;

use mass_kernels::search::{self, Observation};
use mass_protocol::{
    ContentId,
    features::Scale,
    jobs::{EnsembleSpec, Evaluation, JobSpec, Learner, TreeSpec, TrialOf},
    studies::{Asha, Domain, ParamValue, RungRun, StudyRecord, StudySpec, StudyState, Trial, TrialState},
};

/// Trials running at once, at most.
pub const MAX_PARALLEL: usize = mass_protocol::studies::MAX_PARALLEL;
/// Grid points per continuous range, at most.
const MAX_GRID_STEPS: usize = 100;

/// How a trial's job stands, as the driver read its record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Pending or running.
    Open,
    /// No record yet: the job is to be submitted (again, after a takeover).
    Missing,
    /// Completed: its validation figures, and the peers that trained it.
    Completed {
        evaluation: Evaluation,
        peer: Option<String>,
    },
    Failed(String),
}

/// Checks a study before any trial starts; a sentence names what is wrong.
pub fn check(spec: &StudySpec, max_trials: usize) -> Result<(), String> {
    mass_protocol::studies::validate_space(&spec.space)?;
    if spec.trials == 0 || spec.trials > max_trials {
        return Err(format!("trials: {} is outside 1-{max_trials} (this node's http.max_trials)", spec.trials));
    }
    if spec.parallel == 0 || spec.parallel > MAX_PARALLEL {
        return Err(format!("parallel: {} is outside 1-{MAX_PARALLEL}", spec.parallel));
    }
    if spec.base.trial.is_some() {
        return Err("base.trial: a study's base job cannot itself be a trial".into());
    }
    if spec.base.cv.is_some() {
        return Err(
            "base.cv: a study judges trials on the validation rows; cross-validate the winner's job instead".into()
        );
    }
    match &spec.strategy {
        mass_protocol::studies::Strategy::Grid { steps } => {
            if !(2..=MAX_GRID_STEPS).contains(steps) {
                return Err(format!("strategy.grid.steps: {steps} is outside 2-{MAX_GRID_STEPS}"));
            }
            let size = search::grid_size(&spec.space, *steps);
            if spec.trials > size {
                return Err(format!("trials: {} is more than the grid's {size} combinations", spec.trials));
            }
        }
        mass_protocol::studies::Strategy::Genetic { population, mutation } => {
            if *population < 2 || !(0.0..=1.0).contains(mutation) {
                return Err("strategy.genetic: population at least 2, mutation in [0, 1]".into());
            }
        }
        mass_protocol::studies::Strategy::Random | mass_protocol::studies::Strategy::Tpe { .. } => {}
    }
    if let Some(Asha { min_resource, eta }) = spec.asha
        && (min_resource == 0 || eta < 2)
    {
        return Err("asha: min_resource at least 1 and eta at least 2".into());
    }
    // Every end of every range, and every choice, must make a valid job.
    for (name, domain) in &spec.space {
        for value in extremes(domain) {
            let params = BTreeMap::from([(name.clone(), value.clone())]);
            apply(&spec.base, &params)
                .and_then(|job| job.spec.validate().and_then(|()| job.ensemble.validate()))
                .map_err(|e| format!("space.{name} = {}: {e}", value.text()))?;
        }
    }
    Ok(())
}

/// Checks a journal read back from storage: its own bounds, and a spec
/// this node would have accepted (a journal is peer bytes: any peer may
/// write its own `study/<id>` ref and skip the checks of `POST /v1/studies`).
pub fn check_journal(record: &StudyRecord) -> Result<(), String> {
    record.validate()?;
    check(&record.spec, mass_protocol::studies::MAX_TRIALS)
}

/// The values at a domain's ends (every value of a choice).
fn extremes(domain: &Domain) -> Vec<ParamValue> {
    match domain {
        Domain::Choice(values) => values.clone(),
        Domain::Uniform([lo, hi]) | Domain::LogUniform([lo, hi]) => {
            vec![ParamValue::Number(*lo), ParamValue::Number(*hi)]
        }
        Domain::Int([lo, hi]) | Domain::LogInt([lo, hi]) => {
            vec![ParamValue::Number(*lo as f64), ParamValue::Number(*hi as f64)]
        }
    }
}

fn number(name: &str, value: &ParamValue) -> Result<f64, String> {
    value.number().filter(|v| v.is_finite()).ok_or_else(|| format!("{name}: '{}' is not a number", value.text()))
}

fn count(name: &str, value: &ParamValue) -> Result<usize, String> {
    let v = number(name, value)?;
    if v < 0.0 || v.fract() != 0.0 || v > 1e9 {
        return Err(format!("{name}: '{}' is not a whole number", value.text()));
    }
    Ok(v as usize)
}

/// The base job with a trial's parameters set. Tree settings apply when the
/// learner is gbdt (the model may itself be a parameter).
pub fn apply(base: &JobSpec, params: &BTreeMap<String, ParamValue>) -> Result<JobSpec, String> {
    let mut job = base.clone();
    if let Some(model) = params.get("model") {
        job.spec.learner = match Learner::parse(&model.text())? {
            // A base gbdt's tree settings carry over.
            Learner::Gbdt(_) => match &base.spec.learner {
                Learner::Gbdt(tree) => Learner::Gbdt(tree.clone()),
                _ => Learner::Gbdt(TreeSpec::default()),
            },
            other => other,
        };
    }
    for (name, value) in params {
        let spec = &mut job.spec;
        match name.as_str() {
            "model" => {}
            "ensemble" => job.ensemble = EnsembleSpec::parse(&value.text())?,
            "scale" => job.pipeline.scale = Scale::parse(&value.text())?,
            "learning_rate" => spec.learning_rate = number(name, value)? as f32,
            "epochs" => spec.epochs = Some(count(name, value)?),
            "batch_size" => spec.batch_size = count(name, value)?,
            "l2" => {
                let l2 = number(name, value)?;
                spec.l2 = Some(l2 as f32);
                if let Learner::Gbdt(tree) = &mut spec.learner {
                    tree.l2 = l2;
                }
            }
            _ => {
                let Learner::Gbdt(tree) = &mut spec.learner else { continue };
                match name.as_str() {
                    "trees" => tree.trees = count(name, value)?,
                    "leaves" => tree.leaves = count(name, value)?,
                    "max_depth" => tree.max_depth = count(name, value)?,
                    "min_rows" => tree.min_rows = count(name, value)? as u64,
                    "tree_learning_rate" => tree.learning_rate = number(name, value)?,
                    "row_fraction" => tree.row_fraction = number(name, value)?,
                    "feature_fraction" => tree.feature_fraction = number(name, value)?,
                    other => return Err(format!("{other}: not a parameter a study can set")),
                }
            }
        }
    }
    Ok(job)
}

/// The most resource (epochs of a network, trees) a job runs with, when it
/// has one successive halving can grow.
pub fn max_resource(job: &JobSpec) -> Option<usize> {
    match &job.spec.learner {
        Learner::Mlp { .. } => job.spec.epochs,
        Learner::Gbdt(tree) => Some(tree.trees),
        Learner::Linear => None,
    }
}

/// The resources successive halving runs a trial at: `min`, `min * eta`,
/// ... below `max`, then `max`.
pub fn rungs(asha: Asha, max: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut r = asha.min_resource.max(1);
    while r < max {
        out.push(r);
        r = r.saturating_mul(asha.eta.max(2));
    }
    out.push(max);
    out
}

/// The resources a trial runs at: its rungs, or its own once.
fn resources(spec: &StudySpec, job: &JobSpec) -> Vec<Option<usize>> {
    match (spec.asha, max_resource(job)) {
        (Some(asha), Some(max)) => rungs(asha, max).into_iter().map(Some).collect(),
        _ => vec![None],
    }
}

/// The job of trial `trial` at `resource` (the trial's own when `None`).
fn trial_job(
    spec: &StudySpec,
    study: ContentId,
    trial: usize,
    params: &BTreeMap<String, ParamValue>,
    resource: Option<usize>,
) -> Result<JobSpec, String> {
    let mut job = apply(&spec.base, params)?;
    if let Some(r) = resource {
        match &mut job.spec.learner {
            Learner::Gbdt(tree) => tree.trees = r,
            _ => job.spec.epochs = Some(r),
        }
    }
    job.trial = Some(TrialOf {
        study,
        trial: trial as u32,
        resource: resource.or_else(|| max_resource(&job)).unwrap_or(0) as u32,
    });
    Ok(job)
}

/// The job of a trial's run `run` (its rung, with successive halving).
pub fn run_job(spec: &StudySpec, study: ContentId, trial: &Trial, run: usize) -> Result<JobSpec, String> {
    let job = apply(&spec.base, &trial.params)?;
    let resource =
        *resources(spec, &job).get(run).ok_or_else(|| format!("trial {} has no rung {run}", trial.number))?;
    trial_job(spec, study, trial.number, &trial.params, resource)
}

/// The journal's entry of a trial's run `run`, naming its job.
fn new_run(
    spec: &StudySpec,
    study: ContentId,
    trial: &Trial,
    run: usize,
    id_of: &dyn Fn(&JobSpec) -> ContentId,
) -> Result<RungRun, String> {
    let job = run_job(spec, study, trial, run)?;
    let resource = job.trial.map_or(0, |t| t.resource as usize);
    Ok(RungRun { resource, job: id_of(&job), score: None, peer: None })
}

/// A score oriented so that higher is better.
fn oriented(spec: &StudySpec, score: f64) -> f64 {
    if spec.metric().maximize() { score } else { -score }
}

/// What the driver does after [`advance`]: the (trial, run) pairs whose
/// jobs to submit, once the journal naming them is checkpointed.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub submit: Vec<(usize, usize)>,
    /// Whether the journal changed (and needs a checkpoint).
    pub changed: bool,
}

/// Reads the outcomes of the open runs into the journal, stops or promotes
/// trials (successive halving), proposes trials up to the parallelism and
/// budget. `id_of` gives a job spec's id (its content hash).
pub fn advance(
    record: &mut StudyRecord,
    outcomes: &BTreeMap<ContentId, Outcome>,
    id_of: &dyn Fn(&JobSpec) -> ContentId,
) -> Plan {
    let mut plan = Plan::default();
    let spec = record.spec.clone();
    for t in 0..record.trials.len() {
        if record.trials[t].is_over() || awaits_decision(&record.trials[t]) {
            continue;
        }
        let run = record.trials[t].runs.len() - 1;
        match outcomes.get(&record.trials[t].runs[run].job) {
            None | Some(Outcome::Open) => {}
            Some(Outcome::Missing) => plan.submit.push((t, run)),
            Some(Outcome::Failed(reason)) => {
                record.trials[t].state = TrialState::Failed(reason.clone());
                plan.changed = true;
            }
            Some(Outcome::Completed { evaluation, peer }) => {
                plan.changed = true;
                let Some(score) = spec.metric().of(evaluation).filter(|s| s.is_finite()) else {
                    record.trials[t].state =
                        TrialState::Failed(format!("the trial's evaluation has no {}", spec.metric().name()));
                    continue;
                };
                let trial = &mut record.trials[t];
                (trial.runs[run].score, trial.runs[run].peer) = (Some(score), peer.clone());
            }
        }
    }
    // In trial order: a decision depends only on trials numbered below.
    for t in 0..record.trials.len() {
        if !awaits_decision(&record.trials[t]) {
            continue;
        }
        let run = record.trials[t].runs.len() - 1;
        match decision(&spec, &record.trials, t) {
            Decision::Wait => {}
            Decision::Promote => {
                plan.changed = true;
                match new_run(&spec, record.id, &record.trials[t], run + 1, id_of) {
                    Ok(next) => {
                        record.trials[t].runs.push(next);
                        plan.submit.push((t, run + 1));
                    }
                    Err(e) => record.trials[t].state = TrialState::Failed(e),
                }
            }
            Decision::Stop { last_rung } => {
                plan.changed = true;
                record.trials[t].state = if last_rung { TrialState::Completed } else { TrialState::Stopped };
            }
        }
    }
    // A trial waiting for its rung's decision holds no job: it takes no slot.
    let busy = |trials: &[Trial]| trials.iter().filter(|t| !t.is_over() && !awaits_decision(t)).count();
    while busy(&record.trials) < spec.parallel && record.trials.len() < spec.trials {
        let number = record.trials.len();
        let history: Vec<Observation<'_>> = record
            .trials
            .iter()
            .filter(|t| t.is_over())
            .map(|t| Observation { params: &t.params, score: t.score().map(|s| oriented(&spec, s)) })
            .collect();
        let params = search::propose(&spec.space, &spec.strategy, &history, number, spec.seed);
        let mut trial = Trial { number, params, state: TrialState::Running, runs: vec![] };
        match new_run(&spec, record.id, &trial, 0, id_of) {
            Ok(first) => {
                trial.runs.push(first);
                plan.submit.push((number, 0));
            }
            Err(e) => trial.state = TrialState::Failed(e),
        }
        record.trials.push(trial);
        plan.changed = true;
    }
    plan
}

/// The resources of a trial's rungs.
fn rungs_of(spec: &StudySpec, trial: &Trial) -> Vec<Option<usize>> {
    apply(&spec.base, &trial.params).map(|job| resources(spec, &job)).unwrap_or_else(|_| vec![None])
}

/// A running trial whose latest run has its score: it goes on or stops.
fn awaits_decision(trial: &Trial) -> bool {
    !trial.is_over() && trial.runs.last().is_some_and(|r| r.score.is_some())
}

/// What successive halving does with a trial that finished a rung.
#[derive(Debug, PartialEq)]
enum Decision {
    /// A trial numbered below may still finish this rung.
    Wait,
    Promote,
    /// Over: completed when that was its last rung, else stopped.
    Stop {
        last_rung: bool,
    },
}

/// Successive halving's decision after trial `t` finished a rung: it goes
/// on while its score is in the best 1/eta of the scores at that rung of
/// itself and every trial numbered below it (as asynchronous successive
/// halving, ASHA, decides at each rung, in trial order rather than in the
/// order trials happen to finish). So it waits until each trial numbered
/// below has finished the rung or is known never to reach it: the
/// decisions, and with random or grid proposals the whole study, are the
/// same however the trials' jobs are timed and whenever the driver looks.
fn decision(spec: &StudySpec, trials: &[Trial], t: usize) -> Decision {
    let rung = trials[t].runs.len() - 1;
    let last_rung = rung + 1 >= rungs_of(spec, &trials[t]).len();
    let (Some(asha), Some(mine)) = (spec.asha, trials[t].runs[rung].score) else { return Decision::Stop { last_rung } };
    if last_rung {
        return Decision::Stop { last_rung };
    }
    let mut finished = vec![oriented(spec, mine)];
    for other in &trials[..t] {
        match other.runs.get(rung).map(|r| r.score) {
            Some(Some(score)) => finished.push(oriented(spec, score)),
            // Running this rung, or below it and not yet stopped.
            Some(None) if !other.is_over() => return Decision::Wait,
            None if !other.is_over() => return Decision::Wait,
            _ => {}
        }
    }
    finished.sort_by(|a, b| b.total_cmp(a));
    let keep = (finished.len() / asha.eta).max(1);
    if oriented(spec, mine) >= finished[keep - 1] { Decision::Promote } else { Decision::Stop { last_rung } }
}

/// The winner once every trial is over: the completed trial with the best
/// score (the lowest number among equals).
pub fn winner(record: &StudyRecord) -> Option<Result<usize, String>> {
    if record.trials.len() < record.spec.trials || record.trials.iter().any(|t| !t.is_over()) {
        return None;
    }
    let spec = &record.spec;
    let best = record
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Completed)
        .filter_map(|t| Some((t.number, oriented(spec, t.score()?))))
        .fold(None, |best: Option<(usize, f64)>, (n, s)| match best {
            Some((_, b)) if b >= s => best,
            _ => Some((n, s)),
        });
    Some(best.map(|(n, _)| n).ok_or_else(|| {
        let first = record.trials.iter().find_map(|t| match &t.state {
            TrialState::Failed(reason) => Some(reason.clone()),
            _ => None,
        });
        format!("no trial completed; the first failure: {}", first.unwrap_or_else(|| "none recorded".into()))
    }))
}

/// A new study's journal.
pub fn open(id: ContentId, spec: StudySpec) -> StudyRecord {
    StudyRecord { id, spec, state: StudyState::Running, drivers: vec![], trials: vec![], best: None, test: None }
}

#[cfg(test)]
mod tests {
    use mass_protocol::{
        jobs::ModelSpec,
        studies::{Metric, Strategy},
    };

    use super::*;

    fn base() -> JobSpec {
        JobSpec {
            model: "m".into(),
            dataset: "d".into(),
            pipeline: Default::default(),
            spec: ModelSpec { learner: Learner::Mlp { hidden: vec![8] }, epochs: Some(20), ..Default::default() },
            ensemble: EnsembleSpec::Single,
            seed: 0,
            task: None,
            placement: Default::default(),
            trial: None,
            cv: None,
        }
    }

    fn study(strategy: Strategy, asha: Option<Asha>, trials: usize, parallel: usize) -> StudySpec {
        StudySpec {
            name: "m".into(),
            base: base(),
            space: BTreeMap::from([
                ("learning_rate".to_owned(), Domain::LogUniform([1e-4, 1e-1])),
                (
                    "model".to_owned(),
                    Domain::Choice(vec![ParamValue::Text("linear".into()), ParamValue::Text("mlp:16".into())]),
                ),
            ]),
            strategy,
            asha,
            metric: Some(Metric::Accuracy),
            trials,
            parallel,
            seed: 3,
        }
    }

    fn id_of(job: &JobSpec) -> ContentId {
        ContentId::of(&mass_protocol::codec::encode(job).unwrap())
    }

    fn accuracy(score: f64) -> Evaluation {
        Evaluation::classification(10, score, score, 1.0 - score, vec![])
    }

    /// A made-up response surface: best near learning rate 0.01, more epochs better.
    fn score_of(job: &JobSpec) -> f64 {
        let lr = f64::from(job.spec.learning_rate);
        let epochs = job.spec.epochs.unwrap_or(20) as f64;
        (0.9 - 0.05 * (lr.ln() - 0.01f64.ln()).powi(2)).max(0.0) * (epochs / (epochs + 2.0))
    }

    /// Runs a study to its end, every open job finishing at once, and
    /// returns the journal and how many jobs were submitted.
    fn run(spec: StudySpec) -> (StudyRecord, usize) {
        run_timed(spec, None)
    }

    /// [`run`], with `Some(seed)`: each time the driver looks, each open
    /// job has finished with a chance of one in three (a seeded draw).
    fn run_timed(spec: StudySpec, seed: Option<u64>) -> (StudyRecord, usize) {
        let mut record = open(ContentId::of(b"study"), spec.clone());
        let mut jobs: BTreeMap<ContentId, JobSpec> = BTreeMap::new();
        let mut finished: std::collections::BTreeSet<ContentId> = Default::default();
        let mut state = seed.unwrap_or(0) | 1;
        let mut submitted = 0;
        for _ in 0..10_000 {
            for job in jobs.keys() {
                // xorshift64: a draw per open job per look.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if seed.is_none() || state % 3 == 0 {
                    finished.insert(*job);
                }
            }
            let outcomes: BTreeMap<ContentId, Outcome> = record
                .trials
                .iter()
                .flat_map(|t| &t.runs)
                .map(|r| {
                    let outcome = match jobs.get(&r.job) {
                        Some(job) if finished.contains(&r.job) => {
                            Outcome::Completed { evaluation: accuracy(score_of(job)), peer: None }
                        }
                        Some(_) => Outcome::Open,
                        None => Outcome::Missing,
                    };
                    (r.job, outcome)
                })
                .collect();
            let plan = advance(&mut record, &outcomes, &id_of);
            for (t, run) in plan.submit {
                let trial = &record.trials[t];
                let job = run_job(&spec, record.id, trial, run).unwrap();
                assert_eq!(id_of(&job), trial.runs[run].job, "the journal names the job it submits");
                jobs.insert(id_of(&job), job);
                submitted += 1;
            }
            if winner(&record).is_some() {
                return (record, submitted);
            }
        }
        panic!("the study did not finish");
    }

    /// A journal is peer bytes; one asking for 2^40 trials, or for
    /// usize::MAX at once, had `advance` propose trials until memory ran
    /// out. The check on every read refuses it.
    #[test]
    fn a_journal_asking_for_unbounded_trials_is_refused_on_read() {
        let mut record = open(ContentId::of(b"s"), study(Strategy::Random, None, 4, 2));
        assert_eq!(record.validate(), Ok(()));
        record.spec.parallel = usize::MAX;
        assert!(record.validate().unwrap_err().contains("at once"));
        record.spec.parallel = 2;
        record.spec.trials = 1 << 40;
        assert!(record.validate().unwrap_err().contains("1099511627776 trials"));
    }

    /// Fuzz regression: a journal with a running trial that has no run
    /// underflowed `runs.len() - 1` in `advance`; one with ASHA's eta 0
    /// would divide by zero. Both are refused on read.
    #[test]
    fn a_journal_the_driver_cannot_step_is_refused_on_read() {
        let mut record = open(ContentId::of(b"s"), study(Strategy::Random, None, 4, 2));
        advance(&mut record, &BTreeMap::new(), &id_of);
        assert_eq!(check_journal(&record), Ok(()));
        let mut empty = record.clone();
        empty.trials[0].runs.clear();
        assert!(check_journal(&empty).unwrap_err().contains("trial 0 is running but has no run"));
        let mut eta = record;
        eta.spec.asha = Some(Asha { min_resource: 1, eta: 0 });
        assert!(check_journal(&eta).unwrap_err().contains("eta at least 2"));
    }

    #[test]
    fn a_study_runs_its_budget_once_each_and_picks_the_best() {
        let (record, submitted) = run(study(Strategy::Tpe { startup: 4 }, None, 12, 3));
        assert_eq!(record.trials.len(), 12);
        assert_eq!(submitted, 12, "one job per trial");
        assert!(record.trials.iter().all(|t| t.state == TrialState::Completed));
        let best = winner(&record).unwrap().unwrap();
        let top = record.trials.iter().map(|t| t.score().unwrap()).fold(f64::MIN, f64::max);
        assert_eq!(record.trials[best].score(), Some(top));
    }

    #[test]
    fn the_same_seed_proposes_the_same_trials() {
        let params = |r: StudyRecord| r.trials.into_iter().map(|t| t.params).collect::<Vec<_>>();
        let a = params(run(study(Strategy::Tpe { startup: 3 }, None, 10, 1)).0);
        let b = params(run(study(Strategy::Tpe { startup: 3 }, None, 10, 1)).0);
        assert_eq!(a, b);
        let mut other = study(Strategy::Tpe { startup: 3 }, None, 10, 1);
        other.seed = 4;
        assert_ne!(a, params(run(other).0));
    }

    /// Successive halving decides in trial order: however the trials' jobs
    /// are timed, the same trials run the same rungs and stop at the same
    /// place, and the same one wins.
    #[test]
    fn successive_halving_decides_the_same_whatever_the_timing() {
        let spec = study(Strategy::Random, Some(Asha { min_resource: 2, eta: 3 }), 12, 4);
        let (at_once, _) = run(spec.clone());
        assert!(at_once.trials.iter().any(|t| t.state == TrialState::Stopped), "{:?}", at_once.trials);
        for seed in [1, 7, 42, 1234] {
            let (timed, _) = run_timed(spec.clone(), Some(seed));
            assert_eq!(timed.trials, at_once.trials, "timing {seed} changed the study");
            assert_eq!(winner(&timed), winner(&at_once));
        }
    }

    /// A trial that finished a rung waits for the trials numbered below it
    /// that may still reach that rung, and holds no slot while it waits.
    #[test]
    fn a_finished_rung_waits_for_lower_trials_without_holding_a_slot() {
        let mut spec = study(Strategy::Random, Some(Asha { min_resource: 2, eta: 3 }), 6, 2);
        spec.space.remove("model"); // every trial an MLP, with rungs 2, 6, 18, 20
        let mut record = open(ContentId::of(b"study"), spec.clone());
        assert_eq!(advance(&mut record, &BTreeMap::new(), &id_of).submit, vec![(0, 0), (1, 0)]);
        let finished = |record: &StudyRecord, t: usize| {
            let job = run_job(&spec, record.id, &record.trials[t], 0).unwrap();
            (record.trials[t].runs[0].job, Outcome::Completed { evaluation: accuracy(score_of(&job)), peer: None })
        };
        // Trial 1 finishes its first rung while trial 0 still runs its own.
        let outcomes = BTreeMap::from([finished(&record, 1)]);
        let plan = advance(&mut record, &outcomes, &id_of);
        assert_eq!(record.trials[1].state, TrialState::Running);
        assert_eq!(record.trials[1].runs.len(), 1, "trial 1 was decided before trial 0 finished the rung");
        assert_eq!(plan.submit, vec![(2, 0)], "the waiting trial's slot goes to a new trial");
        // Trial 0 finishes: first at its rung, it goes on; trial 1 is decided.
        let outcomes = BTreeMap::from([finished(&record, 0)]);
        let plan = advance(&mut record, &outcomes, &id_of);
        assert_eq!(record.trials[0].runs.len(), 2);
        assert!(record.trials[1].runs.len() == 2 || record.trials[1].state == TrialState::Stopped);
        assert!(plan.submit.contains(&(0, 1)));
    }

    #[test]
    fn successive_halving_stops_weak_trials_early() {
        let spec = study(Strategy::Random, Some(Asha { min_resource: 2, eta: 3 }), 12, 4);
        let (record, _) = run(spec);
        let stopped = record.trials.iter().filter(|t| t.state == TrialState::Stopped).count();
        assert!(stopped > 0, "some trials stop early: {:?}", record.trials);
        for t in record.trials.iter().filter(|t| t.state == TrialState::Stopped) {
            assert!(t.runs.last().unwrap().resource < 20, "a stopped trial ends below its full epochs");
        }
        // Linear trials have no epochs to grow: they run once.
        for t in record.trials.iter().filter(|t| t.params["model"].text() == "linear") {
            assert_eq!(t.runs.len(), 1);
        }
        // The winner ran to the end.
        let best = winner(&record).unwrap().unwrap();
        assert_eq!(record.trials[best].state, TrialState::Completed);
    }

    #[test]
    fn a_job_that_never_reports_keeps_its_slot_and_a_missing_one_is_resubmitted() {
        let spec = study(Strategy::Random, None, 4, 2);
        let mut record = open(ContentId::of(b"s"), spec);
        let plan = advance(&mut record, &BTreeMap::new(), &id_of);
        assert_eq!(plan.submit, vec![(0, 0), (1, 0)], "two at once");
        let open_jobs: BTreeMap<_, _> = record.trials.iter().map(|t| (t.runs[0].job, Outcome::Open)).collect();
        assert_eq!(advance(&mut record, &open_jobs, &id_of), Plan::default(), "nothing new while both run");
        let missing: BTreeMap<_, _> = record.trials.iter().map(|t| (t.runs[0].job, Outcome::Missing)).collect();
        assert_eq!(advance(&mut record, &missing, &id_of).submit, vec![(0, 0), (1, 0)]);
    }

    #[test]
    fn failed_trials_count_and_a_study_of_failures_fails_with_the_reason() {
        let spec = study(Strategy::Random, None, 2, 2);
        let mut record = open(ContentId::of(b"s"), spec);
        advance(&mut record, &BTreeMap::new(), &id_of);
        let failed: BTreeMap<_, _> =
            record.trials.iter().map(|t| (t.runs[0].job, Outcome::Failed("out of memory".into()))).collect();
        advance(&mut record, &failed, &id_of);
        assert_eq!(record.trials.len(), 2);
        assert_eq!(winner(&record), Some(Err("no trial completed; the first failure: out of memory".into())));
    }

    #[test]
    fn bad_studies_are_refused_by_name() {
        let mut spec = study(Strategy::Random, None, 10, 2);
        assert_eq!(check(&spec, 1000), Ok(()));
        spec.trials = 5000;
        assert!(check(&spec, 1000).unwrap_err().contains("trials: 5000"));
        spec.trials = 10;
        spec.space.insert("momentum".into(), Domain::Uniform([0.0, 1.0]));
        assert!(check(&spec, 1000).unwrap_err().contains("space.momentum: unknown parameter"));
        spec.space.remove("momentum");
        spec.space.insert("epochs".into(), Domain::Int([30, 5]));
        assert!(check(&spec, 1000).unwrap_err().contains("space.epochs: the range is inverted"));
        spec.space.insert("epochs".into(), Domain::Int([0, 5]));
        assert!(check(&spec, 1000).unwrap_err().starts_with("space.epochs = 0"));
        spec.space.insert("epochs".into(), Domain::Int([1, 5]));
        spec.space.insert("model".into(), Domain::Choice(vec![ParamValue::Text("forest".into())]));
        assert!(check(&spec, 1000).unwrap_err().contains("space.model = forest"));
        spec.space.remove("model");
        spec.strategy = Strategy::Grid { steps: 3 };
        assert!(check(&spec, 1000).unwrap_err().contains("more than the grid's"));
    }

    #[test]
    fn rungs_grow_by_eta_up_to_the_trials_own_resource() {
        assert_eq!(rungs(Asha { min_resource: 2, eta: 3 }, 20), vec![2, 6, 18, 20]);
        assert_eq!(rungs(Asha { min_resource: 5, eta: 2 }, 5), vec![5]);
        assert_eq!(rungs(Asha { min_resource: 50, eta: 2 }, 5), vec![5]);
    }

    #[test]
    fn parameters_land_in_the_job() {
        let params = BTreeMap::from([
            ("model".to_owned(), ParamValue::Text("gbdt".into())),
            ("leaves".to_owned(), ParamValue::Number(15.0)),
            ("l2".to_owned(), ParamValue::Number(0.5)),
            ("scale".to_owned(), ParamValue::Text("none".into())),
        ]);
        let job = apply(&base(), &params).unwrap();
        let Learner::Gbdt(tree) = &job.spec.learner else { panic!("a tree learner") };
        assert_eq!((tree.leaves, tree.l2), (15, 0.5));
        assert_eq!(job.pipeline.scale, Scale::None);
        assert!(apply(&base(), &BTreeMap::from([("epochs".to_owned(), ParamValue::Number(2.5))])).is_err());
    }
}
