//! gRPC beside REST (issue 17): `mass.v1.Predictor/Predict` gives the
//! answers `POST /v1/models/{name}/predict` gives, on a node that holds the
//! model and through one that forwards; refuses bad rows, unknown models and
//! callers without the predict role with the right status and a reason;
//! and is served over TLS when the HTTP API is.

use std::time::Duration;

use mass_node::grpc::messages::{PredictReply, PredictRequest, Row, Value, value::Kind};
use mass_protocol::{api::Role, serving::Predicted};
use mass_sdk::Client;
use serde_json::json;
use tonic::{Code, Status, transport::Channel};

use crate::{
    security::{tls_fixture, token},
    serving::test_rows,
    support::{Cluster, FAST_CONFIG, eventually, finished, shared_dataset},
};

/// One `Predict` call over `channel`, with a bearer token if given.
async fn predict(channel: &Channel, request: PredictRequest, token: Option<&str>) -> Result<PredictReply, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(request);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<PredictRequest, PredictReply>::default();
    let path = http::uri::PathAndQuery::from_static("/mass.v1.Predictor/Predict");
    grpc.unary(request, path, codec).await.map(tonic::Response::into_inner)
}

fn matrix(model: &str, rows: &[Vec<f64>]) -> PredictRequest {
    PredictRequest {
        model: model.into(),
        matrix: rows.iter().flatten().copied().collect(),
        columns: rows[0].len() as u32,
        ..Default::default()
    }
}

