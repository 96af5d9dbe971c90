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

use mass_sdk::local::LocalNode;
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

/// The floor of the HTTP stack on this machine: actix-web with the node's
/// two workers, reading each request's body and answering `answer`, with
/// nothing parsed or computed. No handler over this stack answers faster,
/// so the rows above are read against it as well as against the plain
/// Python server. Runs on its own thread until the bench ends.
fn floor_server(answer: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let answer = actix_web::web::Bytes::from(answer);
            actix_web::HttpServer::new(move || {
                let answer = answer.clone();
                actix_web::App::new().default_service(actix_web::web::to(move |_body: actix_web::web::Bytes| {
                    let answer = answer.clone();
                    async move { actix_web::HttpResponse::Ok().content_type("application/json").body(answer) }
                }))
            })
            .workers(2)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run()
            .await
        })
    });
    url
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

    // The floor answers what the holder answers, byte for byte.
    mass_sdk::client::ensure_crypto_provider();
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/models/mnist/predict", holder.http_url()))
        .header("content-type", "application/json")
        .body(one.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let floor = floor_server(answer);

    println!("MNIST softmax regression (test accuracy {accuracy:.4}), 3 nodes on this machine\n");
    println!("| single-row predict over HTTP | connections | p50 | p99 | requests/s |");
    println!("|---|---|---|---|---|");
    for connections in [1, 8] {
        let (p50, p99, rps) = wrk(&floor, &lua, connections);
        println!(
            "| floor: actix-web answering a fixed body, nothing parsed | {connections} | {p50} | {p99} | {rps:.0} |"
        );
    }
    for (what, node) in [("via a node holding the model", holder), ("via a node forwarding to a replica", other)] {
        let url = format!("{}/v1/models/mnist/predict", node.http_url());
        for connections in [1, 8] {
            let (p50, p99, rps) = wrk(&url, &lua, connections);
            println!("| Mass, {what} | {connections} | {p50} | {p99} | {rps:.0} |");
        }
    }
    batches(holder, other, &rows).await;
    clients(holder, &rows, work.path()).await;
    scoring(&client).await;
    for mut node in nodes {
        node.stop(Duration::from_secs(10));
    }
}

/// 20 sequential 1,000-row batches per body format and node; rows/s.
async fn batches(holder: &LocalNode, other: &LocalNode, rows: &[Vec<u32>]) {
    let json_rows: Vec<serde_json::Value> = rows.iter().map(|r| json!(r)).collect();
    let matrix: Vec<Vec<f64>> = rows.iter().map(|r| r.iter().map(|&v| f64::from(v)).collect()).collect();
    let arrow = arrow_body(rows);
    mass_sdk::client::ensure_crypto_provider();
    let http = reqwest::Client::new();
    println!("\n| 1,000-row batches, 20 sequential | node | ms per batch | rows/s |");
    println!("|---|---|---|---|");
    for (what, node) in [("holding", holder), ("forwarding", other)] {
        let c = Client::new([node.http_url()]).unwrap();
        let url = format!("{}/v1/models/mnist/predict", node.http_url());
        for body in ["JSON", ".npy", "Arrow"] {
            let started = Instant::now();
            for _ in 0..20 {
                let answered = match body {
                    "JSON" => c.predict("mnist", &json_rows).await.unwrap().predictions.len(),
                    ".npy" => c.predict_matrix("mnist", &matrix, false).await.unwrap().predictions.len(),
                    _ => {
                        let response = http
                            .post(&url)
                            .header("content-type", "application/vnd.apache.arrow.stream")
                            .body(arrow.clone())
                            .send()
                            .await
                            .unwrap();
                        assert!(response.status().is_success(), "{}", response.text().await.unwrap());
                        let answer: mass_protocol::serving::Prediction = response.json().await.unwrap();
                        answer.predictions.len()
                    }
                };
                assert_eq!(answered, 1000);
            }
            let secs = started.elapsed().as_secs_f64();
            println!("| {body} | {what} | {:.1} | {:.0} |", secs / 20.0 * 1e3, 20_000.0 / secs);
        }
    }
}

