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

/// The rows of one prediction request: one by one (JSON, gRPC), or whole
/// columns (`.npy`, Arrow), which go into the model's matrix without a
/// cell per value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Rows {
    Listed(Vec<Row>),
    /// Columns of equal length: named ones are matched to the schema by
    /// name; unnamed ones are the feature columns in schema order.
    Columns(Vec<Column>),
    /// A row-major matrix of the feature columns in schema order, as a
    /// `.npy` body carries it. Kept as it came: a model whose features are
    /// those columns scaled reads it without turning it into columns and
    /// back into rows (two passes that were a third of a 1,000-row batch).
    Matrix(Matrix),
}

/// A [`Rows::Matrix`]: `values` holds `rows x columns` numbers, row after
/// row, in one layout (`Numbers`, `Float32` or `Bytes`; NaN is a missing
/// value). `Cells` are refused where the matrix is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    pub columns: usize,
    pub values: ColumnValues,
}

impl Matrix {
    /// Rows: the values over the columns, rounded down (a matrix whose
    /// values do not fill its last row is refused where it is read).
    pub fn rows(&self) -> usize {
        self.values.len().checked_div(self.columns).unwrap_or(0)
    }

    /// The matrix as columns, each whole: one pass over the values in
    /// blocks of rows, so each column gets a run of values at a time.
    /// `None` for cells.
    pub fn to_columns(&self) -> Option<Vec<ColumnValues>> {
        fn split<T: Copy + Default>(values: &[T], columns: usize) -> Vec<Vec<T>> {
            const BLOCK: usize = 16;
            let rows = values.len().checked_div(columns).unwrap_or(0);
            let mut out: Vec<Vec<T>> = (0..columns).map(|_| vec![T::default(); rows]).collect();
            for (b, block) in values[..rows * columns].chunks(columns * BLOCK).enumerate() {
                for (c, column) in out.iter_mut().enumerate() {
                    for (value, row) in column[b * BLOCK..].iter_mut().zip(block.chunks_exact(columns)) {
                        *value = row[c];
                    }
                }
            }
            out
        }
        Some(match &self.values {
            ColumnValues::Numbers(v) => split(v, self.columns).into_iter().map(ColumnValues::Numbers).collect(),
            ColumnValues::Float32(v) => split(v, self.columns).into_iter().map(ColumnValues::Float32).collect(),
            ColumnValues::Bytes(v) => split(v, self.columns).into_iter().map(ColumnValues::Bytes).collect(),
            ColumnValues::Cells(_) => return None,
        })
    }
}

/// One column of a [`Rows::Columns`] batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: Option<String>,
    pub values: ColumnValues,
}

/// A column's values: numbers (NaN is a missing value), or any cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ColumnValues {
    Numbers(Vec<f64>),
    Cells(Vec<Cell>),
    /// Numbers sent as bytes (a `.npy` of `u1`, an Arrow `UInt8` column
    /// without nulls): forwarded to a replica and put in the model's matrix
    /// at an eighth of the size of `Numbers`.
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Numbers sent as f32 (`.npy` `f4`, Arrow `Float32`); NaN is a missing value.
    Float32(#[serde(with = "crate::shard_column::f32_bytes")] Vec<f32>),
}

impl ColumnValues {
    pub fn len(&self) -> usize {
        match self {
            ColumnValues::Numbers(v) => v.len(),
            ColumnValues::Cells(v) => v.len(),
            ColumnValues::Bytes(v) => v.len(),
            ColumnValues::Float32(v) => v.len(),
        }
    }

