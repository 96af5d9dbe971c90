//! The wgpu backend checked op by op against the CPU backend on seeded
//! random inputs of odd shapes (1x1, 7x13, 1000x3, 129x257 x 257x65, ...).
//!
//! Tolerance: GEMM results agree within `1e-5 * (1 + sum |a_ik b_kj|)` per
//! element (the bound on f32 rounding of a length-k sum in any order, with
//! room for fused multiply-adds); element-wise ops within 1e-5 relative
//! (`exp`, `tanh` and division differ by a few ulps between implementations);
//! column sums, which run in the CPU's order, and ReLU masks exactly.
//!
//! Without an adapter these tests print that they were skipped, unless
//! `MASS_REQUIRE_GPU_TESTS=1`, where they fail (see [`super::open_for_tests`]).

use std::sync::OnceLock;

use ndarray::Array2;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::{GpuBackend, open_for_tests};
use crate::backend::{Activation, AdamStep, Backend, Operand, OutputLoss, SgdStep, Tensor};
use crate::cpu::CpuBackend;

/// One device for the whole suite: opening one on lavapipe takes a while.
fn gpu() -> Option<&'static GpuBackend> {
    static GPU: OnceLock<Option<GpuBackend>> = OnceLock::new();
    GPU.get_or_init(open_for_tests).as_ref()
}

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || rng.random_range(-1.0f32..1.0))
}

fn assert_close(what: &str, gpu: &Array2<f32>, cpu: &Array2<f32>, tolerance: &Array2<f32>) {
    assert_eq!(gpu.dim(), cpu.dim(), "{what}: shapes");
    for ((idx, g), c) in gpu.indexed_iter().zip(cpu) {
        let tol = tolerance[idx];
        assert!((g - c).abs() <= tol, "{what} at {idx:?}: gpu {g} cpu {c} (tolerance {tol})");
    }
}

fn relative(cpu: &Array2<f32>, rel: f32) -> Array2<f32> {
    cpu.mapv(|v| rel * (1.0 + v.abs()))
}

/// Runs `op` on both backends from the same host inputs and returns both results.
fn both<F, G>(gpu: &GpuBackend, cpu_op: F, gpu_op: G) -> (Array2<f32>, Array2<f32>)
where
    F: FnOnce(&CpuBackend) -> Array2<f32>,
    G: FnOnce(&GpuBackend) -> Array2<f32>,
{
    (gpu_op(gpu), cpu_op(&CpuBackend::new()))
}

#[test]
fn gemm_matches_cpu_on_odd_shapes_and_transposes() {
    let Some(gpu) = gpu() else { return };
    let shapes = [(1, 1, 1), (7, 13, 5), (1000, 3, 7), (129, 257, 65), (64, 784, 128), (3, 0, 4), (65, 1, 130)];
    for (i, &(m, k, n)) in shapes.iter().enumerate() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = if ta { random(k, m, i as u64) } else { random(m, k, i as u64) };
            let b = if tb { random(n, k, 100 + i as u64) } else { random(k, n, 100 + i as u64) };
            let c0 = random(m, n, 200 + i as u64);
            for accumulate in [false, true] {
                let g = product(gpu, &a, ta, &b, tb, &c0, accumulate);
                let c = product(&CpuBackend::new(), &a, ta, &b, tb, &c0, accumulate);
                let av = if ta { a.t().to_owned() } else { a.clone() };
                let bv = if tb { b.t().to_owned() } else { b.clone() };
                let bound = av.mapv(f32::abs).dot(&bv.mapv(f32::abs))
                    + if accumulate { c0.mapv(f32::abs) } else { Array2::zeros((m, n)) };
                let tolerance = bound.mapv(|s| 1e-5 * (1.0 + s));
                assert_close(&format!("gemm {m}x{k}x{n} ta={ta} tb={tb} acc={accumulate}"), &g, &c, &tolerance);
            }
        }
    }
}

fn product<B: Backend>(
    backend: &B,
    a: &Array2<f32>,
    ta: bool,
    b: &Array2<f32>,
    tb: bool,
    c: &Array2<f32>,
    accumulate: bool,
) -> Array2<f32> {
    let (a, b) = (backend.upload(a.view()).unwrap(), backend.upload(b.view()).unwrap());
    let mut out = backend.upload(c.view()).unwrap();
    let op = |t, transposed| if transposed { Operand::Transposed(t) } else { Operand::Plain(t) };
    backend.gemm(op(&a, ta), op(&b, tb), &mut out, accumulate).unwrap();
    backend.download(&out).unwrap()
}

