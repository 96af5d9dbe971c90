//! MLP 784-128-10 on MNIST, 20 epochs, batch 64, Adam 1e-3, one process:
//! training samples/s and test accuracy, for BENCHMARKS.md (against PyTorch
//! CPU with 2 threads and scikit-learn, `../shared/baselines`).
//!
//! `cargo bench -p mass-kernels --bench mlp [-- EPOCHS]`; `MLP_HIDDEN` (comma
//! separated widths, empty for softmax regression), `MLP_L2` and `MLP_LR`
//! change the model for tuning runs; `MLP_THREADS` (default 2, as PyTorch's
//! side-by-side run) sets the CPU backend's threads per product;
//! `MLP_BACKEND=wgpu` trains on the default wgpu adapter instead.

use std::{collections::BTreeSet, io::Read, time::Instant};

use mass_kernels::cpu::CpuBackend;
use mass_kernels::models::{Mlp, MlpConfig, Target, metrics::accuracy};
use ndarray::Array2;

fn main() {
    let epochs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20);
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let dir = root.join("../../shared/datasets");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(dir.join("mnist.csv.gz")).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let test: BTreeSet<usize> = std::fs::read_to_string(dir.join("mnist.test_rows.txt"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let (mut x, mut y, mut tx, mut ty) = (vec![], vec![], vec![], vec![]);
    for (row, line) in text.lines().skip(1).enumerate() {
        let mut values = line.split(',').map(|v| v.parse::<f32>().unwrap());
        let pixels: Vec<f32> = values.by_ref().take(784).map(|p| p / 255.0).collect();
        let label = values.next().unwrap() as usize;
        if test.contains(&row) {
            tx.extend(pixels);
            ty.push(label);
        } else {
            x.extend(pixels);
            y.push(label);
        }
    }
    let x = Array2::from_shape_vec((y.len(), 784), x).unwrap();
    let tx = Array2::from_shape_vec((ty.len(), 784), tx).unwrap();
    let env = |name: &str| std::env::var(name).ok();
    let hidden: Vec<usize> = env("MLP_HIDDEN")
        .map(|h| h.split(',').filter(|w| !w.is_empty()).map(|w| w.parse().expect("MLP_HIDDEN widths")).collect())
        .unwrap_or_else(|| vec![128]);
    let l2 = env("MLP_L2").map_or(0.0, |v| v.parse().expect("MLP_L2"));
    let learning_rate = env("MLP_LR").map_or(1e-3, |v| v.parse().expect("MLP_LR"));
    let optimizer = mass_kernels::models::Optimizer::Adam { learning_rate };
    let config = MlpConfig { hidden: hidden.clone(), epochs, batch_size: 64, l2, optimizer, ..MlpConfig::default() };
    let threads: usize = env("MLP_THREADS").map_or(2, |v| v.parse().expect("MLP_THREADS"));
    let backend = CpuBackend::with_threads(threads);
    let start = Instant::now();
    let target = Target::Classes { labels: &y, classes: 10 };
    let (model, name) = if env("MLP_BACKEND").as_deref() == Some("wgpu") {
        let gpu = mass_kernels::gpu::GpuBackend::open_default().unwrap();
        let (model, _) = Mlp::fit_on(&gpu, None, x.view(), target, None, &config, &mut |_, _| {}).unwrap();
        (model, mass_kernels::Backend::name(&gpu))
    } else {
        let (model, _) = Mlp::fit_on(&backend, None, x.view(), target, None, &config, &mut |_, _| {}).unwrap();
        (model, format!("cpu, {threads} threads"))
    };
    let secs = start.elapsed().as_secs_f64();
    let acc = accuracy(&ty, &model.predict_classes(tx.view()));
    println!(
        "| Mass MLP 784-{hidden:?}-10, {epochs} epochs, batch 64, Adam {learning_rate}, l2 {l2}, {name} | {secs:.1} s | {:.0} samples/s | accuracy {acc:.4} |",
        (y.len() * epochs) as f64 / secs
    );
}
