//! The rows one trainer holds while a boosted model grows: their bins,
//! targets, current scores, this round's gradients, and which leaf of the
//! tree being grown each row is in. One process training alone keeps one of
//! these; nodes training together each keep one for the shards they hold.

use std::collections::HashMap;

use rand::{SeedableRng, rngs::StdRng, seq::index::sample};

use super::{
    bins::BinnedRows,
    histogram::{BinSum, GradPair, Histogram, Layout, Quantizer},
    objective::{Objective, Targets},
    tree::{SplitOrder, Tree},
};

/// A 64-bit mix (splitmix64's finalizer): row sampling that depends only on
/// the seed, the round and the row's global number, wherever the row is.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether global row `row` is in round `round`'s sample of `fraction`.
pub fn in_sample(seed: u64, round: u64, row: u64, fraction: f64) -> bool {
    if fraction >= 1.0 {
        return true;
    }
    let h = mix(mix(seed ^ 0x5851_f42d_4c95_7f2d).wrapping_add(round).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ row);
    (h >> 11) as f64 / (1u64 << 53) as f64 <= fraction
}

/// The features tree `(round, output)` may split on: a seeded draw of
/// `fraction` of the usable ones (all when 1).
pub fn tree_features(seed: u64, round: u64, output: u64, usable: &[usize], fraction: f64) -> Vec<usize> {
    if fraction >= 1.0 || usable.is_empty() {
        return usable.to_vec();
    }
    let keep = ((usable.len() as f64 * fraction).round() as usize).clamp(1, usable.len());
    let mut rng = StdRng::seed_from_u64(mix(seed ^ mix(round.wrapping_mul(1_000_003).wrapping_add(output))));
    let mut chosen: Vec<usize> = sample(&mut rng, usable.len(), keep).into_iter().map(|i| usable[i]).collect();
    chosen.sort_unstable();
    chosen
}

pub struct RowState {
    pub data: BinnedRows,
    pub targets: Targets,
    /// Each row's number in the dataset (for sampling).
    pub global_rows: Vec<u64>,
    objective: Objective,
    /// `rows x scores_per_row`, row-major.
    pub scores: Vec<f64>,
    /// This round's gradients, one vector per output.
    grads: Vec<Vec<GradPair>>,
    /// This round's sample of rows.
    sample: Vec<u32>,
    /// The tree being grown for each output.
    trees: Vec<Partition>,
}

/// Rows of a tree being grown, grouped by leaf: leaf `n` holds
/// `order[start..start + len]` for `(start, len) = leaves[n]`.
#[derive(Default)]
struct Partition {
    order: Vec<u32>,
    leaves: HashMap<u32, (usize, usize)>,
}

impl RowState {
    pub fn new(data: BinnedRows, targets: Targets, global_rows: Vec<u64>, objective: Objective, init: &[f64]) -> Self {
        assert_eq!(data.rows, targets.len(), "one target per row");
        let scores = (0..data.rows).flat_map(|_| init.iter().copied()).collect();
        Self { data, targets, global_rows, objective, scores, grads: vec![], sample: vec![], trees: vec![] }
    }

    pub fn rows(&self) -> usize {
        self.data.rows
    }

    /// Adds a finished tree's values for output `output` to every row's score.
    pub fn apply(&mut self, tree: &Tree, output: usize) {
        let width = self.objective.scores_per_row();
        let columns = &self.data.columns;
        for (r, row) in self.scores.chunks_mut(width).enumerate() {
            row[output] += tree.value(|f| columns[f][r]);
        }
    }

    /// Computes this round's gradients for every output and draws its
    /// sample of rows.
    pub fn start_round(&mut self, q: &Quantizer, seed: u64, round: u64, row_fraction: f64) {
        let outputs = self.objective.scores_per_row();
        self.grads.resize_with(outputs, Vec::new);
        for k in 0..outputs {
            let mut out = std::mem::take(&mut self.grads[k]);
            self.objective.gradients(&self.scores, &self.targets, k, q, &mut out);
            self.grads[k] = out;
        }
        self.sample = (0..self.rows() as u32)
            .filter(|&r| in_sample(seed, round, self.global_rows[r as usize], row_fraction))
            .collect();
    }

