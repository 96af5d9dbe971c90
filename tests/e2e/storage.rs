//! Content-addressed storage across real nodes: reads from anywhere, crash
//! durability, integrity, repair, and bounded memory for big blobs.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use libp2p::PeerId;
use mass_node::{replication::homes, storage::store::CF_CHUNKS};
use mass_protocol::ContentId;
use mass_sdk::{Client, local::LocalNode};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::support::{Cluster, blobs_on, bytes, eventually, lists_up_with_hardware, mesh, metric};

fn peer(node: &LocalNode) -> PeerId {
    node.peer_id().parse().unwrap()
}

fn client(node: &LocalNode) -> Client {
    Client::new([node.http_url()]).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_put_on_one_node_reads_back_identically_from_a_node_that_never_held_it() {
    let mut cluster = Cluster::new();
    let nodes = mesh(&mut cluster, 3).await;
    let view: Vec<PeerId> = nodes.iter().map(peer).collect();
    for len in [1usize, 3 * 1024 * 1024 + 5] {
        // Pick content whose homes (k = 2) leave out the third node.
        let (data, id) = (0u64..)
            .map(|seed| bytes(seed + len as u64, len))
            .map(|data| {
                let id = ContentId::of(&data);
                (data, id)
            })
            .find(|(_, id)| !homes(id, &view, 2).contains(&view[2]))
            .unwrap();
        let put = client(&nodes[0]).put_blob(data.clone(), true).await.unwrap();
        assert_eq!(put.id, id);
        assert!(!blobs_on(&nodes[2]).await.contains(&id.to_string()), "the reader must not hold it yet");
        let got = client(&nodes[2]).get_blob(&id.to_string()).await.unwrap();
        assert!(got == data, "bytes differ for a {len}-byte blob");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refs_converge_roll_back_and_reach_a_late_joiner() {
    let mut cluster = Cluster::new();
    let nodes = mesh(&mut cluster, 3).await;
    let v1 = client(&nodes[0]).put_blob(b"model v1".to_vec(), true).await.unwrap().id.to_string();
    let v2 = client(&nodes[1]).put_blob(b"model v2".to_vec(), true).await.unwrap().id.to_string();
    client(&nodes[0]).set_ref("model/demo", &v1).await.unwrap();
    eventually(Duration::from_secs(10), "v1 visible everywhere", || async {
        for node in &nodes {
            if client(node).get_ref("model/demo").await.map(|r| r.target.to_string()).ok().as_ref() != Some(&v1) {
                return false;
            }
        }
        true
    })
    .await;
    let second = client(&nodes[2]).set_ref("model/demo", &v2).await.unwrap();
    assert_eq!(second.version, 2);
    let back = client(&nodes[1]);
    eventually(Duration::from_secs(10), "v2 reaches node 1", || async {
        back.get_ref("model/demo").await.map(|r| r.version).unwrap_or(0) == 2
    })
    .await;
    let rolled = back.rollback_ref("model/demo", 1).await.unwrap();
    assert_eq!((rolled.version, rolled.target.to_string()), (3, v1.clone()));

    // A node that joins later learns every ref from the first peer it meets.
    let late = cluster.spawn(&[&nodes[1]]);
    eventually(Duration::from_secs(10), "a late joiner has the ref with its history", || async {
        client(&late).ref_history("model/demo").await.map(|r| r.history.len()).unwrap_or(0) == 3
    })
    .await;
    assert_eq!(client(&late).get_ref("model/demo").await.unwrap().target.to_string(), v1);

    let missing = client(&nodes[0]).set_ref("model/demo", &"ab".repeat(32)).await.unwrap_err().to_string();
    assert!(missing.contains("404") && missing.contains("not stored on any node"), "{missing}");
}

/// Sizes from 1 B to 4 MiB, mostly small, as real artifacts are.
fn crash_test_size(rng: &mut StdRng) -> usize {
    match rng.random_range(0..100) {
        0..80 => rng.random_range(1..=4096),
        80..95 => rng.random_range(4097..=256 * 1024),
        _ => rng.random_range(256 * 1024..=4 * 1024 * 1024),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_blob_survives_repeated_sigkill() {
    let seed: u64 = std::env::var("MASS_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("crash test seed: {seed} (set MASS_TEST_SEED to replay)");
    const BLOBS: usize = 2000;
    const KILLS: usize = 5;

    let mut cluster = Cluster::new();
    let node = Arc::new(Mutex::new(Some(cluster.spawn(&[]))));
    let options = node.lock().unwrap().as_ref().unwrap().options().clone();
    let url = Arc::new(Mutex::new(node.lock().unwrap().as_ref().unwrap().http_url().to_owned()));

    // The killer: SIGKILL at random moments while the writer is busy, then restart.
    let killer = {
        let (node, url, cluster_start) = (node.clone(), url.clone(), options.clone());
        std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x6b696c6c);
            for _ in 0..KILLS {
                std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
                let mut guard = node.lock().unwrap();
                if let Some(mut running) = guard.take() {
                    running.kill();
                }
                let restarted = LocalNode::spawn(cluster_start.clone(), Duration::from_secs(60)).expect("restart");
                *url.lock().unwrap() = restarted.http_url().to_owned();
                *guard = Some(restarted);
            }
        })
    };

    let mut rng = StdRng::seed_from_u64(seed);
    let mut acknowledged = Vec::new();
    let mut unacknowledged = Vec::new();
    let mut written = 0usize;
    let mut i = 0usize;
    // Keep writing until both enough blobs are written and every kill has
    // landed, so that the kills fall among the writes.
    while i < BLOBS || !killer.is_finished() {
        i += 1;
        let data = bytes(seed.wrapping_add(i as u64), crash_test_size(&mut rng));
        written += data.len();
        let id = ContentId::of(&data).to_string();
        let current = url.lock().unwrap().clone();
        let put = Client::with_timeout([current.as_str()], Duration::from_secs(5)).unwrap().put_blob(data, true).await;
        match put {
            Ok(info) => {
                assert_eq!(info.id.to_string(), id);
                acknowledged.push(id);
            }
            Err(_) => unacknowledged.push(id),
        }
    }
    killer.join().unwrap();
    eprintln!(
        "crash test: {} blobs ({} MiB) written, {} acknowledged, {} failed around {KILLS} SIGKILLs",
        i,
        written >> 20,
        acknowledged.len(),
        unacknowledged.len()
    );
    assert!(!unacknowledged.is_empty() || KILLS == 0, "no write was interrupted; the test did not test");

    // One more crash, then read everything back from the restarted node.
    node.lock().unwrap().take().unwrap().kill();
    let restarted = cluster.start(options);
    let reader = client(&restarted);
    for id in &acknowledged {
        reader.get_blob(id).await.unwrap_or_else(|e| panic!("seed {seed}: acknowledged blob {id} lost: {e}"));
    }
    for id in &unacknowledged {
        match reader.get_blob(id).await {
            Ok(_) => {}
            Err(mass_sdk::Error::Api { status: 404, .. }) => {}
            Err(e) => panic!("seed {seed}: unacknowledged blob {id} is neither whole nor absent: {e}"),
        }
    }
}

/// Stops a node cleanly and flips one byte of the first stored chunk of `id`
/// directly in its RocksDB.
fn corrupt_on_disk(node: &mut LocalNode, id: &ContentId) {
    assert!(node.stop(Duration::from_secs(10)));
    let path = node.options().data_dir.join(mass_node::node::STORE_DIR);
    let store = mass_node::storage::Store::open(&path).unwrap();
    let meta = store.meta(id).unwrap().unwrap();
    drop(store);
    let mut options = rocksdb::Options::default();
    options.create_if_missing(false);
    let families = rocksdb::DB::list_cf(&options, &path).unwrap();
    let db = rocksdb::DB::open_cf(&options, &path, &families).unwrap();
    let cf = db.cf_handle(CF_CHUNKS).unwrap();
    let mut value = db.get_cf(cf, meta.chunks[0]).unwrap().unwrap();
    let middle = value.len() / 2;
    value[middle] ^= 0x20;
    db.put_cf(cf, meta.chunks[0], value).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_on_disk_is_caught_and_a_good_copy_is_fetched() {
    let mut cluster = Cluster::new();
    let mut nodes = mesh(&mut cluster, 2).await;
    let data = bytes(11, 2 * 1024 * 1024 + 100);
    let id = client(&nodes[0]).put_blob(data.clone(), true).await.unwrap().id;
    let b = nodes.pop().unwrap();
    eventually(Duration::from_secs(10), "both nodes hold the blob", || async {
        blobs_on(&b).await.contains(&id.to_string())
    })
    .await;

    let mut a = nodes.pop().unwrap();
    corrupt_on_disk(&mut a, &id);
    let mut options = a.options().clone();
    options.bootstrap = vec![b.listen_addr().to_owned()];
    drop(a);
    let a = &cluster.start(options);
    eventually(Duration::from_secs(10), "restarted node rejoins", || async {
        lists_up_with_hardware(a, &[b.peer_id()]).await
    })
    .await;
    let got = client(a).get_blob(&id.to_string()).await.unwrap();
    assert!(got == data, "a damaged copy was served");
    assert!(metric(a, "mass_integrity_failures_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_with_no_good_copy_is_an_integrity_error() {
    let mut cluster = Cluster::new();
    let mut node = cluster.spawn(&[]);
    let id = client(&node).put_blob(bytes(5, 5000), true).await.unwrap().id;
    corrupt_on_disk(&mut node, &id);
    let node = cluster.start(node.options().clone());
    let err = client(&node).get_blob(&id.to_string()).await.unwrap_err().to_string();
    assert!(err.contains("500") && err.contains(&format!("integrity error for blob {id}")), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_a_holder_is_repaired_back_to_two_live_copies() {
    let mut cluster = Cluster::new();
    let mut nodes = mesh(&mut cluster, 3).await;
    let data = bytes(3, 1_500_000);
    let id = client(&nodes[0]).put_blob(data.clone(), true).await.unwrap().id.to_string();
    let holders = |nodes: &Vec<LocalNode>| {
        let nodes: Vec<(String, String)> =
            nodes.iter().map(|n| (n.peer_id().to_owned(), n.http_url().to_owned())).collect();
        let id = id.clone();
        async move {
            let mut out = Vec::new();
            for (peer, url) in nodes {
                let listed = Client::new([url.as_str()]).unwrap().list_blobs().await.unwrap_or_default();
                if listed.iter().any(|b| b.id.to_string() == id) {
                    out.push(peer);
                }
            }
            out
        }
    };
    eventually(Duration::from_secs(10), "exactly k = 2 copies", || async { holders(&nodes).await.len() == 2 }).await;
    let victim = holders(&nodes).await[0].clone();
    let index = nodes.iter().position(|n| n.peer_id() == victim).unwrap();
    nodes.remove(index).kill();

    let took =
        eventually(Duration::from_secs(15), "two live copies again", || async { holders(&nodes).await.len() == 2 })
            .await;
    eprintln!("re-replicated {} bytes after {took:?} (down_after 1.5 s, repair every 0.5 s)", data.len());
    for node in &nodes {
        assert!(client(node).get_blob(&id).await.unwrap() == data);
    }
}

/// Peak resident memory of a process, from /proc.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_512_mib_blob_moves_between_nodes_in_bounded_memory() {
    const SIZE: usize = 512 << 20;
    let mut cluster = Cluster::new();
    let nodes = mesh(&mut cluster, 2).await;
    let source = cluster.path().join("big.bin");
    {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&source).unwrap());
        for block in 0..(SIZE >> 20) {
            file.write_all(&bytes(block as u64, 1 << 20)).unwrap();
        }
    }
    let started = Instant::now();
    let info = client(&nodes[0]).put_blob_file(&source, true, |_| {}).await.unwrap();
    let put_secs = started.elapsed().as_secs_f64();
    let target = cluster.path().join("back.bin");
    let started = Instant::now();
    client(&nodes[1]).get_blob_to_file(&info.id.to_string(), &target, |_, _| {}).await.unwrap();
    let get_secs = started.elapsed().as_secs_f64();
    assert_eq!(std::fs::metadata(&target).unwrap().len(), SIZE as u64);

    let rss: Vec<u64> = nodes.iter().map(|n| peak_rss_bytes(n.endpoints().pid)).collect();
    eprintln!(
        "512 MiB blob: put {put_secs:.1} s, get through the other node {get_secs:.1} s; peak RSS {} MiB and {} MiB",
        rss[0] >> 20,
        rss[1] >> 20
    );
    for peak in rss {
        assert!(peak < (SIZE as u64) / 2, "peak RSS {} MiB is not far below the blob size", peak >> 20);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_storage_requests_get_a_4xx_naming_the_problem() {
    let mut cluster = Cluster::new();
    let node = cluster.spawn(&[]);
    let id = client(&node).put_blob(b"x".to_vec(), true).await.unwrap().id.to_string();
    client(&node).set_ref("model/m", &id).await.unwrap();
    let http = crate::support::http();
    let base = node.http_url();
    let unknown = "cd".repeat(32);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (http.get(format!("{base}/v1/blobs/xyz")), 400, "'xyz' is not a content id"),
        (http.get(format!("{base}/v1/blobs/{unknown}")), 404, "not stored on any node"),
        (http.delete(format!("{base}/v1/blobs/{unknown}")), 404, "is not pinned"),
        (http.put(format!("{base}/v1/blobs?pin=maybe")).body("x"), 400, "invalid query string"),
        (
            http.put(format!("{base}/v1/refs/model/m")).body("{not json").header("content-type", "application/json"),
            400,
            "invalid JSON body",
        ),
        (
            http.put(format!("{base}/v1/refs/model/m")).json(&serde_json::json!({"target": id, "extra": 1})),
            400,
            "unknown field `extra`",
        ),
        (
            http.put(format!("{base}/v1/refs/model/m")).json(&serde_json::json!({"target": "nope"})),
            400,
            "target: 'nope' is not a content id",
        ),
        (
            http.put(format!("{base}/v1/refs/nokind")).json(&serde_json::json!({"target": id})),
            400,
            "must look like kind/name",
        ),
        (http.get(format!("{base}/v1/refs/model/absent")), 404, "no ref named 'model/absent'"),
        (
            http.post(format!("{base}/v1/refs/model/m/rollback")).json(&serde_json::json!({"version": 9})),
            404,
            "has no version 9 (versions: 1)",
        ),
    ];
    for (request, status, expected) in cases {
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["error"].as_str().unwrap_or_default().to_owned();
        assert!(got == status && message.contains(expected), "expected {status} '{expected}', got {got} '{message}'");
    }
    // The node keeps serving, and nothing stored was lost.
    assert_eq!(client(&node).get_ref("model/m").await.unwrap().target.to_string(), id);
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_migrate_to_nodes_that_join_and_outrank_their_holder() {
    let mut cluster = Cluster::new();
    let a = cluster.spawn(&[]);
    let mut ids = Vec::new();
    // 24 blobs: with fresh peer ids, the first node is a home of every one
    // of them (nothing to move) with probability (2/3)^24, under 1 in 10,000;
    // with 12 it was 1 in 130, and a full CI run once drew it.
    for seed in 0..24u64 {
        ids.push(client(&a).put_blob(bytes(seed + 1000, 2000), true).await.unwrap().id);
    }
    let b = cluster.spawn(&[&a]);
    let c = cluster.spawn(&[&a]);
    let view: Vec<PeerId> = [&a, &b, &c].iter().map(|n| peer(n)).collect();
    let nodes = [&a, &b, &c];
    let took = eventually(Duration::from_secs(20), "every blob lives exactly on its two homes", || async {
        for id in &ids {
            let homes = homes(id, &view, 2);
            for (node, peer) in nodes.iter().zip(&view) {
                if blobs_on(node).await.contains(&id.to_string()) != homes.contains(peer) {
                    return false;
                }
            }
        }
        true
    })
    .await;
    eprintln!("24 blobs settled on their homes {took:?} after two nodes joined");
    assert!(ids.iter().any(|id| !homes(id, &view, 2).contains(&view[0])), "no blob had to move; pick more blobs");
}
