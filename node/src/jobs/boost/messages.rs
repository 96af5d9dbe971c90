//! What the driver of a boosted job, the workers holding its rows and the
//! owners of feature slices say to each other. Carried as the bytes of
//! `Request::Boost` / `Response::Boost` (the tree types live in the
//! kernels, which the protocol crate does not know), encoded by the one
//! codec. Append variants only: their order is the wire format.

use mass_kernels::models::gbdt::{
    histogram::BinSum,
    split::Candidate,
    tree::{SplitOrder, Tree},
};
use mass_protocol::{ContentId, codec};
use serde::{Deserialize, Serialize};

/// One driver's run of a job: a new driver (or a retry) opens new sessions,
/// and workers drop sessions of older generations.
pub type Generation = u64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BoostRequest {
    /// Hold the training and validation rows of `shards`, binned by the
    /// setup's bins, with the trees of every finished round already added;
    /// own the features `slice` (their histograms are merged here). Answers
    /// [`BoostReply::Opened`].
    Open {
        job: ContentId,
        generation: Generation,
        setup: ContentId,
        pipeline: ContentId,
        shards: Vec<ContentId>,
        rounds: Vec<ContentId>,
        slice: (u32, u32),
        /// Peer ids of every worker (owners pull slices from all of them).
        workers: Vec<String>,
    },
    /// Start round `round`: gradients, the round's sample, each output's
    /// root histogram. Answers [`BoostReply::Roots`].
    StartRound { job: ContentId, generation: Generation, round: u32 },
    /// As an owner: merge these nodes' histograms over the owned slice
    /// from every worker and find each wanted node's best split there.
    /// Answers [`BoostReply::Best`].
    Merge { job: ContentId, generation: Generation, items: Vec<MergeItem> },
    /// As a worker: the bins of `features` of these nodes' histograms,
    /// after applying each item's split. Answers [`BoostReply::Slices`].
    Slices { job: ContentId, generation: Generation, features: (u32, u32), items: Vec<SliceItem> },
    /// The round's trees (one per output): add them to every row's score.
    /// Answers [`BoostReply::Losses`].
    EndRound { job: ContentId, generation: Generation, round: u32, trees: Vec<Tree> },
    /// The job is done (or moved): drop its rows. Answers [`BoostReply::Closed`].
    Close { job: ContentId },
}

/// A node whose best split an owner is asked for. `order` split its parent
/// (none for a root); `small` is the child whose histogram workers build,
/// `large` the sibling an owner gets by subtraction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MergeItem {
    pub output: u32,
    pub order: Option<SplitOrder>,
    pub small: u32,
    pub small_sum: BinSum,
    pub want_small: bool,
    pub large: Option<(u32, BinSum, bool)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SliceItem {
    pub output: u32,
    pub order: Option<SplitOrder>,
    pub node: u32,
}

/// A slice of a histogram: the bins with rows, by index within the slice.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SparseSlice {
    pub bins: Vec<(u32, BinSum)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BoostReply {
    /// Training rows held.
    Opened {
        rows: u64,
    },
    /// Each output's root sums over this worker's sampled rows.
    Roots(Vec<BinSum>),
    /// The best split of each wanted node over the owned slice.
    Best(Vec<(u32, u32, Option<Candidate>)>),
    Slices(Vec<SparseSlice>),
    /// Per shard (in the order opened): summed training loss and rows,
    /// summed validation loss and rows.
    Losses {
        train: Vec<(f64, u64)>,
        validation: Vec<(f64, u64)>,
    },
    Closed,
}

/// Largest boost message (a histogram slice of many features).
pub const MAX_BOOST_MESSAGE: usize = codec::MAX_RPC_MESSAGE;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    codec::encode(value).map_err(|e| e.to_string())
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    codec::decode(bytes, MAX_BOOST_MESSAGE).map_err(|e| format!("boost message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire contract of the boost messages: a change here is a break.
    #[test]
    fn golden_close_and_slices() {
        let job = ContentId::of(b"job");
        assert_eq!(hex::encode(encode(&BoostRequest::Close { job }).unwrap()), format!("05{job}"));
        let reply = BoostReply::Slices(vec![SparseSlice { bins: vec![(3, BinSum { g: -2, h: 5, n: 1 })] }]);
        assert_eq!(hex::encode(encode(&reply).unwrap()), "03010103030a02");
    }
}
