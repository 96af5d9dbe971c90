//! The fuzz targets as CI runs them on stable: each target's seed corpus
//! (`fuzz/corpus/<target>/`, crashes found by hand included), then a
//! bounded number of random and mutated inputs (bit flips, interesting
//! bytes, truncations, insertions, huge length prefixes, splices of two
//! corpus entries), all drawn from one seed. A failure prints the seed, the
//! run and the input to replay it.
//!
//! `MASS_FUZZ_SEED` and `MASS_FUZZ_RUNS` change the seed and the number of
//! runs per target (a long run on stable where cargo-fuzz cannot run).
//! `write_seed_corpus` (ignored) regenerates the seed files.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
};

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::TARGETS;

/// The default seed; CI is reproducible, and `MASS_FUZZ_SEED` varies it.
const SEED: u64 = 0x6d61_7373_6675_7a7a;
/// Mutated inputs per target: a few seconds each in a debug build.
const RUNS: usize = 400;
/// Mutations grow inputs up to this (libFuzzer's default `-max_len`).
const MAX_LEN: usize = 4096;

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

/// A few mutations of `input`, some taking bytes from `other`.
fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    const INTERESTING: [u8; 8] = [0, 1, 0x7f, 0x80, 0xfb, 0xfc, 0xfd, 0xff];
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = if out.is_empty() { 0 } else { rng.random_range(0..out.len()) };
        match rng.random_range(0..7) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.random_range(0..8),
            1 if !out.is_empty() => out[at] = INTERESTING[rng.random_range(0..INTERESTING.len())],
            2 => out.truncate(at),
            3 => {
                let bytes: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                out.splice(at..at, bytes);
            }
            // A varint claiming a huge length or count (bincode: 0xfd, then a u64).
            4 => {
                let claim: u64 = rng.random_range(1 << 20..u64::MAX);
                out.splice(at..at, std::iter::once(0xfd).chain(claim.to_le_bytes()));
            }
            5 if !other.is_empty() => {
                let from = rng.random_range(0..other.len());
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            _ if !out.is_empty() => {
                let end = rng.random_range(at..=out.len().min(at + 64));
                let chunk = out[at..end].to_vec();
                out.splice(at..at, chunk);
            }
            _ => out.push(rng.random()),
        }
    }
    out.truncate(MAX_LEN.max(input.len()));
    out
}

/// Runs `target` on `input`; a panic fails the test with what replays it.
fn check(name: &str, target: super::Target, input: &[u8], origin: &str) {
    if catch_unwind(AssertUnwindSafe(|| target(input))).is_err() {
        panic!(
            "fuzz target {name} panicked on {origin} ({} bytes); input as hex:\n{}\nSave it under fuzz/corpus/{name}/ \
             and fix the decoder or the code after it.",
            input.len(),
            hex::encode(input)
        );
    }
}

fn run_target(name: &str) {
    let target = TARGETS.iter().find(|(n, _)| *n == name).expect("a listed target").1;
    let corpus = corpus(name);
    assert!(!corpus.is_empty(), "no seed corpus in {}", corpus_dir(name).display());
    for (file, input) in &corpus {
        check(name, target, input, &format!("corpus file {file}"));
    }
    let seed = env_or("MASS_FUZZ_SEED", SEED);
    let runs = env_or("MASS_FUZZ_RUNS", RUNS);
    // Each target its own stream, so one target's runs replay alone.
    let mut rng = StdRng::seed_from_u64(seed ^ u64::from_le_bytes(blake3::hash(name.as_bytes()).as_bytes()[..8].try_into().unwrap()));
    for run in 0..runs {
        let input = if rng.random_ratio(1, 16) {
            (0..rng.random_range(0..256)).map(|_| rng.random()).collect()
        } else {
            let base = &corpus[rng.random_range(0..corpus.len())].1;
            let other = &corpus[rng.random_range(0..corpus.len())].1;
            mutate(&mut rng, base, other)
        };
        let origin = format!("run {run} of MASS_FUZZ_SEED={seed}");
        check(name, target, &input, &origin);
    }
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
    job_record,
    dataset_manifest,
    model_manifest,
    pipeline,
    shard,
    member,
    boost_setup,
    trees,
    ref_record,
    csv,
    npy,
    predict_json,
);

/// Regenerates the seed files `seed-*` of every target from the fixture
/// (valid encodings of every kind of value) and `tests/data`:
/// `cargo test -p mass-node --lib fuzz::tests::write_seed_corpus -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn write_seed_corpus() {
    for (target, seeds) in seeds::all() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for old in std::fs::read_dir(&dir).unwrap().flatten() {
            if old.file_name().to_string_lossy().starts_with("seed-") {
                std::fs::remove_file(old.path()).unwrap();
            }
        }
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).unwrap();
        }
    }
}

mod seeds;
