//! mDNS: two nodes with no bootstrap address find each other on a LAN.
//!
//! mDNS skips loopback, so the LAN is two network namespaces joined by a veth
//! pair, made (and removed) by this test. Where namespaces cannot be created
//! (no root, no iproute2: `scripts/setup.sh` installs it) the test fails,
//! saying why: a test that cannot run does not pass.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use mass_sdk::{api::PeerView, local::NodeOptions};

use crate::support::{Cluster, MASS, ip, read_log};

/// Two namespaces and a veth pair between them; removed on drop.
struct Lan {
    namespaces: [String; 2],
    addresses: [String; 2],
}

impl Lan {
    fn create() -> Result<Self, String> {
        let tag = std::process::id() % 100_000;
        let lan = Self {
            namespaces: [format!("mass-a-{tag}"), format!("mass-b-{tag}")],
            addresses: ["10.231.7.1".into(), "10.231.7.2".into()],
        };
        let (veth_a, veth_b) = (format!("mva{tag}"), format!("mvb{tag}"));
        for ns in &lan.namespaces {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "link",
            "add",
            &veth_a,
            "netns",
            &lan.namespaces[0],
            "type",
            "veth",
            "peer",
            "name",
            &veth_b,
            "netns",
            &lan.namespaces[1],
        ])?;
        for (i, veth) in [&veth_a, &veth_b].into_iter().enumerate() {
            let ns = &lan.namespaces[i];
            ip(&["-n", ns, "addr", "add", &format!("{}/24", lan.addresses[i]), "dev", veth])?;
            ip(&["-n", ns, "link", "set", veth, "multicast", "on", "up"])?;
        }
        Ok(lan)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "delete", ns]);
        }
    }
}

/// Kills the wrapped process on drop.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peers_in(ns: &str, url: &str) -> Vec<PeerView> {
    let output =
        Command::new("ip").args(["netns", "exec", ns, MASS, "peers", "--json", "--node", url]).output().unwrap();
    serde_json::from_slice(&output.stdout).unwrap_or_default()
}

#[test]
fn two_nodes_without_bootstrap_find_each_other_by_mdns() {
    let lan = match Lan::create() {
        Ok(lan) => lan,
        Err(reason) => panic!(
            "network namespaces unavailable ({reason}); this test needs root and iproute2 (scripts/setup.sh installs it)"
        ),
    };
    let cluster = Cluster::new();
    let mut nodes = Vec::new();
    for (i, ns) in lan.namespaces.iter().enumerate() {
        let mut options = NodeOptions::new(MASS, cluster.path().join(format!("node{i}")));
        options.config = Some(cluster.path().join("node.toml"));
        options.log_file = Some(cluster.path().join(format!("node{i}.log")));
        let local = mass_sdk::local::LocalNode::command(&options).unwrap();
        // Same command, but inside the namespace, on its LAN address, with mDNS.
        let mut args: Vec<String> = local.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let listen = args.iter().position(|a| a == "/ip4/127.0.0.1/tcp/0").unwrap();
        args[listen] = format!("/ip4/{}/tcp/0", lan.addresses[i]);
        args.retain(|a| a != "--no-mdns");
        let log = std::fs::File::create(options.log_file.as_ref().unwrap()).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, MASS])
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut proc = Proc(child);
        let endpoints = mass_sdk::local::wait_for_endpoints(&options.data_dir, &mut proc.0, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}\n{}", read_log(options.log_file.as_ref().unwrap())));
        nodes.push((proc, endpoints));
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = nodes.iter().enumerate().all(|(i, (_, me))| {
            let other = &nodes[1 - i].1;
            peers_in(&lan.namespaces[i], &me.http_url)
                .iter()
                .any(|p| p.peer_id == other.peer_id && p.hardware.is_some())
        });
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not find each other by mDNS\n{}\n{}",
            read_log(&cluster.path().join("node0.log")),
            read_log(&cluster.path().join("node1.log"))
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(nodes);
    drop(lan);
}
