//! `mass peers`: the peer table of a node, as a table or JSON.

use clap::Args;
use mass_protocol::{Load, api::PeerView};

#[derive(Debug, Args)]
pub struct PeersArgs {
    #[command(flatten)]
    pub node: super::NodeArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: PeersArgs) -> anyhow::Result<()> {
    let client = args.node.client()?;
    let peers = client.peers().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&peers)?);
    } else {
        print!("{}", render(&peers));
    }
    Ok(())
}

/// A node's share of the mesh's work: the models it serves as a replica
/// and the pieces of work it has done, by kind.
fn share(load: &Load) -> String {
    let replicas = load.queues.iter().find(|q| q.name == crate::serving::REPLICAS_QUEUE).map_or(0, |q| q.depth);
    let done: Vec<String> = load
        .queues
        .iter()
        .filter_map(|q| Some(format!("{} {}", q.name.strip_prefix(crate::compute::DONE_PREFIX)?, q.depth)))
        .collect();
    let done = if done.is_empty() { "nothing".to_owned() } else { done.join(", ") };
    format!("replica of {replicas} model(s), done: {done}")
}

/// Formats the peer table for a terminal.
pub fn render(peers: &[PeerView]) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let mut rows = vec![[
        "PEER".to_owned(),
        "STATE".into(),
        "SEEN".into(),
        "CPU".into(),
        "CORES".into(),
        "MEMORY".into(),
        "GEMM".into(),
        "GPUS".into(),
        "BRIDGES".into(),
        "LOAD".into(),
        "SHARE".into(),
    ]];
    for peer in peers {
        let short = peer.peer_id.chars().rev().take(8).collect::<String>().chars().rev().collect::<String>();
        let name = if peer.is_self { format!("..{short} (self)") } else { format!("..{short}") };
        let state = peer.state.name();
        let seen = format!("{:.1}s ago", now.saturating_sub(peer.last_seen) as f64 / 1000.0);
        let (cpu, cores, memory, gemm, gpus, bridges) = match &peer.hardware {
            Some(hw) => (
                hw.cpu.model.clone(),
                hw.cpu.cores.to_string(),
                format!("{:.1} GiB", hw.memory_bytes as f64 / (1u64 << 30) as f64),
                if (hw.capacity_gflops - hw.gemm_gflops).abs() > 0.5 {
                    format!("{:.0} GFLOP/s (offers {:.0})", hw.gemm_gflops, hw.capacity_gflops)
                } else {
                    format!("{:.0} GFLOP/s", hw.gemm_gflops)
                },
                if hw.gpus.is_empty() {
                    "none".to_owned()
                } else {
                    hw.gpus
                        .iter()
                        .map(|g| match g.gflops {
                            f if f > 0.0 => format!("{} ({}, {f:.0} GFLOP/s)", g.name, g.backend),
                            _ => format!("{} ({})", g.name, g.backend),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                if hw.bridges.is_empty() {
                    "none".to_owned()
                } else {
                    hw.bridges
                        .iter()
                        .map(|b| {
                            format!(
                                "{}:{} {:?} {} {:.0} rows/s, {} model(s)",
                                b.name, b.kind, b.status, b.precision, b.rows_per_s, b.models
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
            None => ("?".into(), "?".into(), "?".into(), "?".into(), "?".into(), "?".into()),
        };
        let load = peer
            .load
            .as_ref()
            .map(|l| {
                let depth = |name: &str| l.queues.iter().find(|q| q.name == name).map_or(0, |q| q.depth);
                let work: Vec<String> = l
                    .queues
                    .iter()
                    .filter(|q| {
                        q.depth > 0
                            && q.name.starts_with("compute.")
                            && !["compute.free", "compute.slots"].contains(&q.name.as_str())
                    })
                    .map(|q| format!("{} {}", q.name.trim_start_matches("compute."), q.depth))
                    .collect();
                format!(
                    "cpu {:.2}, free {:.1} GiB, queued {}, working: {}",
                    l.cpu_load,
                    l.free_memory_bytes as f64 / (1u64 << 30) as f64,
                    depth("net") + depth(crate::serving::INFERENCE_QUEUE),
                    if work.is_empty() { "idle".to_owned() } else { work.join(", ") }
                )
            })
            .unwrap_or_else(|| "?".into());
        let share = peer.load.as_ref().map_or_else(|| "?".into(), share);
        rows.push([name, state.into(), seen, cpu, cores, memory, gemm, gpus, bridges, load, share]);
    }
    let widths: Vec<usize> = (0..11).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use mass_protocol::QueueDepth;

    use super::*;

    fn load(queues: &[(&str, u32)]) -> Load {
        Load {
            free_memory_bytes: 0,
            cpu_load: 0.0,
            queues: queues.iter().map(|(name, depth)| QueueDepth { name: (*name).into(), depth: *depth }).collect(),
        }
    }

    #[test]
    fn the_share_column_names_replicas_and_work_done_by_kind() {
        let busy =
            load(&[("compute.training", 1), ("done.training", 4), ("done.evaluation", 2), ("serving.replicas", 3)]);
        assert_eq!(share(&busy), "replica of 3 model(s), done: training 4, evaluation 2");
        assert_eq!(share(&load(&[("compute.free", 2)])), "replica of 0 model(s), done: nothing");
    }
}
