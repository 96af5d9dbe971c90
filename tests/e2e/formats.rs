//! Standard formats (issue 14): models exported as safetensors and ONNX
//! answer in numpy and onnxruntime as on the mesh; exported weights
//! imported back predict identically; weights trained elsewhere come in
//! with a pipeline spec; bad exports and imports are refused by name and
//! register nothing.

use std::{path::PathBuf, time::Duration};

use mass_protocol::{
    jobs::{EnsembleSpec, JobSpec, Learner, ModelSpec, Task, TreeSpec},
    serving::{CompressRequest, ExportFormat, ImportModel, Predicted},
};
use mass_sdk::{Client, IngestRequest, local::LocalNode};
use serde_json::{Value, json};

use crate::support::{Cluster, finished, mass, mesh, python, shards_settled};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data").join(name)
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Two nodes holding `sets` (of `tests/data`).
async fn small_sets(sets: &[&str]) -> (Cluster, Vec<LocalNode>, Client) {
    let mut cluster = Cluster::new();
    let nodes = mesh(&mut cluster, 2).await;
    let client = Client::new([nodes[0].http_url()]).unwrap();
    for &name in sets {
        let request = IngestRequest {
            name: name.into(),
            label: "label".into(),
            shard_rows: Some(50),
            test_rows: Some(data(&format!("{name}.test_rows.txt"))),
            ..Default::default()
        };
        client.ingest_csv(&data(&format!("{name}.csv")), &request).await.unwrap();
        shards_settled(&client, name, Duration::from_secs(30)).await;
    }
    (cluster, nodes, client)
}

async fn train(client: &Client, model: &str, dataset: &str, learner: Learner, ensemble: EnsembleSpec) {
    let spec = JobSpec {
        model: model.into(),
        dataset: dataset.into(),
        pipeline: Default::default(),
        spec: ModelSpec { epochs: Some(30), ..ModelSpec::of(learner) },
        ensemble,
        seed: 3,
        task: (dataset == "diabetes").then_some(Task::Regression),
        placement: Default::default(),
        trial: None,
        cv: None,
    };
    let id = client.submit_job(&spec).await.unwrap_or_else(|e| panic!("{model}: {e}"));
    finished(client, &id.to_string(), Duration::from_secs(300)).await;
}

/// Every row of a CSV of numeric columns, label (last) left out, then
/// copies of its first rows with values missing: one column each (every
/// column in turn), and one row with none left.
fn rows(file: &str) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(data(file)).unwrap();
    let mut rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|line| {
            let mut cells: Vec<f64> = line.split(',').map(|c| c.parse().unwrap_or(f64::NAN)).collect();
            cells.pop();
            cells
        })
        .collect();
    let columns = rows[0].len();
    let mut holes: Vec<Vec<f64>> = (0..2 * columns)
        .map(|i| {
            let mut row = rows[i].clone();
            row[i % columns] = f64::NAN;
            row
        })
        .collect();
    holes.push(vec![f64::NAN; columns]);
    rows.extend(holes);
    rows
}

/// The mesh's answers: class probabilities, or `[value]` per row (NaN:
/// missing, for the pipeline to impute or the trees to route).
async fn answers(client: &Client, model: &str, rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let p = client.predict_matrix(model, rows, true).await.unwrap_or_else(|e| panic!("{model}: {e}"));
    if p.probabilities.is_empty() {
        p.predictions
            .iter()
            .map(|v| match v {
                Predicted::Value(v) => vec![*v],
                other => panic!("{model}: {other:?}"),
            })
            .collect()
    } else {
        p.probabilities.iter().map(|r| r.iter().map(|v| f64::from(*v)).collect()).collect()
    }
}

/// A made-up shop table: numeric `x` and `y`, categorical `color` and
/// `size`, some cells missing, and a label that mostly follows a set of
/// colors (so trees split `color` by a set of categories).
fn shop_csv() -> String {
    use std::fmt::Write;
    let colors = ["red", "green", "blue", "amber", "violet", "teal", "grey", "pink"];
    let sizes = ["S", "M", "L", "XL"];
    let mut state = 7u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut out = String::from("x,color,size,y,label\n");
    for i in 0..600 {
        let (x, color, size, y) = (next() % 100, colors[next() % 8], sizes[next() % 4], next() % 50);
        let warm = matches!(color, "red" | "amber" | "pink" | "violet");
        let label = match (warm && size != "S", x > 60, next() % 10) {
            (_, _, 0) => "skip",
            (true, _, _) => "buy",
            (false, true, _) => "maybe",
            _ => "skip",
        };
        let color = if i % 37 == 0 { "" } else { color };
        let x = if i % 41 == 0 { String::new() } else { x.to_string() };
        writeln!(out, "{x},{color},{size},{y},{label}").unwrap();
    }
    out
}