#[test]
fn gemm_rejects_bad_shapes_before_queueing() {
    let Some(gpu) = gpu() else { return };
    let (a, b) = (gpu.zeros(2, 3).unwrap(), gpu.zeros(2, 3).unwrap());
    let mut c = gpu.zeros(2, 2).unwrap();
    assert!(matches!(gpu.gemm(Operand::Plain(&a), Operand::Plain(&b), &mut c, false), Err(crate::Error::Shape { .. })));
    gpu.gemm(Operand::Plain(&a), Operand::Transposed(&b), &mut c, false).unwrap();
    gpu.finish().unwrap();
}

#[test]
fn element_wise_ops_match_cpu() {
    let Some(gpu) = gpu() else { return };
    for (rows, cols) in [(1, 1), (7, 13), (1000, 3), (3, 1000), (300, 257)] {
        let z = random(rows, cols, 1).mapv(|v| 4.0 * v);
        let bias = random(1, cols, 2);
        for activation in [Activation::Identity, Activation::Relu, Activation::Tanh] {
            let (g, c) = both(
                gpu,
                |cpu| {
                    let mut t = cpu.upload(z.view()).unwrap();
                    cpu.bias_activation(&mut t, &cpu.upload(bias.view()).unwrap(), activation).unwrap();
                    cpu.download(&t).unwrap()
                },
                |gpu| {
                    let mut t = gpu.upload(z.view()).unwrap();
                    gpu.bias_activation(&mut t, &gpu.upload(bias.view()).unwrap(), activation).unwrap();
                    gpu.download(&t).unwrap()
                },
            );
            assert_close(&format!("bias {activation:?} {rows}x{cols}"), &g, &c, &relative(&c, 1e-5));
            // The derivative masks on the activated values just computed.
            let delta = random(rows, cols, 3);
            let (g2, c2) = both(
                gpu,
                |cpu| {
                    let mut d = cpu.upload(delta.view()).unwrap();
                    cpu.activation_grad(&mut d, &cpu.upload(c.view()).unwrap(), activation).unwrap();
                    cpu.download(&d).unwrap()
                },
                |gpu| {
                    let mut d = gpu.upload(delta.view()).unwrap();
                    gpu.activation_grad(&mut d, &gpu.upload(c.view()).unwrap(), activation).unwrap();
                    gpu.download(&d).unwrap()
                },
            );
            assert_close(&format!("grad {activation:?} {rows}x{cols}"), &g2, &c2, &relative(&c2, 1e-6));
        }
        let (g, c) = both(
            gpu,
            |cpu| {
                let mut t = cpu.upload(z.view()).unwrap();
                cpu.softmax_rows(&mut t).unwrap();
                cpu.download(&t).unwrap()
            },
            |gpu| {
                let mut t = gpu.upload(z.view()).unwrap();
                gpu.softmax_rows(&mut t).unwrap();
                gpu.download(&t).unwrap()
            },
        );
        assert_close(&format!("softmax {rows}x{cols}"), &g, &c, &relative(&c, 1e-5));
        let (g, c) = both(
            gpu,
            |cpu| {
                let mut out = cpu.zeros(1, cols).unwrap();
                cpu.column_sums(&cpu.upload(z.view()).unwrap(), &mut out).unwrap();
                cpu.download(&out).unwrap()
            },
            |gpu| {
                let mut out = gpu.zeros(1, cols).unwrap();
                gpu.column_sums(&gpu.upload(z.view()).unwrap(), &mut out).unwrap();
                gpu.download(&out).unwrap()
            },
        );
        assert_eq!(g, c, "column sums {rows}x{cols}");
        let gpu_sq = gpu.sum_squares(&gpu.upload(z.view()).unwrap()).unwrap();
        let cpu_sq = CpuBackend::new().sum_squares(&CpuBackend::new().upload(z.view()).unwrap()).unwrap();
        assert_eq!(gpu_sq, cpu_sq);
    }
}

#[test]
fn output_deltas_and_row_losses_match_cpu() {
    let Some(gpu) = gpu() else { return };
    for (rows, cols) in [(1, 1), (7, 13), (1000, 3), (64, 10)] {
        let mut probabilities = random(rows, cols, 4).mapv(f32::exp);
        probabilities.rows_mut().into_iter().for_each(|mut r| {
            let s = r.sum();
            r.mapv_inplace(|v| v / s)
        });
        let mut one_hot = Array2::zeros((rows, cols));
        (0..rows).for_each(|r| one_hot[[r, (r * 7) % cols]] = 1.0);
        let values = random(rows, cols, 5);
        let targets = random(rows, cols, 6).mapv(|v| 2.0 * v);
        let cases = [
            (OutputLoss::SoftmaxCrossEntropy, &probabilities, &one_hot),
            (OutputLoss::SquaredError, &values, &targets),
            (OutputLoss::Huber { delta: 0.5 }, &values, &targets),
        ];
        for (loss, outputs, targets) in cases {
            let offset = 3;
            let run = |backend: &dyn DeltaRunner| backend.run(outputs, targets, loss, offset);
            let (gd, gl) = run(gpu);
            let (cd, cl) = run(&CpuBackend::new());
            assert_close(&format!("{loss:?} delta {rows}x{cols}"), &gd, &cd, &relative(&cd, 1e-6));
            assert_close(&format!("{loss:?} losses {rows}x{cols}"), &gl, &cl, &relative(&cl, 1e-5));
            assert!(gl.iter().take(offset).all(|&v| v == 0.0), "rows before the offset are left alone");
        }
    }
}

