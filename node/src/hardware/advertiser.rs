//! Publishes this node's advert at start and then periodically.

use std::time::Duration;

use actix::{Actor, Addr, AsyncContext, Context, WrapFuture};
use mass_protocol::{Advert, HardwareProfile, QueueDepth, names};
use tracing::debug;

use crate::{
    membership::{MembershipActor, actor::SetLocalAdvert},
    net::NetClient,
    serving::{INFERENCE_QUEUE, Inference},
};

pub struct Advertiser {
    hardware: HardwareProfile,
    http_addr: Option<String>,
    interval: Duration,
    net: NetClient,
    membership: Addr<MembershipActor>,
    inference: Inference,
    system: sysinfo::System,
    seq: u64,
    bridges: crate::bridge::Bridges,
}

impl Advertiser {
    pub fn new(
        hardware: HardwareProfile,
        http_addr: Option<String>,
        interval: Duration,
        net: NetClient,
        membership: Addr<MembershipActor>,
        inference: Inference,
    ) -> Self {
        Self {
            hardware,
            http_addr,
            interval,
            net,
            membership,
            inference,
            system: sysinfo::System::new(),
            seq: 0,
            bridges: Default::default(),
        }
    }

    /// Advertises `bridges` as the node's probes find them.
    pub fn with_bridges(mut self, bridges: crate::bridge::Bridges) -> Self {
        self.bridges = bridges;
        self
    }

    fn advertise(&mut self, ctx: &mut Context<Self>) {
        let queues = vec![
            QueueDepth { name: "net".into(), depth: self.net.queued() as u32 },
            QueueDepth { name: INFERENCE_QUEUE.into(), depth: self.inference.depth() as u32 },
        ];
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
    }
}
