//! Keeps this node's share of the models: for every `model/<name>` served
//! now, the nodes ranked first for its manifest (as many as
//! `serving.replicas`) fetch all its blobs and load it, so a promoted
//! version is ready on its replicas before requests reach them.

use std::{sync::atomic::Ordering, time::Duration};

use actix::{Actor, AsyncContext, Context, WrapFuture};
use tracing::{debug, info};

use crate::{jobs::MODEL_PREFIX, mesh::Mesh};

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
    let local = mesh.net.local_peer_id();
    let mut serving = 0;
    for record in refs.iter().filter(|r| r.name.starts_with(MODEL_PREFIX)) {
        let Some(id) = record.current().and_then(|c| c.target) else { continue };
        if !super::replica_set(&mesh, &id).await.contains(&local) {
            continue;
        }
        if mesh.serving.models.is_loaded(&id) {
            serving += 1;
            continue;
        }
        // Loading fetches (and so stores here) every blob of the version.
        match mesh.serving.models.get(&mesh, id).await {
            Ok(_) => {
                serving += 1;
                info!(model = %record.name, manifest = %id, "serving a replica")
            }
            Err(e) => debug!(model = %record.name, "cannot take a replica yet: {e}"),
        }
    }
    mesh.serving.replicas.store(serving, Ordering::Relaxed);
}
