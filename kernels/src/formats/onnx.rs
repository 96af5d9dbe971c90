//! A model as an ONNX graph (opset 13, IR version 7), scaling step
//! included, so that a runtime given the raw numeric columns answers as the
//! mesh does.
//!
//! The graph reads `input`, float64 `[rows, columns]`: the pipeline's kept
//! numeric columns in schema order (named in the `columns` metadata entry).
//! It fills missing values (NaN) with the pipeline's fill, subtracts the
//! offset and multiplies by the scale in float64, as the pipeline does,
//! then casts to float32; each member is a chain of `Gemm` with `Relu` or
//! `Tanh` between, ending in `Softmax` for classifiers; several members are
//! combined by the model's weights (`Mul`, `Sum`). Classifiers answer
//! `probabilities`, float32 `[rows, classes]` (classes in the `classes`
//! entry); regressors `value`, float64 `[rows, 1]`, in the label's units.
//!
//! Only what these operators express is exported: pipelines of numeric
//! columns imputed and scaled, members that are dense networks, averaged or
//! weighted. One-hot, ordinal, text and binned columns, crosses and
//! principal components are refused by name.

use mass_protocol::{
    features::{ColumnTransform, FittedPipeline},
    jobs::Task,
};

use super::{ExportError, Networks, proto::Message};
use crate::models::Activation;

/// The operator set the graph is written against.
pub const OPSET: i64 = 13;
/// The IR version that goes with opset 13.
const IR_VERSION: i64 = 7;
/// The `format` metadata value.
pub const FORMAT: &str = "mass.onnx/1";

/// ONNX `TensorProto.DataType` values.
const FLOAT: i64 = 1;
const DOUBLE: i64 = 11;

/// The numeric columns a graph reads and their imputation and scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    pub columns: Vec<String>,
    pub fill: Vec<f64>,
    pub offset: Vec<f64>,
    pub scale: Vec<f64>,
}

/// The scaling step of a pipeline, if numeric imputation and scaling is all it does.
pub fn scaling(pipeline: &FittedPipeline) -> Result<Scaling, ExportError> {
    if !pipeline.crosses.is_empty() {
        return Err(ExportError::Step("crossed features"));
    }
    if pipeline.projection.is_some() {
        return Err(ExportError::Step("principal components"));
    }
    let mut out = Scaling { columns: vec![], fill: vec![], offset: vec![], scale: vec![] };
    for (column, transform) in pipeline.columns.iter().zip(&pipeline.transforms) {
        let refuse = |what| Err(ExportError::Column { column: column.clone(), what });
        match transform {
            ColumnTransform::Drop => {}
            ColumnTransform::Numeric { fill, offset, scale } => {
                out.columns.push(column.clone());
                out.fill.push(*fill);
                out.offset.push(*offset);
                out.scale.push(*scale);
            }
            ColumnTransform::OneHot { .. } => return refuse("one-hot encoded (categorical)"),
            ColumnTransform::Ordinal { .. } => return refuse("ordinal encoded (categorical)"),
            ColumnTransform::Tfidf { .. } => return refuse("text (hashed TF-IDF)"),
            ColumnTransform::Binned { .. } => return refuse("binned into quantile indicators"),
        }
    }
    Ok(out)
}

