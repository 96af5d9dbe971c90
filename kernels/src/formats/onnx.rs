//! A model as an ONNX graph (opset 13, IR version 7; with trees or
//! categorical columns also `ai.onnx.ml` opset 5 and IR version 10), scaling
//! step included, so that a runtime given the raw columns answers as the
//! mesh does.
//!
//! The graph reads `input`, float64 `[rows, columns]`: the pipeline's kept
//! numeric columns in schema order (named in the `columns` metadata entry),
//! and, when the pipeline encodes categorical columns as ordinal codes (as
//! for trees), `categories`, string `[rows, columns]` (named in
//! `categorical_columns`; an empty string is a missing value). It fills
//! missing numbers (NaN) with the pipeline's fill, subtracts the offset and
//! multiplies by the scale in float64, as the pipeline does; a `LabelEncoder`
//! per categorical column turns each category into its index among the
//! fitted categories (-1 when unseen, NaN when missing), as the pipeline
//! does; a `Gather` puts the features in the pipeline's order; then they are
//! cast to float32. A network is a chain of `Gemm` with `Relu` or `Tanh`
//! between, ending in `Softmax` for classifiers. Boosted trees are one
//! `TreeEnsemble` over the float32 features widened to float64
//! ([`super::trees`]: thresholds, sets and sums in double, as the mesh bins
//! and sums), plus the starting scores, answering raw scores; a binary
//! classifier's score goes through `Sigmoid` to `[1 - p, p]`, a multiclass
//! one's through `Softmax`, in float64 as the mesh computes them. Several
//! members are combined by the model's weights (`Mul`, `Sum`). Classifiers
//! answer `probabilities`, float32 `[rows, classes]` (classes in the
//! `classes` entry); regressors `value`, float64 `[rows, 1]`, in the label's
//! units.
//!
//! Only what these operators express is exported: pipelines of numeric
//! columns imputed (or left missing, as for trees) and scaled and of
//! categorical columns as ordinal codes, members that are dense networks or
//! boosted trees, averaged or weighted. One-hot, text and binned columns,
//! crosses and principal components are refused by name.

use mass_protocol::{
    features::{ColumnTransform, FittedPipeline},
    jobs::Task,
};

use super::{ExportError, Model, Part, proto::Message, trees};
use crate::models::{Activation, Mlp, gbdt::Gbdt, gbdt::objective::Objective};

/// The operator set the graph is written against.
pub const OPSET: i64 = 13;
/// The `ai.onnx.ml` operator set of graphs with trees or categories: 5 is
/// the first with `TreeEnsemble`, whose splits can be sets of values.
pub const ML_OPSET: i64 = 5;
/// The domain of the tree operators.
const ML_DOMAIN: &str = "ai.onnx.ml";
/// The IR version that goes with opset 13, and the one of the ONNX release
/// that brought `ai.onnx.ml` 5 (1.16).
const IR_VERSION: i64 = 7;
const ML_IR_VERSION: i64 = 10;
/// The `format` metadata value.
pub const FORMAT: &str = "mass.onnx/1";

/// ONNX `TensorProto.DataType` values.
const FLOAT: i64 = 1;
const UINT8: i64 = 2;
const STRING: i64 = 8;
const INT64: i64 = 7;
const DOUBLE: i64 = 11;

/// The columns a graph reads, how it fills and scales the numeric ones,
/// and how it makes the pipeline's features of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    pub columns: Vec<String>,
    pub fill: Vec<f64>,
    pub offset: Vec<f64>,
    pub scale: Vec<f64>,
    /// Categorical columns, each with its fitted categories (a value's
    /// ordinal code is its index there).
    pub categorical: Vec<(String, Vec<String>)>,
    /// For each of the pipeline's features in order, its place among the
    /// numeric columns then the categorical ones.
    pub order: Vec<i64>,
}

