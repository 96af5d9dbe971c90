//! Dataset ingest throughput, printed as a Markdown table for BENCHMARKS.md.
//!
//! `cargo bench -p mass-node --bench ingest`
//!
//! - parse only: MNIST (`../shared/datasets/mnist.csv.gz`) through the ingest
//!   code in this process, shards encoded and hashed but not stored, on one
//!   thread and on every core (the same manifest, checked);
//! - into a three-node mesh: `POST /v1/datasets` through the SDK, shards
//!   stored (synced) and pushed to their homes.
//!
//! Compare with `pandas.read_csv` of the same file on the same machine
//! (the command is printed at the end). `INGEST_PROFILE=1` prints where the
//! one-thread time goes (gunzip, CSV records, parsing, encoding, hashing)
//! instead of ingesting into the mesh.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use mass_node::datasets::{IngestOptions, SplitChoice, ingest};
use mass_protocol::{ContentId, codec};
use mass_sdk::{Client, IngestRequest};

mod support;

fn mnist() -> PathBuf {
    support::shared("mnist.csv.gz")
}

fn row(what: &str, rows: u64, compressed: u64, raw: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!(
        "| {what} | {secs:.2} | {:.0} | {:.1} | {:.1} |",
        rows as f64 / secs,
        compressed as f64 / secs / 1e6,
        raw as f64 / secs / 1e6
    );
}

#[tokio::main]
async fn main() {
    let path = mnist();
    let compressed = std::fs::metadata(&path).expect("../shared/datasets/mnist.csv.gz").len();
    let raw = {
        use std::io::Read;
        let mut n = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap());
        loop {
            let read = gz.read(&mut buf).unwrap();
            if read == 0 {
                break;
            }
            n += read as u64;
        }
        n
    };
    println!("| ingest of MNIST (70,000 rows, 785 columns) | seconds | rows/s | MB/s gzip | MB/s CSV |");
    println!("|---|---|---|---|---|");

    let options = IngestOptions {
        name: "mnist".into(),
        label: "label".into(),
        kinds: Default::default(),
        shard_rows: 10_000,
        split: SplitChoice::Seeded { seed: 42, validation: 0.0, test: 0.2 },
        threads: 1,
    };
    let start = Instant::now();
    let manifest = ingest(std::fs::File::open(&path).unwrap(), &options, |shard| {
        Ok(ContentId::of(&codec::encode(shard).unwrap()))
    })
    .unwrap();
    row("Mass ingest, parse and shard only (one thread)", manifest.rows, compressed, raw, start.elapsed());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all_cores = IngestOptions { threads: cores, ..options.clone() };
    let start = Instant::now();
    let parallel = ingest(std::fs::File::open(&path).unwrap(), &all_cores, |shard| {
        Ok(ContentId::of(&codec::encode(shard).unwrap()))
    })
    .unwrap();
    row(
        &format!("Mass ingest, parse and shard only ({cores} threads)"),
        parallel.rows,
        compressed,
        raw,
        start.elapsed(),
    );
    let digest = |m: &mass_protocol::dataset::DatasetManifest| ContentId::of(&codec::encode(m).unwrap());
    assert_eq!(digest(&parallel), digest(&manifest), "the threads changed the dataset");
    if std::env::var_os("INGEST_PROFILE").is_some() {
        profile(&path, &options);
        eprintln!("manifest digest {}", digest(&manifest));
        return;
    }

    let work = tempfile::tempdir().unwrap();
    let nodes = support::local_mesh(work.path(), 3).await;
    let client = Client::new([nodes[0].http_url()]).unwrap();
    let request =
        IngestRequest { name: "mnist".into(), label: "label".into(), shard_rows: Some(10_000), ..Default::default() };
    let start = Instant::now();
    let view = client.ingest_csv(&path, &request).await.unwrap();
    row(
        "Mass ingest into a 3-node mesh over HTTP (stored, synced)",
        view.manifest.rows,
        compressed,
        raw,
        start.elapsed(),
    );
    println!(
        "\nBaseline on the same machine: python -c \"import pandas as pd, time; t=time.perf_counter(); pd.read_csv('{}'); print(time.perf_counter()-t)\"",
        path.display()
    );
}

/// Where the one-thread time goes (INGEST_PROFILE=1): gunzip, CSV records,
/// the whole ingest without encoding, and encode + hash of the shards.
fn profile(path: &std::path::Path, options: &IngestOptions) {
    use std::io::Read;
    let start = Instant::now();
    let mut gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut buf = vec![0u8; 1 << 20];
    while gz.read(&mut buf).unwrap() > 0 {}
    eprintln!("gunzip only: {:.3} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    let gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = csv::ReaderBuilder::new().from_reader(gz);
    let mut record = csv::ByteRecord::new();
    let mut rows = Vec::new();
    while reader.read_byte_record(&mut record).unwrap() {
        rows.push(record.clone());
        if rows.len() == 10_000 {
            rows.clear();
        }
    }
    eprintln!("gunzip + csv records (cloned): {:.3} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    let mut shards = Vec::new();
    ingest(std::fs::File::open(path).unwrap(), options, |shard| {
        shards.push(shard.clone());
        Ok(ContentId::of(b""))
    })
    .unwrap();
    eprintln!("ingest without encoding (shards cloned): {:.3} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    let mut bytes = Vec::new();
    for shard in &shards {
        bytes.push(codec::encode(shard).unwrap());
    }
    eprintln!("encode: {:.3} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    for b in &bytes {
        ContentId::of(b);
    }
    eprintln!("hash: {:.3} s", start.elapsed().as_secs_f64());
}
