//! What a holder of a blob should do next: the replication rule, pure.
//!
//! A blob's homes are the top-k peers of a view for its id (rendezvous
//! hashing, [`crate::placement::top_k`]). A holder asks each home that has
//! not yet claimed a copy to hold one; a holder that is no home drops its
//! copy only once every home has *shown* it holds the blob. [`plan`] turns a
//! view and the evidence gathered so far ([`Confirmations`]) into
//! [`Action`]s; the replication actor runs them over the network and the
//! whole-mesh simulation (`simulations/`) runs them over a simulated one.
//!
//! No I/O, no clock, no randomness: the same inputs give the same actions.
//! Generic over the peer id ([`Peer`]): the node ranks libp2p ids, the
//! simulation ranks integers.

use std::collections::{BTreeMap, BTreeSet};

use libp2p::PeerId;
use mass_protocol::ContentId;

use crate::placement::{self, Candidate};

/// A peer id that placement can rank: the bytes its rendezvous score hashes.
pub trait Peer: Ord + Clone {
    type Key: AsRef<[u8]>;
    fn placement_key(&self) -> Self::Key;
}

impl Peer for PeerId {
    type Key = Vec<u8>;
    fn placement_key(&self) -> Vec<u8> {
        self.to_bytes()
    }
}

/// Simulated nodes are numbered; their key is the number's bytes.
impl Peer for u32 {
    type Key = [u8; 4];
    fn placement_key(&self) -> [u8; 4] {
        self.to_le_bytes()
    }
}

/// The homes of `id`: the top `k` of the distinct peers in `view`, best
/// first. Any part of a view that contains the view's top `k` gives the same
/// homes (rendezvous scores do not depend on who else is ranked).
pub fn homes<P: Peer>(id: &ContentId, view: &[P], k: usize) -> Vec<P> {
    let mut peers: Vec<&P> = view.iter().collect();
    // A peer listed twice must not fill two of the k places.
    peers.sort();
    peers.dedup();
    let keys: Vec<P::Key> = peers.iter().map(|p| p.placement_key()).collect();
    let ranked = placement::top_k(id.as_bytes(), keys.iter().map(|key| Candidate { id: key.as_ref(), weight: 1.0 }), k);
    ranked
        .into_iter()
        .filter_map(|bytes| keys.iter().position(|key| key.as_ref() == bytes).map(|i| peers[i].clone()))
        .collect()
}

/// How many walks a claim counts for before its peer is asked again. A home
/// never checks the other homes' copies, so without this a claim outlives
/// the copy: the whole-mesh simulation found a peer that answered `Has`
/// while its lagging view ranked it no home, then dropped its copy, and the
/// home that heard the claim kept the blob one copy short for good. Asking
/// again costs one `Replicate` per other home per blob every few walks.
pub const CLAIM_WALKS: u32 = 6;

/// What a holder has learnt about one blob's copies elsewhere, per distinct
/// peer: a peer that answered twice still counts once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmations<P> {
    /// Peers that said they hold the blob (`Has(true)`): a claim, with the
    /// walk it was made in.
    claimed: BTreeMap<P, u32>,
    /// Peers that showed sampled chunks of it: a proof, which implies a claim.
    verified: BTreeSet<P>,
    /// Walks begun since this evidence started being gathered.
    walks: u32,
}

impl<P> Default for Confirmations<P> {
    fn default() -> Self {
        Self { claimed: BTreeMap::new(), verified: BTreeSet::new(), walks: 0 }
    }
}

impl<P: Ord + Clone> Confirmations<P> {
    /// `peer` said it holds the blob.
    pub fn claim(&mut self, peer: P) {
        self.claimed.insert(peer, self.walks);
    }

    /// `peer` showed chunks of the blob that check against its layout.
    pub fn verify(&mut self, peer: P) {
        self.claimed.insert(peer.clone(), self.walks);
        self.verified.insert(peer);
    }

    /// `peer` failed to show the blob: its claim is void and it is asked again.
    pub fn refute(&mut self, peer: &P) {
        self.claimed.remove(peer);
        self.verified.remove(peer);
    }

