//! The training loop, evaluation and prediction of an [`Mlp`] on any
//! [`Backend`]. Everything random (initial weights, batch order) comes from
//! the seed and every op runs in a fixed order, so on the CPU backend the same
//! seed on the same data gives bit-identical weights.

use ndarray::{Array2, ArrayView2, s};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use super::network::{Network, Targets, Trainer, Workspaces, load_batch};
use super::{Mlp, MlpConfig, Target, TrainingCurve};
use crate::backend::{Backend, Error, Tensor};

/// Rows per forward pass when evaluating or predicting: large enough for
/// efficient products, small enough to bound the buffers.
const EVAL_ROWS: usize = 512;

fn shape_error(op: &'static str, left: &[usize], right: &[usize]) -> Error {
    Error::Shape { op, left: left.to_vec(), right: right.to_vec() }
}

/// Layer widths of `model`, input first; an error when its layers do not chain.
pub(super) fn widths(model: &Mlp) -> Result<Vec<usize>, Error> {
    let first = model.weights.first().ok_or_else(|| shape_error("mlp without layers", &[0], &[1]))?;
    if model.weights.len() != model.biases.len() {
        return Err(shape_error("mlp layers", &[model.weights.len()], &[model.biases.len()]));
    }
    let mut widths = vec![first.nrows()];
    for (w, b) in model.weights.iter().zip(&model.biases) {
        let prev = *widths.last().expect("not empty");
        if w.nrows() != prev || b.len() != w.ncols() {
            return Err(shape_error("mlp layer", w.shape(), &[prev, b.len()]));
        }
        widths.push(w.ncols());
    }
    Ok(widths)
}

fn targets<'a>(y: &Target<'a>) -> (Targets<'a>, Array2<f32>) {
    match *y {
        Target::Classes { labels, classes } => (Targets::Classes { labels }, Array2::eye(classes)),
        Target::Values(v) => (Targets::Values(v), Array2::zeros((0, 0))),
    }
}

/// Mean losses over a fixed data set, with buffers allocated once.
pub(super) struct Evaluator<'x, 'y, T> {
    x: ArrayView2<'x, f32>,
    targets: Targets<'y>,
    identity: Array2<f32>,
    workspaces: Workspaces<T>,
    row_losses: T,
    rows: Vec<usize>,
    picked: Vec<usize>,
}

impl<'x, 'y, T: Tensor> Evaluator<'x, 'y, T> {
    pub fn new<B: Backend<Tensor = T>>(
        backend: &B,
        widths: &[usize],
        x: ArrayView2<'x, f32>,
        y: Target<'y>,
    ) -> Result<Self, Error> {
        check_data(widths, &x, &y)?;
        let (targets, identity) = targets(&y);
        let n = x.nrows();
        Ok(Self {
            x,
            targets,
            identity,
            workspaces: Workspaces::new(backend, widths, n.clamp(1, EVAL_ROWS))?,
            row_losses: backend.zeros(n.max(1), 1)?,
            rows: (0..n).collect(),
            picked: Vec::new(),
        })
    }

    /// Mean data loss plus `0.5 l2 |W|^2`.
    pub fn loss<B: Backend<Tensor = T>>(&mut self, backend: &B, network: &Network<T>, l2: f32) -> Result<f64, Error> {
        for (i, chunk) in self.rows.chunks(EVAL_ROWS).enumerate() {
            let ws = self.workspaces.get(backend, chunk.len())?;
            load_batch(backend, self.x, self.targets, self.identity.view(), chunk, &mut self.picked, ws)?;
            network.losses(backend, ws, &mut self.row_losses, i * EVAL_ROWS)?;
        }
        let data = mean_row_loss(backend, &self.row_losses, self.x.nrows())?;
        Ok(data + penalty(backend, network, l2)?)
    }
}

fn mean_row_loss<B: Backend>(backend: &B, row_losses: &B::Tensor, rows: usize) -> Result<f64, Error> {
    let losses = backend.download(row_losses)?;
    let total: f64 = losses.iter().take(rows).map(|&l| f64::from(l)).sum();
    Ok(total / rows.max(1) as f64)
}

fn penalty<B: Backend>(backend: &B, network: &Network<B::Tensor>, l2: f32) -> Result<f64, Error> {
    if l2 == 0.0 {
        return Ok(0.0);
    }
    Ok(0.5 * f64::from(l2) * network.weight_squares(backend)?)
}

/// The data fits a network of `widths`: one target per row, the right
/// number of inputs and outputs.
fn check_data(widths: &[usize], x: &ArrayView2<'_, f32>, y: &Target<'_>) -> Result<(), Error> {
    let (inputs, outputs) = (widths[0], widths[widths.len() - 1]);
    if x.nrows() != y.rows() {
        return Err(shape_error("targets per row", &[x.nrows()], &[y.rows()]));
    }
    if x.ncols() != inputs || y.outputs() != outputs {
        return Err(shape_error("data for network", &[x.ncols(), y.outputs()], &[inputs, outputs]));
    }
    Ok(())
}