/// The scaling step of a pipeline, if numeric imputation and scaling and
/// ordinal codes are all it does.
pub fn scaling(pipeline: &FittedPipeline) -> Result<Scaling, ExportError> {
    if !pipeline.crosses.is_empty() {
        return Err(ExportError::Step("crossed features"));
    }
    if pipeline.projection.is_some() {
        return Err(ExportError::Step("principal components"));
    }
    let mut out =
        Scaling { columns: vec![], fill: vec![], offset: vec![], scale: vec![], categorical: vec![], order: vec![] };
    // Features in order, as (is it categorical, its index among its kind).
    let mut features = Vec::new();
    for (column, transform) in pipeline.columns.iter().zip(&pipeline.transforms) {
        let refuse = |what| Err(ExportError::Column { column: column.clone(), what });
        match transform {
            ColumnTransform::Drop => {}
            ColumnTransform::Numeric { fill, offset, scale } => {
                features.push((false, out.columns.len()));
                out.columns.push(column.clone());
                out.fill.push(*fill);
                out.offset.push(*offset);
                out.scale.push(*scale);
            }
            ColumnTransform::Ordinal { categories } => {
                if categories.iter().any(String::is_empty) {
                    return refuse("categorical with an empty category, which the graph reads as missing");
                }
                features.push((true, out.categorical.len()));
                out.categorical.push((column.clone(), categories.clone()));
            }
            ColumnTransform::OneHot { .. } => return refuse("one-hot encoded (categorical)"),
            ColumnTransform::Tfidf { .. } => return refuse("text (hashed TF-IDF)"),
            ColumnTransform::Binned { .. } => return refuse("binned into quantile indicators"),
        }
    }
    let numeric = out.columns.len();
    out.order =
        features.into_iter().map(|(categorical, i)| (i + if categorical { numeric } else { 0 }) as i64).collect();
    Ok(out)
}