    /// Proofs are evidence for the walk that gathered them only: a peer can
    /// drop its copy after showing it.
    pub fn clear_verified(&mut self) {
        self.verified.clear();
    }

    /// A new walk: claims older than [`CLAIM_WALKS`] walks are forgotten, so
    /// their peers are asked again, unless a proof still stands for them (a
    /// draining node keeps the proofs of a blob it handed off).
    pub fn begin_walk(&mut self) {
        self.walks += 1;
        let (walks, verified) = (self.walks, &self.verified);
        self.claimed.retain(|peer, made| verified.contains(peer) || walks - *made <= CLAIM_WALKS);
    }

    /// Keeps only the evidence of peers `keep` accepts (those still in view).
    pub fn retain(&mut self, mut keep: impl FnMut(&P) -> bool) {
        self.claimed.retain(|peer, _| keep(peer));
        self.verified.retain(keep);
    }

    pub fn is_claimed(&self, peer: &P) -> bool {
        self.claimed.contains_key(peer)
    }

    pub fn is_verified(&self, peer: &P) -> bool {
        self.verified.contains(peer)
    }

    /// Distinct peers that proved they hold the blob.
    pub fn verified_count(&self) -> usize {
        self.verified.len()
    }
}

/// Why a holder keeps its copy for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// This node is one of the blob's homes.
    Home,
    /// The view has no home at all (it is empty, or k is 0): this copy may be
    /// the only one.
    NoHome,
    /// Some home has not claimed a copy yet (it has been asked).
    Unclaimed,
    /// Every home claimed a copy, but some has not shown it yet (it has been
    /// asked to).
    Unverified,
}

/// One thing to do about one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<P> {
    /// Ask this home to hold a copy (`Replicate`); it fetches one if it lacks it.
    AskHome(P),
    /// Ask this home to show sampled chunks of the blob (possession check).
    Verify(P),
    /// This node is no home and every home (listed) showed the blob: drop
    /// the local copy.
    Drop { verified_homes: Vec<P> },
    /// Keep the local copy, for this reason.
    Keep(Keep),
}

/// What `me` should do about `blob`: over `view` (the peers it believes
/// live; `me` is counted whether listed or not), with `k` copies wanted,
/// whether it holds a copy, and the evidence from earlier answers.
///
/// Returns nothing when `me` holds no copy (a home that lacks one gets it
/// when a holder asks). Otherwise: `AskHome` for every other home with no
/// claim; then, if `me` is a home or some home is unclaimed, `Keep`; else
/// `Verify` for every home not yet verified and `Keep(Unverified)`; and
/// once every home is verified, `Drop` alone.
pub fn plan<P: Peer>(
    blob: &ContentId,
    me: &P,
    view: &[P],
    k: usize,
    held_by_me: bool,
    confirmations: &Confirmations<P>,
) -> Vec<Action<P>> {
    if !held_by_me {
        return Vec::new();
    }
    let mut candidates = view.to_vec();
    candidates.push(me.clone());
    decide(me, &homes(blob, &candidates, k), confirmations)
}

