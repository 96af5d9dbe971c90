//! Models in formats other tools read: dense weights as safetensors (with
//! the fitted pipeline and classes as JSON metadata), and whole models,
//! scaling step included, as ONNX graphs. Pure encoding and decoding: where
//! the bytes come from and go is the node's business.
//!
//! # Layout
//! - [`Networks`]: what safetensors carries, the dense members of a trained
//!   model, the pipeline that makes their inputs, and how their outputs
//!   combine.
//! - [`Model`]: what ONNX carries, the same with members that may also be
//!   boosted trees.
//! - [`safetensors`]: writing and reading weight files, refusing by name a
//!   file whose tensors do not match their declared shapes or do not chain.
//! - [`onnx`]: an ONNX graph (opset 13, and ai.onnx.ml 5 for trees and
//!   categories) of a model whose pipeline is numeric imputation and
//!   scaling and ordinal codes.
//! - [`trees`]: boosted trees as a `TreeEnsemble`'s attributes.
//! - [`proto`]: the protobuf wire format the ONNX graph is written in.

pub mod onnx;
pub mod proto;
pub mod safetensors;
pub mod trees;

use mass_protocol::{features::FittedPipeline, jobs::Combine};

use crate::models::{Member, Mlp, gbdt::Gbdt};

/// The dense networks of a trained model, the pipeline that makes their
/// input features, and the rule that combines their outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Networks {
    pub pipeline: FittedPipeline,
    pub members: Vec<Mlp>,
    pub combine: Combine,
}

impl Networks {
    /// The weight of each member's outputs in the model's answer:
    /// `answer = sum_k weight_k * output_k`, as
    /// [`crate::models::ensemble::combine`] computes it.
    pub fn member_weights(&self) -> Result<Vec<f64>, UnsupportedCombine> {
        member_weights(&self.combine, self.members.len())
    }
}

/// One member of a model as an ONNX graph carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Network(Mlp),
    Trees(Gbdt),
}

/// A trained model for ONNX: members of either kind, the pipeline that
/// makes their input features, and the rule that combines their outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub pipeline: FittedPipeline,
    pub members: Vec<Part>,
    pub combine: Combine,
}

impl From<Networks> for Model {
    fn from(n: Networks) -> Self {
        Model { pipeline: n.pipeline, members: n.members.into_iter().map(Part::Network).collect(), combine: n.combine }
    }
}

impl Model {
    /// See [`Networks::member_weights`].
    pub fn member_weights(&self) -> Result<Vec<f64>, UnsupportedCombine> {
        member_weights(&self.combine, self.members.len())
    }

    /// Checks that there are members, each mapping the pipeline's features
    /// to the model's outputs, and a combining rule the graph expresses.
    /// (Networks may differ in activation: each has its own nodes.)
    pub fn validate(&self) -> Result<(), ExportError> {
        if self.members.is_empty() {
            return Err(ExportError::NoMembers);
        }
        let outputs = match self.pipeline.task {
            mass_protocol::jobs::Task::Classification => self.pipeline.classes.len(),
            mass_protocol::jobs::Task::Regression => 1,
        };
        for (member, part) in self.members.iter().enumerate() {
            let as_member = match part {
                Part::Network(m) => Member::Mlp(m.clone()),
                Part::Trees(g) => Member::Gbdt(g.clone()),
            };
            as_member
                .validate(self.pipeline.features, outputs)
                .map_err(|reason| ExportError::Shapes { member, reason })?;
        }
        self.member_weights()?;
        Ok(())
    }
}

/// The weight of each of `n` members' outputs under `combine`.
fn member_weights(combine: &Combine, n: usize) -> Result<Vec<f64>, UnsupportedCombine> {
    match combine {
        Combine::Mean => Ok(vec![1.0 / n as f64; n]),
        Combine::WeightedMean(w) if w.len() == n => {
            let total: f64 = w.iter().sum();
            Ok(w.iter().map(|v| v / total).collect())
        }
        Combine::WeightedSum(w) if w.len() == n => Ok(w.clone()),
        Combine::WeightedMean(w) | Combine::WeightedSum(w) => {
            Err(UnsupportedCombine::Weights { weights: w.len(), members: n })
        }
        Combine::Stacked => Err(UnsupportedCombine::Stacked),
        Combine::Serial => Err(UnsupportedCombine::Serial),
    }
}

/// A combining rule the formats do not carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsupportedCombine {
    #[error("a stacked ensemble (members combined by a meta-model) cannot be exported; only averaged members can")]
    Stacked,
    #[error("a serial composition of models cannot be exported; export its parts one by one")]
    Serial,
    #[error("the model has {weights} combining weights for {members} members")]
    Weights { weights: usize, members: usize },
}

