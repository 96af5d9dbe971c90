//! wgpu: which GPU adapters a node has.

mod probe;

pub use probe::probe_adapters;
