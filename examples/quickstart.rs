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

    for (i, client) in clients.iter().enumerate() {
        println!("Peer table of node {i}:");
        print!("{}", mass_node_table(&client.peers().await?));
        println!();
    }

    for node in &mut nodes {
        node.stop(Duration::from_secs(10));
    }
    println!("Mesh stopped.");
    Ok(())
}

fn is_formed(peers: &[PeerView]) -> bool {
    peers.len() == NODES && peers.iter().all(|p| p.state == PeerState::Up && p.hardware.is_some())
}

/// The same table `mass peers` prints, built from the SDK's types.
fn mass_node_table(peers: &[PeerView]) -> String {
    let mut out = String::new();
    for p in peers {
        let hw = p.hardware.as_ref().expect("formed mesh has hardware");
        let gpus = if hw.gpus.is_empty() {
            "no GPU".to_owned()
        } else {
            hw.gpus.iter().map(|g| format!("{} via {}", g.name, g.backend)).collect::<Vec<_>>().join(", ")
        };
        out.push_str(&format!(
            "  {}{}  {:?}  {} x {}  {:.1} GiB  GEMM {:.0} GFLOP/s  {}\n",
            p.peer_id,
            if p.is_self { " (self)" } else { "" },
            p.state,
            hw.cpu.cores,
            hw.cpu.model,
            hw.memory_bytes as f64 / (1u64 << 30) as f64,
            hw.gemm_gflops,
            gpus
        ));
    }
    out
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mass-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
