//! Dense weights as a safetensors file, the format most tools load
//! (<https://huggingface.co/docs/safetensors>).
//!
//! Tensors, all F32, row-major:
//! - one network: `layers.{i}.weight` of shape `[inputs, outputs]`, applied
//!   as `x @ W + b`, and `layers.{i}.bias` of shape `[outputs]`;
//! - several (an averaged ensemble): `members.{k}.layers.{i}.weight` and
//!   `members.{k}.layers.{i}.bias`.
//!
//! Hidden layers apply the `activation`; the last layer gives softmax
//! probabilities (classification) or the value standardized by the
//! pipeline's target scale (regression). Metadata (`__metadata__`, all
//! strings): `format` (`mass.mlp/1`), `task`, `classes` (JSON), `activation`,
//! `combine` (JSON, the mesh's rule) and `member_weights` (JSON:
//! `answer = sum_k w_k * output_k`), `pipeline` (the fitted pipeline as
//! JSON), and whatever provenance the caller adds.
//!
//! Reading checks, before anything is used, that every tensor holds the
//! bytes its shape and type declare, that names follow the layout above,
//! and that layers chain; each refusal names the tensor or layer.

use std::collections::{BTreeMap, HashMap};

use mass_protocol::{
    features::FittedPipeline,
    jobs::{Combine, Task},
};
use ndarray::{Array1, Array2};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::{ExportError, Networks, activation_name};
use crate::models::{Activation, Loss, Mlp};

/// The `format` metadata value of files this module writes.
pub const FORMAT: &str = "mass.mlp/1";

/// The file's bytes: weights of every member, metadata describing how to
/// run them. `extra` adds provenance (model name, version, manifest).
pub fn write(networks: &Networks, extra: &[(&str, String)]) -> Result<Vec<u8>, ExportError> {
    networks.validate()?;
    let weights = networks.member_weights()?;
    let several = networks.members.len() > 1;
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (k, member) in networks.members.iter().enumerate() {
        let prefix = if several { format!("members.{k}.") } else { String::new() };
        for (i, (w, b)) in member.weights.iter().zip(&member.biases).enumerate() {
            tensors.push((format!("{prefix}layers.{i}.weight"), vec![w.nrows(), w.ncols()], le_bytes(w.iter())));
            tensors.push((format!("{prefix}layers.{i}.bias"), vec![b.len()], le_bytes(b.iter())));
        }
    }
    let mut metadata: HashMap<String, String> = HashMap::from([
        ("format".to_owned(), FORMAT.to_owned()),
        ("task".to_owned(), networks.pipeline.task.to_string()),
        ("classes".to_owned(), json(&networks.pipeline.classes)),
        ("activation".to_owned(), activation_name(networks.members[0].activation).to_owned()),
        ("combine".to_owned(), json(&networks.combine)),
        ("member_weights".to_owned(), json(&weights)),
        ("pipeline".to_owned(), json(&networks.pipeline)),
    ]);
    for (key, value) in extra {
        metadata.insert((*key).to_owned(), value.clone());
    }
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (name.clone(), v)).map_err(|e| encode(&e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| encode(&e))
}

fn encode(e: &safetensors::SafeTensorError) -> ExportError {
    ExportError::Encode(e.to_string())
}

fn le_bytes<'a>(values: impl Iterator<Item = &'a f32>) -> Vec<u8> {
    values.flat_map(|v| v.to_le_bytes()).collect()
}

/// JSON of a metadata value.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

