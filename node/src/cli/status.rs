//! `mass status`: the mesh at a glance. One call to each list endpoint
//! (peers, datasets, jobs, models), at once, shown as compact tables.

use clap::Args;
use mass_protocol::{
    api::{PeerState, PeerView},
    dataset::DatasetSummary,
    jobs::{JobRecord, JobState},
    serving::ModelSummary,
};

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub node: super::NodeArgs,
    /// Print the four lists as one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// What `mass status` shows, as the API answered it.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    pub peers: Vec<PeerView>,
    pub datasets: Vec<DatasetSummary>,
    pub jobs: Vec<JobRecord>,
    pub models: Vec<ModelSummary>,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let client = args.node.client()?;
    let (peers, datasets, jobs, models) =
        futures::try_join!(client.peers(), client.datasets(), client.jobs(), client.models())?;
    let status = Status { peers, datasets, jobs, models };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

/// The last 8 characters of a peer id, as `mass peers` shows it.
fn short(peer_id: &str) -> String {
    let tail: String = peer_id.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
    format!("..{tail}")
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Rows of cells as aligned columns, indented by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r.get(c).map_or(0, |s| s.chars().count())).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str("  ");
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn cells<const N: usize>(items: [&str; N]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn peer_row(peer: &PeerView) -> Vec<String> {
    let name = if peer.is_self { format!("{} (self)", short(&peer.peer_id)) } else { short(&peer.peer_id) };
    let state = peer.state.name();
    let (cores, memory, gflops, gpus) =
        match &peer.hardware {
            Some(hw) => (
                hw.cpu.cores.to_string(),
                gib(hw.memory_bytes),
                format!("{:.0}", hw.gemm_gflops),
                if hw.gpus.is_empty() {
                    "-".to_owned()
                } else {
                    hw.gpus
                        .iter()
                        .map(|g| {
                            if g.gflops > 0.0 {
                                format!("{} ({:.0} GFLOP/s)", g.name, g.gflops)
                            } else {
                                g.name.clone()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
            None => ("?".into(), "?".into(), "?".into(), "?".into()),
        };
    let (cpu, free, busy, queued) = match &peer.load {
        Some(load) => {
            let depth = |name: &str| load.queues.iter().find(|q| q.name == name).map_or(0, |q| u64::from(q.depth));
            // Compute work running now, by kind, beside the slots there are.
            let running: u64 = load
                .queues
                .iter()
                .filter(|q| {
                    q.name.starts_with("compute.")
                        && !["compute.free", crate::compute::SLOTS_QUEUE, "compute.waiting"].contains(&q.name.as_str())
                })
                .map(|q| u64::from(q.depth))
                .sum();
            (
                format!("{:.2}", load.cpu_load),
                gib(load.free_memory_bytes),
                format!("{running}/{}", depth(crate::compute::SLOTS_QUEUE)),
                (depth("net") + depth(crate::serving::INFERENCE_QUEUE) + depth("compute.waiting")).to_string(),
            )
        }
        None => ("?".into(), "?".into(), "?".into(), "?".into()),
    };
    vec![name, state.into(), cores, memory, gflops, gpus, cpu, free, busy, queued]
}

/// How far a job that has not finished has got.
fn progress(job: &JobRecord) -> String {
    let done = job.tasks.iter().filter(|t| t.weights.is_some()).count();
    let mut parts = vec![format!("{done}/{} sub-models", job.tasks.len())];
    if let Some(boost) = &job.boost {
        parts.push(format!("{} tree round(s)", boost.rounds.len()));
    }
    if job.rounds_done > 0 {
        parts.push(format!("{} averaging round(s)", job.rounds_done));
    }
    if !job.folds.is_empty() {
        let folds = job.folds.iter().filter(|t| t.weights.is_some()).count();
        parts.push(format!("{folds}/{} folds", job.folds.len()));
    }
    parts.join(", ")
}

fn state_name(state: &JobState) -> &'static str {
    match state {
        JobState::Pending => "pending",
        JobState::Running => "running",
        JobState::Completed => "completed",
        JobState::Failed(_) => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// The headline metric of the version a model serves.
fn metric(model: &ModelSummary) -> String {
    match (model.accuracy, model.r2) {
        (Some(accuracy), _) => format!("accuracy {accuracy:.4}"),
        (None, Some(r2)) => format!("r2 {r2:.4}"),
        (None, None) => "-".into(),
    }
}

/// The status as text for a terminal.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let up = status.peers.iter().filter(|p| p.state == PeerState::Up).count();
    out.push_str(&format!("PEERS     {up} up, {} down\n", status.peers.len() - up));
    let mut rows = vec![cells([
        "PEER",
        "STATE",
        "CORES",
        "MEMORY",
        "GFLOP/S",
        "GPUS",
        "CPU LOAD",
        "FREE",
        "SLOTS BUSY",
        "QUEUED",
    ])];
    rows.extend(status.peers.iter().map(peer_row));
    out.push_str(&table(&rows));

    let rows_total: u64 = status.datasets.iter().map(|d| d.rows).sum();
    let shards_total: usize = status.datasets.iter().map(|d| d.shards).sum();
    out.push_str(&format!("\nDATASETS  {}, {rows_total} rows in {shards_total} shards\n", status.datasets.len()));
    if !status.datasets.is_empty() {
        let mut rows = vec![cells(["NAME", "VERSION", "ROWS", "COLUMNS", "SHARDS"])];
        rows.extend(status.datasets.iter().map(|d| {
            vec![
                d.name.clone(),
                format!("v{}", d.version),
                d.rows.to_string(),
                d.columns.to_string(),
                d.shards.to_string(),
            ]
        }));
        out.push_str(&table(&rows));
    }

    let count = |name: &str| status.jobs.iter().filter(|j| state_name(&j.state) == name).count();
    out.push_str(&format!(
        "\nJOBS      {} running, {} pending, {} completed, {} failed, {} cancelled\n",
        count("running"),
        count("pending"),
        count("completed"),
        count("failed"),
        count("cancelled")
    ));
    let live: Vec<&JobRecord> = status.jobs.iter().filter(|j| !j.state.is_over()).collect();
    if !live.is_empty() {
        let mut rows = vec![cells(["JOB", "MODEL", "DATASET", "STATE", "PROGRESS"])];
        rows.extend(live.iter().map(|j| {
            vec![
                j.id.to_string().chars().take(12).collect(),
                j.spec.model.clone(),
                j.spec.dataset.clone(),
                state_name(&j.state).into(),
                progress(j),
            ]
        }));
        out.push_str(&table(&rows));
    }

    out.push_str(&format!("\nMODELS    {}\n", status.models.len()));
    if !status.models.is_empty() {
        let mut rows = vec![cells(["NAME", "SERVED", "VERSIONS", "METRIC"])];
        rows.extend(
            status
                .models
                .iter()
                .map(|m| vec![m.name.clone(), format!("v{}", m.version), m.versions.to_string(), metric(m)]),
        );
        out.push_str(&table(&rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_mesh_renders_counts_and_no_empty_tables() {
        let status = Status { peers: vec![], datasets: vec![], jobs: vec![], models: vec![] };
        let text = render(&status);
        assert!(text.contains("PEERS     0 up, 0 down"), "{text}");
        assert!(text.contains("DATASETS  0, 0 rows in 0 shards"), "{text}");
        assert!(text.contains("JOBS      0 running, 0 pending, 0 completed, 0 failed, 0 cancelled"), "{text}");
        assert!(text.contains("MODELS    0"), "{text}");
        assert!(!text.contains("NAME"), "{text}");
    }

    #[test]
    fn datasets_and_models_are_tabled_with_totals_and_metrics() {
        let id = mass_protocol::ContentId::of(b"x");
        let dataset = |name: &str, rows, shards| DatasetSummary {
            name: name.into(),
            manifest: id,
            version: 1,
            rows,
            columns: 5,
            shards,
        };
        let model = |name: &str, accuracy, r2| ModelSummary {
            name: name.into(),
            version: 3,
            manifest: id,
            versions: 3,
            accuracy,
            r2,
        };
        let status = Status {
            peers: vec![],
            datasets: vec![dataset("iris", 150, 3), dataset("wine", 178, 2)],
            jobs: vec![],
            models: vec![
                model("iris", Some(0.96667), None),
                model("diabetes", None, Some(0.5)),
                model("x", None, None),
            ],
        };
        let text = render(&status);
        assert!(text.contains("DATASETS  2, 328 rows in 5 shards"), "{text}");
        let iris = text.lines().find(|l| l.trim_start().starts_with("iris  ") && l.contains("150")).unwrap();
        assert!(iris.contains("v1") && iris.contains(" 3"), "{iris}");
        assert!(text.contains("accuracy 0.9667") && text.contains("r2 0.5000"), "{text}");
        assert!(text.lines().any(|l| l.trim_start().starts_with("x ") && l.trim_end().ends_with('-')), "{text}");
    }

    #[test]
    fn jobs_are_counted_by_state_and_unfinished_ones_show_progress() {
        use mass_protocol::jobs::TaskRecord;
        let spec = crate::fuzz::fixture::fixture().model_manifest.spec.clone();
        let shard = mass_protocol::ContentId::of(b"shard");
        let job = |n: u8, state: JobState, done: usize, tasks: usize| {
            let mut tasks: Vec<TaskRecord> = (0..tasks).map(|i| TaskRecord::new(vec![shard], i as u64)).collect();
            for task in tasks.iter_mut().take(done) {
                task.weights = Some(shard);
            }
            let spec = mass_protocol::jobs::JobSpec { model: format!("m{n}"), dataset: "iris".into(), ..spec.clone() };
            JobRecord { state, tasks, ..JobRecord::pending(mass_protocol::ContentId::of(&[n]), spec) }
        };
        let status = Status {
            peers: vec![],
            datasets: vec![],
            jobs: vec![
                job(1, JobState::Running, 2, 5),
                job(2, JobState::Completed, 3, 3),
                job(3, JobState::Failed("out of memory".into()), 0, 1),
                job(4, JobState::Pending, 0, 0),
                job(5, JobState::Completed, 1, 1),
            ],
            models: vec![],
        };
        let text = render(&status);
        assert!(text.contains("JOBS      1 running, 1 pending, 2 completed, 1 failed, 0 cancelled"), "{text}");
        let running = text.lines().find(|l| l.contains(" m1 ")).unwrap_or_else(|| panic!("{text}"));
        assert!(
            running.contains("iris") && running.contains("running") && running.contains("2/5 sub-models"),
            "{running}"
        );
        assert!(text.lines().any(|l| l.contains(" m4 ") && l.contains("pending")), "{text}");
        assert!(!text.contains(" m2 ") && !text.contains(" m3 "), "finished jobs are only counted: {text}");
    }

    #[test]
    fn peers_show_state_hardware_and_load() {
        use mass_protocol::{CpuInfo, HardwareProfile, Load, QueueDepth};
        let peer = |id: &str, state, load: Option<Load>| PeerView {
            peer_id: id.into(),
            is_self: id.ends_with('1'),
            addresses: vec![],
            http_addr: None,
            state,
            last_seen: 0,
            hardware: Some(HardwareProfile {
                cpu: CpuInfo { model: "EPYC".into(), cores: 16 },
                memory_bytes: 64 << 30,
                gemm_gflops: 412.4,
                gpus: vec![],
                bridges: vec![],
                capacity_gflops: 412.4,
            }),
            load,
        };
        let queue = |name: &str, depth| QueueDepth { name: name.into(), depth };
        let load = Load {
            free_memory_bytes: 32 << 30,
            cpu_load: 0.5,
            queues: vec![
                queue("net", 1),
                queue(crate::serving::INFERENCE_QUEUE, 2),
                queue("compute.training", 3),
                queue("compute.waiting", 4),
                queue("compute.free", 0),
                queue(crate::compute::SLOTS_QUEUE, 3),
            ],
        };
        let mut down = peer("peer-00000002", PeerState::Down, None);
        down.hardware = None;
        let status = Status {
            peers: vec![peer("peer-00000001", PeerState::Up, Some(load)), down],
            datasets: vec![],
            jobs: vec![],
            models: vec![],
        };
        let text = render(&status);
        assert!(text.contains("PEERS     1 up, 1 down"), "{text}");
        let up: Vec<&str> = text.lines().find(|l| l.contains("..00000001")).unwrap().split_whitespace().collect();
        assert_eq!(
            up,
            ["..00000001", "(self)", "up", "16", "64.0", "GiB", "412", "-", "0.50", "32.0", "GiB", "3/3", "7"]
        );
        let down: Vec<&str> = text.lines().find(|l| l.contains("..00000002")).unwrap().split_whitespace().collect();
        assert_eq!(down, ["..00000002", "down", "?", "?", "?", "?", "?", "?", "?", "?"]);
    }

    #[test]
    fn short_ids_keep_the_tail() {
        assert_eq!(short("12D3KooWabcdefgh12345678"), "..12345678");
        assert_eq!(short("abc"), "..abc");
    }
}