/// Object-safe wrapper to run one output-delta op on either backend.
trait DeltaRunner {
    fn run(
        &self,
        outputs: &Array2<f32>,
        targets: &Array2<f32>,
        loss: OutputLoss,
        offset: usize,
    ) -> (Array2<f32>, Array2<f32>);
}

impl<B: Backend> DeltaRunner for B {
    fn run(
        &self,
        outputs: &Array2<f32>,
        targets: &Array2<f32>,
        loss: OutputLoss,
        offset: usize,
    ) -> (Array2<f32>, Array2<f32>) {
        let (o, t) = (self.upload(outputs.view()).unwrap(), self.upload(targets.view()).unwrap());
        let (rows, cols) = o.shape();
        let mut delta = self.zeros(rows, cols).unwrap();
        let mut losses = self.zeros(offset + rows, 1).unwrap();
        self.output_delta(&o, &t, loss, &mut delta, &mut losses, offset).unwrap();
        (self.download(&delta).unwrap(), self.download(&losses).unwrap())
    }
}

#[test]
fn optimizer_steps_match_cpu_over_many_steps() {
    let Some(gpu) = gpu() else { return };
    for (rows, cols) in [(1, 1), (7, 13), (784, 128)] {
        let start = random(rows, cols, 7);
        let run = |backend: &dyn StepRunner| backend.steps(&start, 25);
        let (ga, gs) = run(gpu);
        let (ca, cs) = run(&CpuBackend::new());
        assert_close(&format!("adam {rows}x{cols}"), &ga, &ca, &relative(&ca, 1e-5));
        assert_close(&format!("sgd {rows}x{cols}"), &gs, &cs, &relative(&cs, 1e-5));
    }
}

trait StepRunner {
    /// Parameters after `steps` Adam steps and after `steps` SGD steps, on
    /// gradients that change every step.
    fn steps(&self, start: &Array2<f32>, steps: i32) -> (Array2<f32>, Array2<f32>);
}

impl<B: Backend> StepRunner for B {
    fn steps(&self, start: &Array2<f32>, steps: i32) -> (Array2<f32>, Array2<f32>) {
        let (rows, cols) = start.dim();
        let (mut adam, mut sgd) = (self.upload(start.view()).unwrap(), self.upload(start.view()).unwrap());
        let (mut m, mut v, mut vel) =
            (self.zeros(rows, cols).unwrap(), self.zeros(rows, cols).unwrap(), self.zeros(rows, cols).unwrap());
        for t in 1..=steps {
            let grad = self.upload(random(rows, cols, 1000 + t as u64).view()).unwrap();
            self.adam(&mut adam, &grad, &mut m, &mut v, AdamStep::at(t, 1e-2, 1e-3)).unwrap();
            self.sgd(&mut sgd, &grad, &mut vel, SgdStep { learning_rate: 0.05, momentum: 0.9, l2: 1e-3 }).unwrap();
        }
        (self.download(&adam).unwrap(), self.download(&sgd).unwrap())
    }
}

#[test]
fn load_rows_and_write_place_host_data() {
    let Some(gpu) = gpu() else { return };
    let src = random(50, 9, 8);
    let mut t = gpu.zeros(4, 9).unwrap();
    gpu.load_rows(src.view(), &[49, 0, 7, 7], &mut t).unwrap();
    assert_eq!(gpu.download(&t).unwrap(), src.select(ndarray::Axis(0), &[49, 0, 7, 7]));
    assert!(matches!(gpu.load_rows(src.view(), &[50, 0, 1, 2], &mut t), Err(crate::Error::Shape { .. })));
    gpu.write(&mut t, src.t().slice(ndarray::s![..4, ..])).unwrap_err();
    let strided = src.slice(ndarray::s![..4, ..;1]).to_owned().reversed_axes().reversed_axes();
    gpu.write(&mut t, strided.view()).unwrap();
    assert_eq!(gpu.download(&t).unwrap(), strided);
}