    /// The values as f64 when they are numbers, in any layout (NaN missing).
    pub fn numbers(&self) -> Option<std::borrow::Cow<'_, [f64]>> {
        use std::borrow::Cow;
        match self {
            ColumnValues::Numbers(v) => Some(Cow::Borrowed(v)),
            ColumnValues::Bytes(v) => Some(Cow::Owned(v.iter().map(|&b| f64::from(b)).collect())),
            ColumnValues::Float32(v) => Some(Cow::Owned(v.iter().map(|&x| f64::from(x)).collect())),
            ColumnValues::Cells(_) => None,
        }
    }

    /// The values as cells (numbers as numbers, NaN as missing).
    pub fn into_cells(self) -> Vec<Cell> {
        match self {
            ColumnValues::Cells(cells) => cells,
            numbers => numbers
                .numbers()
                .unwrap_or_default()
                .iter()
                .map(|&v| if v.is_nan() { Cell::Missing } else { Cell::Number(v) })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Rows {
    /// How many rows: a column batch's first column's length (a batch
    /// whose columns differ in length is refused where it is read).
    pub fn len(&self) -> usize {
        match self {
            Rows::Listed(rows) => rows.len(),
            Rows::Columns(columns) => columns.first().map_or(0, |c| c.values.len()),
            Rows::Matrix(matrix) => matrix.rows(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Vec<Row>> for Rows {
    fn from(rows: Vec<Row>) -> Self {
        Rows::Listed(rows)
    }
}

/// A prediction request as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictCall {
    pub model: String,
    /// The exact version to answer with (the entry node resolved it).
    pub manifest: ContentId,
    pub version: u64,
    pub rows: Rows,
    /// Treat `null` and NaN as missing values for the pipeline to impute,
    /// instead of refusing them.
    pub allow_missing: bool,
}

/// One row's answer: a class, or a number for regression. In JSON it is a
/// plain string or number; on the wire between nodes, a tagged enum.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicted {
    Class(String),
    Value(f64),
}

/// The tagged form nodes exchange (bincode cannot read untagged values).
#[derive(Serialize, Deserialize)]
enum TaggedPredicted {
    Class(String),
    Value(f64),
}

impl Serialize for Predicted {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match (self, serializer.is_human_readable()) {
            (Predicted::Class(c), true) => serializer.serialize_str(c),
            (Predicted::Value(v), true) => serializer.serialize_f64(*v),
            (Predicted::Class(c), false) => TaggedPredicted::Class(c.clone()).serialize(serializer),
            (Predicted::Value(v), false) => TaggedPredicted::Value(*v).serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Predicted {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            return Ok(match TaggedPredicted::deserialize(deserializer)? {
                TaggedPredicted::Class(c) => Predicted::Class(c),
                TaggedPredicted::Value(v) => Predicted::Value(v),
            });
        }
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Predicted;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a class name or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Predicted, E> {
                Ok(Predicted::Class(v.to_owned()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Predicted, E> {
                Ok(Predicted::Value(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Predicted, E> {
                Ok(Predicted::Value(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Predicted, E> {
                Ok(Predicted::Value(v as f64))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The JSON shape of a [`Predicted`]: its serde is hand-written, so the
/// schema is too.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Predicted)]
#[allow(dead_code)]
#[serde(untagged)]
enum PredictedSchema {
    /// The class.
    Class(String),
    /// The value, for a regressor.
    Value(f64),
}

impl Predicted {
    /// The class, or the number as text.
    pub fn text(&self) -> String {
        match self {
            Predicted::Class(c) => c.clone(),
            Predicted::Value(v) => v.to_string(),
        }
    }

    pub fn value(&self) -> Option<f64> {
        match self {
            Predicted::Value(v) => Some(*v),
            Predicted::Class(_) => None,
        }
    }
}

/// `POST /v1/models/{name}/predict` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Prediction {
    pub model: String,
    pub version: u64,
    pub manifest: ContentId,
    /// The predicted class (classification) or value (regression) of each row.
    #[schema(value_type = Vec<PredictedSchema>)]
    pub predictions: Vec<Predicted>,
    /// Each row's probability of each class, in the order of `classes`
    /// (empty for regression).
    pub probabilities: Vec<Vec<f32>>,
    pub classes: Vec<String>,
    /// Peer id of the node that ran the model.
    pub served_by: String,
}

/// One version of a model: versions are numbered by first publication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelVersion {
    pub version: u64,
    pub manifest: ContentId,
    /// When this version was first published, Unix milliseconds.
    pub published_at: u64,
}

/// `GET /v1/models` rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelSummary {
    pub name: String,
    /// The version served now.
    pub version: u64,
    pub manifest: ContentId,
    pub versions: usize,
    /// Test accuracy of the version served now (unknown while its manifest
    /// cannot be read, and for regressors).
    pub accuracy: Option<f64>,
    /// Test R2 of the version served now, for regressors.
    #[serde(default)]
    pub r2: Option<f64>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    pub version: u64,
}

/// `POST /v1/models/{name}/batch`: predict every row of a stored dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchPredict {
    pub dataset: String,
    /// Also store the rows with the model's outputs as columns, as a new
    /// dataset of this name (what a serial composition's next model trains on).
    #[serde(default)]
    pub into: Option<String>,
    /// Answer when the scoring job is over (the default), or at once with
    /// its id (`{"scoring": ID}`, 202) to follow at `GET /v1/scorings/{id}`.
    #[serde(default = "waits")]
    pub wait: bool,
}

fn waits() -> bool {
    true
}

/// A batch prediction as a job: one version of a model over one version of
/// a dataset. Its blob's id names the job (`scoring/<id>` holds its record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoringSpec {
    pub model: String,
    /// The version served when it was submitted, and its manifest.
    pub version: u64,
    pub manifest: ContentId,
    pub dataset: String,
    pub dataset_manifest: ContentId,
    pub into: Option<String>,
    /// Makes each submission its own job.
    pub nonce: u64,
}

/// Where a scoring job stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoringState {
    Running,
    Completed,
    Failed(String),
}

impl ScoringState {
    pub fn is_over(&self) -> bool {
        !matches!(self, ScoringState::Running)
    }
}

/// One scored shard: the blob of its predictions and who computed them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredShard {
    pub blob: ContentId,
    pub peer: String,
}

/// A scoring job's record, checkpointed as it goes: a new driver scores
/// only the shards not yet in `shards`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoringRecord {
    pub id: ContentId,
    pub spec: ScoringSpec,
    /// One entry per shard of the dataset, in shard order; `None` until scored.
    pub shards: Vec<Option<ScoredShard>>,
    /// Every peer that drove it, in order.
    pub drivers: Vec<String>,
    pub state: ScoringState,
    pub result: Option<BatchPrediction>,
    /// Drives that stopped short; the job fails after a few.
    pub attempts: u32,
}

/// `POST /v1/models/{name}/compose`: a model made of registered models.
/// JSON: `{"serial": ["reduce", "classify"]}` or
/// `{"parallel": [{"model": "a", "weight": 0.5}, {"model": "b"}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Compose {
    /// Each model reads the rows plus the outputs of the one before it.
    Serial(Vec<String>),
    /// The models' answers averaged with weights (same columns and task).
    Parallel(Vec<ComposePart>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComposePart {
    pub model: String,
    /// Default 1.
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// `POST /v1/models/{name}/compress`: one of `{"quantize": "int8"}`,
/// `{"prune": 0.8, "fine_tune_epochs": 2}` or `{"distill": "mlp:64"}`,
/// with `"version": N` to compress another version than the current one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompressRequest {
    /// The version to compress; default: the one served now.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub version: Option<u64>,
    /// `int8`: quantize the weights to 8-bit integers.
    #[serde(default)]
    #[schema(pattern = "^int8$")]
    pub quantize: Option<String>,
    /// Fraction of each layer's weights to remove (magnitude pruning).
    #[serde(default)]
    #[schema(exclusive_minimum = 0, exclusive_maximum = 1)]
    pub prune: Option<f64>,
    /// With `prune`: epochs of training keeping the removed weights at zero.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000)]
    pub fine_tune_epochs: Option<u32>,
    /// Distill an ensemble into one network, the student:
    /// `mlp:WIDTH[,WIDTH...]` (1-16 layers of 1-65536 units).
    #[serde(default)]
    pub distill: Option<String>,
}

/// Fine-tuning epochs after pruning at most.
pub const MAX_FINE_TUNE_EPOCHS: u32 = 1_000;

impl CompressRequest {
    /// The one method asked for, read; each problem named.
    pub fn method(&self) -> Result<crate::jobs::CompressMethod, String> {
        use crate::jobs::{CompressMethod, Learner};
        let asked = [self.quantize.is_some(), self.prune.is_some(), self.distill.is_some()];
        if asked.iter().filter(|a| **a).count() != 1 {
            return Err("give exactly one of quantize (int8), prune (a sparsity) or distill (mlp:WIDTHS)".into());
        }
        if self.fine_tune_epochs.is_some() && self.prune.is_none() {
            return Err("fine_tune_epochs goes with prune only".into());
        }
        if let Some(q) = &self.quantize {
            return match q.as_str() {
                "int8" => Ok(CompressMethod::Int8),
                other => Err(format!("quantize '{other}': only int8 is supported")),
            };
        }
        if let Some(sparsity) = self.prune {
            let fine_tune_epochs = self.fine_tune_epochs.unwrap_or(0);
            if fine_tune_epochs > MAX_FINE_TUNE_EPOCHS {
                return Err(format!("fine_tune_epochs {fine_tune_epochs}: at most {MAX_FINE_TUNE_EPOCHS}"));
            }
            return Ok(CompressMethod::Prune { sparsity, fine_tune_epochs });
        }
        let spec = self.distill.as_deref().unwrap_or_default();
        match Learner::parse(spec) {
            Ok(Learner::Mlp { hidden }) => Ok(CompressMethod::Distill { hidden }),
            Ok(_) => Err(format!("distill '{spec}': the student must be a network, mlp:WIDTH[,WIDTH...]")),
            Err(e) => Err(format!("distill: {e}")),
        }
    }
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
    /// The manifest of the dataset made with `into`.
    #[serde(default)]
    pub into: Option<ContentId>,
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

    /// A matrix's columns hold its values column by column, past a block
    /// of rows and in every layout; cells have none.
    #[test]
    fn a_matrix_splits_into_its_columns() {
        let (rows, columns) = (37, 3);
        let values: Vec<u8> = (0..rows * columns).map(|i| (i * 7 % 256) as u8).collect();
        let matrix = Matrix { columns, values: ColumnValues::Bytes(values.clone()) };
        assert_eq!(matrix.rows(), rows);
        assert_eq!(Rows::Matrix(matrix.clone()).len(), rows);
        let split = matrix.to_columns().unwrap();
        for (c, column) in split.iter().enumerate() {
            let expected: Vec<u8> = (0..rows).map(|r| values[r * columns + c]).collect();
            assert_eq!(column, &ColumnValues::Bytes(expected), "column {c}");
        }
        let single = Matrix { columns: 2, values: ColumnValues::Float32(vec![1.0, 2.0, 3.0, 4.0]) };
        assert_eq!(single.to_columns().unwrap()[1], ColumnValues::Float32(vec![2.0, 4.0]));
        let wide = Matrix { columns: 1, values: ColumnValues::Numbers(vec![0.5, f64::MAX]) };
        assert_eq!(wide.to_columns().unwrap(), [ColumnValues::Numbers(vec![0.5, f64::MAX])]);
        assert_eq!(Matrix { columns: 1, values: ColumnValues::Cells(vec![Cell::Missing]) }.to_columns(), None);
        assert_eq!(Matrix { columns: 0, values: ColumnValues::Bytes(vec![1]) }.rows(), 0);
    }

    /// A forwarded batch of byte columns is about an eighth of the same
    /// numbers as f64, and every layout reads back as it was sent.
    #[test]
    fn narrow_columns_travel_at_their_width() {
        let rows = |values: ColumnValues| Rows::Columns(vec![Column { name: None, values }]);
        let bytes: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let narrow = crate::codec::encode(&rows(ColumnValues::Bytes(bytes.clone()))).unwrap();
        let numbers: Vec<f64> = bytes.iter().map(|&b| f64::from(b)).collect();
        let wide = crate::codec::encode(&rows(ColumnValues::Numbers(numbers.clone()))).unwrap();
        assert!(narrow.len() * 7 < wide.len(), "{} vs {} bytes", narrow.len(), wide.len());
        for values in [ColumnValues::Bytes(bytes), ColumnValues::Float32(vec![0.5, f32::MIN, 3.0])] {
            let sent = rows(values);
            let back: Rows = crate::codec::decode(&crate::codec::encode(&sent).unwrap(), 1 << 20).unwrap();
            assert_eq!(back, sent);
        }
        assert_eq!(ColumnValues::Bytes(vec![7]).numbers().unwrap()[0], 7.0);
        assert_eq!(ColumnValues::Float32(vec![f32::NAN]).into_cells(), vec![Cell::Missing]);
    }

    #[test]
    fn predictions_are_plain_in_json_and_tagged_between_nodes() {
        let answers = vec![Predicted::Class("7".into()), Predicted::Value(2.5)];
        assert_eq!(serde_json::to_string(&answers).unwrap(), r#"["7",2.5]"#);
        assert_eq!(serde_json::from_str::<Vec<Predicted>>(r#"["7",2.5,3]"#).unwrap()[2], Predicted::Value(3.0));
        let bytes = crate::codec::encode(&answers).unwrap();
        assert_eq!(crate::codec::decode::<Vec<Predicted>>(&bytes, 1024).unwrap(), answers);
    }

    #[test]
    fn versions_count_distinct_targets_in_publication_order() {
        let a = ContentId::of(b"a");
        let b = ContentId::of(b"b");
        let entry = |version, target| RefEntry {
            version,
            target,
            clock: version,
            origin: "p".into(),
            set_at: version,
            signature: vec![],
        };
        // Published a, then b, rolled back to a, deleted, then b again.
        let history = [entry(1, Some(a)), entry(2, Some(b)), entry(3, Some(a)), entry(4, None), entry(5, Some(b))];
        let versions = versions_of(&history);
        assert_eq!(versions.iter().map(|v| (v.version, v.manifest)).collect::<Vec<_>>(), vec![(1, a), (2, b)]);
        assert_eq!(versions[1].published_at, 2);
    }
}

/// Formats a model leaves the mesh in (`GET /v1/models/{name}/export`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// Dense weights, with the fitted pipeline and classes as metadata.
    Safetensors,
    /// The whole model as an ONNX graph, scaling step included.
    Onnx,
}

impl ExportFormat {
    /// `safetensors` or `onnx`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "safetensors" => Ok(Self::Safetensors),
            "onnx" => Ok(Self::Onnx),
            other => Err(format!("format '{other}' is not one Mass exports (safetensors or onnx)")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Safetensors => "safetensors",
            Self::Onnx => "onnx",
        }
    }
}

/// `POST /v1/models/{name}/import`: a safetensors weight file, uploaded as
/// a blob, registered as a new version of model `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportModel {
    /// The weight file's blob.
    pub blob: ContentId,
    /// The dataset whose columns the model reads and whose test rows
    /// evaluate it.
    pub dataset: String,
    /// How rows become features; by default the pipeline in the file's metadata.
    /// `{"spec": {...}}` (fitted on the dataset's training rows) or
    /// `{"fitted": {...}}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub pipeline: Option<ImportPipeline>,
    /// Activation of the hidden layers (`relu` or `tanh`) when the file
    /// does not say; ReLU when neither does.
    #[serde(default)]
    pub activation: Option<String>,
}

/// The pipeline of an imported model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportPipeline {
    /// Fitted on the dataset's training rows, where they live.
    Spec(crate::features::PipelineSpec),
    /// Already fitted (as `mass models export` writes it in the metadata).
    Fitted(Box<crate::features::FittedPipeline>),
}