fn grpc_url(node: &mass_sdk::local::LocalNode) -> String {
    node.endpoints().grpc_url.clone().expect("the node serves gRPC")
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_predictions_equal_the_http_ones_and_bad_calls_get_their_status() {
    let mut cluster = Cluster::with_config(&format!("{FAST_CONFIG}\n[serving]\nhot_after = 0\n"));
    let mut options = cluster.options();
    options.extra_args = vec!["--grpc".into(), "127.0.0.1:0".into()];
    let first = cluster.start(options);
    let mut options = cluster.options();
    options.extra_args = vec!["--grpc".into(), "127.0.0.1:0".into()];
    options.bootstrap = vec![first.listen_addr().to_owned()];
    let second = cluster.start(options);
    let client = Client::new([first.http_url()]).unwrap();
    let request = mass_sdk::IngestRequest {
        name: "digits".into(),
        label: "label".into(),
        shard_rows: Some(300),
        test_rows: Some(shared_dataset("digits.test_rows.txt")),
        ..Default::default()
    };
    client.ingest_csv(&shared_dataset("digits.csv"), &request).await.unwrap();
    let spec: mass_protocol::jobs::JobSpec = serde_json::from_value(json!({
        "model": "digits", "dataset": "digits", "ensemble": "single", "seed": 1,
        "spec": {"learner": "linear", "epochs": 10}
    }))
    .unwrap();
    let id = client.submit_job(&spec).await.unwrap().to_string();
    finished(&client, &id, Duration::from_secs(300)).await;

    let rows: Vec<Vec<f64>> = test_rows("digits.csv", "digits.test_rows.txt", 40).into_iter().map(|(x, _)| x).collect();
    let over_http = client.predict_matrix("digits", &rows, false).await.unwrap();
    let classes: Vec<String> = over_http
        .predictions
        .iter()
        .map(|p| match p {
            Predicted::Class(c) => c.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    for node in [&first, &second] {
        let channel = Channel::from_shared(grpc_url(node)).unwrap().connect().await.unwrap();
        let answer = predict(&channel, matrix("digits", &rows), None).await.unwrap();
        assert_eq!(answer.predicted_classes, classes, "through {}", node.http_url());
        assert_eq!(answer.classes, over_http.classes);
        assert_eq!(answer.probabilities, over_http.probabilities.concat());
        assert_eq!((answer.version, answer.manifest.clone()), (over_http.version, over_http.manifest.to_string()));
    }
    // Named cells, as JSON's named rows.
    let channel = Channel::from_shared(grpc_url(&second)).unwrap().connect().await.unwrap();
    let named = Row {
        named: rows[0]
            .iter()
            .enumerate()
            .map(|(c, v)| (format!("p{c}"), Value { kind: Some(Kind::Number(*v)) }))
            .collect(),
        ..Default::default()
    };
    let one = PredictRequest { model: "digits".into(), rows: vec![named], ..Default::default() };
    assert_eq!(predict(&channel, one, None).await.unwrap().predicted_classes[0], classes[0]);

    // Bad calls: the status code and a reason naming what was wrong.
    let mut gap = rows[0].clone();
    gap[5] = f64::NAN;
    let cases = [
        (matrix("no-such-model", &rows), Code::NotFound, "no model named 'no-such-model'"),
        (matrix("digits", &[rows[0][..8].to_vec()]), Code::InvalidArgument, "8 values, but the model reads 64 columns"),
        (matrix("digits", &[gap]), Code::InvalidArgument, "p5"),
        (
            PredictRequest { model: "digits".into(), matrix: vec![1.0; 65], columns: 64, ..Default::default() },
            Code::InvalidArgument,
            "65 numbers, which is not whole rows of its 64 columns",
        ),
        (PredictRequest { model: "digits".into(), ..Default::default() }, Code::InvalidArgument, "no rows"),
    ];
    for (request, code, reason) in cases {
        let status = predict(&channel, request, None).await.unwrap_err();
        assert_eq!(status.code(), code, "{reason}: {status:?}");
        assert!(status.message().contains(reason), "expected '{reason}' in {}", status.message());
    }
    let mut allowed = matrix("digits", &[rows[0].clone()]);
    allowed.matrix[5] = f64::NAN;
    allowed.allow_missing = true;
    assert!(predict(&channel, allowed, None).await.is_ok(), "NaN imputed when allowed");
    // Another method of the service is not one.
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<PredictRequest, PredictReply>::default();
    let path = http::uri::PathAndQuery::from_static("/mass.v1.Predictor/Train");
    let status = grpc.unary(tonic::Request::new(PredictRequest::default()), path, codec).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(status.message().contains("/mass.v1.Predictor/Predict"), "{}", status.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_is_served_over_tls_with_the_apis_certificate_and_tokens() {
    let tls = format!(
        "{FAST_CONFIG}\n[http]\ntls_cert = {:?}\ntls_key = {:?}\ngrpc = \"127.0.0.1:0\"\n",
        tls_fixture("node.crt"),
        tls_fixture("node.key")
    );
    let mut cluster = Cluster::with_config(&tls);
    let node = cluster.spawn(&[]);
    let url = grpc_url(&node);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = tonic::transport::Certificate::from_pem(std::fs::read(tls_fixture("ca.crt")).unwrap());
    let channel = Channel::from_shared(url.clone())
        .unwrap()
        .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(ca))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // Open (no tokens yet): the call is routed, and there is no such model.
    let request = || matrix("nothing", &[vec![1.0]]);
    assert_eq!(predict(&channel, request(), None).await.unwrap_err().code(), Code::NotFound);
    // Nothing is served in clear on that port.
    let plain = Channel::from_shared(url.replace("https://", "http://")).unwrap().connect().await;
    if let Ok(plain) = plain {
        assert!(predict(&plain, request(), None).await.is_err(), "plain gRPC was answered");
    }

    let data_dir = node.options().data_dir.clone();
    let read = token(&data_dir, Role::Read);
    let predict_role = token(&data_dir, Role::Predict);
    eventually(Duration::from_secs(5), "the node notices its tokens", || async {
        predict(&channel, request(), None).await.is_err_and(|s| s.code() == Code::Unauthenticated)
    })
    .await;
    let status = predict(&channel, request(), None).await.unwrap_err();
    assert!(status.message().contains("authorization: Bearer"), "{}", status.message());
    let status = predict(&channel, request(), Some("not-a-token")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = predict(&channel, request(), Some(&read)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("read role") && status.message().contains("predict"), "{}", status.message());
    let status = predict(&channel, request(), Some(&predict_role)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "the predict role passes: {status:?}");
}
