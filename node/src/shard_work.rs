//! Who computes each piece of per-shard work (a shard's statistics, its
//! judging), decided as nodes free up: a node with a free place takes the
//! first piece still waiting whose shard it holds, this node first. Each
//! node has as many places as compute slots; a peer one more, so that it
//! never idles for a round trip.
//!
//! Before, pieces were started a few per live node at once, in shard
//! order, and each went wherever a slot was free at its start: this node
//! kept one piece and queued the others at a peer. With both nodes holding
//! every shard, ten pieces split 4 and 6, and this node idled at the end
//! while the peer worked through its queue.

/// Places a peer has beyond its compute slots: one piece ready in its
/// queue while the answer to the last one travels back.
pub const QUEUED_AT_PEER: usize = 1;

/// The pieces not yet started and each node's free places. Nodes are
/// indices, in order of preference (this node is 0).
#[derive(Debug)]
pub struct Dealer {
    /// Each piece's holders, until it is dealt.
    waiting: Vec<Option<Vec<usize>>>,
    free: Vec<usize>,
    /// Per node, where its search for a waiting piece starts: every piece
    /// before it is dealt or not the node's, so dealing all is linear.
    from: Vec<usize>,
}

impl Dealer {
    /// `holders[p]`: the nodes that hold piece `p`'s shard; `places[n]`:
    /// how many pieces node `n` may work on at once. A piece no node with
    /// places is known to hold is given to node 0, which asks around for it.
    pub fn new(holders: Vec<Vec<usize>>, places: Vec<usize>) -> Self {
        let nodes = places.len().max(1);
        let waiting = holders
            .into_iter()
            .map(|mut held| {
                held.retain(|&node| places.get(node).is_some_and(|&p| p > 0));
                if held.is_empty() {
                    held.push(0);
                }
                Some(held)
            })
            .collect();
        let mut free = places;
        free.resize(nodes, 0);
        // Node 0 always has a place, so every piece can be dealt.
        free[0] = free[0].max(1);
        Self { waiting, from: vec![0; nodes], free }
    }

    /// The next piece to start and the node it starts on: the first node
    /// with a free place that holds a waiting piece takes the first such
    /// piece. `None` while no free node holds a waiting piece.
    pub fn deal(&mut self) -> Option<(usize, usize)> {
        for node in 0..self.free.len() {
            if self.free[node] == 0 {
                continue;
            }
            let from = self.from[node];
            let found = self.waiting[from..].iter().position(|held| held.as_ref().is_some_and(|h| h.contains(&node)));
            self.from[node] = found.map_or(self.waiting.len(), |at| from + at);
            if let Some(at) = found {
                let piece = from + at;
                self.waiting[piece] = None;
                self.free[node] -= 1;
                return Some((piece, node));
            }
        }
        None
    }

    /// Node `node` finished a piece: its place is free again.
    pub fn finished(&mut self, node: usize) {
        if let Some(free) = self.free.get_mut(node) {
            *free += 1;
        }
    }

    /// Whether every piece has been dealt.
    pub fn is_empty(&self) -> bool {
        self.waiting.iter().all(Option::is_none)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Deals every piece, finishing the oldest running one whenever nothing
    /// can start; returns who took each piece.
    fn deal_all(mut dealer: Dealer, pieces: usize) -> Vec<usize> {
        let mut taken = vec![usize::MAX; pieces];
        let mut running = std::collections::VecDeque::new();
        loop {
            while let Some((piece, node)) = dealer.deal() {
                assert_eq!(taken[piece], usize::MAX, "piece {piece} dealt twice");
                taken[piece] = node;
                running.push_back(node);
            }
            match running.pop_front() {
                Some(node) => dealer.finished(node),
                None => break,
            }
        }
        assert!(dealer.is_empty());
        taken
    }

    #[test]
    fn a_node_that_frees_up_takes_the_next_piece_it_holds() {
        // Both hold every shard; this node has one place, the peer two.
        let mut dealer = Dealer::new(vec![vec![0, 1]; 4], vec![1, 2]);
        assert_eq!(dealer.deal(), Some((0, 0)));
        assert_eq!(dealer.deal(), Some((1, 1)));
        assert_eq!(dealer.deal(), Some((2, 1)));
        assert_eq!(dealer.deal(), None, "every place is taken");
        dealer.finished(0);
        assert_eq!(dealer.deal(), Some((3, 0)), "this node pulls the last piece, not the peer's queue");
        assert!(dealer.is_empty());
    }

    #[test]
    fn pieces_go_only_to_their_holders() {
        // Shard 0 on node 1 only, shard 1 on node 0 only.
        let mut dealer = Dealer::new(vec![vec![1], vec![0]], vec![1, 1]);
        assert_eq!(dealer.deal(), Some((1, 0)));
        assert_eq!(dealer.deal(), Some((0, 1)));
        assert_eq!(dealer.deal(), None);
    }

    #[test]
    fn a_piece_nobody_with_places_holds_goes_to_this_node_even_without_places() {
        let taken = deal_all(Dealer::new(vec![vec![], vec![7], vec![1], vec![2]], vec![0, 1, 0]), 4);
        assert_eq!(taken, vec![0, 0, 1, 0]);
    }

    proptest! {
        /// Whatever the holdings and places, every piece is dealt once, to
        /// one of its holders with places (else to this node), and no
        /// node ever works on more pieces than it has places.
        #[test]
        fn every_piece_is_dealt_once_to_a_holder(
            places in proptest::collection::vec(0usize..3, 1..5),
            holders in proptest::collection::vec(proptest::collection::vec(0usize..6, 0..4), 0..20),
        ) {
            let nodes = places.len();
            let mut dealer = Dealer::new(holders.clone(), places.clone());
            let mut busy = vec![0usize; nodes];
            let mut running = std::collections::VecDeque::new();
            let mut taken = vec![None; holders.len()];
            loop {
                while let Some((piece, node)) = dealer.deal() {
                    prop_assert!(taken[piece].is_none());
                    taken[piece] = Some(node);
                    busy[node] += 1;
                    prop_assert!(busy[node] <= places[node].max(usize::from(node == 0)));
                    running.push_back(node);
                }
                match running.pop_front() {
                    Some(node) => { busy[node] -= 1; dealer.finished(node); }
                    None => break,
                }
            }
            for (piece, held) in holders.iter().enumerate() {
                let node = taken[piece].expect("every piece is dealt");
                let known: Vec<usize> = held.iter().copied().filter(|&n| n < nodes && places[n] > 0).collect();
                prop_assert!(known.contains(&node) || (known.is_empty() && node == 0));
            }
        }
    }
}
