//! What a careless or hostile user can type: each mistake is one clear
//! sentence and a non-zero exit, never a panic.

use std::net::TcpListener;

use crate::support::{Cluster, mass, mass_exit};

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

/// A port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn exit_codes_tell_a_dead_node_from_bad_input() {
    let dead = format!("http://127.0.0.1:{}", closed_port());
    // No node answered: 3, whatever the command.
    for args in [vec!["peers", "--node", &dead], vec!["status", "--node", &dead], vec!["data", "ls", "--node", &dead]] {
        let (code, _, stderr) = mass_exit(&args, &[]);
        assert_eq!(code, Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains("no node answered"), "{stderr}");
    }
    // Bad input: 2, before any node is asked (so the dead node does not matter).
    let missing = std::env::temp_dir().join("mass-no-such-file.csv");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["peers", "--no-such-flag"], "unexpected argument"),
        (vec!["peers", "--node", "not a url"], "is not a node URL"),
        (vec!["train", "--dataset", "d", "--name", "m", "--task", "bogus", "--node", &dead], "--task bogus"),
        (vec!["train", "--dataset", "d", "--name", "m", "--model", "forest", "--node", &dead], "--model"),
        (vec!["data", "put", missing.to_str().unwrap(), "--name", "d", "--label", "y", "--node", &dead], "cannot read"),
        (
            vec!["data", "put", "x.csv", "--name", "d", "--label", "y", "--format", "xml", "--node", &dead],
            "--format xml",
        ),
        (vec!["predict", "m", "--rows", "{not json", "--node", &dead], "--rows is not valid JSON"),
        (vec!["node", "start", "--no-mdns"], "no data directory given"),
        (vec!["completions", "tcsh"], "invalid value 'tcsh'"),
    ];
    for (args, expected) in cases {
        let (code, _, stderr) = mass_exit(&args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: '{stderr}' lacks '{expected}'");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let (code, stdout, _) = mass_exit(&["--help"], &[]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("Exit codes:") && stdout.contains("3  no node answered"), "{stdout}");
}

#[test]
fn node_start_flags_come_from_mass_variables() {
    let cluster = Cluster::new();
    let data = cluster.path().join("data");
    // Each variable is read: a bad value in it is named as the flag's would be.
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("MASS_HTTP", "localhost")], "http: 'localhost' is not a socket address"),
        (vec![("MASS_LISTEN", "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/tcp/notaport")], "is not a valid multiaddr"),
        (vec![("MASS_BOOTSTRAP", "/dns4/example")], "has no /tcp/PORT part"),
        (vec![("MASS_CONFIG", "/no/such/mass.toml")], "cannot read config file /no/such/mass.toml"),
        (vec![("MASS_NO_MDNS", "maybe")], "invalid value 'maybe'"),
    ];
    for (env, expected) in cases {
        let mut env = env.clone();
        env.push(("MASS_DATA_DIR", data.to_str().unwrap()));
        if !env.iter().any(|(k, _)| *k == "MASS_NO_MDNS") {
            env.push(("MASS_NO_MDNS", "1"));
        }
        let (code, _, stderr) = mass_exit(&["node", "start"], &env);
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(expected), "{env:?}: '{stderr}' lacks '{expected}'");
    }
    // A flag wins over its variable.
    let (code, _, stderr) = mass_exit(
        &["node", "start", "--http", "nowhere"],
        &[("MASS_DATA_DIR", data.to_str().unwrap()), ("MASS_HTTP", "127.0.0.1:0"), ("MASS_NO_MDNS", "true")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("'nowhere' is not a socket address"), "{stderr}");
    let (_, help, _) = mass_exit(&["node", "start", "--help"], &[]);
    for variable in [
        "MASS_DATA_DIR",
        "MASS_LISTEN",
        "MASS_HTTP",
        "MASS_BOOTSTRAP",
        "MASS_NETWORK_KEY",
        "MASS_CONFIG",
        "MASS_NO_MDNS",
        "MASS_LOG",
    ] {
        assert!(help.contains(&format!("[env: {variable}")), "{variable} missing from:\n{help}");
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    let (code, bash, stderr) = mass_exit(&["completions", "bash"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    for word in ["status", "peers", "train", "predict", "completions", "--node"] {
        assert!(bash.contains(word), "bash completions lack {word}");
    }
    assert!(bash.contains("complete -F"), "not a bash completion script");
    for shell in ["zsh", "fish", "powershell"] {
        let (code, script, stderr) = mass_exit(&["completions", shell], &[]);
        assert_eq!(code, Some(0), "{shell}: {stderr}");
        assert!(script.contains("status") && script.contains("train"), "{shell}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_both_peers_up_and_an_ingested_dataset() {
    let mut cluster = Cluster::new();
    let nodes = crate::support::mesh(&mut cluster, 2).await;
    let csv = cluster.path().join("tiny.csv");
    let rows: String =
        (0..40).map(|i| format!("{},{},{}\n", i, (i * 7) % 11, if i % 3 == 0 { "a" } else { "b" })).collect();
    std::fs::write(&csv, format!("x,y,label\n{rows}")).unwrap();
    let url = nodes[0].http_url();
    let (code, stdout, stderr) = mass_exit(
        &[
            "data",
            "put",
            csv.to_str().unwrap(),
            "--name",
            "tiny",
            "--label",
            "label",
            "--shard-rows",
            "16",
            "--node",
            url,
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    // The node URL from MASS_NODE, as any client command.
    let (code, stdout, stderr) = mass_exit(&["status"], &[("MASS_NODE", url)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("PEERS     2 up, 0 down"), "{stdout}");
    for node in &nodes {
        let tail: String = node.peer_id().chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
        let line =
            stdout.lines().find(|l| l.contains(&format!("..{tail}"))).unwrap_or_else(|| panic!("{tail}: {stdout}"));
        assert!(line.split_whitespace().any(|w| w == "up"), "{line}");
    }
    assert!(stdout.contains("DATASETS  1, 40 rows in 3 shards"), "{stdout}");
    let tiny = stdout.lines().find(|l| l.trim_start().starts_with("tiny ")).unwrap_or_else(|| panic!("{stdout}"));
    let cells: Vec<&str> = tiny.split_whitespace().collect();
    assert_eq!(cells, ["tiny", "v1", "40", "3", "3"], "{tiny}");
    assert!(stdout.contains("JOBS      0 running") && stdout.contains("MODELS    0"), "{stdout}");

    let (code, json, stderr) = mass_exit(&["status", "--json", "--node", url], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["peers"].as_array().unwrap().len(), 2);
    assert_eq!(json["datasets"][0]["rows"], 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_exits_5_and_a_good_one_from_mass_token_file_works() {
    let mut cluster = Cluster::new();
    let node = cluster.spawn(&[]);
    let url = node.http_url().to_owned();
    let data_dir = node.options().data_dir.clone();
    // The data dir from MASS_DATA_DIR, as for `mass node start`.
    let (code, token, stderr) =
        mass_exit(&["token", "create", "--role", "read"], &[("MASS_DATA_DIR", data_dir.to_str().unwrap())]);
    assert_eq!(code, Some(0), "{stderr}");
    let token_file = cluster.path().join("read.token");
    std::fs::write(&token_file, token.trim()).unwrap();
    crate::support::eventually(std::time::Duration::from_secs(5), "the node notices its token", || async {
        mass_exit(&["peers", "--node", &url], &[]).0 == Some(5)
    })
    .await;
    let (code, _, stderr) = mass_exit(&["peers", "--node", &url, "--token", "mass_read_forged"], &[]);
    assert_eq!(code, Some(5), "{stderr}");
    // Read is not enough to train.
    let (code, _, stderr) = mass_exit(
        &["train", "--dataset", "d", "--name", "m", "--node", &url],
        &[("MASS_TOKEN_FILE", token_file.to_str().unwrap())],
    );
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("403"), "{stderr}");
    let (code, stdout, stderr) =
        mass_exit(&["status", "--node", &url], &[("MASS_TOKEN_FILE", token_file.to_str().unwrap())]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("PEERS     1 up"), "{stdout}");
    let (code, _, stderr) = mass_exit(&["peers", "--node", &url, "--token-file", "/no/such/token"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot read the token file /no/such/token"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_followed_job_that_is_cancelled_exits_4() {
    let mut cluster = Cluster::new();
    let node = cluster.spawn(&[]);
    let url = node.http_url().to_owned();
    let iris = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/iris.csv");
    let (code, _, stderr) =
        mass_exit(&["data", "put", iris.to_str().unwrap(), "--name", "iris", "--label", "label", "--node", &url], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    // Long enough to be cancelled while `mass train` follows it.
    let follower = std::process::Command::new(crate::support::MASS)
        .args(["train", "--dataset", "iris", "--name", "slow", "--model", "mlp:512,512", "--epochs", "5000"])
        .args(["--ensemble", "bagging:3", "--node", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = mass_sdk::Client::new([&url]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let id = loop {
        if let Some(job) = client.jobs().await.ok().and_then(|jobs| jobs.into_iter().next()) {
            break job.id.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "the job was never submitted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    client.cancel_job(&id).await.unwrap();
    let output = tokio::task::spawn_blocking(move || follower.wait_with_output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("job was cancelled"), "{stderr}");
}