/// The rows as an Arrow IPC stream of 784 named `u8` columns.
fn arrow_body(rows: &[Vec<u32>]) -> Vec<u8> {
    use std::sync::Arc;
    let columns: Vec<(String, arrow_array::ArrayRef)> = (0..rows[0].len())
        .map(|c| {
            let column: arrow_array::UInt8Array = rows.iter().map(|r| r[c] as u8).collect();
            (format!("p{c}"), Arc::new(column) as arrow_array::ArrayRef)
        })
        .collect();
    let batch = arrow_array::RecordBatch::try_from_iter(columns).unwrap();
    let mut out = Vec::new();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    drop(writer);
    out
}

/// The Python client against the Rust SDK on the holding node: 500
/// sequential single-row predictions (p50) and 20 1,000-row batches.
async fn clients(holder: &LocalNode, rows: &[Vec<u32>], work: &std::path::Path) {
    let python = Command::new("bash").arg(support::repo().join("scripts/python-env.sh")).output().unwrap();
    assert!(python.status.success(), "no Python for the client: {}", String::from_utf8_lossy(&python.stderr));
    let python = String::from_utf8(python.stdout).unwrap().trim().to_owned();
    let matrix = work.join("rows.json");
    std::fs::write(&matrix, serde_json::to_vec(rows).unwrap()).unwrap();
    let script = r#"
import json, sys, time
import numpy as np
import mass
X = np.array(json.load(open(sys.argv[2])), dtype=np.float64)
client = mass.Client([sys.argv[1]])
client.predict("mnist", X[:1])
times = []
for i in range(500):
    started = time.perf_counter()
    client.predict("mnist", X[i % len(X)][None, :])
    times.append(time.perf_counter() - started)
started = time.perf_counter()
for _ in range(20):
    assert len(client.predict("mnist", X)) == len(X)
batch = (time.perf_counter() - started) / 20
print(json.dumps({"p50_ms": float(np.median(times)) * 1e3, "batch_ms": batch * 1e3}))
"#;
    let out = Command::new(&python)
        .args(["-c", script, &holder.http_url()])
        .arg(&matrix)
        .env("PYTHONPATH", support::repo().join("sdk/python"))
        .output()
        .unwrap();
    assert!(out.status.success(), "the Python client failed: {}", String::from_utf8_lossy(&out.stderr));
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = Client::new([holder.http_url()]).unwrap();
    let matrix: Vec<Vec<f64>> = rows.iter().map(|r| r.iter().map(|&v| f64::from(v)).collect()).collect();
    let mut times = Vec::new();
    for i in 0..500 {
        let started = Instant::now();
        c.predict_matrix("mnist", std::slice::from_ref(&matrix[i % matrix.len()]), false).await.unwrap();
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let started = Instant::now();
    for _ in 0..20 {
        c.predict_matrix("mnist", &matrix, false).await.unwrap();
    }
    let (rust_p50, rust_batch) = (times[250] * 1e3, started.elapsed().as_secs_f64() / 20.0 * 1e3);
    let (py_p50, py_batch) = (py["p50_ms"].as_f64().unwrap(), py["batch_ms"].as_f64().unwrap());
    println!("\n| client, holding node | single row p50 | rows/s, 1,000-row batches |");
    println!("|---|---|---|");
    println!("| Rust SDK (`predict_matrix`, .npy) | {rust_p50:.2} ms | {:.0} |", 1e6 / rust_batch);
    println!(
        "| Python client (`Client.predict`, numpy, .npy) | {py_p50:.2} ms ({:.2}x) | {:.0} ({:.2}x) |",
        py_p50 / rust_p50,
        1e6 / py_batch,
        rust_batch / py_batch
    );
}

/// Offline scoring of the whole MNIST dataset (70,000 rows, 7 shards)
/// as a scoring job across the three nodes.
async fn scoring(client: &Client) {
    let started = Instant::now();
    let id = client.submit_batch_predict("mnist", "mnist", None).await.unwrap();
    let record = loop {
        let record = client.scoring(&id).await.unwrap();
        if record.state.is_over() {
            break record;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let secs = started.elapsed().as_secs_f64();
    let rows = record.result.as_ref().map_or(0, |r| r.rows);
    println!(
        "\nOffline scoring of MNIST (a scoring job, 3 nodes): {rows} rows in {secs:.2} s, {:.0} rows/s ({:?})",
        rows as f64 / secs,
        record.state
    );
}