/// The shop table's rows as (numeric cells x, y; categories color, size;
/// "" missing), label left out, then rows with unseen and missing
/// categories and a missing x.
fn shop_rows(csv: &str) -> Vec<(Vec<f64>, Vec<String>)> {
    let mut rows: Vec<(Vec<f64>, Vec<String>)> = csv
        .lines()
        .skip(1)
        .map(|line| {
            let c: Vec<&str> = line.split(',').collect();
            let number = |s: &str| s.parse().unwrap_or(f64::NAN);
            (vec![number(c[0]), number(c[3])], vec![c[1].to_owned(), c[2].to_owned()])
        })
        .collect();
    for (color, size) in [("ultraviolet", "M"), ("red", "XXL"), ("", ""), ("ultraviolet", ""), ("pink", "L")] {
        for x in [f64::NAN, 70.0, 10.0] {
            rows.push((vec![x, 3.0], vec![color.into(), size.into()]));
        }
    }
    rows
}

/// The mesh's class probabilities for the shop rows (JSON rows in schema
/// order, null where missing).
async fn shop_answers(url: &str, model: &str, rows: &[(Vec<f64>, Vec<String>)]) -> Vec<Vec<f64>> {
    let cell = |v: f64| if v.is_nan() { Value::Null } else { json!(v) };
    let category = |c: &String| if c.is_empty() { Value::Null } else { json!(c) };
    let body: Vec<Value> =
        rows.iter().map(|(n, c)| json!([cell(n[0]), category(&c[0]), category(&c[1]), cell(n[1])])).collect();
    let response = crate::support::http()
        .post(format!("{url}/v1/models/{model}/predict"))
        .json(&json!({"rows": body, "allow_missing": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    serde_json::from_value(answer["probabilities"].clone()).unwrap()
}

fn cli(args: &[&str]) -> String {
    let (ok, stdout, stderr) = mass(args);
    assert!(ok, "mass {}: {stderr}", args.join(" "));
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn exported_models_answer_in_numpy_and_onnxruntime_as_on_the_mesh_and_round_trip() {
    let python = python();
    let (_cluster, nodes, client) = small_sets(&["iris", "diabetes", "breast_cancer"]).await;
    let url = nodes[0].http_url().to_owned();
    train(&client, "iris-mlp", "iris", Learner::Mlp { hidden: vec![16, 8] }, EnsembleSpec::Single).await;
    train(&client, "iris-bag", "iris", Learner::Mlp { hidden: vec![8] }, EnsembleSpec::Bagging { members: 3 }).await;
    train(&client, "iris-linear", "iris", Learner::Linear, EnsembleSpec::Single).await;
    train(&client, "diabetes-mlp", "diabetes", Learner::Mlp { hidden: vec![8] }, EnsembleSpec::Single).await;
    // Trees (ONNX only): multiclass, binary, regression, and regressors
    // boosted one after another (a weighted sum of tree models).
    let trees = |n| Learner::Gbdt(TreeSpec { trees: n, ..TreeSpec::default() });
    train(&client, "iris-trees", "iris", trees(20), EnsembleSpec::Single).await;
    train(&client, "cancer-trees", "breast_cancer", trees(30), EnsembleSpec::Single).await;
    train(&client, "diabetes-trees", "diabetes", trees(40), EnsembleSpec::Single).await;
    train(&client, "diabetes-boosted-trees", "diabetes", trees(15), EnsembleSpec::Boosting { members: 2 }).await;

    let dir = tempfile::tempdir().unwrap();
    // Weights trained elsewhere: no metadata, a pipeline spec fitted on
    // the dataset's training rows, the activation given.
    let foreign = dir.path().join("foreign.safetensors");
    let w0: Vec<f32> = (0..4 * 5).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
    let w1: Vec<f32> = (0..5 * 3).map(|i| ((i * 5 % 13) as f32 - 6.0) / 6.0).collect();
    let file = safetensors_file(&[
        ("layers.0.weight", &[4, 5], &w0),
        ("layers.0.bias", &[5], &[0.1; 5]),
        ("layers.1.weight", &[5, 3], &w1),
        ("layers.1.bias", &[3], &[0.0; 3]),
    ]);
    std::fs::write(&foreign, file).unwrap();
    let out = cli(&[
        "models",
        "import",
        foreign.to_str().unwrap(),
        "--name",
        "iris-foreign",
        "--dataset",
        "iris",
        "--pipeline",
        r#"{"scale": "min_max"}"#,
        "--activation",
        "tanh",
        "--node",
        &url,
    ]);
    assert!(out.contains("model/iris-foreign version 1"), "{out}");
    let view = client.model("iris-foreign").await.unwrap();
    assert_eq!(view.manifest.spec.spec.learner, Learner::Mlp { hidden: vec![5] });
    let p = client.predict("iris-foreign", &[json!([5.1, 3.5, 1.4, 0.2])]).await.unwrap();
    assert_eq!(p.probabilities[0].len(), 3);
    // Its exports carry the fitted min-max scaling (checked below).

    let mut cases = Vec::new();
    for (model, file) in [
        ("iris-mlp", "iris.csv"),
        ("iris-bag", "iris.csv"),
        ("iris-linear", "iris.csv"),
        ("iris-foreign", "iris.csv"),
        ("diabetes-mlp", "diabetes.csv"),
        ("iris-trees", "iris.csv"),
        ("cancer-trees", "breast_cancer.csv"),
        ("diabetes-trees", "diabetes.csv"),
        ("diabetes-boosted-trees", "diabetes.csv"),
    ] {
        let rows = rows(file);
        let is_trees = model.contains("trees");
        let mut paths = vec![String::new()];
        for format in if is_trees { &["onnx"][..] } else { &["safetensors", "onnx"] } {
            let path = dir.path().join(format!("{model}.{format}"));
            let out = cli(&[
                "models",
                "export",
                model,
                "--format",
                format,
                "--output",
                path.to_str().unwrap(),
                "--node",
                &url,
            ]);
            assert!(out.contains(&format!("model/{model} v1 written as {format}")), "{out}");
            paths.push(path.to_str().unwrap().to_owned());
        }
        if is_trees {
            // Trees have no weight tensors: safetensors refuses them by name.
            let (ok, _, stderr) =
                mass(&["models", "export", model, "--format", "safetensors", "--output", "/dev/null", "--node", &url]);
            assert!(!ok && stderr.contains("member 0 is gradient-boosted trees, which safetensors"), "{stderr}");
        } else {
            paths.remove(0);
        }
        let expected = answers(&client, model, &rows).await;
        assert!(expected.iter().all(|row| row.iter().all(|v| v.is_finite())), "{model}: {expected:?}");
        cases.push(json!({
            "model": model, "safetensors": paths[0], "onnx": paths[1],
            "rows": rows, "expected": expected, "tolerance": 1e-5,
            // Values in the label's units: within 1e-5 of their size.
            "relative": file == "diabetes.csv",
        }));
    }
    // Trees over categorical columns: the file reads them as strings.
    let shop = dir.path().join("shop.csv");
    let csv = shop_csv();
    std::fs::write(&shop, &csv).unwrap();
    let request = IngestRequest {
        name: "shop".into(),
        label: "label".into(),
        shard_rows: Some(200),
        test: Some(0.2),
        ..Default::default()
    };
    client.ingest_csv(&shop, &request).await.unwrap();
    shards_settled(&client, "shop", Duration::from_secs(30)).await;
    train(&client, "shop-trees", "shop", trees(30), EnsembleSpec::Single).await;
    let path = dir.path().join("shop-trees.onnx");
    let out = cli(&[
        "models",
        "export",
        "shop-trees",
        "--format",
        "onnx",
        "--output",
        path.to_str().unwrap(),
        "--node",
        &url,
    ]);
    assert!(out.contains("model/shop-trees v1 written as onnx"), "{out}");
    let file = std::fs::read(&path).unwrap();
    assert!(file.windows(17).any(|w| w == b"membership_values"), "the trees split color by a set");
    let shop_rows = shop_rows(&csv);
    let expected = shop_answers(&url, "shop-trees", &shop_rows).await;
    assert!(expected.iter().all(|row| row.iter().all(|v| v.is_finite())), "{expected:?}");
    let (numbers, categories): (Vec<_>, Vec<_>) = shop_rows.iter().cloned().unzip();
    cases.push(json!({
        "model": "shop-trees", "onnx": path, "rows": numbers, "categories": categories,
        "expected": expected, "tolerance": 1e-5,
    }));
    // The trees distilled into a network: the student reads a pipeline of
    // its own (imputed, scaled, one-hot), fitted for it; on the trees' raw
    // features it would see missing values and unscaled numbers.
    let teacher = client.model("shop-trees").await.unwrap().manifest;
    let distill = CompressRequest { distill: Some("mlp:16".into()), ..Default::default() };
    let made = client.compress("shop-trees", &distill).await.unwrap_or_else(|e| panic!("distilling trees: {e}"));
    let student = client.model_version("shop-trees", &made.manifest.to_string()).await.unwrap();
    assert_ne!(student.pipeline, teacher.pipeline, "the student's own pipeline");
    let (taught, learned) = (teacher.evaluation.score(), student.evaluation.score());
    eprintln!("shop: trees {taught:.4}, student mlp:16 {learned:.4}");
    assert!(learned >= taught - 0.1, "the student {learned} is far below its teacher {taught}");
    let served = shop_answers(&url, "shop-trees", &shop_rows).await;
    assert!(served.iter().all(|row| row.iter().all(|v| v.is_finite())), "the student serves every row");

    let cases_path = dir.path().join("cases.json");
    std::fs::write(&cases_path, serde_json::to_vec(&cases).unwrap()).unwrap();
    let output =
        std::process::Command::new(&python).arg(repo("tests/python/test_export.py")).arg(&cases_path).output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "tests/python/test_export.py failed:\n{report}");
    for checked in [
        "diabetes-mlp onnxruntime",
        "iris-foreign onnxruntime",
        "iris-trees onnxruntime",
        "cancer-trees onnxruntime",
        "diabetes-trees onnxruntime",
        "diabetes-boosted-trees onnxruntime",
        "shop-trees onnxruntime",
    ] {
        assert!(report.contains(checked), "{checked} missing from:\n{report}");
    }
    assert!(report.trim_end().ends_with("ok") && !report.contains("trees safetensors"), "{report}");
    eprintln!("{report}");

    // Round trip: the exported weights, imported back (the file's own
    // pipeline), predict identically, bit for bit.
    for model in ["iris-mlp", "iris-bag"] {
        let file = dir.path().join(format!("{model}.safetensors"));
        let copy = format!("{model}-imported");
        let out =
            cli(&["models", "import", file.to_str().unwrap(), "--name", &copy, "--dataset", "iris", "--node", &url]);
        assert!(out.contains(&format!("model/{copy} version 1")) && out.contains("accuracy"), "{out}");
        let rows = rows("iris.csv");
        assert_eq!(answers(&client, &copy, &rows).await, answers(&client, model, &rows).await, "{model}");
        let view = client.model(&copy).await.unwrap();
        assert_eq!(view.manifest.evaluation, client.model(model).await.unwrap().manifest.evaluation);
    }
}

/// A safetensors file of F32 tensors, written by hand as the format
/// describes (8-byte header length, JSON header, data), as a tool other
/// than Mass would.
fn safetensors_file(tensors: &[(&str, &[usize], &[f32])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(name.to_string(), json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}));
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    out
}

async fn http_error(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_exports_and_imports_are_refused_by_name_and_register_nothing() {
    let (_cluster, nodes, client) = small_sets(&["iris", "diabetes"]).await;
    let url = nodes[0].http_url().to_owned();
    train(&client, "iris-mlp", "iris", Learner::Mlp { hidden: vec![8] }, EnsembleSpec::Single).await;
    train(
        &client,
        "iris-trees",
        "iris",
        Learner::Gbdt(TreeSpec { trees: 5, ..TreeSpec::default() }),
        EnsembleSpec::Single,
    )
    .await;
    let http = crate::support::http();
    let get = |path: &str| http.get(format!("{url}{path}")).send();

    let (status, message) = http_error(get("/v1/models/nope/export?format=onnx").await.unwrap()).await;
    assert_eq!((status, message.as_str()), (404, "no model named 'nope'"));
    let (status, message) = http_error(get("/v1/models/iris-mlp/export?format=onnx&version=9").await.unwrap()).await;
    assert_eq!((status, message.as_str()), (404, "model 'iris-mlp' has no version 9 (versions 1 to 1)"));
    let (status, message) = http_error(get("/v1/models/iris-mlp/export?format=pmml").await.unwrap()).await;
    assert_eq!((status, message.as_str()), (400, "format 'pmml' is not one Mass exports (safetensors or onnx)"));
    let (status, message) = http_error(get("/v1/models/iris-trees/export?format=safetensors").await.unwrap()).await;
    assert_eq!(status, 422);
    assert_eq!(
        message,
        "model 'iris-trees' version 1: member 0 is gradient-boosted trees, which safetensors (a file of weight \
         tensors) does not carry; export it as onnx"
    );
    assert_eq!(get("/v1/models/iris-trees/export?format=onnx").await.unwrap().status().as_u16(), 200);
    let (ok, _, stderr) =
        mass(&["models", "export", "iris-mlp", "--format", "pmml", "--output", "/dev/null", "--node", &url]);
    assert!(!ok && stderr.contains("--format 'pmml' is not one Mass exports"), "{stderr}");

    let (good, _) = client.export_model("iris-mlp", None, ExportFormat::Safetensors).await.unwrap();
    let before = client.models().await.unwrap();
    let refs_before = client.refs().await.unwrap().len();
    let import = |bytes: Vec<u8>, dataset: &str| {
        let (client, dataset) = (&client, dataset.to_owned());
        async move {
            let blob = client.put_blob(bytes, false).await.unwrap();
            let request = ImportModel { blob: blob.id, dataset, pipeline: None, activation: None };
            client.import_model("bad", &request).await.unwrap_err().to_string()
        }
    };
    // Truncated.
    let err = import(good[..good.len() - 3].to_vec(), "iris").await;
    assert!(err.contains("422") && err.contains("not a readable safetensors file"), "{err}");
    // A tensor whose declared shape its bytes do not fill.
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&good[8..8 + header_len]).unwrap();
    let lying = header.replacen(r#""shape":[4,8]"#, r#""shape":[4,9]"#, 1);
    assert_ne!(lying, header, "the fixture's first layer is 4x8");
    let mut bad = good[..8].to_vec();
    bad.extend(lying.as_bytes());
    bad.extend(&good[8 + header_len..]);
    let err = import(bad, "iris").await;
    assert!(err.contains("tensor 'layers.0.weight' declares shape [4, 9]"), "{err}");
    // Layers that do not chain.
    let broken = safetensors_file(&[
        ("layers.0.weight", &[4, 5], &[0.0; 20]),
        ("layers.0.bias", &[5], &[0.0; 5]),
        ("layers.1.weight", &[6, 3], &[0.0; 18]),
        ("layers.1.bias", &[3], &[0.0; 3]),
    ]);
    let err = import(broken, "iris").await;
    assert!(err.contains("layers.1.weight takes 6 inputs, but layer 0 gives 5"), "{err}");
    // Iris weights read through diabetes' columns; unknown dataset.
    let err = import(good.clone(), "diabetes").await;
    assert!(
        err.contains("the pipeline reads columns sepal_length_cm") && err.contains("dataset 'diabetes' has age"),
        "{err}"
    );
    let err = import(good.clone(), "nowhere").await;
    assert!(err.contains("404") && err.contains("no dataset named 'nowhere'"), "{err}");
    // No pipeline anywhere.
    let bare = safetensors_file(&[("layers.0.weight", &[4, 3], &[0.0; 12]), ("layers.0.bias", &[3], &[0.0; 3])]);
    let err = import(bare.clone(), "iris").await;
    assert!(err.contains("no pipeline in its metadata"), "{err}");
    // Widths that do not fit the pipeline's features (the CLI's path).
    let wide =
        dir_file(&safetensors_file(&[("layers.0.weight", &[7, 3], &[0.0; 21]), ("layers.0.bias", &[3], &[0.0; 3])]));
    let (ok, _, stderr) = mass(&[
        "models",
        "import",
        wide.1.to_str().unwrap(),
        "--name",
        "bad",
        "--dataset",
        "iris",
        "--pipeline",
        "{}",
        "--node",
        &url,
    ]);
    assert!(!ok && stderr.contains("the first layer takes 7 inputs, but the pipeline makes 4 features"), "{stderr}");

    assert!(client.model("bad").await.unwrap_err().to_string().contains("no model named 'bad'"));
    assert_eq!(client.models().await.unwrap(), before, "a refused import registered a model");
    assert_eq!(client.refs().await.unwrap().len(), refs_before, "a refused import pinned or named something");
}

/// `bytes` in a temporary file (kept alive by the returned directory).
fn dir_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}
