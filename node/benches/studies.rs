//! Hyperparameter studies on a mesh, printed as a Markdown table for
//! BENCHMARKS.md: the space and budget of the Optuna baseline
//! (`../shared/baselines/08_tabular.py optuna`: an MLP on digits, width
//! 32-256, learning rate 1e-4-1e-1 and L2 1e-6-1e-1 log-uniform, 10-200
//! epochs, 50 TPE trials, 2 at once), with and without successive halving.
//!
//! `cargo bench -p mass-node --bench studies`. Env: `STUDY_NODES` (3),
//! `STUDY_TRIALS` (50), `STUDY_PARALLEL` (2), `STUDY_RUNS=tpe,tpe-asha`.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use mass_protocol::{
    jobs::{EnsembleSpec, JobSpec, Learner, ModelSpec},
    studies::{Asha, Domain, ParamValue, Strategy, StudySpec, StudyState, TrialState},
};
use mass_sdk::{Client, IngestRequest};

mod support;

use support::shared;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn space() -> BTreeMap<String, Domain> {
    let widths = ["mlp:32", "mlp:64", "mlp:128", "mlp:256"];
    BTreeMap::from([
        ("model".to_owned(), Domain::Choice(widths.iter().map(|w| ParamValue::Text((*w).into())).collect())),
        ("learning_rate".to_owned(), Domain::LogUniform([1e-4, 1e-1])),
        ("l2".to_owned(), Domain::LogUniform([1e-6, 1e-1])),
        ("epochs".to_owned(), Domain::Int([10, 200])),
    ])
}

fn study(name: &str, trials: usize, parallel: usize, asha: Option<Asha>) -> StudySpec {
    StudySpec {
        name: name.into(),
        base: JobSpec {
            model: name.into(),
            dataset: "digits".into(),
            pipeline: Default::default(),
            // Batch 200 and patience off, as scikit-learn's MLPClassifier trains.
            spec: ModelSpec { batch_size: 200, patience: Some(0), ..ModelSpec::of(Learner::Mlp { hidden: vec![64] }) },
            ensemble: EnsembleSpec::Single,
            seed: 0,
            task: None,
            placement: Default::default(),
            trial: None,
            cv: None,
        },
        space: space(),
        strategy: Strategy::Tpe { startup: 10 },
        asha,
        metric: None,
        trials,
        parallel,
        seed: 42,
    }
}

#[tokio::main]
async fn main() {
    let count: usize = env_or("STUDY_NODES", "3").parse().unwrap();
    let trials: usize = env_or("STUDY_TRIALS", "50").parse().unwrap();
    let parallel: usize = env_or("STUDY_PARALLEL", "2").parse().unwrap();
    let runs = env_or("STUDY_RUNS", "tpe,tpe-asha");
    let work = tempfile::tempdir().unwrap();
    let nodes = support::local_mesh(work.path(), count).await;
    let client = Client::new([nodes[0].http_url()]).unwrap();
    let request = IngestRequest {
        name: "digits".into(),
        label: "label".into(),
        shard_rows: Some(300),
        validation: Some(0.2),
        seed: Some(42),
        test_rows: Some(shared("digits.test_rows.txt")),
        ..Default::default()
    };
    client.ingest_csv(&shared("digits.csv"), &request).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "| study | nodes | trials (stopped early) | wall (s) | best validation accuracy | test accuracy of the winner |"
    );
    println!("|---|---|---|---|---|---|");
    for run in runs.split(',') {
        let asha = (run == "tpe-asha").then_some(Asha { min_resource: 10, eta: 3 });
        let started = Instant::now();
        let id = client.submit_study(&study(run, trials, parallel, asha)).await.unwrap().to_string();
        let record = loop {
            let record = client.study(&id).await.unwrap();
            if record.state.is_over() {
                break record;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(record.state, StudyState::Completed, "{run}: {:?}", record.state);
        let best = record.trials.iter().filter(|t| t.state == TrialState::Completed).filter_map(|t| t.score());
        let best = best.fold(f64::MIN, f64::max);
        let stopped = record.trials.iter().filter(|t| t.state == TrialState::Stopped).count();
        let test = record.test.as_ref().and_then(|e| e.accuracy).unwrap_or(f64::NAN);
        println!("| {run} | {count} | {} ({stopped}) | {secs:.1} | {best:.4} | {test:.4} |", record.trials.len());
    }
}
