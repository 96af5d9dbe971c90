//! `mass models` and `mass predict`: the registry and predictions.

use std::{path::PathBuf, time::Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use mass_protocol::{
    ContentId,
    features::{FittedPipeline, PipelineSpec},
    serving::{
        BatchPrediction, Compose, ComposePart, CompressRequest, ExportFormat, ImportModel, ImportPipeline, ModelView,
        Predicted, ScoringState,
    },
};

use super::{
    NodeArgs,
    exit::{JobFailed, bad_input, into_bad_input},
};

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List models with the version each serves now.
    Ls(NodeArgs),
    /// Show a model: versions, metrics, lineage, replicas.
    Show {
        name: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Serve a given version from now on, on every node.
    Promote {
        name: String,
        #[arg(long)]
        version: u64,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Serve the version before the current one.
    Rollback {
        name: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Predict every row of a stored dataset where its shards live; writes a CSV.
    Batch {
        name: String,
        #[arg(long)]
        dataset: String,
        /// Also download the CSV to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also store the rows with the model's outputs as columns, as a new
        /// dataset of this name (the next model of a serial composition trains on it).
        #[arg(long)]
        into: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Make a smaller or faster version of a model: `--quantize int8`,
    /// `--prune 0.8 [--fine-tune-epochs E]` or `--distill mlp:64`. The new
    /// version is served from then on (`promote` goes back).
    Compress {
        name: String,
        /// The version to compress (default: the one served now).
        #[arg(long)]
        version: Option<u64>,
        #[arg(long)]
        quantize: Option<String>,
        /// Fraction of each layer's weights to remove, above 0 and below 1.
        #[arg(long, allow_hyphen_values = true)]
        prune: Option<f64>,
        #[arg(long)]
        fine_tune_epochs: Option<u32>,
        /// The student network, `mlp:WIDTH[,WIDTH...]`.
        #[arg(long)]
        distill: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Make a model of registered models: `--serial A,B` (B reads the rows
    /// plus A's outputs) or `--parallel A:0.5,B:0.5` (weighted average).
    Compose {
        name: String,
        #[arg(long, conflicts_with = "parallel", required_unless_present = "parallel")]
        serial: Option<String>,
        #[arg(long)]
        parallel: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Write a model to a file other tools read: `--format safetensors`
    /// (dense weights, with the pipeline and classes as metadata) or `onnx`
    /// (the whole model, scaling step included).
    Export {
        name: String,
        /// Default: the version served now.
        #[arg(long)]
        version: Option<u64>,
        #[arg(long)]
        format: String,
        #[arg(long)]
        output: PathBuf,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Register a safetensors file of dense networks trained elsewhere as a
    /// new version of model NAME, reading the columns of DATASET (whose
    /// test rows evaluate it).
    Import {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        dataset: String,
        /// A pipeline spec as JSON (e.g. '{"scale": "standard"}', fitted on
        /// the dataset's training rows), or a file holding a spec or a fitted
        /// pipeline. Default: the pipeline in the file's metadata.
        #[arg(long)]
        pipeline: Option<String>,
        /// Hidden layers' activation, `relu` or `tanh`, when the file does not say.
        #[arg(long)]
        activation: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// `--pipeline`: inline JSON or a file; a fitted pipeline (it has
/// `transforms`) or a spec to fit.
fn parse_pipeline(text: &str) -> anyhow::Result<ImportPipeline> {
    let path = std::path::Path::new(text);
    let json = if path.is_file() {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    } else {
        text.to_owned()
    };
    let value: serde_json::Value =
        serde_json::from_str(&json).with_context(|| format!("--pipeline {text}: neither a file nor JSON"))?;
    if value.get("transforms").is_some() {
        let fitted: FittedPipeline =
            serde_json::from_value(value).with_context(|| format!("--pipeline {text}: not a fitted pipeline"))?;
        Ok(ImportPipeline::Fitted(Box::new(fitted)))
    } else {
        let spec: PipelineSpec =
            serde_json::from_value(value).with_context(|| format!("--pipeline {text}: not a pipeline spec"))?;
        Ok(ImportPipeline::Spec(spec))
    }
}

fn parse_compose(serial: Option<String>, parallel: Option<String>) -> anyhow::Result<Compose> {
    if let Some(serial) = serial {
        return Ok(Compose::Serial(serial.split(',').map(|m| m.trim().to_owned()).collect()));
    }
    let parallel = parallel.unwrap_or_default();
    let parts = parallel
        .split(',')
        .map(|part| match part.split_once(':') {
            None => Ok(ComposePart { model: part.trim().to_owned(), weight: 1.0 }),
            Some((model, weight)) => Ok(ComposePart {
                model: model.trim().to_owned(),
                weight: weight.trim().parse().map_err(|_| anyhow::anyhow!("--parallel: '{weight}' is not a weight"))?,
            }),
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Compose::Parallel(parts))
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Model name.
    name: String,
    /// Rows as JSON: one row (an array or an object) or an array of rows.
    #[arg(long, conflicts_with = "file")]
    rows: Option<String>,
    /// A file holding the rows as JSON.
    #[arg(long)]
    file: Option<PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
}

pub async fn run(command: ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::Ls(node) => {
            for m in node.client()?.models().await? {
                let score = match (m.accuracy, m.r2) {
                    (Some(a), _) => format!("accuracy {a:.4}"),
                    (None, Some(r2)) => format!("R2 {r2:.4}"),
                    _ => "score -".into(),
                };
                println!("{:<24} v{:<3} ({} versions)  {score}  {}", m.name, m.version, m.versions, m.manifest);
            }
        }
        ModelsCommand::Show { name, node } => {
            let view = node.client()?.model(&name).await?;
            let m = &view.manifest;
            println!(
                "model/{}  version {} of {}  manifest {}",
                view.name,
                view.version,
                view.versions.len(),
                view.manifest_id
            );
            println!("{} model ({}, {:?})", m.task, m.spec.spec.learner.name(), m.combine);
            println!("{}", m.evaluation.line());
            if !m.evaluation.robustness.is_empty() {
                let metric = if m.evaluation.accuracy.is_some() { "accuracy" } else { "R2" };
                println!("robustness (same test rows, degraded input):");
                for check in &m.evaluation.robustness {
                    println!("  {}", check.line(metric));
                }
            }
            if let Some(cv) = &m.cross_validation {
                let metric = if m.evaluation.accuracy.is_some() { "accuracy" } else { "R2" };
                let folds: Vec<String> = cv.folds.iter().map(|f| format!("{f:.4}")).collect();
                println!(
                    "cross-validation ({} folds): {metric} {:.4} +/- {:.4}  [{}]",
                    cv.folds.len(),
                    cv.mean,
                    cv.sd,
                    folds.join(", ")
                );
            }
            println!("trained by job {} on dataset manifest {}, pipeline {}", m.job, m.dataset_manifest, m.pipeline);
            if m.parts.is_empty() {
                println!(
                    "members {}{}  trained on {}",
                    m.members.len(),
                    if m.meta.is_some() { " + meta-model" } else { "" },
                    m.trained_on.join(", ")
                );
            } else {
                let parts: Vec<String> = m.parts.iter().map(|p| p.to_string()).collect();
                println!("composed of {} ({:?}): {}", parts.len(), m.combine, parts.join(" then "));
            }
            println!("replicas {}", view.replicas.join(", "));
            for v in &view.versions {
                let mark = if v.version == view.version { "*" } else { " " };
                println!(" {mark} v{}  {}", v.version, v.manifest);
            }
            variants(&node.client()?, &view).await?;
        }
        ModelsCommand::Promote { name, version, node } => {
            let v = node.client()?.promote(&name, version).await?;
            println!("model/{name} now serves version {} ({})", v.version, v.manifest);
        }
        ModelsCommand::Rollback { name, node } => {
            let v = node.client()?.rollback_model(&name).await?;
            println!("model/{name} rolled back to version {} ({})", v.version, v.manifest);
        }
        ModelsCommand::Compress { name, version, quantize, prune, fine_tune_epochs, distill, node } => {
            let request = CompressRequest { version, quantize, prune, fine_tune_epochs, distill };
            let v = node.client()?.compress(&name, &request).await?;
            println!("model/{name} version {} ({}) compressed; served from now on", v.version, v.manifest);
            variants(&node.client()?, &node.client()?.model(&name).await?).await?;
        }
        ModelsCommand::Compose { name, serial, parallel, node } => {
            let request = parse_compose(serial, parallel).map_err(into_bad_input)?;
            let version = node.client()?.compose(&name, &request).await?;
            println!("model/{name} version {} ({}) composed", version.version, version.manifest);
        }
        ModelsCommand::Export { name, version, format, output, node } => {
            let format = ExportFormat::parse(&format).map_err(|e| bad_input!("--{e}"))?;
            let (bytes, version) = node.client()?.export_model(&name, version, format).await?;
            std::fs::write(&output, &bytes).with_context(|| format!("cannot write {}", output.display()))?;
            println!(
                "model/{name} v{version} written as {} to {} ({} bytes)",
                format.name(),
                output.display(),
                bytes.len()
            );
        }
        ModelsCommand::Import { file, name, dataset, pipeline, activation, node } => {
            let pipeline = pipeline.as_deref().map(parse_pipeline).transpose().map_err(into_bad_input)?;
            let client = node.client()?;
            // Unpinned: a refused file is collected like any stray blob.
            let blob = client.put_blob_file(&file, false, |_| {}).await?;
            let request = ImportModel { blob: blob.id, dataset, pipeline, activation };
            let version = client.import_model(&name, &request).await?;
            println!(
                "model/{name} version {} ({}) imported from {}",
                version.version,
                version.manifest,
                file.display()
            );
            let view = client.model(&name).await?;
            println!("{}", view.manifest.evaluation.line());
        }
        ModelsCommand::Batch { name, dataset, out, into, node } => {
            let client = node.client()?;
            let id = client.submit_batch_predict(&name, &dataset, into.as_deref()).await?;
            let done = follow_scoring(&client, &id).await?;
            println!("{} rows of {dataset} predicted by model/{name} v{}: blob {}", done.rows, done.version, done.blob);
            if let (Some(into), Some(id)) = (&into, done.into) {
                println!("rows with the model's outputs stored as dataset/{into} ({id})");
            }
            if let Some(test) = &done.test {
                println!("{}", test.line());
            }
            if let Some(path) = out {
                let bytes = client.get_blob(&done.blob.to_string()).await?;
                std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
                println!("written to {}", path.display());
            }
        }
    }
    Ok(())
}

/// Follows scoring job `id` with a bar of its shards, through any of the
/// client's nodes (the job goes on when its driver or this node dies).
async fn follow_scoring(client: &mass_sdk::Client, id: &ContentId) -> anyhow::Result<BatchPrediction> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("scoring {bar:40} {pos}/{len} shards {elapsed} {msg}")
            .expect("valid template"),
    );
    // Each look waits on the node for the record's next change (a shard
    // scored, the end), a second at most; after an error, pauses.
    let mut pauses = super::poll::Pauses::up_to(std::time::Duration::from_millis(300));
    loop {
        match client.scoring_changed(id, std::time::Duration::from_secs(1)).await {
            Ok(record) => {
                let (scored, shards) = crate::serving::scoring::plan::progress(&record);
                bar.set_length(shards as u64);
                bar.set_position(scored as u64);
                bar.set_message("");
                match (record.state, record.result) {
                    (ScoringState::Completed, Some(done)) => {
                        bar.finish_and_clear();
                        return Ok(done);
                    }
                    (ScoringState::Failed(reason), _) => {
                        bar.finish_and_clear();
                        return Err(JobFailed(format!("batch prediction {id} failed: {reason}")).into());
                    }
                    _ => {}
                }
            }
            Err(e) => {
                bar.set_message(format!("waiting: {e}"));
                pauses.wait().await;
            }
        }
    }
}

/// The compressed versions of a model side by side with their parents:
/// method, stored bytes, test score and latency (1 row, 1,000 rows), the
/// parents' figures as measured beside each variant. Nothing when no
/// version is compressed. At most the latest 32 versions are read.
async fn variants(client: &mass_sdk::Client, view: &ModelView) -> anyhow::Result<()> {
    let mut manifests = Vec::new();
    for v in view.versions.iter().rev().take(32).rev() {
        manifests.push((v.version, v.manifest, client.model_version(&view.name, &v.manifest.to_string()).await?));
    }
    if manifests.iter().all(|(_, _, m)| m.compression.is_none()) {
        return Ok(());
    }
    let mut measured = std::collections::HashMap::new();
    for (_, _, m) in &manifests {
        if let Some(c) = &m.compression {
            measured.entry(c.parent).or_insert((c.parent_bytes, c.parent_latency.clone()));
        }
    }
    println!("variants (size as stored; latency of the members on featurized rows, one node):");
    println!(
        "  {:<5} {:<28} {:>12} {:>8} {:>12} {:>14}",
        "", "method", "bytes", "score", "1 row (µs)", "1,000 rows (ms)"
    );
    for (version, id, m) in &manifests {
        let (method, figures) = match &m.compression {
            Some(c) => (format!("{} of v{}", c.method.name(), c.parent_version), Some((c.bytes, c.latency.clone()))),
            None => ("trained".to_owned(), measured.get(id).cloned()),
        };
        let (bytes, one, thousand) = match figures {
            Some((b, l)) => (b.to_string(), format!("{:.1}", l.one_row_us), format!("{:.2}", l.thousand_rows_ms)),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let mark = if *version == view.version { "*" } else { " " };
        println!(
            "{mark} {:<5} {method:<28} {bytes:>12} {:>8.4} {one:>12} {thousand:>14}",
            format!("v{version}"),
            m.evaluation.score()
        );
    }
    Ok(())
}

pub async fn predict(args: PredictArgs) -> anyhow::Result<()> {
    let text = match (&args.rows, &args.file) {
        (Some(rows), _) => rows.clone(),
        (None, Some(file)) => {
            std::fs::read_to_string(file).map_err(|e| bad_input!("cannot read {}: {e}", file.display()))?
        }
        (None, None) => return Err(bad_input!("give the rows with --rows JSON or --file PATH")),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad_input!("--rows is not valid JSON: {e}"))?;
    // One row (an object, or an array of scalars) or an array of rows.
    let rows = match value {
        serde_json::Value::Array(items) if items.iter().all(|i| i.is_array() || i.is_object()) && !items.is_empty() => {
            items
        }
        one => vec![one],
    };
    let started = Instant::now();
    let answer = args.node.client()?.predict(&args.name, &rows).await?;
    for (i, predicted) in answer.predictions.iter().enumerate() {
        match (predicted, answer.probabilities.get(i)) {
            (Predicted::Class(class), Some(p)) => {
                let best = p.iter().cloned().fold(0.0f32, f32::max);
                println!("row {i}: {class} (p={best:.3})");
            }
            (other, _) => println!("row {i}: {}", other.text()),
        }
    }
    println!(
        "model/{} v{} served by {} in {:.1} ms",
        answer.model,
        answer.version,
        answer.served_by,
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
