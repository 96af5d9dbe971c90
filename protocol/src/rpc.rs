//! Request-response messages between nodes, on [`crate::names::RPC_PROTOCOL`].
//!
//! Append variants only: their order is the wire format.

use serde::{Deserialize, Serialize};

use crate::{
    ContentId,
    advert::Advert,
    dataset::Schema,
    evaluation::{EvaluateShard, ShardEvaluation},
    features::{DataSummary, PipelineSpec},
    jobs::Assignment,
    serving::{PredictCall, Prediction},
    storage::{BlobKind, BlobMeta, RefEntry, RefRecord},
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Ask a peer for its current advert (sent on first connection, so a new
    /// peer is known with its hardware before the next gossip round).
    GetAdvert,
    /// Ask for a blob's chunk layout; answered with [`Response::BlobMeta`].
    GetBlobMeta { id: ContentId },
    /// Ask for one chunk of a blob; answered with [`Response::Chunk`].
    GetChunk { id: ContentId, index: u32 },
    /// "You are a home of this blob": the receiver fetches it if it lacks it,
    /// and answers at once with [`Response::Has`] (whether it already had it).
    Replicate { id: ContentId },
    /// Whether the peer holds a whole, verified copy; [`Response::Has`].
    HasBlob { id: ContentId },
    /// Every ref the peer knows, with history; [`Response::Refs`].
    ListRefs,
    /// Statistics of a shard the peer holds, for fitting a feature pipeline
    /// where the data lives; [`Response::Summary`].
    SummarizeShard { shard: ContentId, schema: Schema, spec: PipelineSpec },
    /// Train one sub-model; [`Response::Trained`].
    TrainTask(Box<Assignment>),
    /// Run a model version on rows; [`Response::Predicted`], or an error of
    /// kind [`RpcErrorKind::BadInput`] or [`RpcErrorKind::Overloaded`].
    Predict(Box<PredictCall>),
    /// Predict every row of a shard the peer holds with model version
    /// `manifest`; [`Response::ShardPredicted`].
    /// `extend`: also store the shard with the model's outputs appended as
    /// columns (a dataset a serial composition's next model trains on).
    PredictShard { manifest: ContentId, shard: ContentId, extend: bool },
    /// Moments (sums and sums of products) of `features` of a held shard's
    /// training rows through `pipeline`, for principal components;
    /// [`Response::Moments`].
    ShardMoments { shard: ContentId, pipeline: Box<crate::features::FittedPipeline>, features: Vec<usize> },
    /// A step of a boosted job grown across the shards' homes (the bytes of
    /// a message the node crate defines); [`Response::Boost`].
    Boost(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Judge a model on rows of a shard the peer holds;
    /// [`Response::Evaluated`].
    EvaluateShard(Box<EvaluateShard>),
    /// One ref the peer knows, with history; [`Response::Refs`] with at
    /// most one record (none: the peer does not know the name either).
    GetRef { name: String },
    /// "Hold this ref entry": the peer merges it, checked as a gossiped one,
    /// and answers [`Response::Has`] once it is stored, so a writer can
    /// acknowledge a write only when several nodes hold it.
    HoldRef { name: String, entry: RefEntry },
    /// What the peer says a blob it holds is, for accounting;
    /// [`Response::BlobKind`]. A peer built before this variant cannot
    /// decode it and drops the request: the asker counts the blob as
    /// [`BlobKind::Unknown`].
    GetBlobKind { id: ContentId },
    /// As [`Request::Replicate`], but answered once the fetch is over:
    /// [`Response::Has`] `true` when the peer holds the blob, `false` when
    /// its fetch did not end within the peer's bound. A driver's checkpoint
    /// waits on this rather than polling. A peer built before this variant
    /// drops the request; the asker then polls with `Replicate`.
    HoldNow { id: ContentId },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Advert(Box<Advert>),
    Error(RpcError),
    /// `None`: the peer does not hold the blob.
    BlobMeta(Option<BlobMeta>),
    /// `None`: the peer does not hold the chunk.
    Chunk(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    Has(bool),
    Refs(Vec<RefRecord>),
    Summary(DataSummary),
    /// The trained weights were stored on the trainer as this blob.
    /// `curve`: training loss after each epoch. `backend`: what trained it
    /// ("cpu", "wgpu:<adapter>"; appended, empty from older trainers).
    Trained {
        weights: ContentId,
        rows: u64,
        curve: Vec<f64>,
        #[serde(default)]
        backend: String,
    },
    Predicted(Box<Prediction>),
    /// CSV lines (`row,split,label,prediction`) for every row of the shard,
    /// and, for its test rows, (true class, predicted class, probability
    /// given to the true class) or (true value, predicted value).
    ShardPredicted {
        csv: String,
        test: Vec<(u32, u32, f32)>,
        values: Vec<(f64, f64)>,
        /// The extended shard's blob, and statistics of the output columns.
        extended: Option<(ContentId, Vec<crate::dataset::ColumnStats>)>,
    },
    Boost(#[serde(with = "serde_bytes")] Vec<u8>),
    Moments(crate::features::Moments),
    Evaluated(Box<ShardEvaluation>),
    /// `None`: the peer does not hold the blob.
    BlobKind(Option<BlobKind>),
}

/// Gossiped on [`crate::names::REF_TOPIC`] whenever a node writes a ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefUpdate {
    pub name: String,
    pub entry: RefEntry,
}

/// A request the peer understood but could not serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct RpcError {
    pub kind: RpcErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcErrorKind {
    /// The peer is not ready to answer yet (e.g. still starting).
    Unavailable,
    /// The request was well-formed but the peer refused it.
    Refused,
    /// The peer's own storage failed (disk error, corrupt copy).
    Storage,
    /// The request's data is wrong (a prediction row that does not fit the
    /// model's columns); retrying elsewhere cannot help.
    BadInput,
    /// The peer's queue is full; another replica may answer.
    Overloaded,
}
