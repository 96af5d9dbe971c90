//! Keeps this node's share of the models: for every `model/<name>` served
//! now, the nodes ranked first for its manifest (as many as
//! `serving.replicas`) fetch all its blobs and load it, so a promoted
//! version is ready on its replicas before requests reach them.

use std::time::Duration;

use actix::{Actor, AsyncContext, Context, WrapFuture};
use tracing::{debug, info};

use super::model::LoadedModel;
use crate::{jobs::MODEL_PREFIX, mesh::Mesh, replication::homes};

pub struct ModelKeeper {
    mesh: Mesh,
    interval: Duration,
}

impl ModelKeeper {
    pub fn new(mesh: Mesh, interval: Duration) -> Self {
        Self { mesh, interval }
    }
}

impl Actor for ModelKeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |keeper, ctx| {
            ctx.spawn(keep(keeper.mesh.clone()).into_actor(keeper));
        });
    }
}

async fn keep(mesh: Mesh) {
    let Ok(refs) = mesh.storage.refs().await else { return };
    let mut view = mesh.up_peers().await;
    let local = mesh.net.local_peer_id();
    view.push(local);
    for record in refs.iter().filter(|r| r.name.starts_with(MODEL_PREFIX)) {
        let Some(id) = record.current().and_then(|c| c.target) else { continue };
        if !homes(&id, &view, mesh.serving.config.replicas).contains(&local) || mesh.serving.models.is_loaded(&id) {
            continue;
        }
        match mesh.serving.models.get(&mesh, id).await {
            Ok(model) => {
                for part in LoadedModel::parts(id, &model.manifest) {
                    // Loading fetched every part; keep them as replicas do.
                    let _ = mesh.ensure_local(part).await;
                }
                info!(model = %record.name, manifest = %id, "serving a replica");
            }
            Err(e) => debug!(model = %record.name, "cannot take a replica yet: {e}"),
        }
    }
}
