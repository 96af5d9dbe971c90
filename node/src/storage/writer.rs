//! Streaming a blob into storage: bytes arrive in pieces of any size; at most
//! one chunk (1 MiB) plus the piece being appended is held in memory.

use mass_protocol::{
    ContentId,
    chunking::CHUNK_SIZE,
    storage::{BlobKind, BlobMeta},
};

use super::{Storage, StoreError};

pub struct BlobWriter {
    storage: Storage,
    buffer: Vec<u8>,
    cvs: Vec<[u8; 32]>,
    size: u64,
    kind: BlobKind,
}

impl BlobWriter {
    /// A writer of a blob of `kind` (what the store counts it as).
    pub fn new(storage: Storage, kind: BlobKind) -> Self {
        Self { storage, buffer: Vec::with_capacity(CHUNK_SIZE), cvs: Vec::new(), size: 0, kind }
    }

    /// Bytes accepted so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends bytes, storing every chunk that is complete and known not to
    /// be the blob's only chunk.
    pub async fn write(&mut self, mut bytes: &[u8]) -> Result<(), StoreError> {
        self.size += bytes.len() as u64;
        while !bytes.is_empty() {
            let room = CHUNK_SIZE - self.buffer.len();
            let take = room.min(bytes.len());
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            // A full buffer with more bytes behind it cannot be the last chunk.
            if self.buffer.len() == CHUNK_SIZE && !bytes.is_empty() {
                self.flush_chunk().await?;
            }
        }
        Ok(())
    }

    async fn flush_chunk(&mut self) -> Result<(), StoreError> {
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_SIZE));
        let cv = self.storage.put_chunk(self.cvs.len() as u64, chunk).await?;
        self.cvs.push(cv);
        Ok(())
    }

    /// Stores what is left and commits the blob (synced). `expected`, when
    /// given, must be the resulting id.
    pub async fn finish(mut self, expected: Option<ContentId>) -> Result<BlobMeta, StoreError> {
        if self.cvs.is_empty() {
            let meta = self.storage.put_small(std::mem::take(&mut self.buffer), self.kind).await?;
            return match expected {
                Some(expected) if expected != meta.id => Err(StoreError::Mismatch { expected, actual: meta.id }),
                _ => Ok(meta),
            };
        }
        if !self.buffer.is_empty() {
            self.flush_chunk().await?;
        }
        self.storage.commit(self.size, self.cvs, expected, self.kind).await
    }
}
