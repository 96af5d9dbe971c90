//! Softmax regression and an MLP on the digits data with its fixed test rows,
//! against the scikit-learn accuracies in `../shared/datasets/README.md`
//! (logistic regression 0.956, MLP 64-128-10 0.967).

use std::collections::BTreeSet;

use mass_kernels::models::{Mlp, MlpConfig, Target, metrics::accuracy};
use ndarray::Array2;

fn digits() -> (Array2<f32>, Vec<usize>, Array2<f32>, Vec<usize>) {
    // Read at run time: a binary reused from another checkout must not look there.
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let dir = root.join("../../shared/datasets");
    let text = std::fs::read_to_string(dir.join("digits.csv")).unwrap();
    let test: BTreeSet<usize> = std::fs::read_to_string(dir.join("digits.test_rows.txt"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let (mut train_x, mut train_y, mut test_x, mut test_y) = (vec![], vec![], vec![], vec![]);
    for (row, line) in text.lines().skip(1).enumerate() {
        let values: Vec<f32> = line.split(',').map(|v| v.parse().unwrap()).collect();
        let (pixels, label) = values.split_at(64);
        let (x, y) = if test.contains(&row) { (&mut test_x, &mut test_y) } else { (&mut train_x, &mut train_y) };
        x.extend(pixels.iter().map(|p| p / 16.0));
        y.push(label[0] as usize);
    }
    let rows = |x: Vec<f32>| Array2::from_shape_vec((x.len() / 64, 64), x).unwrap();
    (rows(train_x), train_y, rows(test_x), test_y)
}

#[test]
fn softmax_regression_and_mlp_reach_the_scikit_learn_accuracies() {
    let (x, y, tx, ty) = digits();
    assert_eq!((x.nrows(), tx.nrows()), (1437, 360));
    let target = Target::Classes { labels: &y, classes: 10 };

    let linear = MlpConfig {
        hidden: vec![],
        epochs: 60,
        batch_size: 32,
        optimizer: mass_kernels::models::Optimizer::Adam { learning_rate: 1e-2 },
        ..MlpConfig::default()
    };
    let (model, _) = Mlp::fit(x.view(), target, None, &linear);
    let softmax = accuracy(&ty, &model.predict_classes(tx.view()));

    let mlp = MlpConfig { hidden: vec![128], epochs: 60, batch_size: 32, ..MlpConfig::default() };
    let (model, curve) = Mlp::fit(x.view(), target, None, &mlp);
    let network = accuracy(&ty, &model.predict_classes(tx.view()));
    eprintln!(
        "digits: softmax regression {softmax:.4}, MLP 64-128-10 {network:.4}, final train loss {:.4}",
        curve.train_loss.last().unwrap()
    );
    assert!(softmax >= 0.956, "softmax regression {softmax}");
    assert!(network >= 0.967, "MLP {network}");
}

/// Issue 11: the same MLP trained through wgpu (lavapipe on machines without
/// a GPU) reaches the CPU's accuracy within half a point.
#[test]
fn mlp_on_wgpu_matches_the_cpu_accuracy() {
    let Some(gpu) = mass_kernels::gpu::open_for_tests() else { return };
    let (x, y, tx, ty) = digits();
    let target = Target::Classes { labels: &y, classes: 10 };
    let mlp = MlpConfig { hidden: vec![128], epochs: 60, batch_size: 32, ..MlpConfig::default() };
    let cpu = mass_kernels::cpu::CpuBackend::new();
    let (on_cpu, _) = Mlp::fit_on(&cpu, None, x.view(), target, None, &mlp, &mut |_, _| {}).unwrap();
    let (on_gpu, curve) = Mlp::fit_on(&gpu, None, x.view(), target, None, &mlp, &mut |_, _| {}).unwrap();
    let cpu_accuracy = accuracy(&ty, &on_cpu.predict_classes(tx.view()));
    let gpu_classes = mass_kernels::models::ensemble::argmax_rows(&on_gpu.predict_on(&gpu, tx.view()).unwrap());
    let gpu_accuracy = accuracy(&ty, &gpu_classes);
    eprintln!(
        "digits MLP: cpu {cpu_accuracy:.4}, {} {gpu_accuracy:.4}, final train loss {:.4}",
        mass_kernels::Backend::name(&gpu),
        curve.train_loss.last().unwrap()
    );
    assert!((cpu_accuracy - gpu_accuracy).abs() <= 0.005, "cpu {cpu_accuracy} vs gpu {gpu_accuracy}");
}
