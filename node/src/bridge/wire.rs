//! The bridge protocol's bodies, as JSON: the Open Inference Protocol (v2)
//! subset a bridge speaks, and the `mass_hardware/1` extension. Both the
//! node's client and the reference bridge use these types, so the two
//! cannot drift apart; `docs/bridge.md` is the specification a host
//! program in another language follows.

use serde::{Deserialize, Serialize};

use super::fixed::Rounding;

/// The hardware extension's name and version, listed in the server
/// metadata. An incompatible change gets a new version.
pub const EXTENSION: &str = "mass_hardware/1";
/// OIP's model-repository extension (load and unload).
pub const REPOSITORY_EXTENSION: &str = "model_repository";
/// Format tag of a model sent in a load request.
pub const MLP_FORMAT: &str = "mass-mlp/1";
/// The one tensor datatype of this version.
pub const FP32: &str = "FP32";
/// Name of the input and output tensors of a loaded network.
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "output";

/// `GET /v2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

/// `GET /v2/health/live` and `/v2/health/ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Live {
    pub live: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    pub ready: bool,
}

/// `GET /v2/models/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// A tensor's name, datatype and shape; -1 marks the batch dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// `POST /v2/models/{name}/infer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: InferParameters,
    pub inputs: Vec<Tensor>,
}

/// OIP leaves `parameters` open; this extension defines one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InferParameters {
    /// Milliseconds from the request's arrival after which the bridge
    /// answers 504 instead of a late result. Relative, so the two clocks
    /// need not agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// A tensor with its data flattened in row-major order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<u64>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// A `rows x columns` FP32 matrix.
    pub fn matrix(name: &str, rows: usize, columns: usize, data: Vec<f32>) -> Self {
        Self { name: name.into(), datatype: FP32.into(), shape: vec![rows as u64, columns as u64], data }
    }

    /// Rows and columns of a two-dimensional FP32 tensor whose data fits
    /// its shape; a sentence otherwise.
    pub fn as_matrix(&self) -> Result<(usize, usize), String> {
        if self.datatype != FP32 {
            return Err(format!(
                "tensor '{}' is {}; this protocol version carries FP32 only",
                self.name, self.datatype
            ));
        }
        let [rows, columns] = self.shape[..] else {
            return Err(format!("tensor '{}' has shape {:?}; a batch is [rows, features]", self.name, self.shape));
        };
        let (rows, columns) = (usize::try_from(rows).unwrap_or(usize::MAX), usize::try_from(columns).unwrap_or(0));
        if rows.checked_mul(columns) != Some(self.data.len()) {
            return Err(format!("tensor '{}' has shape [{rows}, {columns}] but {} values", self.name, self.data.len()));
        }
        Ok((rows, columns))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferResponse {
    pub model_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<Tensor>,
}

/// `POST /v2/repository/models/{name}/load`: the model travels in the
/// request, as Triton's `file:` parameters carry a model's files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadRequest {
    pub parameters: LoadParameters,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadParameters {
    pub mass_mlp: MlpModel,
}

/// A dense network: layers in order, each `inputs x outputs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpModel {
    /// [`MLP_FORMAT`].
    pub format: String,
    pub layers: Vec<DenseLayer>,
}

impl MlpModel {
    pub fn inputs(&self) -> usize {
        self.layers.first().map_or(0, |l| l.inputs as usize)
    }

    pub fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs as usize)
    }

    /// Weights and biases in all.
    pub fn parameters(&self) -> u64 {
        self.layers.iter().map(|l| u64::from(l.inputs) * u64::from(l.outputs) + u64::from(l.outputs)).sum()
    }
}

/// `y = activation(x W + b)`, `W` row-major: `weights[i * outputs + j]`
/// connects input `i` to output `j`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseLayer {
    pub inputs: u32,
    pub outputs: u32,
    pub activation: Activation,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Identity,
    Relu,
    Tanh,
    /// Over a row's outputs; last layer only.
    Softmax,
}

/// `GET /v2/repository/index` rows (a POST in OIP; both are answered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryEntry {
    pub name: String,
    pub state: String,
}

/// `GET /v2/models/{name}/stats`, Triton's statistics extension reduced to
/// its counters: rows run (`inference_count`) and batches (`execution_count`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelStatistics {
    pub model_stats: Vec<ModelStat>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelStat {
    pub name: String,
    pub inference_count: u64,
    pub execution_count: u64,
}

/// `GET /v2/hardware/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    /// Changes when the bridge (re)starts: its loaded models are gone then.
    pub boot_id: String,
    pub uptime_s: f64,
    /// Models loaded now.
    pub models: u32,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    /// Answers, but slower or with fewer resources than advertised.
    Degraded,
    /// Cannot run inference.
    Failed,
}

/// `GET /v2/hardware/capabilities`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// [`EXTENSION`] again, so a stored answer says what it answers.
    pub protocol: String,
    pub device: String,
    /// "fpga", "asic", "emulator", ...
    pub kind: String,
    pub clock_mhz: f32,
    pub precision: Precision,
    /// Weights and biases of one model at most.
    pub max_parameters: u64,
    pub max_layers: u32,
    /// Rows of one infer request at most.
    pub max_batch: u32,
    /// Models loaded at once at most.
    pub max_models: u32,
    /// Layer kinds: "dense" in this version.
    pub layers: Vec<String>,
    pub activations: Vec<Activation>,
}

