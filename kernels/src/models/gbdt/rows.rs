//! The rows one trainer holds while a boosted model grows: their bins,
//! targets, current scores, this round's gradients, and which leaf of the
//! tree being grown each row is in. One process training alone keeps one of
//! these; nodes training together each keep one for the shards they hold.

use std::collections::HashMap;

use rand::{SeedableRng, rngs::StdRng, seq::index::sample};

use super::{
    bins::BinnedRows,
    histogram::{BinSum, GradPair, Histogram, Layout, Quantizer, RowBlocks},
    objective::{Objective, Targets},
    par,
    split::Split,
    tree::{Node, SplitOrder, Tree},
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
    /// `data` row by row, for histogram passes (built once from `data`,
    /// which is never changed after).
    blocks: RowBlocks,
    /// This round's gradients, one vector per output.
    grads: Vec<Vec<GradPair>>,
    /// What the last [`RowState::losses_for_next_round`] kept of each row for
    /// the gradients (probabilities, exponentials), while the scores have
    /// not changed since.
    terms: Vec<f64>,
    terms_fresh: bool,
    /// Threads each step may use.
    threads: usize,
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
    /// Room for the rows going right while a leaf is split (kept, so a
    /// split allocates nothing).
    scratch: Vec<u32>,
    /// The splits made since the tree started: `(node, split, left,
    /// right)`, to tell whether a finished tree is the one grown here.
    applied: Vec<(u32, Split, u32, u32)>,
}

impl Partition {
    fn start(&mut self, sample: &[u32]) {
        self.order.clear();
        self.order.extend_from_slice(sample);
        self.leaves.clear();
        self.leaves.insert(0, (0, self.order.len()));
        self.applied.clear();
    }

    fn rows_of(&self, node: u32) -> &[u32] {
        let (start, len) = self.leaves.get(&node).copied().unwrap_or((0, 0));
        &self.order[start..start + len]
    }

    /// Moves leaf `order.node`'s rows into its two children (stable, so
    /// rows stay in ascending order within each leaf).
    fn split(&mut self, data: &BinnedRows, order: &SplitOrder) {
        let Some((start, len)) = self.leaves.remove(&order.node) else { return };
        let Some(column) = data.columns.get(order.split.feature as usize) else { return };
        let left_len = partition(&mut self.order[start..start + len], column, &order.split, &mut self.scratch);
        self.leaves.insert(order.left, (start, left_len));
        self.leaves.insert(order.right, (start + left_len, len - left_len));
        self.applied.push((order.node, order.split, order.left, order.right));
    }

    /// Each leaf's rows with the leaf's value in `tree`, when `tree` is the
    /// tree these splits grew (its split nodes are exactly the splits made
    /// here); `None` otherwise.
    fn leaf_values(&self, tree: &Tree) -> Option<Vec<(f64, &[u32])>> {
        let grown = tree.nodes.len() == 1 + 2 * self.applied.len()
            && self.applied.iter().all(|(node, split, left, right)| {
                matches!(tree.nodes.get(*node as usize),
                    Some(Node::Split { split: s, left: l, right: r }) if s == split && l == left && r == right)
            });
        if !grown {
            return None;
        }
        self.leaves
            .iter()
            .map(|(&node, &(start, len))| match tree.nodes.get(node as usize) {
                Some(Node::Leaf { value }) => Some((*value, &self.order[start..start + len])),
                _ => None,
            })
            .collect()
    }
}

