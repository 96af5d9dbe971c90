//! The feature transform of MNIST-shaped rows (784 numeric columns, most
//! pixels 0), stored as bytes (what ingest writes for whole numbers in
//! 0..=255), as f32 and as f64 (shards written before 2026-12-04): rows/s
//! of the fastest of 15 calls on one thread, for BENCHMARKS.md.
//!
//! The last line is bytes again with a small matrix product on the same
//! thread before each call, as on a node serving predictions: it shows
//! whether the product leaves the vector registers in a state that slows
//! the code after it (it did, 4.5x, until `cpu::gemm` cleared them).
//!
//! `cargo bench -p mass-kernels --bench transform [-- ROWS]` (10,000 rows).

use std::time::{Duration, Instant};

use mass_kernels::features::transform;
use mass_protocol::{
    dataset::{Shard, ShardColumn, Split},
    features::{ColumnTransform, FittedPipeline},
    jobs::Task,
};

fn pixels(rows: usize, columns: usize) -> Vec<Vec<f64>> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..columns)
        .map(|_| {
            (0..rows)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    if state % 5 < 4 { 0.0 } else { (state >> 8) as u8 as f64 }
                })
                .collect()
        })
        .collect()
}

fn main() {
    let rows: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let columns = 784;
    let values = pixels(rows, columns);
    let pipeline = FittedPipeline {
        spec: Default::default(),
        columns: (0..=columns).map(|c| format!("c{c}")).collect(),
        transforms: (0..=columns)
            .map(|c| {
                if c == columns {
                    ColumnTransform::Drop
                } else {
                    ColumnTransform::Numeric { fill: 0.0, offset: 33.0, scale: 1.0 / 78.0 }
                }
            })
            .collect(),
        label: columns,
        classes: Vec::new(),
        features: columns,
        task: Task::Classification,
        target: None,
        crosses: Vec::new(),
        projection: None,
    };
    println!("| stored as | rows/s (1 thread) | ms per {rows} rows |");
    println!("|---|---|---|");
    type Layout = fn(Vec<f64>) -> ShardColumn;
    let layouts: [(&str, Layout); 4] = [
        ("bytes", ShardColumn::numbers),
        ("f32", |v| ShardColumn::Float32(v.iter().map(|&x| x as f32).collect())),
        ("f64", ShardColumn::Numeric),
        ("bytes, after a product", ShardColumn::numbers),
    ];
    for (name, layout) in layouts {
        let product_first = name.contains("product");
        let mut shard_columns: Vec<ShardColumn> = values.iter().cloned().map(layout).collect();
        shard_columns.push(ShardColumn::Numeric(vec![0.0; rows]));
        let shard = Shard { first_row: 0, columns: shard_columns, splits: vec![Split::Test; rows] };
        let mut best = f64::INFINITY;
        for _ in 0..15 {
            if product_first {
                // One 64x64 product, timed apart.
                mass_kernels::cpu::measure_gemm_gflops_with(64, Duration::ZERO, 1);
            }
            let start = Instant::now();
            let out = transform(&pipeline, &shard).unwrap();
            best = best.min(start.elapsed().as_secs_f64());
            assert_eq!(out.dim(), (rows, columns));
        }
        println!("| {name} | {:.0} | {:.1} |", rows as f64 / best, best * 1e3);
    }
}