/// [`plan`] for a holder whose blob's homes are already ranked (`homes`, as
/// [`homes`] returns them), so a caller that plans several times in one
/// walk ranks once.
pub fn decide<P: Ord + Clone>(me: &P, homes: &[P], confirmations: &Confirmations<P>) -> Vec<Action<P>> {
    let mut actions: Vec<Action<P>> = homes
        .iter()
        .filter(|home| *home != me && !confirmations.is_claimed(home))
        .map(|home| Action::AskHome(home.clone()))
        .collect();
    if homes.contains(me) {
        actions.push(Action::Keep(Keep::Home));
        return actions;
    }
    if homes.is_empty() {
        return vec![Action::Keep(Keep::NoHome)];
    }
    if !actions.is_empty() {
        actions.push(Action::Keep(Keep::Unclaimed));
        return actions;
    }
    let unverified: Vec<Action<P>> =
        homes.iter().filter(|home| !confirmations.is_verified(home)).map(|home| Action::Verify(home.clone())).collect();
    if unverified.is_empty() {
        return vec![Action::Drop { verified_homes: homes.to_vec() }];
    }
    let mut actions = unverified;
    actions.push(Action::Keep(Keep::Unverified));
    actions
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn blob(n: u32) -> ContentId {
        ContentId::of(&n.to_le_bytes())
    }

    /// The ten peers 0..10, and blob 7's homes among them for k = 2.
    fn setup() -> (Vec<u32>, Vec<u32>) {
        let view: Vec<u32> = (0..10).collect();
        let homes = homes(&blob(7), &view, 2);
        (view, homes)
    }

    fn outsider(view: &[u32], homes: &[u32]) -> u32 {
        *view.iter().find(|p| !homes.contains(p)).unwrap()
    }

    #[test]
    fn a_holder_asks_every_home_without_a_claim() {
        let (view, homes) = setup();
        let me = outsider(&view, &homes);
        let actions = plan(&blob(7), &me, &view, 2, true, &Confirmations::default());
        assert_eq!(actions, vec![Action::AskHome(homes[0]), Action::AskHome(homes[1]), Action::Keep(Keep::Unclaimed)]);
    }

    #[test]
    fn a_home_asks_the_other_homes_and_keeps_its_copy() {
        let (view, homes) = setup();
        let actions = plan(&blob(7), &homes[0], &view, 2, true, &Confirmations::default());
        assert_eq!(actions, vec![Action::AskHome(homes[1]), Action::Keep(Keep::Home)]);
        let mut all = Confirmations::default();
        all.verify(homes[1]);
        assert_eq!(plan(&blob(7), &homes[0], &view, 2, true, &all), vec![Action::Keep(Keep::Home)]);
    }

    #[test]
    fn a_home_asks_again_once_a_claim_is_too_old() {
        let (view, homes) = setup();
        let mut evidence = Confirmations::default();
        evidence.claim(homes[1]);
        for _ in 0..CLAIM_WALKS {
            evidence.begin_walk();
            assert_eq!(plan(&blob(7), &homes[0], &view, 2, true, &evidence), vec![Action::Keep(Keep::Home)]);
        }
        evidence.begin_walk();
        let actions = plan(&blob(7), &homes[0], &view, 2, true, &evidence);
        assert_eq!(actions, vec![Action::AskHome(homes[1]), Action::Keep(Keep::Home)]);
        // A fresh answer counts for another CLAIM_WALKS walks.
        evidence.claim(homes[1]);
        evidence.begin_walk();
        assert_eq!(plan(&blob(7), &homes[0], &view, 2, true, &evidence), vec![Action::Keep(Keep::Home)]);
    }

    #[test]
    fn no_copy_here_nothing_to_do() {
        let (view, homes) = setup();
        assert!(plan(&blob(7), &homes[0], &view, 2, false, &Confirmations::default()).is_empty());
    }

    #[test]
    fn claims_lead_to_checks_and_checks_to_the_drop() {
        let (view, homes) = setup();
        let me = outsider(&view, &homes);
        let mut evidence = Confirmations::default();
        evidence.claim(homes[0]);
        // One home unclaimed: asked again, nothing checked yet.
        assert_eq!(
            plan(&blob(7), &me, &view, 2, true, &evidence),
            vec![Action::AskHome(homes[1]), Action::Keep(Keep::Unclaimed)]
        );
        evidence.claim(homes[1]);
        assert_eq!(
            plan(&blob(7), &me, &view, 2, true, &evidence),
            vec![Action::Verify(homes[0]), Action::Verify(homes[1]), Action::Keep(Keep::Unverified)]
        );
        evidence.verify(homes[1]);
        assert_eq!(
            plan(&blob(7), &me, &view, 2, true, &evidence),
            vec![Action::Verify(homes[0]), Action::Keep(Keep::Unverified)]
        );
        evidence.verify(homes[0]);
        assert_eq!(
            plan(&blob(7), &me, &view, 2, true, &evidence),
            vec![Action::Drop { verified_homes: homes.clone() }]
        );
    }

    #[test]
    fn a_refuted_home_is_asked_again() {
        let (view, homes) = setup();
        let me = outsider(&view, &homes);
        let mut evidence = Confirmations::default();
        evidence.verify(homes[0]);
        evidence.verify(homes[1]);
        evidence.refute(&homes[1]);
        assert_eq!(
            plan(&blob(7), &me, &view, 2, true, &evidence),
            vec![Action::AskHome(homes[1]), Action::Keep(Keep::Unclaimed)]
        );
    }

    #[test]
    fn a_peer_that_answers_twice_counts_once() {
        let (view, homes) = setup();
        let me = outsider(&view, &homes);
        let mut evidence = Confirmations::default();
        evidence.verify(homes[0]);
        evidence.verify(homes[0]);
        evidence.claim(homes[0]);
        assert_eq!(evidence.verified_count(), 1);
        assert!(!plan(&blob(7), &me, &view, 2, true, &evidence).iter().any(|a| matches!(a, Action::Drop { .. })));
    }

    #[test]
    fn a_peer_listed_twice_fills_one_place() {
        let view = vec![3u32, 3, 3, 5];
        assert_eq!(homes(&blob(1), &view, 2).len(), 2);
        assert_eq!(homes(&blob(1), &[3u32, 3, 3], 2), vec![3]);
    }

    #[test]
    fn with_no_home_the_copy_stays() {
        assert_eq!(
            plan(&blob(1), &4u32, &[1, 2], 0, true, &Confirmations::default()),
            vec![Action::Keep(Keep::NoHome)]
        );
    }

    #[test]
    fn the_node_ranks_libp2p_ids_the_same_way() {
        let peers: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
        let homes = homes(&blob(3), &peers, 2);
        let keys: Vec<Vec<u8>> = peers.iter().map(|p| p.to_bytes()).collect();
        let expected = placement::top_k(blob(3).as_bytes(), keys.iter().map(|id| Candidate { id, weight: 1.0 }), 2);
        let homes_bytes: Vec<Vec<u8>> = homes.iter().map(|p| p.to_bytes()).collect();
        assert_eq!(homes_bytes, expected.iter().map(|b| b.to_vec()).collect::<Vec<_>>());
    }

    proptest! {
        /// A drop needs every home verified, by distinct peers, none of them
        /// this node; and a home never drops.
        #[test]
        fn a_drop_needs_k_distinct_verified_homes(
            view in proptest::collection::vec(0u32..40, 1..20),
            me in 0u32..40,
            k in 1usize..4,
            answers in proptest::collection::vec((0u32..40, any::<bool>()), 0..30),
            id in any::<u32>(),
        ) {
            let mut evidence = Confirmations::default();
            for (peer, shown) in &answers {
                if *shown { evidence.verify(*peer) } else { evidence.claim(*peer) }
            }
            let mut with_me = view.clone();
            with_me.push(me);
            let homes = homes(&blob(id), &with_me, k);
            for action in plan(&blob(id), &me, &view, k, true, &evidence) {
                if let Action::Drop { verified_homes } = action {
                    prop_assert!(!homes.contains(&me));
                    let distinct: BTreeSet<u32> = verified_homes.iter().copied().collect();
                    prop_assert_eq!(distinct.len(), k.min(with_me.iter().collect::<BTreeSet<_>>().len()));
                    prop_assert!(!distinct.contains(&me));
                    prop_assert!(distinct.iter().all(|p| evidence.is_verified(p) && homes.contains(p)));
                }
            }
        }

        /// Any part of the view that holds its top k gives the same homes:
        /// what lets the simulation rank a few candidates instead of all nodes.
        #[test]
        fn homes_depend_only_on_the_top_of_the_view(
            view in proptest::collection::btree_set(0u32..500, 1..60),
            extra in proptest::collection::btree_set(0u32..500, 0..60),
            k in 1usize..5,
            id in any::<u32>(),
        ) {
            let view: Vec<u32> = view.into_iter().collect();
            let top = homes(&blob(id), &view, k);
            let mut part = top.clone();
            part.extend(extra.iter().filter(|p| view.contains(p)));
            prop_assert_eq!(homes(&blob(id), &part, k), top);
        }
    }
}
