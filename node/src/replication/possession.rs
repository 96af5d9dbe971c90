//! Checking that a home really holds a blob before this node drops its copy.
//!
//! `Has(true)` is only a claim: a peer that lies could make every non-home
//! holder drop its copy and lose the blob. So a holder asks each home for a
//! few chunks at random indices and checks them against the blob's layout
//! (which hashes to the id): a home that answers them all holds those chunks
//! now. Random indices, drawn at the moment of the check, mean a peer cannot
//! prepare the answers without keeping the blob. (A peer could still fetch
//! the chunks from another holder when asked; it then serves the blob, which
//! is what a home is for.) What a proof allows is decided by
//! [`super::plan`]: a copy goes only when every home showed the blob.

use libp2p::PeerId;
use mass_protocol::{
    rpc::{Request, Response},
    storage::BlobMeta,
};
use rand::seq::index;

use crate::net::NetClient;

/// Chunks asked of each home (all of them when the blob has fewer).
pub const SAMPLES: usize = 3;

/// Distinct chunk indices to ask for, at random.
pub fn sample_indices(chunks: usize, rng: &mut impl rand::Rng) -> Vec<usize> {
    index::sample(rng, chunks, SAMPLES.min(chunks)).into_vec()
}

/// Whether `answer` is chunk `index` of the blob.
pub fn check_answer(meta: &BlobMeta, index: usize, answer: &Response) -> Result<(), String> {
    match answer {
        Response::Chunk(Some(bytes)) if meta.verify_chunk(index, bytes) => Ok(()),
        Response::Chunk(Some(_)) => Err(format!("served wrong bytes for chunk {index}")),
        Response::Chunk(None) => Err(format!("does not hold chunk {index}")),
        Response::Error(e) => Err(format!("could not serve chunk {index}: {e}")),
        _ => Err(format!("answered something else than chunk {index}")),
    }
}

/// Asks `home` for sampled chunks of the blob; `Ok` when every one checks
/// out. A home that says it is busy is asked again after a pause (see
/// [`super::fetch::patiently`]); any other failure is a failed proof.
pub async fn verify(net: &NetClient, meta: &BlobMeta, home: PeerId) -> Result<(), String> {
    let indices = sample_indices(meta.chunks.len(), &mut rand::rng());
    if indices.is_empty() {
        return Err("the blob's layout has no chunks to ask for".into());
    }
    for index in indices {
        let request = Request::GetChunk { id: meta.id, index: index as u32 };
        let answer = super::fetch::patiently(net, home, request).await.map_err(|e| e.to_string())?;
        check_answer(meta, index, &answer)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use mass_protocol::{
        ContentId,
        chunking::{CHUNK_SIZE, chunk_cv},
        rpc::{RpcError, RpcErrorKind},
    };
    use rand::SeedableRng;

    use super::*;

    fn blob(len: usize) -> (Vec<u8>, BlobMeta) {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let chunks = if len <= CHUNK_SIZE {
            vec![*ContentId::of(&data).as_bytes()]
        } else {
            data.chunks(CHUNK_SIZE).enumerate().map(|(i, c)| chunk_cv(i as u64, c)).collect()
        };
        let meta = BlobMeta { id: ContentId::of(&data), size: len as u64, chunks };
        assert!(meta.is_consistent());
        (data, meta)
    }

    #[test]
    fn samples_are_distinct_and_in_range() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(sample_indices(1, &mut rng), vec![0]);
        for _ in 0..100 {
            let mut picked = sample_indices(10, &mut rng);
            assert_eq!(picked.len(), SAMPLES);
            picked.sort();
            picked.dedup();
            assert_eq!(picked.len(), SAMPLES);
            assert!(picked.iter().all(|i| *i < 10));
        }
    }

    #[test]
    fn only_the_right_chunk_proves_possession() {
        let (data, meta) = blob(2 * CHUNK_SIZE + 10);
        let second = data[CHUNK_SIZE..2 * CHUNK_SIZE].to_vec();
        check_answer(&meta, 1, &Response::Chunk(Some(second.clone()))).unwrap();
        // The right bytes at the wrong index, wrong bytes, a claim, a refusal.
        assert!(check_answer(&meta, 0, &Response::Chunk(Some(second))).unwrap_err().contains("wrong bytes"));
        let mut lie = data[..CHUNK_SIZE].to_vec();
        lie[0] ^= 1;
        assert!(check_answer(&meta, 0, &Response::Chunk(Some(lie))).is_err());
        assert!(check_answer(&meta, 0, &Response::Has(true)).unwrap_err().contains("something else"));
        assert!(check_answer(&meta, 2, &Response::Chunk(None)).unwrap_err().contains("does not hold"));
        let busy = Response::Error(RpcError { kind: RpcErrorKind::Overloaded, message: "busy".into() });
        assert!(check_answer(&meta, 2, &busy).is_err());
    }

    #[test]
    fn a_small_blob_is_checked_whole() {
        let (data, meta) = blob(1000);
        check_answer(&meta, 0, &Response::Chunk(Some(data))).unwrap();
        assert!(check_answer(&meta, 0, &Response::Chunk(Some(vec![0; 1000]))).is_err());
    }
}