/// Stable in-place partition of `rows` by `split` on `column`: the rows
/// going left first; returns how many. Branch-free per row (a table of
/// the split's direction per bin), as which way a row goes is a coin flip
/// to the branch predictor.
fn partition(rows: &mut [u32], column: &[u8], split: &Split, scratch: &mut Vec<u32>) -> usize {
    let mut goes_left = [0usize; 256];
    for (bin, left) in goes_left.iter_mut().enumerate() {
        *left = usize::from(split.goes_left(bin as u8));
    }
    if scratch.len() < rows.len() {
        scratch.resize(rows.len(), 0);
    }
    let (mut left, mut right) = (0, 0);
    for i in 0..rows.len() {
        let r = rows[i];
        let go = goes_left[usize::from(column[r as usize])];
        // Written to both sides; only the side it goes to moves on.
        rows[left] = r;
        scratch[right] = r;
        left += go;
        right += 1 - go;
    }
    rows[left..].copy_from_slice(&scratch[..right]);
    left
}

/// What growing one output's tree reads and changes of a [`RowState`]:
/// trees of different outputs grow apart (on different threads).
pub struct TreeRows<'a> {
    data: &'a BinnedRows,
    blocks: &'a RowBlocks,
    grads: &'a [GradPair],
    sample: &'a [u32],
    partition: &'a mut Partition,
}

impl TreeRows<'_> {
    /// Starts the tree: every sampled row in the root; the root's sums.
    pub fn start_tree(&mut self) -> BinSum {
        self.partition.start(self.sample);
        leaf_sum(self.partition.rows_of(0), self.grads)
    }

    /// The histogram of leaf `node`'s rows over `features` (on this thread).
    pub fn histogram(&self, node: u32, features: &[usize], layout: &Layout) -> Histogram {
        Histogram::from_blocks(self.blocks, self.partition.rows_of(node), self.grads, features, layout, 1)
    }

    /// Moves leaf `order.node`'s rows into its children.
    pub fn split(&mut self, order: &SplitOrder) {
        self.partition.split(self.data, order);
    }
}

fn leaf_sum(rows: &[u32], grads: &[GradPair]) -> BinSum {
    let (mut g, mut h) = (0i64, 0i64);
    for &r in rows {
        let gp = grads[r as usize];
        g += gp.g;
        h += gp.h;
    }
    BinSum { g, h, n: rows.len() as i64 }
}

impl RowState {
    pub fn new(data: BinnedRows, targets: Targets, global_rows: Vec<u64>, objective: Objective, init: &[f64]) -> Self {
        assert_eq!(data.rows, targets.len(), "one target per row");
        let scores = (0..data.rows).flat_map(|_| init.iter().copied()).collect();
        let blocks = RowBlocks::new(&data);
        Self {
            data,
            targets,
            global_rows,
            objective,
            scores,
            blocks,
            grads: vec![],
            terms: vec![],
            terms_fresh: false,
            threads: par::cores(),
            sample: vec![],
            trees: vec![],
        }
    }

    pub fn rows(&self) -> usize {
        self.data.rows
    }

    /// Adds a finished tree's values for output `output` to every row's score.
    pub fn apply(&mut self, tree: &Tree, output: usize) {
        self.terms_fresh = false;
        let width = self.objective.scores_per_row();
        // The tree was grown here on every row: its leaves' rows are known,
        // and each row gets the value a walk down the tree would give it.
        let grown_here = self.trees.get(output).filter(|p| p.order.len() == self.data.rows);
        if let Some(leaves) = grown_here.and_then(|p| p.leaf_values(tree)) {
            for (value, rows) in leaves {
                for &r in rows {
                    self.scores[r as usize * width + output] += value;
                }
            }
            return;
        }
        let columns = &self.data.columns;
        let parts = par::threads_for(self.data.rows * 16, self.threads);
        par::for_chunks_mut(&mut self.scores, parts, width, |first, scores| {
            for (i, row) in scores.chunks_mut(width).enumerate() {
                let r = first / width + i;
                row[output] += tree.value(|f| columns[f][r]);
            }
        });
    }

