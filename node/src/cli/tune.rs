//! `mass tune` and `mass studies`: hyperparameter studies, followed with a
//! progress bar and summed up as a leaderboard.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mass_protocol::studies::{Asha, Domain, Metric, ParamValue, Space, Strategy, StudyRecord, StudySpec, StudyState};

use super::{NodeArgs, exit::JobFailed, train::TrainArgs};

#[derive(Debug, Args)]
pub struct TuneArgs {
    /// The search space, a TOML file: `model = ["linear", "mlp:32"]`,
    /// `learning_rate = { log_uniform = [0.0001, 0.1] }`, `epochs = { int = [5, 60] }`
    /// (also `uniform` and `log_int`).
    #[arg(long)]
    space: PathBuf,
    /// grid, random, tpe or genetic.
    #[arg(long, default_value = "tpe")]
    strategy: String,
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// Trials running at once.
    #[arg(long, default_value_t = 2)]
    parallel: usize,
    /// Successive halving: `MIN:ETA` (a trial first runs MIN epochs or
    /// trees; the best 1/ETA of each rung go on with ETA times as many).
    #[arg(long)]
    asha: Option<String>,
    /// What the study maximizes or minimizes on the validation rows:
    /// accuracy, macro_f1, log_loss, r2, rmse or mae. Default: accuracy for
    /// classes, r2 for numbers.
    #[arg(long)]
    metric: Option<String>,
    /// Grid: points per continuous range.
    #[arg(long, default_value_t = 4)]
    grid_steps: usize,
    /// TPE: random trials before the model of good and bad trials takes
    /// over. Default: a quarter of the trials, 2 to 10.
    #[arg(long)]
    startup: Option<usize>,
    /// Genetic: trials per generation.
    #[arg(long, default_value_t = 8)]
    population: usize,
    /// Genetic: chance each parameter is drawn anew in a child.
    #[arg(long, default_value_t = 0.2)]
    mutation: f64,
    /// What every trial starts from (the space's parameters override it).
    #[command(flatten)]
    base: TrainArgs,
}

