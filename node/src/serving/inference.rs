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
    rows::{check_matrix, concat, listed_matrix, to_shard},
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
    /// Whether a lone small request may run on the caller's thread.
    inline: bool,
    compute: Compute,
    metrics: crate::metrics::Metrics,
}

/// Requests of at most this many rows, arriving with the queue empty and a
/// compute slot free, run on the caller's thread: the batch loop, the
/// blocking pool and the answer's way back were three thread wake-ups,
/// most of a single MNIST row's time on a holder (`perf`: task switches
/// 28% of the node's samples, the row's work under 10%).
const INLINE_ROWS: usize = 4;

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
        tokio::spawn(batch_loop(requests, max_batch_rows, wait, compute.clone(), metrics.clone()));
        // Waiting to form batches is the operator's choice: then nothing skips the queue.
        Self { queue, capacity, inline: wait.is_zero(), compute, metrics }
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
        if self.inline
            && rows.len() <= INLINE_ROWS
            && self.depth() == 0
            && model.bridge.get().is_none()
            && model.manifest.parts.is_empty()
            && !self.compute.is_throttled()
            && let Some(slot) = self.compute.try_reserve_serving()
        {
            self.metrics.inference_batch(rows.len(), 1);
            let work = || run_alone(&model, rows, allow_missing);
            return self.compute.run_here(crate::compute::Work::Inference, slot, work);
        }
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
        compute.run_serving(move || run_batch(batch)).await;
    }
}

/// One request's rows, checked and predicted on their own.
fn run_alone(model: &LoadedModel, rows: Rows, allow_missing: bool) -> Result<Array2<f64>, InferenceError> {
    if let Some(answer) = run_matrix(model, &rows, allow_missing) {
        return answer;
    }
    let shard = to_shard(&model.schema, rows, allow_missing).map_err(InferenceError::BadInput)?;
    model.predict(&shard).map_err(InferenceError::BadInput)
}

