//! Hyperparameter studies on a real mesh (issue 13): a TPE study that
//! finishes every trial exactly once though the node that submitted it and
//! the node driving it die, successive halving that stops weak trials, the
//! CLI, and bad studies refused by name before any trial starts.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use mass_protocol::{
    ContentId,
    jobs::{EnsembleSpec, JobSpec, JobState, Learner, ModelManifest, ModelSpec},
    studies::{Asha, Domain, Metric, ParamValue, Strategy, StudyRecord, StudySpec, StudyState, TrialState},
};
use mass_sdk::{Client, IngestRequest, local::LocalNode};

use crate::support::{Cluster, eventually, mass, mesh, shards_settled, shared_dataset};

/// Digits with a validation split (trials are judged on it) and the fixed test rows.
async fn digits_on(node: &LocalNode) {
    let request = IngestRequest {
        name: "digits".into(),
        label: "label".into(),
        shard_rows: Some(300),
        validation: Some(0.2),
        test_rows: Some(shared_dataset("digits.test_rows.txt")),
        ..Default::default()
    };
    Client::new([node.http_url()]).unwrap().ingest_csv(&shared_dataset("digits.csv"), &request).await.unwrap();
}

fn base(name: &str, epochs: usize) -> JobSpec {
    JobSpec {
        model: name.into(),
        dataset: "digits".into(),
        pipeline: Default::default(),
        spec: ModelSpec {
            learner: Learner::Mlp { hidden: vec![32] },
            epochs: Some(epochs),
            batch_size: 32,
            ..ModelSpec::default()
        },
        ensemble: EnsembleSpec::Single,
        seed: 0,
        task: None,
        placement: Default::default(),
        trial: None,
        cv: None,
    }
}

fn study(name: &str, space: BTreeMap<String, Domain>, strategy: Strategy, trials: usize) -> StudySpec {
    StudySpec {
        name: name.into(),
        base: base(name, 12),
        space,
        strategy,
        asha: None,
        metric: None,
        trials,
        parallel: 3,
        seed: 11,
    }
}

fn learning_rates() -> (String, Domain) {
    ("learning_rate".into(), Domain::LogUniform([3e-4, 3e-2]))
}

async fn wait_study(
    client: &Client,
    id: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&StudyRecord) -> bool,
) -> StudyRecord {
    crate::support::poll_record(within, what, || client.study(id), done).await
}

fn trials_over(record: &StudyRecord) -> usize {
    record.trials.iter().filter(|t| t.is_over()).count()
}

