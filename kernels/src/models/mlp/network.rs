//! A network resident on a backend: parameters, gradients, optimizer state
//! and per-batch buffers, all allocated once. A training step is then a fixed
//! sequence of backend ops with no allocation and no host round trip.

use ndarray::{Array1, ArrayView2};

use super::{Loss, Mlp, Optimizer};
use crate::backend::{self, AdamStep, Backend, Error, Operand, OutputLoss, SgdStep, Tensor};

/// One layer's weight (`inputs x outputs`) and bias (`1 x outputs`), or
/// tensors shaped like them (gradients, optimizer moments).
pub(super) struct Layer<T> {
    pub weight: T,
    pub bias: T,
}

impl<T: Tensor> Layer<T> {
    fn zeros_like<B: Backend<Tensor = T>>(backend: &B, like: &Layer<T>) -> Result<Self, Error> {
        let (r, c) = like.weight.shape();
        Ok(Layer { weight: backend.zeros(r, c)?, bias: backend.zeros(1, c)? })
    }
}

/// Buffers for batches of exactly `rows` rows: the inputs, the targets, and
/// each layer's activations and deltas (shaped alike).
pub(super) struct Workspace<T> {
    pub rows: usize,
    pub x: T,
    pub y: T,
    acts: Vec<T>,
    deltas: Vec<T>,
}

impl<T: Tensor> Workspace<T> {
    pub fn new<B: Backend<Tensor = T>>(backend: &B, widths: &[usize], rows: usize) -> Result<Self, Error> {
        let (inputs, outputs) = (widths[0], widths[widths.len() - 1]);
        let layer = |w: &usize| backend.zeros(rows, *w);
        Ok(Self {
            rows,
            x: backend.zeros(rows, inputs)?,
            y: backend.zeros(rows, outputs)?,
            acts: widths[1..].iter().map(layer).collect::<Result<_, _>>()?,
            deltas: widths[1..].iter().map(layer).collect::<Result<_, _>>()?,
        })
    }

    /// The network's outputs after [`Network::forward`].
    pub fn outputs(&self) -> &T {
        self.acts.last().expect("at least one layer")
    }
}

/// A workspace for full batches and one for the shorter last batch of a pass
/// (made when first needed), so no batch size allocates twice.
pub(super) struct Workspaces<T> {
    widths: Vec<usize>,
    full: Workspace<T>,
    tail: Option<Workspace<T>>,
}

impl<T: Tensor> Workspaces<T> {
    pub fn new<B: Backend<Tensor = T>>(backend: &B, widths: &[usize], rows: usize) -> Result<Self, Error> {
        Ok(Self { widths: widths.to_vec(), full: Workspace::new(backend, widths, rows)?, tail: None })
    }

    pub fn get<B: Backend<Tensor = T>>(&mut self, backend: &B, rows: usize) -> Result<&mut Workspace<T>, Error> {
        if rows == self.full.rows {
            return Ok(&mut self.full);
        }
        if self.tail.as_ref().is_none_or(|t| t.rows != rows) {
            self.tail = Some(Workspace::new(backend, &self.widths, rows)?);
        }
        Ok(self.tail.as_mut().expect("set above"))
    }
}

/// The parameters on the backend, with what training needs beside them.
pub(super) struct Network<T> {
    layers: Vec<Layer<T>>,
    activation: backend::Activation,
    loss: Loss,
}

/// Gradients and optimizer state, allocated once per training run.
pub(super) struct Trainer<T> {
    grads: Vec<Layer<T>>,
    first: Vec<Layer<T>>,
    second: Vec<Layer<T>>,
    optimizer: Optimizer,
    step: i32,
    l2: f32,
}

