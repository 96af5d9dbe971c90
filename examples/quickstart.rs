//! Quickstart: a local Mass mesh of three nodes.
//!
//! Starts three `mass` processes on 127.0.0.1, the second and third joining
//! through the first, waits until every node lists every other as up with its
//! measured hardware, prints each node's peer table, and stops the mesh.
//!
//! Run it with `bash scripts/quickstart.sh` (which builds `mass` first).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mass_sdk::{
    Client,
    api::{PeerState, PeerView},
    local::{LocalNode, NodeOptions, find_mass_binary},
};

const NODES: usize = 3;
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let binary = find_mass_binary()?;
    let work = tempfile_dir()?;
    println!("Starting a mesh of {NODES} nodes on 127.0.0.1 (data under {})", work.display());

    let started = Instant::now();
    let mut nodes: Vec<LocalNode> = Vec::new();
    for i in 0..NODES {
        let mut options = NodeOptions::new(&binary, work.join(format!("node{i}")));
        options.log_file = Some(work.join(format!("node{i}.log")));
        if let Some(first) = nodes.first() {
            options.bootstrap.push(first.listen_addr().to_owned());
        }
        let node = LocalNode::spawn(options, Duration::from_secs(60)).with_context(|| format!("starting node {i}"))?;
        println!("  node {i}: peer {} | HTTP {} | libp2p {}", node.peer_id(), node.http_url(), node.listen_addr());
        nodes.push(node);
    }

    let clients = nodes.iter().map(|n| Client::new([n.http_url()])).collect::<Result<Vec<_>, _>>()?;
    let deadline = Instant::now() + FORM_TIMEOUT;
    loop {
        let mut formed = true;
        for client in &clients {
            formed &= is_formed(&client.peers().await?);
        }
        if formed {
            break;
        }
        if Instant::now() > deadline {
            bail!("the mesh did not form within {FORM_TIMEOUT:?}; node logs are in {}", work.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("Mesh formed in {:.1} s: every node sees {NODES} nodes up.\n", started.elapsed().as_secs_f64());

    for (i, node) in nodes.iter().enumerate() {
        println!("$ mass peers --node {}    # node {i}", node.http_url());
        let status = std::process::Command::new(&binary).args(["peers", "--node", node.http_url()]).status()?;
        if !status.success() {
            bail!("mass peers failed for node {i}");
        }
        println!();
    }

    for node in &mut nodes {
        node.stop(Duration::from_secs(10));
    }
    std::fs::remove_dir_all(&work).ok();
    println!("Mesh stopped.");
    Ok(())
}

fn is_formed(peers: &[PeerView]) -> bool {
    peers.len() == NODES && peers.iter().all(|p| p.state == PeerState::Up && p.hardware.is_some())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mass-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