/// The trial with the best score among those that ran to the end.
fn best_completed(record: &StudyRecord) -> (usize, f64) {
    record
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Completed)
        .map(|t| (t.number, t.score().unwrap()))
        .fold((usize::MAX, f64::MIN), |best, (n, s)| if s > best.1 { (n, s) } else { best })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_study_runs_every_trial_once_though_its_submitter_and_its_driver_die() {
    let mut cluster = Cluster::new();
    let mut nodes = mesh(&mut cluster, 3).await;
    digits_on(&nodes[0]).await;
    let submitter = Client::new([nodes[0].http_url()]).unwrap();
    shards_settled(&submitter, "digits", Duration::from_secs(30)).await;
    // Trials of a few seconds each, so that both deaths fall mid-study.
    let space = BTreeMap::from([
        (
            "model".to_owned(),
            Domain::Choice(vec![ParamValue::Text("mlp:32".into()), ParamValue::Text("mlp:64".into())]),
        ),
        learning_rates(),
        ("epochs".to_owned(), Domain::Int([60, 120])),
    ]);
    let mut spec = study("digits-tuned", space, Strategy::Tpe { startup: 5 }, 20);
    // Two at a time: the study outlasts both deaths.
    spec.parallel = 2;
    let id = submitter.submit_study(&spec).await.unwrap().to_string();

    // The submitter dies once a few trials are done.
    wait_study(&submitter, &id, Duration::from_secs(120), "3 trials done", |r| trials_over(r) >= 3).await;
    let dead = nodes[0].peer_id().to_owned();
    nodes[0].kill();
    let alive: Vec<usize> = vec![1, 2];
    for &i in &alive {
        eventually(Duration::from_secs(20), "the submitter is seen down", || async {
            crate::support::state_of(&nodes[i], &dead).await == Some(mass_protocol::api::PeerState::Down)
        })
        .await;
    }
    // Then, a few trials later (the two left have repaired what the dead
    // node held), whichever node drives the study dies.
    let watcher = Client::new(alive.iter().map(|&i| nodes[i].http_url())).unwrap();
    let over = trials_over(&watcher.study(&id).await.unwrap());
    let before =
        wait_study(&watcher, &id, Duration::from_secs(120), "3 more trials done", |r| trials_over(r) >= over + 3).await;
    assert_eq!(before.state, StudyState::Running, "the study ended before its driver could be killed");
    eventually(Duration::from_secs(60), "the dataset is whole on the two nodes left", || async {
        watcher.dataset("digits").await.is_ok_and(|v| v.shard_holders.iter().all(|h| h.len() == 2))
    })
    .await;
    let driver = before.drivers.last().unwrap().clone();
    let victim = alive.iter().copied().find(|&i| nodes[i].peer_id() == driver);
    let victim = victim.unwrap_or_else(|| panic!("the study's driver {driver} is not a live node"));
    nodes[victim].kill();
    let last = alive.into_iter().find(|&i| i != victim).unwrap();
    let client = Client::new([nodes[last].http_url()]).unwrap();
    let record = wait_study(&client, &id, Duration::from_secs(400), "the study ends", |r| r.state.is_over()).await;
    assert_eq!(record.state, StudyState::Completed, "{record:?}");
    assert!(record.drivers.len() >= 2 && record.drivers.contains(&driver), "takeovers: {:?}", record.drivers);

    // Twenty trials, each run once to completion: every trial job of the
    // study is in the journal, and each trial names one job.
    assert_eq!(record.trials.len(), 20);
    assert!(record.trials.iter().all(|t| t.state == TrialState::Completed && t.runs.len() == 1), "{record:?}");
    let journal: BTreeSet<ContentId> = record.trials.iter().map(|t| t.runs[0].job).collect();
    assert_eq!(journal.len(), 20, "two trials share a job");
    let jobs = client.jobs().await.unwrap();
    let of_study: Vec<_> = jobs.iter().filter(|j| j.spec.trial.is_some_and(|t| t.study.to_string() == id)).collect();
    let ran: BTreeSet<ContentId> = of_study.iter().map(|j| j.id).collect();
    assert_eq!(ran, journal, "a trial job ran that the journal does not name (or one is missing)");
    assert!(of_study.iter().all(|j| j.state == JobState::Completed));

    // The winner is the journal's best, registered with the study in its
    // lineage and judged on the test rows.
    let (best, score) = best_completed(&record);
    let (winner, manifest_id) = record.best.unwrap();
    assert_eq!(winner, best, "the registered trial is not the best");
    assert!(score > 0.9, "best validation accuracy {score}");
    let model = client.model("digits-tuned").await.unwrap();
    assert_eq!(model.manifest_id, manifest_id);
    let manifest: ModelManifest = model.manifest;
    assert_eq!(manifest.study.map(|s| s.to_string()), Some(id.clone()));
    assert_eq!(Some(manifest.evaluation.clone()), record.test);
    assert!(manifest.evaluation.accuracy.unwrap() > 0.9, "{:?}", manifest.evaluation);
    // The winner's report: its validation figure is the one the study ranked it by.
    assert!((manifest.evaluation.validation.unwrap() - score).abs() < 1e-9, "{:?} vs {score}", manifest.evaluation);
    assert!(!manifest.evaluation.robustness.is_empty());
    for mut node in nodes {
        node.kill();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn successive_halving_stops_weak_trials_and_keeps_the_best_and_bad_studies_are_refused() {
    let mut cluster = Cluster::new();
    let nodes = mesh(&mut cluster, 3).await;
    digits_on(&nodes[0]).await;
    let client = Client::new([nodes[1].http_url()]).unwrap();
    shards_settled(&client, "digits", Duration::from_secs(30)).await;

    // Bad studies: refused by name, before any trial starts.
    let refused = |mut spec: StudySpec, edit: fn(&mut StudySpec), expected: &'static str| {
        edit(&mut spec);
        let client = &client;
        async move {
            let err = client.submit_study(&spec).await.unwrap_err().to_string();
            assert!(err.contains(expected), "expected '{expected}' in: {err}");
        }
    };
    let ok = study("digits-asha", BTreeMap::from([learning_rates()]), Strategy::Random, 12);
    refused(
        ok.clone(),
        |s| s.space.insert("momentum".into(), Domain::Uniform([0.0, 1.0])).map_or((), |_| ()),
        "space.momentum: unknown parameter",
    )
    .await;
    refused(
        ok.clone(),
        |s| s.space.insert("epochs".into(), Domain::Int([9, 3])).map_or((), |_| ()),
        "space.epochs: the range is inverted",
    )
    .await;
    refused(
        ok.clone(),
        |s| s.space.insert("l2".into(), Domain::Choice(vec![])).map_or((), |_| ()),
        "space.l2: an empty list",
    )
    .await;
    refused(ok.clone(), |s| s.trials = 100_000, "trials: 100000 is outside 1-1000").await;
    refused(ok.clone(), |s| s.metric = Some(Metric::Rmse), "metric: rmse measures regression").await;
    refused(ok.clone(), |s| s.base.dataset = "nowhere".into(), "no dataset named 'nowhere'").await;
    assert!(client.studies().await.unwrap().is_empty(), "a refused study left a journal");

    // The same random proposals, run in full and with successive halving
    // (2, 6, then 18 epochs; the best third goes on at each rung).
    let mut full = ok.clone();
    full.name = "digits-full".into();
    full.base = base("digits-full", 18);
    let mut halving = full.clone();
    halving.name = "digits-asha".into();
    halving.base.model = "digits-asha".into();
    halving.asha = Some(Asha { min_resource: 2, eta: 3 });
    let full_id = client.submit_study(&full).await.unwrap().to_string();
    let halving_id = client.submit_study(&halving).await.unwrap().to_string();
    // Followed by waiting on the node: an open study answers at its
    // journal's next change (a trial proposed or scored), well before the
    // wait runs out.
    let asked = std::time::Instant::now();
    let seen = client.study_changed(&full_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(seen.id.to_string(), full_id);
    assert!(asked.elapsed() < Duration::from_secs(25), "an open study waited out the whole wait");
    let within = Duration::from_secs(400);
    let full = wait_study(&client, &full_id, within, "the full study ends", |r| r.state.is_over()).await;
    let halving = wait_study(&client, &halving_id, within, "the halving study ends", |r| r.state.is_over()).await;
    assert_eq!((&full.state, &halving.state), (&StudyState::Completed, &StudyState::Completed));
    let proposals = |r: &StudyRecord| r.trials.iter().map(|t| t.params.clone()).collect::<Vec<_>>();
    assert_eq!(proposals(&full), proposals(&halving), "the same seed proposed different trials");

    let stopped: Vec<_> = halving.trials.iter().filter(|t| t.state == TrialState::Stopped).collect();
    assert!(!stopped.is_empty(), "no trial was stopped early: {halving:?}");
    assert!(stopped.iter().all(|t| t.runs.last().unwrap().resource < 18));
    let epochs =
        |r: &StudyRecord| r.trials.iter().map(|t| t.runs.iter().map(|run| run.resource).sum::<usize>()).sum::<usize>();
    assert!(
        epochs(&halving) < epochs(&full),
        "halving spent {} epochs, the full search {}",
        epochs(&halving),
        epochs(&full)
    );
    // Over, it answers at once; a wait past the limit is refused.
    let asked = std::time::Instant::now();
    assert_eq!(client.study_changed(&full_id, Duration::from_secs(30)).await.unwrap().state, StudyState::Completed);
    assert!(asked.elapsed() < Duration::from_secs(10), "an ended study kept the caller waiting");
    let err = client.study_changed(&full_id, Duration::from_millis(30_001)).await.unwrap_err().to_string();
    assert!(err.contains("400") && err.contains("wait_ms: 30001; at most 30000"), "{err}");
    let (full_best, halving_best) = (best_completed(&full).1, best_completed(&halving).1);
    assert!(halving_best >= full_best - 0.01, "halving's best {halving_best} vs the full search's {full_best}");

    // The CLI: the leaderboard and a plot of the trials.
    let url = nodes[2].http_url();
    let (ok, out, err) = mass(&["studies", "show", &halving_id, "--node", url]);
    assert!(ok, "{err}");
    assert!(out.contains("stopped") && out.contains("winner: trial"), "{out}");
    let svg = cluster.path().join("trials.svg");
    let (ok, _, err) = mass(&["studies", "plot", &halving_id, "--output", svg.to_str().unwrap(), "--node", url]);
    assert!(ok, "{err}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(drawn.matches("<circle").count(), 2 * halving.trials.len(), "one point per trial in each panel");
}
