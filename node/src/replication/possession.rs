//! Checking that a home really holds a blob before this node drops its copy.
//!
//! `Has(true)` is only a claim: a peer that lies could make every non-home
//! holder drop its copy and lose the blob. So a holder asks each home for a
//! few chunks at random indices and checks them against the blob's layout
//! (which hashes to the id): a home that answers them all holds those chunks
//! now. Random indices, drawn at the moment of the check, mean a peer cannot
//! prepare the answers without keeping the blob. (A peer could still fetch
//! the chunks from another holder when asked; it then serves the blob, which
//! is what a home is for.)

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

/// Why this node keeps a copy it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep<P> {
    /// This node is one of the blob's homes.
    Home,
    /// No other node is a home: this copy may be the only one.
    NoOtherHome,
    /// A home was not asked to show the blob (or its answer is missing).
    Unchecked(P),
    /// A home could not show the blob.
    Unproven(P, String),
}

/// Whether this node (`local`) may drop its copy of a blob whose homes are
/// `homes`, given what each home showed when asked (`proofs`, from
/// [`verify`]): only when this node is no home, some other node is, and
/// every other home proved it holds the blob. Anything else keeps the copy,
/// so a lie, a lost answer or a missing check can never cost a copy.
pub fn may_drop<P: Copy + Eq>(local: P, homes: &[P], proofs: &[(P, Result<(), String>)]) -> Result<(), Keep<P>> {
    if homes.contains(&local) {
        return Err(Keep::Home);
    }
    if homes.is_empty() {
        return Err(Keep::NoOtherHome);
    }
    for home in homes {
        match proofs.iter().find(|(peer, _)| peer == home) {
            None => return Err(Keep::Unchecked(*home)),
            Some((_, Err(reason))) => return Err(Keep::Unproven(*home, reason.clone())),
            Some((_, Ok(()))) => {}
        }
    }
    Ok(())
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
    fn a_copy_is_dropped_only_when_every_other_home_proved_it() {
        let ok = || Ok(());
        let lie = || Err("served wrong bytes for chunk 1".to_string());
        // Homes 2 and 3, this node is 1.
        assert_eq!(may_drop(1, &[2, 3], &[(2, ok()), (3, ok())]), Ok(()));
        assert_eq!(may_drop(1, &[2, 3], &[(3, ok()), (2, ok())]), Ok(()), "order does not matter");
        // One liar among honest homes is enough to keep the copy.
        assert_eq!(may_drop(1, &[2, 3], &[(2, ok()), (3, lie())]), Err(Keep::Unproven(3, lie().unwrap_err())));
        // A home never asked, or answers from peers that are not homes, prove nothing.
        assert_eq!(may_drop(1, &[2, 3], &[(2, ok())]), Err(Keep::Unchecked(3)));
        assert_eq!(may_drop(1, &[2, 3], &[(2, ok()), (4, ok()), (5, ok())]), Err(Keep::Unchecked(3)));
        // A home keeps its copy whatever others show; with no other home, nothing is surplus.
        assert_eq!(may_drop(1, &[1, 2], &[(2, ok())]), Err(Keep::Home));
        assert_eq!(may_drop(1, &[], &[]), Err(Keep::NoOtherHome));
    }

    #[test]
    fn a_small_blob_is_checked_whole() {
        let (data, meta) = blob(1000);
        check_answer(&meta, 0, &Response::Chunk(Some(data))).unwrap();
        assert!(check_answer(&meta, 0, &Response::Chunk(Some(vec![0; 1000]))).is_err());
    }
}
