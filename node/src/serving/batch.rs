//! Offline batch prediction: a model version run over every row of a stored
//! dataset, each shard on a node that holds it, written as one CSV blob.

use std::collections::HashMap;

use mass_kernels::{
    features::{summarize::label_text, transform},
    models::{ensemble::argmax_rows, metrics},
};
use mass_protocol::{
    ContentId,
    dataset::{Shard, Split},
    jobs::{Evaluation, ModelManifest, Task},
    rpc::{Request, Response},
    serving::BatchPrediction,
};

use super::{registry, router::ServeError};
use crate::mesh::Mesh;

/// Ref under which the latest batch prediction of a model over a dataset is kept.
pub fn output_ref(model: &str, dataset: &str) -> String {
    format!("predictions/{model}/{dataset}")
}

/// A shard's predictions: CSV lines, and its test rows' (truth,
/// prediction) for classes (with the probability given to the truth) or
/// values.
#[derive(Debug, Default)]
pub struct ShardScores {
    pub csv: String,
    pub classes: Vec<(u32, u32, f32)>,
    pub values: Vec<(f64, f64)>,
}

/// Predicts every row of shard `shard` (which this node should hold) with
/// version `manifest`.
pub async fn predict_shard(mesh: &Mesh, manifest: ContentId, shard: ContentId) -> Result<ShardScores, String> {
    let model = mesh.serving.models.get(mesh, manifest).await?;
    let rows: Shard = mesh.load(shard).await?;
    tokio::task::spawn_blocking(move || {
        let x = transform(&model.pipeline, &rows).map_err(|e| e.to_string())?;
        let outputs = model.outputs(x.view());
        let regression = model.manifest.task == Task::Regression;
        let predicted = if regression { vec![0; outputs.nrows()] } else { argmax_rows(&outputs) };
        let classes: HashMap<&str, u32> =
            model.manifest.classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as u32)).collect();
        let mut scores = ShardScores::default();
        for (r, &p) in predicted.iter().enumerate() {
            let label = label_text(&rows, model.pipeline.label, r);
            let split = match rows.splits[r] {
                Split::Train => "train",
                Split::Validation => "validation",
                Split::Test => "test",
            };
            let prediction =
                if regression { model.answer(outputs[[r, 0]]).to_string() } else { model.manifest.classes[p].clone() };
            scores.csv.push_str(&format!(
                "{},{split},{},{}\n",
                rows.first_row + r as u64,
                quote(label.as_deref().unwrap_or("")),
                quote(&prediction)
            ));
            if rows.splits[r] != Split::Test {
                continue;
            }
            if regression {
                if let Some(truth) = label.as_deref().and_then(|l| l.parse::<f64>().ok()) {
                    scores.values.push((truth, model.answer(outputs[[r, 0]])));
                }
            } else if let Some(&truth) = label.as_deref().and_then(|l| classes.get(l)) {
                scores.classes.push((truth, p as u32, outputs[[r, truth as usize]]));
            }
        }
        Ok(scores)
    })
    .await
    .map_err(|e| format!("batch prediction failed: {e}"))?
}

fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n']) { format!("\"{}\"", field.replace('"', "\"\"")) } else { field.to_owned() }
}

/// Runs the served version of `model` over `dataset`, shard by shard on the
/// nodes holding them, stores the CSV and names it `predictions/<model>/<dataset>`.
pub async fn run(mesh: &Mesh, model: &str, dataset: &str) -> Result<BatchPrediction, ServeError> {
    let (manifest, version) = registry::current(mesh, model).await?;
    let (_, data) = mesh.dataset(dataset).await.map_err(ServeError::NotFound)?;
    let parts = data.shards.iter().map(|info| shard_somewhere(mesh, manifest, info.id));
    let mut csv = String::from("row,split,label,prediction\n");
    let mut all = ShardScores::default();
    let mut shard_peers = Vec::new();
    for result in futures::future::join_all(parts).await {
        let (peer, scores) = result.map_err(ServeError::Unavailable)?;
        csv.push_str(&scores.csv);
        all.classes.extend(scores.classes);
        all.values.extend(scores.values);
        shard_peers.push(peer);
    }
    // The manifest alone: this node need not load the weights to score.
    let classes = mesh.load::<ModelManifest>(manifest).await.map_err(ServeError::Unavailable)?.classes.len();
    let evaluation = test_metrics(&all, classes);
    let blob = mesh.save_bytes(csv.as_bytes()).await.map_err(ServeError::Unavailable)?;
    mesh.write_ref(output_ref(model, dataset), Some(blob)).await.map_err(|e| ServeError::Unavailable(e.to_string()))?;
    Ok(BatchPrediction {
        model: model.to_owned(),
        version,
        dataset: dataset.to_owned(),
        blob,
        rows: data.rows,
        test: evaluation,
        shard_peers,
    })
}

/// Metrics of the test rows' predictions, when there are any.
fn test_metrics(scores: &ShardScores, classes: usize) -> Option<Evaluation> {
    if !scores.values.is_empty() {
        let (truth, predicted): (Vec<f64>, Vec<f64>) = scores.values.iter().copied().unzip();
        let (rmse, mae, r2) = metrics::regression(&truth, &predicted);
        return Some(Evaluation::regression(truth.len() as u64, rmse, mae, r2));
    }
    let test = &scores.classes;
    (!test.is_empty()).then(|| {
        let truth: Vec<usize> = test.iter().map(|(t, _, _)| *t as usize).collect();
        let predicted: Vec<usize> = test.iter().map(|(_, p, _)| *p as usize).collect();
        let log_loss = test.iter().map(|(_, _, p)| -f64::from(p.max(1e-15)).ln()).sum::<f64>() / test.len() as f64;
        Evaluation::classification(
            truth.len() as u64,
            metrics::accuracy(&truth, &predicted),
            metrics::class_scores(&truth, &predicted, classes).macro_f1,
            log_loss,
            metrics::confusion_matrix(&truth, &predicted, classes),
        )
    })
}

/// Predicts one shard where it lives, or here when no holder answers.
async fn shard_somewhere(mesh: &Mesh, manifest: ContentId, shard: ContentId) -> Result<(String, ShardScores), String> {
    if !mesh.storage.has(shard).await.unwrap_or(false) {
        for peer in mesh.likely_holders(&shard).await {
            let request = Request::PredictShard { manifest, shard };
            if let Ok(Response::ShardPredicted { csv, test, values }) = mesh.net.request(peer, request).await {
                return Ok((peer.to_string(), ShardScores { csv, classes: test, values }));
            }
        }
    }
    Ok((mesh.peer_id.clone(), predict_shard(mesh, manifest, shard).await?))
}
