//! A regression tree over binned features, and the pure state machine that
//! grows one leaf-wise.
//!
//! The grower decides; it never touches rows. Whoever holds the rows (one
//! process, or many nodes) builds histograms, finds each new leaf's best
//! split and [`Grower::offer`]s it; [`Grower::next`] then says which leaf
//! to split and which child is smaller (the one whose histogram is built;
//! the other's is the parent's minus it).

use serde::{Deserialize, Serialize};

use super::{
    histogram::{BinSum, Quantizer},
    split::{Candidate, Split, leaf_value},
};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Node {
    Split { split: Split, left: u32, right: u32 },
    Leaf { value: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Node 0 is the root.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// The leaf value for a row, given how to read the row's bin of a feature.
    pub fn value(&self, bin_of: impl Fn(usize) -> u8) -> f64 {
        let mut at = 0usize;
        loop {
            match self.nodes[at] {
                Node::Leaf { value } => return value,
                Node::Split { split, left, right } => {
                    at = if split.goes_left(bin_of(split.feature as usize)) { left } else { right } as usize;
                }
            }
        }
    }

    pub fn leaves(&self) -> usize {
        self.nodes.iter().filter(|n| matches!(n, Node::Leaf { .. })).count()
    }

    /// Checks the structure a peer could have forged: child indices in
    /// range and pointing forward (so walking a row always ends).
    pub fn validate(&self, features: usize) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("a tree has no nodes".into());
        }
        for (i, node) in self.nodes.iter().enumerate() {
            match node {
                Node::Split { split, left, right } => {
                    let ok = |c: u32| (c as usize) > i && (c as usize) < self.nodes.len();
                    if !ok(*left) || !ok(*right) || split.feature as usize >= features {
                        return Err(format!("tree node {i} points outside the tree or the features"));
                    }
                }
                Node::Leaf { value } if !value.is_finite() => return Err(format!("tree leaf {i} is not finite")),
                Node::Leaf { .. } => {}
            }
        }
        Ok(())
    }
}

/// Shape limits of one tree.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TreeShape {
    pub max_leaves: usize,
    /// 0: no limit.
    pub max_depth: usize,
}

/// Which child of a split gets its histogram built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    Left,
    Right,
}

/// "Split leaf `node` by `split` into `left` and `right`; build the
/// `smaller` child's histogram."
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitOrder {
    pub node: u32,
    pub split: Split,
    pub left: u32,
    pub right: u32,
    pub smaller: Side,
    /// The children's sums.
    pub left_sum: BinSum,
    pub right_sum: BinSum,
}

