//! Quickstart: a local Mass mesh of three nodes doing real work.
//!
//! 1. Starts three `mass` processes on 127.0.0.1, the second and third joining
//!    through the first, and waits until every node lists every other as up
//!    with its measured hardware; prints the peer tables.
//! 2. Ingests the handwritten-digits data set shipped in `examples/data`
//!    through the first node: validated, split, sharded, and replicated to
//!    each shard's two homes.
//! 3. Fits a feature pipeline through the third node, which computes it from
//!    statistics made by the nodes that hold the shards.
//! 4. Trains a bagged ensemble of small MLPs, each where its shard lives, and
//!    prints its accuracy on the test rows.
//! 5. Predicts through the node that does not hold the model (it forwards
//!    to a replica), checks the answers equal a replica's own, prints
//!    single-row latency, and runs the model over the whole dataset where
//!    the shards live.
//! 6. Stops the mesh.
//!
//! Run it with `bash scripts/quickstart.sh` (which builds `mass` first).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mass_protocol::{
    features::PipelineSpec,
    jobs::{EnsembleSpec, JobSpec, Learner, ModelSpec},
};
use mass_sdk::{
    Client, IngestRequest,
    api::{PeerState, PeerView},
    local::{LocalNode, NodeOptions, find_mass_binary},
};

