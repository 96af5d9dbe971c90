//! What a careless or hostile user can type: each mistake is one clear
//! sentence and a non-zero exit, never a panic.

use std::net::TcpListener;

use crate::support::{Cluster, mass};

/// Runs `mass node start` with `extra` args on a fresh data dir; returns stderr
/// after asserting a failed, panic-free exit.
fn start_fails(cluster: &Cluster, extra: &[&str]) -> String {
    let data = cluster.path().join("data");
    let mut args = vec!["node", "start", "--data-dir", data.to_str().unwrap(), "--no-mdns"];
    if !extra.contains(&"--listen") {
        args.extend(["--listen", "/ip4/127.0.0.1/tcp/0"]);
    }
    if !extra.contains(&"--http") {
        args.extend(["--http", "127.0.0.1:0"]);
    }
    args.extend(extra);
    let (ok, _, stderr) = mass(&args);
    assert!(!ok, "mass {args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Mesa's software Vulkan driver prints its own "error:" about XDG_RUNTIME_DIR
    // while the GPU is probed; that line is not ours.
    let errors: Vec<&str> =
        stderr.lines().filter(|l| l.starts_with("error: ") && !l.contains("XDG_RUNTIME_DIR")).collect();
    assert_eq!(errors.len(), 1, "expected one error line: {stderr}");
    errors[0].to_owned()
}

#[test]
fn bad_start_inputs_are_one_clear_sentence() {
    let cluster = Cluster::new();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let closed_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let bad_toml = cluster.path().join("bad.toml");
    std::fs::write(&bad_toml, "[net\nlisten = 3").unwrap();
    let typo_toml = cluster.path().join("typo.toml");
    std::fs::write(&typo_toml, "[membership]\nadvert_intervall = \"1s\"\n").unwrap();
    let quick_bootstrap = cluster.path().join("quick.toml");
    std::fs::write(
        &quick_bootstrap,
        "[net]\nbootstrap_timeout = \"1s\"\n[hardware]\nprobe_gpus = false\ngemm_size = 64\n",
    )
    .unwrap();
    let missing = cluster.path().join("missing.toml");
    let libp2p_busy = format!("/ip4/127.0.0.1/tcp/{busy_port}");
    let http_busy = format!("127.0.0.1:{busy_port}");
    let unreachable = format!("/ip4/127.0.0.1/tcp/{closed_port}");

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--config", bad_toml.to_str().unwrap()], "is invalid"),
        (vec!["--config", typo_toml.to_str().unwrap()], "unknown field `advert_intervall`"),
        (vec!["--config", missing.to_str().unwrap()], "cannot read config file"),
        (vec!["--listen", "/ip4/127.0.0.1/tcp/notaport"], "is not a valid multiaddr"),
        (vec!["--listen", &libp2p_busy], "Address already in use"),
        (vec!["--http", &http_busy], "cannot serve HTTP"),
        (vec!["--http", "localhost"], "is not a socket address"),
        (
            vec!["--config", quick_bootstrap.to_str().unwrap(), "--bootstrap", &unreachable],
            "could not reach any bootstrap peer",
        ),
        (vec!["--bootstrap", "/dns4/example"], "has no /tcp/PORT part"),
    ];
    for (args, expected) in cases {
        let error = start_fails(&cluster, &args);
        assert!(error.contains(expected), "{args:?}: '{error}' lacks '{expected}'");
    }
    drop(busy);
}

#[test]
fn missing_data_dir_is_named() {
    let (ok, _, stderr) = mass(&["node", "start", "--no-mdns"]);
    assert!(!ok);
    assert!(stderr.contains("no data directory given"), "{stderr}");
}

#[test]
fn corrupt_identity_key_is_refused_not_replaced() {
    let cluster = Cluster::new();
    let data = cluster.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("identity.key"), b"not a key").unwrap();
    let error = start_fails(&cluster, &[]);
    assert!(error.contains("identity key") && error.contains("is malformed"), "{error}");
    assert_eq!(std::fs::read(data.join("identity.key")).unwrap(), b"not a key", "the key file is left as it was");
}

#[test]
fn keygen_refuses_to_overwrite_a_key() {
    let cluster = Cluster::new();
    let key = cluster.path().join("swarm.key");
    assert!(mass(&["keygen", key.to_str().unwrap()]).0);
    let before = std::fs::read(&key).unwrap();
    let (ok, _, stderr) = mass(&["keygen", key.to_str().unwrap()]);
    assert!(!ok && stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn peers_against_no_node_names_the_address() {
    let (ok, _, stderr) = mass(&["peers", "--node", "http://127.0.0.1:9"]);
    assert!(!ok);
    assert!(stderr.contains("no node answered") && stderr.contains("127.0.0.1:9"), "{stderr}");
    let (ok, _, stderr) = mass(&["peers", "--node", "not a url"]);
    assert!(!ok && stderr.contains("is not a node URL"), "{stderr}");
}