    /// Starts the tree for output `output`: every sampled row in the root.
    pub fn start_tree(&mut self, output: usize) {
        if self.trees.len() <= output {
            self.trees.resize_with(output + 1, Partition::default);
        }
        let tree = &mut self.trees[output];
        tree.order.clone_from(&self.sample);
        tree.leaves.clear();
        tree.leaves.insert(0, (0, tree.order.len()));
    }

    fn rows_of(&self, output: usize, node: u32) -> &[u32] {
        let Some(tree) = self.trees.get(output) else { return &[] };
        let (start, len) = tree.leaves.get(&node).copied().unwrap_or((0, 0));
        &tree.order[start..start + len]
    }

    /// The sums of leaf `node`'s rows in output `output`'s tree.
    pub fn sum(&self, output: usize, node: u32) -> BinSum {
        let grads = &self.grads[output];
        self.rows_of(output, node).iter().fold(BinSum::default(), |mut s, &r| {
            let gp = grads[r as usize];
            s += BinSum { g: gp.g, h: gp.h, n: 1 };
            s
        })
    }

    /// The histogram of leaf `node`'s rows in output `output`'s tree.
    pub fn histogram(&self, output: usize, node: u32, features: &[usize], layout: &Layout) -> Histogram {
        Histogram::build(&self.data, self.rows_of(output, node), &self.grads[output], features, layout)
    }

    /// Whether leaf `node` of output `output`'s tree is still a leaf here
    /// (not yet split).
    pub fn has_leaf(&self, output: usize, node: u32) -> bool {
        self.trees.get(output).is_some_and(|t| t.leaves.contains_key(&node))
    }

    /// Moves leaf `order.node`'s rows into its two children (stable, so
    /// rows stay in ascending order within each leaf).
    pub fn split(&mut self, output: usize, order: &SplitOrder) {
        let Some(tree) = self.trees.get_mut(output) else { return };
        let Some((start, len)) = tree.leaves.remove(&order.node) else { return };
        let column = &self.data.columns[order.split.feature as usize];
        let rows = &mut tree.order[start..start + len];
        let mut right = Vec::new();
        let mut left_len = 0;
        for i in 0..rows.len() {
            let r = rows[i];
            if order.split.goes_left(column[r as usize]) {
                rows[left_len] = r;
                left_len += 1;
            } else {
                right.push(r);
            }
        }
        rows[left_len..].copy_from_slice(&right);
        tree.leaves.insert(order.left, (start, left_len));
        tree.leaves.insert(order.right, (start + left_len, len - left_len));
    }

    /// The summed loss of every row, and the row count.
    pub fn loss(&self) -> (f64, u64) {
        self.loss_of(0..self.rows())
    }

    /// The summed loss of rows `rows`, and their count.
    pub fn loss_of(&self, rows: std::ops::Range<usize>) -> (f64, u64) {
        let width = self.objective.scores_per_row();
        let targets = match &self.targets {
            Targets::Classes(c) => Targets::Classes(c[rows.clone()].to_vec()),
            Targets::Values(v) => Targets::Values(v[rows.clone()].to_vec()),
        };
        let n = rows.len() as u64;
        (self.objective.loss(&self.scores[rows.start * width..rows.end * width], &targets), n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_depends_on_the_row_not_where_it_is() {
        let picked: Vec<u64> = (0..10_000).filter(|&r| in_sample(7, 3, r, 0.3)).collect();
        assert!((2_700..3_300).contains(&picked.len()), "{}", picked.len());
        assert!((0..10_000).all(|r| in_sample(7, 3, r, 1.0)));
        let other_round: Vec<u64> = (0..10_000).filter(|&r| in_sample(7, 4, r, 0.3)).collect();
        assert_ne!(picked, other_round);
        let features = tree_features(1, 2, 0, &[0, 2, 4, 6, 8, 10], 0.5);
        assert_eq!(features.len(), 3);
        assert_eq!(features, tree_features(1, 2, 0, &[0, 2, 4, 6, 8, 10], 0.5));
    }
}
