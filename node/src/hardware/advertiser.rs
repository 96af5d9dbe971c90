//! Publishes this node's advert at start and then periodically.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, WrapFuture};
use mass_protocol::{Advert, HardwareProfile, QueueDepth, names};
use tracing::debug;

use super::remeasure::Remeasure;
use crate::{
    compute::Compute,
    membership::{MembershipActor, actor::SetLocalAdvert},
    net::NetClient,
    serving::{INFERENCE_QUEUE, Inference, REPLICAS_QUEUE},
};

pub struct Advertiser {
    hardware: HardwareProfile,
    http_addr: Option<String>,
    interval: Duration,
    net: NetClient,
    membership: Addr<MembershipActor>,
    inference: Inference,
    compute: Compute,
    system: sysinfo::System,
    seq: u64,
    gemm_size: usize,
    /// The share of the machine the compute pool offers.
    share: f64,
    bridges: crate::bridge::Bridges,
    /// Set once the node drains; its adverts then say so.
    leaving: crate::drain::Leaving,
    /// The models this node serves as a replica (`serving.replicas`).
    replicas: Arc<AtomicU32>,
    remeasure: Remeasure,
    /// The compute pieces finished at the previous tick: more since, and the node was busy.
    done_before: u64,
}

/// How often the advertiser asks whether to measure the GEMM again
/// (`remeasure::Remeasure` decides), and for how long a measurement runs.
const REMEASURE_TICK: Duration = Duration::from_secs(1);
const REMEASURE_BUDGET: Duration = Duration::from_millis(20);

impl Advertiser {
    pub fn new(
        hardware: HardwareProfile,
        http_addr: Option<String>,
        interval: Duration,
        net: NetClient,
        membership: Addr<MembershipActor>,
        inference: Inference,
        compute: Compute,
        gemm_size: usize,
    ) -> Self {
        let cores = hardware.cpu.cores as usize;
        let share = compute.config().share(cores);
        Self {
            hardware,
            http_addr,
            interval,
            net,
            membership,
            inference,
            compute,
            system: sysinfo::System::new(),
            seq: 0,
            gemm_size,
            share,
            bridges: Default::default(),
            leaving: Default::default(),
            replicas: Default::default(),
            remeasure: Remeasure::default(),
            done_before: 0,
        }
    }

    /// Advertises how many models the node serves as a replica.
    pub fn with_replicas(mut self, replicas: Arc<AtomicU32>) -> Self {
        self.replicas = replicas;
        self
    }

    /// Advertises whether the node is leaving.
    pub fn with_leaving(mut self, leaving: crate::drain::Leaving) -> Self {
        self.leaving = leaving;
        self
    }

    /// Advertises `bridges` as the node's probes find them.
    pub fn with_bridges(mut self, bridges: crate::bridge::Bridges) -> Self {
        self.bridges = bridges;
        self
    }

    /// Measures the GEMM again in the background, when `Remeasure` says
    /// so, and keeps the best rate seen.
    fn remeasure(&mut self, ctx: &mut Context<Self>) {
        let (active, done) = self.compute.activity();
        let busy = active > 0 || done != self.done_before || self.inference.depth() > 0;
        self.done_before = done;
        if !self.remeasure.due(REMEASURE_TICK, busy) {
            return;
        }
        let (size, share, gpu) = (self.gemm_size, self.share, self.compute.config().gpu);
        ctx.spawn(
            async move {
                tokio::task::spawn_blocking(move || {
                    mass_kernels::cpu::measure_gemm_gflops(size, REMEASURE_BUDGET) as f32
                })
                .await
                .ok()
            }
            .into_actor(self)
            .map(move |measured, actor, _| {
                let Some(gflops) = measured else { return };
                actor.remeasure.measured(gflops, actor.hardware.gemm_gflops);
                debug!(gflops, best = actor.hardware.gemm_gflops, next_in = ?actor.remeasure.gap(), "GEMM measured again");
                if gflops > actor.hardware.gemm_gflops {
                    actor.hardware.gemm_gflops = gflops;
                    actor.hardware.capacity_gflops = super::gpu::capacity(gflops, share, &actor.hardware.gpus, gpu);
                }
            }),
        );
    }

    fn advertise(&mut self, ctx: &mut Context<Self>) {
        let mut queues = vec![
            QueueDepth { name: "net".into(), depth: self.net.queued() as u32 },
            QueueDepth { name: INFERENCE_QUEUE.into(), depth: self.inference.depth() as u32 },
            QueueDepth { name: REPLICAS_QUEUE.into(), depth: self.replicas.load(Ordering::Relaxed) },
        ];
        // What the compute pool is doing: pieces running by kind, waiting, free slots.
        queues.extend(self.compute.depths());
        let load = super::sample_load(&mut self.system, self.hardware.cpu.cores, queues);
        let net = self.net.clone();
        let membership = self.membership.clone();
        let seq = self.seq;
        self.seq += 1;
        let mut hardware = self.hardware.clone();
        if !self.bridges.is_empty() {
            hardware.bridges = self.bridges.infos();
        }
        let http_addr = self.http_addr.clone();
        let draining = self.leaving.is_set();
        ctx.spawn(
            async move {
                let listen_addrs = match net.listen_addrs().await {
                    Ok(addrs) => addrs.iter().map(ToString::to_string).collect(),
                    Err(e) => return debug!("advert skipped: {e}"),
                };
                let advert = Advert {
                    protocol_version: names::PROTOCOL_VERSION,
                    seq,
                    agent: format!("mass/{}", env!("CARGO_PKG_VERSION")),
                    listen_addrs,
                    http_addr,
                    hardware,
                    load,
                    draining,
                };
                membership.do_send(SetLocalAdvert(Box::new(advert.clone())));
                if let Err(e) = net.advertise(advert).await {
                    debug!("advert not sent: {e}");
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for Advertiser {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.advertise(ctx);
        ctx.run_interval(self.interval, |actor, ctx| actor.advertise(ctx));
        ctx.run_interval(REMEASURE_TICK, |actor, ctx| actor.remeasure(ctx));
    }
}