const NODES: usize = 3;
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let binary = find_mass_binary()?;
    let work = tempfile_dir()?;
    println!("Starting a mesh of {NODES} nodes on 127.0.0.1 (data under {})", work.display());

    let started = Instant::now();
    let mut nodes: Vec<LocalNode> = Vec::new();
    for i in 0..NODES {
        let mut options = NodeOptions::new(&binary, work.join(format!("node{i}")));
        options.log_file = Some(work.join(format!("node{i}.log")));
        if let Some(first) = nodes.first() {
            options.bootstrap.push(first.listen_addr().to_owned());
        }
        let node = LocalNode::spawn(options, Duration::from_secs(60)).with_context(|| format!("starting node {i}"))?;
        println!("  node {i}: peer {} | HTTP {} | libp2p {}", node.peer_id(), node.http_url(), node.listen_addr());
        nodes.push(node);
    }

    let clients = nodes.iter().map(|n| Client::new([n.http_url()])).collect::<Result<Vec<_>, _>>()?;
    let deadline = Instant::now() + FORM_TIMEOUT;
    loop {
        let mut formed = true;
        for client in &clients {
            formed &= is_formed(&client.peers().await?);
        }
        if formed {
            break;
        }
        if Instant::now() > deadline {
            bail!("the mesh did not form within {FORM_TIMEOUT:?}; node logs are in {}", work.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("Mesh formed in {:.1} s: every node sees {NODES} nodes up.\n", started.elapsed().as_secs_f64());

    for (i, node) in nodes.iter().enumerate() {
        println!("$ mass peers --node {}    # node {i}", node.http_url());
        let status = std::process::Command::new(&binary).args(["peers", "--node", node.http_url()]).status()?;
        if !status.success() {
            bail!("mass peers failed for node {i}");
        }
        println!();
    }

    // From the repository root (where scripts/quickstart.sh runs it), else
    // where the example was built.
    let data = [
        std::path::PathBuf::from("examples/data/digits.csv.gz"),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv.gz"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .context("examples/data/digits.csv.gz not found; run from the repository root")?;
    let request =
        IngestRequest { name: "digits".into(), label: "label".into(), shard_rows: Some(300), ..Default::default() };
    let started = Instant::now();
    let view = clients[0].ingest_csv(&data, &request).await?;
    let m = &view.manifest;
    println!(
        "Ingested {} through node 0 in {:.2} s: {} rows, {} columns, {} shards (train {}, test {}).",
        data.display(),
        started.elapsed().as_secs_f64(),
        m.rows,
        m.schema.columns.len(),
        m.shards.len(),
        m.split_rows[0],
        m.split_rows[2]
    );
    let deadline = Instant::now() + FORM_TIMEOUT;
    // The name reaches node 2 by gossip; the shards reach their homes by replication.
    while !clients[2].dataset("digits").await.is_ok_and(|v| v.shard_holders.iter().all(|h| h.len() == 2)) {
        if Instant::now() > deadline {
            bail!("shards did not reach their homes within {FORM_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("\n$ mass data show digits --node {}", nodes[2].http_url());
    let status =
        std::process::Command::new(&binary).args(["data", "show", "digits", "--node", nodes[2].http_url()]).status()?;
    if !status.success() {
        bail!("mass data show failed");
    }

    let started = Instant::now();
    let fitted = clients[2].fit_pipeline("digits", "standard", PipelineSpec::default()).await?;
    let names: Vec<String> = nodes.iter().map(|n| n.peer_id().to_owned()).collect();
    let by_node: Vec<usize> =
        (0..nodes.len()).map(|i| fitted.summarized_by.iter().filter(|w| **w == names[i]).count()).collect();
    println!(
        "\nFitted pipeline/digits/standard through node 2 in {:.2} s: {} features, {} classes; shard statistics computed where the shards live (node 0: {}, node 1: {}, node 2: {}).",
        started.elapsed().as_secs_f64(),
        fitted.pipeline.features,
        fitted.pipeline.classes.len(),
        by_node[0],
        by_node[1],
        by_node[2]
    );

    // Train a bagged ensemble through node 1: the job runs on the node that
    // ranks first for it, each sub-model on a node holding its shard.
    let started = Instant::now();
    let job = JobSpec {
        model: "digits".into(),
        dataset: "digits".into(),
        pipeline: PipelineSpec::default(),
        spec: ModelSpec {
            learner: Learner::Mlp { hidden: vec![64] },
            epochs: Some(40),
            batch_size: 32,
            learning_rate: 1e-2,
            l2: Some(1e-4),
            ..ModelSpec::default()
        },
        ensemble: EnsembleSpec::Bagging { members: 6 },
        seed: 1,
        task: None,
        placement: Default::default(),
        trial: None,
        cv: None,
    };
    let id = clients[1].submit_job(&job).await?.to_string();
    let record = loop {
        let record = clients[1].job(&id).await?;
        if record.state.is_over() {
            break record;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("training did not finish within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let Some(evaluation) = &record.evaluation else { bail!("training ended {:?}", record.state) };
    let trained_on: std::collections::BTreeSet<&String> = record.tasks.iter().filter_map(|t| t.peer.as_ref()).collect();
    println!(
        "Trained model/digits (bagging of {} MLPs on {} node(s), driven by {}) in {:.1} s: test accuracy {:.4} on {} rows.",
        record.tasks.len(),
        trained_on.len(),
        record.drivers.join(", then "),
        started.elapsed().as_secs_f64(),
        evaluation.score(),
        evaluation.rows
    );

    predict_through_a_non_holder(&nodes, &data, &binary).await?;

    // The whole mesh goes: nobody is left to hand anything to, so no drain.
    for node in &mut nodes {
        node.stop_now(Duration::from_secs(10));
    }
    std::fs::remove_dir_all(&work).ok();
    println!("Mesh stopped.");
    Ok(())
}

/// Predictions from the node that does not hold model/digits, compared with
/// a replica's own answers, with latency; then a batch prediction.
async fn predict_through_a_non_holder(
    nodes: &[LocalNode],
    data: &std::path::Path,
    binary: &std::path::Path,
) -> anyhow::Result<()> {
    use std::io::BufRead;
    let view = Client::new([nodes[0].http_url()])?.model("digits").await?;
    let holds = |n: &&LocalNode| view.replicas.iter().any(|r| r == n.peer_id());
    let replica = nodes.iter().find(holds).context("no replica of model/digits")?;
    let entry = nodes.iter().find(|n| !holds(n)).context("every node holds the model")?;
    let rows: Vec<serde_json::Value> =
        std::io::BufReader::new(flate2::read::GzDecoder::new(std::fs::File::open(data)?))
            .lines()
            .skip(1)
            .take(200)
            .map(|line| {
                let line = line?;
                let mut cells: Vec<f64> = line.split(',').map(|c| c.parse().unwrap_or(f64::NAN)).collect();
                cells.pop(); // the label
                Ok(serde_json::json!(cells))
            })
            .collect::<std::io::Result<_>>()?;
    let (entry_client, replica_client) = (Client::new([entry.http_url()])?, Client::new([replica.http_url()])?);
    // The replica loads the model within a second of its publication.
    let deadline = Instant::now() + FORM_TIMEOUT;
    while !replica_client.predict("digits", &rows[..1]).await.is_ok_and(|p| p.served_by == replica.peer_id()) {
        if Instant::now() > deadline {
            bail!("the replica did not load model/digits within {FORM_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut latencies = Vec::new();
    let mut same = 0;
    let mut served_by = std::collections::BTreeSet::new();
    for row in &rows {
        let started = Instant::now();
        let forwarded = entry_client.predict("digits", std::slice::from_ref(row)).await?;
        latencies.push(started.elapsed());
        let local = replica_client.predict("digits", std::slice::from_ref(row)).await?;
        same += usize::from(forwarded.predictions == local.predictions);
        served_by.insert(forwarded.served_by);
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "\nPredicted {} single rows through node {} (which does not hold the model; served by {}): {same}/{} equal the replica's own answers; latency p50 {:.2} ms, p99 {:.2} ms.",
        rows.len(),
        nodes.iter().position(|n| n.peer_id() == entry.peer_id()).unwrap_or(0),
        served_by.into_iter().collect::<Vec<_>>().join(", "),
        rows.len(),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() * 99 / 100]),
    );
    if same != rows.len() {
        bail!("forwarded predictions differ from the replica's");
    }
    println!("$ mass predict digits --rows '[0,0,5,13,...]' --node {}", entry.http_url());
    let status = std::process::Command::new(binary)
        .args(["predict", "digits", "--rows", &rows[0].to_string(), "--node", entry.http_url()])
        .status()?;
    if !status.success() {
        bail!("mass predict failed");
    }
    let started = Instant::now();
    let batch = entry_client.batch_predict("digits", "digits").await?;
    let test = batch.test.context("no test rows scored")?;
    println!(
        "Batch prediction of all {} rows where the shards live in {:.2} s: test accuracy {:.4}, log-loss {:.4}; CSV stored as blob {}.",
        batch.rows,
        started.elapsed().as_secs_f64(),
        test.score(),
        test.log_loss.unwrap_or(f64::NAN),
        batch.blob
    );
    Ok(())
}

fn is_formed(peers: &[PeerView]) -> bool {
    peers.len() == NODES && peers.iter().all(|p| p.state == PeerState::Up && p.hardware.is_some())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mass-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
