//! A model version ready to run: its manifest, feature pipeline, the
//! dataset's schema (to read rows by column name) and its weights, every
//! blob verified on load. Loaded versions are kept in a small cache.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use futures::future::{BoxFuture, FutureExt};
use mass_kernels::{
    features::{reads_matrix, transform, transform_matrix, transform_range},
    models::{Member, Mlp, ensemble::combine},
};
use mass_protocol::{
    ContentId,
    dataset::{Column, ColumnKind, Schema, Shard, ShardColumn},
    features::FittedPipeline,
    jobs::{Combine, ModelManifest, Task, output_columns},
    serving::{ColumnValues, Matrix},
};
use ndarray::Array2;
use tokio::sync::OnceCell;

use crate::{datasets::service::read_manifest, mesh::Mesh};

/// Versions kept loaded at once; an older one is loaded again on demand.
const CACHED_VERSIONS: usize = 8;

pub struct LoadedModel {
    pub id: ContentId,
    pub manifest: ModelManifest,
    /// The columns a row must have (the dataset's, label included).
    pub schema: Schema,
    body: Body,
    /// Where its networks run: the CPU until a bridge accepts them.
    pub bridge: crate::bridge::Slot,
}

enum Body {
    /// Members trained by a job, reading rows through one pipeline.
    Trained { pipeline: FittedPipeline, members: Vec<Member>, meta: Option<Mlp> },
    /// Registered models answering the same rows, their answers averaged.
    Parallel { parts: Vec<Arc<LoadedModel>>, weights: Vec<f64> },
    /// Registered models in a chain, each reading the rows plus the
    /// outputs of the one before.
    Serial(Vec<Arc<LoadedModel>>),
}

/// Parts within parts at most (a composed model of composed models).
const MAX_NESTING: usize = 8;

impl LoadedModel {
    /// Loads (fetching what this node lacks, verifying every chunk) version `id`.
    pub async fn load(mesh: &Mesh, id: ContentId) -> Result<Self, String> {
        Self::load_nested(mesh, id, 0).await
    }

