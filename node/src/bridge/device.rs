//! The emulated device: a network compiled to fixed point and run layer
//! by layer over a batch, as a dataflow design on an FPGA runs it.
//!
//! Inputs, weights and biases are quantized once to the device's format;
//! each output of a dense layer is a sum of integer products in the wide
//! accumulator, rounded back to the format, then the activation. ReLU is
//! exact in integers; tanh is evaluated exactly and rounded to the format
//! (what a lookup table addressed by the whole input gives). The last
//! layer's values leave the device as numbers; a softmax over them runs in
//! the host program, in f64, as hls4ml-style designs leave it to a table or
//! the host (documented in `docs/bridge.md`).

use std::time::Instant;

use super::{
    fixed::Numerics,
    wire::{Activation, MlpModel},
};

/// Why a model or a batch was refused by the device.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeviceError {
    #[error("{0}")]
    BadModel(String),
    #[error("rows have {got} features but the model reads {expected}")]
    BadInput { got: usize, expected: usize },
    #[error("the deadline passed after {done} of {layers} layers; the batch was dropped")]
    Deadline { done: usize, layers: usize },
}

/// A model compiled for the device.
#[derive(Debug, Clone)]
pub struct Program {
    numerics: Numerics,
    layers: Vec<Layer>,
}

#[derive(Debug, Clone)]
struct Layer {
    inputs: usize,
    outputs: usize,
    /// Transposed, `outputs x inputs`, so each output's sum reads one
    /// contiguous run of weights.
    weights: Vec<i32>,
    /// At the accumulator's scale.
    bias: Vec<i64>,
    activation: Activation,
    /// Whether a sum can reach the accumulator's limits (else the
    /// saturating adds are skipped: the plain sum is then exact).
    may_overflow: bool,
}

impl Program {
    /// Checks a model's shapes and numbers and quantizes it.
    pub fn compile(model: &MlpModel, numerics: Numerics) -> Result<Self, DeviceError> {
        let bad = |m: String| DeviceError::BadModel(m);
        if model.format != super::wire::MLP_FORMAT {
            return Err(bad(format!("model format '{}' is not {}", model.format, super::wire::MLP_FORMAT)));
        }
        if model.layers.is_empty() {
            return Err(bad("the model has no layers".into()));
        }
        let last = model.layers.len() - 1;
        let (format, rounding) = (numerics.format, numerics.rounding);
        let mut layers = Vec::with_capacity(model.layers.len());
        for (l, layer) in model.layers.iter().enumerate() {
            let (inputs, outputs) = (layer.inputs as usize, layer.outputs as usize);
            if inputs == 0 || outputs == 0 {
                return Err(bad(format!("layer {l} has no inputs or no outputs")));
            }
            if l > 0 && inputs != model.layers[l - 1].outputs as usize {
                return Err(bad(format!(
                    "layer {l} reads {inputs} values but layer {} gives {}",
                    l - 1,
                    model.layers[l - 1].outputs
                )));
            }
            if layer.weights.len() != inputs * outputs || layer.bias.len() != outputs {
                return Err(bad(format!(
                    "layer {l} is {inputs} x {outputs} but has {} weights and {} biases",
                    layer.weights.len(),
                    layer.bias.len()
                )));
            }
            if layer.weights.iter().chain(&layer.bias).any(|v| !v.is_finite()) {
                return Err(bad(format!("layer {l} has weights that are not finite numbers")));
            }
            if layer.activation == Activation::Softmax && l != last {
                return Err(bad(format!("layer {l}: softmax is supported on the last layer only")));
            }
            let mut weights = vec![0; inputs * outputs];
            for i in 0..inputs {
                for j in 0..outputs {
                    weights[j * inputs + i] = format.quantize(f64::from(layer.weights[i * outputs + j]), rounding);
                }
            }
            let bias = layer.bias.iter().map(|b| numerics.widen(format.quantize(f64::from(*b), rounding))).collect();
            layers.push(Layer {
                inputs,
                outputs,
                weights,
                bias,
                activation: layer.activation,
                may_overflow: numerics.may_overflow(inputs),
            });
        }
        Ok(Self { numerics, layers })
    }

    pub fn inputs(&self) -> usize {
        self.layers[0].inputs
    }

    pub fn outputs(&self) -> usize {
        self.layers.last().expect("compiled with layers").outputs
    }

