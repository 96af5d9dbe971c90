//! The API is default-deny once a node has tokens (issue 12): writes without
//! a token answer 401 and change nothing, a token's role bounds what it may
//! do (403 naming the role needed), and a node that would serve beyond
//! loopback without tokens refuses to start.

use std::time::Duration;

use mass_protocol::api::Role;
use mass_sdk::Client;
use serde_json::json;

use crate::support::{Cluster, eventually, mass, mesh};

/// Creates a token in `data_dir` with the CLI, as an operator would.
fn token(data_dir: &std::path::Path, role: Role) -> String {
    let (ok, stdout, stderr) = mass(&[
        "token",
        "create",
        "--role",
        &role.to_string(),
        "--name",
        "test",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    stdout.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_writes_are_refused_and_nothing_changes() {
    let mut cluster = Cluster::new();
    let nodes = mesh(&mut cluster, 1).await;
    let node = &nodes[0];
    let url = node.http_url().to_owned();
    let open = Client::new([&url]).unwrap();
    // Before any token exists (loopback), the node is open: make some state.
    let blob = open.put_blob(b"kept".to_vec(), true).await.unwrap().id.to_string();

    let data_dir = node.options().data_dir.clone();
    let admin = token(&data_dir, Role::Admin);
    let predict = token(&data_dir, Role::Predict);
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(5), "the node notices its tokens", || async {
        http.post(format!("{url}/v1/gc")).send().await.is_ok_and(|r| r.status() == 401)
    })
    .await;

    let admin_client = Client::new([&url]).unwrap().with_token(&admin).unwrap();
    let refs_before = admin_client.refs().await.unwrap();
    let blobs_before = admin_client.list_blobs().await.unwrap().len();
    let writes = [
        ("PUT", "/v1/blobs".to_owned(), None),
        ("DELETE", format!("/v1/blobs/{blob}"), None),
        ("POST", "/v1/gc?grace_ms=0".to_owned(), None),
        ("PUT", "/v1/refs/model/evil".to_owned(), Some(json!({"target": blob}))),
        ("POST", format!("/v1/refs/pin/{blob}/rollback"), Some(json!({"version": 1}))),
        ("POST", "/v1/datasets?name=x&label=y".to_owned(), None),
        ("POST", "/v1/jobs".to_owned(), Some(json!({"model": "m", "dataset": "d", "ensemble": "single"}))),
        ("POST", "/v1/jobs/abc/cancel".to_owned(), None),
        ("POST", "/v1/models/m/promote".to_owned(), Some(json!({"version": 1}))),
        ("POST", "/v1/models/m/rollback".to_owned(), None),
        ("POST", "/v1/models/m/compose".to_owned(), Some(json!({"serial": ["a", "b"]}))),
        ("POST", "/v1/models/m/batch".to_owned(), Some(json!({"dataset": "d"}))),
        ("POST", "/v1/models/m/predict".to_owned(), Some(json!({"rows": [[1]]}))),
        ("GET", "/v1/refs".to_owned(), None),
    ];
    for (method, path, body) in &writes {
        let mut request = http.request(method.parse().unwrap(), format!("{url}{path}"));
        if let Some(body) = body {
            request = request.json(body);
        }
        if body.is_none() {
            request = request.body("x");
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{method} {path}");
        let text = response.text().await.unwrap();
        assert!(text.contains("requires an API token") && text.contains("needs"), "{method} {path}: {text}");
    }
    assert_eq!(admin_client.refs().await.unwrap(), refs_before, "a refused request changed a ref");
    assert_eq!(admin_client.list_blobs().await.unwrap().len(), blobs_before);
    assert_eq!(admin_client.get_blob(&blob).await.unwrap(), b"kept");

    // A predict token predicts (here: reaches the handler) but cannot promote.
    let predictor = Client::new([&url]).unwrap().with_token(&predict).unwrap();
    let err = predictor.predict("missing", &[json!([1])]).await.unwrap_err().to_string();
    assert!(err.contains("404"), "the predict route ran: {err}");
    let err = predictor.promote("missing", 1).await.unwrap_err().to_string();
    assert!(err.contains("403") && err.contains("has the predict role") && err.contains("needs write"), "{err}");
    let unknown = Client::new([&url]).unwrap().with_token("mass_admin_forged").unwrap();
    assert!(unknown.refs().await.unwrap_err().to_string().contains("401"));
    assert!(Client::new([&url]).unwrap().health().await.is_ok(), "the health check stays public");
    let metrics = http.get(format!("{url}/metrics")).bearer_auth(&admin).send().await.unwrap().text().await.unwrap();
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mass_auth_refusals_total{status=\"401\"} ").and_then(|v| v.trim().parse().ok()))
        .unwrap();
    assert!(refused >= writes.len() as f64, "{refused}");

    // Revoked, the admin token stops working.
    let id = admin.trim_start_matches("mass_admin_")[..8].to_owned();
    let (ok, _, stderr) = mass(&["token", "revoke", &id, "--data-dir", data_dir.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    eventually(Duration::from_secs(5), "the revoked token is refused", || async {
        admin_client.refs().await.is_err_and(|e| e.to_string().contains("401"))
    })
    .await;
}

#[test]
fn a_node_serving_beyond_loopback_needs_tokens_to_start() {
    let cluster = Cluster::new();
    let data = cluster.path().join("exposed");
    let data_arg = data.to_str().unwrap();
    let start = [
        "node",
        "start",
        "--data-dir",
        data_arg,
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--http",
        "0.0.0.0:0",
    ];
    let (ok, _, stderr) = mass(&start);
    assert!(!ok && !stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("beyond this machine") && stderr.contains("mass token create --role admin"), "{stderr}");
    // With a token it starts (stopped at once: the point is that it gets past the check).
    let (ok, _, stderr) = mass(&["token", "create", "--role", "admin", "--data-dir", data_arg]);
    assert!(ok, "{stderr}");
    let log = std::fs::File::create(cluster.path().join("exposed.log")).unwrap();
    let mut child = std::process::Command::new(crate::support::MASS)
        .args(start)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let started = mass_sdk::local::wait_for_endpoints(&data, &mut child, Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    let endpoints =
        started.unwrap_or_else(|e| panic!("{e}\n{}", crate::support::read_log(&cluster.path().join("exposed.log"))));
    assert!(endpoints.http_url.contains("0.0.0.0") || endpoints.http_url.contains(':'));
}