/// Why a weight file cannot be imported. Every variant names what was wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImportError {
    #[error("not a readable safetensors file: {0}")]
    Unreadable(String),
    #[error("tensor '{name}' declares shape {shape:?} of {dtype} ({declared} bytes) but its offsets hold {held} bytes")]
    Shape { name: String, shape: Vec<usize>, dtype: String, declared: u128, held: u128 },
    #[error("tensor '{name}' is {dtype}; only F32 tensors are imported")]
    Dtype { name: String, dtype: String },
    #[error(
        "tensor '{name}' is not a layer's weight or bias (expected layers.N.weight and layers.N.bias, or \
         members.K.layers.N.weight and members.K.layers.N.bias)"
    )]
    Name { name: String },
    #[error("tensor '{name}' has shape {shape:?}; a weight is [inputs, outputs] and a bias [outputs]")]
    Rank { name: String, shape: Vec<usize> },
    #[error("the file holds no layers")]
    Empty,
    #[error("{member}layer {layer} has no {what} tensor")]
    Missing { member: String, layer: usize, what: &'static str },
    #[error("{member}layers.{layer}.weight takes {inputs} inputs, but layer {before} gives {outputs} outputs")]
    Chain { member: String, layer: usize, before: usize, inputs: usize, outputs: usize },
    #[error("{member}layers.{layer}.bias has {bias} values for {outputs} outputs")]
    Bias { member: String, layer: usize, bias: usize, outputs: usize },
    #[error("tensor '{name}' has values that are not finite numbers")]
    NotFinite { name: String },
    #[error("metadata '{key}': {reason}")]
    Metadata { key: String, reason: String },
    #[error("the file has no pipeline in its metadata; give one (a pipeline spec to fit, or a fitted pipeline)")]
    NoPipeline,
    #[error("the pipeline is invalid: {0}")]
    Pipeline(String),
    #[error("{member}the first layer takes {inputs} inputs, but the pipeline makes {features} features")]
    Inputs { member: String, inputs: usize, features: usize },
    #[error("{member}the last layer gives {outputs} outputs, but the {task} needs {expected}")]
    Outputs { member: String, outputs: usize, task: String, expected: usize },
    #[error("the members' combining rule does not fit them: {0}")]
    Combine(String),
}

/// A layer's weight and bias, as far as found.
type Found = (Option<Array2<f32>>, Option<Array1<f32>>);

/// The layers of one member: (weight, bias) in order.
pub type Layers = Vec<(Array2<f32>, Array1<f32>)>;

/// A weight file read and checked: members whose layers chain, and the
/// metadata strings.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightFile {
    pub members: Vec<Layers>,
    pub metadata: BTreeMap<String, String>,
}

/// Reads and checks a weight file.
pub fn read(bytes: &[u8]) -> Result<WeightFile, ImportError> {
    check_declared_sizes(bytes)?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| ImportError::Unreadable(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| ImportError::Unreadable(e.to_string()))?;
    let metadata: BTreeMap<String, String> = header.metadata().clone().unwrap_or_default().into_iter().collect();
    // (member, layer) -> (weight, bias), from names; member None: no prefix.
    let mut found: BTreeMap<(Option<usize>, usize), Found> = BTreeMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(ImportError::Dtype { name, dtype: view.dtype().to_string() });
        }
        let (member, layer, is_weight) = parse_name(&name).ok_or_else(|| ImportError::Name { name: name.clone() })?;
        let values: Vec<f32> =
            view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(ImportError::NotFinite { name });
        }
        let slot = found.entry((member, layer)).or_default();
        match (is_weight, view.shape()) {
            (true, &[rows, cols]) => {
                slot.0 = Some(Array2::from_shape_vec((rows, cols), values).expect("the size was checked"))
            }
            (false, &[len]) => slot.1 = Some(Array1::from_shape_vec(len, values).expect("the size was checked")),
            (_, shape) => return Err(ImportError::Rank { name, shape: shape.to_vec() }),
        }
    }
    if found.is_empty() {
        return Err(ImportError::Empty);
    }
    let prefixed = found.keys().any(|(m, _)| m.is_some());
    if prefixed && let Some((None, layer)) = found.keys().find(|(m, _)| m.is_none()) {
        return Err(ImportError::Name { name: format!("layers.{layer}.weight") });
    }
    let mut by_member: BTreeMap<usize, BTreeMap<usize, Found>> = BTreeMap::new();
    for ((member, layer), pair) in found {
        by_member.entry(member.unwrap_or(0)).or_default().insert(layer, pair);
    }
    let mut members = Vec::with_capacity(by_member.len());
    for (expected, (k, layers)) in by_member.into_iter().enumerate() {
        let member = if prefixed { format!("members.{expected}.") } else { String::new() };
        if k != expected {
            return Err(ImportError::Missing { member, layer: 0, what: "weight" });
        }
        members.push(chain(&member, layers)?);
    }
    Ok(WeightFile { members, metadata })
}

