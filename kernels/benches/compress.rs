//! Compression of an MLP 784-128-10 trained on MNIST, for BENCHMARKS.md:
//! int8 against f32 and the sparse kernel against dense at 1 and 1,000
//! rows (one thread each), and the size and test accuracy of each variant
//! (int8; pruned to 80% with and without 2 epochs of fine-tuning at the
//! training settings, as `mass models compress` does; a student of a
//! bagging-of-8).
//!
//! `cargo bench -p mass-kernels --bench compress [-- EPOCHS]` (default 5
//! epochs per network). Times are the fastest of repeated calls. `COMPRESS_LATENCY_ONLY=1` skips training (random
//! weights, random rows in [0, 1)) and measures latency alone.

use std::{collections::BTreeSet, io::Read, time::Instant};

use mass_kernels::models::{
    Member, Mlp, MlpConfig, Target, distill,
    ensemble::argmax_rows,
    quantized::{Kernel, QuantizedMlp},
    sparse::{self, SparseMlp},
};
use ndarray::{Array2, ArrayView2, Axis, s};
use rand::{Rng, SeedableRng, rngs::StdRng};

struct Mnist {
    x: Array2<f32>,
    y: Vec<usize>,
    tx: Array2<f32>,
    ty: Vec<usize>,
}

fn mnist() -> Mnist {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
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
    Mnist {
        x: Array2::from_shape_vec((y.len(), 784), x).unwrap(),
        tx: Array2::from_shape_vec((ty.len(), 784), tx).unwrap(),
        y,
        ty,
    }
}

/// Fastest of `reps` calls, in seconds: the machine this runs on is shared,
/// and the minimum is the figure least moved by other load.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[0]
}

/// Single-row (µs: the median over the first 200 rows of each row's
/// fastest of 5) and 1,000-row (ms: fastest of 21) latency of a member.
fn latency(member: &Member, rows: ArrayView2<'_, f32>) -> (f64, f64) {
    let mut single = Vec::new();
    for r in 0..200 {
        let row = rows.slice(s![r..r + 1, ..]);
        single.push(time(5, || {
            std::hint::black_box(member.predict(row));
        }));
    }
    single.sort_by(f64::total_cmp);
    let batch = rows.slice(s![..1000, ..]);
    let thousand = time(21, || {
        std::hint::black_box(member.predict(batch));
    });
    (single[100] * 1e6, thousand * 1e3)
}

fn accuracy(out: &Array2<f32>, truth: &[usize]) -> f64 {
    argmax_rows(out).iter().zip(truth).filter(|(a, b)| a == b).count() as f64 / truth.len() as f64
}

fn bytes(member: &Member) -> usize {
    mass_protocol::codec::encode(member).unwrap().len()
}

fn row(name: &str, member: &Member, test: Option<(&Array2<f32>, &[usize])>, rows: ArrayView2<'_, f32>) {
    let (one, thousand) = latency(member, rows);
    let acc = test.map_or("-".into(), |(tx, ty)| format!("{:.4}", accuracy(&member.predict(tx.view()), ty)));
    println!("| {name} | {} | {acc} | {one:.1} | {thousand:.2} |", bytes(member));
}

