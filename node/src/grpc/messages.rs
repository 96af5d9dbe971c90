//! The messages of `mass.v1.Predictor`, derived with prost (no protoc at
//! build time). `docs/mass.proto` is the same service for other languages'
//! code generators; the field numbers here are the wire format.

use std::collections::BTreeMap;

/// `Predict`'s request: rows as values (feature columns in schema order) or
/// named cells, or a dense numeric `matrix` of `columns` per row.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PredictRequest {
    #[prost(string, tag = "1")]
    pub model: String,
    #[prost(message, repeated, tag = "2")]
    pub rows: Vec<Row>,
    /// Row-major numbers, `columns` per row; NaN is a missing value.
    #[prost(double, repeated, tag = "3")]
    pub matrix: Vec<f64>,
    #[prost(uint32, tag = "4")]
    pub columns: u32,
    /// Missing values are imputed by the pipeline instead of refused.
    #[prost(bool, tag = "5")]
    pub allow_missing: bool,
}

/// One row: `values` in schema order, or `named` by column (not both).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Row {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<Value>,
    #[prost(btree_map = "string, message", tag = "2")]
    pub named: BTreeMap<String, Value>,
}

/// A cell; one with no kind set is a missing value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(oneof = "value::Kind", tags = "1, 2, 3")]
    pub kind: Option<value::Kind>,
}

pub mod value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(double, tag = "1")]
        Number(f64),
        #[prost(string, tag = "2")]
        Text(String),
        #[prost(bool, tag = "3")]
        Flag(bool),
    }
}

/// `Predict`'s answer, as `POST /v1/models/{name}/predict` gives it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PredictReply {
    #[prost(string, tag = "1")]
    pub model: String,
    #[prost(uint64, tag = "2")]
    pub version: u64,
    /// The version's manifest id.
    #[prost(string, tag = "3")]
    pub manifest: String,
    /// A classifier's classes; empty for a regressor.
    #[prost(string, repeated, tag = "4")]
    pub classes: Vec<String>,
    /// A classifier's predicted class per row.
    #[prost(string, repeated, tag = "5")]
    pub predicted_classes: Vec<String>,
    /// A regressor's predicted value per row.
    #[prost(double, repeated, tag = "6")]
    pub values: Vec<f64>,
    /// Row-major probabilities, one per class per row.
    #[prost(float, repeated, tag = "7")]
    pub probabilities: Vec<f32>,
    /// Peer id of the node that ran the model.
    #[prost(string, tag = "8")]
    pub served_by: String,
}