#[test]
fn mlp_gradients_match_cpu() {
    use crate::models::{Activation as Act, Loss, Mlp, MlpConfig, Target};
    let Some(gpu) = gpu() else { return };
    for (loss, activation, outputs) in [
        (Loss::SoftmaxCrossEntropy, Act::Relu, 10),
        (Loss::SquaredError, Act::Tanh, 3),
        (Loss::Huber { delta: 0.3 }, Act::Relu, 2),
    ] {
        let config = MlpConfig { hidden: vec![33, 17], activation, loss, l2: 1e-3, ..MlpConfig::default() };
        let model = Mlp::new(29, outputs, &config, &mut StdRng::seed_from_u64(9));
        let x = random(45, 29, 10);
        let labels: Vec<usize> = (0..45).map(|i| i % outputs).collect();
        let y = match loss {
            Loss::SoftmaxCrossEntropy => {
                Target::Classes { labels: &labels, classes: outputs }.dense(&(0..45).collect::<Vec<_>>())
            }
            _ => random(45, outputs, 11),
        };
        let g = crate::models::mlp::gradients_on(gpu, &model, x.view(), y.view(), config.l2).unwrap();
        let c = crate::models::mlp::gradients_on(&CpuBackend::new(), &model, x.view(), y.view(), config.l2).unwrap();
        for (l, ((gw, gb), (cw, cb))) in g.iter().zip(&c).enumerate() {
            let scale = cw.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert_close(&format!("{loss:?} weights {l}"), gw, cw, &cw.mapv(|_| 1e-4 * (1e-3 + scale)));
            assert_close(&format!("{loss:?} biases {l}"), gb, cb, &cb.mapv(|_| 1e-4 * (1e-3 + scale)));
        }
    }
}

#[test]
fn mlp_training_and_prediction_follow_cpu() {
    use crate::models::{Mlp, MlpConfig, Target};
    let Some(gpu) = gpu() else { return };
    let x = random(300, 12, 12);
    let labels: Vec<usize> =
        (0..300).map(|i| usize::from(x[[i, 0]] + x[[i, 1]] > 0.0) + usize::from(x[[i, 2]] > 0.5)).collect();
    let config = MlpConfig { hidden: vec![24], epochs: 5, batch_size: 32, ..MlpConfig::default() };
    let target = Target::Classes { labels: &labels, classes: 3 };
    let (g, gcurve) = Mlp::fit_on(gpu, None, x.view(), target, None, &config, &mut |_, _| {}).unwrap();
    let (c, ccurve) = Mlp::fit_on(&CpuBackend::new(), None, x.view(), target, None, &config, &mut |_, _| {}).unwrap();
    for (gl, cl) in gcurve.train_loss.iter().zip(&ccurve.train_loss) {
        assert!((gl - cl).abs() < 1e-3 * (1.0 + cl.abs()), "training losses {gcurve:?} vs {ccurve:?}");
    }
    for (gw, cw) in g.weights.iter().zip(&c.weights) {
        assert_close("trained weights", gw, cw, &cw.mapv(|_| 1e-3));
    }
    let (gp, cp) = (c.predict_on(gpu, x.view()).unwrap(), c.predict(x.view()));
    assert_close("predictions", &gp, &cp, &relative(&cp, 1e-5));
    assert!(matches!(c.predict_on(gpu, x.t()), Err(crate::Error::Shape { .. })));
}

#[test]
fn gemm_throughput_is_measured_within_its_budget() {
    let Some(gpu) = gpu() else { return };
    let start = std::time::Instant::now();
    let gflops = super::measure_gemm_gflops(gpu, std::time::Duration::from_millis(300)).unwrap();
    let took = start.elapsed();
    eprintln!("{}: {gflops:.2} GFLOP/s in {took:?}", gpu.name());
    assert!(gflops.is_finite() && gflops > 0.0, "{gflops}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}

#[test]
fn training_rates_are_measured_on_both_backends() {
    use crate::models::{MlpConfig, mlp::training_rate};
    let Some(gpu) = gpu() else { return };
    let config = MlpConfig { hidden: vec![128], batch_size: 64, ..MlpConfig::default() };
    let budget = std::time::Duration::from_millis(200);
    let on_gpu = training_rate(gpu, 784, 10, &config, budget).unwrap();
    let on_cpu = training_rate(&CpuBackend::new(), 784, 10, &config, budget).unwrap();
    eprintln!("784-128-10, batch 64: cpu {on_cpu:.0} samples/s, {} {on_gpu:.0} samples/s", gpu.name());
    assert!(on_gpu > 0.0 && on_cpu > 0.0);
}
