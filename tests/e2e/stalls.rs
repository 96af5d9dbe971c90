//! A job driver stalled with SIGSTOP, then resumed: the next-ranked node
//! takes the job over, and when the stalled one wakes up it finds the job
//! is no longer its own. One model, one completion.

use std::time::Duration;

use mass_protocol::jobs::{EnsembleSpec, JobState};
use mass_sdk::Client;

use crate::{
    jobs::{digits_on, spec},
    serving::{Stalled, signal},
    support::{Cluster, eventually, finished, mesh, metric, poll},
};

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_driver_that_wakes_up_leaves_the_job_to_its_successor() {
    let mut cluster = Cluster::new();
    let nodes = mesh(&mut cluster, 3).await;
    digits_on(&nodes[0], 240).await;
    let client = Client::new([nodes[0].http_url()]).unwrap();
    let job = spec("digits-stalled", vec![128], EnsembleSpec::Bagging { members: 6 }, 200);
    let id = client.submit_job(&job).await.unwrap().to_string();
    let started = poll(&client, &id, Duration::from_secs(30), "a driver starts the job", |r| {
        r.state == JobState::Running && !r.tasks.is_empty()
    })
    .await;
    let first = nodes.iter().find(|n| n.peer_id() == started.drivers[0]).expect("the driver is one of the nodes");
    let observer = Client::new([nodes.iter().find(|n| n.peer_id() != first.peer_id()).unwrap().http_url()]).unwrap();

    signal(first, "STOP");
    let stalled = Stalled(first);
    let took_over = eventually(Duration::from_secs(60), "another node takes the job over", || async {
        observer.job(&id).await.is_ok_and(|r| r.drivers.iter().any(|d| d != first.peer_id()))
    })
    .await;
    drop(stalled);
    let record = finished(&observer, &id, Duration::from_secs(240)).await;
    let model = record.model.expect("a completed job names its model");
    eprintln!("taken over {took_over:?} after the stall; drivers {:?}", record.drivers);

    // The woken driver stops driving without publishing anything.
    let first_client = Client::new([first.http_url()]).unwrap();
    eventually(Duration::from_secs(60), "the woken driver drives nothing", || async {
        first_client.job(&id).await.is_ok_and(|r| r.state == JobState::Completed)
            && metric(first, "mass_driving{kind=\"job\"}").await == 0.0
    })
    .await;
    let view = observer.model("digits-stalled").await.unwrap();
    assert_eq!(view.versions.len(), 1, "one job, one model: {:?}", view.versions);
    assert_eq!(view.manifest_id, model);
    let again = observer.job(&id).await.unwrap();
    assert_eq!((again.state, again.model), (JobState::Completed, Some(model)), "the record went back");
}
