//! With a network key, only nodes holding the same key can connect: a node
//! with another key, or none, never appears in any peer table.

use std::time::Duration;

use mass_sdk::local::LocalNode;

use crate::support::{Cluster, eventually, lists_up_with_hardware, mass, peers, read_log};

async fn lists_any(node: &LocalNode, ids: &[&str]) -> bool {
    peers(node).await.iter().any(|p| ids.contains(&p.peer_id.as_str()))
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_with_another_key_or_none_never_join() {
    let mut cluster = Cluster::new();
    let key_a = cluster.path().join("a.key");
    let key_b = cluster.path().join("b.key");
    for key in [&key_a, &key_b] {
        let (ok, stdout, stderr) = mass(&["keygen", key.to_str().unwrap()]);
        assert!(ok && stdout.contains("fingerprint"), "{stdout}{stderr}");
    }

    let mut options = cluster.options();
    options.network_key = Some(key_a.clone());
    let a = cluster.start(options);
    let mut options = cluster.options();
    options.network_key = Some(key_a.clone());
    options.bootstrap = vec![a.listen_addr().to_owned()];
    let b = cluster.start(options);

    // Outsiders that listen, so a mesh node will try to reach them.
    let mut options = cluster.options();
    options.network_key = Some(key_b.clone());
    let other_key = cluster.start(options);
    let keyless = cluster.spawn(&[]);
    let outsider_ids = [other_key.peer_id(), keyless.peer_id()];

    // A mesh node told to bootstrap from the outsiders and from a member.
    let mut options = cluster.options();
    options.network_key = Some(key_a.clone());
    options.bootstrap =
        vec![other_key.listen_addr().to_owned(), keyless.listen_addr().to_owned(), a.listen_addr().to_owned()];
    let c = cluster.start(options);
    let members = [a.peer_id(), b.peer_id(), c.peer_id()];
    eventually(Duration::from_secs(10), "the keyed mesh forms", || async {
        lists_up_with_hardware(&a, &members).await
            && lists_up_with_hardware(&b, &members).await
            && lists_up_with_hardware(&c, &members).await
    })
    .await;

    // Outsiders that try to join through a member are refused at start.
    for (name, key) in [("joiner-b", Some(&key_b)), ("joiner-none", None)] {
        let mut options = cluster.options_for(name);
        options.network_key = key.cloned();
        options.bootstrap = vec![a.listen_addr().to_owned()];
        let log = options.log_file.clone().unwrap();
        let outcome = LocalNode::spawn(options, Duration::from_secs(30));
        assert!(outcome.is_err(), "{name} joined a private mesh");
        let log = read_log(&log);
        assert!(log.contains("could not reach any bootstrap peer") && log.contains("network key"), "{name}: {log}");
        assert!(!log.contains("panicked"), "{log}");
    }

    // Give gossip and mDNS-free dialing several rounds, then look everywhere.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for member in [&a, &b, &c] {
        assert!(!lists_any(member, &outsider_ids).await, "a member lists an outsider: {:?}", peers(member).await);
    }
    for outsider in [&other_key, &keyless] {
        assert!(!lists_any(outsider, &members).await, "an outsider lists a member: {:?}", peers(outsider).await);
    }
    // c's dials to the outsiders failed in the handshake, and were counted.
    eventually(Duration::from_secs(15), "refused handshakes are counted", || async {
        let metrics =
            crate::support::http().get(format!("{}/metrics", c.http_url())).send().await.unwrap().text().await.unwrap();
        !metrics.contains("mass_failed_handshakes_total 0")
    })
    .await;
}

#[test]
fn malformed_network_key_is_refused_at_start() {
    let cluster = Cluster::new();
    let key = cluster.path().join("bad.key");
    std::fs::write(&key, "/key/swarm/psk/1.0.0/\n/base16/\nnot-hex\n").unwrap();
    let data = cluster.path().join("d");
    let (ok, _, stderr) = mass(&[
        "node",
        "start",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--http",
        "127.0.0.1:0",
        "--no-mdns",
        "--network-key",
        key.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("is malformed") && stderr.contains("mass keygen"), "{stderr}");
}
