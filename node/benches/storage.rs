//! Storage throughput, printed as a Markdown table for BENCHMARKS.md.
//!
//! `cargo bench -p mass-node --bench storage`
//!
//! Rows, for blobs of 4 KiB, 1 MiB and 64 MiB:
//! - baselines on the same machine: blake3 hashing, raw RocksDB writes
//!   (one synced write per blob, as a durable put needs) and raw reads;
//! - the store API directly (put = chunk, hash, synced commit; get = read
//!   and verify every chunk);
//! - over HTTP on one node (`PUT /v1/blobs`, `GET /v1/blobs/{id}`);
//! - from a peer: a GET on a node that does not hold the blob, which fetches
//!   it chunk by chunk over libp2p, verifies and stores it, then serves it.

use std::time::{Duration, Instant};

use mass_node::{replication::homes, storage::Store};
use mass_protocol::chunking::CHUNK_SIZE;
use mass_sdk::{
    Client,
    local::{LocalNode, NodeOptions},
};
use rand::{RngCore, SeedableRng, rngs::StdRng};

const SIZES: [(usize, &str, usize); 3] = [(4 << 10, "4 KiB", 2000), (1 << 20, "1 MiB", 200), (64 << 20, "64 MiB", 6)];

fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

fn mbps(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

fn row(what: &str, size: &str, count: usize, total: usize, elapsed: Duration) {
    println!(
        "| {what} | {size} | {count} | {:.1} | {:.0} |",
        mbps(total, elapsed),
        count as f64 / elapsed.as_secs_f64()
    );
}

fn raw_rocksdb(dir: &std::path::Path, blobs: &[Vec<u8>], size: &str) {
    let db = rocksdb::DB::open_default(dir).unwrap();
    let mut options = rocksdb::WriteOptions::default();
    options.set_sync(true);
    let total: usize = blobs.iter().map(Vec::len).sum();
    let start = Instant::now();
    for (i, blob) in blobs.iter().enumerate() {
        // Values above a chunk are split as the store does, for a fair row.
        let mut batch = rocksdb::WriteBatch::default();
        for (j, piece) in blob.chunks(CHUNK_SIZE).enumerate() {
            batch.put(format!("{i}/{j}"), piece);
        }
        db.write_opt(batch, &options).unwrap();
    }
    row("RocksDB raw write, synced (baseline)", size, blobs.len(), total, start.elapsed());
    let start = Instant::now();
    for (i, blob) in blobs.iter().enumerate() {
        for j in 0..blob.len().div_ceil(CHUNK_SIZE) {
            std::hint::black_box(db.get(format!("{i}/{j}")).unwrap());
        }
    }
    row("RocksDB raw read (baseline)", size, blobs.len(), total, start.elapsed());
}

fn store_api(dir: &std::path::Path, blobs: &[Vec<u8>], size: &str) {
    let store = Store::open(dir).unwrap();
    let total: usize = blobs.iter().map(Vec::len).sum();
    let start = Instant::now();
    let mut ids = Vec::new();
    for blob in blobs {
        let meta = if blob.len() <= CHUNK_SIZE {
            store.put_small(blob, mass_protocol::storage::BlobKind::Other).unwrap()
        } else {
            let cvs = blob.chunks(CHUNK_SIZE).enumerate().map(|(i, c)| store.put_chunk(i as u64, c).unwrap()).collect();
            store.commit(blob.len() as u64, cvs, None, mass_protocol::storage::BlobKind::Other).unwrap()
        };
        ids.push(meta.id);
    }
    row("Mass store put (chunk, hash, synced commit)", size, blobs.len(), total, start.elapsed());
    let start = Instant::now();
    for id in &ids {
        std::hint::black_box(store.verify(id).unwrap());
    }
    row("Mass store get (read, verify)", size, blobs.len(), total, start.elapsed());
}

async fn over_http(nodes: &[LocalNode], blobs: &[Vec<u8>], size: &str) {
    let a = Client::new([nodes[0].http_url()]).unwrap();
    let b = Client::new([nodes[1].http_url()]).unwrap();
    let total: usize = blobs.iter().map(Vec::len).sum();
    let start = Instant::now();
    let mut ids = Vec::new();
    for blob in blobs {
        ids.push(a.put_blob(blob.clone(), true).await.unwrap().id.to_string());
    }
    row("HTTP PUT /v1/blobs, one node", size, blobs.len(), total, start.elapsed());
    let start = Instant::now();
    for id in &ids {
        std::hint::black_box(a.get_blob(id).await.unwrap());
    }
    row("HTTP GET /v1/blobs, holding node", size, blobs.len(), total, start.elapsed());
    // Only blobs whose one home is `a`: `b` has never held them.
    let view: Vec<libp2p::PeerId> = nodes.iter().map(|n| n.peer_id().parse().unwrap()).collect();
    let remote: Vec<&String> = ids.iter().filter(|id| homes(&id.parse().unwrap(), &view, 1) == [view[0]]).collect();
    let remote_total = remote.len() * blobs[0].len();
    let start = Instant::now();
    for id in &remote {
        std::hint::black_box(b.get_blob(id).await.unwrap());
    }
    row("HTTP GET via a node fetching from its peer", size, remote.len(), remote_total, start.elapsed());
}

#[tokio::main]
async fn main() {
    let work = tempfile::tempdir().unwrap();
    // k = 1 and no repair: the second node never holds a blob before it is asked.
    let config = work.path().join("bench.toml");
    std::fs::write(
        &config,
        "[storage]\nreplication = 1\nrepair_interval = \"1h\"\n[hardware]\nprobe_gpus = false\ngemm_size = 64\n",
    )
    .unwrap();
    let start_node = |name: &str, bootstrap: Vec<String>| {
        let mut options = NodeOptions::new(env!("CARGO_BIN_EXE_mass"), work.path().join(name));
        options.config = Some(config.clone());
        options.bootstrap = bootstrap;
        options.log_file = Some(work.path().join(format!("{name}.log")));
        LocalNode::spawn(options, Duration::from_secs(60)).unwrap()
    };
    let a = start_node("a", vec![]);
    let b = start_node("b", vec![a.listen_addr().to_owned()]);
    // Let the two nodes meet before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let nodes = [a, b];

    println!("| operation | blob size | blobs | MB/s | blobs/s |");
    println!("|---|---|---|---|---|");
    for (round, (len, size, count)) in SIZES.into_iter().enumerate() {
        let blobs: Vec<Vec<u8>> = (0..count).map(|i| data((round * 100_000 + i) as u64, len)).collect();
        let total = count * len;
        let start = Instant::now();
        for blob in &blobs {
            std::hint::black_box(blake3::hash(blob));
        }
        row("blake3 hash (baseline)", size, count, total, start.elapsed());
        raw_rocksdb(&work.path().join(format!("raw{round}")), &blobs, size);
        store_api(&work.path().join(format!("store{round}")), &blobs, size);
        over_http(&nodes, &blobs, size).await;
    }
}
