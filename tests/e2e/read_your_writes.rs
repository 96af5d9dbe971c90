//! What a client was told exists can be used at once through every node:
//! a dataset, a job, a model and a ref written through one node of five,
//! read at once through each of the others, are never "not found".

use std::time::Duration;

use mass_protocol::jobs::{EnsembleSpec, JobSpec, Learner, ModelSpec};
use mass_sdk::{Client, IngestRequest};
use serde_json::json;

use crate::support::{Cluster, FAST_CONFIG, finished, mesh};

fn local_data(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data").join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_through_one_node_is_found_at_once_through_each_of_the_others() {
    let mut cluster = Cluster::with_config(FAST_CONFIG);
    let nodes = mesh(&mut cluster, 5).await;
    let clients: Vec<Client> = nodes.iter().map(|n| Client::new([n.http_url()]).unwrap()).collect();

    // A dataset ingested through node 0, then at once trained on through
    // node 1 (the sequence a new user types) and listed through the rest.
    let request = IngestRequest { name: "iris".into(), label: "label".into(), ..Default::default() };
    clients[0].ingest_csv(&local_data("iris.csv"), &request).await.unwrap();
    let spec = JobSpec {
        model: "iris".into(),
        dataset: "iris".into(),
        pipeline: Default::default(),
        spec: ModelSpec { learner: Learner::Linear, epochs: Some(20), ..ModelSpec::default() },
        ensemble: EnsembleSpec::Single,
        seed: 3,
        task: None,
        placement: Default::default(),
        trial: None,
        cv: None,
    };
    let job = clients[1].submit_job(&spec).await.expect("node 1 knows the dataset node 0 just took").to_string();
    for (i, client) in clients.iter().enumerate().skip(2) {
        let view = client.dataset("iris").await.unwrap_or_else(|e| panic!("node {i}: {e}"));
        assert_eq!(view.manifest.rows, 150, "node {i}");
        client.job(&job).await.unwrap_or_else(|e| panic!("node {i} does not know job {job} yet: {e}"));
    }

    // The model, once the job that names it completed, answers through
    // every node at once.
    finished(&clients[1], &job, Duration::from_secs(120)).await;
    let row = vec![json!([5.1, 3.5, 1.4, 0.2])];
    for (i, client) in clients.iter().enumerate() {
        let answer = client.predict("iris", &row).await.unwrap_or_else(|e| panic!("node {i}: {e}"));
        assert_eq!(answer.version, 1, "node {i}");
    }

    // Refs: each written through one node, read at once through the others.
    for writer in 0..nodes.len() {
        let blob = clients[writer].put_blob(format!("release {writer}").into_bytes(), true).await.unwrap();
        let name = format!("release/from-{writer}");
        clients[writer].set_ref(&name, &blob.id.to_string()).await.unwrap();
        for (i, client) in clients.iter().enumerate().filter(|(i, _)| *i != writer) {
            let view = client.get_ref(&name).await.unwrap_or_else(|e| panic!("{name} through node {i}: {e}"));
            assert_eq!(view.target, blob.id, "{name} through node {i}");
        }
    }
    // A name nobody wrote is still "not found", after the peers were asked.
    let unknown = clients[2].get_ref("release/never").await.unwrap_err().to_string();
    assert!(unknown.contains("no ref named 'release/never'"), "{unknown}");
}
