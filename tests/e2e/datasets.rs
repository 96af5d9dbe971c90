//! Datasets: ingest real files into a mesh, validate, shard, split.

use std::{collections::BTreeMap, io::Read, path::PathBuf, time::Duration};

use mass_sdk::{Client, IngestRequest};

use crate::support::{Cluster, eventually, lists_up_with_hardware};

fn shared(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets").join(name)
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
    let a = cluster.spawn(&[]);
    let b = cluster.spawn(&[&a]);
    let c = cluster.spawn(&[&a]);
    let ids = [a.peer_id(), b.peer_id(), c.peer_id()];
    eventually(Duration::from_secs(10), "mesh forms", || async {
        lists_up_with_hardware(&a, &ids).await
            && lists_up_with_hardware(&b, &ids).await
            && lists_up_with_hardware(&c, &ids).await
    })
    .await;

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
    let took = eventually(Duration::from_secs(60), "every shard has exactly k = 2 live copies", || async {
        reader.dataset("mnist").await.map(|v| v.shard_holders.iter().all(|h| h.len() == 2)).unwrap_or(false)
    })
    .await;
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
    let http = reqwest::Client::new();
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