impl SplitOrder {
    /// The smaller child, then the larger.
    pub fn children(&self) -> (u32, u32) {
        match self.smaller {
            Side::Left => (self.left, self.right),
            Side::Right => (self.right, self.left),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Open {
    node: u32,
    depth: usize,
    sum: BinSum,
    /// `None` until offered; `Some(None)`: no split worth making.
    best: Option<Option<Candidate>>,
}

/// Grows one tree leaf-wise: always splits the open leaf whose best split
/// gains most, until the tree has its leaves or no split gains.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grower {
    shape: TreeShape,
    nodes: Vec<Option<Node>>,
    open: Vec<Open>,
    sums: Vec<BinSum>,
}

impl Grower {
    /// A tree whose root holds rows with these sums.
    pub fn new(shape: TreeShape, root: BinSum) -> Self {
        Self {
            shape,
            nodes: vec![None],
            open: vec![Open { node: 0, depth: 0, sum: root, best: None }],
            sums: vec![root],
        }
    }

    /// Open leaves that still need their best split found.
    pub fn wanted(&self) -> Vec<u32> {
        self.open.iter().filter(|o| o.best.is_none()).map(|o| o.node).collect()
    }

    /// Whether leaf `node` may be split at all (depth limit).
    pub fn may_split(&self, node: u32) -> bool {
        self.open
            .iter()
            .find(|o| o.node == node)
            .is_some_and(|o| self.shape.max_depth == 0 || o.depth < self.shape.max_depth)
    }

    /// The best split found for open leaf `node` (`None`: nothing gains).
    pub fn offer(&mut self, node: u32, best: Option<Candidate>) {
        if let Some(open) = self.open.iter_mut().find(|o| o.node == node) {
            let allowed = self.shape.max_depth == 0 || open.depth < self.shape.max_depth;
            open.best = Some(if allowed { best } else { None });
        }
    }

    fn leaves(&self) -> usize {
        self.nodes.iter().filter(|n| !matches!(n, Some(Node::Split { .. }))).count()
    }

    /// The next split to make, once every open leaf has been offered;
    /// `None` when the tree is done.
    pub fn next(&mut self) -> Option<SplitOrder> {
        if self.leaves() >= self.shape.max_leaves.max(1) || self.open.iter().any(|o| o.best.is_none()) {
            return None;
        }
        let (index, _) = self
            .open
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.best.flatten().map(|c| (i, c)))
            // Most gain first; ties to the lower node id.
            .reduce(|a, b| if b.1.gain > a.1.gain { b } else { a })?;
        let open = self.open.swap_remove(index);
        let best = open.best.flatten().expect("filtered above");
        let (left, right) = (self.nodes.len() as u32, self.nodes.len() as u32 + 1);
        self.nodes[open.node as usize] = Some(Node::Split { split: best.split, left, right });
        self.nodes.extend([None, None]);
        self.sums.extend([best.left, best.right]);
        for (node, sum) in [(left, best.left), (right, best.right)] {
            self.open.push(Open { node, depth: open.depth + 1, sum, best: None });
        }
        self.open.sort_by_key(|o| o.node);
        let smaller = if best.left.n <= best.right.n { Side::Left } else { Side::Right };
        Some(SplitOrder {
            node: open.node,
            split: best.split,
            left,
            right,
            smaller,
            left_sum: best.left,
            right_sum: best.right,
        })
    }

    /// Whether [`Grower::next`] has nothing more to split.
    pub fn is_done(&self) -> bool {
        self.leaves() >= self.shape.max_leaves.max(1) || self.open.iter().all(|o| o.best.is_some_and(|b| b.is_none()))
    }

    /// The tree, each leaf's value `-G / (H + λ)` times the learning rate.
    pub fn finish(self, q: &Quantizer, l2: f64, learning_rate: f64) -> Tree {
        let nodes = self
            .nodes
            .into_iter()
            .zip(&self.sums)
            .map(|(node, sum)| node.unwrap_or(Node::Leaf { value: learning_rate * leaf_value(q, *sum, l2) }))
            .collect();
        Tree { nodes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::gbdt::split::Rule;

    fn candidate(gain: f64, left_n: i64, right_n: i64) -> Candidate {
        Candidate {
            split: Split { feature: 0, rule: Rule::UpTo(1), default_left: true },
            gain,
            left: BinSum { g: -left_n, h: left_n, n: left_n },
            right: BinSum { g: right_n, h: right_n, n: right_n },
        }
    }

    #[test]
    fn splits_the_best_leaf_first_and_stops_at_the_leaf_limit() {
        let root = BinSum { g: 0, h: 100, n: 100 };
        let mut grower = Grower::new(TreeShape { max_leaves: 3, max_depth: 0 }, root);
        assert_eq!(grower.wanted(), vec![0]);
        assert!(grower.next().is_none(), "waits for the root's split");
        grower.offer(0, Some(candidate(5.0, 30, 70)));
        let first = grower.next().unwrap();
        assert_eq!((first.node, first.left, first.right, first.smaller), (0, 1, 2, Side::Left));
        assert_eq!(grower.wanted(), vec![1, 2]);
        grower.offer(1, Some(candidate(1.0, 10, 20)));
        grower.offer(2, Some(candidate(2.0, 30, 40)));
        let second = grower.next().unwrap();
        assert_eq!(second.node, 2, "the leaf with more gain");
        assert!(grower.next().is_none() && grower.is_done(), "three leaves");
        let q = Quantizer::new(1.0, 1.0);
        let tree = grower.finish(&q, 0.0, 0.1);
        assert_eq!(tree.leaves(), 3);
        tree.validate(1).unwrap();
    }

    #[test]
    fn depth_limit_stops_growth() {
        let mut grower = Grower::new(TreeShape { max_leaves: 31, max_depth: 1 }, BinSum { g: 0, h: 10, n: 10 });
        grower.offer(0, Some(candidate(5.0, 5, 5)));
        grower.next().unwrap();
        assert!(!grower.may_split(1));
        grower.offer(1, Some(candidate(5.0, 2, 3)));
        grower.offer(2, Some(candidate(5.0, 2, 3)));
        assert!(grower.next().is_none() && grower.is_done());
    }
}
