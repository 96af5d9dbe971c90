//! Datasets: a schema, row shards (each a blob), statistics, and a split.
//!
//! The manifest is itself a blob, named by `dataset/<name>`. It holds nothing
//! that varies between ingests of the same file with the same options, so
//! ingesting a file twice gives the same ids.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ContentId;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    Numeric,
    Categorical,
    Text,
}

impl ColumnKind {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "numeric" => Some(Self::Numeric),
            "categorical" => Some(Self::Categorical),
            "text" => Some(Self::Text),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub columns: Vec<Column>,
    /// Index of the label column in `columns`.
    pub label: usize,
}

impl Schema {
    /// Checks the label is one of the columns (a peer's request carries a
    /// schema, and statistics index the label's column by it).
    pub fn validate(&self) -> Result<(), InvalidSchema> {
        if self.label >= self.columns.len() {
            return Err(InvalidSchema::Label { label: self.label, columns: self.columns.len() });
        }
        Ok(())
    }
}

/// Why a schema cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSchema {
    #[error("the schema's label {label} is not one of its {columns} columns")]
    Label { label: usize, columns: usize },
}

/// How rows are assigned to train, validation and test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitSpec {
    /// Each row's split is drawn from blake3(seed, row): reproducible anywhere.
    Seeded { seed: u64, validation: f64, test: f64 },
    /// Rows listed in a file are test rows; `validation` of the rest, by seed.
    TestRows { rows: u64, list: ContentId, seed: u64, validation: f64 },
}

/// Split of one row; stored per row in each shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Validation,
    Test,
}

/// Statistics of one column over some rows; merging two is exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ColumnStats {
    pub present: u64,
    pub missing: u64,
    /// Numeric columns: min, max, sum, sum of squares of present values.
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub sum: f64,
    pub sum_sq: f64,
    /// Categorical columns (and the label): count of each value.
    pub counts: BTreeMap<String, u64>,
}

/// A shard as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub id: ContentId,
    pub first_row: u64,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetManifest {
    pub name: String,
    pub schema: Schema,
    pub rows: u64,
    pub shards: Vec<ShardInfo>,
    /// One per column, in schema order.
    pub stats: Vec<ColumnStats>,
    pub split: SplitSpec,
    /// Rows in each split: train, validation, test.
    pub split_rows: [u64; 3],
    /// The rows, whatever format they arrived in: [`DatasetManifest::content_of`]
    /// its shards. So a CSV and the Parquet or JSON Lines of the same data,
    /// ingested with the same name and options, give the same manifest and
    /// hence the same dataset id. (Manifests written before 2026-12-03 hold
    /// the uploaded file's hash here, then named `source`; the field kept its
    /// place, so they still decode.)
    #[serde(alias = "source")]
    pub content: ContentId,
}

impl DatasetManifest {
    /// blake3 over each shard's id, first row and row count, in order.
    pub fn content_of(shards: &[ShardInfo]) -> ContentId {
        let mut hasher = blake3::Hasher::new();
        for shard in shards {
            hasher.update(shard.id.as_bytes());
            hasher.update(&shard.first_row.to_le_bytes());
            hasher.update(&shard.rows.to_le_bytes());
        }
        ContentId::from(hasher.finalize())
    }

    /// Checks what every reader indexes by, so a manifest however crafted
    /// (a peer can store any bytes) cannot panic a node.
    pub fn validate(&self) -> Result<(), String> {
        if self.schema.label >= self.schema.columns.len() {
            return Err(format!("dataset '{}': its label is not one of its columns", self.name));
        }
        if self.stats.len() != self.schema.columns.len() {
            return Err(format!(
                "dataset '{}': statistics for {} of {} columns",
                self.name,
                self.stats.len(),
                self.schema.columns.len()
            ));
        }
        if self.shards.is_empty() || self.shards.iter().any(|s| s.rows == 0) {
            return Err(format!("dataset '{}': no shards, or an empty one", self.name));
        }
        let listed: u64 = self.shards.iter().map(|s| s.rows).fold(0, u64::saturating_add);
        let split: u64 = self.split_rows.iter().fold(0, |a, b| a.saturating_add(*b));
        if listed != self.rows || split != self.rows {
            return Err(format!(
                "dataset '{}': its shards or splits do not add up to its {} rows",
                self.name, self.rows
            ));
        }
        Ok(())
    }

    /// Count of each label value.
    pub fn label_histogram(&self) -> &BTreeMap<String, u64> {
        &self.stats[self.schema.label].counts
    }
}

