//! Feature engineering fitted from mergeable statistics.
//!
//! Each node summarizes the shards it holds ([`summarize`]); summaries merge
//! exactly ([`merge`]) in any order; the merged summary fits the pipeline
//! ([`fit`]); the fitted pipeline turns rows into features ([`transform`]),
//! the same way at training and at prediction. Only training rows are
//! summarized, so nothing of the test split leaks into the features.
//!
//! # Layout
//! - [`summarize`]: per-shard statistics, and merging them.
//! - [`sketch`]: mergeable quantile sketches of numeric columns.
//! - [`text`]: tokenizing and hashing text into n-gram buckets.
//! - [`derived`]: quantile bins, crosses, principal components.
//! - [`fit`]: statistics to fitted transforms (imputation, scaling, one-hot,
//!   TF-IDF, variance and mutual-information selection).
//! - [`transform`]: applying a fitted pipeline to shards.

pub mod derived;
pub mod fit;
pub mod sketch;
pub mod summarize;
pub mod text;
pub mod transform;

pub use fit::{FitError, MAX_ONE_HOT, fit};
pub use summarize::{merge, summarize};
pub use transform::{TransformError, reads_matrix, transform, transform_matrix, transform_range};
