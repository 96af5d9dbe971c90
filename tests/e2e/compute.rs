//! Work placed by measured capacity (issue 11): a slow node gets less of a
//! job, a full node says so at once and the work goes elsewhere, and each
//! node advertises what it offers and what it is doing.

use std::time::{Duration, Instant};

use mass_protocol::jobs::{EnsembleSpec, JobSpec, Learner, ModelSpec, Placement};
use mass_sdk::{Client, IngestRequest, local::LocalNode};

use crate::support::{Cluster, FAST_CONFIG, finished, lists_up_with_hardware, shards_settled};

/// Starts a node with `[compute]` settings of its own.
fn node_with(cluster: &mut Cluster, compute: &str, bootstrap: Option<&LocalNode>) -> LocalNode {
    let mut options = cluster.options();
    let config = options.data_dir.with_extension("toml");
    std::fs::write(&config, format!("{FAST_CONFIG}\n[compute]\n{compute}\n")).unwrap();
    options.config = Some(config);
    options.bootstrap = bootstrap.map(|n| vec![n.listen_addr().to_owned()]).unwrap_or_default();
    cluster.start(options)
}

async fn digits(client: &Client) {
    let request = IngestRequest {
        name: "digits".into(),
        label: "label".into(),
        shard_rows: Some(180),
        test_rows: Some(crate::support::shared_dataset("digits.test_rows.txt")),
        ..Default::default()
    };
    client.ingest_csv(&crate::support::shared_dataset("digits.csv"), &request).await.unwrap();
}

fn bagging(name: &str, members: usize, epochs: usize, placement: Placement) -> JobSpec {
    JobSpec {
        model: name.into(),
        dataset: "digits".into(),
        pipeline: Default::default(),
        spec: ModelSpec { epochs: Some(epochs), ..ModelSpec::of(Learner::Mlp { hidden: vec![64] }) },
        ensemble: EnsembleSpec::Bagging { members },
        seed: 3,
        task: None,
        placement,
        trial: None,
        cv: None,
    }
}

/// One wide network for 3,000 epochs over every training row, with early
/// stopping out of reach: one task of a minute's work in a debug build.
fn long_job() -> JobSpec {
    let mut long = bagging("long", 1, 3_000, Placement::Capacity);
    long.spec.patience = Some(3_000);
    long.ensemble = EnsembleSpec::Single;
    long.spec.learner = Learner::Mlp { hidden: vec![256] };
    long
}

/// Whether the node `client` talks to runs one training task now.
async fn training_on(client: &Client) -> bool {
    let peers = client.peers().await.unwrap_or_default();
    let me = peers.into_iter().find(|p| p.is_self);
    me.and_then(|p| p.load)
        .and_then(|l| l.queues.into_iter().find(|q| q.name == "compute.training"))
        .is_some_and(|q| q.depth == 1)
}

async fn two_nodes(cluster: &mut Cluster, fast: &str, slow: &str) -> (LocalNode, LocalNode, Client) {
    let a = node_with(cluster, fast, None);
    let b = node_with(cluster, slow, Some(&a));
    let ids = [a.peer_id().to_owned(), b.peer_id().to_owned()];
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    crate::support::eventually(Duration::from_secs(10), "the two nodes meet", || async {
        lists_up_with_hardware(&a, &ids).await && lists_up_with_hardware(&b, &ids).await
    })
    .await;
    let client = Client::new([a.http_url()]).unwrap();
    digits(&client).await;
    shards_settled(&client, "digits", Duration::from_secs(30)).await;
    (a, b, client)
}

