//! Gradient-boosted trees on the shared tabular sets, one process: fit
//! seconds and test accuracy (R2 for diamonds), for BENCHMARKS.md against
//! LightGBM, XGBoost and scikit-learn (`../shared/baselines/08_tabular.py`).
//!
//! Columns are encoded as the node's tree pipeline encodes them (numbers as
//! f32 with NaN for missing; categories as their index in the sorted list of
//! the training rows' values, -1 unseen, NaN missing), binned from quantile
//! sketches and category counts, and boosted from the setup
//! `node/src/jobs/learners.rs::boost_setup` builds.
//!
//! `cargo bench -p mass-kernels --bench gbdt`; `GBDT_SETS` (comma separated,
//! default `diamonds,flights`; `mnist` too), `GBDT_ROUNDS` (default 300),
//! `GBDT_LEAVES` (31) and `GBDT_REPEAT` (fits per set, 1) change the run;
//! `GBDT_DUMP=DIR` writes each model and its loss curve (Debug text, which
//! prints every f64 exactly) to `DIR/<set>.txt`, to check that a faster
//! kernel still grows the same trees bit for bit.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read,
    path::{Path, PathBuf},
    time::Instant,
};

use mass_kernels::{
    features::sketch::{SKETCH_CAPACITY, sketch},
    models::gbdt::{
        self, BoostParams, BoostSetup, Rows,
        bins::{BinnedRows, FeatureBins, MAX_BINS, categorical_bins, numeric_bins},
        objective::{Objective, Targets},
        split::SplitLimits,
        tree::TreeShape,
    },
};
use ndarray::Array2;

/// A dataset as CSV text cells, split into training and test rows.
struct Table {
    names: Vec<String>,
    train: Vec<Vec<String>>,
    test: Vec<Vec<String>>,
}

/// Encoded features and labels of one split.
struct Encoded {
    x: Array2<f32>,
    labels: Vec<String>,
}

fn datasets() -> PathBuf {
    let root =
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    root.join("../../shared/datasets")
}

fn read_table(dir: &Path, name: &str) -> Table {
    let plain = dir.join(format!("{name}.csv"));
    let text = if plain.exists() {
        std::fs::read_to_string(plain).expect("dataset")
    } else {
        let mut text = String::new();
        let file = std::fs::File::open(dir.join(format!("{name}.csv.gz"))).expect("dataset");
        flate2::read::GzDecoder::new(file).read_to_string(&mut text).expect("gzip");
        text
    };
    let test: BTreeSet<usize> = std::fs::read_to_string(dir.join(format!("{name}.test_rows.txt")))
        .expect("test rows")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let names = reader.headers().expect("header").iter().map(str::to_owned).collect();
    let (mut train, mut held) = (vec![], vec![]);
    for (row, record) in reader.records().enumerate() {
        let cells: Vec<String> = record.expect("csv row").iter().map(str::to_owned).collect();
        if test.contains(&row) { held.push(cells) } else { train.push(cells) }
    }
    Table { names, train, test: held }
}

/// How one input column becomes a feature.
enum Column {
    Numeric,
    /// The sorted distinct training values.
    Categorical(Vec<String>),
}

fn is_missing(cell: &str) -> bool {
    cell.is_empty()
}

fn columns(table: &Table, label: usize) -> Vec<(usize, Column)> {
    (0..table.names.len())
        .filter(|&c| c != label)
        .map(|c| {
            let cells = || table.train.iter().map(|r| r[c].as_str()).filter(|v| !is_missing(v));
            let column = if cells().all(|v| v.parse::<f64>().is_ok()) {
                Column::Numeric
            } else {
                Column::Categorical(cells().map(str::to_owned).collect::<BTreeSet<_>>().into_iter().collect())
            };
            (c, column)
        })
        .collect()
}

fn encode(rows: &[Vec<String>], columns: &[(usize, Column)], label: usize) -> Encoded {
    let mut x = Array2::<f32>::zeros((rows.len(), columns.len()));
    for (r, row) in rows.iter().enumerate() {
        for (f, (c, column)) in columns.iter().enumerate() {
            let cell = row[*c].as_str();
            x[[r, f]] = if is_missing(cell) {
                f32::NAN
            } else {
                match column {
                    Column::Numeric => cell.parse::<f64>().map_or(f32::NAN, |v| v as f32),
                    Column::Categorical(values) => {
                        values.binary_search_by(|v| v.as_str().cmp(cell)).map_or(-1.0, |i| i as f32)
                    }
                }
            };
        }
    }
    Encoded { x, labels: rows.iter().map(|r| r[label].clone()).collect() }
}

fn bins(x: &Array2<f32>, columns: &[(usize, Column)]) -> Vec<FeatureBins> {
    columns
        .iter()
        .enumerate()
        .map(|(f, (_, column))| match column {
            Column::Numeric => {
                numeric_bins(&sketch(x.column(f).iter().map(|v| f64::from(*v)), SKETCH_CAPACITY), MAX_BINS)
            }
            Column::Categorical(values) => {
                let mut counts = vec![0u64; values.len()];
                for v in x.column(f).iter().filter(|v| **v >= 0.0) {
                    counts[*v as usize] += 1;
                }
                categorical_bins(&counts, MAX_BINS)
            }
        })
        .collect()
}

/// Class names in the pipeline's order: numerically when all are numbers.
fn class_order(labels: &[String]) -> Vec<String> {
    let mut classes: Vec<String> = labels.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    if classes.iter().all(|c| c.parse::<f64>().is_ok()) {
        classes.sort_by(|a, b| a.parse::<f64>().unwrap_or(0.0).total_cmp(&b.parse::<f64>().unwrap_or(0.0)));
    }
    classes
}