/// The model's ONNX bytes; `extra` adds metadata (model name, version).
pub fn write(model: &Model, extra: &[(&str, String)]) -> Result<Vec<u8>, ExportError> {
    model.validate()?;
    let scaling = scaling(&model.pipeline)?;
    let weights = model.member_weights()?;
    let pipeline = &model.pipeline;
    let k = scaling.columns.len() as i64;
    let mut graph = Graph::default();

    graph.initializer(tensor_f64("fill", &[k], &scaling.fill));
    graph.initializer(tensor_f64("offset", &[k], &scaling.offset));
    graph.initializer(tensor_f64("scale", &[k], &scaling.scale));
    graph.node("IsNaN", &["input"], "missing", vec![]);
    graph.node("Where", &["missing", "fill", "input"], "filled", vec![]);
    graph.node("Sub", &["filled", "offset"], "centered", vec![]);
    graph.node("Mul", &["centered", "scale"], "scaled", vec![]);
    let has_categories = !scaling.categorical.is_empty();
    if has_categories {
        ordinal_codes(&mut graph, &scaling);
        graph.node("Cast", &["ordered"], "features", vec![attr_int("to", FLOAT)]);
    } else {
        graph.node("Cast", &["scaled"], "features", vec![attr_int("to", FLOAT)]);
    }

    let classify = pipeline.task == Task::Classification;
    let has_trees = model.members.iter().any(|p| matches!(p, Part::Trees(_)));
    if has_trees {
        // Trees compare the mesh's f32 features; widened they stay exact.
        graph.node("Cast", &["features"], "features64", vec![attr_int("to", DOUBLE)]);
    }
    let uses_ml = has_trees || has_categories;
    let mut answers = Vec::new();
    for (m, part) in model.members.iter().enumerate() {
        answers.push(match part {
            Part::Network(net) => network(&mut graph, m, net, classify),
            Part::Trees(gbdt) => {
                boosted(&mut graph, m, gbdt).map_err(|reason| ExportError::Trees { member: m, reason })?
            }
        });
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
    graph_message = graph_message.message(11, value_info("input", DOUBLE, &[Dim::Rows, Dim::Fixed(k)]));
    if has_categories {
        let c = scaling.categorical.len() as i64;
        graph_message = graph_message.message(11, value_info("categories", STRING, &[Dim::Rows, Dim::Fixed(c)]));
    }
    graph_message = graph_message.message(12, output);

    let json = |v: &[String]| serde_json::to_string(v).expect("strings serialize");
    let mut metadata = vec![
        ("format", FORMAT.to_owned()),
        ("task", pipeline.task.to_string()),
        ("columns", json(&scaling.columns)),
        ("classes", json(&pipeline.classes)),
    ];
    if has_categories {
        let names: Vec<String> = scaling.categorical.iter().map(|(name, _)| name.clone()).collect();
        metadata.push(("categorical_columns", json(&names)));
    }
    metadata.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    let mut model = Message::new()
        .int(1, if uses_ml { ML_IR_VERSION } else { IR_VERSION })
        .string(2, "mass")
        .string(3, env!("CARGO_PKG_VERSION"))
        .message(7, graph_message)
        .message(8, Message::new().string(1, "").int(2, OPSET));
    if uses_ml {
        model = model.message(8, Message::new().string(1, ML_DOMAIN).int(2, ML_OPSET));
    }
    for (key, value) in metadata {
        model = model.message(14, Message::new().string(1, key).string(2, &value));
    }
    Ok(model.into_bytes())
}

/// `ordered`, float64: the `scaled` numeric columns and each categorical
/// column's ordinal codes, in the pipeline's order of features.
fn ordinal_codes(graph: &mut Graph, scaling: &Scaling) {
    let mut parts = vec!["scaled".to_owned()];
    for (j, (_, categories)) in scaling.categorical.iter().enumerate() {
        let (at, cells, codes) = (format!("cat{j}.at"), format!("cat{j}.cells"), format!("cat{j}.codes"));
        graph.initializer(tensor_i64(&at, &[1], &[j as i64]));
        graph.node("Gather", &["categories", &at], &cells, vec![attr_int("axis", 1)]);
        // A category's index; "" (missing) is NaN; anything else unseen, -1.
        let mut keys: Vec<&str> = categories.iter().map(String::as_str).collect();
        keys.push("");
        let mut values: Vec<f32> = (0..categories.len()).map(|i| i as f32).collect();
        values.push(f32::NAN);
        let attributes = vec![
            attr_strings("keys_strings", &keys),
            attr_floats("values_floats", &values),
            attr_float("default_float", -1.0),
        ];
        graph.node_in(ML_DOMAIN, "LabelEncoder", &[&cells], &codes, attributes);
        let wide = format!("cat{j}.codes64");
        graph.node("Cast", &[&codes], &wide, vec![attr_int("to", DOUBLE)]);
        parts.push(wide);
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    graph.node("Concat", &refs, "columns", vec![attr_int("axis", 1)]);
    graph.initializer(tensor_i64("order", &[scaling.order.len() as i64], &scaling.order));
    graph.node("Gather", &["columns", "order"], "ordered", vec![attr_int("axis", 1)]);
}

/// Member `m`, a network, from `features`; returns its output's name.
fn network(graph: &mut Graph, m: usize, member: &Mlp, classify: bool) -> String {
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
    h
}

/// Member `m`, boosted trees, from `features64`: float32 values (a
/// regressor) or class probabilities, as `Gbdt::predict` gives them.
fn boosted(graph: &mut Graph, m: usize, gbdt: &Gbdt) -> Result<String, String> {
    let e = trees::ensemble(gbdt)?;
    let (sums, scores) = (format!("m{m}.sums"), format!("m{m}.scores"));
    let doubles = |values: &[f64]| tensor_f64("", &[values.len() as i64], values);
    let mut attributes = vec![
        attr_int("aggregate_function", 1), // SUM
        attr_tensor("leaf_weights", doubles(&e.leaf_weights)),
        attr_ints("leaf_targetids", &e.leaf_targetids),
        attr_int("n_targets", e.n_targets),
        attr_ints("nodes_falseleafs", &e.nodes_falseleafs),
        attr_ints("nodes_falsenodeids", &e.nodes_falsenodeids),
        attr_ints("nodes_featureids", &e.nodes_featureids),
        attr_ints("nodes_missing_value_tracks_true", &e.nodes_missing_value_tracks_true),
        attr_tensor("nodes_modes", tensor_u8(&e.nodes_modes)),
        attr_tensor("nodes_splits", doubles(&e.nodes_splits)),
        attr_ints("nodes_trueleafs", &e.nodes_trueleafs),
        attr_ints("nodes_truenodeids", &e.nodes_truenodeids),
        attr_int("post_transform", 0), // NONE
        attr_ints("tree_roots", &e.tree_roots),
    ];
    if !e.membership_values.is_empty() {
        attributes.push(attr_tensor("membership_values", doubles(&e.membership_values)));
    }
    graph.node_in(ML_DOMAIN, "TreeEnsemble", &["features64"], &sums, attributes);
    // The operator has no starting scores: they are added after it, as
    // the older `TreeEnsembleRegressor` added its base values.
    let (base, started) = (format!("m{m}.base"), format!("m{m}.started"));
    graph.initializer(tensor_f64(&base, &[e.base_values.len() as i64], &e.base_values));
    graph.node("Add", &[&sums, &base], &started, vec![]);
    graph.node("Cast", &[&started], &scores, vec![attr_int("to", FLOAT)]);
    // The scores are rounded to float32, as `Gbdt::predict` rounds its
    // values; probabilities are computed from them in float64, as the
    // mesh computes them from its scores.
    let (s64, out64, out) = (format!("m{m}.scores64"), format!("m{m}.p64"), format!("m{m}.p"));
    match gbdt.objective {
        Objective::Squared => return Ok(scores),
        Objective::Logistic => {
            let (p1, p0, one) = (format!("m{m}.p1"), format!("m{m}.p0"), format!("m{m}.one"));
            graph.initializer(tensor_f64(&one, &[], &[1.0]));
            graph.node("Cast", &[&scores], &s64, vec![attr_int("to", DOUBLE)]);
            graph.node("Sigmoid", &[&s64], &p1, vec![]);
            graph.node("Sub", &[&one, &p1], &p0, vec![]);
            graph.node("Concat", &[&p0, &p1], &out64, vec![attr_int("axis", 1)]);
        }
        Objective::Softmax { .. } => {
            graph.node("Cast", &[&scores], &s64, vec![attr_int("to", DOUBLE)]);
            graph.node("Softmax", &[&s64], &out64, vec![attr_int("axis", 1)]);
        }
    }
    graph.node("Cast", &[&out64], &out, vec![attr_int("to", FLOAT)]);
    Ok(out)
}

/// Nodes and initializers in the order they are added.
#[derive(Default)]
struct Graph {
    nodes: Vec<Message>,
    initializers: Vec<Message>,
}

impl Graph {
    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attributes: Vec<Message>) {
        self.node_in("", op, inputs, output, attributes);
    }

    /// A node of an operator from `domain` ("": the default ONNX domain).
    fn node_in(&mut self, domain: &str, op: &str, inputs: &[&str], output: &str, attributes: Vec<Message>) {
        let mut node = Message::new();
        for input in inputs {
            node = node.string(1, input);
        }
        node = node.string(2, output).string(3, output).string(4, op);
        for attribute in attributes {
            node = node.message(5, attribute);
        }
        if !domain.is_empty() {
            node = node.string(7, domain);
        }
        self.nodes.push(node);
    }

    fn initializer(&mut self, tensor: Message) {
        self.initializers.push(tensor);
    }
}

/// `AttributeProto.AttributeType` values.
const ATTR_FLOAT: i64 = 1;
const ATTR_INT: i64 = 2;
const ATTR_TENSOR: i64 = 4;
const ATTR_FLOATS: i64 = 6;
const ATTR_INTS: i64 = 7;
const ATTR_STRINGS: i64 = 8;

/// An `INT` attribute.
fn attr_int(name: &str, value: i64) -> Message {
    Message::new().string(1, name).int(3, value).int(20, ATTR_INT)
}

fn attr_ints(name: &str, values: &[i64]) -> Message {
    Message::new().string(1, name).packed_ints(8, values).int(20, ATTR_INTS)
}

fn attr_float(name: &str, value: f32) -> Message {
    Message::new().string(1, name).float(2, value).int(20, ATTR_FLOAT)
}

fn attr_floats(name: &str, values: &[f32]) -> Message {
    Message::new().string(1, name).packed_floats(7, values).int(20, ATTR_FLOATS)
}

fn attr_strings(name: &str, values: &[&str]) -> Message {
    let mut attr = Message::new().string(1, name);
    for value in values {
        attr = attr.string(9, value);
    }
    attr.int(20, ATTR_STRINGS)
}

fn attr_tensor(name: &str, tensor: Message) -> Message {
    Message::new().string(1, name).message(5, tensor).int(20, ATTR_TENSOR)
}

fn tensor_f32<'a>(name: &str, dims: &[i64], values: impl Iterator<Item = &'a f32>) -> Message {
    let raw: Vec<u8> = values.flat_map(|v| v.to_le_bytes()).collect();
    Message::new().packed_ints(1, dims).int(2, FLOAT).string(8, name).bytes(9, &raw)
}