impl<T: Tensor> Network<T> {
    pub fn upload<B: Backend<Tensor = T>>(backend: &B, model: &Mlp) -> Result<Self, Error> {
        let layers = model
            .weights
            .iter()
            .zip(&model.biases)
            .map(|(w, b)| {
                let bias = b.view().into_shape_with_order((1, b.len())).expect("a vector is one row");
                Ok(Layer { weight: backend.upload(w.view())?, bias: backend.upload(bias)? })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Self { layers, activation: model.activation.into(), loss: model.loss })
    }

    /// A host copy of the parameters.
    pub fn download<B: Backend<Tensor = T>>(&self, backend: &B, into: &mut Mlp) -> Result<(), Error> {
        for (layer, (w, b)) in self.layers.iter().zip(into.weights.iter_mut().zip(into.biases.iter_mut())) {
            *w = backend.download(&layer.weight)?;
            *b = Array1::from_iter(backend.download(&layer.bias)?);
        }
        Ok(())
    }

    /// Zeroes the weights where `masks` (one per layer, shaped like its
    /// weight; none: nothing to do) hold 0, by the ReLU-gradient op
    /// (`w *= mask > 0`), which every backend has.
    pub fn apply_masks<B: Backend<Tensor = T>>(&mut self, backend: &B, masks: &[T]) -> Result<(), Error> {
        for (layer, mask) in self.layers.iter_mut().zip(masks) {
            backend.activation_grad(&mut layer.weight, mask, backend::Activation::Relu)?;
        }
        Ok(())
    }

    /// Sum of the squared weights (not biases): the L2 penalty's sum.
    pub fn weight_squares<B: Backend<Tensor = T>>(&self, backend: &B) -> Result<f64, Error> {
        self.layers.iter().map(|l| backend.sum_squares(&l.weight)).sum()
    }

    pub fn output_loss(&self) -> OutputLoss {
        match self.loss {
            Loss::SoftmaxCrossEntropy => OutputLoss::SoftmaxCrossEntropy,
            Loss::SquaredError => OutputLoss::SquaredError,
            Loss::Huber { delta } => OutputLoss::Huber { delta },
        }
    }

    /// `ws.x` through every layer into the workspace's activations; the
    /// last is probabilities for cross-entropy, values otherwise.
    pub fn forward<B: Backend<Tensor = T>>(&self, backend: &B, ws: &mut Workspace<T>) -> Result<(), Error> {
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (before, after) = ws.acts.split_at_mut(l);
            let input = if l == 0 { &ws.x } else { &before[l - 1] };
            let z = &mut after[0];
            backend.gemm(Operand::Plain(input), Operand::Plain(&layer.weight), z, false)?;
            let activation = if l < last { self.activation } else { backend::Activation::Identity };
            backend.bias_activation(z, &layer.bias, activation)?;
        }
        if self.loss == Loss::SoftmaxCrossEntropy {
            backend.softmax_rows(ws.acts.last_mut().expect("at least one layer"))?;
        }
        Ok(())
    }

    /// Forward on `ws.x`, then each row's loss against `ws.y` into
    /// `row_losses[offset..]` (the output delta is left in the workspace).
    pub fn losses<B: Backend<Tensor = T>>(
        &self,
        backend: &B,
        ws: &mut Workspace<T>,
        row_losses: &mut T,
        offset: usize,
    ) -> Result<(), Error> {
        self.forward(backend, ws)?;
        let last = ws.acts.len() - 1;
        backend.output_delta(&ws.acts[last], &ws.y, self.output_loss(), &mut ws.deltas[last], row_losses, offset)
    }

    /// The gradients of the mean loss of the batch in `ws` (without the L2
    /// term, which the optimizer adds), row losses into `row_losses[offset..]`.
    pub fn gradients<B: Backend<Tensor = T>>(
        &self,
        backend: &B,
        ws: &mut Workspace<T>,
        grads: &mut [Layer<T>],
        row_losses: &mut T,
        offset: usize,
    ) -> Result<(), Error> {
        self.losses(backend, ws, row_losses, offset)?;
        for l in (0..self.layers.len()).rev() {
            let (lower, upper) = ws.deltas.split_at_mut(l);
            let delta = &upper[0];
            let input = if l == 0 { &ws.x } else { &ws.acts[l - 1] };
            backend.gemm(Operand::Transposed(input), Operand::Plain(delta), &mut grads[l].weight, false)?;
            backend.column_sums(delta, &mut grads[l].bias)?;
            if l > 0 {
                let back = &mut lower[l - 1];
                backend.gemm(Operand::Plain(delta), Operand::Transposed(&self.layers[l].weight), back, false)?;
                backend.activation_grad(back, &ws.acts[l - 1], self.activation)?;
            }
        }
        Ok(())
    }
}

