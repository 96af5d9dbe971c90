//! `mass train` and `mass jobs`: training jobs, followed with a progress bar.

use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mass_protocol::{
    features::{PipelineSpec, Scale},
    jobs::{
        EnsembleSpec, JobRecord, JobSpec, JobState, Learner, LiveTask, ModelSpec, Placement, RegressionLoss, Task,
        TreeSpec,
    },
};

use super::{NodeArgs, exit::JobFailed};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset to train on (its training rows; evaluated on its test rows).
    #[arg(long)]
    pub dataset: String,
    /// Name of the model (stored as model/NAME).
    #[arg(long)]
    pub name: String,
    /// `linear` (softmax/logistic regression for classes, ridge for numbers;
    /// also `softmax`, `logistic`, `ridge`), `mlp:W1,W2,...` (hidden widths)
    /// or `gbdt` (gradient-boosted trees).
    #[arg(long, default_value = "mlp:128")]
    model: String,
    /// `classification` or `regression`; inferred from the label when omitted.
    #[arg(long)]
    task: Option<String>,
    /// `single`, `bagging:N` (N sub-models trained where their shards live),
    /// `stacking:N` (as bagging, combined by a meta-model on held-out rows),
    /// `boosting:N` (N sub-models one after another, each on what the ones before got wrong), or
    /// `data-parallel:WORKERS:ROUNDS` (one model, averaged between workers after each round).
    #[arg(long, default_value = "single")]
    ensemble: String,
    /// Epochs of a network (L-BFGS iterations at most for linear models).
    /// Default: as many as converge (a step budget with early stopping).
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Default: 0.001 for networks, 0.1 for trees.
    #[arg(long)]
    learning_rate: Option<f64>,
    /// L2 penalty on the weights (on leaf values for trees). Default: the learner's.
    #[arg(long)]
    l2: Option<f32>,
    /// Regression loss: `squared` or `huber[:DELTA]` (DELTA in target standard deviations, default 1).
    #[arg(long, default_value = "squared")]
    loss: String,
    /// Epochs (or boosting rounds) without a better validation loss before stopping; 0: never.
    #[arg(long)]
    patience: Option<usize>,
    /// Trees: boosting rounds.
    #[arg(long, default_value_t = 100)]
    trees: usize,
    /// Trees: leaves per tree at most.
    #[arg(long, default_value_t = 31)]
    leaves: usize,
    /// Trees: depth at most (0: no limit).
    #[arg(long, default_value_t = 0)]
    max_depth: usize,
    /// Trees: training rows per leaf at least.
    #[arg(long, default_value_t = 20)]
    min_rows: u64,
    /// Trees: fraction of rows each round samples.
    #[arg(long, default_value_t = 1.0)]
    row_fraction: f64,
    /// Trees: fraction of features each tree may use.
    #[arg(long, default_value_t = 1.0)]
    feature_fraction: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Feature scaling of numeric columns: standard, min-max or none.
    #[arg(long, default_value = "standard")]
    scale: String,
    /// A crossed pair of columns, `A*B` (repeatable): two numeric columns
    /// give their product, two categorical ones their hashed pair.
    #[arg(long)]
    cross: Vec<String>,
    /// Replace the numeric columns by this many principal components.
    #[arg(long)]
    pca: Option<usize>,
    /// Replace each numeric column by indicators of this many quantile bins.
    #[arg(long)]
    bins: Option<usize>,
    /// Where sub-models train: `capacity` (where each finishes soonest, by
    /// the nodes' measured speed and load) or `uniform` (evenly).
    #[arg(long, default_value = "capacity")]
    placement: String,
    /// K-fold cross-validation: K more models of the learner, each trained
    /// without one fold of the training rows and scored on it (2 to 20).
    #[arg(long)]
    cv: Option<u32>,
    /// Return after submitting instead of following the job.
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub node: NodeArgs,
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

fn parse_learner(args: &TrainArgs) -> anyhow::Result<Learner> {
    Ok(match Learner::parse(&args.model).map_err(|e| anyhow::anyhow!("--{e}"))? {
        Learner::Gbdt(_) => Learner::Gbdt(TreeSpec {
            trees: args.trees,
            leaves: args.leaves,
            max_depth: args.max_depth,
            min_rows: args.min_rows,
            learning_rate: args.learning_rate.unwrap_or(TreeSpec::default().learning_rate),
            l2: args.l2.map_or(0.0, f64::from),
            row_fraction: args.row_fraction,
            feature_fraction: args.feature_fraction,
            ..TreeSpec::default()
        }),
        other => other,
    })
}

fn parse_task(text: Option<&str>) -> anyhow::Result<Option<Task>> {
    match text {
        None => Ok(None),
        Some("classification" | "classify") => Ok(Some(Task::Classification)),
        Some("regression" | "regress") => Ok(Some(Task::Regression)),
        Some(other) => anyhow::bail!("--task {other}: expected classification or regression"),
    }
}

