//! Content-addressed storage: blobs and refs in RocksDB, in the node's data dir.
//!
//! # Layout
//! - [`store`]: the logic over RocksDB (synchronous, thread-safe).
//! - [`actor`]: the storage actor, a `SyncArbiter` pool that runs store
//!   operations off every event loop, and its async [`Storage`] handle.
//! - [`writer`]: streaming a blob in, chunk by chunk, with bounded memory.
//! - [`verified`]: chunks hashed recently, which a read within a short
//!   window need not hash again.

pub mod actor;
pub mod store;
pub mod verified;
pub mod writer;

use std::time::Duration;

pub use actor::{Signer, Storage, ref_written};
pub use store::{Store, StoreError};
pub use writer::BlobWriter;

#[derive(Debug, Clone)]
pub struct Config {
    /// Copies of each blob the mesh keeps (its homes).
    pub replication: usize,
    /// How often a node checks that the blobs it holds have all their homes.
    pub repair_interval: Duration,
    /// Unreferenced, unpinned blobs and abandoned uploads younger than this survive GC.
    pub gc_grace: Duration,
    /// Threads running RocksDB operations.
    pub threads: usize,
    /// Rows per dataset shard, unless an ingest says otherwise.
    pub shard_rows: usize,
    /// Peers whose writes alone may delete refs and unpin blobs (none: every
    /// member's); see `mass_protocol::storage::check_writer`.
    pub ref_admins: Vec<String>,
}

impl Config {
    pub const DEFAULT: Self = Self {
        replication: 2,
        repair_interval: Duration::from_secs(10),
        gc_grace: Duration::from_secs(3600),
        threads: 2,
        shard_rows: 10_000,
        ref_admins: Vec::new(),
    };

    pub fn validate(&self) -> Result<(), String> {
        if self.replication == 0 || self.replication > 16 {
            return Err(format!("storage.replication must be between 1 and 16, not {}", self.replication));
        }
        if self.repair_interval.is_zero() {
            return Err("storage.repair_interval must be greater than zero".into());
        }
        if self.shard_rows == 0 {
            return Err("storage.shard_rows must be at least 1".into());
        }
        if self.threads == 0 || self.threads > 64 {
            return Err(format!("storage.threads must be between 1 and 64, not {}", self.threads));
        }
        Ok(())
    }
}