/// A matrix the model reads as it is, checked and predicted on its own
/// (it is a whole batch already); rows of finite numbers are read as one
/// too. `None` for rows that go through a shard (which checks them there).
fn run_matrix(model: &LoadedModel, rows: &Rows, allow_missing: bool) -> Option<Result<Array2<f64>, InferenceError>> {
    if !model.reads_matrices() {
        return None;
    }
    let listed;
    let matrix = match rows {
        Rows::Matrix(matrix) => matrix,
        Rows::Listed(rows) => {
            listed = listed_matrix(&model.schema, rows)?;
            &listed
        }
        _ => return None,
    };
    if let Err(message) = check_matrix(&model.schema, matrix, allow_missing) {
        return Some(Err(InferenceError::BadInput(message)));
    }
    Some(model.predict_matrix(matrix)?.map_err(InferenceError::BadInput))
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
            if let Some(answer) = run_matrix(&model, &rows, allow_missing) {
                let _ = reply.send(answer);
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::Config;
    use mass_protocol::serving::{Cell, Row};

    fn row(colour: &str) -> Rows {
        Rows::Listed(vec![Row::Values(vec![
            Cell::Number(1.0),
            Cell::Number(0.5),
            Cell::Text(colour.into()),
            Cell::Text("fast red car".into()),
        ])])
    }

    /// A network over two numeric columns around the label: a model that
    /// reads a matrix as it is (the fixture's has categories and text).
    fn numeric_model() -> Arc<LoadedModel> {
        use mass_kernels::models::{Member, Mlp, MlpConfig};
        use mass_protocol::{
            dataset::{Column, ColumnKind, Schema},
            features::{ColumnTransform, FittedPipeline},
        };
        use rand::SeedableRng;
        let fixture = crate::fuzz::fixture::fixture();
        let classes = fixture.pipeline.classes.clone();
        let column = |name: &str, kind| Column { name: name.into(), kind };
        let schema = Schema {
            columns: vec![
                column("a", ColumnKind::Numeric),
                column("label", ColumnKind::Categorical),
                column("b", ColumnKind::Numeric),
            ],
            label: 1,
        };
        let pipeline = FittedPipeline {
            spec: Default::default(),
            columns: vec!["a".into(), "label".into(), "b".into()],
            transforms: vec![
                ColumnTransform::Numeric { fill: 0.5, offset: 3.0, scale: 0.2 },
                ColumnTransform::Drop,
                ColumnTransform::Numeric { fill: -1.0, offset: 100.0, scale: 0.01 },
            ],
            label: 1,
            classes: classes.clone(),
            features: 2,
            task: mass_protocol::jobs::Task::Classification,
            target: None,
            crosses: Vec::new(),
            projection: None,
        };
        let mlp = Mlp::new(2, classes.len(), &MlpConfig::default(), &mut rand::rngs::StdRng::seed_from_u64(5));
        let manifest = mass_protocol::jobs::ModelManifest {
            members: vec![ContentId::of(b"numeric member")],
            ..fixture.model_manifest.clone()
        };
        let model =
            LoadedModel::trained(ContentId::of(b"numeric"), manifest, schema, pipeline, vec![Member::Mlp(mlp)], None);
        Arc::new(model.expect("the numeric model loads"))
    }

    /// Matrices, alone (inline) and through the queue, in each layout:
    /// the answers of the same rows as columns through a shard; a missing
    /// value and a wrong width refused by name, the rest answered.
    #[tokio::test]
    async fn a_matrix_is_answered_as_the_same_rows_as_columns() {
        use mass_protocol::serving::{Column, ColumnValues, Matrix};
        let compute = Compute::new(Config::for_cores(1), crate::metrics::Metrics::new().0);
        let model = numeric_model();
        let inference = inference(&compute);
        let through_shard = |values: &ColumnValues, allow: bool| {
            let matrix = Matrix { columns: 2, values: values.clone() };
            let columns = matrix.to_columns().unwrap().into_iter().map(|values| Column { name: None, values });
            model.predict(&to_shard(&model.schema, Rows::Columns(columns.collect()), allow).unwrap()).unwrap()
        };
        let bytes: Vec<u8> = (0..40u8).map(|v| v * 6).collect();
        let single: Vec<f32> = (0..40).map(|v| if v == 7 { f32::NAN } else { v as f32 * 1.5 - 9.0 }).collect();
        let cases = [
            ColumnValues::Bytes(bytes[..4].to_vec()),
            ColumnValues::Bytes(bytes),
            ColumnValues::Float32(single),
            ColumnValues::Numbers((0..12).map(|v| v as f64 * 0.7).collect()),
        ];
        // Listed rows of numbers, as a JSON body sends them: the same
        // answers as the shard of their columns; a null still gets the
        // listed path's message.
        let listed = |cells: Vec<Cell>| Rows::Listed(cells.chunks(2).map(|r| Row::Values(r.to_vec())).collect());
        let numbers: Vec<f64> = (0..10).map(|v| v as f64 * 3.5 - 4.0).collect();
        let answer = inference.run(model.clone(), listed(numbers.iter().map(|&v| Cell::Number(v)).collect()), false);
        assert_eq!(answer.await.unwrap(), through_shard(&ColumnValues::Numbers(numbers), false));
        match inference.run(model.clone(), listed(vec![Cell::Number(1.0), Cell::Missing]), false).await {
            Err(InferenceError::BadInput(message)) => {
                assert!(message.contains("rows[0].b: null is refused"), "{message}")
            }
            other => panic!("got {other:?}"),
        }
        for values in cases {
            let allow = matches!(values, ColumnValues::Float32(_));
            let matrix = Rows::Matrix(Matrix { columns: 2, values: values.clone() });
            let answer = inference.run(model.clone(), matrix, allow).await.unwrap();
            assert_eq!(answer, through_shard(&values, allow), "{values:?}");
        }
        let refused = |values, allow| {
            let (inference, model) = (inference.clone(), model.clone());
            async move {
                match inference.run(model, Rows::Matrix(Matrix { columns: 2, values }), allow).await {
                    Err(InferenceError::BadInput(message)) => message,
                    other => panic!("got {other:?}"),
                }
            }
        };
        let missing = refused(ColumnValues::Float32(vec![1.0, 2.0, 3.0, f32::NAN]), false).await;
        assert!(missing.starts_with("rows[1].b: null or NaN is refused"), "{missing}");
        let infinite = refused(ColumnValues::Numbers(vec![1.0, f64::INFINITY]), true).await;
        assert!(infinite.starts_with("rows[0].b: infinity"), "{infinite}");
        let uneven = refused(ColumnValues::Bytes(vec![1, 2, 3]), false).await;
        assert!(uneven.contains("3 values do not fill rows of 2 columns"), "{uneven}");
        let cells = refused(ColumnValues::Cells(vec![Cell::Missing; 2]), true).await;
        assert!(cells.contains("numbers, not cells"), "{cells}");
        let wide =
            inference.run(model, Rows::Matrix(Matrix { columns: 3, values: ColumnValues::Bytes(vec![0; 3]) }), false);
        match wide.await {
            Err(InferenceError::BadInput(message)) => {
                assert!(message.contains("the model reads 2 columns (a, b)"), "{message}")
            }
            other => panic!("got {other:?}"),
        }
        // A batch's answers go out from its compute thread before the slot
        // is freed there: the slot is waited for, with a deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !compute.all_free() {
            assert!(std::time::Instant::now() < deadline, "every slot is given back");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn inference(compute: &Compute) -> Inference {
        Inference::start(8, 1024, Duration::ZERO, compute.clone(), crate::metrics::Metrics::new().0)
    }

    #[tokio::test]
    async fn a_lone_row_is_answered_as_in_a_batch_and_a_bad_one_refused_by_name() {
        let compute = Compute::new(Config::for_cores(1), crate::metrics::Metrics::new().0);
        let model = crate::fuzz::fixture::fixture().model.clone();
        let inference = inference(&compute);
        let expected = model.predict(&to_shard(&model.schema, row("red"), false).unwrap()).unwrap();
        assert_eq!(inference.run(model.clone(), row("red"), false).await.unwrap(), expected);
        let bad = Rows::Listed(vec![Row::Values(vec![Cell::Number(1.0)])]);
        match inference.run(model, bad, false).await {
            Err(InferenceError::BadInput(message)) => assert!(message.contains("rows[0]"), "{message}"),
            other => panic!("got {other:?}"),
        }
        assert!(compute.all_free(), "the slot is given back");
    }

    #[tokio::test]
    async fn with_no_free_slot_a_lone_row_waits_in_the_queue_for_one() {
        let config = Config { serving_slots: 0, ..Config::for_cores(1) };
        let compute = Compute::new(config, crate::metrics::Metrics::new().0);
        let model = crate::fuzz::fixture::fixture().model.clone();
        let inference = inference(&compute);
        let held = compute.try_reserve().expect("a free slot");
        let waiting = tokio::spawn({
            let inference = inference.clone();
            async move { inference.run(model, row("red"), false).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "answered without a slot");
        drop(held);
        assert!(waiting.await.unwrap().is_ok());
    }

    /// Training holding the node's every general slot for as long as it
    /// likes: a lone row and a queued batch are answered on the serving
    /// slot meanwhile.
    #[tokio::test]
    async fn predictions_are_answered_while_training_holds_every_general_slot() {
        let compute = Compute::new(Config::for_cores(1), crate::metrics::Metrics::new().0);
        let model = crate::fuzz::fixture::fixture().model.clone();
        let (release, training) = compute.hold_a_slot().await;
        let expected = model.predict(&to_shard(&model.schema, row("red"), false).unwrap()).unwrap();
        let inline = inference(&compute);
        let batched =
            Inference::start(8, 1024, Duration::from_millis(1), compute.clone(), crate::metrics::Metrics::new().0);
        for inference in [inline, batched] {
            let answer = tokio::time::timeout(Duration::from_secs(10), inference.run(model.clone(), row("red"), false));
            assert_eq!(answer.await.expect("answered while training runs").unwrap(), expected);
        }
        assert!(!training.is_finished(), "training held its slot throughout");
        release.send(()).unwrap();
        assert_eq!(training.await.unwrap(), Ok(true));
    }
}