    /// Runs `rows` rows (`x` row-major, `rows x inputs`); the outputs
    /// row-major. Checks `deadline` between layers: a batch whose deadline
    /// passed is dropped, never answered late.
    pub fn run(&self, x: &[f32], rows: usize, deadline: Option<Instant>) -> Result<Vec<f32>, DeviceError> {
        let n = self.numerics;
        if rows * self.inputs() != x.len() {
            return Err(DeviceError::BadInput { got: x.len() / rows.max(1), expected: self.inputs() });
        }
        let mut values: Vec<i32> = x.iter().map(|v| n.format.quantize(f64::from(*v), n.rounding)).collect();
        let layers = self.layers.len();
        for (l, layer) in self.layers.iter().enumerate() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(DeviceError::Deadline { done: l, layers });
            }
            values = layer.run(&values, rows, n);
        }
        let last = self.layers.last().expect("compiled with layers");
        let mut out: Vec<f32> = values.iter().map(|v| n.format.to_f64(*v) as f32).collect();
        if last.activation == Activation::Softmax {
            for row in out.chunks_mut(last.outputs) {
                softmax(row);
            }
        }
        Ok(out)
    }
}

impl Layer {
    fn run(&self, x: &[i32], rows: usize, n: Numerics) -> Vec<i32> {
        let mut out = vec![0i32; rows * self.outputs];
        for (row, answer) in x.chunks_exact(self.inputs).zip(out.chunks_exact_mut(self.outputs)) {
            for (j, value) in answer.iter_mut().enumerate() {
                let weights = &self.weights[j * self.inputs..(j + 1) * self.inputs];
                let acc = if self.may_overflow {
                    row.iter().zip(weights).fold(self.bias[j], |acc, (a, w)| n.accumulate(acc, n.multiply(*a, *w)))
                } else {
                    self.bias[j] + row.iter().zip(weights).map(|(a, w)| i64::from(*a) * i64::from(*w)).sum::<i64>()
                };
                let sum = n.round_sum(acc);
                *value = match self.activation {
                    Activation::Relu => sum.max(0),
                    Activation::Tanh => n.format.quantize(n.format.to_f64(sum).tanh(), n.rounding),
                    // Softmax runs on the host over the whole row, after the device.
                    Activation::Identity | Activation::Softmax => sum,
                };
            }
        }
        out
    }
}

