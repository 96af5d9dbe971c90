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
pub fn token(data_dir: &std::path::Path, role: Role) -> String {
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
    let http = crate::support::http();
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

/// The test-only CA and node certificate (tests/fixtures/tls).
pub fn tls_fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tls").join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_serves_https_from_a_certificate_and_clients_trust_only_its_ca() {
    let tls = format!(
        "{}\n[http]\ntls_cert = {:?}\ntls_key = {:?}\n",
        crate::support::FAST_CONFIG,
        tls_fixture("node.crt"),
        tls_fixture("node.key")
    );
    let mut cluster = Cluster::with_config(&tls);
    let node = cluster.spawn(&[]);
    let url = node.http_url().to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = std::fs::read(tls_fixture("ca.crt")).unwrap();

    let client = Client::new([&url]).unwrap().with_ca_cert(&ca).unwrap();
    let blob = client.put_blob(b"over tls".to_vec(), true).await.unwrap().id.to_string();
    assert_eq!(client.get_blob(&blob).await.unwrap(), b"over tls");

    // A client that does not trust the CA is told what is missing.
    let err = Client::new([&url]).unwrap().health().await.unwrap_err().to_string();
    assert!(err.contains("certificate") && err.contains("--ca-cert"), "{err}");
    // Nothing is served in clear on that port.
    let plain = url.replace("https://", "http://");
    assert!(Client::new([&plain]).unwrap().health().await.is_err(), "plain HTTP was answered");
    // The CLI takes the CA from a flag.
    let (ok, stdout, stderr) = mass(&["peers", "--node", &url, "--ca-cert", tls_fixture("ca.crt").to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let id = node.peer_id();
    assert!(stdout.contains(&id[id.len() - 8..]) && stdout.contains("(self)"), "{stdout}");
    // A CA file that is not one is refused by name.
    let err = Client::new([&url]).unwrap().with_ca_cert(b"junk").unwrap_err().to_string();
    assert!(err.contains("no certificate"), "{err}");
}

#[test]
fn a_half_configured_tls_pair_stops_the_node_with_a_sentence() {
    for (toml, expected) in [
        (format!("[http]\ntls_cert = {:?}\n", tls_fixture("node.crt")), "http.tls_cert is set without http.tls_key"),
        (
            format!("[http]\ntls_cert = {:?}\ntls_key = {:?}\n", tls_fixture("ca.crt"), tls_fixture("node.key")),
            "do not make a usable pair",
        ),
        (
            format!("[http]\ntls_cert = \"/nonexistent.crt\"\ntls_key = {:?}\n", tls_fixture("node.key")),
            "/nonexistent.crt",
        ),
    ] {
        let cluster = Cluster::with_config(&toml);
        let data = cluster.path().join("node");
        let config = cluster.path().join("node.toml");
        let (ok, _, stderr) = mass(&[
            "node",
            "start",
            "--data-dir",
            data.to_str().unwrap(),
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--http",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ]);
        assert!(!ok && !stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_named_ref_admins_unpin_and_the_mesh_follows_them() {
    let mut cluster = Cluster::new();
    let mut admin = cluster.spawn(&[]);
    let mut member = cluster.spawn(&[&admin]);
    let admin_id = admin.peer_id().to_owned();
    // Restarted on the same data dirs (same peer ids), with the admin named.
    assert!(admin.stop(Duration::from_secs(10)) && member.stop(Duration::from_secs(10)));
    let config =
        crate::support::FAST_CONFIG.replace("[storage]\n", &format!("[storage]\nref_admins = [\"{admin_id}\"]\n"));
    std::fs::write(cluster.path().join("node.toml"), config).unwrap();
    let admin = cluster.start(cluster.options_for("node0"));
    let mut options = cluster.options_for("node1");
    options.bootstrap = vec![admin.listen_addr().to_owned()];
    let member = cluster.start(options);
    let (at_admin, at_member) = (Client::new([admin.http_url()]).unwrap(), Client::new([member.http_url()]).unwrap());

    let blob = at_member.put_blob(b"keep me".to_vec(), true).await.unwrap().id.to_string();
    let pin = format!("pin/{blob}");
    let pinned = |url: &str| {
        let pin = pin.clone();
        let client = Client::new([url]).unwrap();
        async move { client.get_ref(&pin).await.is_ok() }
    };
    eventually(Duration::from_secs(10), "the admin's node sees the member's pin", || pinned(admin.http_url())).await;

    // The member's node refuses, by name, to unpin: peers would refuse it.
    let err = at_member.unpin_blob(&blob).await.unwrap_err().to_string();
    assert!(err.contains("403") && err.contains("storage.ref_admins"), "{err}");
    assert!(pinned(member.http_url()).await && pinned(admin.http_url()).await, "a refused unpin changed a pin");
    // The admin's node unpins, and the member's node accepts it.
    at_admin.unpin_blob(&blob).await.unwrap();
    eventually(Duration::from_secs(10), "the member's node applies the admin's unpin", || async {
        !pinned(member.http_url()).await
    })
    .await;
    // A pin may only point at its own blob.
    let other = at_admin.put_blob(b"other".to_vec(), false).await.unwrap().id.to_string();
    let err = at_admin.set_ref(&pin, &other).await.unwrap_err().to_string();
    assert!(err.contains("403") && err.contains("may only point at"), "{err}");
}
