//! The reference bridge, printed as a Markdown table for BENCHMARKS.md.
//!
//! `cargo bench -p mass-node --bench bridge`
//!
//! The bridge runs in this process on 127.0.0.1 (fixed<16,6>, half-even,
//! 48-bit accumulator) and is driven through the node's own client, one
//! batch at a time as a device runs them. Per model and batch size: rows/s
//! and p50/p99 latency through the protocol (HTTP/JSON), rows/s of the
//! emulated device alone (no transport), and rows/s of the f32 network on
//! the CPU (ndarray), which is what a node compares a bridge against.

use std::{
    net::TcpListener,
    time::{Duration, Instant},
};

use mass_kernels::models::{Loss, Mlp, mlp::Activation as Hidden};
use mass_node::bridge::{
    client::Client,
    device::Program,
    fixed::{Numerics, Rounding},
    plan, server,
    wire::{self, MlpModel},
};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng, rngs::StdRng};

const BATCHES: [usize; 5] = [1, 16, 64, 256, 1024];
/// Time spent on each cell of the table (at least `MIN_RUNS` runs).
const BUDGET: Duration = Duration::from_millis(1500);
const MIN_RUNS: usize = 20;

/// A 784-128-10 network with Glorot-uniform weights: MNIST-shaped.
fn mnist_model() -> MlpModel {
    let mut rng = StdRng::seed_from_u64(3);
    let mut layer = |inputs: u32, outputs: u32, activation| {
        let bound = (6.0 / (inputs + outputs) as f32).sqrt();
        wire::DenseLayer {
            inputs,
            outputs,
            activation,
            weights: (0..inputs * outputs).map(|_| rng.random_range(-bound..bound)).collect(),
            bias: vec![0.0; outputs as usize],
        }
    };
    let layers = vec![layer(784, 128, wire::Activation::Relu), layer(128, 10, wire::Activation::Softmax)];
    MlpModel { format: wire::MLP_FORMAT.into(), layers }
}

/// The same network as the kernels' f32 type.
fn as_mlp(model: &MlpModel) -> Mlp {
    Mlp {
        weights: model
            .layers
            .iter()
            .map(|l| Array2::from_shape_vec((l.inputs as usize, l.outputs as usize), l.weights.clone()).unwrap())
            .collect(),
        biases: model.layers.iter().map(|l| Array1::from(l.bias.clone())).collect(),
        activation: Hidden::Relu,
        loss: Loss::SoftmaxCrossEntropy,
    }
}

/// Runs `f` until the budget is spent; (per-run latencies sorted, total time).
fn timed(mut f: impl FnMut()) -> (Vec<Duration>, Duration) {
    f(); // warm-up
    let started = Instant::now();
    let mut runs = Vec::new();
    while runs.len() < MIN_RUNS || started.elapsed() < BUDGET {
        let t = Instant::now();
        f();
        runs.push(t.elapsed());
    }
    let total = started.elapsed();
    runs.sort();
    (runs, total)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let numerics = Numerics::new("fixed<16,6>".parse().unwrap(), Rounding::HalfEven, 48).unwrap();
    let mut options = server::Options::new(numerics);
    options.max_batch = 1024;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = runtime.block_on(async {
        let server = server::serve(listener, options).unwrap();
        let handle = server.handle();
        tokio::spawn(server);
        handle
    });
    let client = Client::new(&format!("tcp://{addr}")).unwrap();
    let limit = Duration::from_secs(30);

    println!("Reference bridge, {} (half-even, 48-bit accumulator), one batch at a time:\n", numerics.format);
    println!("| model | batch | bridge rows/s | p50 | p99 | device alone rows/s | CPU f32 rows/s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (label, model) in [("64-128-10", plan::probe_model()), ("784-128-10", mnist_model())] {
        runtime.block_on(client.load("bench", &model, limit)).unwrap();
        let program = Program::compile(&model, numerics).unwrap();
        let mlp = as_mlp(&model);
        let mut rng = StdRng::seed_from_u64(5);
        for rows in BATCHES {
            let data: Vec<f32> = (0..rows * model.inputs()).map(|_| rng.random_range(-2.0f32..2.0)).collect();
            let x = Array2::from_shape_vec((rows, model.inputs()), data.clone()).unwrap();
            let (latencies, total) = timed(|| {
                runtime.block_on(client.infer("bench", rows, model.inputs(), data.clone(), limit)).unwrap();
            });
            let bridge = (rows * latencies.len()) as f64 / total.as_secs_f64();
            let (device_runs, device_total) = timed(|| {
                program.run(&data, rows, None).unwrap();
            });
            let device = (rows * device_runs.len()) as f64 / device_total.as_secs_f64();
            let (cpu_runs, cpu_total) = timed(|| {
                std::hint::black_box(mlp.predict(x.view()));
            });
            let cpu = (rows * cpu_runs.len()) as f64 / cpu_total.as_secs_f64();
            println!(
                "| {label} | {rows} | {bridge:.0} | {} | {} | {device:.0} | {cpu:.0} |",
                ms(quantile(&latencies, 0.5)),
                ms(quantile(&latencies, 0.99)),
            );
        }
        runtime.block_on(client.unload("bench", limit)).unwrap();
    }
    runtime.block_on(handle.stop(true));
}
