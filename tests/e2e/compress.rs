//! Compression as new versions of a model (issue 14), on digits: int8
//! loses at most 0.5 points at about 4x smaller weights, pruning to 80%
//! (with fine-tuning) at most 1 point, a student of a bagging-of-8 keeps at
//! least 80% of the ensemble's gain over its members (trained where the
//! shards live, on several nodes); bad requests are refused by name and
//! register nothing.

use std::{path::PathBuf, time::Duration};

use mass_protocol::{
    jobs::{CompressMethod, EnsembleSpec, JobSpec, Learner, ModelSpec},
    serving::CompressRequest,
};
use mass_sdk::Client;

use crate::{
    serving::{as_rows, test_rows},
    support::{Cluster, finished, mass, mesh, shards_settled},
};

fn shared(name: &str) -> PathBuf {
    crate::support::shared_dataset(name)
}

fn spec(model: &str, hidden: Vec<usize>, ensemble: EnsembleSpec) -> JobSpec {
    JobSpec {
        model: model.into(),
        dataset: "digits".into(),
        pipeline: Default::default(),
        spec: ModelSpec {
            learner: Learner::Mlp { hidden },
            epochs: Some(60),
            batch_size: 32,
            learning_rate: 1e-3,
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

/// Trains a job to its end and returns its test accuracy.
async fn train(client: &Client, spec: &JobSpec) -> (f64, mass_protocol::jobs::JobRecord) {
    let id = client.submit_job(spec).await.unwrap().to_string();
    let record = finished(client, &id, Duration::from_secs(300)).await;
    (record.evaluation.as_ref().unwrap().score(), record)
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_versions_keep_their_accuracy_and_bad_requests_register_nothing() {
    let mut cluster = Cluster::new();
    let nodes = mesh(&mut cluster, 3).await;
    let request = mass_sdk::IngestRequest {
        name: "digits".into(),
        label: "label".into(),
        shard_rows: Some(240),
        test_rows: Some(shared("digits.test_rows.txt")),
        ..Default::default()
    };
    let client = Client::new([nodes[0].http_url()]).unwrap();
    client.ingest_csv(&shared("digits.csv"), &request).await.unwrap();
    shards_settled(&client, "digits", Duration::from_secs(30)).await;

    let (dense, _) = train(&client, &spec("digits-mlp", vec![128], EnsembleSpec::Single)).await;
    let v1 = client.model("digits-mlp").await.unwrap().manifest_id;

    // int8: a new version, served now, naming its parent.
    let int8 = CompressRequest { quantize: Some("int8".into()), ..Default::default() };
    let v2 = client.compress("digits-mlp", &int8).await.unwrap();
    assert_eq!(v2.version, 2);
    let view = client.model("digits-mlp").await.unwrap();
    assert_eq!((view.version, view.manifest_id), (2, v2.manifest), "the compressed version is served");
    let c = view.manifest.compression.clone().expect("a compression record");
    assert_eq!((c.parent, c.parent_version, &c.method), (v1, 1, &CompressMethod::Int8));
    let quantized = view.manifest.evaluation.score();
    let ratio = c.parent_bytes as f64 / c.bytes as f64;
    eprintln!(
        "digits int8: {quantized:.4} against {dense:.4}, {ratio:.2}x smaller, {:?} against {:?}",
        c.latency, c.parent_latency
    );
    assert!(quantized >= dense - 0.005, "int8 {quantized} lost more than 0.5 points from {dense}");
    assert!((3.5..=4.1).contains(&ratio), "int8 weights {ratio}x smaller, not about 4x");
    assert!(c.latency.one_row_us > 0.0 && c.latency.thousand_rows_ms > 0.0, "{:?}", c.latency);
    // The int8 version answers predictions.
    let rows = test_rows("digits.csv", "digits.test_rows.txt", 100);
    let answer = client.predict("digits-mlp", &as_rows(&rows)).await.unwrap();
    assert_eq!(answer.version, 2);
    let right = answer.predictions.iter().zip(&rows).filter(|(p, (_, label))| p.text() == *label).count();
    assert!(right >= 90, "{right} of 100 rows right from the int8 version");

    // Pruning version 1 to 80%, fine-tuned keeping the mask.
    let prune = CompressRequest { version: Some(1), prune: Some(0.8), fine_tune_epochs: Some(5), ..Default::default() };
    let v3 = client.compress("digits-mlp", &prune).await.unwrap();
    let pruned = client.model_version("digits-mlp", &v3.manifest.to_string()).await.unwrap();
    let c = pruned.compression.clone().unwrap();
    let score = pruned.evaluation.score();
    eprintln!("digits pruned 80%: {score:.4} against {dense:.4}, {} bytes against {}", c.bytes, c.parent_bytes);
    assert_eq!(c.parent, v1);
    assert!(score >= dense - 0.01, "pruning to 80% lost more than 1 point: {score} from {dense}");
    assert!(c.sparsity.is_some_and(|s| (0.79..0.81).contains(&s)), "{:?}", c.sparsity);
    assert!(c.bytes * 2 < c.parent_bytes, "sparse storage {} bytes of {}", c.bytes, c.parent_bytes);

    // Bad requests: refused by name, nothing registered.
    let refused = |request: CompressRequest, model: &'static str| {
        let client = &client;
        async move { client.compress(model, &request).await.unwrap_err().to_string() }
    };
    let impossible = refused(CompressRequest { prune: Some(1.0), ..Default::default() }, "digits-mlp").await;
    assert!(impossible.contains("sparsity 1 is impossible"), "{impossible}");
    let zero_width =
        refused(CompressRequest { distill: Some("mlp:64,0".into()), ..Default::default() }, "digits-mlp").await;
    assert!(zero_width.contains("student mlp:64,0 does not fit"), "{zero_width}");
    let single = refused(
        CompressRequest { distill: Some("mlp:32".into()), version: Some(1), ..Default::default() },
        "digits-mlp",
    )
    .await;
    assert!(single.contains("one network already"), "{single}");
    let unknown = refused(int8.clone(), "no-such-model").await;
    assert!(unknown.contains("no model named 'no-such-model'"), "{unknown}");
    let after = client.model("digits-mlp").await.unwrap();
    assert_eq!((after.versions.len(), after.version), (3, 3), "a refused request registered a version");
    assert!(client.model("no-such-model").await.is_err());

    // Distillation of a bagging-of-8 (each member on its own shards).
    let (ensemble, record) = train(&client, &spec("digits-bag", vec![64], EnsembleSpec::Bagging { members: 8 })).await;
    let members: Vec<f64> = record.tasks.iter().map(|t| t.test_score.unwrap()).collect();
    let single = members.iter().sum::<f64>() / members.len() as f64;
    let distill = CompressRequest { distill: Some("mlp:64".into()), ..Default::default() };
    let student = client.compress("digits-bag", &distill).await.unwrap();
    let student = client.model_version("digits-bag", &student.manifest.to_string()).await.unwrap();
    let distilled = student.evaluation.score();
    let c = student.compression.clone().unwrap();
    eprintln!(
        "digits bagging of 8: members {single:.4}, ensemble {ensemble:.4}, student mlp:64 {distilled:.4}; \
         {} bytes against {}",
        c.bytes, c.parent_bytes
    );
    assert_eq!(student.members.len(), 1);
    // Trained where the shards live: the workers' rounds ran on several nodes.
    assert!(student.trained_on.len() >= 2, "the student was trained on {:?} alone", student.trained_on);
    assert!(ensemble > single, "the ensemble {ensemble} gains nothing over its members {single}");
    assert!(
        distilled - single >= 0.8 * (ensemble - single),
        "the student {distilled} keeps under 80% of the gain of {ensemble} over {single}"
    );

    // `mass models show` lists the variants side by side.
    let (ok, stdout, stderr) = mass(&["models", "show", "digits-mlp", "--node", nodes[0].http_url()]);
    assert!(ok, "{stderr}");
    for expected in ["variants", "trained", "int8 of v1", "prune 0.8 + 5 epochs of v1"] {
        assert!(stdout.contains(expected), "'{expected}' missing from:\n{stdout}");
    }
    // Rolling back is promoting the parent.
    let (ok, _, stderr) = mass(&["models", "promote", "digits-mlp", "--version", "1", "--node", nodes[0].http_url()]);
    assert!(ok, "{stderr}");
    assert_eq!(client.model("digits-mlp").await.unwrap().version, 1);
}