/// The layers of one member in order, checked to chain.
fn chain(member: &str, layers: BTreeMap<usize, Found>) -> Result<Layers, ImportError> {
    let mut out: Layers = Vec::with_capacity(layers.len());
    for (expected, (layer, (weight, bias))) in layers.into_iter().enumerate() {
        let missing = |layer, what| ImportError::Missing { member: member.to_owned(), layer, what };
        if layer != expected {
            return Err(missing(expected, "weight"));
        }
        let weight = weight.ok_or_else(|| missing(layer, "weight"))?;
        let bias = bias.ok_or_else(|| missing(layer, "bias"))?;
        if let Some((before, _)) = out.last()
            && before.ncols() != weight.nrows()
        {
            return Err(ImportError::Chain {
                member: member.to_owned(),
                layer,
                before: layer - 1,
                inputs: weight.nrows(),
                outputs: before.ncols(),
            });
        }
        if bias.len() != weight.ncols() {
            return Err(ImportError::Bias {
                member: member.to_owned(),
                layer,
                bias: bias.len(),
                outputs: weight.ncols(),
            });
        }
        out.push((weight, bias));
    }
    Ok(out)
}

/// `layers.{i}.weight|bias`, optionally under `members.{k}.`.
fn parse_name(name: &str) -> Option<(Option<usize>, usize, bool)> {
    let index = |s: &str| s.parse::<usize>().ok().filter(|_| s == "0" || !s.starts_with('0'));
    let parts: Vec<&str> = name.split('.').collect();
    let (member, rest) = match parts.as_slice() {
        ["members", k, rest @ ..] => (Some(index(k)?), rest),
        rest => (None, rest),
    };
    match rest {
        ["layers", i, "weight"] => Some((member, index(i)?, true)),
        ["layers", i, "bias"] => Some((member, index(i)?, false)),
        _ => None,
    }
}

/// Compares each F32 tensor's declared shape with the bytes its offsets
/// span, so that the refusal names the tensor (the safetensors crate says
/// only that some tensor is inconsistent).
fn check_declared_sizes(bytes: &[u8]) -> Result<(), ImportError> {
    let unreadable = |what: &str| ImportError::Unreadable(what.to_owned());
    let n = bytes.get(..8).ok_or_else(|| unreadable("shorter than its 8-byte header length"))?;
    let n = u64::from_le_bytes(n.try_into().expect("8 bytes"));
    let header = usize::try_from(n)
        .ok()
        .and_then(|n| bytes.get(8..8usize.checked_add(n)?))
        .ok_or_else(|| unreadable("its header length runs past the end of the file"))?;
    // Anything malformed here is left for the crate to name.
    let Ok(serde_json::Value::Object(entries)) = serde_json::from_slice::<serde_json::Value>(header) else {
        return Ok(());
    };
    for (name, entry) in entries.iter().filter(|(name, _)| *name != "__metadata__") {
        let dtype = entry.get("dtype").and_then(|d| d.as_str());
        let shape: Option<Vec<usize>> = entry
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|s| s.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect());
        let offsets: Option<Vec<u64>> =
            entry.get("data_offsets").and_then(|o| o.as_array()).and_then(|o| o.iter().map(|v| v.as_u64()).collect());
        if let (Some("F32"), Some(shape), Some(&[start, end])) = (dtype, shape, offsets.as_deref()) {
            let declared = shape.iter().fold(4u128, |size, d| size.saturating_mul(*d as u128));
            let held = u128::from(end).saturating_sub(u128::from(start));
            if declared != held {
                return Err(ImportError::Shape { name: name.clone(), shape, dtype: "F32".into(), declared, held });
            }
        }
    }
    Ok(())
}

