//! Accelerators behind a bridge: an external process (the host program of
//! an FPGA board, or the reference bridge that emulates one) that runs
//! dense networks in fixed point and speaks the protocol of
//! `docs/bridge.md`, the Open Inference Protocol (v2) over HTTP/JSON plus
//! the `mass_hardware/1` extension.
//!
//! A node whose config declares bridges probes each at start (protocol,
//! capabilities, health, rows/s on a standard batch) and advertises what it
//! found. Every model version the node loads whose members are all
//! networks is offered to them: loaded there, checked for drift against
//! the float model on sample rows, timed against the CPU, and placed when
//! the bridge should run it. Batches of a placed version go to the bridge;
//! one it cannot answer within its timeout runs on the CPU, and a bridge
//! that fails is taken out of use until a re-probe passes.
//!
//! # Layout
//! - [`wire`]: the protocol's JSON bodies, shared by both sides.
//! - [`fixed`], [`device`]: fixed-point arithmetic and the emulated device.
//! - [`server`]: the reference bridge (binary `mass-bridge`).
//! - [`client`]: the node's typed calls.
//! - [`plan`], [`drift`], [`breaker`]: the pure decisions (what fits, drift
//!   and its verdict, route by speed, when a bridge is in use).
//! - [`link`]: one bridge as the node sees it; [`placement`]: the slot a
//!   loaded model carries; [`bridges`]: all of them, watched and offered
//!   models.
//!
//! An abrupt stop of the node leaves its models loaded on the bridge; they
//! are named by content, so the next start loads over them. A bridge is
//! meant to serve one node: another node unloading a version would take it
//! from both.

pub mod breaker;
pub mod bridges;
pub mod client;
pub mod device;
pub mod drift;
pub mod fixed;
pub mod link;
pub mod placement;
pub mod plan;
pub mod server;
pub mod wire;

#[cfg(test)]
mod tests;

use std::{collections::HashSet, time::Duration};

pub use bridges::Bridges;
pub use placement::Slot;
use serde::Deserialize;

/// Which models go to a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Those it runs faster than the CPU (measured per model at placement).
    WhenFaster,
    /// Every model it can take within the drift limit.
    Always,
    /// None: probed and advertised only.
    Never,
}

/// One declared bridge and how the node uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub name: String,
    pub kind: String,
    /// `tcp://host:port`, `http://host:port` or `host:port`.
    pub endpoint: String,
    pub route: Route,
    /// Longest a batch waits for the bridge before it runs on the CPU.
    pub timeout: Duration,
    /// Largest difference from the float model's outputs on sample rows
    /// (probabilities, or standardized values) a model may show there.
    pub max_drift: f64,
}

impl Settings {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
    pub const DEFAULT_MAX_DRIFT: f64 = 0.02;

    fn validate(&self, i: usize) -> Result<(), String> {
        let field = |name: &str| format!("hardware.bridges[{i}].{name}");
        client::base_url(&self.endpoint).map_err(|e| format!("{}: {e}", field("endpoint")))?;
        if self.timeout < Duration::from_millis(10) || self.timeout > Duration::from_secs(10) {
            return Err(format!("{} must be between 10ms and 10s, not {:?}", field("timeout"), self.timeout));
        }
        if !(self.max_drift.is_finite() && self.max_drift > 0.0) {
            return Err(format!("{} must be a positive number, not {}", field("max_drift"), self.max_drift));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub bridges: Vec<Settings>,
}

impl Config {
    /// Checks each bridge, and that names are unique (they label logs and adverts).
    pub fn validate(&self) -> Result<(), String> {
        let mut names = HashSet::new();
        for (i, bridge) in self.bridges.iter().enumerate() {
            bridge.validate(i)?;
            if !names.insert(bridge.name.as_str()) {
                return Err(format!("hardware.bridges[{i}].name: '{}' is declared twice", bridge.name));
            }
        }
        Ok(())
    }

    /// A batch that gives up on a bridge must leave time for the CPU and
    /// the way back within the request's deadline.
    pub fn fits_deadline(&self, deadline: Duration) -> Result<(), String> {
        for (i, bridge) in self.bridges.iter().enumerate() {
            if bridge.timeout * 2 >= deadline {
                return Err(format!(
                    "hardware.bridges[{i}].timeout ({}) must be under half of serving.deadline ({}): a batch \
                     that falls back to the CPU after it must still meet the deadline",
                    humantime::format_duration(bridge.timeout),
                    humantime::format_duration(deadline)
                ));
            }
        }
        Ok(())
    }
}
