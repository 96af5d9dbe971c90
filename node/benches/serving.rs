//! Prediction serving over HTTP, printed as a Markdown table for BENCHMARKS.md.
//!
//! `cargo bench -p mass-node --bench serving` (needs `wrk` on the PATH; the
//! baselines' setup installs it).
//!
//! A three-node mesh trains softmax regression on MNIST, then `wrk` (1
//! thread, 1 and 8 connections, 15 s, the same single-row body shape as
//! `../shared/baselines/06_plain_http.py`) posts single-row predictions to a
//! node holding the model and to one that forwards to a replica; then 20
//! sequential 1,000-row batches. Compare with the baselines' plain aiohttp
//! server and Ray Serve, run side by side (`run.sh plain_http ray`).

use std::{
    io::BufRead,
    process::Command,
    time::{Duration, Instant},
};

use mass_protocol::jobs::{EnsembleSpec, JobSpec, JobState, Learner, ModelSpec};
use mass_sdk::{Client, IngestRequest};
use serde_json::json;

mod support;

use support::shared;

/// The first 1,000 test rows of MNIST as 0..255 integers.
fn test_rows() -> Vec<Vec<u32>> {
    let list = std::fs::read_to_string(shared("mnist.test_rows.txt")).unwrap();
    let wanted: std::collections::BTreeSet<usize> =
        list.lines().take(1000).map(|l| l.trim().parse().unwrap()).collect();
    let file = flate2::read::GzDecoder::new(std::fs::File::open(shared("mnist.csv.gz")).unwrap());
    let mut rows = Vec::new();
    for (row, line) in std::io::BufReader::new(file).lines().skip(1).enumerate() {
        if wanted.contains(&row) {
            let line = line.unwrap();
            let cells: Vec<&str> = line.split(',').collect();
            rows.push(cells[..cells.len() - 1].iter().map(|c| c.parse().unwrap()).collect());
        }
        if rows.len() == wanted.len() {
            break;
        }
    }
    rows
}

/// One wrk run; returns (p50, p99, requests/s) as wrk prints them.
fn wrk(url: &str, lua: &std::path::Path, connections: usize) -> (String, String, f64) {
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), "-d15s", "--timeout", "5s", "--latency", "-s"])
        .arg(lua)
        .arg(url)
        .output()
        .expect("wrk on the PATH (bash ../shared/baselines/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_owned()
    };
    let rps = field("Requests/sec:").parse().unwrap_or(0.0);
    let non_2xx = text.lines().find(|l| l.contains("Non-2xx")).map(str::to_owned);
    assert!(non_2xx.is_none(), "errors under load: {non_2xx:?}\n{text}");
    (field("50%"), field("99%"), rps)
}

#[tokio::main]
async fn main() {
    let work = tempfile::tempdir().unwrap();
    let nodes = support::local_mesh(work.path(), 3).await;
    let client = Client::new([nodes[0].http_url()]).unwrap();
    let request = IngestRequest {
        name: "mnist".into(),
        label: "label".into(),
        shard_rows: Some(10_000),
        test_rows: Some(shared("mnist.test_rows.txt")),
        ..Default::default()
    };
    client.ingest_csv(&shared("mnist.csv.gz"), &request).await.unwrap();
    let spec = JobSpec {
        model: "mnist".into(),
        dataset: "mnist".into(),
        pipeline: Default::default(),
        spec: ModelSpec { epochs: Some(5), l2: Some(1e-4), ..ModelSpec::of(Learner::Linear) },
        ensemble: EnsembleSpec::Single,
        seed: 1,
        task: None,
        placement: Default::default(),
        trial: None,
        cv: None,
    };
    let id = client.submit_job(&spec).await.unwrap().to_string();
    let accuracy = loop {
        let record = client.job(&id).await.unwrap();
        match record.state {
            JobState::Completed => break record.evaluation.unwrap().score(),
            JobState::Failed(reason) => panic!("training failed: {reason}"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    let view = client.model("mnist").await.unwrap();
    let holder = nodes.iter().find(|n| view.replicas.iter().any(|r| r == n.peer_id())).unwrap();
    let other = nodes.iter().find(|n| !view.replicas.iter().any(|r| r == n.peer_id())).unwrap();
    let rows = test_rows();
    let one = json!({ "rows": [rows[0]] }).to_string();
    let holder_client = Client::new([holder.http_url()]).unwrap();
    let row = json!(rows[0]);
    loop {
        let p = holder_client.predict("mnist", std::slice::from_ref(&row)).await.unwrap();
        if p.served_by == holder.peer_id() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lua = work.path().join("post.lua");
    std::fs::write(
        &lua,
        format!("wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = '{one}'\n"),
    )
    .unwrap();

    println!("MNIST softmax regression (test accuracy {accuracy:.4}), 3 nodes on this machine\n");
    println!("| single-row predict over HTTP | connections | p50 | p99 | requests/s |");
    println!("|---|---|---|---|---|");
    for (what, node) in [("via a node holding the model", holder), ("via a node forwarding to a replica", other)] {
        let url = format!("{}/v1/models/mnist/predict", node.http_url());
        for connections in [1, 8] {
            let (p50, p99, rps) = wrk(&url, &lua, connections);
            println!("| Mass, {what} | {connections} | {p50} | {p99} | {rps:.0} |");
        }
    }
    let batch: Vec<serde_json::Value> = rows.iter().map(|r| json!(r)).collect();
    for (what, node) in [("holding", holder), ("forwarding", other)] {
        let c = Client::new([node.http_url()]).unwrap();
        let started = Instant::now();
        for _ in 0..20 {
            assert_eq!(c.predict("mnist", &batch).await.unwrap().predictions.len(), 1000);
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "\n1,000-row batches via the {what} node: {:.1} ms each, {:.0} rows/s",
            secs / 20.0 * 1e3,
            20_000.0 / secs
        );
    }
    for mut node in nodes {
        node.stop(Duration::from_secs(10));
    }
}
