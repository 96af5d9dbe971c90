//! Model families behind one interface, and the metrics that judge them.
//!
//! # Layout
//! - [`mlp`]: dense networks; with no hidden layer, linear, logistic and
//!   softmax regression.
//! - [`boosting`]: boosting of whole models (residuals, SAMME).
//! - [`ensemble`]: bagged ensembles (vote, average) and parameter averaging.
//! - [`linear`]: linear models solved exactly (normal equations, [`lbfgs`]).
//! - [`gbdt`]: gradient-boosted decision trees over binned features.
//! - [`member`]: a trained model of any family, as ensembles hold them.
//! - [`quantized`]: int8 networks (per-column weight scales) and their kernel.
//! - [`sparse`]: magnitude pruning, masked fine-tuning, sparse networks.
//! - [`distill`]: one network trained on an ensemble's outputs.
//! - [`metrics`]: classification and regression metrics.

pub mod boosting;
pub mod distill;
pub mod ensemble;
pub mod gbdt;
pub mod lbfgs;
pub mod linear;
pub mod member;
pub mod metrics;
pub mod mlp;
pub mod quantized;
pub mod sparse;

pub use member::Member;

/// Whether layers of (inputs, outputs) shapes chain into a network that
/// maps `features` inputs to `outputs` outputs: what every stored network
/// kind checks before it may predict.
pub fn layers_map(shapes: &[(usize, usize)], features: usize, outputs: usize) -> bool {
    shapes.windows(2).all(|w| w[0].1 == w[1].0)
        && shapes.first().is_some_and(|s| s.0 == features)
        && shapes.last().is_some_and(|s| s.1 == outputs)
}
pub use mlp::{Activation, Loss, Mlp, MlpConfig, Optimizer, Target, TrainingCurve};
