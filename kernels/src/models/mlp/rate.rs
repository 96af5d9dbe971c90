//! How fast a backend trains a given network shape, measured, so a node can
//! choose between its CPU and its GPUs per model: a GPU wins on large layers
//! and batches, loses on small ones to per-dispatch and transfer overhead,
//! and no GFLOP/s figure alone says where the line is.

use std::time::{Duration, Instant};

use ndarray::Array2;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::network::{Network, Targets, Trainer, Workspace, load_batch};
use super::{Mlp, MlpConfig};
use crate::backend::{Backend, Error};

/// Training samples per second of an `inputs -> config.hidden -> outputs`
/// network with `config`'s activation, loss, optimizer and batch size on
/// `backend`, over about `budget` of steps on random data (after one warm-up
/// step, which also compiles GPU kernels). Includes loading each batch from
/// host memory, as real training does.
///
/// ```
/// use std::time::Duration;
/// use mass_kernels::{cpu::CpuBackend, models::{MlpConfig, mlp::training_rate}};
/// let config = MlpConfig { hidden: vec![16], batch_size: 8, ..MlpConfig::default() };
/// let rate = training_rate(&CpuBackend::new(), 10, 3, &config, Duration::from_millis(20)).unwrap();
/// assert!(rate > 0.0);
/// ```
pub fn training_rate<B: Backend>(
    backend: &B,
    inputs: usize,
    outputs: usize,
    config: &MlpConfig,
    budget: Duration,
) -> Result<f64, Error> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let model = Mlp::new(inputs, outputs.max(1), config, &mut rng);
    let widths = super::train::widths(&model)?;
    let batch = config.batch_size.max(1);
    // A few batches' worth of rows, so loads gather from more than one place.
    let rows = batch * 4;
    let x = Array2::from_shape_simple_fn((rows, inputs), || rng.random_range(-1.0f32..1.0));
    let labels: Vec<usize> = (0..rows).map(|_| rng.random_range(0..outputs.max(1))).collect();
    let values = Array2::from_shape_simple_fn((rows, outputs.max(1)), || rng.random_range(-1.0f32..1.0));
    let (targets, identity) = match config.loss {
        super::Loss::SoftmaxCrossEntropy => (Targets::Classes { labels: &labels }, Array2::eye(outputs.max(1))),
        _ => (Targets::Values(values.view()), Array2::zeros((0, 0))),
    };
    let mut network = Network::upload(backend, &model)?;
    let mut trainer = Trainer::new(backend, &network, config.optimizer, config.l2)?;
    let mut ws = Workspace::new(backend, &widths, batch)?;
    let mut losses = backend.zeros(batch, 1)?;
    let order: Vec<usize> = (0..rows).collect();
    let mut picked = Vec::with_capacity(batch);
    let mut step = |i: usize, losses: &mut B::Tensor| -> Result<(), Error> {
        let chunk = &order[(i % 4) * batch..(i % 4 + 1) * batch];
        load_batch(backend, x.view(), targets, identity.view(), chunk, &mut picked, &mut ws)?;
        trainer.step(backend, &mut network, &mut ws, losses, 0)
    };
    step(0, &mut losses)?;
    backend.download(&losses)?;
    let start = Instant::now();
    let mut steps = 0;
    while steps < 2 || start.elapsed() < budget {
        step(steps, &mut losses)?;
        steps += 1;
        if steps % 16 == 0 {
            // Queued backends must not run far ahead of the clock.
            backend.download(&losses)?;
        }
    }
    backend.download(&losses)?;
    Ok((steps * batch) as f64 / start.elapsed().as_secs_f64())
}