impl WeightFile {
    /// The fitted pipeline the file carries, if any.
    pub fn pipeline(&self) -> Result<Option<FittedPipeline>, ImportError> {
        self.metadata.get("pipeline").map(|text| parse_metadata("pipeline", text)).transpose()
    }

    /// The networks, read through `pipeline`: each member's first layer
    /// must take the pipeline's features and its last give the task's
    /// outputs. The hidden activation is `activation`, else the file's,
    /// else ReLU; the combining rule the file's, else the mean.
    pub fn into_networks(
        self,
        pipeline: FittedPipeline,
        activation: Option<Activation>,
    ) -> Result<Networks, ImportError> {
        pipeline.validate().map_err(|e| ImportError::Pipeline(e.to_string()))?;
        let activation = match (activation, self.metadata.get("activation")) {
            (Some(a), _) => a,
            (None, Some(text)) => parse_activation(text)?,
            (None, None) => Activation::Relu,
        };
        let combine = match self.metadata.get("combine") {
            Some(text) => parse_metadata("combine", text)?,
            None => Combine::Mean,
        };
        let (loss, expected) = match pipeline.task {
            Task::Classification if pipeline.classes.len() < 2 => {
                return Err(ImportError::Pipeline("a classifier's pipeline needs at least two classes".into()));
            }
            Task::Classification => (Loss::SoftmaxCrossEntropy, pipeline.classes.len()),
            Task::Regression if pipeline.target.is_none() => {
                return Err(ImportError::Pipeline("a regressor's pipeline needs its target scale".into()));
            }
            Task::Regression => (Loss::SquaredError, 1),
        };
        let several = self.members.len() > 1;
        let mut members = Vec::with_capacity(self.members.len());
        for (k, layers) in self.members.into_iter().enumerate() {
            let member = if several { format!("members.{k}: ") } else { String::new() };
            let inputs = layers[0].0.nrows();
            if inputs != pipeline.features {
                return Err(ImportError::Inputs { member, inputs, features: pipeline.features });
            }
            let outputs = layers[layers.len() - 1].0.ncols();
            if outputs != expected {
                let task = match pipeline.task {
                    Task::Classification => format!("classifier of classes {}", pipeline.classes.join(", ")),
                    Task::Regression => "regressor".into(),
                };
                return Err(ImportError::Outputs { member, outputs, task, expected });
            }
            let (weights, biases) = layers.into_iter().unzip();
            members.push(Mlp { weights, biases, activation, loss });
        }
        combine.validate(members.len()).map_err(ImportError::Combine)?;
        Ok(Networks { pipeline, members, combine })
    }
}

fn parse_metadata<T: serde::de::DeserializeOwned>(key: &str, text: &str) -> Result<T, ImportError> {
    serde_json::from_str(text).map_err(|e| ImportError::Metadata { key: key.into(), reason: e.to_string() })
}