    fn load_nested(mesh: &Mesh, id: ContentId, depth: usize) -> BoxFuture<'_, Result<Self, String>> {
        async move {
            if depth > MAX_NESTING {
                return Err(format!("model manifest {id}: parts nested more than {MAX_NESTING} deep"));
            }
            let manifest = mesh.load_model(id).await.map_err(|e| format!("model manifest {id}: {e}"))?;
            let dataset = mesh.ensure_local(manifest.dataset_manifest).await?;
            let schema = read_manifest(&mesh.storage, &dataset).await.map_err(|e| e.to_string())?.schema;
            if manifest.parts.is_empty() {
                let pipeline = mesh.load_pipeline(manifest.pipeline).await?;
                let mut members = Vec::with_capacity(manifest.members.len());
                for member in &manifest.members {
                    members.push(mesh.load::<Member>(*member).await?);
                }
                let meta = match manifest.meta {
                    Some(meta) => match mesh.load::<Member>(meta).await? {
                        Member::Mlp(m) => Some(m),
                        other => {
                            return Err(format!("model manifest {id}: its meta-model is {}, not linear", other.kind()));
                        }
                    },
                    None => None,
                };
                Self::trained(id, manifest, schema, pipeline, members, meta)
            } else {
                let mut parts = Vec::with_capacity(manifest.parts.len());
                for part in &manifest.parts {
                    parts.push(Arc::new(Self::load_nested(mesh, *part, depth + 1).await?));
                }
                Self::composed(id, manifest, schema, parts)
            }
        }
        .boxed()
    }

    /// A trained model from its decoded blobs, checked.
    pub fn trained(
        id: ContentId,
        manifest: ModelManifest,
        schema: Schema,
        pipeline: FittedPipeline,
        members: Vec<Member>,
        meta: Option<Mlp>,
    ) -> Result<Self, String> {
        let body = Body::Trained { pipeline, members, meta };
        let model = Self { id, manifest, schema, body, bridge: Default::default() };
        model.validate().map_err(|e| format!("model manifest {id}: {e}"))?;
        Ok(model)
    }

    /// A composed model from its loaded parts, checked.
    pub fn composed(
        id: ContentId,
        manifest: ModelManifest,
        schema: Schema,
        parts: Vec<Arc<LoadedModel>>,
    ) -> Result<Self, String> {
        let body = match &manifest.combine {
            Combine::Serial => Body::Serial(parts),
            Combine::WeightedMean(weights) => Body::Parallel { parts, weights: weights.clone() },
            other => return Err(format!("model manifest {id}: parts cannot be combined by {other:?}")),
        };
        let model = Self { id, manifest, schema, body, bridge: Default::default() };
        model.validate().map_err(|e| format!("model manifest {id}: {e}"))?;
        Ok(model)
    }

    /// The pipeline and networks of a trained model whose members are all
    /// networks: what a bridge can run (the pipeline and the combining
    /// stay on the CPU).
    pub fn networks(&self) -> Option<(&FittedPipeline, Vec<&Mlp>)> {
        let Body::Trained { pipeline, members, .. } = &self.body else { return None };
        let networks: Vec<&Mlp> = members
            .iter()
            .filter_map(|m| match m {
                Member::Mlp(n) => Some(n),
                _ => None,
            })
            .collect();
        (networks.len() == members.len()).then_some((pipeline, networks))
    }

    /// Checks that the parts fit together, so that no stored model (however
    /// crafted) can panic a prediction.
    fn validate(&self) -> Result<(), String> {
        let m = &self.manifest;
        let outputs = self.outputs_per_row();
        if m.task == Task::Classification && m.classes.is_empty() {
            return Err("a classifier without classes".into());
        }
        match &self.body {
            Body::Trained { pipeline, members, meta } => {
                if members.is_empty() {
                    return Err("it lists no members".into());
                }
                if pipeline.columns.len() != self.schema.columns.len() || pipeline.task != m.task {
                    return Err("its pipeline does not match its dataset or task".into());
                }
                if m.task == Task::Classification && m.classes != pipeline.classes {
                    return Err("its classes do not match its pipeline's".into());
                }
                if m.task == Task::Regression && pipeline.target.is_none() {
                    return Err("a regressor without its target scale".into());
                }
                for (i, member) in members.iter().enumerate() {
                    member.validate(pipeline.features, outputs).map_err(|e| format!("member {i}: {e}"))?;
                }
                if let Some(meta) = meta {
                    Member::Mlp(meta.clone())
                        .validate(outputs * members.len(), outputs)
                        .map_err(|e| format!("meta-model: {e}"))?;
                }
                m.combine.validate(members.len())
            }
            Body::Parallel { parts, weights } => {
                m.combine.validate(parts.len())?;
                if weights.len() != parts.len() {
                    return Err("one weight per part is needed".into());
                }
                for part in parts {
                    same_columns(&part.schema, &self.schema)?;
                    if part.manifest.task != m.task || part.manifest.classes != m.classes {
                        return Err(format!("part '{}' answers another task or other classes", part.manifest.name));
                    }
                }
                Ok(())
            }
            Body::Serial(parts) => {
                let (first, last) = (parts.first().ok_or("no parts")?, parts.last().ok_or("no parts")?);
                same_columns(&first.schema, &self.schema)?;
                if last.manifest.task != m.task || last.manifest.classes != m.classes {
                    return Err("it does not answer as its last part does".into());
                }
                for pair in parts.windows(2) {
                    chained(&pair[0], &pair[1])?;
                }
                Ok(())
            }
        }
    }

    /// Outputs per row: one per class, or one value.
    pub fn outputs_per_row(&self) -> usize {
        match self.manifest.task {
            Task::Classification => self.manifest.classes.len(),
            Task::Regression => 1,
        }
    }

    /// Whether [`LoadedModel::predict_matrix`] answers for this model.
    pub fn reads_matrices(&self) -> bool {
        matches!(&self.body, Body::Trained { pipeline, .. } if pipeline.label == self.schema.label && reads_matrix(pipeline))
    }

    /// Answers for a matrix of the feature columns (checked by
    /// `rows::check_matrix`) when the model reads it as it is: one
    /// pipeline of scaled numbers. `None` otherwise: then it goes through
    /// a shard. The answers are those of [`LoadedModel::predict`].
    pub fn predict_matrix(&self, matrix: &Matrix) -> Option<Result<Array2<f64>, String>> {
        let Body::Trained { pipeline, members, meta } = &self.body else { return None };
        if pipeline.label != self.schema.label {
            return None;
        }
        let x = match &matrix.values {
            ColumnValues::Bytes(values) => transform_matrix(pipeline, values, matrix.columns),
            ColumnValues::Float32(values) => transform_matrix(pipeline, values, matrix.columns),
            ColumnValues::Numbers(values) => transform_matrix(pipeline, values, matrix.columns),
            ColumnValues::Cells(_) => None,
        }?;
        Some(
            x.map(|x| self.answers(pipeline, members, meta.as_ref(), x))
                .map_err(|e| format!("rows do not fit the pipeline: {e}")),
        )
    }

    /// A trained body's answers for its features `x`.
    fn answers(
        &self,
        pipeline: &FittedPipeline,
        members: &[Member],
        meta: Option<&Mlp>,
        x: Array2<f32>,
    ) -> Array2<f64> {
        let outputs = self.bridge.predict(members, x.view());
        let combined = combine(&outputs, &self.manifest.combine, meta).mapv(f64::from);
        match pipeline.target {
            Some(scale) => combined.mapv(|v| scale.unscale(v)),
            None => combined,
        }
    }

    /// [`Self::predict`] of rows `range` of `rows`, reading them in place
    /// where the pipeline only scales numbers instead of cutting them out.
    pub fn predict_range(&self, rows: &Shard, range: std::ops::Range<usize>) -> Result<Array2<f64>, String> {
        if let Body::Trained { pipeline, members, meta } = &self.body
            && let Some(x) = transform_range(pipeline, rows, range.clone())
        {
            let x = x.map_err(|e| format!("rows do not fit the pipeline: {e}"))?;
            return Ok(self.answers(pipeline, members, meta.as_ref(), x));
        }
        self.predict(&rows.slice_rows(range))
    }

    /// Answers for rows in this model's columns: class probabilities, or
    /// values in the label's units.
    pub fn predict(&self, rows: &Shard) -> Result<Array2<f64>, String> {
        match &self.body {
            Body::Trained { pipeline, members, meta } => {
                let x = transform(pipeline, rows).map_err(|e| format!("rows do not fit the pipeline: {e}"))?;
                Ok(self.answers(pipeline, members, meta.as_ref(), x))
            }
            Body::Parallel { parts, weights } => {
                let total: f64 = weights.iter().sum();
                let mut sum = Array2::<f64>::zeros((rows.rows(), self.outputs_per_row()));
                for (part, weight) in parts.iter().zip(weights) {
                    sum.scaled_add(weight / total, &part.predict(rows)?);
                }
                Ok(sum)
            }
            Body::Serial(parts) => {
                let mut rows = rows.clone();
                let mut answer = Array2::zeros((0, 0));
                for (i, part) in parts.iter().enumerate() {
                    answer = part.predict(&rows)?;
                    if i + 1 < parts.len() {
                        rows = with_outputs(rows, &answer);
                    }
                }
                Ok(answer)
            }
        }
    }
}