/// Why a model cannot be written in a format.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Combine(#[from] UnsupportedCombine),
    #[error("the model has no networks to export")]
    NoMembers,
    #[error("member {member}'s hidden layers use {found}, member 0's {first}: a file carries one activation")]
    Activations { member: usize, first: String, found: String },
    #[error("member {member}: {reason}")]
    Shapes { member: usize, reason: String },
    #[error(
        "ONNX export reads numeric columns (imputed and scaled) and categorical ones (as ordinal codes); column '{column}' is {what}"
    )]
    Column { column: String, what: &'static str },
    #[error("ONNX export cannot express the pipeline's {0}")]
    Step(&'static str),
    #[error("safetensors could not encode the weights: {0}")]
    Encode(String),
    #[error("member {member}'s trees: {reason}")]
    Trees { member: usize, reason: String },
}

impl Networks {
    /// Checks what both formats rely on: members, shapes that map the
    /// pipeline's features to the model's outputs, one activation.
    pub fn validate(&self) -> Result<(), ExportError> {
        let first = self.members.first().ok_or(ExportError::NoMembers)?;
        let outputs = match self.pipeline.task {
            mass_protocol::jobs::Task::Classification => self.pipeline.classes.len(),
            mass_protocol::jobs::Task::Regression => 1,
        };
        for (member, m) in self.members.iter().enumerate() {
            crate::models::Member::Mlp(m.clone())
                .validate(self.pipeline.features, outputs)
                .map_err(|reason| ExportError::Shapes { member, reason })?;
            if m.activation != first.activation {
                return Err(ExportError::Activations {
                    member,
                    first: activation_name(first.activation).into(),
                    found: activation_name(m.activation).into(),
                });
            }
        }
        self.member_weights()?;
        Ok(())
    }
}

/// How the formats spell an activation.
pub fn activation_name(activation: crate::models::Activation) -> &'static str {
    match activation {
        crate::models::Activation::Relu => "relu",
        crate::models::Activation::Tanh => "tanh",
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use mass_protocol::{
        features::{ColumnTransform, FittedPipeline, PipelineSpec, TargetScale},
        jobs::{Combine, Task},
    };
    use ndarray::{Array1, Array2};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::Networks;
    use crate::models::{
        Activation, Loss, Mlp,
        gbdt::{
            Gbdt,
            bins::FeatureBins,
            objective::Objective,
            split::{Rule, Split},
            tree::{Node, Tree},
        },
    };

    /// A network of random weights mapping `widths[0]` inputs through the
    /// hidden widths to `widths[last]` outputs.
    pub fn mlp(widths: &[usize], activation: Activation, loss: Loss, seed: u64) -> Mlp {
        let mut rng = StdRng::seed_from_u64(seed);
        let weights =
            widths.windows(2).map(|w| Array2::from_shape_fn((w[0], w[1]), |_| rng.random_range(-1.0..1.0))).collect();
        let biases = widths[1..].iter().map(|&w| Array1::from_shape_fn(w, |_| rng.random_range(-0.5..0.5))).collect();
        Mlp { weights, biases, activation, loss }
    }

    /// Numeric columns `x0..x{inputs}` (with a dropped column between) and
    /// a label: a classifier of `classes` classes, or a regressor.
    pub fn pipeline(inputs: usize, classes: usize, task: Task) -> FittedPipeline {
        let mut columns: Vec<String> = (0..inputs).map(|i| format!("x{i}")).collect();
        let mut transforms: Vec<ColumnTransform> = (0..inputs)
            .map(|i| ColumnTransform::Numeric {
                fill: i as f64 * 0.5,
                offset: 1.0 + i as f64,
                scale: 0.5 / (1.0 + i as f64),
            })
            .collect();
        columns.insert(1, "ignored".into());
        transforms.insert(1, ColumnTransform::Drop);
        columns.push("label".into());
        transforms.push(ColumnTransform::Drop);
        FittedPipeline {
            spec: PipelineSpec { task, ..PipelineSpec::default() },
            label: columns.len() - 1,
            columns,
            transforms,
            classes: (0..classes).map(|c| format!("class{c}")).collect(),
            features: inputs,
            task,
            target: (task == Task::Regression).then_some(TargetScale { mean: 3.0, std: 2.0, min: -1.0, max: 1.0 }),
            crosses: vec![],
            projection: None,
        }
    }

    /// `members` classifiers 4 -> 6 -> 3 (ReLU), averaged.
    pub fn classifier(members: usize) -> Networks {
        Networks {
            pipeline: pipeline(4, 3, Task::Classification),
            members: (0..members)
                .map(|m| mlp(&[4, 6, 3], Activation::Relu, Loss::SoftmaxCrossEntropy, m as u64))
                .collect(),
            combine: Combine::Mean,
        }
    }

    /// Boosted trees over `features` features: `rounds` rounds of trees of
    /// three splits on random bounds of each feature's bins, both missing
    /// directions.
    pub fn gbdt(features: usize, objective: Objective, rounds: usize, seed: u64) -> Gbdt {
        let mut rng = StdRng::seed_from_u64(seed);
        let bins: Vec<FeatureBins> = (0..features)
            .map(|_| {
                let mut upper: Vec<f32> = (0..6).map(|_| rng.random_range(-2.0f32..2.0)).collect();
                upper.sort_by(f32::total_cmp);
                upper.push(f32::INFINITY);
                FeatureBins::Numeric { upper }
            })
            .collect();
        let split = |rng: &mut StdRng, left, right| Node::Split {
            split: Split {
                feature: rng.random_range(0..features as u32),
                rule: Rule::UpTo(rng.random_range(0..8)),
                default_left: rng.random(),
            },
            left,
            right,
        };
        let width = objective.scores_per_row();
        let trees = (0..rounds * width)
            .map(|_| {
                let root = split(&mut rng, 1, 2);
                let inner = split(&mut rng, 3, 4);
                let mut leaf = || Node::Leaf { value: rng.random_range(-0.3..0.3) };
                Tree { nodes: vec![root, leaf(), inner, leaf(), leaf()] }
            })
            .collect();
        let init = (0..width).map(|k| 0.1 * k as f64 - 0.2).collect();
        Gbdt { bins, objective, init, trees }
    }

    /// A regressor 3 -> 5 -> 4 -> 1 (tanh).
    pub fn regressor() -> Networks {
        Networks {
            pipeline: pipeline(3, 0, Task::Regression),
            members: vec![mlp(&[3, 5, 4, 1], Activation::Tanh, Loss::SquaredError, 7)],
            combine: Combine::Mean,
        }
    }
}