fn main() {
    let epochs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5);
    println!("int8 kernel: {:?}", Kernel::detected());
    let latency_only = std::env::var_os("COMPRESS_LATENCY_ONLY").is_some();
    let config = MlpConfig { hidden: vec![128], epochs, batch_size: 64, l2: 0.0, ..MlpConfig::default() };
    let (net, data) = if latency_only {
        let mut rng = StdRng::seed_from_u64(1);
        (Mlp::new(784, 10, &config, &mut rng), None)
    } else {
        let data = mnist();
        let start = Instant::now();
        let (net, _) = Mlp::fit(data.x.view(), Target::Classes { labels: &data.y, classes: 10 }, None, &config);
        eprintln!("trained 784-128-10 in {:.1} s", start.elapsed().as_secs_f64());
        (net, Some(data))
    };
    let mut rng = StdRng::seed_from_u64(2);
    let random_rows = Array2::from_shape_simple_fn((1000, 784), || rng.random_range(0.0f32..1.0));
    let rows = data.as_ref().map_or(random_rows.view(), |d| d.tx.view());
    let test = data.as_ref().map(|d| (&d.tx, d.ty.as_slice()));

    println!("| variant | bytes (bincode) | test accuracy | 1 row (µs) | 1,000 rows (ms) |");
    println!("|---|---|---|---|---|");
    let f32_member = Member::Mlp(net.clone());
    row("f32", &f32_member, test, rows);
    let q = QuantizedMlp::quantize(&net).unwrap();
    if std::env::var_os("COMPRESS_PROFILE_INT8").is_some() {
        // For a profiler: the detected int8 kernel on 1,000 rows, 200 times.
        for _ in 0..200 {
            std::hint::black_box(q.predict_with(Kernel::detected(), rows.slice(s![..1000, ..])));
        }
        return;
    }
    row("int8", &Member::Int8(q.clone()), test, rows);
    for kernel in [Kernel::Scalar, Kernel::Portable, Kernel::Avx2, Kernel::Avx512].into_iter().filter(|k| k.available())
    {
        let one = time(201, || {
            std::hint::black_box(q.predict_with(kernel, rows.slice(s![..1, ..])));
        });
        let thousand = time(11, || {
            std::hint::black_box(q.predict_with(kernel, rows.slice(s![..1000, ..])));
        });
        println!("|   int8 kernel {kernel:?} | | | {:.1} | {:.2} |", one * 1e6, thousand * 1e3);
    }
    // Where the int8 kernel stops winning: f32 against the detected int8
    // kernel by batch size (fastest of 21 each, interleaved).
    println!("|   rows: f32 / int8 kernel (µs) | | | | |");
    for n in [1, 4, 16, 64, 256, 1000] {
        let batch = rows.slice(s![..n, ..]);
        let (mut f, mut i) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..21 {
            f = f.min(time(1, || {
                std::hint::black_box(net.predict(batch));
            }));
            i = i.min(time(1, || {
                std::hint::black_box(q.predict_with(Kernel::detected(), batch));
            }));
        }
        println!("|   {n} rows | | | {:.1} / {:.1} | |", f * 1e6, i * 1e6);
    }
    let (pruned, mask) = sparse::prune(&net, 0.8).unwrap();
    let sparse_member = Member::Sparse(SparseMlp::from_dense(&pruned));
    row("pruned 80% (served)", &sparse_member, test, rows);
    if let Member::Sparse(sparse) = &sparse_member {
        let one = time(201, || {
            std::hint::black_box(sparse.predict_sparse(rows.slice(s![..1, ..])));
        });
        let thousand = time(11, || {
            std::hint::black_box(sparse.predict_sparse(rows.slice(s![..1000, ..])));
        });
        println!("|   sparse kernel | | | {:.1} | {:.2} |", one * 1e6, thousand * 1e3);
    }
    row("  densified", &Member::Mlp(pruned.clone()), test, rows);
    let Some(data) = data.as_ref() else { return };
    let tuned =
        sparse::fine_tune(pruned, &mask, data.x.view(), Target::Classes { labels: &data.y, classes: 10 }, &config, 2)
            .unwrap();
    row("pruned 80% + 2 epochs fine-tuning", &Member::Sparse(SparseMlp::from_dense(&tuned)), test, rows);
    let tuned_int8 = QuantizedMlp::quantize(&tuned).unwrap();
    row("  then int8", &Member::Int8(tuned_int8), test, rows);

    // Bagging of 8 (each member on one eighth of the rows, as shards),
    // then a student of the same shape trained on the ensemble's probabilities.
    let n = data.x.nrows();
    let mut members = Vec::new();
    for m in 0..8 {
        let picked: Vec<usize> = (m * n / 8..(m + 1) * n / 8).collect();
        let labels: Vec<usize> = picked.iter().map(|&r| data.y[r]).collect();
        let c = MlpConfig { seed: m as u64, epochs: epochs * 3, ..config.clone() };
        let (member, _) = Mlp::fit(
            data.x.select(Axis(0), &picked).view(),
            Target::Classes { labels: &labels, classes: 10 },
            None,
            &c,
        );
        members.push(member);
    }
    let mean = |x: ArrayView2<'_, f32>| {
        members.iter().map(|m| m.predict(x)).fold(Array2::zeros((x.nrows(), 10)), |a, o| a + o) / 8.0
    };
    let single = members.iter().map(|m| accuracy(&m.predict(data.tx.view()), &data.ty)).sum::<f64>() / 8.0;
    let ensemble = accuracy(&mean(data.tx.view()), &data.ty);
    let teacher = mean(data.x.view());
    let student_config = MlpConfig { epochs: epochs * 3, ..config.clone() };
    let (student, _) = distill::distill(data.x.view(), teacher.view(), None, &student_config).unwrap();
    let distilled = accuracy(&student.predict(data.tx.view()), &data.ty);
    let ensemble_bytes: usize = members.iter().map(|m| bytes(&Member::Mlp(m.clone()))).sum();
    println!(
        "\nbagging of 8 (one eighth each): members {single:.4} on average, ensemble {ensemble:.4} ({ensemble_bytes} bytes); \
         student mlp:128 {distilled:.4} ({} bytes): keeps {:.0}% of the gain",
        bytes(&Member::Mlp(student.clone())),
        100.0 * (distilled - single) / (ensemble - single)
    );
}
