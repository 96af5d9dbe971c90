//! Datasets: ingest real files into a mesh, validate, shard, split.

use std::{collections::BTreeMap, io::Read, path::PathBuf, time::Duration};

use mass_sdk::{Client, IngestRequest};

use crate::support::{Cluster, mesh};

fn shared(name: &str) -> PathBuf {
    crate::support::shared_dataset(name)
}

/// Label histogram of a CSV whose last column is the label, read directly.
fn label_histogram(path: &PathBuf) -> (u64, BTreeMap<String, u64>) {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut text).unwrap();
    let mut histogram = BTreeMap::new();
    let mut rows = 0;
    for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
        rows += 1;
        *histogram.entry(line.rsplit(',').next().unwrap().to_owned()).or_default() += 1;
    }
    (rows, histogram)
}

#[tokio::test(flavor = "multi_thread")]
async fn mnist_ingested_into_three_nodes_has_k_copies_of_every_shard_and_the_files_counts() {
    let mut cluster = Cluster::new();
    let mut nodes = mesh(&mut cluster, 3).await;
    let (c, b, a) = (nodes.pop().unwrap(), nodes.pop().unwrap(), nodes.pop().unwrap());

    let file = shared("mnist.csv.gz");
    let request = IngestRequest {
        name: "mnist".into(),
        label: "label".into(),
        shard_rows: Some(8000),
        test_rows: Some(shared("mnist.test_rows.txt")),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let view = Client::new([a.http_url()]).unwrap().ingest_csv(&file, &request).await.unwrap();
    eprintln!("MNIST ingested in {:?}: {} shards", started.elapsed(), view.manifest.shards.len());
    let (rows, histogram) = label_histogram(&file);
    assert_eq!(view.manifest.rows, rows);
    assert_eq!(view.manifest.label_histogram(), &histogram);
    assert_eq!(view.manifest.split_rows, [56_000, 0, 14_000]);
    assert_eq!(view.manifest.shards.len(), 9);

    for node in [&a, &b, &c] {
        let client = Client::new([node.http_url()]).unwrap();
        let seen = client.dataset("mnist").await.unwrap();
        assert_eq!(seen.manifest_id, view.manifest_id, "every node reads the same manifest");
    }
    let reader = Client::new([c.http_url()]).unwrap();
    let took = crate::support::shards_settled(&reader, "mnist", Duration::from_secs(60)).await;
    eprintln!("shards settled on their homes after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_csvs_fail_naming_row_and_column_and_leave_no_dataset() {
    let mut cluster = Cluster::new();
    let node = cluster.spawn(&[]);
    let numeric_rows: String = (0..20).map(|i| format!("{i},{}\n", i % 2)).collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("ragged", b"a,label\n1,0\n2,1,5\n".to_vec(), "row 2 (line 3): has 3 fields but the header has 2"),
        ("quote", b"a,label\n1,0\n\"2,1\n3,0\n".to_vec(), "row 2 (line 3)"),
        ("utf8", b"a,label\n1,0\n2,\xff\xfe\n".to_vec(), "row 2 (line 3), column 'label': not valid UTF-8"),
        (
            "text",
            format!("a,label\n{numeric_rows}seven,1\n").into_bytes(),
            "row 21 (line 22), column 'a': 'seven' is not a number",
        ),
        ("nolabel", b"a,b\n1,2\n".to_vec(), "no column named 'label'"),
        ("empty", Vec::new(), "the file is empty"),
        ("header", b"a,label\n".to_vec(), "header but no rows"),
    ];
    let http = crate::support::http();
    for (name, body, expected) in cases {
        let response = http
            .post(format!("{}/v1/datasets?name={name}&label=label", node.http_url()))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let message =
            response.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap_or_default().to_owned();
        assert!(status == 422 && message.contains(expected), "{name}: {status} '{message}' lacks '{expected}'");
    }
    let client = Client::new([node.http_url()]).unwrap();
    assert!(client.datasets().await.unwrap().is_empty());
    assert!(client.refs().await.unwrap().iter().all(|r| !r.name.starts_with("dataset/")), "a failed ingest left a ref");
    let bad = http
        .post(format!("{}/v1/datasets?name=x&label=label&test=1.5", node.http_url()))
        .body("a,label\n1,0\n")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 422);
    let bad =
        http.post(format!("{}/v1/datasets?label=label", node.http_url())).body("a,label\n1,0\n").send().await.unwrap();
    let message = bad.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("name"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_file_twice_gives_the_same_ids_and_text_columns_are_text() {
    let mut cluster = Cluster::new();
    let node = cluster.spawn(&[]);
    let client = Client::new([node.http_url()]).unwrap();
    let request = IngestRequest {
        name: "digits".into(),
        label: "label".into(),
        test_rows: Some(shared("digits.test_rows.txt")),
        ..Default::default()
    };
    let first = client.ingest_csv(&shared("digits.csv"), &request).await.unwrap();
    let second = client.ingest_csv(&shared("digits.csv"), &request).await.unwrap();
    assert_eq!(first.manifest_id, second.manifest_id);
    assert_eq!(first.manifest.split_rows, [1437, 0, 360]);

    let request = IngestRequest { name: "reviews".into(), label: "label".into(), ..Default::default() };
    let reviews = client.ingest_csv(&shared("rotten_tomatoes.csv"), &request).await.unwrap();
    let kinds: Vec<String> =
        reviews.manifest.schema.columns.iter().map(|c| format!("{}:{:?}", c.name, c.kind)).collect();
    assert_eq!(kinds, ["text:Text", "label:Categorical"]);
    assert_eq!(reviews.manifest.rows, 12_808);
    let names: Vec<String> = client.datasets().await.unwrap().into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["digits", "reviews"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_fitted_where_the_shards_live_equals_one_fitted_on_the_whole_file() {
    use mass_kernels::features::{fit, summarize};
    use mass_node::datasets::{IngestOptions, SplitChoice, ingest, ingest::parse_test_rows};
    use mass_protocol::features::{ColumnTransform, Impute, PipelineSpec, Scale, Select, TextSpec, Unseen};

    let mut cluster = Cluster::new();
    let mut nodes = mesh(&mut cluster, 3).await;
    let (c, b, a) = (nodes.pop().unwrap(), nodes.pop().unwrap(), nodes.pop().unwrap());
    let client = Client::new([a.http_url()]).unwrap();
    for (file, name, rows) in [("digits.csv", "digits", 300), ("rotten_tomatoes.csv", "reviews", 2500)] {
        let test_rows = shared(&format!("{}.test_rows.txt", file.trim_end_matches(".csv")));
        let request = IngestRequest {
            name: name.into(),
            label: "label".into(),
            shard_rows: Some(rows),
            test_rows: Some(test_rows.clone()),
            ..Default::default()
        };
        client.ingest_csv(&shared(file), &request).await.unwrap();
        // Wait until the shards sit on their homes, so that no node holds all.
        crate::support::shards_settled(&client, name, Duration::from_secs(30)).await;

        let text = TextSpec { buckets: 1 << 16, ngram_max: 2, min_df: 2, sublinear_tf: true };
        let specs = [
            PipelineSpec {
                impute: Impute::Mean,
                scale: Scale::Standard,
                unseen: Unseen::Ignore,
                text,
                select: Select::All,
                ..PipelineSpec::default()
            },
            PipelineSpec {
                impute: Impute::Median,
                scale: Scale::MinMax,
                unseen: Unseen::Error,
                text,
                select: Select::VarianceThreshold(0.5),
                ..PipelineSpec::default()
            },
            PipelineSpec {
                impute: Impute::MostFrequent,
                scale: Scale::None,
                unseen: Unseen::Ignore,
                text,
                select: Select::MutualInfo { k: 20 },
                ..PipelineSpec::default()
            },
            PipelineSpec {
                impute: Impute::Constant(0.0),
                scale: Scale::Standard,
                unseen: Unseen::Ignore,
                text,
                select: Select::All,
                ..PipelineSpec::default()
            },
        ];
        // Drive the fit from a node that lacks some shard, so work must go
        // to where that shard lives.
        let holders = client.dataset(name).await.unwrap().shard_holders;
        let driver =
            [&a, &b, &c].into_iter().find(|n| holders.iter().any(|h| !h.contains(&n.peer_id().to_owned()))).unwrap();
        let driver_client = Client::new([driver.http_url()]).unwrap();
        for (i, spec) in specs.into_iter().enumerate() {
            let fitted = driver_client.fit_pipeline(name, &format!("p{i}"), spec.clone()).await.unwrap();
            for (worker, shard_holders) in fitted.summarized_by.iter().zip(&holders) {
                assert!(
                    shard_holders.contains(worker),
                    "{name}: a shard was summarized on {worker}, which does not hold it"
                );
            }
            assert!(fitted.summarized_by.iter().any(|w| w != driver.peer_id()), "{name}: everything ran on the driver");

            // The same file, one process, one shard.
            let options = IngestOptions {
                name: name.into(),
                label: "label".into(),
                kinds: Default::default(),
                shard_rows: usize::MAX,
                split: SplitChoice::TestRows {
                    rows: parse_test_rows(&std::fs::read_to_string(&test_rows).unwrap()).unwrap(),
                    list: mass_protocol::ContentId::of(&std::fs::read(&test_rows).unwrap()),
                    seed: 42,
                    validation: 0.0,
                },
                threads: 2,
            };
            let mut whole = None;
            let manifest = ingest(std::fs::File::open(shared(file)).unwrap(), &options, |shard| {
                whole = Some(shard.clone());
                Ok(mass_protocol::ContentId::of(b""))
            })
            .unwrap();
            let single = fit(&spec, &manifest.schema, &summarize(&whole.unwrap(), &manifest.schema, &spec)).unwrap();
            assert_eq!(fitted.pipeline.features, single.features, "{name} {spec:?}");
            assert_eq!(fitted.pipeline.classes, single.classes);
            let close = |x: f64, y: f64| x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs());
            for (got, want) in fitted.pipeline.transforms.iter().zip(&single.transforms) {
                match (got, want) {
                    (
                        ColumnTransform::Numeric { fill: f1, offset: o1, scale: s1 },
                        ColumnTransform::Numeric { fill: f2, offset: o2, scale: s2 },
                    ) => {
                        assert!(close(*f1, *f2) && close(*o1, *o2) && close(*s1, *s2), "{name}: {got:?} vs {want:?}")
                    }
                    (ColumnTransform::Tfidf { idf: i1, .. }, ColumnTransform::Tfidf { idf: i2, .. }) => {
                        assert_eq!(i1.len(), i2.len());
                        assert!(i1.iter().zip(i2).all(|((b1, x), (b2, y))| b1 == b2 && close(*x, *y)));
                    }
                    _ => assert_eq!(got, want, "{name}"),
                }
            }
        }
    }
}

/// A `.npy` file (format 1.0) holding `data` with the given dtype and shape.
fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn numpy_features_and_labels_ingest_through_the_cli() {
    let mut cluster = Cluster::new();
    let node = cluster.spawn(&[]);
    let rows = 500usize;
    let labels: Vec<u8> = (0..rows).flat_map(|i| ((i % 3) as i64).to_le_bytes()).collect();
    let features: Vec<u8> = (0..rows * 4).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect();
    let labels_path = cluster.path().join("y.npy");
    let features_path = cluster.path().join("X.npy");
    std::fs::write(&labels_path, npy("<i8", &format!("({rows},)"), &labels)).unwrap();
    std::fs::write(&features_path, npy("<f4", &format!("({rows}, 4)"), &features)).unwrap();
    let (ok, stdout, stderr) = crate::support::mass(&[
        "data",
        "put",
        features_path.to_str().unwrap(),
        "--labels",
        labels_path.to_str().unwrap(),
        "--name",
        "arrays",
        "--label",
        "y",
        "--shard-rows",
        "128",
        "--node",
        node.http_url(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("500 rows, 5 columns, 4 shards"), "{stdout}");
    let view = Client::new([node.http_url()]).unwrap().dataset("arrays").await.unwrap();
    assert_eq!(view.manifest.label_histogram().values().sum::<u64>(), 500);
    assert_eq!(view.manifest.stats[3].max, Some((rows * 4 - 1) as f64 * 0.5));

    // A features file whose rows do not match the labels is refused by name.
    std::fs::write(&features_path, npy("<f4", "(7, 4)", &[0u8; 112])).unwrap();
    let (ok, _, stderr) = crate::support::mass(&[
        "data",
        "put",
        features_path.to_str().unwrap(),
        "--labels",
        labels_path.to_str().unwrap(),
        "--name",
        "bad",
        "--label",
        "y",
        "--node",
        node.http_url(),
    ]);
    assert!(!ok && stderr.contains("has 7 rows but the labels have 500"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_lines_file_ingests_like_its_csv_and_trains() {
    let mut cluster = Cluster::new();
    let node = cluster.spawn(&[]);
    let url = node.http_url().to_owned();
    // Iris as JSON Lines and as CSV, one value missing in both.
    let iris =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/iris.csv")).unwrap();
    let mut lines = iris.lines();
    let names: Vec<&str> = lines.next().unwrap().split(',').collect();
    let (mut jsonl, mut csv) = (String::new(), format!("{}\n", names.join(",")));
    for (i, line) in lines.enumerate() {
        let mut cells: Vec<&str> = line.split(',').collect();
        if i == 10 {
            cells[1] = "";
        }
        let object: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .zip(&cells)
            .map(|(name, cell)| {
                let value = match cell.parse::<f64>() {
                    Ok(number) => serde_json::json!(number),
                    Err(_) if cell.is_empty() => serde_json::Value::Null,
                    Err(_) => serde_json::json!(cell),
                };
                (name.to_string(), value)
            })
            .collect();
        jsonl.push_str(&format!("{}\n", serde_json::Value::Object(object)));
        csv.push_str(&format!("{}\n", cells.join(",")));
    }
    // serde_json's map sorts keys: the label comes first in the JSON lines.
    let jsonl_path = cluster.path().join("iris.jsonl");
    let csv_path = cluster.path().join("iris.csv");
    std::fs::write(&jsonl_path, &jsonl).unwrap();
    std::fs::write(&csv_path, &csv).unwrap();

    let put = |file: &std::path::Path, name: &str| {
        crate::support::mass_exit(
            &[
                "data",
                "put",
                file.to_str().unwrap(),
                "--name",
                name,
                "--label",
                "label",
                "--shard-rows",
                "50",
                "--node",
                &url,
            ],
            &[],
        )
    };
    let (code, stdout, stderr) = put(&jsonl_path, "iris-jsonl");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("150 rows, 5 columns, 3 shards"), "{stdout}");
    let (code, _, stderr) = put(&csv_path, "iris-csv");
    assert_eq!(code, Some(0), "{stderr}");
    let client = Client::new([&url]).unwrap();
    let from_jsonl = client.dataset("iris-jsonl").await.unwrap().manifest;
    let from_csv = client.dataset("iris-csv").await.unwrap().manifest;
    let columns: Vec<&str> = from_jsonl.schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(columns[0], "label", "columns in the order of the first line's keys");
    assert_eq!(from_jsonl.stats.iter().map(|s| s.missing).sum::<u64>(), 1);
    assert_eq!(from_jsonl.label_histogram(), from_csv.label_histogram());
    assert_eq!(from_jsonl.rows, from_csv.rows);
    assert_eq!(from_jsonl.split_rows, from_csv.split_rows);

    // Over HTTP: format=jsonl or the ndjson content type; bad lines are named.
    let http = crate::support::http();
    let cases: Vec<(&str, Option<&str>, &str, u16, &str)> = vec![
        (
            "format=jsonl",
            None,
            "{\"a\": 1, \"label\": 0}\n{\"a\": 2, \"label\": 1, \"petal\": 3}\n",
            422,
            "row 2 (line 2), column 'petal': the first line has no such key",
        ),
        (
            "",
            Some("application/x-ndjson; charset=utf-8"),
            "{\"a\": 1, \"label\": 0}\n{\"a\": {\"b\": 1}, \"label\": 1}\n",
            422,
            "row 2 (line 2), column 'a': a nested object",
        ),
        ("format=jsonl", None, "{\"a\": 1, \"label\": 0}\n{\"label\": 1}\n", 422, "column 'a': the key is missing"),
        ("format=xml", None, "a,label\n1,0\n", 400, "format: 'xml' is not csv, jsonl, npy or parquet"),
    ];
    for (extra, content_type, body, status, expected) in cases {
        let mut request = http.post(format!("{url}/v1/datasets?name=bad&label=label&{extra}")).body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        let message =
            response.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap_or_default().to_owned();
        assert!(got == status && message.contains(expected), "{extra}: {got} '{message}' lacks '{expected}'");
    }
    let response = http
        .post(format!("{url}/v1/datasets?name=small&label=label&format=jsonl"))
        .body("{\"a\": 1, \"label\": \"x\"}\n{\"a\": 2, \"label\": \"y\"}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{}", response.text().await.unwrap());
    assert!(client.datasets().await.unwrap().iter().all(|d| d.name != "bad"), "a refused file left a dataset");

    // Train on the JSON Lines dataset, followed by the CLI to the end.
    let (code, stdout, stderr) = crate::support::mass_exit(
        &[
            "train",
            "--dataset",
            "iris-jsonl",
            "--name",
            "iris-jsonl",
            "--model",
            "linear",
            "--epochs",
            "20",
            "--node",
            &url,
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("Completed"), "{stdout}");
    let models = client.models().await.unwrap();
    let model = models.iter().find(|m| m.name == "iris-jsonl").unwrap();
    assert!(model.accuracy.is_some_and(|a| a > 0.6), "{model:?}");
}

/// Iris as Parquet (the crate's own writer: doubles and a string label, one
/// value null, snappy pages in row groups of 40) and as the CSV of it.
fn iris_as_parquet_and_csv() -> (Vec<u8>, String) {
    use std::sync::Arc;

    use parquet::{
        basic::Compression,
        data_type::{ByteArray, ByteArrayType, DoubleType},
        file::{properties::WriterProperties, writer::SerializedFileWriter},
        schema::parser::parse_message_type,
    };
    let iris =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/iris.csv")).unwrap();
    let mut lines = iris.lines();
    let names: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    rows[10][1] = "";
    let csv: String =
        std::iter::once(names.join(",")).chain(rows.iter().map(|r| r.join(","))).map(|l| l + "\n").collect();
    let schema = format!(
        "message iris {{ {} OPTIONAL BYTE_ARRAY label (UTF8); }}",
        names[..4].iter().map(|n| format!("OPTIONAL DOUBLE {n};")).collect::<String>()
    );
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer =
        SerializedFileWriter::new(Vec::new(), Arc::new(parse_message_type(&schema).unwrap()), Arc::new(props)).unwrap();
    for group in rows.chunks(40) {
        let mut out = writer.next_row_group().unwrap();
        for c in 0..names.len() {
            let cells: Vec<&str> = group.iter().map(|r| r[c]).collect();
            let levels: Vec<i16> = cells.iter().map(|cell| i16::from(!cell.is_empty())).collect();
            let present = cells.iter().filter(|cell| !cell.is_empty());
            let mut column = out.next_column().unwrap().unwrap();
            if c < 4 {
                let values: Vec<f64> = present.map(|cell| cell.parse().unwrap()).collect();
                column.typed::<DoubleType>().write_batch(&values, Some(&levels), None).unwrap();
            } else {
                let values: Vec<ByteArray> = present.map(|cell| ByteArray::from(cell.as_bytes())).collect();
                column.typed::<ByteArrayType>().write_batch(&values, Some(&levels), None).unwrap();
            }
            column.close().unwrap();
        }
        out.close().unwrap();
    }
    (writer.into_inner().unwrap(), csv)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parquet_file_ingests_to_the_dataset_of_its_csv() {
    let mut cluster = Cluster::new();
    let node = cluster.spawn(&[]);
    let url = node.http_url().to_owned();
    let (parquet, csv) = iris_as_parquet_and_csv();
    let parquet_path = cluster.path().join("iris.parquet");
    let csv_path = cluster.path().join("iris.csv");
    std::fs::write(&parquet_path, &parquet).unwrap();
    std::fs::write(&csv_path, &csv).unwrap();
    let put = |file: &std::path::Path, name: &str| {
        crate::support::mass_exit(
            &[
                "data",
                "put",
                file.to_str().unwrap(),
                "--name",
                name,
                "--label",
                "label",
                "--shard-rows",
                "50",
                "--node",
                &url,
            ],
            &[],
        )
    };
    let client = Client::new([&url]).unwrap();
    let (code, stdout, stderr) = put(&parquet_path, "iris");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("150 rows, 5 columns, 3 shards"), "{stdout}");
    let from_parquet = client.dataset("iris").await.unwrap();
    assert_eq!(from_parquet.manifest.stats.iter().map(|s| s.missing).sum::<u64>(), 1);
    // The CSV of the same rows, under the same name and options, is the
    // same dataset: the same manifest id, not just the same shards.
    let (code, _, stderr) = put(&csv_path, "iris");
    assert_eq!(code, Some(0), "{stderr}");
    let from_csv = client.dataset("iris").await.unwrap();
    assert_eq!(from_parquet.manifest.shards, from_csv.manifest.shards, "the same shard ids");
    assert_eq!(from_parquet.manifest_id, from_csv.manifest_id, "the same dataset id");
    // A different split is a different dataset.
    let (code, _, stderr) = crate::support::mass_exit(
        &[
            "data",
            "put",
            csv_path.to_str().unwrap(),
            "--name",
            "iris",
            "--label",
            "label",
            "--shard-rows",
            "50",
            "--seed",
            "9",
            "--node",
            &url,
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_ne!(client.dataset("iris").await.unwrap().manifest_id, from_csv.manifest_id);

    // Format by parameter, content type or magic bytes; a bad file is
    // refused naming its problem, and nothing is registered.
    let half = parquet[..parquet.len() / 2].to_vec();
    let nested = {
        let schema = "message t { REQUIRED INT32 label; OPTIONAL group tags (LIST) { REPEATED group list { \
                      OPTIONAL BYTE_ARRAY element (UTF8); } } }";
        let schema = std::sync::Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
        parquet::file::writer::SerializedFileWriter::new(Vec::new(), schema, Default::default())
            .unwrap()
            .into_inner()
            .unwrap()
    };
    let http = crate::support::http();
    let cases: Vec<(&str, Option<&str>, Vec<u8>, &str)> = vec![
        (
            "format=parquet",
            None,
            csv.clone().into_bytes(),
            "not a Parquet file: it does not start with the magic bytes PAR1",
        ),
        ("", Some("application/vnd.apache.parquet"), half, "a truncated Parquet file"),
        ("", None, nested, "column 'tags' is a list"),
    ];
    for (extra, content_type, body, expected) in cases {
        let mut request = http.post(format!("{url}/v1/datasets?name=bad&label=label&{extra}")).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        let message =
            response.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap_or_default().to_owned();
        assert!(got == 422 && message.contains(expected), "{extra}: {got} '{message}' lacks '{expected}'");
    }
    let bad_path = cluster.path().join("bad.parquet");
    std::fs::write(&bad_path, &parquet[..parquet.len() - 10]).unwrap();
    let (code, stdout, stderr) = put(&bad_path, "bad");
    assert_ne!(code, Some(0), "{stdout}");
    assert!(stderr.contains("a truncated Parquet file"), "{stderr}");
    assert!(client.datasets().await.unwrap().iter().all(|d| d.name != "bad"), "a refused file left a dataset");
}