/// Whether two schemas read the same columns (names and kinds) with the
/// label in the same place.
pub fn same_columns(a: &Schema, b: &Schema) -> Result<(), String> {
    if a != b {
        let names = |s: &Schema| s.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
        return Err(format!("its parts read different columns ({} and {})", names(a), names(b)));
    }
    Ok(())
}

/// Whether `next` reads `first`'s columns plus `first`'s outputs.
pub fn chained(first: &LoadedModel, next: &LoadedModel) -> Result<(), String> {
    let m = &first.manifest;
    let names = output_columns(&m.name, m.task, &m.classes);
    let mut expected = first.schema.clone();
    expected.columns.extend(names.iter().map(|n| Column { name: n.clone(), kind: ColumnKind::Numeric }));
    if next.schema != expected {
        return Err(format!(
            "'{}' does not read the columns of '{}' plus its outputs ({}); train it on a dataset made by \
             `mass models batch {} --into ...`",
            next.manifest.name,
            m.name,
            names.join(", "),
            m.name
        ));
    }
    Ok(())
}

/// The rows with a model's outputs appended as numeric columns.
pub fn with_outputs(mut rows: Shard, outputs: &Array2<f64>) -> Shard {
    for column in outputs.columns() {
        rows.columns.push(ShardColumn::Numeric(column.to_vec()));
    }
    rows
}

/// Loaded versions by manifest id; concurrent first requests share one load.
#[derive(Clone, Default)]
pub struct ModelCache {
    inner: Arc<Mutex<Cache>>,
}

#[derive(Default)]
struct Cache {
    slots: HashMap<ContentId, Arc<OnceCell<Arc<LoadedModel>>>>,
    order: VecDeque<ContentId>,
}

impl ModelCache {
    pub async fn get(&self, mesh: &Mesh, id: ContentId) -> Result<Arc<LoadedModel>, String> {
        let slot = {
            let mut cache = self.inner.lock().expect("model cache lock");
            if !cache.slots.contains_key(&id) {
                if cache.order.len() >= CACHED_VERSIONS
                    && let Some(old) = cache.order.pop_front()
                {
                    cache.slots.remove(&old);
                }
                cache.order.push_back(id);
            }
            cache.slots.entry(id).or_default().clone()
        };
        slot.get_or_try_init(|| async {
            let model = Arc::new(LoadedModel::load(mesh, id).await?);
            mesh.serving.bridges.offer(mesh, &model);
            Ok(model)
        })
        .await
        .cloned()
    }

    /// Whether version `id` is loaded here.
    pub fn is_loaded(&self, id: &ContentId) -> bool {
        let cache = self.inner.lock().expect("model cache lock");
        cache.slots.get(id).is_some_and(|slot| slot.initialized())
    }
}
