//! Which nodes a forwarded prediction asks, in what order, and how long each
//! may take. Pure, so the whole-mesh simulation (`simulations/`) runs the
//! node's own choice; [`super::router`] only executes it.

use std::time::Duration;

use rand::{Rng, seq::SliceRandom};

/// The replicas to ask, best first: `replica_set` without `local`, the less
/// busy (by `depth`, the advertised inference queue) of two picked at
/// random first, then the rest in random order.
pub fn replicas_first<P: Clone + PartialEq>(
    replica_set: &[P],
    local: &P,
    depth: impl Fn(&P) -> u32,
    rng: &mut impl Rng,
) -> Vec<P> {
    let mut chosen: Vec<P> = replica_set.iter().filter(|p| *p != local).cloned().collect();
    chosen.shuffle(rng);
    if chosen.len() >= 2 && depth(&chosen[1]) < depth(&chosen[0]) {
        chosen.swap(0, 1);
    }
    chosen
}

/// `chosen` followed by every other live peer, in random order: any node
/// can load the model, so they are the last resort.
pub fn then_the_rest<P: Clone + PartialEq>(mut chosen: Vec<P>, live: &[P], local: &P, rng: &mut impl Rng) -> Vec<P> {
    let mut others: Vec<P> = live.iter().filter(|p| *p != local && !chosen.contains(p)).cloned().collect();
    others.shuffle(rng);
    chosen.extend(others);
    chosen
}

/// Less than this is no time to ask a node (the request would be sent and
/// dropped at once).
pub const MIN_ATTEMPT: Duration = Duration::from_millis(1);

/// How long the attempt numbered `attempt` (from 0) of `candidates` may wait
/// for an answer, with `left` until the deadline: half of what is left,
/// keeping time for one more try, unless it is the last candidate. `None`
/// when that is under [`MIN_ATTEMPT`]: asking stops there.
pub fn budget(left: Duration, attempt: usize, candidates: usize) -> Option<Duration> {
    let budget = if attempt + 1 < candidates { left / 2 } else { left };
    (budget >= MIN_ATTEMPT).then_some(budget)
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    #[test]
    fn the_less_busy_of_two_replicas_is_asked_first_and_never_this_node() {
        let mut rng = StdRng::seed_from_u64(1);
        let depth = |p: &u32| if *p == 2 { 0 } else { 9 };
        for _ in 0..20 {
            let order = replicas_first(&[1, 2, 3], &3, depth, &mut rng);
            assert_eq!(order, vec![2, 1], "of two replicas, the one with the shorter queue first");
        }
        let order = then_the_rest(vec![2, 1], &[1, 2, 3, 4, 5], &3, &mut rng);
        assert_eq!(&order[..2], &[2, 1]);
        let mut rest = order[2..].to_vec();
        rest.sort();
        assert_eq!(rest, vec![4, 5], "every other live peer but this node, once");
    }

    #[test]
    fn budgets_halve_and_the_last_attempt_gets_all_that_is_left() {
        let left = Duration::from_millis(2000);
        assert_eq!(budget(left, 0, 3), Some(Duration::from_millis(1000)));
        assert_eq!(budget(left, 2, 3), Some(left));
        assert_eq!(budget(left, 0, 1), Some(left));
        // Whatever the attempts take, their budgets fit in the deadline,
        // and asking stops once a half is under a millisecond.
        let mut left = Duration::from_millis(2000);
        let mut asked = 0;
        while let Some(spent) = budget(left, asked, 10_000) {
            assert!(spent <= left);
            left -= spent;
            asked += 1;
        }
        assert_eq!(asked, 10, "2 s halved down to a millisecond: 1000 ms .. 1.95 ms");
        assert_eq!(budget(Duration::from_micros(900), 0, 1), None);
    }
}
