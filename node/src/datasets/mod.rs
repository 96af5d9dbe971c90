//! Datasets: files in, validated and sharded content-addressed datasets out.
//!
//! # Layout
//! - [`ingest`]: streaming CSV (plain or gzip) parsing, type inference,
//!   validation, statistics, splits and sharding. Synchronous and pure apart
//!   from the `Read` it consumes and the callback that stores each shard.
//! - [`service`]: running an ingest against storage, and reading manifests.

pub mod ingest;
pub mod npy;
pub mod service;
pub mod stats;

pub use ingest::{IngestOptions, SplitChoice, ingest};

/// Refs of datasets are `dataset/<name>`.
pub const REF_PREFIX: &str = "dataset/";

/// Why a dataset could not be ingested or read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DataError {
    #[error("the file is empty")]
    Empty,
    #[error("the file has a header but no rows")]
    HeaderOnly,
    #[error("no column named '{label}' for the label; columns are: {columns}")]
    NoLabel { label: String, columns: String },
    #[error("row {row} (line {line}), column '{column}': {problem}")]
    Cell { row: u64, line: u64, column: String, problem: String },
    #[error("row {row} (line {line}): {problem}")]
    Row { row: u64, line: u64, problem: String },
    #[error("header: {0}")]
    Header(String),
    #[error("{0}")]
    Options(String),
    #[error("cannot read the file: {0}")]
    Read(String),
    #[error("cannot store the dataset: {0}")]
    Store(String),
}
