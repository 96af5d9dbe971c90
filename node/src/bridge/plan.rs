//! What may go to a bridge, in which form, and whether it should: pure
//! decisions, apart from the I/O that carries them out ([`super::link`]).

use mass_kernels::models::{Loss, Mlp, mlp::Activation as Hidden};
use mass_protocol::ContentId;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::{
    Route,
    wire::{self, Activation, Capabilities, DenseLayer, MlpModel},
};

/// A network in the protocol's form: hidden layers take the network's
/// activation, the last one softmax (classifiers) or identity (regressors).
pub fn describe(mlp: &Mlp) -> MlpModel {
    let last = mlp.weights.len().saturating_sub(1);
    let layers = mlp
        .weights
        .iter()
        .zip(&mlp.biases)
        .enumerate()
        .map(|(l, (w, b))| DenseLayer {
            inputs: w.nrows() as u32,
            outputs: w.ncols() as u32,
            activation: match (l == last, mlp.activation, mlp.loss) {
                (true, _, Loss::SoftmaxCrossEntropy) => Activation::Softmax,
                (true, _, Loss::SquaredError | Loss::Huber { .. }) => Activation::Identity,
                (false, Hidden::Relu, _) => Activation::Relu,
                (false, Hidden::Tanh, _) => Activation::Tanh,
            },
            // ndarray's standard layout is row-major, as the protocol's.
            weights: w.iter().copied().collect(),
            bias: b.to_vec(),
        })
        .collect();
    MlpModel { format: wire::MLP_FORMAT.into(), layers }
}

/// Whether a device with `capabilities`, holding `loaded` models, can take
/// `models` more; the sentence says what does not fit.
pub fn fits(models: &[MlpModel], capabilities: &Capabilities, loaded: usize) -> Result<(), String> {
    if loaded + models.len() > capabilities.max_models as usize {
        return Err(format!(
            "it needs {} model slots and the device has {} of {} free",
            models.len(),
            capabilities.max_models as usize - loaded.min(capabilities.max_models as usize),
            capabilities.max_models
        ));
    }
    for (i, model) in models.iter().enumerate() {
        if model.layers.len() > capabilities.max_layers as usize {
            return Err(format!(
                "member {i} has {} layers and the device runs {} at most",
                model.layers.len(),
                capabilities.max_layers
            ));
        }
        if model.parameters() > capabilities.max_parameters {
            return Err(format!(
                "member {i} has {} parameters and the device holds {} per model at most",
                model.parameters(),
                capabilities.max_parameters
            ));
        }
        if !capabilities.layers.iter().any(|l| l == "dense") {
            return Err("the device lists no dense layers".into());
        }
        if let Some(a) = model.layers.iter().map(|l| l.activation).find(|a| !capabilities.activations.contains(a)) {
            return Err(format!("member {i} uses {a:?}, which the device does not list"));
        }
    }
    Ok(())
}

/// The outcome of comparing a model's speed on the bridge and on the CPU.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Bridge,
    Cpu(String),
}

/// Where a model that passed the drift check runs, from rows/s measured on
/// the same sample rows both ways.
pub fn decide(route: Route, bridge_rows_per_s: f64, cpu_rows_per_s: f64) -> Decision {
    match route {
        Route::Always => Decision::Bridge,
        Route::Never => Decision::Cpu("route = \"never\" for this bridge".into()),
        Route::WhenFaster if bridge_rows_per_s > cpu_rows_per_s => Decision::Bridge,
        Route::WhenFaster => Decision::Cpu(format!(
            "the bridge ran it at {bridge_rows_per_s:.0} rows/s and the CPU at {cpu_rows_per_s:.0} rows/s"
        )),
    }
}

/// Whether `rows` at `rows_per_s` (this model on this bridge, measured at
/// placement) finish well within `timeout`: with half of it to spare, for
/// the batch-to-batch noise of a shared machine and the way back.
pub fn in_time(rows: usize, rows_per_s: f64, timeout: std::time::Duration) -> bool {
    rows_per_s > 0.0 && 2.0 * rows as f64 / rows_per_s <= timeout.as_secs_f64()
}

