//! `mass train` and `mass jobs`: training jobs, followed with a progress bar.

use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mass_protocol::{
    features::{PipelineSpec, Scale},
    jobs::{EnsembleSpec, JobRecord, JobSpec, JobState, LiveTask, ModelSpec},
};

use super::NodeArgs;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset to train on (its training rows; evaluated on its test rows).
    #[arg(long)]
    dataset: String,
    /// Name of the model (stored as model/NAME).
    #[arg(long)]
    name: String,
    /// `softmax` (softmax regression) or `mlp:W1,W2,...` (hidden widths).
    #[arg(long, default_value = "mlp:128")]
    model: String,
    /// `single`, `bagging:N` (N sub-models trained where their shards live),
    /// `stacking:N` (as bagging, combined by a meta-model on held-out rows), or
    /// `data-parallel:WORKERS:ROUNDS` (one model, averaged between workers after each round).
    #[arg(long, default_value = "single")]
    ensemble: String,
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f32,
    /// L2 penalty on the weights.
    #[arg(long, default_value_t = 1e-4)]
    l2: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Feature scaling of numeric columns: standard, min-max or none.
    #[arg(long, default_value = "standard")]
    scale: String,
    /// Return after submitting instead of following the job.
    #[arg(long)]
    detach: bool,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs and their states.
    Ls(NodeArgs),
    /// Show a job's record: state, drivers, tasks and where they ran, metrics.
    Show {
        id: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Cancel a job that has not finished.
    Cancel {
        id: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

fn parse_model(text: &str) -> anyhow::Result<Vec<usize>> {
    match text.split_once(':') {
        None if text == "softmax" || text == "logistic" => Ok(vec![]),
        Some(("mlp", widths)) => widths
            .split(',')
            .map(|w| {
                w.trim().parse::<usize>().map_err(|_| anyhow::anyhow!("--model {text}: '{w}' is not a layer width"))
            })
            .collect(),
        _ => anyhow::bail!("--model {text}: expected softmax or mlp:WIDTH[,WIDTH...]"),
    }
}

fn parse_scale(text: &str) -> anyhow::Result<Scale> {
    match text {
        "standard" => Ok(Scale::Standard),
        "min-max" | "minmax" => Ok(Scale::MinMax),
        "none" => Ok(Scale::None),
        _ => anyhow::bail!("--scale {text}: expected standard, min-max or none"),
    }
}

fn parse_ensemble(text: &str) -> anyhow::Result<EnsembleSpec> {
    match text.split_once(':') {
        None if text == "single" => Ok(EnsembleSpec::Single),
        Some(("data-parallel", rest)) => {
            let (workers, rounds) = rest
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--ensemble {text}: expected data-parallel:WORKERS:ROUNDS"))?;
            let count =
                |v: &str| v.parse::<usize>().map_err(|_| anyhow::anyhow!("--ensemble {text}: '{v}' is not a count"));
            Ok(EnsembleSpec::DataParallel { workers: count(workers)?, rounds: count(rounds)? })
        }
        Some(("bagging", n)) => Ok(EnsembleSpec::Bagging {
            members: n.parse().map_err(|_| anyhow::anyhow!("--ensemble {text}: '{n}' is not a count"))?,
        }),
        Some(("stacking", n)) => Ok(EnsembleSpec::Stacking {
            members: n.parse().map_err(|_| anyhow::anyhow!("--ensemble {text}: '{n}' is not a count"))?,
        }),
        _ => anyhow::bail!("--ensemble {text}: expected single, bagging:N, stacking:N or data-parallel:WORKERS:ROUNDS"),
    }
}

fn summary(record: &JobRecord) -> String {
    let done = record.tasks.iter().filter(|t| t.weights.is_some()).count();
    let nodes: std::collections::BTreeSet<&String> = record.tasks.iter().filter_map(|t| t.peer.as_ref()).collect();
    format!("{:?}: {done}/{} sub-models trained on {} node(s)", record.state, record.tasks.len(), nodes.len())
}

/// The running tasks' epochs and losses, for the progress line.
fn epochs(record: &JobRecord, live: &[LiveTask]) -> String {
    // A task still at work has not reported its last epoch.
    let running: Vec<&LiveTask> =
        live.iter().filter(|t| t.epoch < t.epochs && (t.task as usize) < record.tasks.len()).collect();
    if running.is_empty() {
        return String::new();
    }
    let nodes: std::collections::BTreeSet<&str> = running.iter().map(|t| t.peer.as_str()).collect();
    let epoch = running.iter().map(|t| t.epoch).min().unwrap_or(0);
    let loss = running.iter().map(|t| t.loss).sum::<f64>() / running.len() as f64;
    let epochs = running[0].epochs;
    format!(" | epoch {epoch}/{epochs}, loss {loss:.4}, {} task(s) at work on {} node(s)", running.len(), nodes.len())
}

fn print_record(record: &JobRecord) {
    println!("job {}  model/{}  {}", record.id, record.spec.model, summary(record));
    println!("driven by: {}", record.drivers.join(" then "));
    for (i, task) in record.tasks.iter().enumerate() {
        println!(
            "  sub-model {i}: {} shard(s), {} rows, on {}, final training loss {}, test accuracy {}",
            task.shards.len(),
            task.rows,
            task.peer.as_deref().unwrap_or("-"),
            task.curve.last().map(|l| format!("{l:.4}")).unwrap_or_else(|| "-".into()),
            task.test_accuracy.map(|a| format!("{a:.4}")).unwrap_or_else(|| "-".into())
        );
    }
    if let Some(e) = &record.evaluation {
        println!(
            "test rows {}  accuracy {:.4}  macro F1 {:.4}  log-loss {:.4}",
            e.rows, e.accuracy, e.macro_f1, e.log_loss
        );
    }
    if let Some(model) = &record.model {
        println!("model manifest {model}");
    }
}

pub async fn train(args: TrainArgs) -> anyhow::Result<()> {
    let spec = JobSpec {
        model: args.name,
        dataset: args.dataset,
        pipeline: PipelineSpec { scale: parse_scale(&args.scale)?, ..Default::default() },
        spec: ModelSpec {
            hidden: parse_model(&args.model)?,
            epochs: args.epochs,
            batch_size: args.batch_size,
            learning_rate: args.learning_rate,
            l2: args.l2,
        },
        ensemble: parse_ensemble(&args.ensemble)?,
        seed: args.seed,
    };
    let client = args.node.client()?;
    let id = client.submit_job(&spec).await?.to_string();
    println!("job {id}");
    if args.detach {
        return Ok(());
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
    bar.enable_steady_tick(Duration::from_millis(120));
    let record = loop {
        match client.job(&id).await {
            Ok(record) => {
                let live = client.job_progress(&id).await.unwrap_or_default();
                bar.set_message(format!("{}{}", summary(&record), epochs(&record, &live)));
                if record.state.is_over() {
                    break record;
                }
            }
            Err(e) => bar.set_message(format!("waiting: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    bar.finish_and_clear();
    print_record(&record);
    match &record.state {
        JobState::Failed(reason) => anyhow::bail!("job failed: {reason}"),
        JobState::Cancelled => anyhow::bail!("job was cancelled"),
        _ => {}
    }
    Ok(())
}

pub async fn jobs(command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::Ls(node) => {
            for record in node.client()?.jobs().await? {
                println!("{}  model/{}  {}", record.id, record.spec.model, summary(&record));
            }
        }
        JobsCommand::Show { id, node } => print_record(&node.client()?.job(&id).await?),
        JobsCommand::Cancel { id, node } => {
            let record = node.client()?.cancel_job(&id).await?;
            println!("job {} cancelled", record.id);
        }
    }
    Ok(())
}
