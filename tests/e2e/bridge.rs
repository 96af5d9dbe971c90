//! Accelerator bridges (issue 11): a mesh where one node declares the
//! reference bridge, a real `mass-bridge` process on 127.0.0.1. Predictions
//! of a model placed there equal the CPU's within the fixed-point
//! tolerance; killing the bridge, bringing it back and stalling it under a
//! stream of requests fails none of them. A node whose bridge is too coarse
//! for the model refuses it, saying by how much it drifts.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use mass_protocol::{
    BridgeInfo, BridgeStatus,
    jobs::{EnsembleSpec, JobSpec, Learner, ModelSpec},
};
use mass_sdk::{Client, IngestRequest, local::LocalNode};
use serde_json::Value;

use crate::{
    serving::{as_rows, test_rows},
    support::{Cluster, FAST_CONFIG, eventually, finished, lists_up_with_hardware, peers, read_log, shared_dataset},
};

pub const BRIDGE: &str = env!("CARGO_BIN_EXE_mass-bridge");
/// The bridge's largest difference from the float model that the node
/// accepts (probabilities), and so the tolerance predictions are held to.
const MAX_DRIFT: f64 = 0.05;
/// Longest a batch waits for the bridge before the CPU runs it.
const BRIDGE_TIMEOUT: &str = "300ms";

/// A `mass-bridge` process, killed when dropped.
pub struct BridgeProcess {
    child: Option<Child>,
    pub url: String,
    log: PathBuf,
}

impl BridgeProcess {
    /// Starts a bridge listening on `listen` (port 0: the OS picks) and
    /// waits until it says where it listens.
    pub fn start(dir: &Path, name: &str, listen: &str, args: &[&str]) -> Self {
        let ready = dir.join(format!("{name}.ready.json"));
        let _ = std::fs::remove_file(&ready);
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(BRIDGE)
            .args(["--listen", listen, "--ready-file"])
            .arg(&ready)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        let mut process = Self { child: Some(child), url: String::new(), log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(bytes) = std::fs::read(&ready)
                && let Ok(value) = serde_json::from_slice::<Value>(&bytes)
            {
                process.url = value["url"].as_str().unwrap().to_owned();
                return process;
            }
            let exited = process.child.as_mut().unwrap().try_wait().unwrap();
            assert!(exited.is_none(), "mass-bridge exited: {exited:?}\n{}", read_log(&process.log));
            assert!(Instant::now() < deadline, "mass-bridge did not start within 30 s\n{}", read_log(&process.log));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// host:port
    pub fn address(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// SIGKILL, as a crashed host program.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Rows the bridge ran for `model` (OIP statistics), 0 when it does not hold it.
    pub async fn rows_run(&self, model: &str) -> u64 {
        let Ok(response) = crate::support::http().get(format!("{}/v2/models/{model}/stats", self.url)).send().await
        else {
            return 0;
        };
        let stats: Value = response.json().await.unwrap_or_default();
        stats["model_stats"][0]["inference_count"].as_u64().unwrap_or(0)
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("----- log of {} -----\n{}", self.log.display(), read_log(&self.log));
        }
    }
}

fn config_with_bridge(name: &str, address: &str) -> String {
    format!(
        "{FAST_CONFIG}\n[serving]\nreplicas = 3\nhot_after = 0\n\n[[hardware.bridges]]\nname = \"{name}\"\nkind = \"fpga\"\n\
         endpoint = \"tcp://{address}\"\nroute = \"always\"\ntimeout = \"{BRIDGE_TIMEOUT}\"\nmax_drift = {MAX_DRIFT}\n"
    )
}

/// The bridges `node` advertises, as its own peer table lists them.
async fn bridges_of(node: &LocalNode) -> Vec<BridgeInfo> {
    peers(node)
        .await
        .into_iter()
        .find(|p| p.peer_id == node.peer_id())
        .and_then(|p| p.hardware)
        .map(|h| h.bridges)
        .unwrap_or_default()
}

async fn bridge_is(node: &LocalNode, status: BridgeStatus, models: u32) -> bool {
    bridges_of(node).await.first().is_some_and(|b| b.status == status && b.models == models)
}

/// The bridge's name for member 0 of a model version (see `bridge::plan`).
fn member_name(manifest: &mass_protocol::ContentId) -> String {
    format!("mass-{}-0", &manifest.to_string()[..16])
}

/// Sends `total` one-row predictions, `concurrency` at a time; (failures, slowest).
async fn stream(client: Arc<Client>, row: Value, total: usize, concurrency: usize) -> (Vec<String>, Duration) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, next, row) = (client.clone(), next.clone(), row.clone());
        workers.push(tokio::spawn(async move {
            let (mut failures, mut slowest) = (Vec::new(), Duration::ZERO);
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let started = Instant::now();
                if let Err(e) = client.predict("digits", std::slice::from_ref(&row)).await {
                    failures.push(e.to_string());
                }
                slowest = slowest.max(started.elapsed());
            }
            (failures, slowest)
        }));
    }
    let mut all = (Vec::new(), Duration::ZERO);
    for worker in workers {
        let (failures, slowest) = worker.await.unwrap();
        all.0.extend(failures);
        all.1 = all.1.max(slowest);
    }
    all
}