/// The bridge's name for member `member` of model version `manifest`:
/// content-addressed, so the same version loads under the same name.
pub fn model_name(manifest: &ContentId, member: usize) -> String {
    format!("{}{member}", model_prefix(manifest))
}

/// What the names of every member of version `manifest` start with.
pub fn model_prefix(manifest: &ContentId) -> String {
    format!("mass-{}-", &manifest.to_string()[..16])
}

/// The standard model whose rate every bridge advertises: 64 features,
/// 128 ReLU units, 10 softmax outputs (digits-shaped), fixed weights.
pub const PROBE_MODEL: &str = "mass-probe";
/// Rows of the standard batch.
pub const PROBE_ROWS: usize = 256;

pub fn probe_model() -> MlpModel {
    let mut rng = StdRng::seed_from_u64(7);
    let mut layer = |inputs: u32, outputs: u32, activation| {
        let bound = (6.0 / (inputs + outputs) as f32).sqrt();
        DenseLayer {
            inputs,
            outputs,
            activation,
            weights: (0..inputs * outputs).map(|_| rng.random_range(-bound..bound)).collect(),
            bias: (0..outputs).map(|_| rng.random_range(-0.1..0.1)).collect(),
        }
    };
    let layers = vec![layer(64, 128, Activation::Relu), layer(128, 10, Activation::Softmax)];
    MlpModel { format: wire::MLP_FORMAT.into(), layers }
}

/// The smallest network (one input, one output): proves that a device too
/// small for the standard model runs inference at all.
pub fn canary_model() -> MlpModel {
    let layer =
        DenseLayer { inputs: 1, outputs: 1, activation: Activation::Identity, weights: vec![0.5], bias: vec![0.0] };
    MlpModel { format: wire::MLP_FORMAT.into(), layers: vec![layer] }
}