/// The model's ONNX bytes; `extra` adds metadata (model name, version).
pub fn write(networks: &Networks, extra: &[(&str, String)]) -> Result<Vec<u8>, ExportError> {
    networks.validate()?;
    let scaling = scaling(&networks.pipeline)?;
    let weights = networks.member_weights()?;
    let pipeline = &networks.pipeline;
    let k = scaling.columns.len() as i64;
    let mut graph = Graph::default();

    graph.initializer(tensor_f64("fill", &[k], &scaling.fill));
    graph.initializer(tensor_f64("offset", &[k], &scaling.offset));
    graph.initializer(tensor_f64("scale", &[k], &scaling.scale));
    graph.node("IsNaN", &["input"], "missing", vec![]);
    graph.node("Where", &["missing", "fill", "input"], "filled", vec![]);
    graph.node("Sub", &["filled", "offset"], "centered", vec![]);
    graph.node("Mul", &["centered", "scale"], "scaled", vec![]);
    graph.node("Cast", &["scaled"], "features", vec![attr_int("to", FLOAT)]);

    let classify = pipeline.task == Task::Classification;
    let mut answers = Vec::new();
    for (m, member) in networks.members.iter().enumerate() {
        let mut h = "features".to_owned();
        let last = member.weights.len() - 1;
        for (i, (w, b)) in member.weights.iter().zip(&member.biases).enumerate() {
            let (wn, bn, z) = (format!("m{m}.w{i}"), format!("m{m}.b{i}"), format!("m{m}.z{i}"));
            graph.initializer(tensor_f32(&wn, &[w.nrows() as i64, w.ncols() as i64], w.iter()));
            graph.initializer(tensor_f32(&bn, &[b.len() as i64], b.iter()));
            graph.node("Gemm", &[&h, &wn, &bn], &z, vec![]);
            h = if i < last {
                let a = format!("m{m}.a{i}");
                let op = match member.activation {
                    Activation::Relu => "Relu",
                    Activation::Tanh => "Tanh",
                };
                graph.node(op, &[&z], &a, vec![]);
                a
            } else if classify {
                let p = format!("m{m}.p");
                graph.node("Softmax", &[&z], &p, vec![attr_int("axis", 1)]);
                p
            } else {
                z
            };
        }
        answers.push(h);
    }
    // One member at weight 1 is its own answer; otherwise the mesh's
    // `sum_k w_k * out_k`.
    let combined = if answers.len() == 1 && weights[0] == 1.0 {
        answers.remove(0)
    } else {
        let mut weighted = Vec::new();
        for (m, (answer, w)) in answers.iter().zip(&weights).enumerate() {
            let (wn, out) = (format!("m{m}.weight"), format!("m{m}.weighted"));
            graph.initializer(tensor_f32(&wn, &[], [*w as f32].iter()));
            graph.node("Mul", &[answer, &wn], &out, vec![]);
            weighted.push(out);
        }
        let refs: Vec<&str> = weighted.iter().map(String::as_str).collect();
        graph.node("Sum", &refs, "combined", vec![]);
        "combined".to_owned()
    };
    let output = match (pipeline.task, pipeline.target) {
        (Task::Classification, _) => {
            graph.node("Identity", &[&combined], "probabilities", vec![]);
            value_info("probabilities", FLOAT, &[Dim::Rows, Dim::Fixed(pipeline.classes.len() as i64)])
        }
        (Task::Regression, target) => {
            let target = target.ok_or_else(|| ExportError::Shapes {
                member: 0,
                reason: "a regressor's pipeline has no target scale".into(),
            })?;
            graph.initializer(tensor_f64("target.std", &[], &[target.std]));
            graph.initializer(tensor_f64("target.mean", &[], &[target.mean]));
            graph.node("Cast", &[&combined], "standardized", vec![attr_int("to", DOUBLE)]);
            graph.node("Mul", &["standardized", "target.std"], "spread", vec![]);
            graph.node("Add", &["spread", "target.mean"], "value", vec![]);
            value_info("value", DOUBLE, &[Dim::Rows, Dim::Fixed(1)])
        }
    };

    let mut graph_message = Message::new();
    for node in graph.nodes {
        graph_message = graph_message.message(1, node);
    }
    graph_message = graph_message.string(2, "mass");
    for init in graph.initializers {
        graph_message = graph_message.message(5, init);
    }
    graph_message =
        graph_message.message(11, value_info("input", DOUBLE, &[Dim::Rows, Dim::Fixed(k)])).message(12, output);

    let json = |v: &[String]| serde_json::to_string(v).expect("strings serialize");
    let mut metadata = vec![
        ("format", FORMAT.to_owned()),
        ("task", pipeline.task.to_string()),
        ("columns", json(&scaling.columns)),
        ("classes", json(&pipeline.classes)),
    ];
    metadata.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    let mut model = Message::new()
        .int(1, IR_VERSION)
        .string(2, "mass")
        .string(3, env!("CARGO_PKG_VERSION"))
        .message(7, graph_message)
        .message(8, Message::new().string(1, "").int(2, OPSET));
    for (key, value) in metadata {
        model = model.message(14, Message::new().string(1, key).string(2, &value));
    }
    Ok(model.into_bytes())
}

/// Nodes and initializers in the order they are added.
#[derive(Default)]
struct Graph {
    nodes: Vec<Message>,
    initializers: Vec<Message>,
}

impl Graph {
    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attributes: Vec<Message>) {
        let mut node = Message::new();
        for input in inputs {
            node = node.string(1, input);
        }
        node = node.string(2, output).string(3, output).string(4, op);
        for attribute in attributes {
            node = node.message(5, attribute);
        }
        self.nodes.push(node);
    }

    fn initializer(&mut self, tensor: Message) {
        self.initializers.push(tensor);
    }
}

/// An `INT` attribute.
fn attr_int(name: &str, value: i64) -> Message {
    const INT: i64 = 2;
    Message::new().string(1, name).int(3, value).int(20, INT)
}

fn tensor_f32<'a>(name: &str, dims: &[i64], values: impl Iterator<Item = &'a f32>) -> Message {
    let raw: Vec<u8> = values.flat_map(|v| v.to_le_bytes()).collect();
    Message::new().packed_ints(1, dims).int(2, FLOAT).string(8, name).bytes(9, &raw)
}

