//! Datasets: files in, validated and sharded content-addressed datasets out.
//!
//! # Layout
//! - [`ingest`]: streaming CSV (plain or gzip) parsing, type inference,
//!   validation, statistics, splits and sharding. Synchronous and pure apart
//!   from the `Read` it consumes and the callback that stores each shard.
//! - [`jsonl`]: JSON Lines, turned into the records the CSV reader yields and
//!   ingested by the same code from there.
//! - [`parquet`]: Parquet, its rows turned into the same records; spooled
//!   to a temporary file first, since its index is at its end.
//! - [`npy`]: NumPy arrays (a labels vector and a features matrix).
//! - [`parallel`]: the ordered parallel map CSV, JSON Lines and Parquet ingest run
//!   their rows through: parsed on every core, stored in file order.
//! - [`service`]: running an ingest against storage, and reading manifests.

pub mod ingest;
pub mod jsonl;
pub mod npy;
pub mod parallel;
pub mod parquet;
pub mod service;
pub mod stats;

pub use self::parquet::{ingest_parquet, ingest_parquet_bytes};
pub use ingest::{IngestOptions, SplitChoice, ingest};
pub use jsonl::ingest_jsonl;

/// How an upload's bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// NumPy arrays or Parquet when the bytes start with their magic, else CSV.
    #[default]
    Auto,
    Csv,
    /// JSON Lines: one object of column -> value per line.
    Jsonl,
    Npy,
    Parquet,
}

impl Format {
    /// `csv`, `jsonl` (or `ndjson`), `npy` or `parquet`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "npy" | "numpy" => Some(Format::Npy),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }

    /// The format a `Content-Type` names: JSON Lines' `application/x-ndjson`
    /// (also `application/ndjson`, `application/jsonl`,
    /// `application/x-jsonlines`), which the bytes cannot tell, or Parquet's
    /// `application/vnd.apache.parquet` (also `application/x-parquet`). Any
    /// other type leaves the bytes to decide.
    pub fn of_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines" => {
                Some(Format::Jsonl)
            }
            "application/vnd.apache.parquet" | "application/x-parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::Format;

    #[test]
    fn formats_from_the_parameter_and_the_content_type() {
        assert_eq!(Format::parse("JSONL"), Some(Format::Jsonl));
        assert_eq!(Format::parse("ndjson"), Some(Format::Jsonl));
        assert_eq!(Format::parse("csv"), Some(Format::Csv));
        assert_eq!(Format::parse("npy"), Some(Format::Npy));
        assert_eq!(Format::parse("Parquet"), Some(Format::Parquet));
        assert_eq!(Format::parse("xml"), None);
        assert_eq!(Format::of_content_type("application/x-ndjson; charset=utf-8"), Some(Format::Jsonl));
        assert_eq!(Format::of_content_type("Application/JSONL"), Some(Format::Jsonl));
        assert_eq!(Format::of_content_type("application/vnd.apache.parquet"), Some(Format::Parquet));
        assert_eq!(Format::of_content_type("application/x-parquet"), Some(Format::Parquet));
        for other in ["text/csv", "application/octet-stream", "application/json", ""] {
            assert_eq!(Format::of_content_type(other), None, "{other}");
        }
    }
}
