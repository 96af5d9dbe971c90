//! How a blob is cut into chunks so that every chunk can be verified on its own
//! while the blob's id stays `blake3(bytes)`.
//!
//! BLAKE3 hashes a tree. Cutting a blob at 1 MiB boundaries cuts that tree at
//! subtree boundaries, so each chunk has a *chaining value* (CV) that depends
//! only on its bytes and position, and the root of the CVs is the blob's id.
//! A fetcher therefore checks the list of CVs against the id before any data
//! arrives, and each chunk against its CV as it arrives: a peer serving wrong
//! bytes is caught at the first bad chunk.
//!
//! A blob of at most one chunk is stored as one chunk whose key is the id.

use blake3::hazmat::{ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root};

use crate::ContentId;

/// Size of every chunk but the last.
pub const CHUNK_SIZE: usize = 1 << 20;

/// Number of chunks of a blob of `size` bytes (an empty blob has one, empty).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE as u64).max(1)
}

/// The chaining value of chunk `index` of a blob with more than one chunk.
pub fn chunk_cv(index: u64, bytes: &[u8]) -> ChainingValue {
    blake3::Hasher::new().set_input_offset(index * CHUNK_SIZE as u64).update(bytes).finalize_non_root()
}

/// The blob id a list of chunk CVs (two or more) hashes to.
///
/// BLAKE3's tree is left-balanced: the left subtree holds the largest power of
/// two of chunks strictly less than the total.
pub fn root_of(cvs: &[ChainingValue]) -> Option<ContentId> {
    if cvs.len() < 2 {
        return None;
    }
    let split = left_len(cvs.len());
    let left = subtree(&cvs[..split]);
    let right = subtree(&cvs[split..]);
    Some(ContentId::from(merge_subtrees_root(&left, &right, Mode::Hash)))
}

fn subtree(cvs: &[ChainingValue]) -> ChainingValue {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let split = left_len(cvs.len());
    merge_subtrees_non_root(&subtree(&cvs[..split]), &subtree(&cvs[split..]), Mode::Hash)
}

fn left_len(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn root_of_chunk_cvs_is_the_blake3_hash_of_the_blob() {
        for chunks in [2usize, 3, 4, 5, 7, 8, 9] {
            for tail in [1usize, CHUNK_SIZE / 3, CHUNK_SIZE] {
                let data = bytes((chunks - 1) * CHUNK_SIZE + tail);
                let cvs: Vec<_> = data.chunks(CHUNK_SIZE).enumerate().map(|(i, c)| chunk_cv(i as u64, c)).collect();
                assert_eq!(cvs.len(), chunks);
                assert_eq!(root_of(&cvs), Some(ContentId::of(&data)), "{chunks} chunks, tail {tail}");
            }
        }
    }

    #[test]
    fn a_changed_chunk_changes_its_cv() {
        let data = bytes(CHUNK_SIZE);
        let mut bad = data.clone();
        bad[1000] ^= 1;
        assert_ne!(chunk_cv(1, &data), chunk_cv(1, &bad));
        assert_ne!(chunk_cv(1, &data), chunk_cv(2, &data), "position is part of the CV");
    }

    #[test]
    fn chunk_counts() {
        assert_eq!(chunk_count(0), 1);
        assert_eq!(chunk_count(CHUNK_SIZE as u64), 1);
        assert_eq!(chunk_count(CHUNK_SIZE as u64 + 1), 2);
    }
}
