//! One trained model of any family, as stored in a member blob: what
//! ensembles combine and serving runs.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use super::{Loss, Mlp, gbdt::Gbdt, quantized::QuantizedMlp, sparse::SparseMlp};

/// The variant order is the stored format: new kinds go at the end, so
/// members stored before them still decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Member {
    /// Networks, and the linear models (networks without hidden layers).
    Mlp(Mlp),
    Gbdt(Gbdt),
    /// A network quantized to int8 weights (`mass models compress --quantize int8`).
    Int8(QuantizedMlp),
    /// A pruned network stored sparse (`mass models compress --prune`).
    Sparse(SparseMlp),
}

impl Member {
    /// Outputs for feature rows: class probabilities or (scaled) values.
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        match self {
            Member::Mlp(m) => m.predict(x),
            Member::Gbdt(g) => g.predict(x),
            Member::Int8(q) => q.predict(x),
            Member::Sparse(s) => s.predict(x),
        }
    }

    /// The kind of member, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Member::Mlp(_) => "network",
            Member::Gbdt(_) => "trees",
            Member::Int8(_) => "int8 network",
            Member::Sparse(_) => "sparse network",
        }
    }

    /// Checks a stored member (which a peer may have forged) against the
    /// features its pipeline gives and the outputs its task needs, so a bad
    /// blob is refused at load instead of panicking a prediction.
    pub fn validate(&self, features: usize, outputs: usize) -> Result<(), String> {
        match self {
            Member::Mlp(m) => {
                let shapes: Vec<(usize, usize)> = m.weights.iter().map(|w| (w.nrows(), w.ncols())).collect();
                let biases_fit = m.weights.len() == m.biases.len()
                    && m.weights.iter().zip(&m.biases).all(|(w, b)| w.ncols() == b.len());
                if !(super::layers_map(&shapes, features, outputs) && biases_fit) {
                    return Err(format!("the network's layers do not map {features} features to {outputs} outputs"));
                }
                let finite = m.weights.iter().all(|w| w.iter().all(|v| v.is_finite()))
                    && m.biases.iter().all(|b| b.iter().all(|v| v.is_finite()));
                if !finite {
                    return Err("the network has weights that are not finite numbers".into());
                }
                Ok(())
            }
            Member::Gbdt(g) => {
                g.validate(features)?;
                if g.objective.outputs_per_row() != outputs {
                    return Err(format!("the trees give {} outputs, not {outputs}", g.objective.outputs_per_row()));
                }
                Ok(())
            }
            Member::Int8(q) => q.validate(features, outputs),
            Member::Sparse(s) => s.validate(features, outputs),
        }
    }

    /// Whether the member regresses (identity outputs).
    pub fn is_regressor(&self) -> bool {
        match self {
            Member::Mlp(m) => !matches!(m.loss, Loss::SoftmaxCrossEntropy),
            Member::Gbdt(g) => matches!(g.objective, super::gbdt::objective::Objective::Squared),
            Member::Int8(q) => !matches!(q.loss, Loss::SoftmaxCrossEntropy),
            Member::Sparse(s) => !matches!(s.loss, Loss::SoftmaxCrossEntropy),
        }
    }
}
