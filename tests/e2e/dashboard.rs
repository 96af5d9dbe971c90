//! The dashboard (issue 17, part 2) in headless Chromium against a live
//! mesh: every page shows the mesh's real state, Rollback and Promote change
//! the served version, a node with tokens shows its refusals. The browser
//! is driven by tests/python/test_dashboard.py (selenium); screenshots of
//! every page are kept in the target dir's `dashboard-screenshots`.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use mass_protocol::{
    api::Role,
    jobs::{EnsembleSpec, JobSpec, Learner, ModelSpec},
};
use mass_sdk::{Client, IngestRequest};

use crate::support::{Cluster, MASS, eventually, finished, http, mass, mesh, python, shards_settled};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Where the screenshots go: beside the binaries under test, in the cargo
/// target dir (`target/dashboard-screenshots`).
fn screenshots() -> PathBuf {
    let dir = Path::new(MASS).parent().and_then(Path::parent).unwrap().join("dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_page_shows_the_mesh_and_promote_and_rollback_change_what_is_served() {
    // Before the mesh: without Chromium or selenium this fails here, at once.
    let python = python();
    let mut cluster = Cluster::new();
    let nodes = mesh(&mut cluster, 3).await;
    let client = Client::new([nodes[0].http_url()]).unwrap();
    let request = IngestRequest {
        name: "iris".into(),
        label: "label".into(),
        shard_rows: Some(50),
        test_rows: Some(repo("tests/data/iris.test_rows.txt")),
        ..Default::default()
    };
    client.ingest_csv(&repo("tests/data/iris.csv"), &request).await.unwrap();
    shards_settled(&client, "iris", Duration::from_secs(30)).await;
    // Two trainings of one name: versions 1 and 2 (different seeds, so
    // different manifests).
    for seed in [1, 2] {
        let spec = JobSpec {
            model: "iris-dash".into(),
            dataset: "iris".into(),
            pipeline: Default::default(),
            spec: ModelSpec {
                epochs: Some(40 + seed as usize),
                learning_rate: 0.03,
                ..ModelSpec::of(Learner::Mlp { hidden: vec![8] })
            },
            ensemble: EnsembleSpec::Single,
            seed,
            task: None,
            placement: Default::default(),
            trial: None,
            cv: None,
        };
        let id = client.submit_job(&spec).await.unwrap();
        finished(&client, &id.to_string(), Duration::from_secs(120)).await;
    }
    let view = client.model("iris-dash").await.unwrap();
    assert_eq!((view.version, view.versions.len()), (2, 2), "{:?}", view.versions);

    // The third node gets a read token: from then on its API answers 401
    // without one (the page must show it) and 403 to a read token's rollback.
    let data_dir = nodes[2].options().data_dir.clone();
    let (ok, token, stderr) = mass(&[
        "token",
        "create",
        "--role",
        &Role::Read.to_string(),
        "--name",
        "dash",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let token = token.trim().to_owned();
    let token_url = nodes[2].http_url().to_owned();
    eventually(Duration::from_secs(10), "the third node requires its token", || async {
        http().get(format!("{token_url}/v1/peers")).send().await.is_ok_and(|r| r.status() == 401)
    })
    .await;
    // The page itself is public even there.
    let page = http().get(format!("{token_url}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let script = http().get(format!("{token_url}/dashboard/app.js")).send().await.unwrap();
    assert!(script.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert_eq!(http().get(format!("{token_url}/dashboard/nope.js")).send().await.unwrap().status(), 404);

    let shots = screenshots();
    let peers: Vec<&str> = nodes.iter().map(|n| n.peer_id()).collect();
    let started = std::time::Instant::now();
    let output = std::process::Command::new(&python)
        .arg(repo("tests/python/test_dashboard.py"))
        .args(["--screenshots", shots.to_str().unwrap()])
        .args(["--peers", &peers.join(",")])
        .args(["--dataset", "iris", "--model", "iris-dash", "--row", "[5.1, 3.5, 1.4, 0.2]"])
        .args(["--token-url", &token_url, "--read-token", &token])
        .args([nodes[0].http_url(), nodes[1].http_url()])
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    eprintln!("{report}");
    assert!(output.status.success(), "tests/python/test_dashboard.py failed:\n{report}");
    assert!(report.trim_end().ends_with("ok"), "{report}");
    let pngs = std::fs::read_dir(&shots)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some(std::ffi::OsStr::new("png")));
    assert!(pngs.count() >= 8, "screenshots missing in {}", shots.display());
    eprintln!("dashboard checks took {:?}; screenshots in {}", started.elapsed(), shots.display());
}