/// One column of a shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShardColumn {
    /// NaN marks a missing value.
    Numeric(Vec<f64>),
    /// Dictionary-encoded; `u32::MAX` marks a missing value.
    Categorical {
        values: Vec<String>,
        codes: Vec<u32>,
    },
    Text(Vec<Option<String>>),
    /// Numbers that are all whole in 0..=255 (pixels, counts, small codes),
    /// a byte each: 8 times less to store, read, check and decode than
    /// `Numeric`. `missing` lists, in order, the rows whose value is missing
    /// (their byte is 0). Written by [`ShardColumn::numbers`] only.
    Bytes {
        #[serde(with = "serde_bytes")]
        values: Vec<u8>,
        missing: Vec<u32>,
    },
    /// Numbers that f32 holds exactly (whole numbers up to 2^24, halves...);
    /// NaN marks a missing value. Written by [`ShardColumn::numbers`] only.
    Float32(#[serde(with = "crate::shard_column::f32_bytes")] Vec<f32>),
}

/// A block of consecutive rows, stored column by column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    pub first_row: u64,
    pub columns: Vec<ShardColumn>,
    pub splits: Vec<Split>,
}

impl Shard {
    pub fn rows(&self) -> usize {
        self.splits.len()
    }

    /// Rows `range` (within [`Self::rows`]) as a shard of their own.
    pub fn slice_rows(&self, range: std::ops::Range<usize>) -> Shard {
        Shard {
            first_row: self.first_row + range.start as u64,
            columns: self.columns.iter().map(|c| c.slice(range.clone())).collect(),
            splits: self.splits[range].to_vec(),
        }
    }

    /// Checks that every column holds one value per row: readers index
    /// columns by row, so a crafted shard (a peer can store any bytes)
    /// must be refused before it reaches them.
    pub fn validate(&self) -> Result<(), InvalidShard> {
        let rows = self.rows();
        for (column, values) in self.columns.iter().enumerate() {
            let got = values.len();
            if got != rows {
                return Err(InvalidShard::Length { column, got, rows });
            }
            if let ShardColumn::Bytes { missing, .. } = values {
                if let Some(&row) = missing.iter().find(|&&r| r as usize >= rows) {
                    return Err(InvalidShard::MissingRow { column, row, rows });
                }
                if missing.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(InvalidShard::MissingOrder { column });
                }
            }
        }
        Ok(())
    }
}

/// Why a stored shard cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidShard {
    #[error("shard column {column} holds {got} values for the shard's {rows} rows")]
    Length { column: usize, got: usize, rows: usize },
    #[error("shard column {column} lists row {row} as missing, past the shard's {rows} rows")]
    MissingRow { column: usize, row: u32, rows: usize },
    #[error("shard column {column} lists its missing rows out of order")]
    MissingOrder { column: usize },
}

/// `GET /v1/datasets` rows, and where each shard lives for `GET /v1/datasets/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub name: String,
    pub manifest: ContentId,
    pub version: u64,
    pub rows: u64,
    pub columns: usize,
    pub shards: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetView {
    pub manifest_id: ContentId,
    pub version: u64,
    pub manifest: DatasetManifest,
    /// Peer ids holding each shard, as far as this node can tell.
    pub shard_holders: Vec<Vec<String>>,
}

#[cfg(test)]
mod shard_tests {
    use super::*;

    /// Fuzz regression: a column shorter than the shard's splits panicked
    /// every reader indexing it by row.
    #[test]
    fn a_column_shorter_than_the_rows_is_refused() {
        let shard = Shard {
            first_row: 0,
            columns: vec![ShardColumn::Numeric(vec![1.0, 2.0]), ShardColumn::Text(vec![None])],
            splits: vec![Split::Train, Split::Test],
        };
        assert_eq!(shard.validate(), Err(InvalidShard::Length { column: 1, got: 1, rows: 2 }));
        let whole = Shard { columns: vec![ShardColumn::Numeric(vec![1.0, 2.0])], ..shard };
        assert_eq!(whole.validate(), Ok(()));
    }

    /// Fuzz regression: a `SummarizeShard` request whose schema named a
    /// label past its columns panicked the node summarizing the shard.
    #[test]
    fn a_label_outside_the_columns_is_refused() {
        let column = Column { name: "x".into(), kind: ColumnKind::Numeric };
        let schema = Schema { columns: vec![column], label: 1 };
        assert_eq!(schema.validate(), Err(InvalidSchema::Label { label: 1, columns: 1 }));
        assert_eq!(Schema { label: 0, ..schema }.validate(), Ok(()));
    }
}
