//! `mass data`: ingest files as datasets, list and inspect them.

use std::path::PathBuf;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use mass_sdk::IngestRequest;

use super::{NodeArgs, exit::bad_input};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Ingest a CSV or JSON Lines file (plain or gzip) or a Parquet file as a sharded, replicated dataset.
    Put {
        /// The file: CSV with a header, JSON Lines (one object of column -> value
        /// per line), Parquet (flat columns), or a NumPy features matrix with --labels.
        file: PathBuf,
        /// csv, jsonl or parquet; by default a .jsonl or .ndjson name (also .gz) is JSON Lines,
        /// a .parquet or .pq name Parquet, anything else CSV.
        #[arg(long, conflicts_with = "labels")]
        format: Option<String>,
        #[arg(long)]
        name: String,
        /// The column to predict.
        #[arg(long)]
        label: String,
        /// Fix a column's kind instead of inferring it: COLUMN=numeric|categorical|text (repeatable).
        #[arg(long = "type", value_name = "COLUMN=KIND")]
        types: Vec<String>,
        /// Rows per shard (default from the node's config).
        #[arg(long)]
        shard_rows: Option<usize>,
        /// Seed of the train/validation/test split.
        #[arg(long)]
        seed: Option<u64>,
        /// Fraction of rows for validation.
        #[arg(long)]
        validation: Option<f64>,
        /// Fraction of rows for test (default 0.2), unless --test-rows is given.
        #[arg(long, conflicts_with = "test_rows")]
        test: Option<f64>,
        /// File of 0-based test row numbers, one per line.
        #[arg(long)]
        test_rows: Option<PathBuf>,
        /// Labels as a NumPy vector; FILE is then a NumPy features matrix.
        #[arg(long)]
        labels: Option<PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Fit a feature pipeline where the dataset's shards live.
    Fit {
        /// The dataset.
        dataset: String,
        /// Name of the pipeline (stored as pipeline/DATASET/NAME).
        #[arg(long, default_value = "default")]
        pipeline: String,
        /// Pipeline spec as JSON, e.g. '{"impute":"median","scale":"min_max","unseen":"ignore",
        /// "text":{"buckets":16384,"ngram_max":2,"min_df":2,"sublinear_tf":true},"select":{"mutual_info":{"k":50}}}'.
        #[arg(long)]
        spec: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List datasets.
    Ls(NodeArgs),
    /// Show a dataset: schema, rows, splits, shards and where they live, statistics.
    Show {
        name: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

pub async fn run(command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Put {
            file,
            format,
            name,
            label,
            types,
            shard_rows,
            seed,
            validation,
            test,
            test_rows,
            labels,
            node,
        } => {
            let types = types
                .iter()
                .map(|t| {
                    t.split_once('=')
                        .map(|(c, k)| (c.to_owned(), k.to_owned()))
                        .ok_or_else(|| bad_input!("--type {t}: expected COLUMN=KIND"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let format = match format.as_deref() {
                None => FileFormat::of_name(&file),
                Some("csv") => FileFormat::Csv,
                Some("jsonl" | "ndjson") => FileFormat::Jsonl,
                Some("parquet") => FileFormat::Parquet,
                Some(other) => return Err(bad_input!("--format {other}: expected csv, jsonl or parquet")),
            };
            let request = IngestRequest { name, label, types, shard_rows, seed, validation, test, test_rows };
            let spinner = ProgressBar::new_spinner();
            spinner.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
            spinner.set_message(format!("ingesting {}", file.display()));
            spinner.enable_steady_tick(std::time::Duration::from_millis(120));
            let client = node.client()?;
            let view = match (&labels, format) {
                (Some(labels), _) => client.ingest_npy(labels, &file, &request).await,
                (None, FileFormat::Jsonl) => client.ingest_jsonl(&file, &request).await,
                (None, FileFormat::Parquet) => client.ingest_parquet(&file, &request).await,
                (None, FileFormat::Csv) => client.ingest_csv(&file, &request).await,
            };
            spinner.finish_and_clear();
            let view = view?;
            let m = &view.manifest;
            println!(
                "dataset/{} v{} -> {}: {} rows, {} columns, {} shards (train {}, validation {}, test {})",
                m.name,
                view.version,
                view.manifest_id,
                m.rows,
                m.schema.columns.len(),
                m.shards.len(),
                m.split_rows[0],
                m.split_rows[1],
                m.split_rows[2]
            );
        }
        DataCommand::Fit { dataset, pipeline, spec, node } => {
            let spec: mass_protocol::features::PipelineSpec = match spec {
                Some(json) => {
                    serde_json::from_str(&json).map_err(|e| bad_input!("--spec is not a pipeline spec: {e}"))?
                }
                None => Default::default(),
            };
            let fitted = node.client()?.fit_pipeline(&dataset, &pipeline, spec).await?;
            let workers: std::collections::BTreeSet<&String> = fitted.summarized_by.iter().collect();
            println!(
                "pipeline/{dataset}/{pipeline} v{} -> {}: {} features, {} classes, fitted from {} shards summarized on {} node(s)",
                fitted.version,
                fitted.id,
                fitted.pipeline.features,
                fitted.pipeline.classes.len(),
                fitted.summarized_by.len(),
                workers.len()
            );
        }
        DataCommand::Ls(node) => {
            for d in node.client()?.datasets().await? {
                println!(
                    "{}  v{}  {} rows  {} columns  {} shards  {}",
                    d.name, d.version, d.rows, d.columns, d.shards, d.manifest
                );
            }
        }
        DataCommand::Show { name, node } => {
            let view = node.client()?.dataset(&name).await?;
            let m = &view.manifest;
            println!("dataset/{} v{} ({})", m.name, view.version, view.manifest_id);
            println!(
                "rows {}  train {}  validation {}  test {}  split {:?}",
                m.rows, m.split_rows[0], m.split_rows[1], m.split_rows[2], m.split
            );
            println!("label: {}", m.schema.columns[m.schema.label].name);
            println!("label histogram: {:?}", m.label_histogram());
            println!("\nshards:");
            for (shard, holders) in m.shards.iter().zip(&view.shard_holders) {
                println!(
                    "  {}  rows {}..{}  on {}",
                    shard.id,
                    shard.first_row,
                    shard.first_row + shard.rows,
                    holders.join(", ")
                );
            }
            println!("\ncolumns:");
            for (column, stats) in m.schema.columns.iter().zip(&m.stats) {
                let detail = match (stats.min, stats.max) {
                    (Some(min), Some(max)) => {
                        let mean = stats.sum / stats.present.max(1) as f64;
                        format!("min {min}  max {max}  mean {mean:.4}")
                    }
                    _ if !stats.counts.is_empty() => format!("{} distinct", stats.counts.len()),
                    _ => String::new(),
                };
                println!(
                    "  {:<24} {:<12} present {:<8} missing {:<6} {detail}",
                    column.name,
                    format!("{:?}", column.kind).to_lowercase(),
                    stats.present,
                    stats.missing
                );
            }
        }
    }
    Ok(())
}

/// How `mass data put` sends a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Csv,
    Jsonl,
    Parquet,
}

impl FileFormat {
    /// What a file's name says: `.jsonl` or `.ndjson` (gzipped or not) is
    /// JSON Lines, `.parquet` or `.pq` Parquet, anything else CSV.
    fn of_name(path: &std::path::Path) -> Self {
        let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        if name.ends_with(".parquet") || name.ends_with(".pq") {
            return FileFormat::Parquet;
        }
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if name.ends_with(".jsonl") || name.ends_with(".ndjson") { FileFormat::Jsonl } else { FileFormat::Csv }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_told_by_the_file_name() {
        let of = |name: &str| FileFormat::of_name(std::path::Path::new(name));
        for name in ["a.jsonl", "dir/b.JSONL", "c.ndjson", "d.jsonl.gz"] {
            assert_eq!(of(name), FileFormat::Jsonl, "{name}");
        }
        for name in ["a.parquet", "dir/B.PARQUET", "c.pq"] {
            assert_eq!(of(name), FileFormat::Parquet, "{name}");
        }
        for name in ["a.csv", "a.csv.gz", "jsonl", "a.json", "a.jsonl.csv", "parquet", "a.parquet.csv"] {
            assert_eq!(of(name), FileFormat::Csv, "{name}");
        }
    }
}
