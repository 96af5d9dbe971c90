//! Offline batch prediction, shard by shard: a model version run over every
//! row of a stored shard on a node that holds it, and the shards' scores
//! put together into one CSV and the test rows' metrics; on request, the
//! rows with the model's outputs as a new dataset (what the next model of a
//! serial composition trains on). [`super::scoring`] runs it as a job.

use std::{collections::HashMap, fmt::Write as _};

use mass_kernels::{
    features::summarize::label_text,
    models::{ensemble::argmax_rows, metrics},
};
use mass_protocol::{
    ContentId,
    dataset::{Column, ColumnKind, ColumnStats, DatasetManifest, Shard, ShardInfo, Split},
    jobs::{Evaluation, ModelManifest, Task, output_columns},
    rpc::{Request, Response},
    serving::{BatchPrediction, ScoringSpec},
    storage::{BlobKind, validate_ref_name},
};

use super::{
    model::{LoadedModel, with_outputs},
    router::ServeError,
};
use crate::{datasets::REF_PREFIX, mesh::Mesh, storage::store::pin_name};

/// Ref under which the latest batch prediction of a model over a dataset is kept.
pub fn output_ref(model: &str, dataset: &str) -> String {
    format!("predictions/{model}/{dataset}")
}

/// A shard's predictions: CSV lines, and its test rows' (truth,
/// prediction) for classes (with the probability given to the truth) or
/// values; with `extend`, the stored shard with the outputs as columns.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ShardScores {
    pub csv: String,
    pub classes: Vec<(u32, u32, f32)>,
    pub values: Vec<(f64, f64)>,
    pub extended: Option<(ContentId, Vec<ColumnStats>)>,
}

/// Rows predicted at a time when scoring a shard: the block's feature
/// matrix (2 MB for MNIST) stays in cache from the transform to the
/// model, where a whole shard's (31 MB for 10,000 MNIST rows) went to
/// memory and back.
const SCORING_BLOCK: usize = 512;

/// `model`'s outputs for every row of `rows`, a block of rows at a time.
fn predict_in_blocks(model: &LoadedModel, rows: &Shard) -> Result<ndarray::Array2<f64>, String> {
    if rows.rows() <= SCORING_BLOCK {
        return model.predict(rows);
    }
    let blocks: Vec<ndarray::Array2<f64>> = (0..rows.rows())
        .step_by(SCORING_BLOCK)
        .map(|start| model.predict_range(rows, start..(start + SCORING_BLOCK).min(rows.rows())))
        .collect::<Result<_, _>>()?;
    let views: Vec<_> = blocks.iter().map(|b| b.view()).collect();
    ndarray::concatenate(ndarray::Axis(0), &views).map_err(|e| format!("joining the blocks' predictions: {e}"))
}

/// Scores every row of `rows` with `model` (CSV lines and test pairs).
pub fn score_shard(model: &LoadedModel, rows: &Shard) -> Result<(ShardScores, ndarray::Array2<f64>), String> {
    let outputs = predict_in_blocks(model, rows)?;
    let regression = model.manifest.task == Task::Regression;
    let predicted = if regression { vec![0; outputs.nrows()] } else { argmax_rows(&outputs.mapv(|p| p as f32)) };
    let classes: HashMap<&str, u32> =
        model.manifest.classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as u32)).collect();
    let mut scores = ShardScores { csv: String::with_capacity(rows.rows() * 24), ..Default::default() };
    for (r, &p) in predicted.iter().enumerate() {
        let label = label_text(rows, model.schema.label, r);
        let split = match rows.splits[r] {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        };
        let csv = &mut scores.csv;
        write!(csv, "{},{split},", rows.first_row + r as u64).expect("writing to a String");
        push_field(csv, label.as_deref().unwrap_or(""));
        csv.push(',');
        if regression {
            write!(csv, "{}", outputs[[r, 0]]).expect("writing to a String");
        } else {
            push_field(csv, &model.manifest.classes[p]);
        }
        csv.push('\n');
        if rows.splits[r] != Split::Test {
            continue;
        }
        if regression {
            if let Some(truth) = label.as_deref().and_then(|l| l.parse::<f64>().ok()) {
                scores.values.push((truth, outputs[[r, 0]]));
            }
        } else if let Some(&truth) = label.as_deref().and_then(|l| classes.get(l)) {
            scores.classes.push((truth, p as u32, outputs[[r, truth as usize]] as f32));
        }
    }
    Ok((scores, outputs))
}

