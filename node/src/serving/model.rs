//! A model version ready to run: its manifest, feature pipeline, the
//! dataset's schema (to read rows by column name) and its weights, every
//! blob verified on load. Loaded versions are kept in a small cache.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use mass_kernels::models::{Member, Mlp, ensemble::combine};
use mass_protocol::{
    ContentId,
    dataset::Schema,
    features::FittedPipeline,
    jobs::{ModelManifest, Task},
};
use ndarray::{Array2, ArrayView2};
use tokio::sync::OnceCell;

use crate::{datasets::service::read_manifest, mesh::Mesh};

/// Versions kept loaded at once; an older one is loaded again on demand.
const CACHED_VERSIONS: usize = 8;

pub struct LoadedModel {
    pub id: ContentId,
    pub manifest: ModelManifest,
    pub schema: Schema,
    pub pipeline: FittedPipeline,
    pub members: Vec<Member>,
    pub meta: Option<Mlp>,
}

impl LoadedModel {
    /// Every blob a replica of this model keeps, the manifest first.
    pub fn parts(id: ContentId, manifest: &ModelManifest) -> Vec<ContentId> {
        let mut parts = vec![id, manifest.dataset_manifest, manifest.pipeline];
        parts.extend(&manifest.members);
        parts.extend(manifest.meta);
        parts
    }

    /// Loads (fetching what this node lacks, verifying every chunk) version `id`.
    pub async fn load(mesh: &Mesh, id: ContentId) -> Result<Self, String> {
        let manifest: ModelManifest = mesh.load(id).await.map_err(|e| format!("model manifest {id}: {e}"))?;
        let dataset = mesh.ensure_local(manifest.dataset_manifest).await?;
        let schema = read_manifest(&mesh.storage, &dataset).await.map_err(|e| e.to_string())?.schema;
        let pipeline: FittedPipeline = mesh.load(manifest.pipeline).await?;
        let mut members = Vec::with_capacity(manifest.members.len());
        for member in &manifest.members {
            members.push(mesh.load::<Member>(*member).await?);
        }
        let meta = match manifest.meta {
            Some(meta) => match mesh.load::<Member>(meta).await? {
                Member::Mlp(m) => Some(m),
                Member::Gbdt(_) => return Err(format!("model manifest {id}: its meta-model is not linear")),
            },
            None => None,
        };
        let model = Self { id, manifest, schema, pipeline, members, meta };
        model.validate().map_err(|e| format!("model manifest {id}: {e}"))?;
        Ok(model)
    }

    /// Checks that the parts fit together, so that no stored model (however
    /// crafted) can panic a prediction.
    fn validate(&self) -> Result<(), String> {
        let m = &self.manifest;
        if self.members.is_empty() {
            return Err("it lists no members".into());
        }
        if self.pipeline.columns.len() != self.schema.columns.len() || self.pipeline.task != m.task {
            return Err("its pipeline does not match its dataset or task".into());
        }
        if m.task == Task::Classification && (m.classes.is_empty() || m.classes != self.pipeline.classes) {
            return Err("its classes do not match its pipeline's".into());
        }
        if m.task == Task::Regression && self.pipeline.target.is_none() {
            return Err("a regressor without its target scale".into());
        }
        let outputs = self.outputs_per_row();
        for (i, member) in self.members.iter().enumerate() {
            member.validate(self.pipeline.features, outputs).map_err(|e| format!("member {i}: {e}"))?;
        }
        if let Some(meta) = &self.meta {
            Member::Mlp(meta.clone())
                .validate(outputs * self.members.len(), outputs)
                .map_err(|e| format!("meta-model: {e}"))?;
        }
        m.combine.validate(self.members.len())
    }

    /// Outputs per row: one per class, or one value.
    pub fn outputs_per_row(&self) -> usize {
        match self.manifest.task {
            Task::Classification => self.manifest.classes.len(),
            Task::Regression => 1,
        }
    }

    /// Outputs of already transformed rows: class probabilities, or
    /// standardized values (see [`LoadedModel::answer`]).
    pub fn outputs(&self, features: ArrayView2<'_, f32>) -> Array2<f32> {
        let outputs: Vec<Array2<f32>> = self.members.iter().map(|m| m.predict(features)).collect();
        combine(&outputs, &self.manifest.combine, self.meta.as_ref())
    }

    /// A regressor's answer in the label's units from a standardized output.
    pub fn answer(&self, output: f32) -> f64 {
        self.pipeline.target.map_or(f64::from(output), |t| t.unscale(f64::from(output)))
    }
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
        slot.get_or_try_init(|| async { LoadedModel::load(mesh, id).await.map(Arc::new) }).await.cloned()
    }

    /// Whether version `id` is loaded here.
    pub fn is_loaded(&self, id: &ContentId) -> bool {
        let cache = self.inner.lock().expect("model cache lock");
        cache.slots.get(id).is_some_and(|slot| slot.initialized())
    }
}
