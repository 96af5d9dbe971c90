//! Serving from any node: predictions forwarded to replicas equal local ones,
//! a replica killed under load, promotion and rollback under load, and the
//! bad-input table.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use mass_protocol::jobs::{EnsembleSpec, JobSpec, Learner, ModelSpec};
use mass_sdk::{Client, IngestRequest, local::LocalNode};
use serde_json::{Value, json};

use crate::support::{Cluster, FAST_CONFIG, eventually, finished, mesh, shared_dataset};

/// Cluster settings where a node `hot_after` forwarded requests takes its own
/// copy (0: never, so the forwarding path is what a test exercises).
fn cluster(hot_after: u32) -> Cluster {
    Cluster::with_config(&format!("{FAST_CONFIG}\n[serving]\nhot_after = {hot_after}\n"))
}

/// The first `n` test rows of a shared CSV (label last): features and label.
pub fn test_rows(file: &str, test_list: &str, n: usize) -> Vec<(Vec<f64>, String)> {
    use std::io::BufRead;
    let list = std::fs::read_to_string(shared_dataset(test_list)).unwrap();
    let wanted: std::collections::BTreeSet<usize> = list.lines().take(n).map(|l| l.trim().parse().unwrap()).collect();
    let file = std::fs::File::open(shared_dataset(file)).unwrap();
    let reader: Box<dyn BufRead> = if test_list.starts_with("mnist") {
        Box::new(std::io::BufReader::new(flate2::read::GzDecoder::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let mut out = Vec::new();
    for (row, line) in reader.lines().skip(1).enumerate() {
        if wanted.contains(&row) {
            let line = line.unwrap();
            let mut cells: Vec<&str> = line.split(',').collect();
            let label = cells.pop().unwrap().to_owned();
            out.push((cells.iter().map(|c| c.parse().unwrap()).collect(), label));
        }
        if out.len() == wanted.len() {
            break;
        }
    }
    out
}

async fn ingest(node: &LocalNode, name: &str, file: &str, test_list: &str, shard_rows: usize) {
    let request = IngestRequest {
        name: name.into(),
        label: "label".into(),
        shard_rows: Some(shard_rows),
        test_rows: Some(shared_dataset(test_list)),
        ..Default::default()
    };
    Client::new([node.http_url()]).unwrap().ingest_csv(&shared_dataset(file), &request).await.unwrap();
}

/// Trains `model` on `dataset` and returns the job's test accuracy.
async fn train(client: &Client, model: &str, dataset: &str, hidden: Vec<usize>, epochs: usize) -> f64 {
    let spec = JobSpec {
        model: model.into(),
        dataset: dataset.into(),
        pipeline: Default::default(),
        spec: ModelSpec {
            learner: if hidden.is_empty() { Learner::Linear } else { Learner::Mlp { hidden } },
            epochs: Some(epochs),
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
    finished(client, &id, Duration::from_secs(300)).await.evaluation.unwrap().score()
}

/// Three nodes holding the digits data and a softmax model `digits` trained
/// on it (the cluster owns the nodes' folders: keep it alive).
async fn digits_mesh(hot_after: u32) -> (Cluster, Vec<LocalNode>, Client) {
    let mut cluster = cluster(hot_after);
    let nodes = mesh(&mut cluster, 3).await;
    ingest(&nodes[0], "digits", "digits.csv", "digits.test_rows.txt", 300).await;
    let client = Client::new([nodes[0].http_url()]).unwrap();
    crate::support::shards_settled(&client, "digits", Duration::from_secs(30)).await;
    train(&client, "digits", "digits", vec![], 20).await;
    (cluster, nodes, client)
}

/// Splits the nodes into the replicas of model `name`'s current version and
/// the others, once every replica answers from its own copy.
async fn replicas_of<'a>(nodes: &'a [LocalNode], name: &str) -> (Vec<&'a LocalNode>, Vec<&'a LocalNode>) {
    let view = Client::new([nodes[0].http_url()]).unwrap().model(name).await.unwrap();
    let (holders, others): (Vec<&LocalNode>, Vec<&LocalNode>) =
        nodes.iter().partition(|n| view.replicas.iter().any(|r| r == n.peer_id()));
    assert_eq!(holders.len(), 2, "two replicas: {:?}", view.replicas);
    for holder in &holders {
        let client = Client::new([holder.http_url()]).unwrap();
        eventually(Duration::from_secs(30), "a replica serves from its own copy", || async {
            let zeros = vec![json!(vec![0.0; 64])];
            client.predict(name, &zeros).await.is_ok_and(|p| p.served_by == holder.peer_id())
        })
        .await;
    }
    (holders, others)
}

pub fn as_rows(rows: &[(Vec<f64>, String)]) -> Vec<Value> {
    rows.iter().map(|(x, _)| json!(x)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn mnist_predictions_through_a_non_holder_equal_local_ones_and_the_jobs_accuracy() {
    let mut cluster = cluster(0);
    let nodes = mesh(&mut cluster, 3).await;
    ingest(&nodes[0], "mnist", "mnist.csv.gz", "mnist.test_rows.txt", 10_000).await;
    let client = Client::new([nodes[0].http_url()]).unwrap();
    crate::support::shards_settled(&client, "mnist", Duration::from_secs(120)).await;
    let reported = train(&client, "mnist-softmax", "mnist", vec![], 2).await;

    let view = client.model("mnist-softmax").await.unwrap();
    let holders: Vec<&LocalNode> = nodes.iter().filter(|n| view.replicas.iter().any(|r| r == n.peer_id())).collect();
    let other = nodes.iter().find(|n| !view.replicas.iter().any(|r| r == n.peer_id())).unwrap();
    assert_eq!(holders.len(), 2);
    let rows = as_rows(&test_rows("mnist.csv.gz", "mnist.test_rows.txt", 300));
    let local = Client::new([holders[0].http_url()]).unwrap();
    eventually(Duration::from_secs(30), "the replica serves locally", || async {
        local.predict("mnist-softmax", &rows[..1]).await.is_ok_and(|p| p.served_by == holders[0].peer_id())
    })
    .await;
    let here = local.predict("mnist-softmax", &rows).await.unwrap();
    let through = Client::new([other.http_url()]).unwrap().predict("mnist-softmax", &rows).await.unwrap();
    assert_ne!(through.served_by, other.peer_id(), "the non-holder answered itself");
    assert_eq!(through.predictions, here.predictions);
    assert_eq!(through.probabilities, here.probabilities);
    assert_eq!((through.version, here.version), (1, 1));
    // A single row goes on the replica's lane (300 rows are over a lane's
    // limit and went by request-response), with the same answer.
    let one = Client::new([other.http_url()]).unwrap().predict("mnist-softmax", &rows[..1]).await.unwrap();
    assert_eq!(one.predictions[..], here.predictions[..1]);
    // One row and 300 go through different GEMM kernels: the same to float rounding.
    for (a, b) in one.probabilities[0].iter().zip(&here.probabilities[0]) {
        assert!((a - b).abs() < 1e-5, "{:?} vs {:?}", one.probabilities[0], here.probabilities[0]);
    }
    let replica = nodes.iter().find(|n| n.peer_id() == one.served_by).expect("a replica answered");
    let lane_calls = crate::support::metric(replica, "mass_messages_in_total{protocol=\"lane\"}").await;
    assert!(lane_calls >= 1.0, "the replica read {lane_calls} lane frames");

    // The served model, run where the shards live over every test row, scores
    // what the training job reported.
    let batch = Client::new([other.http_url()]).unwrap().batch_predict("mnist-softmax", "mnist").await.unwrap();
    let served = batch.test.unwrap();
    assert_eq!(served.rows, 14_000);
    assert!((served.score() - reported).abs() < 1e-9, "served {} vs reported {reported}", served.score());
    let csv = String::from_utf8(client.get_blob(&batch.blob.to_string()).await.unwrap()).unwrap();
    assert_eq!(csv.lines().count(), 70_001, "a header and one line per row");
}

/// Sends `total` single-row predictions through `client`, `concurrency` at a
/// time; returns (failures, slowest, versions seen in order of completion).
async fn stream(
    client: Arc<Client>,
    name: &'static str,
    row: Value,
    total: usize,
    concurrency: usize,
) -> (Vec<String>, Duration, Vec<u64>) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, next, row) = (client.clone(), next.clone(), row.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut slowest = Duration::ZERO;
            let mut versions = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let started = Instant::now();
                match client.predict(name, std::slice::from_ref(&row)).await {
                    Ok(p) => versions.push(p.version),
                    Err(e) => failures.push(e.to_string()),
                }
                slowest = slowest.max(started.elapsed());
            }
            (failures, slowest, versions)
        }));
    }
    let mut all = (Vec::new(), Duration::ZERO, Vec::new());
    for worker in workers {
        let (failures, slowest, versions) = worker.await.unwrap();
        all.0.extend(failures);
        all.1 = all.1.max(slowest);
        all.2.extend(versions);
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_a_replica_under_load_loses_almost_no_request() {
    let (_cluster, mut nodes, _) = digits_mesh(0).await;
    let (holders, others) = replicas_of(&nodes, "digits").await;
    let victim = holders[0].peer_id().to_owned();
    let entry = Arc::new(Client::new([others[0].http_url()]).unwrap());
    let row = as_rows(&test_rows("digits.csv", "digits.test_rows.txt", 1)).remove(0);

    let load = tokio::spawn(stream(entry, "digits", row, 2_000, 8));
    // Kill it under load: once the entry node has forwarded a hundred requests.
    eventually(Duration::from_secs(30), "load flowing through the entry node", || async {
        crate::support::metric(others[0], "mass_forwarded_predictions_total").await >= 100.0
    })
    .await;
    let index = nodes.iter().position(|n| n.peer_id() == victim).unwrap();
    nodes[index].kill();
    let (failures, slowest, versions) = load.await.unwrap();
    eprintln!("2,000 requests, a replica killed: {} failed, slowest {slowest:?}", failures.len());
    assert!(failures.len() <= 2, "more than 0.1% failed: {failures:?}");
    assert!(versions.len() >= 1_998);
    assert!(slowest <= Duration::from_millis(2_100), "a request took {slowest:?}, past the deadline + 100 ms");
}

#[tokio::test(flavor = "multi_thread")]
async fn promotion_and_rollback_under_load_fail_nothing_and_bad_input_is_refused_by_name() {
    let (_cluster, nodes, client) = digits_mesh(0).await;
    let (_, others) = replicas_of(&nodes, "digits").await;
    let entry_node = others[0];
    let entry = Arc::new(Client::new([entry_node.http_url()]).unwrap());
    let row = as_rows(&test_rows("digits.csv", "digits.test_rows.txt", 1)).remove(0);

    // Version 2: an MLP, published by a second job.
    let load = tokio::spawn(stream(entry.clone(), "digits", row.clone(), 1_500, 4));
    train(&client, "digits", "digits", vec![32], 20).await;
    eventually(Duration::from_secs(10), "version 2 served", || async {
        entry.predict("digits", std::slice::from_ref(&row)).await.is_ok_and(|p| p.version == 2)
    })
    .await;
    client.rollback_model("digits").await.unwrap();
    for node in &nodes {
        let c = Client::new([node.http_url()]).unwrap();
        eventually(Duration::from_secs(5), "every node answers with version 1 after the rollback", || async {
            c.predict("digits", std::slice::from_ref(&row)).await.is_ok_and(|p| p.version == 1)
        })
        .await;
    }
    let (failures, _, versions) = load.await.unwrap();
    assert!(failures.is_empty(), "requests failed during promotion and rollback: {failures:?}");
    assert!(versions.contains(&1), "{versions:?}");
    let err = client.promote("digits", 9).await.unwrap_err().to_string();
    assert!(err.contains("404") && err.contains("no version 9"), "{err}");
    assert_eq!(client.promote("digits", 2).await.unwrap().version, 2);
    client.promote("digits", 1).await.unwrap();

    // The bad-input table, through the node that forwards.
    let url = format!("{}/v1/models/digits/predict", entry_node.http_url());
    let http = crate::support::http();
    let post = |body: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let response = http.post(url).header("content-type", "application/json").body(body).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    let mut wide = vec![json!(0); 64];
    let good = json!({ "rows": [row.clone()] }).to_string();
    let cases: Vec<(String, u16, &str)> = vec![
        ("{\"rows\": [[1, 2".into(), 400, "invalid JSON body"),
        (json!({ "rows": [] }).to_string(), 400, "the batch is empty"),
        (json!({ "rows": [[1, 2, 3]] }).to_string(), 400, "rows[0]: 3 values, but the model reads 64 columns"),
        (json!({ "rows": [{ "p0": 1, "pixel": 2 }] }).to_string(), 400, "unknown column 'pixel'"),
        (
            {
                wide[5] = json!("five");
                json!({ "rows": [wide.clone()] }).to_string()
            },
            400,
            "rows[0].p5: expected a number, got the text",
        ),
        (
            {
                wide[5] = json!("NaN");
                json!({ "rows": [wide.clone()] }).to_string()
            },
            400,
            "rows[0].p5: NaN is refused",
        ),
        (
            {
                wide[5] = json!("Infinity");
                json!({ "rows": [wide.clone()] }).to_string()
            },
            400,
            "rows[0].p5: infinity",
        ),
        (
            {
                wide[5] = json!(null);
                json!({ "rows": [wide.clone()] }).to_string()
            },
            400,
            "rows[0].p5: null is refused",
        ),
        (format!("{{\"rows\": [{}]}}", "0,".repeat(9 * 1024 * 1024)), 413, "over the 16 MiB limit"),
    ];
    for (body, status, message) in &cases {
        // Each bad request travels with good ones, which must not suffer.
        let (bad, ok) = tokio::join!(post(body.clone()), post(good.clone()));
        assert_eq!(bad.0, *status, "{message}: {}", bad.1);
        assert!(bad.1.contains(message), "expected '{message}' in {}", bad.1);
        assert_eq!(ok.0, 200, "a good request beside a bad one failed: {}", ok.1);
    }
    let unknown = entry.predict("no-such-model", std::slice::from_ref(&row)).await.unwrap_err().to_string();
    assert!(unknown.contains("404") && unknown.contains("no model named 'no-such-model'"), "{unknown}");
    // Missing values are imputed when the caller allows them.
    let (status, _) = post(json!({ "rows": [wide], "allow_missing": true }).to_string()).await;
    assert_eq!(status, 200);

    // Binary bodies: a .npy matrix gives the same answers as JSON, in JSON
    // or as a .npy matrix of probabilities.
    let rows: Vec<Vec<f64>> = test_rows("digits.csv", "digits.test_rows.txt", 50).into_iter().map(|(x, _)| x).collect();
    let as_json = entry.predict("digits", &rows.iter().map(|r| json!(r)).collect::<Vec<_>>()).await.unwrap();
    let as_npy = entry.predict_matrix("digits", &rows, false).await.unwrap();
    assert_eq!(as_npy.predictions, as_json.predictions);
    assert_eq!(as_npy.probabilities, as_json.probabilities);
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    let body = mass_protocol::npy::write_matrix(&flat, &[rows.len(), 64], false);
    let binary = |body: Vec<u8>, accept: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let response = http
                .post(url)
                .header("content-type", "application/x-npy")
                .header("accept", accept)
                .body(body)
                .send()
                .await
                .unwrap();
            let (status, headers) = (response.status().as_u16(), response.headers().clone());
            (status, headers, response.bytes().await.unwrap().to_vec())
        }
    };
    let (status, headers, bytes) = binary(body.clone(), "application/x-npy").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/x-npy");
    let classes: Vec<String> = serde_json::from_str(headers["x-mass-classes"].to_str().unwrap()).unwrap();
    assert_eq!(classes, as_json.classes);
    // The answer is a (50, 10) f4 matrix: the same probabilities.
    let data = &bytes[bytes.len() - 50 * 10 * 4..];
    let first: Vec<f32> = data[..40].chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(first, as_json.probabilities[0]);
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("'shape': (50, 10)"));
    // Malformed binary bodies are refused with the reason.
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (body[..body.len() - 3].to_vec(), "the body holds"),
        (b"not an array".to_vec(), "magic"),
        (
            mass_protocol::npy::write_matrix(&flat[..50 * 8], &[50, 8], false),
            "8 values, but the model reads 64 columns",
        ),
        (mass_protocol::npy::write_matrix(&vec![0.0; 20_001 * 2], &[20_001, 2], false), "at most"),
    ];
    for (body, message) in cases {
        let (status, _, bytes) = binary(body, "application/json").await;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert_eq!(status, 400, "{message}: {text}");
        assert!(text.contains(message), "expected '{message}' in {text}");
    }
    // An Arrow IPC stream of named columns: the same answers, in JSON or
    // as an Arrow stream; a malformed or mistyped one refused by name.
    let columns: Vec<(String, arrow_array::ArrayRef)> = (0..64)
        .map(|c| {
            let column: arrow_array::Float32Array = rows.iter().map(|r| r[c] as f32).collect();
            (format!("p{c}"), std::sync::Arc::new(column) as arrow_array::ArrayRef)
        })
        .collect();
    let batch = arrow_array::RecordBatch::try_from_iter(columns).unwrap();
    let arrow_stream = |batch: &arrow_array::RecordBatch| {
        let mut out = Vec::new();
        let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
        writer.write(batch).unwrap();
        writer.finish().unwrap();
        drop(writer);
        out
    };
    let arrow_post = |body: Vec<u8>, accept: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let response = http
                .post(url)
                .header("content-type", "application/vnd.apache.arrow.stream")
                .header("accept", accept)
                .body(body)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
        }
    };
    let (status, bytes) = arrow_post(arrow_stream(&batch), "application/json").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let as_arrow: mass_protocol::serving::Prediction = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(as_arrow.predictions, as_json.predictions);
    assert_eq!(as_arrow.probabilities, as_json.probabilities);
    let (status, bytes) = arrow_post(arrow_stream(&batch), "application/vnd.apache.arrow.stream").await;
    assert_eq!(status, 200);
    let answer = arrow_ipc::reader::StreamReader::try_new(&bytes[..], None).unwrap().next().unwrap().unwrap();
    assert_eq!((answer.num_rows(), answer.num_columns()), (50, 1 + as_json.classes.len()));
    let predicted = arrow_array::cast::AsArray::as_string::<i32>(answer.column(0));
    let expected: Vec<String> = as_json
        .predictions
        .iter()
        .map(|p| match p {
            mass_protocol::serving::Predicted::Class(c) => c.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(predicted.iter().map(|c| c.unwrap().to_owned()).collect::<Vec<_>>(), expected);
    let short = batch.project(&(0..8).collect::<Vec<_>>()).unwrap();
    let dates = arrow_array::RecordBatch::try_from_iter([(
        "p0",
        std::sync::Arc::new(arrow_array::Date32Array::from(vec![1])) as arrow_array::ArrayRef,
    )])
    .unwrap();
    let whole = arrow_stream(&batch);
    for (body, message) in [
        (whole[..whole.len() / 2].to_vec(), "body: "),
        (b"not arrow".to_vec(), "not an Arrow IPC stream"),
        (arrow_stream(&short), "p8"),
        (arrow_stream(&dates), "column 'p0' is Arrow Date32"),
    ] {
        let (status, bytes) = arrow_post(body, "application/json").await;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert_eq!(status, 400, "{message}: {text}");
        assert!(text.contains(message), "expected '{message}' in {text}");
    }
    let mut gap = rows[0].clone();
    gap[5] = f64::NAN;
    let refused = entry.predict_matrix("digits", std::slice::from_ref(&gap), false).await.unwrap_err().to_string();
    assert!(refused.contains("400") && refused.contains("p5"), "{refused}");
    assert!(entry.predict_matrix("digits", &[gap], true).await.is_ok(), "NaN imputed when allowed");

    let openapi: Value = crate::support::http()
        .get(format!("{}/v1/openapi.json", entry_node.http_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(openapi["paths"]["/v1/models/{name}/predict"]["post"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_asked_for_often_through_a_node_is_copied_there() {
    let (_cluster, nodes, _) = digits_mesh(20).await;
    let (_, others) = replicas_of(&nodes, "digits").await;
    let entry_node = others[0];
    let entry = Client::new([entry_node.http_url()]).unwrap();
    let row = as_rows(&test_rows("digits.csv", "digits.test_rows.txt", 1)).remove(0);
    let first = entry.predict("digits", std::slice::from_ref(&row)).await.unwrap();
    assert_ne!(first.served_by, entry_node.peer_id(), "a cold model is forwarded");
    for _ in 0..20 {
        entry.predict("digits", std::slice::from_ref(&row)).await.unwrap();
    }
    eventually(Duration::from_secs(10), "the hot model is served where it is asked for", || async {
        entry.predict("digits", std::slice::from_ref(&row)).await.is_ok_and(|p| p.served_by == entry_node.peer_id())
    })
    .await;
    let local = entry.predict("digits", std::slice::from_ref(&row)).await.unwrap();
    assert_eq!((local.predictions, local.probabilities), (first.predictions, first.probabilities));
}

/// Sends `signal` (`STOP`, `CONT`) to a node's process.
pub fn signal(node: &LocalNode, signal: &str) {
    let pid = node.pid().expect("the node runs").to_string();
    let status = std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Resumes a stalled node however the test ends.
pub struct Stalled<'a>(pub &'a LocalNode);

impl Drop for Stalled<'_> {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

fn p99(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort_unstable();
    latencies[(latencies.len() * 99).div_ceil(100) - 1]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_replica_does_not_set_the_tail_hedged_requests_go_around_it() {
    // Failure detection slower than the test: the replica is stalled, not
    // gone, so only hedging can keep the tail down.
    let config = FAST_CONFIG.replace("down_after = \"1500ms\"", "down_after = \"60s\"");
    let mut cluster = Cluster::with_config(&format!("{config}\n[serving]\nhot_after = 0\n"));
    let nodes = mesh(&mut cluster, 3).await;
    ingest(&nodes[0], "digits", "digits.csv", "digits.test_rows.txt", 300).await;
    let client = Client::new([nodes[0].http_url()]).unwrap();
    crate::support::shards_settled(&client, "digits", Duration::from_secs(30)).await;
    train(&client, "digits", "digits", vec![], 20).await;
    let (holders, others) = replicas_of(&nodes, "digits").await;
    let forwarder = others[0];
    let through = Client::new([forwarder.http_url()]).unwrap();
    let rows = as_rows(&test_rows("digits.csv", "digits.test_rows.txt", 1));
    let timed = async |n: usize| {
        let mut latencies = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            let answer = through.predict("digits", &rows).await.unwrap();
            latencies.push(started.elapsed());
            assert_ne!(answer.served_by, forwarder.peer_id(), "the forwarder answered itself");
        }
        latencies
    };
    // Quiet: both replicas answer; this also fills the hedging window.
    let quiet = p99(timed(300).await);
    let counts = || async {
        let forwarded = crate::support::metric(forwarder, "mass_forwarded_predictions_total").await;
        (forwarded, crate::support::metric(forwarder, "mass_hedged_predictions_total").await)
    };
    let (forwarded_before, hedged_before) = counts().await;
    signal(holders[0], "STOP");
    let stalled_node = Stalled(holders[0]);
    let stalled_latencies = timed(300).await;
    let mut worst: Vec<(Duration, usize)> = stalled_latencies.iter().copied().zip(0..).collect();
    worst.sort_unstable_by(|a, b| b.cmp(a));
    eprintln!("slowest requests with a stalled replica (latency, index): {:?}", &worst[..4]);
    let stalled = p99(stalled_latencies);
    drop(stalled_node);
    let (forwarded, hedged) = counts().await;
    let extra = (hedged - hedged_before) / (forwarded - forwarded_before);
    eprintln!(
        "p99 through a forwarding node: quiet {quiet:?}, one replica stalled {stalled:?}; \
         extra requests {:.1}% ({} hedged of {})",
        extra * 100.0,
        hedged - hedged_before,
        forwarded - forwarded_before
    );
    // 3x the quiet p99, with 20 ms for a debug build on two shared cores.
    let bound = (quiet * 3).max(quiet + Duration::from_millis(20));
    assert!(stalled < bound, "p99 {stalled:?} with a stalled replica; quiet {quiet:?}");
    // The hedging budget: 5% of forwarded requests, plus a burst of two.
    let allowed = 0.05 * (forwarded - forwarded_before) + 2.0;
    assert!(hedged - hedged_before <= allowed, "hedging sent {:.1}% extra requests", extra * 100.0);
    // What an operator alerts on: the forwarder timed every prediction per
    // model and per route; the replica that answered ran them in batches.
    let metric = crate::support::metric;
    assert!(metric(forwarder, "mass_predict_duration_seconds_count{model=\"digits\"}").await >= 600.0);
    let route = "mass_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/models/{name}/predict\"}";
    assert!(metric(forwarder, route).await >= 600.0, "{route}");
    assert!(metric(holders[1], "mass_inference_batch_rows_count").await >= 1.0);
    // The stalled replica resumes and answers again.
    let resumed = Client::new([holders[0].http_url()]).unwrap();
    eventually(Duration::from_secs(20), "the resumed replica answers", || async {
        resumed.predict("digits", &rows).await.is_ok()
    })
    .await;
}

/// One predict request sent raw: its status, whether a 503 said when to
/// retry, and how long it took.
struct Outcome {
    status: u16,
    retry_after: bool,
    took: Duration,
}

async fn post_npy(http: &reqwest::Client, url: &str, body: &[u8]) -> Outcome {
    let started = Instant::now();
    let response = http
        .post(url)
        .header("content-type", "application/x-npy")
        .body(body.to_vec())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the node answers, refusals included");
    let retry_after = response.headers().contains_key("retry-after");
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    Outcome { status, retry_after, took: started.elapsed() }
}

/// The node's resident memory, in MiB.
fn rss_mib(node: &LocalNode) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid().expect("the node runs"))).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib / 1024.0
}

fn percentile(mut latencies: Vec<Duration>, p: usize) -> Duration {
    latencies.sort_unstable();
    latencies[((latencies.len() * p).div_ceil(100)).max(1) - 1]
}

#[tokio::test(flavor = "multi_thread")]
async fn three_times_its_capacity_is_refused_at_once_memory_stays_flat_and_service_returns() {
    // One node with small admission bounds, serving a network heavy enough
    // per request that the node, not this test's client, is what saturates.
    let config = format!("{FAST_CONFIG}\n[serving]\nhot_after = 0\nqueue = 16\nmax_in_flight = 24\n");
    let mut cluster = Cluster::with_config(&config);
    let nodes = mesh(&mut cluster, 1).await;
    let node = &nodes[0];
    ingest(node, "digits", "digits.csv", "digits.test_rows.txt", 300).await;
    let client = Client::new([node.http_url()]).unwrap();
    train(&client, "digits", "digits", vec![256, 256], 1).await;

    let rows = test_rows("digits.csv", "digits.test_rows.txt", 50);
    let values: Vec<f64> = (0..8).flat_map(|_| rows.iter().flat_map(|(x, _)| x.iter().copied())).collect();
    let body = Arc::new(mass_protocol::npy::write_matrix(&values, &[400, 64], false));
    let url = Arc::new(format!("{}/v1/models/digits/predict", node.http_url()));
    let http = crate::support::http();
    assert_eq!(post_npy(&http, &url, &body).await.status, 200);

    // Capacity: what four clients in a closed loop get answered in 3 s.
    let measured = Duration::from_secs(3);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            let mut served = Vec::new();
            while started.elapsed() < measured {
                let outcome = post_npy(&http, &url, &body).await;
                assert_eq!(outcome.status, 200, "refused before overload");
                served.push(outcome.took);
            }
            served
        }));
    }
    let mut quiet = Vec::new();
    for worker in workers {
        quiet.extend(worker.await.unwrap());
    }
    let capacity = quiet.len() as f64 / started.elapsed().as_secs_f64();
    let rss_before = rss_mib(node);

    // Overload: an open loop at three times that rate for 5 s.
    let interval = Duration::from_secs_f64(1.0 / (3.0 * capacity));
    let load_for = Duration::from_secs(5);
    let started = Instant::now();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = Vec::new();
    let mut rss_peak = rss_before;
    while started.elapsed() < load_for {
        ticks.tick().await;
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        sent.push(tokio::spawn(async move { post_npy(&http, &url, &body).await }));
        if sent.len() % 16 == 0 {
            rss_peak = rss_peak.max(rss_mib(node));
        }
    }
    let offered = sent.len() as f64 / started.elapsed().as_secs_f64();
    let mut outcomes = Vec::new();
    for request in sent {
        outcomes.push(request.await.unwrap());
    }
    let (served, refused): (Vec<&Outcome>, Vec<&Outcome>) = outcomes.iter().partition(|o| o.status == 200);
    let odd: Vec<u16> = refused.iter().filter(|o| o.status != 503 || !o.retry_after).map(|o| o.status).collect();
    assert!(odd.is_empty(), "answers other than 200 or 503 with Retry-After: {odd:?}");
    assert!(!refused.is_empty(), "3x load ({offered:.0}/s against {capacity:.0}/s) refused nothing");
    let refusal = |p| percentile(refused.iter().map(|o| o.took).collect(), p);
    let serving = |p| percentile(served.iter().map(|o| o.took).collect(), p);
    eprintln!(
        "capacity {capacity:.1} req/s (400 rows each); offered {offered:.1} req/s for {load_for:?}: {} served, {} \
         refused; refusals p50 {:?} p99 {:?} (goal: 50 ms); served p50 {:?} p99 {:?}; node RSS {rss_before:.0} MiB \
         before, peak {rss_peak:.0} MiB under load",
        served.len(),
        refused.len(),
        refusal(50),
        refusal(99),
        serving(50),
        serving(99),
    );
    assert!(offered > 2.0 * capacity, "the client offered only {offered:.0}/s against {capacity:.0}/s");
    // Refused at once: faster than a served request, never after waiting
    // out the 2 s serving deadline.
    assert!(refusal(50) < serving(50), "refusals p50 {:?} vs served p50 {:?}", refusal(50), serving(50));
    assert!(refusal(99) < Duration::from_secs(2), "a refusal took {:?}", refusal(99));
    // Memory bounded: at most 24 bodies (100 KiB each) and their rows held.
    assert!(rss_peak - rss_before < 128.0, "RSS grew from {rss_before:.0} to {rss_peak:.0} MiB");
    assert!(crate::support::metric(node, "mass_predictions_refused_total").await >= refused.len() as f64);

    // Normal service again within 10 s of the load stopping: ten requests
    // in a row answered.
    let back = eventually(Duration::from_secs(10), "ten predictions in a row answered", || async {
        for _ in 0..10 {
            if post_npy(&http, &url, &body).await.status != 200 {
                return false;
            }
        }
        true
    })
    .await;
    eprintln!("normal service {back:?} after the last overload request was answered");
}