/// The device's arithmetic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Precision {
    /// E.g. "fixed<16,6>", or "float32" for a floating-point device.
    pub format: String,
    pub total_bits: u32,
    /// Sign included.
    pub integer_bits: u32,
    pub rounding: Rounding,
    /// "saturate" or "wrap".
    pub overflow: String,
    pub accumulator_bits: u32,
}

/// Any refusal: OIP's error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_infer_request_reads_as_the_open_inference_protocol_writes_it() {
        let text = json!({
            "id": "42",
            "parameters": { "deadline_ms": 250 },
            "inputs": [{ "name": "input", "datatype": "FP32", "shape": [2, 3], "data": [1.0, 2.0, 3.0, 4.0, 5.0, 6.5] }]
        });
        let request: InferRequest = serde_json::from_value(text.clone()).unwrap();
        assert_eq!(request.parameters.deadline_ms, Some(250));
        assert_eq!(request.inputs[0].as_matrix(), Ok((2, 3)));
        assert_eq!(serde_json::to_value(&request).unwrap(), text);
        // A plain OIP request, without this extension's parameters.
        let plain: InferRequest = serde_json::from_value(json!({
            "inputs": [{ "name": "input", "datatype": "FP32", "shape": [1, 1], "data": [0] }]
        }))
        .unwrap();
        assert_eq!((plain.id, plain.parameters.deadline_ms), (None, None));
    }

    #[test]
    fn tensors_whose_data_does_not_fit_their_shape_are_refused_with_a_sentence() {
        let tensor = |datatype: &str, shape: Vec<u64>, n: usize| Tensor {
            name: "input".into(),
            datatype: datatype.into(),
            shape,
            data: vec![0.0; n],
        };
        assert!(tensor("FP32", vec![2, 3], 5).as_matrix().unwrap_err().contains("shape [2, 3] but 5 values"));
        assert!(tensor("FP32", vec![6], 6).as_matrix().unwrap_err().contains("[rows, features]"));
        assert!(tensor("INT8", vec![1, 1], 1).as_matrix().unwrap_err().contains("FP32 only"));
        assert!(tensor("FP32", vec![u64::MAX, 2], 2).as_matrix().is_err());
    }

    #[test]
    fn f32_weights_survive_json_exactly() {
        // serde_json prints the shortest text that reads back as the same
        // f32, so a host program parsing with strtof gets the same bits.
        let weights: Vec<f32> = vec![0.1, -1.0e-7, 3.4028235e38, 1.0 / 3.0, f32::MIN_POSITIVE];
        let layer = DenseLayer {
            inputs: 5,
            outputs: 1,
            activation: Activation::Identity,
            weights: weights.clone(),
            bias: vec![0.0],
        };
        let back: DenseLayer = serde_json::from_str(&serde_json::to_string(&layer).unwrap()).unwrap();
        assert_eq!(
            back.weights.iter().map(|w| w.to_bits()).collect::<Vec<_>>(),
            weights.iter().map(|w| w.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_hardware_extension_bodies_are_pinned() {
        let capabilities = Capabilities {
            protocol: EXTENSION.into(),
            device: "dev".into(),
            kind: "fpga".into(),
            clock_mhz: 300.0,
            precision: Precision {
                format: "fixed<16,6>".into(),
                total_bits: 16,
                integer_bits: 6,
                rounding: Rounding::HalfEven,
                overflow: "saturate".into(),
                accumulator_bits: 48,
            },
            max_parameters: 1000,
            max_layers: 4,
            max_batch: 64,
            max_models: 2,
            layers: vec!["dense".into()],
            activations: vec![Activation::Relu, Activation::Softmax],
        };
        assert_eq!(
            serde_json::to_value(&capabilities).unwrap(),
            json!({
                "protocol": "mass_hardware/1", "device": "dev", "kind": "fpga", "clock_mhz": 300.0,
                "precision": { "format": "fixed<16,6>", "total_bits": 16, "integer_bits": 6,
                               "rounding": "half_even", "overflow": "saturate", "accumulator_bits": 48 },
                "max_parameters": 1000, "max_layers": 4, "max_batch": 64, "max_models": 2,
                "layers": ["dense"], "activations": ["relu", "softmax"]
            })
        );
        let health: Health = serde_json::from_value(json!({
            "status": "degraded", "boot_id": "b1", "uptime_s": 1.5, "models": 0
        }))
        .unwrap();
        assert_eq!((health.status, health.message.as_str()), (HealthStatus::Degraded, ""));
        let load = LoadRequest {
            parameters: LoadParameters {
                mass_mlp: MlpModel {
                    format: MLP_FORMAT.into(),
                    layers: vec![DenseLayer {
                        inputs: 2,
                        outputs: 1,
                        activation: Activation::Tanh,
                        weights: vec![0.5, -0.25],
                        bias: vec![1.0],
                    }],
                },
            },
        };
        assert_eq!(
            serde_json::to_value(&load).unwrap(),
            json!({ "parameters": { "mass_mlp": { "format": "mass-mlp/1", "layers": [
                { "inputs": 2, "outputs": 1, "activation": "tanh", "weights": [0.5, -0.25], "bias": [1.0] }
            ]}}})
        );
        assert_eq!(load.parameters.mass_mlp.parameters(), 3);
    }
}
