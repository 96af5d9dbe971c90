//! Repeated reads of one hot blob through the store: every chunk read and
//! hashed on every read (window zero, as before issue 15), against reads
//! within the window of chunks verified recently: read from RocksDB but not
//! hashed (no bytes kept), and copied from the bytes kept. Printed as a
//! Markdown table for BENCHMARKS.md: MB/s, and ratios against every read
//! hashing.
//!
//! `cargo bench -p mass-node --bench blob_reads`

use std::time::{Duration, Instant};

use mass_node::storage::{Store, verified};
use mass_protocol::{
    ContentId,
    chunking::CHUNK_SIZE,
    storage::{BlobKind, BlobMeta},
};
use rand::{RngCore, SeedableRng, rngs::StdRng};

/// (bytes, label, reads)
const SIZES: [(usize, &str, usize); 2] = [(32 << 20, "32 MiB", 40), (256 << 10, "256 KiB", 4000)];

fn put(store: &Store, data: &[u8]) -> BlobMeta {
    if data.len() <= CHUNK_SIZE {
        return store.put_small(data, BlobKind::Dataset).unwrap();
    }
    let cvs = data.chunks(CHUNK_SIZE).enumerate().map(|(i, c)| store.put_chunk(i as u64, c).unwrap()).collect();
    store.commit(data.len() as u64, cvs, None, BlobKind::Dataset).unwrap()
}

/// Reads the whole blob `reads` times, as `read_blob` does; MB/s.
fn reads(store: &Store, id: &ContentId, reads: usize) -> f64 {
    let start = Instant::now();
    let mut total = 0usize;
    for _ in 0..reads {
        let meta = store.meta(id).unwrap().unwrap();
        for index in 0..meta.chunks.len() {
            total += std::hint::black_box(store.chunk(&meta, index).unwrap()).len();
        }
    }
    total as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn main() {
    println!("| blob | reads | blake3 alone | every read hashes | window, no bytes kept | window, bytes kept |");
    println!("|---|---|---|---|---|---|");
    for (seed, (len, label, count)) in SIZES.into_iter().enumerate() {
        let mut data = vec![0u8; len];
        StdRng::seed_from_u64(seed as u64).fill_bytes(&mut data);
        let mut rates = Vec::new();
        for (window, kept) in [(Duration::ZERO, 0), (verified::WINDOW, 0), (verified::WINDOW, verified::KEPT_BYTES)] {
            // A store of its own each, reopened after the put: the blob is
            // read from RocksDB's files (reopening flushes the memtables),
            // as a blob written a while ago is.
            let dir = tempfile::tempdir().unwrap();
            let id = put(&Store::open(dir.path()).unwrap(), &data).id;
            let store = Store::open(dir.path()).unwrap().with_verified_window(window, kept);
            // One read first, untimed: the hash that the window then trusts,
            // and a warm page cache for every row. (The first timed read
            // hashes again and keeps the bytes, where they are kept.)
            reads(&store, &id, 1);
            // Best of three, against the noise of a shared machine.
            rates.push((0..3).map(|_| reads(&store, &id, count)).fold(0.0, f64::max));
        }
        let start = Instant::now();
        for _ in 0..count {
            std::hint::black_box(blake3::hash(&data));
        }
        let hash = (len * count) as f64 / start.elapsed().as_secs_f64() / 1e6;
        println!(
            "| {label} | {count} | {hash:.0} | {:.0} | {:.0} ({:.2}x) | {:.0} ({:.1}x) |",
            rates[0],
            rates[1],
            rates[1] / rates[0],
            rates[2],
            rates[2] / rates[0]
        );
    }
}
