//! Tabular learners on a mesh, printed as Markdown tables for BENCHMARKS.md.
//!
//! `cargo bench -p mass-node --bench tabular` (release nodes on this machine).
//! Env: `TABULAR_SETS=diamonds,flights,mnist` (default diamonds,flights),
//! `TABULAR_TREES` (300), `TABULAR_LEAVES` (31), `TABULAR_MESHES=1p,2p,3`
//! (1p: one node pinned to core 0; 2p: two nodes pinned to cores 0 and 1;
//! 3: three unpinned nodes).
//!
//! For each dataset and mesh: ingest (not timed), then gradient-boosted
//! trees (LightGBM's defaults: learning rate 0.1, 20 rows per leaf) timed
//! from submit to the completed record, with the test accuracy (or R2); on
//! diamonds also ridge and an MLP regressor. Compare with
//! `../shared/baselines/run.sh tabular` run side by side.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use mass_protocol::jobs::{EnsembleSpec, JobSpec, JobState, Learner, ModelSpec, Task, TreeSpec};
use mass_sdk::{Client, IngestRequest, local::LocalNode};

mod support;

use support::shared;

/// (name, file, label, test rows, task)
const SETS: [(&str, &str, &str, &str, Task); 3] = [
    ("diamonds", "diamonds.csv", "price", "diamonds.test_rows.txt", Task::Regression),
    ("flights", "flights.csv.gz", "label", "flights.test_rows.txt", Task::Classification),
    ("mnist", "mnist.csv.gz", "label", "mnist.test_rows.txt", Task::Classification),
];

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Pins every thread of a node to `core`.
fn pin(node: &LocalNode, core: usize) {
    let status = Command::new("taskset")
        .args(["-a", "-cp", &core.to_string(), &node.endpoints().pid.to_string()])
        .output()
        .expect("taskset (util-linux) on the PATH");
    assert!(status.status.success(), "taskset failed: {}", String::from_utf8_lossy(&status.stderr));
}

async fn mesh_of(work: &Path, kind: &str) -> Vec<LocalNode> {
    let (count, pinned) = match kind {
        "1p" => (1, true),
        "2p" => (2, true),
        other => (other.parse().expect("TABULAR_MESHES: 1p, 2p or a node count"), false),
    };
    let nodes = support::local_mesh(work, count).await;
    if pinned {
        for (core, node) in nodes.iter().enumerate() {
            pin(node, core);
        }
    }
    nodes
}

/// Submits `spec` and waits for it; (seconds, headline score).
async fn timed(client: &Client, spec: &JobSpec) -> (f64, f64) {
    let started = Instant::now();
    let id = client.submit_job(spec).await.unwrap().to_string();
    loop {
        let record = client.job(&id).await.unwrap();
        match &record.state {
            JobState::Completed => return (started.elapsed().as_secs_f64(), record.evaluation.unwrap().score()),
            JobState::Failed(e) => panic!("{}: {e}", spec.model),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn job(model: &str, dataset: &str, learner: Learner, task: Task) -> JobSpec {
    JobSpec {
        model: model.into(),
        dataset: dataset.into(),
        pipeline: Default::default(),
        spec: ModelSpec::of(learner),
        ensemble: EnsembleSpec::Single,
        seed: 0,
        task: Some(task),
        placement: Default::default(),
        trial: None,
        cv: None,
    }
}

#[tokio::main]
async fn main() {
    let sets = env_or("TABULAR_SETS", "diamonds,flights");
    let trees: usize = env_or("TABULAR_TREES", "300").parse().unwrap();
    let leaves: usize = env_or("TABULAR_LEAVES", "31").parse().unwrap();
    let meshes = env_or("TABULAR_MESHES", "1p,2p,3");
    println!("| dataset | model | mesh | fit (s) | test score |");
    println!("|---|---|---|---|---|");
    for (name, file, label, test_rows, task) in SETS.iter().filter(|s| sets.split(',').any(|n| n == s.0)) {
        for kind in meshes.split(',') {
            let work = tempfile::tempdir().unwrap();
            let nodes = mesh_of(work.path(), kind).await;
            let client = Client::new([nodes[0].http_url()]).unwrap();
            let request = IngestRequest {
                name: (*name).into(),
                label: (*label).into(),
                shard_rows: Some(20_000),
                test_rows: Some(shared(test_rows)),
                // Codes with many values (4,004 tail numbers): categories for
                // trees, as LightGBM takes them, not text.
                types: if *name == "flights" {
                    ["carrier", "tailnum", "origin", "dest"].map(|c| (c.into(), "categorical".into())).to_vec()
                } else {
                    vec![]
                },
                ..Default::default()
            };
            client.ingest_csv(&shared(file), &request).await.unwrap();
            // Let shards reach their homes before timing.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let mut runs = vec![(
                format!("gbdt {trees} trees, {leaves} leaves"),
                Learner::Gbdt(TreeSpec { trees, leaves, ..TreeSpec::default() }),
            )];
            if *task == Task::Regression {
                runs.push(("ridge (linear)".into(), Learner::Linear));
                runs.push(("mlp:64".into(), Learner::Mlp { hidden: vec![64] }));
            }
            for (i, (label, learner)) in runs.into_iter().enumerate() {
                let (secs, score) = timed(&client, &job(&format!("m{i}"), name, learner, *task)).await;
                let what = if *task == Task::Regression { "R2" } else { "accuracy" };
                println!("| {name} | {label} | {kind} | {secs:.1} | {what} {score:.4} |");
            }
        }
    }
}
