//! Model families behind one interface, and the metrics that judge them.
//!
//! # Layout
//! - [`mlp`]: dense networks; with no hidden layer, linear, logistic and
//!   softmax regression.
//! - [`ensemble`]: bagged ensembles (vote, average) and parameter averaging.
//! - [`metrics`]: classification and regression metrics.

pub mod ensemble;
pub mod metrics;
pub mod mlp;

pub use mlp::{Activation, Loss, Mlp, MlpConfig, Optimizer, Target, TrainingCurve};
