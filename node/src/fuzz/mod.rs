//! Fuzz targets: one function per decoder of outside input. Each decodes
//! bytes as the node does, applies the checks the node applies, and then
//! does with the value what the node does next that could panic (the pure
//! work that reads it: statistics, transforms, predictions, tree growing),
//! against the small dataset and model of [`fixture`]. A target returns
//! normally on any input; a panic (or an abort, or a runaway allocation)
//! is a bug.
//!
//! CI runs every target as a seeded, bounded randomized test over the seed
//! corpus in `fuzz/corpus/` (`runner`); cargo-fuzz runs the same
//! functions from `fuzz/` where a nightly toolchain exists (see
//! `fuzz/README.md`). Built for the node's tests and with the `fuzzing`
//! feature only.
//!
//! # Layout
//! - [`wire`]: RPC requests and responses, gossip (adverts, refs, progress).
//! - [`boost`]: boosted jobs' messages, setups and rounds of trees.
//! - [`records`]: stored records (job records, manifests, pipelines,
//!   shards, members, refs).
//! - [`uploads`]: HTTP bodies (CSV, JSON Lines, Parquet and NumPy uploads, job specs, predict
//!   requests in JSON and Arrow).
//! - [`studies`]: hyperparameter studies (the submitted spec, the journal).
//! - [`serve`]: what serving does with rows and models, shared by the above.
//! - [`fixture`]: the dataset, pipeline, model and session targets run on.
//! - [`mutate`]: the stable runner's input generator; `seeds`: the seed
//!   corpus, generated from the fixture; `alloc`: the cap on a single
//!   allocation while a target runs (the node's test binary only).

// An allocator is unsafe code by nature; test builds only.
#[cfg(test)]
#[allow(unsafe_code)]
mod alloc;
pub mod boost;
pub mod fixture;
pub mod mutate;
pub mod records;
#[cfg(test)]
mod runner;
#[cfg(test)]
mod seeds;
pub mod serve;
pub mod studies;
pub mod uploads;
pub mod wire;

use mass_protocol::codec;

/// The node's test binary allocates through the fuzz cap (inert outside a
/// fuzz run).
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: alloc::Capped = alloc::Capped;

/// A fuzz target: any bytes in, no panic out.
pub type Target = fn(&[u8]);

/// Every target by name: the names of `fuzz/fuzz_targets/*.rs` and of the
/// corpus folders.
pub const TARGETS: &[(&str, Target)] = &[
    ("rpc_request", wire::rpc_request),
    ("rpc_response", wire::rpc_response),
    ("advert", wire::advert),
    ("ref_update", wire::ref_update),
    ("progress", wire::progress),
    ("boost_request", boost::boost_request),
    ("boost_reply", boost::boost_reply),
    ("boost_setup", boost::boost_setup),
    ("trees", boost::trees),
    ("job_record", records::job_record),
    ("dataset_manifest", records::dataset_manifest),
    ("model_manifest", records::model_manifest),
    ("pipeline", records::pipeline),
    ("shard", records::shard),
    ("member", records::member),
    ("ref_record", records::ref_record),
    ("csv", uploads::csv),
    ("jsonl", uploads::jsonl),
    ("parquet", uploads::parquet),
    ("npy", uploads::npy),
    ("job_spec_json", uploads::job_spec_json),
    ("predict_json", uploads::predict_json),
    ("predict_arrow", uploads::predict_arrow),
    ("study_json", studies::study_json),
    ("study_record", studies::study_record),
];

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Stored records are decoded with the record bound, as `Mesh::load` does.
fn record<T: serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
    codec::decode(data, codec::MAX_RECORD).ok()
}
