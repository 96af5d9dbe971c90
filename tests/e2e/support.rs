//! Test harness: a temporary folder of nodes, fast liveness settings, polling.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use mass_protocol::jobs::{JobRecord, JobState};
use mass_sdk::{
    Client,
    api::{PeerState, PeerView},
    local::{LocalNode, NodeOptions},
};

pub const MASS: &str = env!("CARGO_BIN_EXE_mass");

/// Liveness fast enough for tests, hardware measurement short.
pub const FAST_CONFIG: &str = r#"
[membership]
advert_interval = "250ms"
down_after = "1500ms"
forget_after = "60s"

[net]
bootstrap_timeout = "3s"
ping_interval = "500ms"

[hardware]
gemm_size = 128
gemm_budget = "30ms"
probe_gpus = false

[storage]
repair_interval = "500ms"
"#;

/// A plain reqwest client for raw HTTP calls (the SDK's own clients set up
/// TLS themselves).
pub fn http() -> reqwest::Client {
    mass_sdk::client::ensure_crypto_provider();
    reqwest::Client::new()
}

/// A folder holding the data dirs and logs of the nodes of one test.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    config: PathBuf,
    count: usize,
}

impl Cluster {
    pub fn new() -> Self {
        Self::with_config(FAST_CONFIG)
    }

    pub fn with_config(toml: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("mass-e2e-").tempdir().unwrap();
        let config = dir.path().join("node.toml");
        std::fs::write(&config, toml).unwrap();
        Self { dir, config, count: 0 }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Options for the next node (its own data dir and log file).
    pub fn options(&mut self) -> NodeOptions {
        let name = format!("node{}", self.count);
        self.count += 1;
        self.options_for(&name)
    }

    /// Options for the node named `name` (reuse a name to restart on its data dir).
    pub fn options_for(&self, name: &str) -> NodeOptions {
        let mut options = NodeOptions::new(MASS, self.path().join(name));
        options.config = Some(self.config.clone());
        options.log_file = Some(self.path().join(format!("{name}.log")));
        options
    }

    pub fn spawn(&mut self, bootstrap: &[&LocalNode]) -> LocalNode {
        let mut options = self.options();
        options.bootstrap = bootstrap.iter().map(|n| n.listen_addr().to_owned()).collect();
        self.start(options)
    }

    pub fn start(&self, options: NodeOptions) -> LocalNode {
        let log = options.log_file.clone();
        LocalNode::spawn(options, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("node failed to start: {e}\n{}", log.map(|l| read_log(&l)).unwrap_or_default()))
    }

    pub fn log_of(&self, name: &str) -> String {
        read_log(&self.path().join(format!("{name}.log")))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..self.count {
                eprintln!("----- log of node{i} -----\n{}", self.log_of(&format!("node{i}")));
            }
        }
    }
}

pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log at {}: {e})", path.display()))
}

pub async fn peers(node: &LocalNode) -> Vec<PeerView> {
    Client::new([node.http_url()]).unwrap().peers().await.unwrap_or_default()
}

/// State of `peer_id` in `node`'s table, if listed.
pub async fn state_of(node: &LocalNode, peer_id: &str) -> Option<PeerState> {
    peers(node).await.into_iter().find(|p| p.peer_id == peer_id).map(|p| p.state)
}

/// True when `node` lists every id in `expected` as up, with hardware.
pub async fn lists_up_with_hardware(node: &LocalNode, expected: &[&str]) -> bool {
    let table = peers(node).await;
    expected.iter().all(|id| {
        table.iter().any(|p| p.peer_id == *id && p.state == PeerState::Up && p.hardware.is_some() && p.load.is_some())
    })
}

/// Polls `condition` every 100 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if condition().await {
            return start.elapsed();
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Blob ids `node` stores locally.
pub async fn blobs_on(node: &LocalNode) -> Vec<String> {
    Client::new([node.http_url()])
        .unwrap()
        .list_blobs()
        .await
        .map(|blobs| blobs.into_iter().map(|b| b.id.to_string()).collect())
        .unwrap_or_default()
}

/// A counter from a node's /metrics, 0 when absent.
pub async fn metric(node: &LocalNode, name: &str) -> f64 {
    let text =
        crate::support::http().get(format!("{}/metrics", node.http_url())).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// Runs `mass` with arguments and returns (success, stdout, stderr).
pub fn mass(args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(MASS).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `mass` with arguments and extra environment variables; returns
/// (exit code, stdout, stderr). The code is `None` when a signal ended it.
pub fn mass_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(MASS).args(args).envs(env.iter().copied()).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Starts `n` nodes, the others joining through the first, and waits until
/// every node lists every other as up with hardware.
pub async fn mesh(cluster: &mut Cluster, n: usize) -> Vec<LocalNode> {
    let first = cluster.spawn(&[]);
    let mut nodes = vec![first];
    for _ in 1..n {
        let node = cluster.spawn(&[&nodes[0]]);
        nodes.push(node);
    }
    all_list_each_other(&nodes.iter().collect::<Vec<_>>(), Duration::from_secs(10), "mesh forms").await;
    nodes
}

/// Waits until every one of `nodes` lists every one up with hardware.
pub async fn all_list_each_other(nodes: &[&LocalNode], within: Duration, what: &str) -> Duration {
    let ids: Vec<&str> = nodes.iter().map(|n| n.peer_id()).collect();
    eventually(within, what, || async {
        for node in nodes {
            if !lists_up_with_hardware(node, &ids).await {
                return false;
            }
        }
        true
    })
    .await
}

/// A file of `../shared/datasets`. The crate's directory is read at run time
/// (cargo sets it for tests): a test binary reused from another checkout of
/// the same target dir must not look in that checkout.
pub fn shared_dataset(name: &str) -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    root.join("../../shared/datasets").join(name)
}

/// Waits until every shard of dataset `name` has exactly k = 2 holders (the
/// ingesting node has handed surplus copies to their homes).
pub async fn shards_settled(client: &Client, name: &str, timeout: Duration) -> Duration {
    eventually(timeout, "shards settle on their homes", || async {
        client.dataset(name).await.map(|v| v.shard_holders.iter().all(|h| h.len() == 2)).unwrap_or(false)
    })
    .await
}

/// Reads a record (`read`; failed reads are retried) until `done` says
/// so, within `within`.
pub async fn poll_record<T, E, F>(
    within: Duration,
    what: &str,
    mut read: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Ok(record) = read().await
            && done(&record)
        {
            return record;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls a job until `done` says so, within `within`.
pub async fn poll(
    client: &Client,
    id: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&JobRecord) -> bool,
) -> JobRecord {
    poll_record(within, what, || client.job(id), done).await
}

/// Waits for a job to end and checks that it completed.
pub async fn finished(client: &Client, id: &str, within: Duration) -> JobRecord {
    let record =
        poll(client, id, within, "the job finishes", |r| matches!(r.state, JobState::Completed | JobState::Failed(_)))
            .await;
    assert_eq!(record.state, JobState::Completed, "{record:?}");
    record
}

/// The Python that tests/python runs in: `MASS_PYTHON`, else the venv
/// `scripts/python-env.sh` makes (numpy, safetensors, onnxruntime, selenium).
/// Fails (never skips) without one.
pub fn python() -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/python-env.sh");
    let output = std::process::Command::new("bash").arg(script).output().unwrap();
    assert!(
        output.status.success(),
        "no Python with the packages tests/python needs: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Runs `ip ARGS` (iproute2, for the tests that make network namespaces);
/// the error names the command and what it printed.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let output = std::process::Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}
