//! Boosted trees as the attributes of ONNX-ML's `TreeEnsemble` (domain
//! `ai.onnx.ml`, opset 5): one ONNX tree per Mass tree, each adding to the
//! score of its output (`trees[r * K + k]` to score `k`). Interior nodes and
//! leaves are numbered apart, as the operator wants (`nodes_*`, `leaf_*`);
//! the starting scores are added after the operator, which has no base
//! values (see [`super::onnx`], which also applies the objective's logistic
//! or softmax).
//!
//! Mass splits compare a value's bin, not the value. A numeric feature's
//! bin `b` (from 1) holds the values up to `upper[b - 1]`
//! (`FeatureBins::bin`), so "bin at most `t`" is "value at most
//! `upper[t - 1]`" in f32: `BRANCH_LEQ` on a double threshold, and the graph
//! hands the operator the f32 features widened to double, both exact, so
//! every row is decided as the mesh decides it, values equal to a bound
//! included. A categorical feature's value is the pipeline's ordinal code
//! (-1 when unseen); its split, whatever the rule, is a set of bins, so it
//! becomes `BRANCH_MEMBER` over the codes whose bins go left, or, when the
//! bin of rare and unseen categories goes left, over the codes whose bins
//! go right with the branches swapped (that bin holds every code not
//! listed). A missing value (NaN, bin 0) follows the split's learned
//! direction: `nodes_missing_value_tracks_true`. Leaf values (learning
//! rate already applied) and thresholds are doubles, and the operator sums
//! in double for double input, as `Gbdt::scores` does.

use crate::models::gbdt::{
    Gbdt,
    bins::FeatureBins,
    split::{Rule, Split},
    tree::{Node, Tree},
};

/// `nodes_modes` values of `TreeEnsemble`.
pub const BRANCH_LEQ: u8 = 0;
pub const BRANCH_LT: u8 = 1;
pub const BRANCH_MEMBER: u8 = 6;

/// The attributes of one `TreeEnsemble` node, array by array, and the
/// starting scores the graph adds to its answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ensemble {
    pub n_targets: i64,
    pub tree_roots: Vec<i64>,
    pub nodes_featureids: Vec<i64>,
    pub nodes_splits: Vec<f64>,
    pub nodes_modes: Vec<u8>,
    pub nodes_truenodeids: Vec<i64>,
    pub nodes_trueleafs: Vec<i64>,
    pub nodes_falsenodeids: Vec<i64>,
    pub nodes_falseleafs: Vec<i64>,
    pub nodes_missing_value_tracks_true: Vec<i64>,
    /// The sets of the `BRANCH_MEMBER` nodes in node order, each ended by NaN.
    pub membership_values: Vec<f64>,
    pub leaf_targetids: Vec<i64>,
    pub leaf_weights: Vec<f64>,
    pub base_values: Vec<f64>,
}

/// The ensemble of `gbdt`'s trees, or why it cannot be one: a split this
/// operator's comparisons do not express.
pub fn ensemble(gbdt: &Gbdt) -> Result<Ensemble, String> {
    let width = gbdt.objective.scores_per_row();
    let mut out = Ensemble { n_targets: width as i64, base_values: gbdt.init.clone(), ..Ensemble::default() };
    // A model boosted for no rounds answers its starting scores; the
    // operator still needs a tree, so each output gets one leaf of 0.
    let zero = Tree { nodes: vec![Node::Leaf { value: 0.0 }] };
    let trees: Vec<&Tree> = if gbdt.trees.is_empty() { vec![&zero; width] } else { gbdt.trees.iter().collect() };
    for (i, tree) in trees.into_iter().enumerate() {
        add_tree(&mut out, gbdt, i, (i % width) as i64, tree)?;
    }
    Ok(out)
}

/// Where a child is: an interior node's or a leaf's index.
#[derive(Clone, Copy)]
enum Child {
    Node(i64),
    Leaf(i64),
}

/// A branch node's comparison: mode, value, and (for sets) the members.
struct Branch {
    mode: u8,
    split: f64,
    members: Vec<f64>,
    /// Whether the comparison's true branch is the Mass split's left child.
    true_is_left: bool,
}