struct Problem {
    setup: BoostSetup,
    train: Encoded,
    test: Encoded,
    /// Classification: the classes; regression: (mean, std) of the label.
    classes: Vec<String>,
    scale: (f64, f64),
}

fn params(rounds: usize, leaves: usize) -> BoostParams {
    BoostParams {
        rounds,
        shape: TreeShape { max_leaves: leaves, max_depth: 0 },
        limits: SplitLimits { min_rows: 20, l2: 0.0, ..SplitLimits::default() },
        learning_rate: 0.1,
        row_fraction: 1.0,
        feature_fraction: 1.0,
        seed: 0,
        patience: 0,
    }
}

fn problem(name: &str, rounds: usize, leaves: usize) -> Problem {
    let table = read_table(&datasets(), name);
    let label_name = if name == "diamonds" { "price" } else { "label" };
    let label = table.names.iter().position(|n| n == label_name).expect("label column");
    let columns = columns(&table, label);
    let train = encode(&table.train, &columns, label);
    let test = encode(&table.test, &columns, label);
    let bins = bins(&train.x, &columns);
    let regression = name == "diamonds";
    let (objective, classes, init, bound, scale) = if regression {
        let y: Vec<f64> = train.labels.iter().map(|v| v.parse().expect("numeric label")).collect();
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        let std = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / y.len() as f64).sqrt();
        let extreme = y.iter().map(|v| ((v - mean) / std).abs()).fold(0.0, f64::max);
        (Objective::Squared, vec![], vec![0.0], 2.0 * extreme + 1.0, (mean, std))
    } else {
        let classes = class_order(&train.labels);
        let objective = Objective::for_task(Some(classes.len()));
        let counts: Vec<u64> = classes.iter().map(|c| train.labels.iter().filter(|l| *l == c).count() as u64).collect();
        let init = objective.initial_scores(&counts, 0.0);
        (objective, classes, init, 1.0, (0.0, 1.0))
    };
    let setup =
        BoostSetup { bins, objective, init, quantizer: objective.quantizer(bound), params: params(rounds, leaves) };
    Problem { setup, train, test, classes, scale }
}

fn targets(p: &Problem, labels: &[String]) -> Targets {
    if p.classes.is_empty() {
        Targets::Values(
            labels.iter().map(|v| (v.parse::<f64>().expect("numeric label") - p.scale.0) / p.scale.1).collect(),
        )
    } else {
        let index: BTreeMap<&str, u32> = p.classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as u32)).collect();
        Targets::Classes(labels.iter().map(|l| index.get(l.as_str()).copied().unwrap_or(u32::MAX)).collect())
    }
}

/// Test accuracy, or R2 for regression.
fn score(p: &Problem, model: &gbdt::Gbdt) -> f64 {
    let out = model.predict(p.test.x.view());
    if p.classes.is_empty() {
        let y: Vec<f64> = p.test.labels.iter().map(|v| v.parse().expect("numeric label")).collect();
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        let predicted = (0..y.len()).map(|r| f64::from(out[[r, 0]]) * p.scale.1 + p.scale.0);
        let sse: f64 = predicted.zip(&y).map(|(a, b)| (a - b).powi(2)).sum();
        let sst: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
        1.0 - sse / sst
    } else {
        let hits = (0..p.test.labels.len())
            .filter(|&r| {
                let row = out.row(r);
                let best = (0..row.len()).fold(0, |b, c| if row[c] > row[b] { c } else { b });
                p.classes[best] == p.test.labels[r]
            })
            .count();
        hits as f64 / p.test.labels.len() as f64
    }
}

/// This process's user and system CPU seconds so far (Linux; 0 elsewhere),
/// to tell a slow fit from one that waited for a busy machine's cores.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (in parentheses): utime and stime are
    // the 12th and 13th, in clock ticks (100 per second on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<f64> = after.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    ticks.iter().sum::<f64>() / 100.0
}

fn main() {
    let env = |name: &str| std::env::var(name).ok();
    let sets = env("GBDT_SETS").unwrap_or_else(|| "diamonds,flights".into());
    let rounds: usize = env("GBDT_ROUNDS").map_or(300, |v| v.parse().expect("GBDT_ROUNDS"));
    let leaves: usize = env("GBDT_LEAVES").map_or(31, |v| v.parse().expect("GBDT_LEAVES"));
    let repeat: usize = env("GBDT_REPEAT").map_or(1, |v| v.parse().expect("GBDT_REPEAT"));
    println!("| dataset | model | fit | CPU | score |");
    println!("|---|---|---|---|---|");
    for name in sets.split(',').filter(|s| !s.is_empty()) {
        let p = problem(name, rounds, leaves);
        for _ in 0..repeat {
            let rows = Rows {
                binned: BinnedRows::new(p.train.x.view(), &p.setup.bins),
                targets: targets(&p, &p.train.labels),
                global_rows: (0..p.train.labels.len() as u64).collect(),
            };
            let (start, cpu) = (Instant::now(), cpu_seconds());
            let (model, curve) = gbdt::fit(&p.setup, rows, None, &mut |_, _, _| {});
            let secs = start.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu;
            if let Some(dir) = env("GBDT_DUMP") {
                std::fs::write(Path::new(&dir).join(format!("{name}.txt")), format!("{model:#?}\n{curve:#?}\n"))
                    .expect("dump");
            }
            let metric = if p.classes.is_empty() { "R2" } else { "accuracy" };
            println!(
                "| {name} | Mass GBDT, {rounds} rounds, {leaves} leaves, lr 0.1 | {secs:.2} s | {cpu:.2} s | {metric} {:.4} |",
                score(&p, &model)
            );
        }
    }
}