/// Trains on `backend`; see [`Mlp::fit_reporting`] for the meaning of each
/// argument. The training loss of an epoch is the mean of the batch losses
/// plus the L2 penalty of the weights at the epoch's end. `masks` (one per
/// layer, see [`Mlp::fit_masked_on`]) keep pruned weights at zero.
#[allow(clippy::too_many_arguments)]
pub(super) fn fit<B: Backend>(
    backend: &B,
    start: Option<Mlp>,
    x: ArrayView2<'_, f32>,
    y: Target<'_>,
    validation: Option<(ArrayView2<'_, f32>, Target<'_>)>,
    config: &MlpConfig,
    masks: Option<&[Array2<f32>]>,
    on_epoch: &mut dyn FnMut(usize, f64),
) -> Result<(Mlp, TrainingCurve), Error> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let fresh = Mlp::new(x.ncols(), y.outputs(), config, &mut rng);
    let mut model = start.unwrap_or(fresh);
    let widths = widths(&model)?;
    check_data(&widths, &x, &y)?;
    let mut network = Network::upload(backend, &model)?;
    let masks = match masks {
        Some(masks) => {
            if masks.len() != model.weights.len() || masks.iter().zip(&model.weights).any(|(m, w)| m.dim() != w.dim()) {
                let shapes = |a: &[Array2<f32>]| a.iter().flat_map(|m| [m.nrows(), m.ncols()]).collect::<Vec<_>>();
                return Err(shape_error("weight masks", &shapes(masks), &shapes(&model.weights)));
            }
            let masks = masks.iter().map(|m| backend.upload(m.view())).collect::<Result<Vec<_>, _>>()?;
            network.apply_masks(backend, &masks)?;
            masks
        }
        None => Vec::new(),
    };
    let mut trainer = Trainer::new(backend, &network, config.optimizer, config.l2)?;
    let mut valid = validation.map(|(vx, vy)| Evaluator::new(backend, &widths, vx, vy)).transpose()?;

    let n = x.nrows();
    let batch = config.batch_size.max(1);
    let (targets, identity) = targets(&y);
    let mut workspaces = Workspaces::new(backend, &widths, batch.min(n).max(1))?;
    let mut row_losses = backend.zeros(n.max(1), 1)?;
    let mut picked = Vec::with_capacity(batch);
    let mut order: Vec<usize> = (0..n).collect();
    let mut curve = TrainingCurve::default();
    let mut best: Option<f64> = None;
    let mut kept: Option<Mlp> = None;
    // Without validation rows: the best training loss and the epochs since
    // it last fell by more than the tolerance.
    let mut plateau = (f64::INFINITY, 0usize);
    for epoch in 0..config.epochs {
        order.shuffle(&mut rng);
        for (i, rows) in order.chunks(batch).enumerate() {
            let ws = workspaces.get(backend, rows.len())?;
            load_batch(backend, x, targets, identity.view(), rows, &mut picked, ws)?;
            trainer.step(backend, &mut network, ws, &mut row_losses, i * batch)?;
            network.apply_masks(backend, &masks)?;
        }
        let loss = mean_row_loss(backend, &row_losses, n)? + penalty(backend, &network, config.l2)?;
        curve.train_loss.push(loss);
        on_epoch(epoch, loss);
        if let Some(valid) = &mut valid {
            let loss = valid.loss(backend, &network, config.l2)?;
            curve.validation_loss.push(loss);
            if best.is_none_or(|b| loss < b) {
                best = Some(loss);
                curve.best_epoch = epoch;
                // Only early stopping ever returns the kept copy.
                if config.patience.is_some() {
                    network.download(backend, &mut model)?;
                    kept = Some(model.clone());
                }
            } else if config.patience.is_some_and(|p| epoch - curve.best_epoch >= p) {
                break;
            }
        } else {
            curve.best_epoch = epoch;
            if loss < plateau.0 - config.tolerance {
                plateau = (loss, 0);
            } else {
                plateau = (plateau.0.min(loss), plateau.1 + 1);
                if config.patience.is_some_and(|p| plateau.1 >= p) {
                    break;
                }
            }
        }
    }
    match kept {
        Some(kept) => model = kept,
        None => network.download(backend, &mut model)?,
    }
    Ok((model, curve))
}

/// Outputs of `model` for every row of `x`, computed on `backend` in chunks.
pub(super) fn predict<B: Backend>(backend: &B, model: &Mlp, x: ArrayView2<'_, f32>) -> Result<Array2<f32>, Error> {
    let widths = widths(model)?;
    if x.ncols() != widths[0] {
        return Err(shape_error("predict inputs", &[x.nrows(), x.ncols()], &[x.nrows(), widths[0]]));
    }
    let network = Network::upload(backend, model)?;
    let n = x.nrows();
    let mut out = Array2::zeros((n, widths[widths.len() - 1]));
    let mut workspaces = Workspaces::new(backend, &widths, n.clamp(1, EVAL_ROWS))?;
    let rows: Vec<usize> = (0..n).collect();
    for (i, chunk) in rows.chunks(EVAL_ROWS).enumerate() {
        let ws = workspaces.get(backend, chunk.len())?;
        backend.load_rows(x, chunk, &mut ws.x)?;
        network.forward(backend, ws)?;
        let start = i * EVAL_ROWS;
        out.slice_mut(s![start..start + chunk.len(), ..]).assign(&backend.download(ws.outputs())?);
    }
    Ok(out)
}
