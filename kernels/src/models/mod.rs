//! Model families behind one interface, and the metrics that judge them.
//!
//! # Layout
//! - [`mlp`]: dense networks; with no hidden layer, linear, logistic and
//!   softmax regression.
//! - [`metrics`]: classification and regression metrics.

pub mod metrics;
pub mod mlp;

pub use mlp::{Activation, Loss, Mlp, MlpConfig, Optimizer, Target, TrainingCurve};