/// `rows` standardized-looking rows for the probe model.
pub fn probe_rows(rows: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(11);
    (0..rows * 64).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

#[cfg(test)]
mod tests {
    use mass_kernels::models::{MlpConfig, Optimizer};
    use ndarray::Array2;

    use super::*;
    use crate::bridge::{
        device::Program,
        fixed::{Numerics, Rounding},
    };

    fn capabilities() -> Capabilities {
        let n = Numerics::new("fixed<16,6>".parse().unwrap(), Rounding::HalfEven, 48).unwrap();
        let mut options = crate::bridge::server::Options::new(n);
        options.max_models = 3;
        options.max_parameters = 10_000;
        options.max_layers = 3;
        // Through the server's own answer, so the two agree.
        serde_json::from_value(serde_json::json!({
            "protocol": "mass_hardware/1", "device": options.device, "kind": "fpga", "clock_mhz": 250.0,
            "precision": { "format": "fixed<16,6>", "total_bits": 16, "integer_bits": 6,
                           "rounding": "half_even", "overflow": "saturate", "accumulator_bits": 48 },
            "max_parameters": options.max_parameters, "max_layers": options.max_layers, "max_batch": 64,
            "max_models": options.max_models, "layers": ["dense"], "activations": ["identity", "relu", "softmax"]
        }))
        .unwrap()
    }

    fn network(hidden: Vec<usize>, loss: Loss, activation: Hidden) -> Mlp {
        let config = MlpConfig {
            hidden,
            loss,
            activation,
            optimizer: Optimizer::Adam { learning_rate: 1e-3 },
            ..Default::default()
        };
        Mlp::new(5, 3, &config, &mut StdRng::seed_from_u64(1))
    }

    #[test]
    fn a_described_network_runs_on_the_device_as_the_float_network_does() {
        let mlp = network(vec![7], Loss::SoftmaxCrossEntropy, Hidden::Relu);
        let model = describe(&mlp);
        assert_eq!(
            model.layers.iter().map(|l| l.activation).collect::<Vec<_>>(),
            [Activation::Relu, Activation::Softmax]
        );
        assert_eq!((model.inputs(), model.outputs(), model.parameters()), (5, 3, 5 * 7 + 7 + 7 * 3 + 3));
        let n = Numerics::new("fixed<16,6>".parse().unwrap(), Rounding::HalfEven, 48).unwrap();
        let program = Program::compile(&model, n).unwrap();
        let x = Array2::from_shape_fn((4, 5), |(r, c)| (r as f32 - 1.5) * 0.3 + c as f32 * 0.1);
        let float = mlp.predict(x.view());
        let fixed = program.run(x.as_slice().unwrap(), 4, None).unwrap();
        for (a, b) in float.iter().zip(&fixed) {
            assert!((a - b).abs() < 5e-3, "{a} vs {b}");
        }
        // Regressors end in identity; linear models are one layer.
        let linear = describe(&network(vec![], Loss::SquaredError, Hidden::Tanh));
        assert_eq!(linear.layers.len(), 1);
        assert_eq!(linear.layers[0].activation, Activation::Identity);
        let tanh = describe(&network(vec![4], Loss::Huber { delta: 1.0 }, Hidden::Tanh));
        assert_eq!(tanh.layers[0].activation, Activation::Tanh);
    }

    #[test]
    fn what_does_not_fit_the_device_is_named() {
        let caps = capabilities();
        let small = describe(&network(vec![7], Loss::SoftmaxCrossEntropy, Hidden::Relu));
        assert!(fits(std::slice::from_ref(&small), &caps, 0).is_ok());
        let cases = [
            (fits(&[small.clone(), small.clone()], &caps, 2), "needs 2 model slots and the device has 1 of 3 free"),
            (
                fits(&[describe(&network(vec![4, 4, 4], Loss::SoftmaxCrossEntropy, Hidden::Relu))], &caps, 0),
                "member 0 has 4 layers and the device runs 3 at most",
            ),
            (
                fits(&[describe(&network(vec![2000], Loss::SoftmaxCrossEntropy, Hidden::Relu))], &caps, 0),
                "parameters and the device holds 10000 per model at most",
            ),
            (fits(&[describe(&network(vec![4], Loss::SquaredError, Hidden::Tanh))], &caps, 0), "uses Tanh"),
        ];
        for (result, expected) in cases {
            let err = result.unwrap_err();
            assert!(err.contains(expected), "'{err}' lacks '{expected}'");
        }
    }

    #[test]
    fn the_route_decides_and_when_faster_compares_rates() {
        assert_eq!(decide(Route::Always, 1.0, 1e9), Decision::Bridge);
        assert_eq!(decide(Route::WhenFaster, 2e5, 1e5), Decision::Bridge);
        let Decision::Cpu(why) = decide(Route::WhenFaster, 1e5, 2e5) else { panic!("slower bridge chosen") };
        assert_eq!(why, "the bridge ran it at 100000 rows/s and the CPU at 200000 rows/s");
        assert!(matches!(decide(Route::Never, 1e9, 1.0), Decision::Cpu(_)));
    }

    #[test]
    fn a_batch_goes_to_the_bridge_only_when_it_can_finish_within_half_the_timeout() {
        let timeout = std::time::Duration::from_millis(250);
        assert!(in_time(1_000, 10_000.0, timeout), "100 ms of 250");
        assert!(!in_time(2_000, 10_000.0, timeout), "200 ms: too close to 250");
        assert!(!in_time(1, 0.0, timeout), "no rate, no bridge");
    }

    #[test]
    fn names_are_per_version_and_member_and_the_probe_is_fixed() {
        let id = ContentId::of(b"manifest");
        assert_eq!(model_name(&id, 2), format!("mass-{}-2", &id.to_string()[..16]));
        assert_eq!(probe_model(), probe_model());
        assert_eq!(probe_rows(3).len(), 192);
        assert_eq!(probe_model().parameters(), 64 * 128 + 128 + 128 * 10 + 10);
    }
}
