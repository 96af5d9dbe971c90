//! The node's bridges together: started from the config, each watched by a
//! task (first probe, health checks, re-probes while it is out of use), and
//! offered every model version the node loads. A version whose members
//! are all networks is tried on the bridges, fastest first, with sample
//! rows from its dataset for the drift check.

use std::{
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use mass_kernels::{features::transform, models::Mlp};
use mass_protocol::{BridgeInfo, ContentId, jobs::Task};
use ndarray::{Array2, s};
use tokio::runtime::Handle;
use tracing::{debug, info, warn};

use super::{
    Config, Route,
    link::{Link, PlaceError},
};
use crate::{
    datasets::service::{read_manifest, read_shard},
    mesh::Mesh,
    serving::model::LoadedModel,
};

/// Rows of the drift check, from the first shard of the model's dataset.
pub const SAMPLE_ROWS: usize = 256;
/// How often each bridge's task looks at it.
const TICK: Duration = Duration::from_millis(100);
/// How often versions the node dropped are unloaded from the bridges.
const PRUNE_EVERY: u32 = 10;

/// A cheap handle; empty (no bridges) by default.
#[derive(Clone, Default)]
pub struct Bridges {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    links: Vec<Arc<Link>>,
    offered: Mutex<Vec<Offered>>,
}

/// A model version this node loaded, kept so that a bridge coming (back)
/// into use can take it.
#[derive(Clone)]
struct Offered {
    id: ContentId,
    label: String,
    model: Weak<LoadedModel>,
    sample: Arc<Array2<f32>>,
}

impl Bridges {
    /// Starts watching every declared bridge. Call inside the node's runtime.
    pub fn start(config: &Config) -> Self {
        let runtime = Handle::current();
        let links = config
            .bridges
            .iter()
            .filter_map(|settings| match Link::new(settings.clone(), runtime.clone()) {
                Ok(link) => Some(Arc::new(link)),
                Err(e) => {
                    warn!(bridge = %settings.name, "bridge ignored: {e}");
                    None
                }
            })
            .collect();
        let bridges = Self { inner: Arc::new(Inner { links, offered: Mutex::default() }) };
        for link in &bridges.inner.links {
            tokio::spawn(watch(link.clone(), Arc::downgrade(&bridges.inner)));
        }
        bridges
    }

    pub fn is_empty(&self) -> bool {
        self.inner.links.is_empty()
    }

    /// What the advert says about each bridge now.
    pub fn infos(&self) -> Vec<BridgeInfo> {
        self.inner.links.iter().map(|l| l.info()).collect()
    }

    /// Offers a freshly loaded version to the bridges, in the background:
    /// nothing changes for its requests until a bridge accepted it.
    pub fn offer(&self, mesh: &Mesh, model: &Arc<LoadedModel>) {
        if self.is_empty() || model.networks().is_none() {
            return;
        }
        let (inner, mesh, model) = (self.inner.clone(), mesh.clone(), model.clone());
        tokio::spawn(async move {
            let label = model_label(&model);
            let sample = match sample_rows(&mesh, &model).await {
                Ok(sample) => Arc::new(sample),
                Err(e) => return warn!(model = %label, "not offered to the bridges: no sample rows ({e})"),
            };
            let offered = Offered { id: model.id, label, model: Arc::downgrade(&model), sample };
            inner.offered.lock().expect("offered lock").push(offered.clone());
            drop(model);
            let mut links = inner.links.clone();
            links.sort_by(|a, b| b.rows_per_s().total_cmp(&a.rows_per_s()));
            for link in links.iter().filter(|l| l.allows() && l.settings.route != Route::Never) {
                if place_on(link, &offered).await {
                    break;
                }
            }
        });
    }
}

impl Inner {
    /// Offers every version to a bridge that just came (back) into use.
    async fn place_all(&self, link: &Arc<Link>) {
        if link.settings.route == Route::Never {
            return;
        }
        let offered: Vec<Offered> = self.offered.lock().expect("offered lock").clone();
        for entry in offered {
            let elsewhere = self.links.iter().any(|l| !Arc::ptr_eq(l, link) && l.allows() && l.is_placed(&entry.id));
            if !elsewhere {
                place_on(link, &entry).await;
            }
        }
    }

    /// Drops versions the node no longer holds, and unloads them.
    async fn prune(&self) {
        let gone: Vec<ContentId> = {
            let mut offered = self.offered.lock().expect("offered lock");
            let dead: Vec<ContentId> = offered.iter().filter(|o| o.model.strong_count() == 0).map(|o| o.id).collect();
            offered.retain(|o| o.model.strong_count() > 0);
            dead.into_iter().filter(|id| !offered.iter().any(|o| o.id == *id)).collect()
        };
        for id in gone {
            for link in &self.links {
                if link.is_placed(&id) {
                    debug!(bridge = %link.settings.name, manifest = %id, "version dropped here: unloading it");
                }
                link.forget(&id).await;
            }
        }
    }
}

/// Tries one version on one bridge; true when the bridge took it.
async fn place_on(link: &Arc<Link>, offered: &Offered) -> bool {
    let Some(model) = offered.model.upgrade() else { return false };
    let Some((_, networks)) = model.networks() else { return false };
    let networks: Vec<Mlp> = networks.into_iter().cloned().collect();
    let classifier = model.manifest.task == Task::Classification;
    match link.place(offered.id, &offered.label, networks, classifier, offered.sample.clone()).await {
        Ok(placement) => {
            model.bridge.set(placement);
            true
        }
        // The expected outcome for a bridge slower than this CPU.
        Err(e @ PlaceError::Slower { .. }) => {
            info!(bridge = %link.settings.name, "{e}");
            false
        }
        Err(e) => {
            warn!(bridge = %link.settings.name, "{e}");
            false
        }
    }
}

/// Watches one bridge for as long as the node runs.
async fn watch(link: Arc<Link>, inner: Weak<Inner>) {
    let mut first = true;
    let mut ticks = 0u32;
    loop {
        let Some(bridges) = inner.upgrade() else { return };
        if first || link.probe_due() {
            first = false;
            if link.probe().await.is_ok() {
                bridges.place_all(&link).await;
            }
        } else if link.health_due() {
            link.check_health().await;
        }
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(PRUNE_EVERY) {
            bridges.prune().await;
        }
        drop(bridges);
        tokio::time::sleep(TICK).await;
    }
}

/// Feature rows for the drift check: the first rows of the first shard of
/// the version's dataset, through its pipeline.
async fn sample_rows(mesh: &Mesh, model: &Arc<LoadedModel>) -> Result<Array2<f32>, String> {
    let label = model_label(model);
    let meta = mesh.ensure_local(model.manifest.dataset_manifest).await?;
    let dataset = read_manifest(&mesh.storage, &meta).await.map_err(|e| e.to_string())?;
    let first = dataset.shards.first().ok_or("the dataset has no shards")?;
    let meta = mesh.ensure_local(first.id).await?;
    let shard = read_shard(&mesh.storage, &meta).await.map_err(|e| e.to_string())?;
    let model = model.clone();
    let x = tokio::task::spawn_blocking(move || {
        let (pipeline, _) = model.networks().expect("offered models are networks");
        transform(pipeline, &shard).map_err(|e| format!("the pipeline refused its own dataset: {e}"))
    })
    .await
    .map_err(|e| format!("the sample task failed: {e}"))??;
    let rows = x.nrows().min(SAMPLE_ROWS);
    if rows == 0 {
        return Err("the first shard has no rows".into());
    }
    debug!(model = %label, rows, "sample rows for the bridges' drift check");
    Ok(x.slice(s![..rows, ..]).to_owned())
}

fn model_label(model: &LoadedModel) -> String {
    format!("'{}' ({})", model.manifest.name, model.id.short())
}
