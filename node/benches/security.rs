//! What security costs, printed as a Markdown table for BENCHMARKS.md.
//!
//! `cargo bench -p mass-node --bench security`
//!
//! Ref signatures: `Store::set_ref` (a synced RocksDB write) with the node's
//! Ed25519 signer against a signer that signs nothing, alternating single
//! writes, and the check every entry from a peer gets (signature, name,
//! writer rule) against the merge that follows it. Token checks: one node
//! serving 4 KiB blob reads over HTTP (the cheapest authenticated route, so
//! the worst case for relative overhead; a prediction costs more) to one
//! client that always sends its token, the node's tokens file moved away
//! and back between windows (open, then checking), and the check alone.

use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use mass_node::{
    auth,
    net::identity::{ref_signer, verify_ref_entry},
    storage::Store,
};
use mass_protocol::{
    ContentId,
    api::Role,
    storage::{RefEntry, check_writer},
};
use mass_sdk::{
    Client,
    local::{LocalNode, NodeOptions},
};

const REF_WRITES: usize = 2000;
const WINDOWS: usize = 6;
const READS_PER_WINDOW: usize = 1000;

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn row(what: &str, without: f64, with: f64, unit: &str) {
    println!("| {what} | {without:.1} {unit} | {with:.1} {unit} | {:+.1}% |", (with / without - 1.0) * 100.0);
}

fn ref_signatures(dir: &std::path::Path) {
    let store = Store::open(dir).unwrap();
    let sign = ref_signer(Keypair::generate_ed25519());
    let unsigned = |_: &[u8]| Vec::new();
    let target = Some(ContentId::of(b"target"));
    // Alternating single writes, each timed, medians compared: fsync
    // latency drifts with whatever else the disk does.
    let (mut plain, mut signed) = (Vec::new(), Vec::new());
    for i in 0..REF_WRITES {
        for (signer, into) in [(&unsigned as &dyn Fn(&[u8]) -> Vec<u8>, &mut plain), (&sign, &mut signed)] {
            let start = Instant::now();
            store.set_ref(&format!("model/m{i}"), target, "origin", signer).unwrap();
            into.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    row("ref write (synced), per write", median(&mut plain), median(&mut signed), "µs");
    let entry = RefEntry { version: 1, target, clock: 1, origin: "origin".into(), set_at: 0, signature: vec![] };
    let start = Instant::now();
    for _ in 0..2000 {
        std::hint::black_box(sign(&entry.signed_bytes("model/x")));
    }
    println!("| of which: encode and sign one entry | | {:.1} µs | |", start.elapsed().as_secs_f64() * 1e6 / 2000.0);

    // The check of an entry from a peer, against the merge it precedes.
    let key = Keypair::generate_ed25519();
    let origin = key.public().to_peer_id().to_string();
    let entries: Vec<(String, RefEntry)> = (0..2000u64)
        .map(|i| {
            let name = format!("model/peer{i}");
            let mut entry =
                RefEntry { version: 1, target, clock: i + 1, origin: origin.clone(), set_at: 0, signature: vec![] };
            entry.signature = key.sign(&entry.signed_bytes(&name)).unwrap();
            (name, entry)
        })
        .collect();
    let start = Instant::now();
    for (name, entry) in &entries {
        verify_ref_entry(name, entry).unwrap();
        check_writer(name, entry.target, &entry.origin, &[]).unwrap();
    }
    let check = start.elapsed().as_secs_f64() * 1e6 / entries.len() as f64;
    let start = Instant::now();
    for (name, entry) in &entries {
        store.merge_ref(name, entry.clone()).unwrap();
    }
    let merge = start.elapsed().as_secs_f64() * 1e6 / entries.len() as f64;
    row("ref from a peer: merge, + signature and writer check", merge, merge + check, "µs");
}

async fn reads(client: &Client, id: &str) -> f64 {
    let start = Instant::now();
    for _ in 0..READS_PER_WINDOW {
        std::hint::black_box(client.get_blob(id).await.unwrap());
    }
    start.elapsed().as_secs_f64() * 1e6 / READS_PER_WINDOW as f64
}

async fn token_checks(work: &std::path::Path) {
    let config = work.join("bench.toml");
    std::fs::write(&config, "[hardware]\nprobe_gpus = false\ngemm_size = 64\n").unwrap();
    let data_dir = work.join("node");
    let mut options = NodeOptions::new(env!("CARGO_BIN_EXE_mass"), data_dir.clone());
    options.config = Some(config);
    options.log_file = Some(work.join("node.log"));
    let node = LocalNode::spawn(options, Duration::from_secs(60)).unwrap();
    // One client, sending its token all along: an open node ignores it, so
    // the only difference between windows is the node's check.
    let (token, _) = auth::create(&data_dir, Role::Read, "bench").unwrap();
    let tokens = data_dir.join(auth::TOKENS_FILE);
    let aside = data_dir.join("tokens.aside");
    let client = Client::new([node.http_url()]).unwrap().with_token(&token).unwrap();
    let bare = Client::new([node.http_url()]).unwrap();
    let id = client.put_blob(vec![7u8; 4096], true).await.unwrap().id.to_string();
    let (mut without, mut with) = (Vec::new(), Vec::new());
    reads(&client, &id).await; // warm-up
    for _ in 0..WINDOWS {
        with.push(reads(&client, &id).await);
        // The node rereads its tokens file at most once a second.
        std::fs::rename(&tokens, &aside).unwrap();
        while bare.get_blob(&id).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        without.push(reads(&client, &id).await);
        std::fs::rename(&aside, &tokens).unwrap();
        while bare.get_blob(&id).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    row("HTTP GET of a 4 KiB blob, per request", median(&mut without), median(&mut with), "µs");
    let loaded = auth::Tokens::load(&data_dir).unwrap();
    let header = format!("Bearer {token}");
    let start = Instant::now();
    for _ in 0..100_000 {
        std::hint::black_box(mass_node::http::auth::refusal(
            &loaded,
            &actix_web::http::Method::GET,
            "/v1/blobs/x",
            Some(&header),
        ));
    }
    println!("| of which: the token check | | {:.2} µs | |", start.elapsed().as_secs_f64() * 1e6 / 100_000.0);
}

#[tokio::main]
async fn main() {
    let work = tempfile::tempdir().unwrap();
    println!("| operation | without | with | overhead |");
    println!("|---|---|---|---|");
    ref_signatures(&work.path().join("store"));
    token_checks(work.path()).await;
}
