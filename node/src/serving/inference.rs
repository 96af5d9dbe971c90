//! The inference queue: requests wait in a bounded queue and are checked and run in
//! batches off the event loop. While one batch computes, the requests that
//! arrive queue up and form the next, so batches grow with load and a lone
//! request pays no wait. A full queue answers "overloaded" at once.

use std::{collections::HashMap, sync::Arc, time::Duration};

use mass_protocol::{ContentId, serving::Rows};
use ndarray::{Array2, s};
use tokio::sync::{mpsc, oneshot};

use crate::compute::Compute;

use super::{
    model::LoadedModel,
    rows::{concat, to_shard},
};

/// Why a request was not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferenceError {
    #[error("the inference queue is full ({0} requests waiting); retry shortly")]
    Overloaded(usize),
    #[error("{0}")]
    BadInput(String),
    #[error("inference stopped")]
    Stopped,
}

struct Work {
    model: Arc<LoadedModel>,
    rows: Rows,
    allow_missing: bool,
    reply: oneshot::Sender<Result<Array2<f64>, InferenceError>>,
}

/// Handle to the node's inference queue.
#[derive(Clone)]
pub struct Inference {
    queue: mpsc::Sender<Work>,
    capacity: usize,
}

impl Inference {
    /// Starts the batching loop. `wait`: how long a batch that is not full
    /// may wait for more requests (zero: batch only what is already queued).
    pub fn start(
        capacity: usize,
        max_batch_rows: usize,
        wait: Duration,
        compute: Compute,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        let (queue, requests) = mpsc::channel(capacity);
        tokio::spawn(batch_loop(requests, max_batch_rows, wait, compute, metrics));
        Self { queue, capacity }
    }

    /// Whether a request sent now would be refused as overloaded.
    pub fn is_full(&self) -> bool {
        self.queue.capacity() == 0
    }

    /// Requests waiting, for load adverts.
    pub fn depth(&self) -> usize {
        self.capacity - self.queue.capacity()
    }

    /// Class probabilities of `rows` under `model`; rows that do not fit the
    /// model's columns are refused with a message naming the row and column.
    pub async fn run(
        &self,
        model: Arc<LoadedModel>,
        rows: Rows,
        allow_missing: bool,
    ) -> Result<Array2<f64>, InferenceError> {
        let (reply, answer) = oneshot::channel();
        self.queue.try_send(Work { model, rows, allow_missing, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => InferenceError::Overloaded(self.capacity),
            mpsc::error::TrySendError::Closed(_) => InferenceError::Stopped,
        })?;
        answer.await.map_err(|_| InferenceError::Stopped)?
    }
}

async fn batch_loop(
    mut requests: mpsc::Receiver<Work>,
    max_rows: usize,
    wait: Duration,
    compute: Compute,
    metrics: crate::metrics::Metrics,
) {
    while let Some(first) = requests.recv().await {
        let mut rows = first.rows.len();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + wait;
        while rows < max_rows {
            let next = match requests.try_recv() {
                Ok(work) => work,
                Err(_) if wait.is_zero() => break,
                Err(_) => match tokio::time::timeout_at(deadline, requests.recv()).await {
                    Ok(Some(work)) => work,
                    _ => break,
                },
            };
            rows += next.rows.len();
            batch.push(next);
        }
        metrics.inference_batch(rows, batch.len());
        // Waits for a compute slot: the queue in front of this loop is the
        // inference queue's own bound.
        compute.run_waiting(crate::compute::Work::Inference, move || run_batch(batch)).await;
    }
}

/// Runs every model's requests of a batch as one matrix. Rows are checked
/// against the model's columns here, off the event loop; a request whose
/// rows are refused fails alone and the others are answered.
fn run_batch(batch: Vec<Work>) {
    let mut by_model: HashMap<ContentId, Vec<Work>> = HashMap::new();
    for work in batch {
        by_model.entry(work.model.id).or_default().push(work);
    }
    for (_, works) in by_model {
        let model = works[0].model.clone();
        let mut ready = Vec::new();
        let mut shards = Vec::new();
        for Work { rows, allow_missing, reply, .. } in works {
            match to_shard(&model.schema, rows, allow_missing) {
                Ok(shard) => {
                    shards.push(shard);
                    ready.push(reply);
                }
                Err(message) => {
                    let _ = reply.send(Err(InferenceError::BadInput(message)));
                }
            }
        }
        if ready.is_empty() {
            continue;
        }
        if ready.len() == 1
            && let (Some(reply), Some(shard)) = (ready.pop(), shards.pop())
        {
            // Alone in the batch: no joined copy of its rows.
            let _ = reply.send(model.predict(&shard).map_err(InferenceError::BadInput));
            continue;
        }
        let sizes: Vec<usize> = shards.iter().map(|s| s.rows()).collect();
        // One pass for the whole batch; if it fails (a row the pipeline
        // refuses), each request on its own so only the bad one fails.
        match model.predict(&concat(shards.clone())) {
            Ok(outputs) => {
                let mut at = 0;
                for (reply, rows) in ready.into_iter().zip(sizes) {
                    let _ = reply.send(Ok(outputs.slice(s![at..at + rows, ..]).to_owned()));
                    at += rows;
                }
            }
            Err(_) => {
                for (reply, shard) in ready.into_iter().zip(shards) {
                    let _ = reply.send(model.predict(&shard).map_err(InferenceError::BadInput));
                }
            }
        }
    }
}
