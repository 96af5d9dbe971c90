//! A model version ready to run: its manifest, feature pipeline, the
//! dataset's schema (to read rows by column name) and its weights, every
//! blob verified on load. Loaded versions are kept in a small cache.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use mass_kernels::models::{Mlp, ensemble::combine_outputs};
use mass_protocol::{ContentId, dataset::Schema, features::FittedPipeline, jobs::ModelManifest};
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
    pub members: Vec<Mlp>,
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
            members.push(mesh.load::<Mlp>(*member).await?);
        }
        let meta = match manifest.meta {
            Some(meta) => Some(mesh.load::<Mlp>(meta).await?),
            None => None,
        };
        if members.is_empty() {
            return Err(format!("model manifest {id} lists no members"));
        }
        Ok(Self { id, manifest, schema, pipeline, members, meta })
    }

    /// Class probabilities of already transformed rows.
    pub fn probabilities(&self, features: ArrayView2<'_, f32>) -> Array2<f32> {
        let outputs: Vec<Array2<f32>> = self.members.iter().map(|m| m.predict(features)).collect();
        combine_outputs(&outputs, self.meta.as_ref())
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
