//! Running ingests against storage, and reading datasets back.

use std::{io::Read, path::PathBuf};

use mass_protocol::{
    ContentId, codec,
    dataset::{DatasetManifest, Shard},
    storage::{BlobKind, BlobMeta},
};
use tokio::sync::mpsc;

use super::{DataError, Format, IngestOptions, ingest};
use crate::storage::{BlobWriter, Storage, StoreError};

/// Pieces of an uploaded file, in order; an `Err` aborts the ingest.
pub type Pieces = mpsc::Receiver<Result<bytes::Bytes, String>>;

/// A blocking `Read` over pieces arriving on a channel.
struct ChannelReader {
    pieces: Pieces,
    current: bytes::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.pieces.blocking_recv() {
                Some(Ok(piece)) => self.current = piece,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Stores bytes as a blob of `kind`.
pub async fn write_blob(storage: &Storage, bytes: &[u8], kind: BlobKind) -> Result<BlobMeta, StoreError> {
    let mut writer = BlobWriter::new(storage.clone(), kind);
    writer.write(bytes).await?;
    writer.finish(None).await
}

/// Reads a whole (small) blob held locally.
pub async fn read_blob(storage: &Storage, meta: &BlobMeta) -> Result<Vec<u8>, StoreError> {
    storage.whole(meta.clone()).await
}

/// Ingests the pieces, read as `format`, on a blocking thread, storing each
/// shard as it fills; a Parquet file is spooled in `spool` first. Returns
/// the manifest, stored as a blob, and the manifest's layout.
pub async fn ingest_pieces(
    storage: Storage,
    options: IngestOptions,
    format: Format,
    pieces: Pieces,
    spool: PathBuf,
) -> Result<(BlobMeta, DatasetManifest), DataError> {
    let runtime = tokio::runtime::Handle::current();
    let shard_storage = storage.clone();
    let manifest = tokio::task::spawn_blocking(move || {
        let mut reader = std::io::BufReader::new(ChannelReader { pieces, current: bytes::Bytes::new() });
        let store = |shard: &Shard| {
            let bytes = codec::encode(shard).map_err(|e| DataError::Store(e.to_string()))?;
            runtime
                .block_on(write_blob(&shard_storage, &bytes, BlobKind::Dataset))
                .map(|meta| meta.id)
                .map_err(|e| DataError::Store(e.to_string()))
        };
        match format {
            Format::Csv => ingest(reader, &options, store),
            Format::Jsonl => super::jsonl::ingest_jsonl(reader, &options, store),
            Format::Npy => super::npy::ingest_npy(reader, &options, store),
            Format::Parquet => super::parquet::ingest_parquet(reader, &spool, &options, store),
            // NumPy arrays and Parquet announce themselves; anything else is read as CSV.
            Format::Auto => {
                let head = std::io::BufRead::fill_buf(&mut reader).map_err(|e| DataError::Read(e.to_string()))?;
                if head.starts_with(super::npy::MAGIC) {
                    super::npy::ingest_npy(reader, &options, store)
                } else if head.starts_with(super::parquet::MAGIC) {
                    super::parquet::ingest_parquet(reader, &spool, &options, store)
                } else {
                    ingest(reader, &options, store)
                }
            }
        }
    })
    .await
    .map_err(|e| DataError::Store(format!("ingest task failed: {e}")))??;
    let bytes = codec::encode(&manifest).map_err(|e| DataError::Store(e.to_string()))?;
    let meta = write_blob(&storage, &bytes, BlobKind::Dataset).await.map_err(|e| DataError::Store(e.to_string()))?;
    Ok((meta, manifest))
}

/// Decodes a manifest blob held locally.
pub async fn read_manifest(storage: &Storage, meta: &BlobMeta) -> Result<DatasetManifest, DataError> {
    let bytes = read_blob(storage, meta).await.map_err(|e| DataError::Store(e.to_string()))?;
    let manifest: DatasetManifest =
        codec::decode(&bytes, codec::MAX_RECORD).map_err(|e| DataError::Store(format!("manifest {}: {e}", meta.id)))?;
    manifest.validate().map_err(|e| DataError::Store(format!("manifest {}: {e}", meta.id)))?;
    Ok(manifest)
}

/// Decodes a shard blob held locally.
pub async fn read_shard(storage: &Storage, meta: &BlobMeta) -> Result<Shard, DataError> {
    let bytes = read_blob(storage, meta).await.map_err(|e| DataError::Store(e.to_string()))?;
    let shard: Shard =
        codec::decode(&bytes, codec::MAX_RECORD).map_err(|e| DataError::Store(format!("shard {}: {e}", meta.id)))?;
    shard.validate().map_err(|e| DataError::Store(format!("shard {}: {e}", meta.id)))?;
    Ok(shard)
}

/// The ids a dataset's manifest keeps alive.
pub fn shard_ids(manifest: &DatasetManifest) -> Vec<ContentId> {
    manifest.shards.iter().map(|s| s.id).collect()
}

/// Statistics of a locally held shard, computed on a blocking thread.
pub async fn summarize_shard(
    storage: &Storage,
    meta: &BlobMeta,
    schema: mass_protocol::dataset::Schema,
    spec: mass_protocol::features::PipelineSpec,
) -> Result<mass_protocol::features::DataSummary, DataError> {
    let shard = read_shard(storage, meta).await?;
    if shard.columns.len() != schema.columns.len() {
        return Err(DataError::Options(format!(
            "shard {} has {} columns but the schema has {}",
            meta.id,
            shard.columns.len(),
            schema.columns.len()
        )));
    }
    tokio::task::spawn_blocking(move || mass_kernels::features::summarize(&shard, &schema, &spec))
        .await
        .map_err(|e| DataError::Store(format!("summary task failed: {e}")))
}