impl<T: Tensor> Trainer<T> {
    pub fn new<B: Backend<Tensor = T>>(
        backend: &B,
        network: &Network<T>,
        optimizer: Optimizer,
        l2: f32,
    ) -> Result<Self, Error> {
        let zeros = || network.layers.iter().map(|l| Layer::zeros_like(backend, l)).collect::<Result<Vec<_>, _>>();
        let second = match optimizer {
            Optimizer::Adam { .. } => zeros()?,
            Optimizer::Sgd { .. } => Vec::new(),
        };
        Ok(Self { grads: zeros()?, first: zeros()?, second, optimizer, step: 0, l2 })
    }

    /// One optimizer step on the batch in `ws`.
    pub fn step<B: Backend<Tensor = T>>(
        &mut self,
        backend: &B,
        network: &mut Network<T>,
        ws: &mut Workspace<T>,
        row_losses: &mut T,
        offset: usize,
    ) -> Result<(), Error> {
        network.gradients(backend, ws, &mut self.grads, row_losses, offset)?;
        self.step += 1;
        for (l, layer) in network.layers.iter_mut().enumerate() {
            let (g, m) = (&self.grads[l], &mut self.first[l]);
            match self.optimizer {
                Optimizer::Adam { learning_rate } => {
                    let v = &mut self.second[l];
                    let weights = AdamStep::at(self.step, learning_rate, self.l2);
                    let biases = AdamStep { l2: 0.0, ..weights };
                    backend.adam(&mut layer.weight, &g.weight, &mut m.weight, &mut v.weight, weights)?;
                    backend.adam(&mut layer.bias, &g.bias, &mut m.bias, &mut v.bias, biases)?;
                }
                Optimizer::Sgd { learning_rate, momentum } => {
                    let weights = SgdStep { learning_rate, momentum, l2: self.l2 };
                    backend.sgd(&mut layer.weight, &g.weight, &mut m.weight, weights)?;
                    backend.sgd(&mut layer.bias, &g.bias, &mut m.bias, SgdStep { l2: 0.0, ..weights })?;
                }
            }
        }
        Ok(())
    }

    /// Host copies of the last gradients (weights, biases), for tests.
    #[cfg(test)]
    pub fn last_gradients<B: Backend<Tensor = T>>(&self, backend: &B) -> Result<Vec<HostGradient>, Error> {
        self.grads.iter().map(|g| Ok((backend.download(&g.weight)?, backend.download(&g.bias)?))).collect()
    }

    #[cfg(test)]
    pub fn gradients_only<B: Backend<Tensor = T>>(
        &mut self,
        backend: &B,
        network: &Network<T>,
        ws: &mut Workspace<T>,
        row_losses: &mut T,
    ) -> Result<(), Error> {
        network.gradients(backend, ws, &mut self.grads, row_losses, 0)
    }
}

/// A layer's weight and bias gradients copied to the host (tests).
#[cfg(test)]
pub(super) type HostGradient = (ndarray::Array2<f32>, ndarray::Array2<f32>);

/// Where the targets of a batch come from.
#[derive(Clone, Copy)]
pub(super) enum Targets<'a> {
    /// One-hot rows: row `labels[r]` of an identity matrix.
    Classes {
        labels: &'a [usize],
    },
    Values(ArrayView2<'a, f32>),
}

/// Loads the batch `rows` of `x` and its targets into `ws`. `identity` is the
/// host `classes x classes` identity (one-hot rows are gathered from it, so a
/// label out of range is a shape error) and `picked` a reused label buffer.
pub(super) fn load_batch<B: Backend>(
    backend: &B,
    x: ArrayView2<'_, f32>,
    targets: Targets<'_>,
    identity: ArrayView2<'_, f32>,
    rows: &[usize],
    picked: &mut Vec<usize>,
    ws: &mut Workspace<B::Tensor>,
) -> Result<(), Error> {
    backend.load_rows(x, rows, &mut ws.x)?;
    match targets {
        Targets::Classes { labels } => {
            picked.clear();
            picked.extend(rows.iter().map(|&r| labels[r]));
            backend.load_rows(identity, picked, &mut ws.y)
        }
        Targets::Values(v) => backend.load_rows(v, rows, &mut ws.y),
    }
}
