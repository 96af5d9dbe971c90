//! What the node benchmarks share: the shared datasets and a local mesh.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use mass_sdk::local::{LocalNode, NodeOptions};

/// A file of `../shared/datasets`, found from the crate's directory at run time.
pub fn shared(name: &str) -> PathBuf {
    repo().join("../shared/datasets").join(name)
}

/// The repository's root.
#[allow(dead_code)] // not every bench needs it
pub fn repo() -> PathBuf {
    let node =
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    node.join("..")
}

/// Starts `n` release nodes under `work`, the others joining through the
/// first, with a short hardware probe and no hot-model copies; gives them
/// time to meet.
pub async fn local_mesh(work: &Path, n: usize) -> Vec<LocalNode> {
    let config = work.join("bench.toml");
    // Hot-model copies off: the serving bench measures forwarding as such.
    std::fs::write(&config, "[hardware]\nprobe_gpus = false\ngemm_size = 64\n\n[serving]\nhot_after = 0\n").unwrap();
    let mut nodes: Vec<LocalNode> = Vec::new();
    for i in 0..n {
        let mut options = NodeOptions::new(env!("CARGO_BIN_EXE_mass"), work.join(format!("n{i}")));
        options.config = Some(config.clone());
        options.log_file = Some(work.join(format!("n{i}.log")));
        options.bootstrap = nodes.first().map(|n| vec![n.listen_addr().to_owned()]).unwrap_or_default();
        nodes.push(LocalNode::spawn(options, Duration::from_secs(60)).unwrap());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    nodes
}
