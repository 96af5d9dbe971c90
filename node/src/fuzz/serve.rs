//! What serving does with rows and a loaded model, shared by the targets
//! whose values end up there.

use mass_kernels::models::ensemble::argmax_rows;
use mass_protocol::{
    jobs::Task,
    serving::{Cell, Predicted, Row, Rows},
};

use super::fixture::fixture;
use crate::serving::{
    batch::score_shard,
    model::LoadedModel,
    rows::{concat, to_shard},
};

/// What the inference batcher and the router do with rows: checked into a
/// shard, run in a batch beside another request's rows (alone when the
/// batch fails), answered as classes.
pub(super) fn predict(model: &LoadedModel, rows: &Rows, allow_missing: bool) {
    let Ok(shard) = to_shard(&model.schema, rows.clone(), allow_missing) else { return };
    let other = Rows::Listed(vec![Row::Values(vec![
        Cell::Number(1.0),
        Cell::Number(0.5),
        Cell::Text("red".into()),
        Cell::Text("fast red car".into()),
    ])]);
    let batch = concat(vec![to_shard(&model.schema, other, false).expect("the fixture's row fits"), shard.clone()]);
    match model.predict(&batch) {
        Ok(outputs) => answer(model, &outputs),
        Err(_) => model.predict(&shard).map(|outputs| answer(model, &outputs)).unwrap_or_default(),
    };
}

/// A loaded model in use: predictions on the fixture's rows, and batch
/// scoring of its shards.
pub(super) fn use_model(model: &LoadedModel) {
    for shard in &fixture().shards {
        if let Ok(outputs) = model.predict(shard) {
            answer(model, &outputs);
        }
        let _ = score_shard(model, shard);
    }
}

/// `serve_local`'s answer: the class of each row, or its value.
pub(super) fn answer(model: &LoadedModel, outputs: &ndarray::Array2<f64>) -> Vec<Predicted> {
    match model.manifest.task {
        Task::Classification => argmax_rows(&outputs.mapv(|p| p as f32))
            .into_iter()
            .map(|c| Predicted::Class(model.manifest.classes.get(c).cloned().unwrap_or_default()))
            .collect(),
        Task::Regression => outputs.column(0).iter().map(|v| Predicted::Value(*v)).collect(),
    }
}
