//! The fuzz targets as CI runs them on stable: each target's seed corpus
//! (`fuzz/corpus/<target>/`, crashes found earlier included), then a
//! bounded number of mutated and random inputs ([`super::mutate`]), all
//! drawn from one seed. A failure prints the seed, the run and the input
//! as hex to replay it.
//!
//! - `MASS_FUZZ_SEED`: the seed (default fixed, so CI is reproducible).
//! - `MASS_FUZZ_RUNS`: inputs per target after the corpus (default
//!   [`RUNS`]); a long campaign on stable sets it high.
//! - `MASS_FUZZ_SECONDS`: wall-clock cap per target (default [`SECONDS`]);
//!   a target that reaches it stops early and says how many runs it made,
//!   so a slow machine shortens the run instead of timing out CI.
//! - `MASS_FUZZ_ALLOC_CAP`: the largest single allocation a target may make
//!   (bytes; default 256 MiB, see [`super::alloc`]).
//!
//! `write_seed_corpus` (ignored) regenerates the `seed-*` files.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::{TARGETS, Target, alloc, mutate};

/// The default seed.
const SEED: u64 = 0x6d61_7373_6675_7a7a;
/// Inputs per target after the corpus: about a second each in a debug
/// build, most of the targets' time going to the values that decode.
const RUNS: usize = 20_000;
/// The most one target runs by default, whatever `RUNS` says.
const SECONDS: u64 = 5;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

/// The corpus files of `target`, in name order.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(dir) = std::fs::read_dir(corpus_dir(target)) else { return vec![] };
    let mut files: Vec<(String, Vec<u8>)> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).expect("corpus file reads")))
        .collect();
    files.sort();
    files
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `target` on `input`, with single allocations capped; a panic
/// fails the test with what replays it (an allocation over the cap prints
/// the same and aborts).
fn check(name: &str, target: Target, input: &[u8], origin: &str) {
    let note = format!(
        "fuzz target {name} on {origin} ({} bytes); input as hex:\n{}\nSave it under fuzz/corpus/{name}/ and fix \
         the decoder or the code after it.",
        input.len(),
        hex::encode(input)
    );
    if catch_unwind(AssertUnwindSafe(|| alloc::armed(&note, || target(input)))).is_err() {
        panic!("panicked: {note}");
    }
}

fn run_target(name: &str) {
    let target = super::target(name).expect("a listed target");
    let corpus = corpus(name);
    assert!(!corpus.is_empty(), "no seed corpus in {}", corpus_dir(name).display());
    for (file, input) in &corpus {
        check(name, target, input, &format!("corpus file {file}"));
    }
    let seed = env_or("MASS_FUZZ_SEED", SEED);
    let runs = env_or("MASS_FUZZ_RUNS", RUNS);
    let cap = Duration::from_secs(env_or("MASS_FUZZ_SECONDS", SECONDS));
    alloc::set_cap(env_or("MASS_FUZZ_ALLOC_CAP", alloc::DEFAULT_CAP));
    // Each target its own stream, so one target's runs replay alone.
    let stream = u64::from_le_bytes(blake3::hash(name.as_bytes()).as_bytes()[..8].try_into().expect("8 bytes"));
    let mut rng = StdRng::seed_from_u64(seed ^ stream);
    let started = Instant::now();
    for run in 0..runs {
        if started.elapsed() > cap {
            eprintln!("fuzz target {name}: stopped at the {cap:?} cap after {run} of {runs} runs");
            return;
        }
        let input = if rng.random_ratio(1, 16) {
            mutate::random(&mut rng)
        } else {
            let base = &corpus[rng.random_range(0..corpus.len())].1;
            let other = &corpus[rng.random_range(0..corpus.len())].1;
            mutate::mutate(&mut rng, base, other)
        };
        check(name, target, &input, &format!("run {run} of MASS_FUZZ_SEED={seed}"));
    }
    eprintln!("fuzz target {name}: {} corpus files and {runs} runs in {:?}", corpus.len(), started.elapsed());
}

macro_rules! fuzz_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_target(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_a_test() {
            let tested = [$(stringify!($name)),*];
            for (name, _) in TARGETS {
                assert!(tested.contains(name), "{name} has no stable fuzz test");
            }
        }
    };
}

fuzz_tests!(
    rpc_request,
    rpc_response,
    advert,
    ref_update,
    progress,
    boost_request,
    boost_reply,
    boost_setup,
    trees,
    job_record,
    dataset_manifest,
    model_manifest,
    pipeline,
    shard,
    member,
    ref_record,
    csv,
    jsonl,
    parquet,
    npy,
    job_spec_json,
    predict_json,
    predict_arrow,
    study_json,
    study_record,
);

/// Regenerates the seed files `seed-*` of every target from the fixture
/// (valid encodings of every kind of value) and `tests/data`:
/// `cargo test -p mass-node --lib fuzz::runner::write_seed_corpus -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn write_seed_corpus() {
    for (target, seeds) in super::seeds::all() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("corpus folder");
        for old in std::fs::read_dir(&dir).expect("corpus folder reads").flatten() {
            if old.file_name().to_string_lossy().starts_with("seed-") {
                std::fs::remove_file(old.path()).expect("old seed removed");
            }
        }
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("seed written");
        }
    }
}

/// What a node writes, its readers must accept: the checks added for
/// crafted records refuse none of the fixture's honest ones.
#[test]
fn honest_records_pass_the_checks_made_on_read() {
    let f = super::fixture::fixture();
    for shard in &f.shards {
        shard.validate().expect("the fixture's shards are valid");
    }
    for pipeline in super::seeds::pipelines() {
        pipeline.validate().expect("fitted pipelines are valid");
    }
    f.setup.check(&f.pipeline).expect("the fixture's boosting setup fits its pipeline");
    f.schema().validate().expect("the fixture's schema is valid");
}
