//! A mesh forms by itself from bootstrap addresses, with hardware adverts.

use std::time::Duration;

use mass_sdk::Client;

use crate::support::{Cluster, eventually, lists_up_with_hardware, peers};

const GPU_PROBING_CONFIG: &str = r#"
[membership]
advert_interval = "500ms"
down_after = "3s"

[hardware]
gemm_size = 128
gemm_budget = "30ms"
probe_gpus = true

[[hardware.bridges]]
name = "fpga0"
kind = "fpga"
endpoint = "tcp://127.0.0.1:7000"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_list_each_other_and_a_fourth_joins_through_the_third() {
    let mut cluster = Cluster::with_config(GPU_PROBING_CONFIG);
    let a = cluster.spawn(&[]);
    let b = cluster.spawn(&[&a]);
    let c = cluster.spawn(&[&a]);
    let ids = [a.peer_id(), b.peer_id(), c.peer_id()];

    let took = eventually(Duration::from_secs(10), "three nodes list each other up with hardware", || async {
        lists_up_with_hardware(&a, &ids).await
            && lists_up_with_hardware(&b, &ids).await
            && lists_up_with_hardware(&c, &ids).await
    })
    .await;
    eprintln!("three-node mesh formed in {took:?}");

    // What each node advertises is what it measured about itself.
    let table = peers(&b).await;
    let a_row = table.iter().find(|p| p.peer_id == a.peer_id()).unwrap();
    let hw = a_row.hardware.as_ref().unwrap();
    assert!(hw.cpu.cores >= 1 && hw.memory_bytes > 0 && hw.gemm_gflops > 0.0, "{hw:?}");
    assert_eq!(hw.bridges[0].name, "fpga0");
    assert_eq!(table.iter().filter(|p| p.is_self).count(), 1);
    assert!(!a_row.addresses.is_empty());

    let d = cluster.spawn(&[&c]);
    let all = [a.peer_id(), b.peer_id(), c.peer_id(), d.peer_id()];
    eventually(Duration::from_secs(10), "all four nodes list the fourth", || async {
        for node in [&a, &b, &c, &d] {
            if !lists_up_with_hardware(node, &all).await {
                return false;
            }
        }
        true
    })
    .await;

    // Health names the node; metrics count what moved.
    let health = Client::new([a.http_url()]).unwrap().health().await.unwrap();
    assert_eq!(health.peer_id, a.peer_id());
    let metrics =
        crate::support::http().get(format!("{}/metrics", a.http_url())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("mass_peers{state=\"up\"} 3"), "{metrics}");
    assert!(metrics.contains("mass_messages_in_total{protocol=\"advert\"}"), "{metrics}");
    assert!(metrics.contains("mass_decode_failures_total"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_http_path_is_a_json_404() {
    let mut cluster = Cluster::new();
    let a = cluster.spawn(&[]);
    let response = crate::support::http().get(format!("{}/v1/nope", a.http_url())).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("/v1/nope"), "{body}");
}