fn tensor_i64(name: &str, dims: &[i64], values: &[i64]) -> Message {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Message::new().packed_ints(1, dims).int(2, INT64).string(8, name).bytes(9, &raw)
}

/// An unnamed uint8 vector (the tree operator's node modes).
fn tensor_u8(values: &[u8]) -> Message {
    Message::new().packed_ints(1, &[values.len() as i64]).int(2, UINT8).bytes(9, values)
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
    use mass_protocol::{
        features::{Cross, TextSpec},
        jobs::Combine,
    };

    use super::*;
    use crate::formats::{
        Networks,
        fixtures::{classifier, gbdt, pipeline, regressor},
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
        let model = write(&classifier(1).into(), &[("model", "m".into())]).unwrap();
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
        assert_eq!(ops(&write(&classifier(3).into(), &[]).unwrap()).iter().filter(|o| *o == "Mul").count(), 1 + 3);
        assert!(ops(&write(&classifier(3).into(), &[]).unwrap()).contains(&"Sum".to_owned()));
        let model = write(&regressor().into(), &[]).unwrap();
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
        let err = write(&onehot.into(), &[]).unwrap_err().to_string();
        assert_eq!(
            err,
            "ONNX export reads numeric columns (imputed and scaled) and categorical ones (as ordinal codes); \
             column 'x1' is one-hot encoded (categorical)"
        );
        let mut text = classifier(1);
        text.pipeline.transforms[0] = ColumnTransform::Tfidf {
            spec: TextSpec { buckets: 4, ngram_max: 1, min_df: 1, sublinear_tf: false },
            idf: Default::default(),
        };
        assert!(write(&text.into(), &[]).unwrap_err().to_string().contains("column 'x0' is text"));
        let mut crossed = classifier(1);
        crossed.pipeline.crosses = vec![Cross::Product { a: 0, b: 1 }];
        crossed.pipeline.features += 1;
        crossed.members[0].weights[0] = ndarray::Array2::zeros((5, 6));
        assert!(write(&crossed.into(), &[]).unwrap_err().to_string().contains("crossed features"));
    }

    fn trees(task: Task, classes: usize, objective: Objective, members: usize) -> Model {
        Model {
            pipeline: pipeline(4, classes, task),
            members: (0..members).map(|m| Part::Trees(gbdt(4, objective, 3, m as u64))).collect(),
            combine: Combine::Mean,
        }
    }

    /// The tree node's attribute `name`.
    fn attribute(model: &[u8], name: &str) -> Vec<u8> {
        let graph = one(model, 7);
        let node = all(graph.bytes(), 1).into_iter().find(|n| one(n.bytes(), 4).text() == "TreeEnsemble");
        let node = node.expect("a tree node");
        assert_eq!(one(node.bytes(), 7).text(), "ai.onnx.ml");
        all(node.bytes(), 5)
            .into_iter()
            .find(|a| one(a.bytes(), 1).text() == name)
            .unwrap_or_else(|| panic!("no attribute {name}"))
            .bytes()
            .to_vec()
    }

    fn doubles(tensor: &[u8]) -> Vec<f64> {
        assert_eq!(one(tensor, 2).int(), DOUBLE);
        one(tensor, 9).bytes().chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
    }

    #[test]
    fn a_tree_regressor_is_one_ensemble_over_double_features_then_the_label_scale() {
        let model = trees(Task::Regression, 0, Objective::Squared, 1);
        let bytes = write(&model, &[]).unwrap();
        assert_eq!(
            ops(&bytes),
            ["IsNaN", "Where", "Sub", "Mul", "Cast", "Cast", "TreeEnsemble", "Add", "Cast", "Cast", "Mul", "Add"]
        );
        assert_eq!(one(&bytes, 1).int(), ML_IR_VERSION);
        let opsets: Vec<(String, i64)> =
            all(&bytes, 8).iter().map(|o| (all(o.bytes(), 1)[0].text().to_owned(), one(o.bytes(), 2).int())).collect();
        assert_eq!(opsets, [("".to_owned(), OPSET), ("ai.onnx.ml".to_owned(), ML_OPSET)]);

        let Part::Trees(g) = &model.members[0] else { unreachable!() };
        let e = trees::ensemble(g).unwrap();
        assert_eq!(doubles(one(&attribute(&bytes, "nodes_splits"), 5).bytes()), e.nodes_splits);
        assert_eq!(doubles(one(&attribute(&bytes, "leaf_weights"), 5).bytes()), e.leaf_weights);
        assert_eq!(packed(one(&attribute(&bytes, "nodes_truenodeids"), 8).bytes()), e.nodes_truenodeids);
        assert_eq!(packed(one(&attribute(&bytes, "tree_roots"), 8).bytes()), e.tree_roots);
        assert_eq!(one(&attribute(&bytes, "n_targets"), 3).int(), 1);
        let modes = attribute(&bytes, "nodes_modes");
        assert_eq!(one(one(&modes, 5).bytes(), 9).bytes(), e.nodes_modes, "uint8 modes");
        assert_eq!(e.nodes_modes.len(), 3 * 2, "two branches in each of 3 trees");
        assert_eq!(one(&attribute(&bytes, "post_transform"), 3).int(), 0);
        let graph = one(&bytes, 7);
        let base = all(graph.bytes(), 5).into_iter().find(|t| one(t.bytes(), 8).text() == "m0.base").unwrap();
        assert_eq!(doubles(base.bytes()), g.init, "the starting scores, added after the operator");
    }

    #[test]
    fn tree_classifiers_apply_their_objective_in_double() {
        let binary = write(&trees(Task::Classification, 2, Objective::Logistic, 1), &[]).unwrap();
        assert_eq!(
            ops(&binary)[5..],
            ["Cast", "TreeEnsemble", "Add", "Cast", "Cast", "Sigmoid", "Sub", "Concat", "Cast", "Identity"]
        );
        assert_eq!(one(&attribute(&binary, "n_targets"), 3).int(), 1);
        let multi = write(&trees(Task::Classification, 3, Objective::Softmax { classes: 3 }, 2), &[]).unwrap();
        assert_eq!(
            ops(&multi)[5..],
            [
                "Cast",
                "TreeEnsemble",
                "Add",
                "Cast",
                "Cast",
                "Softmax",
                "Cast",
                "TreeEnsemble",
                "Add",
                "Cast",
                "Cast",
                "Softmax",
                "Cast",
                "Mul",
                "Mul",
                "Sum",
                "Identity"
            ]
        );
        assert_eq!(one(&attribute(&multi, "n_targets"), 3).int(), 3);
        // Trees for the wrong number of classes are refused before writing.
        let err = write(&trees(Task::Classification, 4, Objective::Softmax { classes: 3 }, 1), &[]).unwrap_err();
        assert_eq!(err.to_string(), "member 0: the trees give 3 outputs, not 4");
    }

    #[test]
    fn networks_and_trees_combine_and_networks_alone_keep_ir_7() {
        let Networks { pipeline, members, .. } = classifier(1);
        let mut mixed = Model {
            pipeline,
            members: vec![
                Part::Network(members[0].clone()),
                Part::Trees(gbdt(4, Objective::Softmax { classes: 3 }, 2, 9)),
            ],
            combine: Combine::WeightedMean(vec![1.0, 3.0]),
        };
        let bytes = write(&mixed, &[]).unwrap();
        let ops = ops(&bytes);
        assert_eq!(ops.iter().filter(|o| *o == "TreeEnsemble").count(), 1);
        assert_eq!(ops.iter().filter(|o| *o == "Gemm").count(), 2);
        assert!(ops.ends_with(&["Mul".into(), "Mul".into(), "Sum".into(), "Identity".into()]), "{ops:?}");
        assert_eq!(one(&bytes, 1).int(), ML_IR_VERSION);
        assert_eq!(one(&write(&classifier(1).into(), &[]).unwrap(), 1).int(), IR_VERSION);
        assert_eq!(all(&write(&classifier(1).into(), &[]).unwrap(), 8).len(), 1, "no ai.onnx.ml import");

        mixed.combine = Combine::Stacked;
        assert!(write(&mixed, &[]).unwrap_err().to_string().contains("a stacked ensemble"));
    }

    #[test]
    fn categorical_columns_are_read_as_strings_and_become_ordinal_codes_in_place() {
        let mut model = trees(Task::Classification, 3, Objective::Softmax { classes: 3 }, 1);
        // Column x2 (feature 2) is categorical; its trees split it by a set.
        model.pipeline.transforms[3] = ColumnTransform::Ordinal { categories: vec!["a".into(), "b".into()] };
        let Part::Trees(g) = &mut model.members[0] else { unreachable!() };
        g.bins[2] = crate::models::gbdt::bins::FeatureBins::Categorical { bin_of: vec![1, 2], other: 3 };
        g.trees[0].nodes[0] = crate::models::gbdt::tree::Node::Split {
            split: crate::models::gbdt::split::Split {
                feature: 2,
                rule: crate::models::gbdt::split::Rule::In([0b100, 0, 0, 0]),
                default_left: false,
            },
            left: 1,
            right: 2,
        };
        let bytes = write(&model, &[]).unwrap();
        assert_eq!(
            ops(&bytes)[..10],
            ["IsNaN", "Where", "Sub", "Mul", "Gather", "LabelEncoder", "Cast", "Concat", "Gather", "Cast"]
        );
        assert_eq!(metadata(&bytes, "columns"), r#"["x0","x1","x3"]"#);
        assert_eq!(metadata(&bytes, "categorical_columns"), r#"["x2"]"#);
        let graph = one(&bytes, 7);
        let inputs: Vec<String> = all(graph.bytes(), 11).iter().map(|i| one(i.bytes(), 1).text().to_owned()).collect();
        assert_eq!(inputs, ["input", "categories"]);
        let inits = all(graph.bytes(), 5);
        let order = inits.iter().find(|t| one(t.bytes(), 8).text() == "order").unwrap();
        let order: Vec<i64> =
            one(order.bytes(), 9).bytes().chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(order, [0, 1, 3, 2], "x0, x1, then x2's codes, then x3");
        // Bin 2 (category "b", code 1) goes left: the set is {1}.
        assert_eq!(doubles(one(&attribute(&bytes, "membership_values"), 5).bytes())[0], 1.0);
        assert_eq!(one(&bytes, 1).int(), ML_IR_VERSION);

        // A network reads the codes too, and the graph then imports ai.onnx.ml.
        let mut net = classifier(1);
        net.pipeline.transforms[3] = ColumnTransform::Ordinal { categories: vec!["a".into()] };
        let bytes = write(&net.into(), &[]).unwrap();
        assert!(ops(&bytes).contains(&"LabelEncoder".to_owned()));
        assert_eq!(all(&bytes, 8).len(), 2);
        // An empty category would read as missing: refused by name.
        let mut empty = classifier(1);
        empty.pipeline.transforms[3] = ColumnTransform::Ordinal { categories: vec!["".into()] };
        assert!(
            write(&empty.into(), &[]).unwrap_err().to_string().contains("column 'x2' is categorical with an empty")
        );
    }
}
