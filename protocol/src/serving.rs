//! Serving: rows sent for prediction, answers, and the model registry's views.
//!
//! Rows arrive as JSON (objects keyed by column name, or arrays in schema
//! order) and are turned into [`Row`]s at the HTTP edge, so a node that
//! forwards a request to a replica sends typed values, never JSON.

use serde::{Deserialize, Serialize};

use crate::{
    ContentId,
    jobs::{Evaluation, ModelManifest},
};

/// One cell of a row to predict on, as the client wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cell {
    /// JSON `null`.
    Missing,
    Number(f64),
    Text(String),
    Bool(bool),
}

/// A row to predict on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Row {
    /// Values of the feature columns, in schema order (the label left out).
    Values(Vec<Cell>),
    /// Values keyed by column name.
    Named(Vec<(String, Cell)>),
}

/// A prediction request as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictCall {
    pub model: String,
    /// The exact version to answer with (the entry node resolved it).
    pub manifest: ContentId,
    pub version: u64,
    pub rows: Vec<Row>,
    /// Treat `null` and NaN as missing values for the pipeline to impute,
    /// instead of refusing them.
    pub allow_missing: bool,
}

/// `POST /v1/models/{name}/predict` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub model: String,
    pub version: u64,
    pub manifest: ContentId,
    /// The predicted class of each row.
    pub predictions: Vec<String>,
    /// Each row's probability of each class, in the order of `classes`.
    pub probabilities: Vec<Vec<f32>>,
    pub classes: Vec<String>,
    /// Peer id of the node that ran the model.
    pub served_by: String,
}

/// One version of a model: versions are numbered by first publication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub version: u64,
    pub manifest: ContentId,
    /// When this version was first published, Unix milliseconds.
    pub published_at: u64,
}

/// `GET /v1/models` rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub name: String,
    /// The version served now.
    pub version: u64,
    pub manifest: ContentId,
    pub versions: usize,
    /// Test accuracy of the version served now (unknown while its manifest
    /// cannot be read).
    pub accuracy: Option<f64>,
}

/// `GET /v1/models/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelView {
    pub name: String,
    pub version: u64,
    pub manifest_id: ContentId,
    pub manifest: ModelManifest,
    pub versions: Vec<ModelVersion>,
    /// Peers serving this version from their own copy.
    pub replicas: Vec<String>,
}

/// `POST /v1/models/{name}/promote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    pub version: u64,
}

/// `POST /v1/models/{name}/batch`: predict every row of a stored dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchPredict {
    pub dataset: String,
}

/// What a batch prediction wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPrediction {
    pub model: String,
    pub version: u64,
    pub dataset: String,
    /// A CSV blob: `row,split,label,prediction`.
    pub blob: ContentId,
    pub rows: u64,
    /// Metrics on the dataset's test rows, as served now.
    pub test: Option<Evaluation>,
    /// Peer that predicted each shard.
    pub shard_peers: Vec<String>,
}

/// Versions of a model ref: its distinct targets in the order they were
/// first published. `history` is a ref's history, oldest first.
pub fn versions_of(history: &[crate::storage::RefEntry]) -> Vec<ModelVersion> {
    let mut versions: Vec<ModelVersion> = Vec::new();
    for entry in history {
        if let Some(target) = entry.target
            && !versions.iter().any(|v| v.manifest == target)
        {
            versions.push(ModelVersion {
                version: versions.len() as u64 + 1,
                manifest: target,
                published_at: entry.set_at,
            });
        }
    }
    versions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::RefEntry;

    #[test]
    fn versions_count_distinct_targets_in_publication_order() {
        let a = ContentId::of(b"a");
        let b = ContentId::of(b"b");
        let entry = |version, target| RefEntry { version, target, clock: version, origin: "p".into(), set_at: version };
        // Published a, then b, rolled back to a, deleted, then b again.
        let history = [entry(1, Some(a)), entry(2, Some(b)), entry(3, Some(a)), entry(4, None), entry(5, Some(b))];
        let versions = versions_of(&history);
        assert_eq!(versions.iter().map(|v| (v.version, v.manifest)).collect::<Vec<_>>(), vec![(1, a), (2, b)]);
        assert_eq!(versions[1].published_at, 2);
    }
}