/// One node limited to a quarter of one core's time: a bagging job of 8
/// gives the other node most members, and finishes sooner than the same
/// job spread evenly.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_node_gets_less_of_a_job_and_the_job_finishes_sooner() {
    let mut cluster = Cluster::new();
    let (fast, slow, client) = two_nodes(&mut cluster, "", "slots = 1\nthrottle = 0.25").await;
    // Capacity is measured; a node measured while the machine was busy
    // advertises more as it measures again. Wait for the two to settle.
    crate::support::eventually(Duration::from_secs(60), "capacities reflect the throttle", || async {
        let peers = client.peers().await.unwrap_or_default();
        let offered = |id: &str| {
            peers.iter().find(|p| p.peer_id == id).and_then(|p| p.hardware.as_ref()).map_or(0.0, |h| h.capacity_gflops)
        };
        offered(fast.peer_id()) > 4.0 * offered(slow.peer_id())
    })
    .await;

    let timed = |spec: JobSpec| {
        let client = &client;
        async move {
            let started = Instant::now();
            let id = client.submit_job(&spec).await.unwrap().to_string();
            let record = finished(client, &id, Duration::from_secs(600)).await;
            (started.elapsed(), record)
        }
    };
    // Members heavy enough (seconds each) that training, not overhead, sets the wall time.
    let heavy = |name: &str, placement| {
        let mut spec = bagging(name, 8, 600, placement);
        spec.spec.learner = Learner::Mlp { hidden: vec![128] };
        spec
    };
    let (by_capacity, record) = timed(heavy("by-capacity", Placement::Capacity)).await;
    let on_fast = record.tasks.iter().filter(|t| t.peer.as_deref() == Some(fast.peer_id())).count();
    assert!(on_fast >= 5, "the fast node trained {on_fast} of 8");
    let (evenly, record) = timed(heavy("evenly", Placement::Uniform)).await;
    let on_slow = record.tasks.iter().filter(|t| t.peer.as_deref() == Some(slow.peer_id())).count();
    assert!(on_slow >= 3, "uniform placement gave the slow node {on_slow}");
    eprintln!("bagging of 8: {by_capacity:?} by capacity, {evenly:?} evenly");
    assert!(by_capacity < evenly, "capacity placement took {by_capacity:?}, uniform {evenly:?}");
}

/// A node whose only compute slot is taken answers "busy" at once, and the
/// work goes to another node while it is still busy.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_node_refuses_training_at_once_and_the_job_completes_elsewhere() {
    let mut cluster = Cluster::new();
    // The full node is the faster one (five times): every task goes to it
    // first. The other has two slots, so the short job's own shard work
    // (summaries, pipeline fitting, on the same pool) never makes it busy
    // when the task is offered; with both nodes busy the task would rightly
    // queue at the faster one.
    let (full, other, client) = two_nodes(&mut cluster, "slots = 1\nqueue = 0", "slots = 2\nthrottle = 0.1").await;
    crate::support::eventually(Duration::from_secs(60), "capacities reflect the throttle", || async {
        let peers = client.peers().await.unwrap_or_default();
        let offered = |id: &str| {
            peers.iter().find(|p| p.peer_id == id).and_then(|p| p.hardware.as_ref()).map_or(0.0, |h| h.capacity_gflops)
        };
        offered(full.peer_id()) > 2.0 * offered(other.peer_id())
    })
    .await;
    // A minute of work, so the full node is still busy when the short job's
    // tasks come (without the patience, training stopped once its loss
    // settled, and on a quiet machine the slot was free again first).
    // Cancelled at the end.
    let long = client.submit_job(&long_job()).await.unwrap().to_string();
    let full_client = Client::new([full.http_url()]).unwrap();
    crate::support::eventually(Duration::from_secs(60), "the long job trains on the full node", || {
        training_on(&full_client)
    })
    .await;
    // The short job's one task goes to the full node first (it is five times
    // as fast), which refuses: it trains on the other node (had the full
    // node been free, it would have taken it). If the full node drives the
    // short job, the job's own evaluation waits for the slot: it still ends.
    let short = client.submit_job(&bagging("short", 1, 20, Placement::Capacity)).await.unwrap().to_string();
    let record = finished(&client, &short, Duration::from_secs(300)).await;
    assert!(
        record.tasks.iter().all(|t| t.peer.as_deref() == Some(other.peer_id())),
        "a task went to the full node: {:?}",
        record.tasks.iter().map(|t| t.peer.clone()).collect::<Vec<_>>()
    );
    let _ = client.cancel_job(&long).await;
}