fn add_tree(out: &mut Ensemble, gbdt: &Gbdt, id: usize, target: i64, tree: &Tree) -> Result<(), String> {
    // Number interior nodes and leaves apart, in the tree's order.
    let (mut interior, mut leaves) = (out.nodes_featureids.len() as i64, out.leaf_weights.len() as i64);
    let place: Vec<Child> = tree
        .nodes
        .iter()
        .map(|node| match node {
            Node::Split { .. } => (Child::Node(interior), interior += 1).0,
            Node::Leaf { .. } => (Child::Leaf(leaves), leaves += 1).0,
        })
        .collect();
    match place[0] {
        Child::Node(root) => out.tree_roots.push(root),
        // The operator's trees start at a branch: a lone leaf gets one
        // whose two branches both lead to it.
        Child::Leaf(leaf) => {
            out.tree_roots.push(out.nodes_featureids.len() as i64);
            let always = Branch { mode: BRANCH_LEQ, split: 0.0, members: vec![], true_is_left: true };
            push_branch(out, 0, always, Child::Leaf(leaf), Child::Leaf(leaf), false);
        }
    }
    for (n, node) in tree.nodes.iter().enumerate() {
        match *node {
            Node::Leaf { value } => {
                out.leaf_targetids.push(target);
                out.leaf_weights.push(value);
            }
            Node::Split { split, left, right } => {
                let branch = branch(gbdt, split).map_err(|e| format!("tree {id} node {n} {e}"))?;
                let (left, right) = (place[left as usize], place[right as usize]);
                let (on_true, on_false) = if branch.true_is_left { (left, right) } else { (right, left) };
                let missing_true = split.default_left == branch.true_is_left;
                push_branch(out, split.feature, branch, on_true, on_false, missing_true);
            }
        }
    }
    Ok(())
}

fn push_branch(out: &mut Ensemble, feature: u32, branch: Branch, on_true: Child, on_false: Child, missing_true: bool) {
    let (true_id, true_leaf) = child(on_true);
    let (false_id, false_leaf) = child(on_false);
    out.nodes_featureids.push(i64::from(feature));
    out.nodes_splits.push(branch.split);
    out.nodes_modes.push(branch.mode);
    out.nodes_truenodeids.push(true_id);
    out.nodes_trueleafs.push(true_leaf);
    out.nodes_falsenodeids.push(false_id);
    out.nodes_falseleafs.push(false_leaf);
    out.nodes_missing_value_tracks_true.push(i64::from(missing_true));
    if branch.mode == BRANCH_MEMBER {
        out.membership_values.extend(branch.members);
        out.membership_values.push(f64::NAN);
    }
}

fn child(c: Child) -> (i64, i64) {
    match c {
        Child::Node(i) => (i, 0),
        Child::Leaf(i) => (i, 1),
    }
}

/// The comparison that decides `split` as the mesh's bins do.
fn branch(gbdt: &Gbdt, split: Split) -> Result<Branch, String> {
    let feature = split.feature as usize;
    match (gbdt.bins.get(feature), split.rule) {
        (Some(FeatureBins::Numeric { upper }), Rule::UpTo(t)) => {
            if !upper.windows(2).all(|w| w[0] <= w[1]) {
                return Err(format!("reads feature {feature}, whose bin bounds are not in order"));
            }
            let (split, true_is_left) = threshold(upper, t);
            Ok(Branch { mode: BRANCH_LEQ, split, members: vec![], true_is_left })
        }
        (Some(FeatureBins::Numeric { .. }), Rule::In(_)) => {
            Err(format!("splits numeric feature {feature} by a set of bins, which is not a threshold"))
        }
        (Some(FeatureBins::Categorical { bin_of, other }), rule) => {
            let left = |bin: u8| rule.goes_left(bin);
            // Codes with a bin of their own; every other code is in `other`'s.
            let own = bin_of.iter().enumerate().filter(|(_, b)| **b != *other && **b != 0);
            let true_is_left = !left(*other);
            let members: Vec<f64> = own.filter(|(_, b)| left(**b) == true_is_left).map(|(c, _)| c as f64).collect();
            if members.is_empty() {
                // No code takes the true branch: only missing values may.
                return Ok(Branch { mode: BRANCH_LT, split: f64::NEG_INFINITY, members, true_is_left });
            }
            Ok(Branch { mode: BRANCH_MEMBER, split: 0.0, members, true_is_left })
        }
        (None, _) => Err(format!("reads feature {feature}, which has no bins")),
    }
}

