//! Elastic membership, the joining way (issue 16, item 4): a node that joins
//! a working mesh takes its share of serving replicas and of new training
//! work, and `mass peers` shows it.

use std::time::{Duration, Instant};

use mass_protocol::{api::PeerView, jobs::EnsembleSpec};
use mass_sdk::{Client, local::LocalNode};
use serde_json::json;

use crate::{
    jobs::{digits_on, spec},
    support::{Cluster, all_list_each_other, eventually, finished, mass, mesh, peers, shards_settled},
};

/// Enough models that a fourth node is a replica of none (2 replicas each,
/// ranked per model) with probability (1/2)^12.
const MODELS: usize = 12;
const MEMBERS: usize = 8;

/// A counter the node advertises (0 when absent).
fn advertised(view: &PeerView, name: &str) -> u32 {
    view.load.as_ref().and_then(|l| l.queues.iter().find(|q| q.name == name)).map_or(0, |q| q.depth)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_joining_node_takes_its_share_of_replicas_and_of_new_training_shown_in_mass_peers() {
    let started = Instant::now();
    let mut cluster = Cluster::new();
    let nodes = mesh(&mut cluster, 3).await;
    digits_on(&nodes[0], 300).await;
    let client = Client::new([nodes[0].http_url()]).unwrap();
    shards_settled(&client, "digits", Duration::from_secs(30)).await;
    let names: Vec<String> = (0..MODELS).map(|i| format!("digits-share-{i}")).collect();
    let mut jobs = Vec::new();
    for name in &names {
        jobs.push(client.submit_job(&spec(name, vec![], EnsembleSpec::Single, 2)).await.unwrap().to_string());
    }
    for id in &jobs {
        finished(&client, id, Duration::from_secs(120)).await;
    }

    let joiner = cluster.spawn(&[&nodes[2]]);
    let id = joiner.peer_id().to_owned();
    let all: Vec<&LocalNode> = nodes.iter().chain([&joiner]).collect();
    let ids: Vec<&str> = all.iter().map(|n| n.peer_id()).collect();
    all_list_each_other(&all, Duration::from_secs(20), "every node lists the joiner up").await;

    // Serving: the joiner ranks among the replicas of some models; it loads
    // each, answers for it from its own copy, and advertises the count.
    let took = eventually(Duration::from_secs(30), "the joiner serves its share of the models", || async {
        let Some(mine) = replicas_on(&client, &names, &id).await else { return false };
        let table = peers(&nodes[0]).await;
        let Some(row) = table.iter().find(|p| p.peer_id == id) else { return false };
        !mine.is_empty() && advertised(row, "serving.replicas") as usize == mine.len()
    })
    .await;
    let mine = replicas_on(&client, &names, &id).await.unwrap();
    let through_joiner = Client::new([joiner.http_url()]).unwrap();
    for name in &mine {
        let answer = through_joiner.predict(name, &[json!(vec![0.0; 64])]).await.unwrap();
        assert_eq!(answer.served_by, id, "{name}: the joiner is a replica but did not answer from its own copy");
    }
    eprintln!(
        "the joiner serves {} of {MODELS} models (2 replicas each over 4 nodes: 6 expected), {took:?} after it was listed",
        mine.len()
    );

    // Training: a new bagging job places members on the joiner too.
    let job = client.submit_job(&spec("digits-share-bag", vec![], EnsembleSpec::Bagging { members: MEMBERS }, 2)).await;
    let record = finished(&client, &job.unwrap().to_string(), Duration::from_secs(180)).await;
    let trained = record.tasks.iter().filter(|t| t.peer.as_deref() == Some(id.as_str())).count();
    let per_node: Vec<usize> =
        ids.iter().map(|p| record.tasks.iter().filter(|t| t.peer.as_deref() == Some(*p)).count()).collect();
    assert!(trained >= 1, "the joiner trained none of {MEMBERS} members: {per_node:?} (old nodes, then joiner)");

    // `mass peers` through an old node shows the joiner's share.
    let short: String = id.chars().rev().take(8).collect::<String>().chars().rev().collect();
    let joiner_row = || {
        let (ok, stdout, stderr) = mass(&["peers", "--node", nodes[0].http_url()]);
        assert!(ok, "{stderr}");
        stdout.lines().find(|l| l.contains(&short)).unwrap_or_default().to_owned()
    };
    // Adverts carry the counts every few seconds; under the whole suite
    // one can come late. The bagging job's model counts too where the
    // joiner is among its replicas.
    let served: Vec<String> = names.iter().cloned().chain(["digits-share-bag".to_owned()]).collect();
    eventually(Duration::from_secs(30), "mass peers shows the joiner's training and replicas", || async {
        let Some(now) = replicas_on(&client, &served, &id).await else { return false };
        let row = joiner_row();
        now.len() >= mine.len()
            && row.contains(&format!("replica of {} model(s)", now.len()))
            && trained_in(&row) >= trained
    })
    .await;
    let row = joiner_row();
    eprintln!("bagging of {MEMBERS}: members per node {per_node:?} (old nodes, then joiner)");
    eprintln!("mass peers row: {}", row.split_whitespace().collect::<Vec<_>>().join(" "));
    eprintln!("whole test {:.1} s", started.elapsed().as_secs_f64());
}

/// The models whose replicas (as the client's node ranks them) include `peer`.
async fn replicas_on(client: &Client, names: &[String], peer: &str) -> Option<Vec<String>> {
    let mut mine = Vec::new();
    for name in names {
        if client.model(name).await.ok()?.replicas.iter().any(|r| r == peer) {
            mine.push(name.clone());
        }
    }
    Some(mine)
}

/// The training pieces a `mass peers` row says the node has done.
fn trained_in(row: &str) -> usize {
    row.split("done: ")
        .nth(1)
        .and_then(|done| done.split(", ").find_map(|d| d.strip_prefix("training ")))
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
