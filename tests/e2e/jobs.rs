//! Training jobs across the mesh: bagging where the shards live, single
//! models at scikit-learn's accuracy, and a driver killed mid-job.

use std::{path::PathBuf, time::Duration};

use mass_protocol::jobs::{EnsembleSpec, JobSpec, JobState, Learner, ModelSpec};
use mass_sdk::{Client, IngestRequest, local::LocalNode};

use crate::support::{Cluster, eventually, finished, mesh, poll};

fn shared(name: &str) -> PathBuf {
    crate::support::shared_dataset(name)
}

pub async fn digits_on(node: &LocalNode, shard_rows: usize) {
    let request = IngestRequest {
        name: "digits".into(),
        label: "label".into(),
        shard_rows: Some(shard_rows),
        test_rows: Some(shared("digits.test_rows.txt")),
        ..Default::default()
    };
    Client::new([node.http_url()]).unwrap().ingest_csv(&shared("digits.csv"), &request).await.unwrap();
}

pub fn spec(model: &str, hidden: Vec<usize>, ensemble: EnsembleSpec, epochs: usize) -> JobSpec {
    JobSpec {
        model: model.into(),
        dataset: "digits".into(),
        pipeline: Default::default(),
        spec: ModelSpec {
            learner: if hidden.is_empty() { Learner::Linear } else { Learner::Mlp { hidden } },
            epochs: Some(epochs),
            batch_size: 32,
            learning_rate: if epochs > 40 { 1e-3 } else { 1e-2 },
            l2: Some(1e-4),
            ..ModelSpec::default()
        },
        ensemble,
        seed: 7,
        task: None,
        placement: Default::default(),
        trial: None,
        cv: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bagging_trains_where_the_shards_live_and_single_models_match_scikit_learn() {
    let mut cluster = Cluster::new();
    let nodes = mesh(&mut cluster, 3).await;
    digits_on(&nodes[0], 240).await;
    let client = Client::new([nodes[1].http_url()]).unwrap();
    crate::support::shards_settled(&client, "digits", Duration::from_secs(30)).await;

    let bagging =
        client.submit_job(&spec("digits-bag", vec![64], EnsembleSpec::Bagging { members: 8 }, 60)).await.unwrap();
    let record = finished(&client, &bagging.to_string(), Duration::from_secs(120)).await;
    let trainers: std::collections::BTreeSet<&String> = record.tasks.iter().filter_map(|t| t.peer.as_ref()).collect();
    assert!(trainers.len() >= 2, "sub-models all trained on {trainers:?}");
    let members: Vec<f64> = record.tasks.iter().map(|t| t.test_score.unwrap()).collect();
    let mean = members.iter().sum::<f64>() / members.len() as f64;
    let ensemble = record.evaluation.as_ref().unwrap().score();
    assert!(ensemble >= mean, "ensemble {ensemble} below its mean member {mean}");
    // The model is named, and any node resolves it.
    let model = Client::new([nodes[2].http_url()]).unwrap();
    eventually(Duration::from_secs(10), "model/digits-bag visible everywhere", || async {
        model.get_ref("model/digits-bag").await.is_ok_and(|r| Some(r.target) == record.model)
    })
    .await;

    let softmax = client.submit_job(&spec("digits-softmax", vec![], EnsembleSpec::Single, 60)).await.unwrap();
    let mlp = client.submit_job(&spec("digits-mlp", vec![128], EnsembleSpec::Single, 60)).await.unwrap();
    let softmax = finished(&client, &softmax.to_string(), Duration::from_secs(120)).await;
    let mlp = finished(&client, &mlp.to_string(), Duration::from_secs(120)).await;
    let (a, b) = (softmax.evaluation.unwrap().score(), mlp.evaluation.unwrap().score());
    eprintln!("digits on the mesh: bagging of 8 {ensemble:.4} (members mean {mean:.4}), softmax {a:.4}, MLP {b:.4}");
    assert!(a >= 0.956, "softmax regression {a} below scikit-learn's 0.956");
    assert!(b >= 0.967, "MLP {b} below scikit-learn's 0.967");

    // The same seed and data give bit-identical weights: the same blob id.
    let again = client.submit_job(&spec("digits-mlp-again", vec![128], EnsembleSpec::Single, 60)).await.unwrap();
    let again = finished(&client, &again.to_string(), Duration::from_secs(120)).await;
    assert_eq!(again.tasks[0].weights, mlp.tasks[0].weights, "retraining with the same seed changed the weights");
}

/// Issue 17, item 5: `/metrics` counts the jobs each node knows by state,
/// and the bytes it holds by kind, replicated copies included.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_jobs_by_state_and_bytes_by_kind_on_every_node() {
    use crate::support::metric;
    let mut cluster = Cluster::new();
    let nodes = mesh(&mut cluster, 3).await;
    let (completed, dataset, unknown) =
        ("mass_jobs{state=\"completed\"}", "mass_blob_bytes{kind=\"dataset\"}", "mass_blob_bytes{kind=\"unknown\"}");
    for node in &nodes {
        assert_eq!((metric(node, completed).await, metric(node, dataset).await), (0.0, 0.0));
    }
    digits_on(&nodes[0], 240).await;
    let client = Client::new([nodes[1].http_url()]).unwrap();
    crate::support::shards_settled(&client, "digits", Duration::from_secs(30)).await;
    let view = client.dataset("digits").await.unwrap();
    let parts: std::collections::HashSet<String> =
        view.manifest.shards.iter().map(|s| s.id.to_string()).chain([view.manifest_id.to_string()]).collect();

    // Each node counts exactly the shards and manifest it holds, including
    // the copies it fetched from the ingesting node (their kind came along).
    // (bytes of the dataset's blobs listed, dataset bytes counted, unknown bytes) per node.
    let held = || async {
        let mut held = Vec::new();
        for node in &nodes {
            let blobs = Client::new([node.http_url()]).unwrap().list_blobs().await.unwrap();
            let bytes: u64 = blobs.iter().filter(|b| parts.contains(&b.id.to_string())).map(|b| b.size).sum();
            held.push((bytes, metric(node, dataset).await, metric(node, unknown).await));
        }
        held
    };
    eventually(Duration::from_secs(30), "dataset bytes match the blobs each node holds", || async {
        held().await.iter().all(|&(bytes, counted, unknown)| counted == bytes as f64 && unknown == 0.0)
    })
    .await;
    let held = held().await;
    let mut sizes = std::collections::HashMap::new();
    for node in &nodes {
        for blob in Client::new([node.http_url()]).unwrap().list_blobs().await.unwrap() {
            sizes.insert(blob.id.to_string(), blob.size);
        }
    }
    let shards: u64 = view.manifest.shards.iter().map(|s| sizes[&s.id.to_string()]).sum();
    let total: f64 = held.iter().map(|h| h.1).sum();
    eprintln!("dataset bytes per node {held:?}; shards {shards} bytes, two copies each");
    assert!(shards > 0 && total >= 2.0 * shards as f64, "{total} < 2 x {shards}");

    let job = client.submit_job(&spec("digits-metrics", vec![], EnsembleSpec::Single, 10)).await.unwrap();
    finished(&client, &job.to_string(), Duration::from_secs(120)).await;
    eventually(Duration::from_secs(10), "every node counts one completed job", || async {
        for node in &nodes {
            let open =
                metric(node, "mass_jobs{state=\"pending\"}").await + metric(node, "mass_jobs{state=\"running\"}").await;
            if metric(node, completed).await != 1.0 || open != 0.0 {
                return false;
            }
        }
        true
    })
    .await;
    let mut sums = [0.0; 4];
    for node in &nodes {
        for (sum, name) in sums.iter_mut().zip([
            "mass_blob_bytes{kind=\"model\"}",
            "mass_blob_bytes{kind=\"pipeline\"}",
            "mass_blob_bytes{kind=\"checkpoint\"}",
            "mass_compute_finished_total{kind=\"training\"}",
        ]) {
            *sum += metric(node, name).await;
        }
    }
    eprintln!("after the job, summed over nodes: model, pipeline, checkpoint bytes, training tasks {sums:?}");
    assert!(sums.iter().all(|s| *s > 0.0), "{sums:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_validation_trains_its_folds_across_nodes_and_shards_are_judged_where_they_live() {
    let mut cluster = Cluster::new();
    let nodes = mesh(&mut cluster, 3).await;
    digits_on(&nodes[0], 240).await;
    let client = Client::new([nodes[1].http_url()]).unwrap();
    crate::support::shards_settled(&client, "digits", Duration::from_secs(30)).await;
    let mut job = spec("digits-cv", vec![64], EnsembleSpec::Single, 40);
    job.cv = Some(5);
    let id = client.submit_job(&job).await.unwrap().to_string();
    let record = finished(&client, &id, Duration::from_secs(240)).await;
    assert_eq!(record.folds.len(), 5, "{:?}", record.folds);
    let trainers: std::collections::BTreeSet<&String> = record.folds.iter().filter_map(|t| t.peer.as_ref()).collect();
    assert!(trainers.len() >= 2, "the folds all trained on {trainers:?}");

    let model = client.model("digits-cv").await.unwrap().manifest;
    let cv = model.cross_validation.clone().expect("the model carries its cross-validation");
    let test = model.evaluation.accuracy.unwrap();
    eprintln!("digits, 5-fold cross-validation: {:.4} +/- {:.4} {:?}; test {test:.4}", cv.mean, cv.sd, cv.folds);
    assert_eq!(cv.folds.len(), 5);
    assert!(
        (cv.mean - test).abs() <= 0.02,
        "fold mean {} is more than 2 points from the test accuracy {test}",
        cv.mean
    );
    let scores: Vec<f64> = record.folds.iter().map(|t| t.test_score.unwrap()).collect();
    assert_eq!(scores, cv.folds, "the record's fold scores are the model's");

    // Each evaluation (the model's, then each fold's) judges every shard
    // once, on a node that holds it: a shard the driver lacks is judged
    // by another node.
    let view = client.dataset("digits").await.unwrap();
    let driver = record.drivers.last().unwrap();
    let elsewhere = view.shard_holders.iter().filter(|holders| !holders.contains(driver)).count();
    let mut judged = Vec::new();
    for node in &nodes {
        judged
            .push((node.peer_id() == driver.as_str(), crate::support::metric(node, "mass_shards_judged_total").await));
    }
    eprintln!("shards judged (driver?, count): {judged:?}; {elsewhere} shard(s) not on the driver");
    let total: f64 = judged.iter().map(|j| j.1).sum();
    assert!(total >= 6.0 * view.manifest.shards.len() as f64, "{judged:?}");
    if elsewhere > 0 {
        assert!(judged.iter().any(|(is_driver, n)| !is_driver && *n > 0.0), "{judged:?}");
    }

    job.cv = Some(1);
    job.model = "digits-cv1".into();
    let err = client.submit_job(&job).await.unwrap_err().to_string();
    assert!(err.contains("cv: 1 folds"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_survives_the_death_of_its_driver() {
    let mut cluster = Cluster::new();
    let mut nodes = mesh(&mut cluster, 3).await;
    digits_on(&nodes[0], 240).await;
    let observer = Client::new([nodes[0].http_url()]).unwrap();
    // Enough work that the driver is still busy when it dies.
    let job = spec("digits-slow", vec![256], EnsembleSpec::Bagging { members: 8 }, 400);
    let id = observer.submit_job(&job).await.unwrap().to_string();
    let started = poll(&observer, &id, Duration::from_secs(30), "a driver starts the job", |r| {
        r.state == JobState::Running && !r.tasks.is_empty()
    })
    .await;
    let driver = started.drivers[0].clone();
    // Epochs and losses of tasks running on other nodes reach this one by gossip.
    eventually(Duration::from_secs(20), "training progress gossiped from another node", || async {
        observer.job_progress(&id).await.is_ok_and(|live| {
            live.iter().any(|t| t.peer != nodes[0].peer_id() && t.epoch >= 1 && t.epochs == 400 && t.loss.is_finite())
        })
    })
    .await;
    let victim = nodes.iter().position(|n| n.peer_id() == driver).unwrap();
    nodes[victim].kill();
    let survivor = Client::new([nodes[(victim + 1) % 3].http_url()]).unwrap();
    let record = finished(&survivor, &id, Duration::from_secs(240)).await;
    assert!(record.drivers.len() >= 2 && record.drivers[0] == driver, "no takeover recorded: {:?}", record.drivers);
    let evaluation = record.evaluation.unwrap();
    assert!(evaluation.score() > 0.9);
    // How far to trust it: ranking, calibration, and degraded input.
    assert!(evaluation.roc_auc.unwrap() > 0.95, "{evaluation:?}");
    assert!((0.0..0.2).contains(&evaluation.calibration_error.unwrap()), "{evaluation:?}");
    let report: Vec<(&str, f64)> =
        evaluation.robustness.iter().map(|c| (c.perturbation.as_str(), c.metric.unwrap())).collect();
    let named: Vec<&str> = report.iter().map(|r| r.0).collect();
    assert_eq!(
        named,
        [
            "gaussian noise 0.1 sd",
            "gaussian noise 0.5 sd",
            "gaussian noise 1 sd",
            "10% of features missing",
            "30% of features missing"
        ],
        "digits has no categories to make unseen"
    );
    assert!(report[0].1 > report[2].1 && report[3].1 > report[4].1, "more damage, lower accuracy: {report:?}");
    assert!(report.iter().all(|r| r.1 <= evaluation.score() + 0.02), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_job_stops_and_bad_jobs_are_refused_before_any_work() {
    let mut cluster = Cluster::new();
    let nodes = mesh(&mut cluster, 2).await;
    digits_on(&nodes[0], 300).await;
    let client = Client::new([nodes[1].http_url()]).unwrap();
    eventually(Duration::from_secs(10), "the dataset is known", || async { client.dataset("digits").await.is_ok() })
        .await;
    let id = client
        .submit_job(&spec("digits-cancel", vec![256], EnsembleSpec::Bagging { members: 6 }, 2000))
        .await
        .unwrap()
        .to_string();
    poll(&client, &id, Duration::from_secs(30), "the job runs", |r| r.state == JobState::Running).await;
    client.cancel_job(&id).await.unwrap();
    // It stays cancelled, and no model is named.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(client.job(&id).await.unwrap().state, JobState::Cancelled);
    assert!(client.get_ref("model/digits-cancel").await.is_err());
    let again = client.cancel_job(&id).await.unwrap_err().to_string();
    assert!(again.contains("409") && again.contains("already Cancelled"), "{again}");
    // Asked to wait for its next change, an ended job answers at once.
    let asked = std::time::Instant::now();
    assert_eq!(client.job_changed(&id, Duration::from_secs(30)).await.unwrap().state, JobState::Cancelled);
    assert!(asked.elapsed() < Duration::from_secs(10), "an ended job kept the caller waiting");
    let err = client.job_changed(&id, Duration::from_millis(30_001)).await.unwrap_err().to_string();
    assert!(err.contains("400") && err.contains("wait_ms: 30001; at most 30000"), "{err}");

    let mut bad = spec("x", vec![8], EnsembleSpec::Single, 1);
    bad.dataset = "missing".into();
    let err = client.submit_job(&bad).await.unwrap_err().to_string();
    assert!(err.contains("422") && err.contains("no dataset named 'missing'"), "{err}");
    let err = client.submit_job(&spec("x", vec![0], EnsembleSpec::Single, 1)).await.unwrap_err().to_string();
    assert!(err.contains("spec.learner.mlp.hidden"), "{err}");
    let err =
        client.submit_job(&spec("x", vec![8], EnsembleSpec::Bagging { members: 0 }, 1)).await.unwrap_err().to_string();
    assert!(err.contains("bagging needs 1 to 256 members"), "{err}");
    let err = client.submit_job(&spec("bad name!", vec![8], EnsembleSpec::Single, 1)).await.unwrap_err().to_string();
    assert!(err.contains("400") && err.contains("model name"), "{err}");
    assert!(client.jobs().await.unwrap().len() == 1, "refused jobs left records");
}

#[tokio::test(flavor = "multi_thread")]
async fn data_parallel_training_averages_workers_each_round_into_one_model() {
    let mut cluster = Cluster::new();
    let nodes = mesh(&mut cluster, 3).await;
    digits_on(&nodes[0], 240).await;
    let client = Client::new([nodes[2].http_url()]).unwrap();
    crate::support::shards_settled(&client, "digits", Duration::from_secs(30)).await;
    let job = spec("digits-dp", vec![64], EnsembleSpec::DataParallel { workers: 3, rounds: 4 }, 10);
    let id = client.submit_job(&job).await.unwrap().to_string();
    let record = finished(&client, &id, Duration::from_secs(120)).await;
    assert_eq!(record.rounds_done, 4);
    assert_eq!(record.tasks.len(), 3);
    let shards: usize = record.tasks.iter().map(|t| t.shards.len()).sum();
    assert_eq!(shards, 8, "every shard belongs to exactly one worker");
    let accuracy = record.evaluation.unwrap().score();
    eprintln!("digits, data-parallel over 3 workers x 4 rounds: {accuracy:.4}");
    assert!(accuracy >= 0.93, "{accuracy}");

    // Stacking: bagging's members, combined by a meta-model fitted on rows
    // none of them trained on.
    let job = spec("digits-stack", vec![32], EnsembleSpec::Stacking { members: 4 }, 30);
    let id = client.submit_job(&job).await.unwrap().to_string();
    let record = finished(&client, &id, Duration::from_secs(120)).await;
    let members: Vec<f64> = record.tasks.iter().map(|t| t.test_score.unwrap()).collect();
    let mean = members.iter().sum::<f64>() / members.len() as f64;
    let stacked = record.evaluation.unwrap().score();
    eprintln!("digits, stacking of 4: {stacked:.4} (members mean {mean:.4})");
    assert!(stacked >= mean, "stacked {stacked} below its mean member {mean}");
    assert!(record.tasks.iter().all(|t| t.curve.len() == 30), "every member keeps its training curve");
}