/// `value <= threshold` for "bin at most `t`", and whether its true branch
/// is the left child. Bin `t` is the last value bin at most `t`; from the
/// last bin on every value is at most `t` (values past the last bound land
/// in the last bin); at `t = 0` none is, which `<=` can only say
/// negated: every value is at most infinity, and that branch is the right.
fn threshold(upper: &[f32], t: u8) -> (f64, bool) {
    let t = usize::from(t);
    if t == 0 {
        (f64::INFINITY, false)
    } else if t >= upper.len() {
        (f64::INFINITY, true)
    } else {
        (f64::from(upper[t - 1]), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::gbdt::{objective::Objective, split::Split};

    fn split(feature: u32, t: u8, default_left: bool, left: u32, right: u32) -> Node {
        Node::Split { split: Split { feature, rule: Rule::UpTo(t), default_left }, left, right }
    }

    /// Walks the ensemble's tree `tree` for a row as the operator's spec
    /// says (missing values to the true branch where marked).
    fn walk(e: &Ensemble, tree: usize, row: &[f32]) -> f64 {
        // Each `BRANCH_MEMBER` node's set, in node order.
        let mut sets = e.membership_values.split(|v| v.is_nan());
        let sets: Vec<Option<&[f64]>> =
            e.nodes_modes.iter().map(|m| (*m == BRANCH_MEMBER).then(|| sets.next().unwrap())).collect();
        let mut at = e.tree_roots[tree] as usize;
        loop {
            let v = f64::from(row[e.nodes_featureids[at] as usize]);
            let truth = match e.nodes_modes[at] {
                _ if v.is_nan() => e.nodes_missing_value_tracks_true[at] == 1,
                BRANCH_LEQ => v <= e.nodes_splits[at],
                BRANCH_LT => v < e.nodes_splits[at],
                BRANCH_MEMBER => sets[at].unwrap().contains(&v),
                other => panic!("mode {other}"),
            };
            let (next, leaf) = if truth {
                (e.nodes_truenodeids[at], e.nodes_trueleafs[at])
            } else {
                (e.nodes_falsenodeids[at], e.nodes_falseleafs[at])
            };
            if leaf == 1 {
                return e.leaf_weights[next as usize];
            }
            at = next as usize;
        }
    }

    /// Two features with bounds [1.5, 3.5, inf] and [0.25, inf]; 18 trees
    /// splitting each at every threshold the bins allow (and past the last),
    /// missing values either way.
    fn model() -> Gbdt {
        let bins = vec![
            FeatureBins::Numeric { upper: vec![1.5, 3.5, f32::INFINITY] },
            FeatureBins::Numeric { upper: vec![0.25, f32::INFINITY] },
        ];
        let mut trees = Vec::new();
        for (feature, last) in [(0u32, 4u8), (1, 3)] {
            for t in 0..=last {
                for default_left in [false, true] {
                    trees.push(Tree {
                        nodes: vec![
                            split(feature, t, default_left, 1, 2),
                            Node::Leaf { value: -1.0 },
                            split(1 - feature, 1, !default_left, 3, 4),
                            Node::Leaf { value: 2.0 },
                            Node::Leaf { value: 0.5 + f64::from(t) },
                        ],
                    });
                }
            }
        }
        Gbdt { bins, objective: Objective::Squared, init: vec![0.25], trees }
    }

    /// Every value at and beside each bound, infinities and NaN: each tree
    /// gives the leaf the mesh's own walk over bins gives.
    #[test]
    fn thresholds_decide_as_the_bins_do_at_every_edge() {
        let gbdt = model();
        let e = ensemble(&gbdt).unwrap();
        let mut values = vec![f32::NAN, f32::NEG_INFINITY, f32::INFINITY, f32::MAX, -0.0, 0.0, 1e-30];
        for bound in [1.5f32, 3.5, 0.25] {
            values.extend([bound.next_down(), bound, bound.next_up()]);
        }
        let mut checked = 0;
        for a in &values {
            for b in &values {
                let row = [*a, *b];
                for (id, tree) in gbdt.trees.iter().enumerate() {
                    let mesh = tree.value(|f| gbdt.bins[f].bin(row[f]));
                    assert_eq!(walk(&e, id, &row), mesh, "tree {id}, row {row:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, values.len() * values.len() * 18);
    }

    /// Codes 1 and 3 are rare (in the other bin, 4, with unseen codes).
    fn categorical_bins() -> FeatureBins {
        FeatureBins::Categorical { bin_of: vec![2, 4, 1, 4, 3], other: 4 }
    }

    /// Every set of bins and every threshold a categorical split can have,
    /// missing values either way, over every code, unseen ones, a
    /// fraction, infinity and NaN: each tree gives the mesh's leaf.
    #[test]
    fn categorical_splits_decide_as_the_bins_do_for_every_set() {
        let mut rules: Vec<Rule> = (0u64..32).map(|mask| Rule::In([mask, 0, 0, 0])).collect();
        rules.extend((0..=5).map(Rule::UpTo));
        let mut trees = Vec::new();
        for rule in rules {
            for default_left in [false, true] {
                let first = Split { feature: 1, rule, default_left };
                let nodes = vec![
                    Node::Split { split: first, left: 1, right: 2 },
                    Node::Leaf { value: -1.0 },
                    Node::Split { split: Split { feature: 0, rule: Rule::UpTo(1), default_left }, left: 3, right: 4 },
                    Node::Leaf { value: 2.0 },
                    Node::Leaf { value: 7.0 },
                ];
                trees.push(Tree { nodes });
            }
        }
        let bins = vec![FeatureBins::Numeric { upper: vec![1.5, f32::INFINITY] }, categorical_bins()];
        let gbdt = Gbdt { bins, objective: Objective::Squared, init: vec![0.0], trees };
        let e = ensemble(&gbdt).unwrap();
        assert!(e.nodes_modes.contains(&BRANCH_MEMBER) && e.nodes_modes.contains(&BRANCH_LT));
        let codes = [-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 9.0, 2.5, f32::INFINITY, f32::NAN];
        for code in codes {
            for x in [1.0, 2.0, f32::NAN] {
                let row = [x, code];
                for (id, tree) in gbdt.trees.iter().enumerate() {
                    let mesh = tree.value(|f| gbdt.bins[f].bin(row[f]));
                    assert_eq!(walk(&e, id, &row), mesh, "tree {id}, row {row:?}");
                }
            }
        }
    }

    #[test]
    fn arrays_line_up_and_trees_feed_their_outputs() {
        let mut gbdt = model();
        gbdt.objective = Objective::Softmax { classes: 5 };
        gbdt.init = vec![0.0, 0.1, 0.2, 0.3, 0.4];
        let e = ensemble(&gbdt).unwrap();
        let nodes = e.nodes_featureids.len();
        assert_eq!(nodes, 18 * 2, "two branches a tree");
        for len in [
            e.nodes_splits.len(),
            e.nodes_modes.len(),
            e.nodes_truenodeids.len(),
            e.nodes_trueleafs.len(),
            e.nodes_falsenodeids.len(),
            e.nodes_falseleafs.len(),
            e.nodes_missing_value_tracks_true.len(),
        ] {
            assert_eq!(len, nodes);
        }
        assert_eq!((e.leaf_weights.len(), e.leaf_targetids.len()), (18 * 3, 18 * 3), "three leaves a tree");
        assert_eq!(e.tree_roots, (0..18).map(|t| 2 * t).collect::<Vec<i64>>());
        assert!(e.membership_values.is_empty());
        assert_eq!((e.n_targets, e.base_values.clone()), (5, gbdt.init.clone()));
        // Tree 7 is round 1's tree for output 2.
        assert_eq!(e.leaf_targetids[7 * 3..8 * 3], [2, 2, 2]);
    }

    #[test]
    fn no_trees_is_one_zero_leaf_per_output_behind_a_branch() {
        let gbdt = Gbdt { trees: vec![], objective: Objective::Logistic, init: vec![-0.5], ..model() };
        let e = ensemble(&gbdt).unwrap();
        assert_eq!(
            (e.tree_roots.clone(), e.leaf_weights.clone(), e.base_values.clone()),
            (vec![0], vec![0.0], vec![-0.5])
        );
        assert_eq!((e.nodes_trueleafs.clone(), e.nodes_falseleafs.clone()), (vec![1], vec![1]));
        assert_eq!((e.nodes_truenodeids.clone(), e.nodes_falsenodeids.clone()), (vec![0], vec![0]));
        for row in [[0.0, 0.0], [f32::NAN, f32::NAN]] {
            assert_eq!(walk(&e, 0, &row), 0.0);
        }
    }

    #[test]
    fn splits_that_are_not_thresholds_are_refused_by_name() {
        let mut gbdt = model();
        gbdt.trees[3].nodes[2] = Node::Split {
            split: Split { feature: 1, rule: Rule::In([0b110, 0, 0, 0]), default_left: true },
            left: 3,
            right: 4,
        };
        assert_eq!(
            ensemble(&gbdt).unwrap_err(),
            "tree 3 node 2 splits numeric feature 1 by a set of bins, which is not a threshold"
        );
        let mut gbdt = model();
        gbdt.bins[1] = FeatureBins::Numeric { upper: vec![f32::NAN, f32::INFINITY] };
        assert_eq!(ensemble(&gbdt).unwrap_err(), "tree 0 node 2 reads feature 1, whose bin bounds are not in order");
        gbdt.bins.pop();
        assert_eq!(ensemble(&gbdt).unwrap_err(), "tree 0 node 2 reads feature 1, which has no bins");
    }
}