async fn train_digits_mlp(client: &Client) {
    let spec = JobSpec {
        model: "digits".into(),
        dataset: "digits".into(),
        pipeline: Default::default(),
        spec: ModelSpec {
            learner: Learner::Mlp { hidden: vec![32] },
            epochs: Some(20),
            batch_size: 32,
            learning_rate: 1e-2,
            l2: Some(1e-4),
            ..ModelSpec::default()
        },
        ensemble: EnsembleSpec::Single,
        seed: 1,
        task: None,
        placement: Default::default(),
        trial: None,
        cv: None,
    };
    let id = client.submit_job(&spec).await.unwrap().to_string();
    finished(client, &id, Duration::from_secs(300)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bridge_serves_within_the_fixed_point_tolerance_and_its_death_or_stall_fails_no_request() {
    let mut cluster = Cluster::with_config(&format!("{FAST_CONFIG}\n[serving]\nreplicas = 3\nhot_after = 0\n"));
    let dir = cluster.path().to_owned();
    let mut fine = BridgeProcess::start(&dir, "fine", "127.0.0.1:0", &["--precision", "fixed<16,6>"]);
    let coarse = BridgeProcess::start(&dir, "coarse", "127.0.0.1:0", &["--precision", "fixed<8,3>"]);

    // node0 declares the fine bridge, node2 the coarse one, node1 none.
    let start = |cluster: &mut Cluster, config: Option<String>, bootstrap: &[&LocalNode]| {
        let mut options = cluster.options();
        if let Some(toml) = config {
            let path = dir.join(format!("{}.toml", options.data_dir.file_name().unwrap().to_string_lossy()));
            std::fs::write(&path, toml).unwrap();
            options.config = Some(path);
        }
        options.bootstrap = bootstrap.iter().map(|n| n.listen_addr().to_owned()).collect();
        cluster.start(options)
    };
    let node0 = start(&mut cluster, Some(config_with_bridge("fpga0", fine.address())), &[]);
    let node1 = start(&mut cluster, None, &[&node0]);
    let node2 = start(&mut cluster, Some(config_with_bridge("coarse", coarse.address())), &[&node0]);
    let nodes = [&node0, &node1, &node2];
    let ids: Vec<&str> = nodes.iter().map(|n| n.peer_id()).collect();
    eventually(Duration::from_secs(20), "mesh forms", || async {
        for node in nodes {
            if !lists_up_with_hardware(node, &ids).await {
                return false;
            }
        }
        true
    })
    .await;
    // Probed at start: up, with a measured rate, before any model exists.
    eventually(Duration::from_secs(30), "node0 advertises its bridge as up", || bridge_is(&node0, BridgeStatus::Up, 0))
        .await;
    let advertised = bridges_of(&node0).await.remove(0);
    assert_eq!((advertised.name.as_str(), advertised.precision.as_str()), ("fpga0", "fixed<16,6>"));
    assert!(advertised.rows_per_s > 0.0, "{advertised:?}");
    let seen_by_peer = peers(&node1).await.into_iter().find(|p| p.peer_id == node0.peer_id()).unwrap();
    assert_eq!(seen_by_peer.hardware.unwrap().bridges[0].status, BridgeStatus::Up, "the advert reached node1");

    let request = IngestRequest {
        name: "digits".into(),
        label: "label".into(),
        shard_rows: Some(300),
        test_rows: Some(shared_dataset("digits.test_rows.txt")),
        ..Default::default()
    };
    let client = Client::new([node1.http_url()]).unwrap();
    client.ingest_csv(&shared_dataset("digits.csv"), &request).await.unwrap();
    train_digits_mlp(&client).await;

    // Every node serves the model (replicas = 3); node0 runs it on its bridge.
    eventually(Duration::from_secs(60), "the model is placed on node0's bridge", || {
        bridge_is(&node0, BridgeStatus::Up, 1)
    })
    .await;
    let rows = as_rows(&test_rows("digits.csv", "digits.test_rows.txt", 200));
    let on_cpu = client.predict("digits", &rows).await.unwrap();
    let name = member_name(&on_cpu.manifest);
    let before = fine.rows_run(&name).await;
    // In requests of 50 rows: a batch the bridge could not finish well
    // within its timeout would go to the CPU.
    let mut on_bridge = Vec::new();
    for chunk in rows.chunks(50) {
        let answer = Client::new([node0.http_url()]).unwrap().predict("digits", chunk).await.unwrap();
        assert_eq!(answer.served_by, node0.peer_id());
        on_bridge.push(answer);
    }
    assert_eq!(on_cpu.served_by, node1.peer_id());
    assert_eq!(fine.rows_run(&name).await - before, 200, "the bridge ran every row");
    let probabilities = on_bridge.iter().flat_map(|p| p.probabilities.iter().flatten());
    let mut largest = 0.0f64;
    for (a, b) in probabilities.zip(on_cpu.probabilities.iter().flatten()) {
        largest = largest.max(f64::from((a - b).abs()));
    }
    let predictions = on_bridge.iter().flat_map(|p| &p.predictions);
    let same = predictions.zip(&on_cpu.predictions).filter(|(a, b)| a == b).count();
    eprintln!("bridge vs CPU on 200 test rows: largest difference {largest:.5}, {same} of 200 classes equal");
    assert!(largest > 0.0, "fixed point gives other numbers than float");
    assert!(largest <= MAX_DRIFT, "the bridge drifts {largest} from the CPU");
    assert!(same >= 196, "{same} of 200 classes equal");

    // The coarse bridge refused the model, saying by how much, and node2 answers on its CPU.
    eventually(Duration::from_secs(30), "node2 refuses the model for its coarse bridge", || async {
        cluster.log_of("node2").contains("is refused for bridge 'coarse': in fixed<8,3> its outputs drift up to")
    })
    .await;
    assert!(bridge_is(&node2, BridgeStatus::Up, 0).await);
    assert_eq!(coarse.rows_run(&name).await, 0, "unloaded from the coarse bridge");
    let node2_answer = Client::new([node2.http_url()]).unwrap().predict("digits", &rows).await.unwrap();
    assert_eq!(node2_answer.probabilities, on_cpu.probabilities);

    // Killed under load: every request is answered (by the CPU once the bridge is gone).
    let entry = Arc::new(Client::new([node0.http_url()]).unwrap());
    let row = rows[0].clone();
    let total = 3_000;
    let before = fine.rows_run(&name).await;
    let load = tokio::spawn(stream(entry.clone(), row.clone(), total, 4));
    eventually(Duration::from_secs(30), "the stream reaches the bridge", || async {
        fine.rows_run(&name).await >= before + 100
    })
    .await;
    let by_bridge = fine.rows_run(&name).await - before;
    fine.kill();
    let (failures, slowest) = load.await.unwrap();
    eprintln!("{total} requests, the bridge killed after {by_bridge}: {} failed, slowest {slowest:?}", failures.len());
    assert!(by_bridge < total as u64 - 500, "the stream was nearly over when the bridge died");
    assert!(failures.is_empty(), "requests failed when the bridge died: {failures:?}");
    assert!(slowest <= Duration::from_millis(2_100), "a request took {slowest:?}, past the deadline");
    eventually(Duration::from_secs(10), "node0 advertises its bridge as down", || async {
        bridges_of(&node0).await.first().is_some_and(|b| b.status == BridgeStatus::Down)
    })
    .await;

    // Back on the same port (a restarted host program): re-probed, the
    // model loaded again, batches there again. This one stalls after 30
    // inferences: requests fall back within their deadline.
    let revived =
        BridgeProcess::start(&dir, "revived", fine.address(), &["--precision", "fixed<16,6>", "--stall-after", "30"]);
    eventually(Duration::from_secs(30), "node0 uses the restarted bridge", || async {
        entry.predict("digits", std::slice::from_ref(&row)).await.unwrap();
        revived.rows_run(&name).await > 0
    })
    .await;
    let (failures, slowest) = stream(entry.clone(), row.clone(), 400, 4).await;
    eprintln!("400 requests, the bridge stalled: {} failed, slowest {slowest:?}", failures.len());
    assert!(failures.is_empty(), "requests failed when the bridge stalled: {failures:?}");
    assert!(slowest <= Duration::from_millis(2_100), "a request took {slowest:?}, past the deadline");
    // Its adverts say so within an advert interval or two.
    eventually(Duration::from_secs(5), "node0 advertises the stalled bridge as down", || async {
        bridges_of(&node0).await.first().is_some_and(|b| b.status == BridgeStatus::Down)
    })
    .await;
    let log0 = read_log(&dir.join("node0.log"));
    assert!(log0.contains("bridge taken out of use"), "{log0}");
}