fn parse_loss(text: &str) -> anyhow::Result<RegressionLoss> {
    match text.split_once(':') {
        None if text == "squared" => Ok(RegressionLoss::Squared),
        None if text == "huber" => Ok(RegressionLoss::Huber { delta: 1.0 }),
        Some(("huber", delta)) => Ok(RegressionLoss::Huber {
            delta: delta.parse().map_err(|_| anyhow::anyhow!("--loss {text}: '{delta}' is not a number"))?,
        }),
        _ => anyhow::bail!("--loss {text}: expected squared or huber[:DELTA]"),
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
            "  sub-model {i}: {} shard(s), {} rows, on {}{}, final training loss {}, test score {}",
            task.shards.len(),
            task.rows,
            task.peer.as_deref().unwrap_or("-"),
            if task.backend.is_empty() { String::new() } else { format!(" ({})", task.backend) },
            task.curve.last().map(|l| format!("{l:.4}")).unwrap_or_else(|| "-".into()),
            task.test_score.map(|a| format!("{a:.4}")).unwrap_or_else(|| "-".into())
        );
        if let Some(weight) = task.weight {
            println!("    weight in the ensemble {weight:.4}");
        }
    }
    if let Some(boost) = &record.boost {
        let best = boost.best.map(|(r, l)| format!(", best validation loss {l:.4} at round {}", r + 1));
        println!(
            "  trees: {} round(s) grown across {} node(s){}{}",
            boost.rounds.len(),
            boost.workers.len(),
            best.unwrap_or_default(),
            if boost.stopped { ", stopped early" } else { "" }
        );
        for (peer, shards) in &boost.workers {
            println!("    {peer} holds the rows of {} shard(s)", shards.len());
        }
    }
    for (k, fold) in record.folds.iter().enumerate() {
        println!(
            "  fold {k}: trained on {}{}, score on its rows {}",
            fold.peer.as_deref().unwrap_or("-"),
            if fold.backend.is_empty() { String::new() } else { format!(" ({})", fold.backend) },
            fold.test_score.map(|a| format!("{a:.4}")).unwrap_or_else(|| "-".into())
        );
    }
    if let Some(e) = &record.evaluation {
        println!("{}", e.line());
    }
    if let Some(model) = &record.model {
        println!("model manifest {model}");
    }
}

/// The job spec the flags describe.
pub fn job_spec(args: &TrainArgs) -> anyhow::Result<JobSpec> {
    let learner = parse_learner(args)?;
    let network_rate = args.learning_rate.map_or(ModelSpec::default().learning_rate, |r| r as f32);
    let spec = JobSpec {
        pipeline: PipelineSpec {
            scale: Scale::parse(&args.scale).map_err(|e| anyhow::anyhow!("--{e}"))?,
            cross: args
                .cross
                .iter()
                .map(|pair| {
                    pair.split_once('*')
                        .map(|(a, b)| (a.trim().to_owned(), b.trim().to_owned()))
                        .ok_or_else(|| anyhow::anyhow!("--cross {pair}: expected COLUMN*COLUMN"))
                })
                .collect::<anyhow::Result<_>>()?,
            pca: args.pca,
            bins: args.bins,
            ..Default::default()
        },
        spec: ModelSpec {
            learner,
            epochs: args.epochs,
            batch_size: args.batch_size,
            learning_rate: network_rate,
            l2: args.l2,
            loss: parse_loss(&args.loss)?,
            patience: args.patience,
        },
        ensemble: EnsembleSpec::parse(&args.ensemble).map_err(|e| anyhow::anyhow!("--{e}"))?,
        seed: args.seed,
        task: parse_task(args.task.as_deref())?,
        placement: match args.placement.as_str() {
            "capacity" => Placement::Capacity,
            "uniform" => Placement::Uniform,
            other => anyhow::bail!("--placement {other}: expected capacity or uniform"),
        },
        trial: None,
        cv: args.cv,
        model: args.name.clone(),
        dataset: args.dataset.clone(),
    };
    Ok(spec)
}

pub async fn train(args: TrainArgs) -> anyhow::Result<()> {
    let spec = job_spec(&args).map_err(super::exit::into_bad_input)?;
    let client = args.node.client()?;
    let id = client.submit_job(&spec).await?.to_string();
    println!("job {id}");
    if args.detach {
        return Ok(());
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
    bar.enable_steady_tick(Duration::from_millis(120));
    // Each look waits on the node for the job's next change, up to a
    // second (so the epochs shown move); after an error, pauses.
    let mut pauses = super::poll::Pauses::up_to(Duration::from_millis(300));
    let record = loop {
        match client.job_changed(&id, Duration::from_secs(1)).await {
            Ok(record) => {
                let live = client.job_progress(&id).await.unwrap_or_default();
                bar.set_message(format!("{}{}", summary(&record), epochs(&record, &live)));
                if record.state.is_over() {
                    break record;
                }
            }
            Err(e) => {
                bar.set_message(format!("waiting: {e}"));
                pauses.wait().await;
            }
        }
    };
    bar.finish_and_clear();
    print_record(&record);
    match &record.state {
        JobState::Failed(reason) => return Err(JobFailed(format!("job failed: {reason}")).into()),
        JobState::Cancelled => return Err(JobFailed("job was cancelled".into()).into()),
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
