//! Byzantine workers in data-parallel training (issue 16): one `mass`
//! process in five lies about every round it trains (started with
//! `MASS_FAULT_BYZANTINE`), and the robust average with the driver's cap on
//! claimed rows keeps the model within 2 points of the clean run's accuracy.
//!
//! Every worker starts from the same weights and trains its task's shards
//! with the job's seed, so a run's model depends only on which task the
//! liar trains, not on timing: the same placement gives the same accuracy
//! to the row. Which task the liar gets follows from the fresh peer ids,
//! so each run of the test draws one of five outcomes per lie; the table
//! says which task it trained.

use std::time::{Duration, Instant};

use mass_protocol::jobs::{EnsembleSpec, JobRecord, Placement};
use mass_sdk::{Client, local::LocalNode};

use crate::{
    jobs::{digits_on, spec},
    support::{Cluster, eventually, finished, lists_up_with_hardware, mass_exit, mesh, shards_settled},
};

/// The node that lies (restarted with the variable set for each lie).
const LIAR: usize = 4;
const WORKERS: usize = 5;
const ROUNDS: usize = 3;

/// The same job each run but for its model name (which makes it a new job).
fn job(name: &str) -> mass_protocol::jobs::JobSpec {
    let mut job = spec(
        &format!("digits-byz-{name}"),
        vec![32],
        EnsembleSpec::DataParallel { workers: WORKERS, rounds: ROUNDS },
        10,
    );
    // One task per node, so the liar trains one of the five.
    job.placement = Placement::Uniform;
    job
}

async fn run(client: &Client, name: &str) -> (JobRecord, f64, Duration) {
    let started = Instant::now();
    let id = client.submit_job(&job(name)).await.unwrap().to_string();
    let record = finished(client, &id, Duration::from_secs(90)).await;
    assert_eq!(record.rounds_done, ROUNDS);
    let accuracy = record.evaluation.as_ref().unwrap().score();
    (record, accuracy, started.elapsed())
}

fn trainers(record: &JobRecord) -> Vec<&str> {
    record.tasks.iter().filter_map(|t| t.peer.as_deref()).collect()
}

/// The tasks (their indices, shards `i` and `i + 5`) that `peer` trained last.
fn tasks_of(record: &JobRecord, peer: &str) -> Vec<usize> {
    record.tasks.iter().enumerate().filter(|(_, t)| t.peer.as_deref() == Some(peer)).map(|(i, _)| i).collect()
}

async fn mesh_whole(nodes: &[LocalNode]) {
    let ids: Vec<&str> = nodes.iter().map(LocalNode::peer_id).collect();
    eventually(Duration::from_secs(20), "every node lists every other up with hardware", || async {
        for node in nodes {
            if !lists_up_with_hardware(node, &ids).await {
                return false;
            }
        }
        true
    })
    .await;
}

// In one full CI run (with the coordinate-wise trimmed mean then used) the
// sign-flip run came out 2.8 points below the clean one. Not noise: the
// liar had trained task 0 (shards 0 and 5), and the same liar on the same
// task lands at -2.78 every time; on the other tasks -0.56 to -1.39. The
// trimmed mean drops, in every coordinate, an honest value at the other end
// as well as the liar's, so its result leans away from the liar by an
// amount that depends on which shards the liar held. The robust average
// now drops a far-off model whole and averages the four honest ones: the
// cost of a liar is the rows of its shards (at worst -1.67 points on
// digits, task 0 or 3) and the same for every lie that lands far off.
#[tokio::test(flavor = "multi_thread")]
async fn one_lying_worker_in_five_moves_data_parallel_accuracy_less_than_two_points() {
    let started = Instant::now();
    let mut cluster = Cluster::new();
    let mut nodes = mesh(&mut cluster, WORKERS).await;
    // Ten shards: two per worker.
    digits_on(&nodes[0], 180).await;
    let client = Client::new([nodes[0].http_url()]).unwrap();
    shards_settled(&client, "digits", Duration::from_secs(30)).await;
    let liar = nodes[LIAR].peer_id().to_owned();

    let (clean, baseline, took) = run(&client, "clean").await;
    assert_eq!(clean.tasks.len(), WORKERS);
    assert!(baseline >= 0.9, "the clean run reaches only {baseline}: too weak a model to tell lies apart");
    let mut table = vec![("clean".to_owned(), baseline, took, tasks_of(&clean, &liar), 0)];

    for lie in ["sign-flip", "scale", "label-flip", "rows"] {
        assert!(nodes[LIAR].stop(Duration::from_secs(10)), "the liar did not stop on SIGTERM");
        let mut options = cluster.options_for(&format!("node{LIAR}"));
        options.bootstrap = vec![nodes[0].listen_addr().to_owned()];
        options.env = vec![("MASS_FAULT_BYZANTINE".into(), lie.into())];
        nodes[LIAR] = cluster.start(options);
        assert_eq!(nodes[LIAR].peer_id(), liar, "restarted on its data dir, the liar keeps its identity");
        mesh_whole(&nodes).await;
        let announced = format!("this node lies in data-parallel training: {lie}");
        assert!(cluster.log_of(&format!("node{LIAR}")).contains(&announced), "the liar did not say it lies: {lie}");

        let lied_before = lies_told(&cluster, lie);
        let (record, accuracy, took) = run(&client, lie).await;
        let lied = lies_told(&cluster, lie) - lied_before;
        table.push((lie.to_owned(), accuracy, took, tasks_of(&record, &liar), lied));
        assert!(
            trainers(&record).contains(&liar.as_str()),
            "{lie}: the liar trained no task, so the run proves nothing: {:?}",
            trainers(&record)
        );
        // Every round, in practice (one task per node); a round the liar
        // was too busy for would pass to an honest node.
        assert!(lied >= 1, "{lie}: the liar trained but never lied");
    }

    // The table first, so a failure shows every run.
    eprintln!("digits, data-parallel over {WORKERS} workers x {ROUNDS} rounds, one liar ({liar}):");
    eprintln!("  {:<11} {:>8} {:>9} {:>6}  liar's task  rounds lied", "run", "accuracy", "vs clean", "job s");
    for (name, accuracy, took, tasks, lied) in &table {
        let delta = (accuracy - baseline) * 100.0;
        let tasks = format!("{tasks:?}");
        eprintln!("  {name:<11} {accuracy:>8.4} {delta:>+7.2}pt {:>6.1}  {tasks:<11}  {lied}", took.as_secs_f64());
    }
    eprintln!("  whole test {:.1} s", started.elapsed().as_secs_f64());
    for (name, accuracy, _, _, _) in &table[1..] {
        assert!(
            *accuracy >= baseline - 0.02,
            "{name}: accuracy {accuracy:.4} is more than 2 points below the clean run's {baseline:.4}"
        );
    }
}

/// Rounds the liar has lied about so far, by its log.
fn lies_told(cluster: &Cluster, lie: &str) -> usize {
    cluster.log_of(&format!("node{LIAR}")).matches(&format!("lying about this data-parallel round: {lie}")).count()
}

#[test]
fn a_node_asked_to_tell_an_unknown_lie_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (code, _, stderr) = mass_exit(
        &["node", "start", "--data-dir", data_dir, "--http", "127.0.0.1:0", "--no-mdns"],
        &[("MASS_FAULT_BYZANTINE", "flip")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("MASS_FAULT_BYZANTINE='flip'"), "{stderr}");
    assert!(stderr.contains("sign-flip, scale, label-flip or rows"), "{stderr}");
    assert!(!dir.path().join("store").exists(), "it refused before opening the store");
}