#[derive(Debug, Subcommand)]
pub enum StudiesCommand {
    /// List studies: state, trials done, best score.
    Ls(NodeArgs),
    /// A study's leaderboard: every trial's parameters, runs and score.
    Show {
        id: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Cancel a study and its running trials.
    Cancel {
        id: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Draw a study's trials as an SVG file (the metric against each trial
    /// and each parameter).
    Plot {
        id: String,
        #[arg(long)]
        output: PathBuf,
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// A parameter value from TOML: a number or a string.
fn param_value(name: &str, value: &toml::Value) -> anyhow::Result<ParamValue> {
    match value {
        toml::Value::String(s) => Ok(ParamValue::Text(s.clone())),
        toml::Value::Integer(i) => Ok(ParamValue::Number(*i as f64)),
        toml::Value::Float(f) => Ok(ParamValue::Number(*f)),
        other => anyhow::bail!("space.{name}: '{other}' is neither a number nor a string"),
    }
}

/// Two numbers `[LOW, HIGH]`.
fn pair(name: &str, value: &toml::Value) -> anyhow::Result<[f64; 2]> {
    let numbers: Vec<f64> = value
        .as_array()
        .filter(|a| a.len() == 2)
        .map(|a| a.iter().filter_map(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64))).collect())
        .unwrap_or_default();
    match numbers.as_slice() {
        [lo, hi] => Ok([*lo, *hi]),
        _ => anyhow::bail!("space.{name}: expected two numbers [LOW, HIGH]"),
    }
}

/// Reads a search space from TOML.
pub fn parse_space(text: &str) -> anyhow::Result<Space> {
    let table: toml::Table = toml::from_str(text).context("the space is not valid TOML")?;
    let mut space = Space::new();
    for (name, value) in &table {
        let domain = match value {
            toml::Value::Array(items) => {
                Domain::Choice(items.iter().map(|v| param_value(name, v)).collect::<anyhow::Result<_>>()?)
            }
            toml::Value::Table(t) if t.len() == 1 => {
                let (kind, range) = t.iter().next().expect("one entry");
                let ints = |[lo, hi]: [f64; 2]| -> anyhow::Result<[i64; 2]> {
                    anyhow::ensure!(lo.fract() == 0.0 && hi.fract() == 0.0, "space.{name}: {kind} takes whole numbers");
                    Ok([lo as i64, hi as i64])
                };
                match kind.as_str() {
                    "uniform" => Domain::Uniform(pair(name, range)?),
                    "log_uniform" => Domain::LogUniform(pair(name, range)?),
                    "int" => Domain::Int(ints(pair(name, range)?)?),
                    "log_int" => Domain::LogInt(ints(pair(name, range)?)?),
                    other => anyhow::bail!("space.{name}: '{other}': expected uniform, log_uniform, int or log_int"),
                }
            }
            _ => anyhow::bail!(
                "space.{name}: expected a list of choices or {{ uniform | log_uniform | int | log_int = [LOW, HIGH] }}"
            ),
        };
        space.insert(name.clone(), domain);
    }
    mass_protocol::studies::validate_space(&space).map_err(anyhow::Error::msg)?;
    Ok(space)
}

fn parse_asha(text: &str) -> anyhow::Result<Asha> {
    let (min, eta) = text.split_once(':').ok_or_else(|| anyhow::anyhow!("--asha {text}: expected MIN:ETA"))?;
    let number = |v: &str| v.parse::<usize>().map_err(|_| anyhow::anyhow!("--asha {text}: '{v}' is not a count"));
    Ok(Asha { min_resource: number(min)?, eta: number(eta)? })
}

fn strategy(args: &TuneArgs) -> anyhow::Result<Strategy> {
    Ok(match args.strategy.as_str() {
        "grid" => Strategy::Grid { steps: args.grid_steps },
        "random" => Strategy::Random,
        "tpe" => Strategy::Tpe { startup: args.startup.unwrap_or((args.trials / 4).clamp(2, 10)) },
        "genetic" => Strategy::Genetic { population: args.population, mutation: args.mutation },
        other => anyhow::bail!("--strategy {other}: expected grid, random, tpe or genetic"),
    })
}

/// The study the flags describe.
fn study_spec(args: &TuneArgs) -> anyhow::Result<StudySpec> {
    let text = std::fs::read_to_string(&args.space)
        .with_context(|| format!("cannot read the space file {}", args.space.display()))?;
    Ok(StudySpec {
        name: args.base.name.clone(),
        base: super::train::job_spec(&args.base)?,
        space: parse_space(&text).with_context(|| format!("in {}", args.space.display()))?,
        strategy: strategy(args)?,
        asha: args.asha.as_deref().map(parse_asha).transpose()?,
        metric: match &args.metric {
            Some(m) => Some(Metric::parse(m).ok_or_else(|| {
                anyhow::anyhow!("--metric {m}: expected accuracy, macro_f1, log_loss, r2, rmse or mae")
            })?),
            None => None,
        },
        trials: args.trials,
        parallel: args.parallel,
        seed: args.base.seed,
    })
}

fn best_line(record: &StudyRecord) -> String {
    let metric = record.spec.metric();
    let best =
        record.trials.iter().filter_map(|t| t.score()).reduce(|a, b| if (a > b) == metric.maximize() { a } else { b });
    best.map(|b| format!("best {} {b:.4}", metric.name())).unwrap_or_else(|| "no score yet".into())
}

fn summary(record: &StudyRecord) -> String {
    let over = record.trials.iter().filter(|t| t.is_over()).count();
    let running = record.trials.len() - over;
    format!("{over}/{} trials done, {running} running, {}", record.spec.trials, best_line(record))
}

fn params_text(params: &std::collections::BTreeMap<String, ParamValue>) -> String {
    params
        .iter()
        .map(|(k, v)| match v {
            ParamValue::Number(n) if n.fract() != 0.0 => format!("{k}={n:.4e}"),
            _ => format!("{k}={}", v.text()),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The trials ranked by score (unscored last), with where they ran.
fn print_leaderboard(record: &StudyRecord, top: usize) {
    let metric = record.spec.metric();
    let mut ranked: Vec<&mass_protocol::studies::Trial> = record.trials.iter().collect();
    ranked.sort_by(|a, b| match (a.score(), b.score()) {
        (Some(x), Some(y)) if metric.maximize() => y.total_cmp(&x),
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.number.cmp(&b.number),
    });
    println!("{:>5}  {:>9}  {:<10} {:>8}  parameters", "trial", metric.name(), "state", "resource");
    for trial in ranked.iter().take(top) {
        let state = match &trial.state {
            mass_protocol::studies::TrialState::Failed(_) => "failed".to_owned(),
            other => format!("{other:?}").to_lowercase(),
        };
        println!(
            "{:>5}  {:>9}  {:<10} {:>8}  {}",
            trial.number,
            trial.score().map(|s| format!("{s:.4}")).unwrap_or_else(|| "-".into()),
            state,
            trial.runs.last().map(|r| r.resource.to_string()).unwrap_or_else(|| "-".into()),
            params_text(&trial.params)
        );
        if let mass_protocol::studies::TrialState::Failed(reason) = &trial.state {
            println!("{:>7}{reason}", "");
        }
    }
    if ranked.len() > top {
        println!("  ... {} more (mass studies show {})", ranked.len() - top, record.id);
    }
}

fn print_record(record: &StudyRecord, top: usize) {
    println!("study {}  model/{}  {:?}  {}", record.id, record.spec.name, record.state, summary(record));
    println!("driven by: {}", record.drivers.join(" then "));
    print_leaderboard(record, top);
    if let (Some((trial, model)), Some(test)) = (&record.best, &record.test) {
        println!("winner: trial {trial}, registered as model/{} ({model})", record.spec.name);
        println!("{}", test.line());
    }
}

pub async fn tune(args: TuneArgs) -> anyhow::Result<()> {
    let spec = study_spec(&args).map_err(super::exit::into_bad_input)?;
    let client = args.base.node.client()?;
    let id = client.submit_study(&spec).await?.to_string();
    println!("study {id}");
    if args.base.detach {
        return Ok(());
    }
    let bar = ProgressBar::new(spec.trials as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} {elapsed}").expect("valid template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    // Each look waits on the node for the journal's next change, up to a
    // second; after an error, pauses.
    let mut pauses = super::poll::Pauses::up_to(Duration::from_millis(500));
    let record = loop {
        match client.study_changed(&id, Duration::from_secs(1)).await {
            Ok(record) => {
                bar.set_position(record.trials.iter().filter(|t| t.is_over()).count() as u64);
                bar.set_message(summary(&record));
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
    print_record(&record, 10);
    match &record.state {
        StudyState::Failed(reason) => Err(JobFailed(format!("study failed: {reason}")).into()),
        StudyState::Cancelled => Err(JobFailed("study was cancelled".into()).into()),
        _ => Ok(()),
    }
}

pub async fn studies(command: StudiesCommand) -> anyhow::Result<()> {
    match command {
        StudiesCommand::Ls(node) => {
            for record in node.client()?.studies().await? {
                println!("{}  model/{}  {:?}  {}", record.id, record.spec.name, record.state, summary(&record));
            }
        }
        StudiesCommand::Show { id, node } => print_record(&node.client()?.study(&id).await?, usize::MAX),
        StudiesCommand::Cancel { id, node } => {
            let record = node.client()?.cancel_study(&id).await?;
            println!("study {} cancelled", record.id);
        }
        StudiesCommand::Plot { id, output, node } => {
            let record = node.client()?.study(&id).await?;
            std::fs::write(&output, super::plot::svg(&record))
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!("wrote {} ({} trials)", output.display(), record.trials.len());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_read_from_toml_and_bad_ones_are_named() {
        let space = parse_space(
            "model = [\"linear\", \"mlp:32\"]\nlearning_rate = { log_uniform = [0.0001, 0.1] }\n\
             epochs = { int = [5, 60] }\n",
        )
        .unwrap();
        assert_eq!(space["epochs"], Domain::Int([5, 60]));
        assert_eq!(space["learning_rate"], Domain::LogUniform([0.0001, 0.1]));
        assert_eq!(
            space["model"],
            Domain::Choice(vec![ParamValue::Text("linear".into()), ParamValue::Text("mlp:32".into())])
        );
        let err = |text: &str| format!("{:#}", parse_space(text).unwrap_err());
        assert!(err("epochs = { int = [5.5, 60] }").contains("space.epochs: int takes whole numbers"));
        assert!(err("epochs = { normal = [5, 60] }").contains("'normal'"));
        assert!(err("epochs = 5").contains("space.epochs: expected a list"));
        assert!(err("l2 = { uniform = [1.0] }").contains("two numbers"));
        assert!(err("learning_rate = { log_uniform = [0.1, 0.0001] }").contains("space.learning_rate"));
        assert!(err("dropout = [0.1]").contains("space.dropout: unknown parameter"));
    }
}
