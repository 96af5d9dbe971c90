//! Batch prediction as a checkpointed job (issue 15): its driver killed
//! midway, the next-ranked node scores only the shards the record does not
//! list and writes what an uninterrupted run writes.

use std::time::Duration;

use mass_protocol::{
    jobs::{EnsembleSpec, JobSpec, Learner, ModelSpec},
    serving::{ScoringRecord, ScoringState},
};
use mass_sdk::{Client, IngestRequest};

use crate::support::{Cluster, FAST_CONFIG, finished, mesh, shards_settled, shared_dataset};

/// Polls scoring job `id` through `client` until `done` says so.
async fn scoring_until(
    client: &Client,
    id: &mass_protocol::ContentId,
    within: Duration,
    what: &str,
    done: impl Fn(&ScoringRecord) -> bool,
) -> ScoringRecord {
    crate::support::poll_record(within, what, || client.scoring(id), done).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scoring_job_survives_its_driver_and_writes_what_an_uninterrupted_run_writes() {
    // One shard at a time, so that the job is caught midway.
    let mut cluster = Cluster::with_config(&format!("{FAST_CONFIG}\n[serving]\nscoring_parallel = 1\n"));
    let mut nodes = mesh(&mut cluster, 3).await;
    let urls: Vec<String> = nodes.iter().map(|n| n.http_url().to_owned()).collect();
    let client = Client::new(urls.clone()).unwrap();
    // The model trains on 9 shards; the job scores the same rows as 899 tiny
    // ones, so that it runs for seconds, one shard at a time.
    for (name, shard_rows) in [("digits", 200), ("digits-tiny", 2)] {
        let request = IngestRequest {
            name: name.into(),
            label: "label".into(),
            shard_rows: Some(shard_rows),
            test_rows: Some(shared_dataset("digits.test_rows.txt")),
            ..Default::default()
        };
        client.ingest_csv(&shared_dataset("digits.csv"), &request).await.unwrap();
        shards_settled(&client, name, Duration::from_secs(120)).await;
    }
    let spec = JobSpec {
        model: "digits".into(),
        dataset: "digits".into(),
        pipeline: Default::default(),
        spec: ModelSpec::of(Learner::Linear),
        ensemble: EnsembleSpec::Single,
        seed: 0,
        task: None,
        placement: Default::default(),
        trial: None,
        cv: None,
    };
    let job = client.submit_job(&spec).await.unwrap();
    finished(&client, &job.to_string(), Duration::from_secs(300)).await;

    let whole = client.batch_predict("digits", "digits-tiny").await.unwrap();
    assert_eq!((whole.rows, whole.shard_peers.len()), (1797, 899));
    let accuracy = whole.test.as_ref().and_then(|t| t.accuracy).unwrap();
    assert!(accuracy > 0.9, "test accuracy {accuracy}");

    // Requests that cannot run are refused by name before any job opens.
    let err = client.submit_batch_predict("digits", "nope", None).await.unwrap_err().to_string();
    assert!(err.contains("404") && err.contains("nope"), "{err}");
    let err = client.submit_batch_predict("nope", "digits", None).await.unwrap_err().to_string();
    assert!(err.contains("404") && err.contains("nope"), "{err}");
    let err = client.submit_batch_predict("digits", "digits", Some("digits")).await.unwrap_err().to_string();
    assert!(err.contains("400") && err.contains("into"), "{err}");
    let err = client.scoring(&mass_protocol::ContentId::of(b"no such job")).await.unwrap_err().to_string();
    assert!(err.contains("404") && err.contains("no scoring job"), "{err}");

    let id = client.submit_batch_predict("digits", "digits-tiny", None).await.unwrap();
    let midway = scoring_until(&client, &id, Duration::from_secs(120), "some shards are scored", |r| {
        r.shards.iter().any(Option::is_some) && !r.drivers.is_empty()
    })
    .await;
    assert_eq!(midway.state, ScoringState::Running, "the job ended before its driver could be killed");
    let driver = midway.drivers[0].clone();
    let index = nodes.iter().position(|n| n.peer_id() == driver).unwrap();
    let mut victim = nodes.remove(index);
    victim.kill();

    let survivors = Client::new(nodes.iter().map(|n| n.http_url().to_owned())).unwrap();
    let done = scoring_until(&survivors, &id, Duration::from_secs(180), "the job is over", |r| r.state.is_over()).await;
    assert_eq!(done.state, ScoringState::Completed, "{done:?}");
    assert!(done.drivers.len() >= 2 && done.drivers[0] == driver, "no takeover: {:?}", done.drivers);
    // Asked to wait for its next change, an ended job answers at once.
    let asked = std::time::Instant::now();
    assert_eq!(survivors.scoring_changed(&id, Duration::from_secs(30)).await.unwrap().state, ScoringState::Completed);
    assert!(asked.elapsed() < Duration::from_secs(10), "an ended scoring job kept the caller waiting");
    let err = survivors.scoring_changed(&id, Duration::from_millis(30_001)).await.unwrap_err().to_string();
    assert!(err.contains("400") && err.contains("wait_ms: 30001; at most 30000"), "{err}");
    let scored_before = midway.shards.iter().filter(|s| s.is_some()).count();
    eprintln!("scoring job: driver killed with {scored_before} of 899 shards checkpointed; drivers {:?}", done.drivers);
    for (i, part) in midway.shards.iter().enumerate() {
        if let Some(part) = part {
            assert_eq!(done.shards[i].as_ref(), Some(part), "shard {i}, scored before the kill, was scored again");
        }
    }
    let result = done.result.unwrap();
    assert_eq!(result.blob, whole.blob, "the resumed job wrote other predictions ({scored_before} of 899 kept)");
    assert_eq!(result.test, whole.test);
    let csv = String::from_utf8(survivors.get_blob(&result.blob.to_string()).await.unwrap()).unwrap();
    assert_eq!(csv.lines().count(), 1 + 1797);
    assert!(csv.starts_with("row,split,label,prediction\n0,"), "{}", &csv[..80]);

    // The CLI follows a job through the survivors and downloads its CSV.
    let out = cluster.path().join("predictions.csv");
    let urls = nodes.iter().map(|n| n.http_url()).collect::<Vec<_>>().join(",");
    let args =
        ["models", "batch", "digits", "--dataset", "digits-tiny", "--out", out.to_str().unwrap(), "--node", &urls];
    let (code, stdout, stderr) = crate::support::mass_exit(&args, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("1797 rows of digits-tiny predicted by model/digits v1"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), csv);
}
