//! A crashed node is marked down; restarted on its data dir it comes back
//! with the same PeerId.

use std::time::Duration;

use mass_sdk::api::PeerState;

use crate::support::{Cluster, eventually, lists_up_with_hardware, state_of};

#[tokio::test(flavor = "multi_thread")]
async fn killed_node_is_marked_down_and_returns_with_the_same_peer_id() {
    let mut cluster = Cluster::new();
    let a = cluster.spawn(&[]);
    let b = cluster.spawn(&[&a]);
    let mut c = cluster.spawn(&[&a]);
    let ids = [a.peer_id().to_owned(), b.peer_id().to_owned(), c.peer_id().to_owned()];
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    eventually(Duration::from_secs(10), "mesh forms", || async {
        lists_up_with_hardware(&a, &id_refs).await && lists_up_with_hardware(&b, &id_refs).await
    })
    .await;

    let c_id = ids[2].clone();
    c.kill();
    // down_after is 1.5 s in the test config; allow a tick and scheduling slack.
    let took = eventually(Duration::from_secs(5), "a and b mark the killed node down", || async {
        state_of(&a, &c_id).await == Some(PeerState::Down) && state_of(&b, &c_id).await == Some(PeerState::Down)
    })
    .await;
    eprintln!("killed node marked down after {took:?}");

    let mut options = c.options().clone();
    options.bootstrap = vec![a.listen_addr().to_owned()];
    drop(c);
    let c = cluster.start(options);
    assert_eq!(c.peer_id(), c_id, "a restarted node keeps its PeerId");
    eventually(Duration::from_secs(10), "the restarted node is up again everywhere", || async {
        state_of(&a, &c_id).await == Some(PeerState::Up)
            && state_of(&b, &c_id).await == Some(PeerState::Up)
            && lists_up_with_hardware(&c, &id_refs).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_a_node_cleanly() {
    let mut cluster = Cluster::new();
    let mut a = cluster.spawn(&[]);
    let endpoints = a.options().data_dir.join(mass_sdk::api::ENDPOINTS_FILE);
    assert!(endpoints.exists());
    assert!(a.stop(Duration::from_secs(10)), "node did not exit on SIGTERM:\n{}", cluster.log_of("node0"));
    assert!(!endpoints.exists(), "a clean stop removes the endpoints file");
    assert!(cluster.log_of("node0").contains("shutting down"));
}