    /// Computes this round's gradients for every output and draws its
    /// sample of rows.
    pub fn start_round(&mut self, q: &Quantizer, seed: u64, round: u64, row_fraction: f64) {
        let outputs = self.objective.scores_per_row();
        self.grads.resize_with(outputs, Vec::new);
        if self.terms_fresh {
            self.objective.gradients_from_terms(
                &self.scores,
                &self.targets,
                &self.terms,
                q,
                &mut self.grads,
                self.threads,
            );
        } else {
            self.objective.all_gradients(&self.scores, &self.targets, q, &mut self.grads, self.threads);
        }
        self.terms_fresh = false;
        self.sample = (0..self.rows() as u32)
            .filter(|&r| in_sample(seed, round, self.global_rows[r as usize], row_fraction))
            .collect();
    }

    /// The rows of every output's tree of this round, to grow them at once.
    pub fn tree_rows(&mut self) -> Vec<TreeRows<'_>> {
        let outputs = self.objective.scores_per_row();
        if self.trees.len() < outputs {
            self.trees.resize_with(outputs, Partition::default);
        }
        let (data, blocks, sample) = (&self.data, &self.blocks, self.sample.as_slice());
        self.trees
            .iter_mut()
            .zip(&self.grads)
            .map(|(partition, grads)| TreeRows { data, blocks, grads, sample, partition })
            .collect()
    }

    /// Starts the tree for output `output`: every sampled row in the root.
    pub fn start_tree(&mut self, output: usize) {
        if self.trees.len() <= output {
            self.trees.resize_with(output + 1, Partition::default);
        }
        self.trees[output].start(&self.sample);
    }

    fn rows_of(&self, output: usize, node: u32) -> &[u32] {
        self.trees.get(output).map_or(&[], |t| t.rows_of(node))
    }

    /// The sums of leaf `node`'s rows in output `output`'s tree.
    pub fn sum(&self, output: usize, node: u32) -> BinSum {
        leaf_sum(self.rows_of(output, node), &self.grads[output])
    }

    /// The histogram of leaf `node`'s rows in output `output`'s tree.
    pub fn histogram(&self, output: usize, node: u32, features: &[usize], layout: &Layout) -> Histogram {
        let rows = self.rows_of(output, node);
        Histogram::from_blocks(&self.blocks, rows, &self.grads[output], features, layout, self.threads)
    }

    /// Whether leaf `node` of output `output`'s tree is still a leaf here
    /// (not yet split).
    pub fn has_leaf(&self, output: usize, node: u32) -> bool {
        self.trees.get(output).is_some_and(|t| t.leaves.contains_key(&node))
    }

    /// Moves leaf `order.node`'s rows into its two children (stable, so
    /// rows stay in ascending order within each leaf).
    pub fn split(&mut self, output: usize, order: &SplitOrder) {
        if let Some(tree) = self.trees.get_mut(output) {
            tree.split(&self.data, order);
        }
    }

    /// The summed loss of every row, and the row count.
    pub fn loss(&self) -> (f64, u64) {
        self.loss_of(0..self.rows())
    }

    /// Each row's loss (summed in row order: [`RowState::loss`]), keeping
    /// what the next [`RowState::start_round`] needs of each row, so that
    /// it does not compute the same exponentials again (the next
    /// [`RowState::apply`] drops them; code that changes `scores` directly
    /// in between must not call this).
    pub fn losses_for_next_round(&mut self) -> Vec<f64> {
        let losses = self.objective.losses_keeping_terms(&self.scores, &self.targets, self.threads, &mut self.terms);
        self.terms_fresh = true;
        losses
    }

    /// Each row's loss, in row order.
    pub fn losses(&self) -> Vec<f64> {
        self.objective.row_losses(&self.scores, &self.targets, 0..self.rows(), self.threads, &mut [])
    }

    /// Threads each step may use (all the cores unless set).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// The summed loss of rows `rows`, and their count.
    pub fn loss_of(&self, rows: std::ops::Range<usize>) -> (f64, u64) {
        let n = rows.len() as u64;
        (self.objective.loss_of_rows(&self.scores, &self.targets, rows, self.threads), n)
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