fn tensor_f64(name: &str, dims: &[i64], values: &[f64]) -> Message {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Message::new().packed_ints(1, dims).int(2, DOUBLE).string(8, name).bytes(9, &raw)
}

enum Dim {
    /// The batch dimension, any size.
    Rows,
    Fixed(i64),
}

/// A graph input or output: name, element type, shape.
fn value_info(name: &str, elem_type: i64, dims: &[Dim]) -> Message {
    let mut shape = Message::new();
    for dim in dims {
        shape = shape.message(
            1,
            match dim {
                Dim::Rows => Message::new().string(2, "rows"),
                Dim::Fixed(n) => Message::new().int(1, *n),
            },
        );
    }
    let tensor = Message::new().int(1, elem_type).message(2, shape);
    Message::new().string(1, name).message(2, Message::new().message(1, tensor))
}

#[cfg(test)]
mod tests {
    use mass_protocol::features::{Cross, TextSpec};

    use super::*;
    use crate::formats::{
        fixtures::{classifier, regressor},
        proto::read::{all, one, packed},
    };

    fn ops(model: &[u8]) -> Vec<String> {
        let graph = one(model, 7);
        all(graph.bytes(), 1).iter().map(|n| one(n.bytes(), 4).text().to_owned()).collect()
    }

    fn metadata(model: &[u8], key: &str) -> String {
        all(model, 14)
            .iter()
            .find(|e| one(e.bytes(), 1).text() == key)
            .map(|e| one(e.bytes(), 2).text().to_owned())
            .unwrap_or_else(|| panic!("no metadata {key}"))
    }

    #[test]
    fn a_classifier_is_scaling_then_gemms_then_softmax() {
        let model = write(&classifier(1), &[("model", "m".into())]).unwrap();
        assert_eq!(one(&model, 1).int(), IR_VERSION);
        let opset = one(&model, 8);
        assert_eq!(one(opset.bytes(), 2).int(), OPSET);
        assert_eq!(
            ops(&model),
            ["IsNaN", "Where", "Sub", "Mul", "Cast", "Gemm", "Relu", "Gemm", "Softmax", "Identity"]
        );
        assert_eq!(metadata(&model, "columns"), r#"["x0","x1","x2","x3"]"#);
        assert_eq!(metadata(&model, "classes"), r#"["class0","class1","class2"]"#);
        assert_eq!(metadata(&model, "model"), "m");
        let graph = one(&model, 7);
        let inits = all(graph.bytes(), 5);
        let w0 = inits.iter().find(|t| one(t.bytes(), 8).text() == "m0.w0").unwrap();
        assert_eq!(packed(one(w0.bytes(), 1).bytes()), [4, 6]);
        assert_eq!(one(w0.bytes(), 9).bytes().len(), 4 * 6 * 4);
        let output = one(graph.bytes(), 12);
        assert_eq!(one(output.bytes(), 1).text(), "probabilities");
    }

    #[test]
    fn ensembles_are_weighted_and_regressors_unscaled() {
        assert_eq!(ops(&write(&classifier(3), &[]).unwrap()).iter().filter(|o| *o == "Mul").count(), 1 + 3);
        assert!(ops(&write(&classifier(3), &[]).unwrap()).contains(&"Sum".to_owned()));
        let model = write(&regressor(), &[]).unwrap();
        assert_eq!(
            ops(&model),
            ["IsNaN", "Where", "Sub", "Mul", "Cast", "Gemm", "Tanh", "Gemm", "Tanh", "Gemm", "Cast", "Mul", "Add"]
        );
        let graph = one(&model, 7);
        assert_eq!(one(one(graph.bytes(), 12).bytes(), 1).text(), "value");
    }

    #[test]
    fn pipelines_onnx_cannot_express_are_refused_by_name() {
        let mut onehot = classifier(1);
        onehot.pipeline.transforms[2] =
            ColumnTransform::OneHot { categories: vec!["a".into()], unseen: mass_protocol::features::Unseen::Ignore };
        let err = write(&onehot, &[]).unwrap_err().to_string();
        assert_eq!(
            err,
            "ONNX export reads numeric columns, imputed and scaled; column 'x1' is one-hot encoded (categorical)"
        );
        let mut text = classifier(1);
        text.pipeline.transforms[0] = ColumnTransform::Tfidf {
            spec: TextSpec { buckets: 4, ngram_max: 1, min_df: 1, sublinear_tf: false },
            idf: Default::default(),
        };
        assert!(write(&text, &[]).unwrap_err().to_string().contains("column 'x0' is text"));
        let mut crossed = classifier(1);
        crossed.pipeline.crosses = vec![Cross::Product { a: 0, b: 1 }];
        crossed.pipeline.features += 1;
        crossed.members[0].weights[0] = ndarray::Array2::zeros((5, 6));
        assert!(write(&crossed, &[]).unwrap_err().to_string().contains("crossed features"));
    }
}
