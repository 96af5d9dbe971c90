//! Leaving the mesh on purpose: of four nodes under serving load and during
//! a training job, the job's driver is drained with `mass node drain` and
//! then a serving replica with SIGTERM. Each hands off its blobs, replicas
//! and drives before it exits: no request fails, every blob it held is at
//! k copies on the nodes left the moment it is gone, and the job completes
//! once.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use mass_protocol::jobs::{EnsembleSpec, JobState};
use mass_sdk::{Client, api::PeerState, local::LocalNode};
use serde_json::{Value, json};

use crate::{
    jobs::{digits_on, spec},
    serving::signal,
    support::{Cluster, FAST_CONFIG, MASS, blobs_on, eventually, finished, mesh, poll, shards_settled, state_of},
};

/// Copies of every blob (`storage.replication`).
const K: usize = 2;

/// Predictions sent through `entry` until `stop`, one at a time per worker.
struct Load {
    sent: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(entry: &LocalNode, model: &'static str, row: Value, concurrency: usize) -> Self {
        let client = Arc::new(Client::new([entry.http_url()]).unwrap());
        let failures: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let (sent, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let workers = (0..concurrency)
            .map(|_| {
                let (client, sent, failures, stop, row) =
                    (client.clone(), sent.clone(), Arc::clone(&failures), stop.clone(), row.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        if let Err(e) = client.predict(model, std::slice::from_ref(&row)).await {
                            failures.lock().unwrap().push(e.to_string());
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Self { sent, failures, stop, workers }
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.unwrap();
        }
        (self.sent.load(Ordering::Relaxed), self.failures.lock().unwrap().clone())
    }
}

/// Waits until `observer` lists `node` as draining (`mass peers`).
async fn seen_draining(observer: &LocalNode, node: &LocalNode) {
    eventually(Duration::from_secs(30), "a peer lists the node as draining", || async {
        state_of(observer, node.peer_id()).await == Some(PeerState::Draining)
    })
    .await;
}

/// Asserts that each of `held` is on at least `k` of `left` (or on all of
/// them, when fewer are left).
async fn held_at_k(held: &BTreeSet<String>, left: &[&LocalNode]) {
    let mut copies = std::collections::BTreeMap::<&String, usize>::new();
    for node in left {
        let here: BTreeSet<String> = blobs_on(node).await.into_iter().collect();
        for id in held.iter().filter(|id| here.contains(*id)) {
            *copies.entry(id).or_default() += 1;
        }
    }
    let want = K.min(left.len());
    let short: Vec<_> = held.iter().filter(|id| copies.get(id).copied().unwrap_or(0) < want).collect();
    assert!(
        short.is_empty(),
        "{} of {} blobs below {want} copies once the node left: {short:?}",
        short.len(),
        held.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drained_nodes_hand_off_blobs_replicas_and_jobs_with_no_failed_request() {
    let mut cluster = Cluster::with_config(&format!("{FAST_CONFIG}\n[serving]\nreplicas = 2\n"));
    let mut nodes = mesh(&mut cluster, 4).await;
    digits_on(&nodes[0], 240).await;
    let client = Client::new([nodes[0].http_url()]).unwrap();
    shards_settled(&client, "digits", Duration::from_secs(30)).await;
    let served = client.submit_job(&spec("digits", vec![], EnsembleSpec::Single, 10)).await.unwrap();
    finished(&client, &served.to_string(), Duration::from_secs(120)).await;

    // A job long enough to be under way through both drains, in many short
    // tasks (before replicas kept a slot for serving, tasks of 2,000 epochs,
    // and under the whole suite's load of 600, held every slot of a replica
    // past the load's 2 s deadline; short tasks also hand the job on at
    // more points). At 60 epochs it once
    // ended before the first drain handed it on, and at 8 members of 150 or
    // 600 epochs too once its tasks were handed out back to back. Every
    // epoch runs: early stopping would make its length depend on when its
    // loss settles.
    let mut long = spec("digits-bag", vec![64], EnsembleSpec::Bagging { members: 128 }, 150);
    long.spec.patience = Some(150);
    let job = client.submit_job(&long).await.unwrap();
    let id = job.to_string();
    let started = poll(&client, &id, Duration::from_secs(30), "a driver starts the job", |r| {
        r.state == JobState::Running && !r.tasks.is_empty()
    })
    .await;
    let driver = nodes.iter().position(|n| n.peer_id() == started.drivers[0]).expect("the driver is a node");
    // Load enters through a node that is neither drained here nor a replica.
    let replicas = client.model("digits").await.unwrap().replicas;
    let entry = (0..4)
        .find(|&i| i != driver && !replicas.iter().any(|r| r == nodes[i].peer_id()))
        .or_else(|| (0..4).find(|&i| i != driver))
        .unwrap();
    let row = json!(vec![0.0; 64]);
    let load = Load::start(&nodes[entry], "digits", row, 4);
    eventually(Duration::from_secs(30), "load flowing", || async { load.sent() >= 50 }).await;

    // 1. The driver, with `mass node drain`.
    let held: BTreeSet<String> = blobs_on(&nodes[driver]).await.into_iter().collect();
    let (sent_before, began) = (load.sent(), Instant::now());
    let url = nodes[driver].http_url().to_owned();
    let command = tokio::task::spawn_blocking(move || {
        std::process::Command::new(MASS).args(["node", "drain", "--node", &url]).output().unwrap()
    });
    seen_draining(&nodes[entry], &nodes[driver]).await;
    let output = command.await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "mass node drain failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("drained"), "{stdout}");
    let code = nodes[driver].wait_exit(Duration::from_secs(30)).expect("the drained node exits by itself");
    assert_eq!(code, Some(0), "a drained node exits cleanly");
    let drained_in = began.elapsed();
    let left: Vec<&LocalNode> = (0..4).filter(|&i| i != driver).map(|i| &nodes[i]).collect();
    held_at_k(&held, &left).await;
    let during = load.sent() - sent_before;
    eprintln!(
        "drained the job's driver in {drained_in:?}: {} blobs handed off, {during} requests during the drain; {}",
        held.len(),
        stdout.trim()
    );
    assert!(during > 0, "the load did not overlap the drain");

    // 2. A serving replica, with SIGTERM.
    let observer = Client::new([nodes[entry].http_url()]).unwrap();
    let replicas = observer.model("digits").await.unwrap().replicas;
    let victim = (0..4)
        .find(|&i| i != driver && i != entry && replicas.iter().any(|r| r == nodes[i].peer_id()))
        .expect("a replica other than the entry node");
    let held: BTreeSet<String> = blobs_on(&nodes[victim]).await.into_iter().collect();
    let (sent_before, began) = (load.sent(), Instant::now());
    signal(&nodes[victim], "TERM");
    seen_draining(&nodes[entry], &nodes[victim]).await;
    let code = nodes[victim].wait_exit(Duration::from_secs(60)).expect("SIGTERM drains, then the node exits");
    assert_eq!(code, Some(0));
    let terminated_in = began.elapsed();
    let left: Vec<&LocalNode> = (0..4).filter(|&i| i != driver && i != victim).map(|i| &nodes[i]).collect();
    held_at_k(&held, &left).await;
    let during = load.sent() - sent_before;
    assert!(during > 0, "the load did not overlap the second drain");

    let record = finished(&observer, &id, Duration::from_secs(240)).await;
    let (sent, failures) = load.finish().await;
    eprintln!(
        "SIGTERM drained a replica in {terminated_in:?} ({} blobs, {during} requests during it); {sent} requests, {} failed; job drivers {:?}",
        held.len(),
        failures.len(),
        record.drivers
    );
    assert!(failures.is_empty(), "requests failed during the drains: {failures:?}");
    assert!(record.drivers.len() >= 2, "the job was handed to another driver: {:?}", record.drivers);
    let view = observer.model("digits-bag").await.unwrap();
    assert_eq!(view.versions.len(), 1, "one job, one model: {:?}", view.versions);
    let remaining: Vec<String> = left.iter().map(|n| n.peer_id().to_owned()).collect();
    assert!(view.replicas.iter().all(|r| remaining.contains(r)), "a replica left the mesh: {:?}", view.replicas);
}