/// Statistics of output columns, as ingest keeps them for every column.
fn output_stats(outputs: &ndarray::Array2<f64>) -> Vec<ColumnStats> {
    outputs
        .columns()
        .into_iter()
        .map(|column| {
            let mut s = ColumnStats::default();
            for &v in column {
                s.present += 1;
                s.sum += v;
                s.sum_sq += v * v;
                s.min = Some(s.min.map_or(v, |m: f64| m.min(v)));
                s.max = Some(s.max.map_or(v, |m: f64| m.max(v)));
            }
            s
        })
        .collect()
}

/// Predicts every row of shard `shard` (which this node should hold) with
/// version `manifest`; with `extend`, also stores the shard with the
/// outputs appended.
pub async fn predict_shard(
    mesh: &Mesh,
    manifest: ContentId,
    shard: ContentId,
    extend: bool,
) -> Result<ShardScores, String> {
    let model = mesh.serving.models.get(mesh, manifest).await?;
    let rows = mesh.load_shard(shard).await?;
    let (mut scores, extended) = mesh
        .compute
        .run_waiting(crate::compute::Work::Inference, move || {
            let (scores, outputs) = score_shard(&model, &rows)?;
            let extended = extend.then(|| (with_outputs(rows, &outputs), output_stats(&outputs)));
            Ok::<_, String>((scores, extended))
        })
        .await?;
    if let Some((shard, stats)) = extended {
        scores.extended = Some((mesh.save(&shard, BlobKind::Dataset).await?, stats));
    }
    Ok(scores)
}

/// Appends `field` to a CSV line, quoted when it holds a comma, a quote or a line break.
fn push_field(csv: &mut String, field: &str) {
    if field.contains([',', '"', '\n']) {
        csv.push('"');
        csv.push_str(&field.replace('"', "\"\""));
        csv.push('"');
    } else {
        csv.push_str(field);
    }
}

/// Checks a batch prediction's `into` name before anything runs.
pub fn check_into(dataset: &str, into: Option<&str>) -> Result<(), ServeError> {
    if let Some(into) = into {
        validate_ref_name(&format!("{REF_PREFIX}{into}")).map_err(|e| ServeError::BadInput(format!("into: {e}")))?;
        if into == dataset {
            return Err(ServeError::BadInput("into: name a new dataset, not the one predicted".into()));
        }
    }
    Ok(())
}

/// Puts the shards' scores (in shard order) together: stores the CSV,
/// names it `predictions/<model>/<dataset>`, scores the test rows, and with
/// `into` names the rows with the outputs as `dataset/<into>`.
pub async fn finish(
    mesh: &Mesh,
    spec: &ScoringSpec,
    data: &DatasetManifest,
    parts: Vec<ShardScores>,
    shard_peers: Vec<String>,
) -> Result<BatchPrediction, ServeError> {
    let model_manifest = mesh.load_model(spec.manifest).await.map_err(ServeError::Unavailable)?;
    let mut csv = String::from("row,split,label,prediction\n");
    let mut all = ShardScores::default();
    let mut extended = Vec::new();
    for scores in parts {
        csv.push_str(&scores.csv);
        all.classes.extend(scores.classes);
        all.values.extend(scores.values);
        extended.extend(scores.extended);
    }
    let evaluation = test_metrics(&all, model_manifest.classes.len());
    let blob = mesh.save_bytes(csv.as_bytes(), BlobKind::Prediction).await.map_err(ServeError::Unavailable)?;
    mesh.write_ref(output_ref(&spec.model, &spec.dataset), Some(blob))
        .await
        .map_err(|e| ServeError::Unavailable(e.to_string()))?;
    let into = match spec.into.as_deref() {
        Some(into) => Some(name_extended(mesh, into, data, &model_manifest, extended).await?),
        None => None,
    };
    Ok(BatchPrediction {
        model: spec.model.clone(),
        version: spec.version,
        dataset: spec.dataset.clone(),
        blob,
        rows: data.rows,
        test: evaluation,
        shard_peers,
        into,
    })
}