/// A long job holding a node's one general compute slot: the node still
/// answers predictions, on the slot it keeps for serving, while the job
/// trains (before, each waited for the task to end and missed its deadline).
#[tokio::test(flavor = "multi_thread")]
async fn predictions_are_answered_while_a_long_job_holds_every_general_slot() {
    let mut cluster = Cluster::new();
    let node = node_with(&mut cluster, "slots = 1", None);
    let client = Client::new([node.http_url()]).unwrap();
    digits(&client).await;
    let mut served = bagging("served", 1, 20, Placement::Capacity);
    served.ensemble = EnsembleSpec::Single;
    let served = client.submit_job(&served).await.unwrap().to_string();
    finished(&client, &served, Duration::from_secs(120)).await;

    let long = client.submit_job(&long_job()).await.unwrap().to_string();
    let training = || training_on(&client);
    crate::support::eventually(Duration::from_secs(60), "the long job takes the slot", training).await;
    let row = serde_json::json!(vec![0.0; 64]);
    for i in 0..20 {
        let answer = client.predict("served", std::slice::from_ref(&row)).await;
        assert!(answer.is_ok(), "prediction {i} while training: {answer:?}");
    }
    assert!(training().await, "the long job held the slot throughout");
    let _ = client.cancel_job(&long).await;
}

/// Issue 11: a job record names the backend that trained each task. One
/// node may use any GPU adapter (`compute.gpu = "always"`: lavapipe where
/// there is no GPU), the other has GPUs switched off; the CLI shows it too.
#[tokio::test(flavor = "multi_thread")]
async fn each_task_names_the_backend_that_trained_it() {
    let mut cluster = Cluster::new();
    let gpu = {
        let mut options = cluster.options();
        let config = options.data_dir.with_extension("toml");
        let toml = FAST_CONFIG.replace("probe_gpus = false", "probe_gpus = true");
        std::fs::write(&config, format!("{toml}\n[compute]\ngpu = \"always\"\n")).unwrap();
        options.config = Some(config);
        cluster.start(options)
    };
    let cpu = node_with(&mut cluster, "gpu = \"off\"", Some(&gpu));
    let ids = [gpu.peer_id().to_owned(), cpu.peer_id().to_owned()];
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    crate::support::eventually(Duration::from_secs(30), "the two nodes meet", || async {
        lists_up_with_hardware(&gpu, &ids).await && lists_up_with_hardware(&cpu, &ids).await
    })
    .await;
    let client = Client::new([cpu.http_url()]).unwrap();
    digits(&client).await;
    shards_settled(&client, "digits", Duration::from_secs(30)).await;

    let peers = client.peers().await.unwrap();
    let adapters = peers.iter().find(|p| p.peer_id == gpu.peer_id()).and_then(|p| p.hardware.clone()).unwrap().gpus;
    // Each adapter's GEMM was measured at start.
    for adapter in &adapters {
        assert!(adapter.gflops > 0.0, "{} advertised unmeasured", adapter.name);
    }
    if adapters.is_empty() {
        assert!(
            !std::env::var("MASS_REQUIRE_GPU_TESTS").is_ok_and(|v| v == "1"),
            "MASS_REQUIRE_GPU_TESTS=1 but the node found no GPU adapter"
        );
        eprintln!("no GPU adapter: the GPU node trains on its CPU");
    }

    let mut job = bagging("backends", 4, 3, Placement::Uniform);
    job.spec.learner = Learner::Mlp { hidden: vec![32] };
    let id = client.submit_job(&job).await.unwrap().to_string();
    let record = finished(&client, &id, Duration::from_secs(300)).await;
    let on = |peer: &str| record.tasks.iter().filter(|t| t.peer.as_deref() == Some(peer)).collect::<Vec<_>>();
    let (on_gpu, on_cpu) = (on(gpu.peer_id()), on(cpu.peer_id()));
    assert!(!on_gpu.is_empty() && !on_cpu.is_empty(), "uniform placement used both nodes: {:?}", record.tasks);
    for task in on_cpu {
        assert_eq!(task.backend, "cpu", "the node without GPUs");
    }
    for task in on_gpu {
        if adapters.is_empty() {
            assert_eq!(task.backend, "cpu");
        } else {
            assert!(task.backend.starts_with("wgpu:"), "the GPU node trained on {:?}", task.backend);
        }
    }

    let (ok, stdout, stderr) = crate::support::mass(&["jobs", "show", &id, "--node", cpu.http_url()]);
    assert!(ok, "{stderr}");
    let expected = if adapters.is_empty() { "(cpu)" } else { "(wgpu:" };
    assert!(stdout.contains(expected) && stdout.contains("(cpu)"), "{stdout}");
}