fn softmax(row: &mut [f32]) {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, v| m.max(f64::from(*v)));
    let exps: Vec<f64> = row.iter().map(|v| (f64::from(*v) - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    for (v, e) in row.iter_mut().zip(exps) {
        *v = (e / sum) as f32;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bridge::{
        fixed::{Format, Rounding},
        wire::{DenseLayer, MLP_FORMAT},
    };

    fn numerics(format: &str, rounding: Rounding) -> Numerics {
        Numerics::new(format.parse::<Format>().unwrap(), rounding, 48).unwrap()
    }

    fn layer(inputs: u32, outputs: u32, activation: Activation, weights: Vec<f32>, bias: Vec<f32>) -> DenseLayer {
        DenseLayer { inputs, outputs, activation, weights, bias }
    }

    fn model(layers: Vec<DenseLayer>) -> MlpModel {
        MlpModel { format: MLP_FORMAT.into(), layers }
    }

    #[test]
    fn a_dense_layer_computes_exactly_when_every_value_is_representable() {
        // Weights and inputs on the grid of fixed<16,6> (steps of 1/1024):
        // the only rounding is none, so the answer is exact.
        let m = model(vec![layer(2, 2, Activation::Identity, vec![0.5, -1.0, 0.25, 2.0], vec![0.125, -3.0])]);
        let program = Program::compile(&m, numerics("fixed<16,6>", Rounding::HalfEven)).unwrap();
        let out = program.run(&[1.0, 2.0, -4.0, 0.5], 2, None).unwrap();
        assert_eq!(out, vec![1.0 * 0.5 + 2.0 * 0.25 + 0.125, -1.0 + 4.0 - 3.0, -2.0 + 0.125 + 0.125, 4.0 + 1.0 - 3.0]);
    }

    #[test]
    fn rounding_of_a_sum_follows_the_device_mode() {
        // 0.5 * 3/1024 = 1.5/1024: halfway between two steps.
        let m = model(vec![layer(1, 1, Activation::Identity, vec![0.5], vec![0.0])]);
        let x = [3.0 / 1024.0];
        let even = Program::compile(&m, numerics("fixed<16,6>", Rounding::HalfEven)).unwrap();
        assert_eq!(even.run(&x, 1, None).unwrap(), vec![2.0 / 1024.0]);
        let truncate = Program::compile(&m, numerics("fixed<16,6>", Rounding::Truncate)).unwrap();
        assert_eq!(truncate.run(&x, 1, None).unwrap(), vec![1.0 / 1024.0]);
        // Negative: truncation goes down, half-even to the even step.
        assert_eq!(truncate.run(&[-3.0 / 1024.0], 1, None).unwrap(), vec![-2.0 / 1024.0]);
        assert_eq!(even.run(&[-3.0 / 1024.0], 1, None).unwrap(), vec![-2.0 / 1024.0]);
    }

    #[test]
    fn values_past_the_range_saturate_at_inputs_and_outputs() {
        let m = model(vec![layer(1, 1, Activation::Identity, vec![4.0], vec![0.0])]);
        let program = Program::compile(&m, numerics("fixed<8,4>", Rounding::HalfEven)).unwrap();
        // 100 saturates to 7.9375 on input, 4 x that saturates again.
        assert_eq!(program.run(&[100.0], 1, None).unwrap(), vec![7.9375]);
        assert_eq!(program.run(&[-100.0], 1, None).unwrap(), vec![-8.0]);
    }

    #[test]
    fn relu_tanh_and_softmax_match_the_float_network_within_the_resolution() {
        let m = model(vec![
            layer(3, 2, Activation::Relu, vec![0.3, -0.7, 0.2, 0.9, -0.4, 0.1], vec![0.05, -0.1]),
            layer(2, 2, Activation::Tanh, vec![1.1, -0.6, 0.4, 0.8], vec![0.0, 0.2]),
            layer(2, 3, Activation::Softmax, vec![0.5, -0.5, 0.1, 0.2, 0.3, -0.9], vec![0.0, 0.1, -0.1]),
        ]);
        let program = Program::compile(&m, numerics("fixed<16,6>", Rounding::HalfEven)).unwrap();
        let x = [0.5f32, -1.25, 2.0];
        let out = program.run(&x, 1, None).unwrap();
        let reference = float_forward(&m, &x);
        for (a, b) in out.iter().zip(&reference) {
            assert!((a - b).abs() < 4e-3, "{out:?} vs {reference:?}");
        }
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    /// The float network, for comparison.
    fn float_forward(m: &MlpModel, x: &[f32]) -> Vec<f32> {
        let mut v = x.to_vec();
        for l in &m.layers {
            let mut out: Vec<f32> = (0..l.outputs as usize)
                .map(|j| {
                    l.bias[j]
                        + (0..l.inputs as usize).map(|i| v[i] * l.weights[i * l.outputs as usize + j]).sum::<f32>()
                })
                .collect();
            match l.activation {
                Activation::Relu => out.iter_mut().for_each(|o| *o = o.max(0.0)),
                Activation::Tanh => out.iter_mut().for_each(|o| *o = o.tanh()),
                Activation::Softmax => softmax(&mut out),
                Activation::Identity => {}
            }
            v = out;
        }
        v
    }

    #[test]
    fn a_narrow_accumulator_saturates_the_sum_instead_of_wrapping() {
        let wide = 64;
        let m = model(vec![layer(wide, 1, Activation::Identity, vec![7.99; wide as usize], vec![0.0])]);
        let narrow = Numerics::new("fixed<8,4>".parse().unwrap(), Rounding::HalfEven, 16).unwrap();
        let program = Program::compile(&m, narrow).unwrap();
        assert!(program.layers[0].may_overflow);
        let out = program.run(&vec![7.99; wide as usize], 1, None).unwrap();
        assert_eq!(out, vec![7.9375], "saturated, not wrapped to a negative number");
    }

    #[test]
    fn bad_models_and_inputs_are_refused_by_name() {
        let n = numerics("fixed<16,6>", Rounding::HalfEven);
        let cases = [
            (model(vec![]), "no layers"),
            (model(vec![layer(2, 1, Activation::Relu, vec![1.0], vec![0.0])]), "2 x 1 but has 1 weights"),
            (
                model(vec![
                    layer(1, 2, Activation::Relu, vec![1.0, 1.0], vec![0.0, 0.0]),
                    layer(3, 1, Activation::Identity, vec![1.0; 3], vec![0.0]),
                ]),
                "layer 1 reads 3 values but layer 0 gives 2",
            ),
            (model(vec![layer(1, 1, Activation::Relu, vec![f32::NAN], vec![0.0])]), "not finite"),
            (
                model(vec![
                    layer(1, 1, Activation::Softmax, vec![1.0], vec![0.0]),
                    layer(1, 1, Activation::Identity, vec![1.0], vec![0.0]),
                ]),
                "last layer only",
            ),
        ];
        for (m, expected) in cases {
            let err = Program::compile(&m, n).unwrap_err().to_string();
            assert!(err.contains(expected), "'{err}' lacks '{expected}'");
        }
        let ok = Program::compile(&model(vec![layer(2, 1, Activation::Relu, vec![1.0, 1.0], vec![0.0])]), n).unwrap();
        assert_eq!(ok.run(&[1.0, 2.0, 3.0], 1, None).unwrap_err(), DeviceError::BadInput { got: 3, expected: 2 });
    }

    #[test]
    fn a_passed_deadline_drops_the_batch() {
        let m = model(vec![layer(1, 1, Activation::Identity, vec![1.0], vec![0.0])]);
        let program = Program::compile(&m, numerics("fixed<16,6>", Rounding::HalfEven)).unwrap();
        let past = Instant::now() - Duration::from_millis(1);
        assert_eq!(program.run(&[1.0], 1, Some(past)).unwrap_err(), DeviceError::Deadline { done: 0, layers: 1 });
        assert!(program.run(&[1.0], 1, Some(Instant::now() + Duration::from_secs(5))).is_ok());
    }
}