/// Stores the manifest of `data`'s rows with `model`'s outputs as columns,
/// pins its shards, and names it `dataset/<into>`.
async fn name_extended(
    mesh: &Mesh,
    into: &str,
    data: &DatasetManifest,
    model: &ModelManifest,
    shards: Vec<(ContentId, Vec<ColumnStats>)>,
) -> Result<ContentId, ServeError> {
    if shards.len() != data.shards.len() {
        return Err(ServeError::Unavailable("a shard's extended rows are missing".into()));
    }
    let names = output_columns(&model.name, model.task, &model.classes);
    let mut manifest = data.clone();
    manifest.name = into.to_owned();
    manifest.schema.columns.extend(names.iter().map(|n| Column { name: n.clone(), kind: ColumnKind::Numeric }));
    let mut stats = vec![ColumnStats::default(); names.len()];
    manifest.shards = Vec::with_capacity(shards.len());
    for ((id, shard_stats), info) in shards.into_iter().zip(&data.shards) {
        for (total, part) in stats.iter_mut().zip(shard_stats) {
            total.present += part.present;
            total.sum += part.sum;
            total.sum_sq += part.sum_sq;
            total.min = total.min.into_iter().chain(part.min).reduce(f64::min);
            total.max = total.max.into_iter().chain(part.max).reduce(f64::max);
        }
        manifest.shards.push(ShardInfo { id, first_row: info.first_row, rows: info.rows });
    }
    manifest.stats.extend(stats);
    let unavailable = |e: String| ServeError::Unavailable(e);
    for shard in &manifest.shards {
        mesh.write_ref(pin_name(&shard.id), Some(shard.id)).await.map_err(|e| unavailable(e.to_string()))?;
    }
    let id = mesh.save(&manifest, BlobKind::Dataset).await.map_err(unavailable)?;
    mesh.write_ref(format!("{REF_PREFIX}{into}"), Some(id)).await.map_err(|e| unavailable(e.to_string()))?;
    Ok(id)
}

/// Metrics of the test rows' predictions, when there are any.
pub fn test_metrics(scores: &ShardScores, classes: usize) -> Option<Evaluation> {
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
pub async fn shard_somewhere(
    mesh: &Mesh,
    manifest: ContentId,
    shard: ContentId,
    extend: bool,
) -> Result<(String, ShardScores), String> {
    if !mesh.storage.has(shard).await.unwrap_or(false) {
        for peer in mesh.likely_holders(&shard).await {
            let request = Request::PredictShard { manifest, shard, extend };
            let answer = mesh.net.request_within(peer, request, crate::net::client::WORK_TIMEOUT).await;
            if let Ok(Response::ShardPredicted { csv, test, values, extended }) = answer {
                return Ok((peer.to_string(), ShardScores { csv, classes: test, values, extended }));
            }
        }
    }
    Ok((mesh.peer_id.clone(), predict_shard(mesh, manifest, shard, extend).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fuzz::fixture::fixture, serving::rows::concat};

    /// Fields with commas, quotes or line breaks are quoted, quotes doubled.
    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        let mut csv = String::new();
        for field in ["cat", "a,b", "say \"hi\"", "two\nlines", ""] {
            push_field(&mut csv, field);
            csv.push('|');
        }
        assert_eq!(csv, "cat|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"||");
    }

    /// A shard of more rows than a block (categories, text and numbers with
    /// missing cells) gets the outputs it gets predicted whole.
    #[test]
    fn a_shard_predicted_in_blocks_gets_the_outputs_of_one_call() {
        let f = fixture();
        let copies = SCORING_BLOCK / f.shards.iter().map(Shard::rows).sum::<usize>() + 2;
        let rows = concat(f.shards.iter().cycle().take(copies * f.shards.len()).cloned().collect());
        assert!(rows.rows() > SCORING_BLOCK + 1 && rows.validate().is_ok());
        assert_eq!(predict_in_blocks(&f.model, &rows).unwrap(), f.model.predict(&rows).unwrap());
    }
}