/// `relu` or `tanh`.
pub fn parse_activation(text: &str) -> Result<Activation, ImportError> {
    match text {
        "relu" => Ok(Activation::Relu),
        "tanh" => Ok(Activation::Tanh),
        other => Err(ImportError::Metadata {
            key: "activation".into(),
            reason: format!("'{other}' is not an activation (relu or tanh)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;
    use crate::formats::fixtures::{classifier, regressor};

    fn predict(n: &Networks, x: &Array2<f32>) -> Array2<f32> {
        let outputs: Vec<Array2<f32>> = n.members.iter().map(|m| m.predict(x.view())).collect();
        crate::models::ensemble::combine(&outputs, &n.combine, None)
    }

    fn round_trip(networks: &Networks) -> Networks {
        let bytes = write(networks, &[("model", "m".into())]).unwrap();
        let file = read(&bytes).unwrap();
        assert_eq!(file.metadata["format"], FORMAT);
        assert_eq!(file.metadata["model"], "m");
        let pipeline = file.pipeline().unwrap().unwrap();
        file.into_networks(pipeline, None).unwrap()
    }

    #[test]
    fn networks_written_read_back_identical() {
        for networks in [classifier(1), classifier(3), regressor()] {
            let back = round_trip(&networks);
            assert_eq!(back, networks);
            let x = Array2::from_shape_fn((5, networks.pipeline.features), |(r, c)| (r * 3 + c) as f32 * 0.1);
            assert_eq!(predict(&back, &x), predict(&networks, &x));
        }
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let one = read(&write(&classifier(1), &[]).unwrap()).unwrap();
        assert_eq!(one.members.len(), 1);
        assert_eq!(one.members[0][0].0.dim(), (4, 6));
        let bytes = write(&classifier(2), &[]).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut names = file.names();
        names.sort();
        assert_eq!(names[0], "members.0.layers.0.bias");
        assert_eq!(file.tensor("members.1.layers.1.weight").unwrap().shape(), [6, 3]);
        let weights: Vec<f64> = serde_json::from_str(&read(&bytes).unwrap().metadata["member_weights"]).unwrap();
        assert_eq!(weights, [0.5, 0.5]);
    }

    #[test]
    fn stacked_and_mismatched_networks_are_not_written() {
        let stacked = Networks { combine: Combine::Stacked, ..classifier(2) };
        assert!(write(&stacked, &[]).unwrap_err().to_string().contains("stacked ensemble"));
        let mut wide = classifier(1);
        wide.pipeline.features = 5;
        let err = write(&wide, &[]).unwrap_err().to_string();
        assert!(err.contains("member 0") && err.contains("5 features"), "{err}");
    }

    /// A file of the given tensors (name, shape, values) and metadata.
    fn file(tensors: &[(&str, Vec<usize>, Vec<f32>)], metadata: Option<HashMap<String, String>>) -> Vec<u8> {
        let data: Vec<(String, Vec<usize>, Vec<u8>)> =
            tensors.iter().map(|(n, s, v)| (n.to_string(), s.clone(), le_bytes(v.iter()))).collect();
        let views: Vec<(String, TensorView<'_>)> =
            data.iter().map(|(n, s, d)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), d).unwrap())).collect();
        safetensors::serialize(views, metadata).unwrap()
    }

    fn refused(bytes: &[u8]) -> String {
        match read(bytes) {
            Ok(_) => panic!("read a bad file"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn files_whose_tensors_do_not_match_their_shapes_or_chain_are_refused_by_name() {
        let good =
            file(&[("layers.0.weight", vec![2, 3], vec![0.0; 6]), ("layers.0.bias", vec![3], vec![0.0; 3])], None);
        assert!(read(&good).is_ok());
        // A declared shape larger than the bytes behind it.
        let at = good.windows(5).position(|w| w == b"[2,3]").unwrap();
        let mut lying = good.clone();
        lying[at..at + 5].copy_from_slice(b"[2,4]");
        let err = refused(&lying);
        assert!(err.contains("'layers.0.weight'") && err.contains("[2, 4]") && err.contains("24 bytes"), "{err}");
        // Layers that do not chain, biases that do not fit.
        let broken = file(
            &[
                ("layers.0.weight", vec![2, 3], vec![0.0; 6]),
                ("layers.0.bias", vec![3], vec![0.0; 3]),
                ("layers.1.weight", vec![4, 2], vec![0.0; 8]),
                ("layers.1.bias", vec![2], vec![0.0; 2]),
            ],
            None,
        );
        assert!(refused(&broken).contains("layers.1.weight takes 4 inputs, but layer 0 gives 3"));
        let bias =
            file(&[("layers.0.weight", vec![2, 3], vec![0.0; 6]), ("layers.0.bias", vec![2], vec![0.0; 2])], None);
        assert!(refused(&bias).contains("layers.0.bias has 2 values for 3 outputs"));
        let missing = file(&[("layers.0.weight", vec![2, 3], vec![0.0; 6])], None);
        assert!(refused(&missing).contains("layer 0 has no bias"));
        let gap =
            file(&[("layers.1.weight", vec![2, 3], vec![0.0; 6]), ("layers.1.bias", vec![3], vec![0.0; 3])], None);
        assert!(refused(&gap).contains("layer 0 has no weight"));
        let stray = file(&[("encoder.weight", vec![2, 3], vec![0.0; 6])], None);
        assert!(refused(&stray).contains("'encoder.weight' is not a layer's weight"));
        let rank = file(&[("layers.0.weight", vec![6], vec![0.0; 6])], None);
        assert!(refused(&rank).contains("'layers.0.weight' has shape [6]"));
        let nan = file(&[("layers.0.weight", vec![1, 1], vec![f32::NAN]), ("layers.0.bias", vec![1], vec![0.0])], None);
        assert!(refused(&nan).contains("not finite"));
        assert!(refused(b"\x02\x00").contains("not a readable safetensors file"));
        assert!(refused(&good[..good.len() - 1]).contains("not a readable safetensors file"));
        assert!(refused(&file(&[], None)).contains("no layers"));
    }

    #[test]
    fn weights_that_do_not_fit_the_pipeline_or_classes_are_refused_by_name() {
        let bytes = write(&classifier(1), &[]).unwrap();
        let pipeline = read(&bytes).unwrap().pipeline().unwrap().unwrap();
        let narrow = crate::formats::fixtures::pipeline(3, 3, Task::Classification);
        let err = read(&bytes).unwrap().into_networks(narrow, None).unwrap_err().to_string();
        assert!(err.contains("takes 4 inputs, but the pipeline makes 3 features"), "{err}");
        let mut two = pipeline.clone();
        two.classes.pop();
        let err = read(&bytes).unwrap().into_networks(two, None).unwrap_err().to_string();
        assert!(err.contains("gives 3 outputs, but the classifier of classes class0, class1 needs 2"), "{err}");
        // No pipeline in a foreign file: the caller must give one.
        let foreign =
            file(&[("layers.0.weight", vec![4, 3], vec![0.5; 12]), ("layers.0.bias", vec![3], vec![0.0; 3])], None);
        assert_eq!(read(&foreign).unwrap().pipeline(), Ok(None));
        let networks = read(&foreign).unwrap().into_networks(pipeline, Some(Activation::Tanh)).unwrap();
        assert_eq!(networks.members[0].loss, Loss::SoftmaxCrossEntropy);
        let bad = HashMap::from([("activation".to_owned(), "gelu".to_owned())]);
        let odd = file(
            &[("layers.0.weight", vec![4, 3], vec![0.5; 12]), ("layers.0.bias", vec![3], vec![0.0; 3])],
            Some(bad),
        );
        let pipeline = crate::formats::fixtures::pipeline(4, 3, Task::Classification);
        let err = read(&odd).unwrap().into_networks(pipeline, None).unwrap_err().to_string();
        assert!(err.contains("metadata 'activation': 'gelu' is not an activation"), "{err}");
    }

    #[test]
    fn member_names_parse_strictly() {
        assert_eq!(parse_name("layers.0.weight"), Some((None, 0, true)));
        assert_eq!(parse_name("members.12.layers.3.bias"), Some((Some(12), 3, false)));
        assert_eq!(parse_name("layers.01.weight"), None);
        assert_eq!(parse_name("layers.0.weight.x"), None);
        assert_eq!(parse_name("members.a.layers.0.bias"), None);
    }
}
