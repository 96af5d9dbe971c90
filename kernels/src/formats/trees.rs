//! Boosted trees as the attributes of ONNX-ML's `TreeEnsembleRegressor`
//! (domain `ai.onnx.ml`, opset 3): one ONNX tree per Mass tree, nodes
//! numbered as Mass numbers them, each tree adding to the score of its
//! output (`trees[r * K + k]` to score `k`), the starting scores as
//! `base_values`. The operator answers raw scores; the graph applies the
//! objective's logistic or softmax after it (see [`super::onnx`]).
//!
//! Mass splits compare a value's bin, not the value: value bin `b` (from 1)
//! holds the values up to `upper[b - 1]` (`FeatureBins::bin`), so "bin at
//! most `t`" is "value at most `upper[t - 1]`" in f32. Thresholds are
//! written as doubles (`nodes_values_as_tensor`) and the graph hands the
//! operator the f32 features widened to double, both exact, so `BRANCH_LEQ`
//! decides every row as the mesh does, values equal to a bound included.
//! A missing value (NaN, bin 0) follows the split's learned direction:
//! `nodes_missing_value_tracks_true`. Leaf values (learning rate already
//! applied) and starting scores are doubles too, and the operator sums in
//! double for double input, as `Gbdt::scores` does.

use crate::models::gbdt::{
    Gbdt,
    bins::FeatureBins,
    split::Rule,
    tree::{Node, Tree},
};

/// The attributes of one `TreeEnsembleRegressor` node, array by array.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ensemble {
    pub n_targets: i64,
    pub base_values: Vec<f64>,
    pub nodes_treeids: Vec<i64>,
    pub nodes_nodeids: Vec<i64>,
    pub nodes_featureids: Vec<i64>,
    pub nodes_values: Vec<f64>,
    pub nodes_modes: Vec<&'static str>,
    pub nodes_truenodeids: Vec<i64>,
    pub nodes_falsenodeids: Vec<i64>,
    pub nodes_missing_value_tracks_true: Vec<i64>,
    pub target_treeids: Vec<i64>,
    pub target_nodeids: Vec<i64>,
    pub target_ids: Vec<i64>,
    pub target_weights: Vec<f64>,
}

/// The ensemble of `gbdt`'s trees, or why it cannot be one: a split this
/// operator's comparisons do not express.
pub fn ensemble(gbdt: &Gbdt) -> Result<Ensemble, String> {
    let width = gbdt.objective.scores_per_row();
    let mut out = Ensemble { n_targets: width as i64, base_values: gbdt.init.clone(), ..Ensemble::default() };
    for (i, tree) in gbdt.trees.iter().enumerate() {
        add_tree(&mut out, gbdt, i as i64, (i % width) as i64, tree)?;
    }
    // A model boosted for no rounds answers its starting scores; the
    // operator still needs a tree, so each output gets one leaf of 0.
    if gbdt.trees.is_empty() {
        let zero = Tree { nodes: vec![Node::Leaf { value: 0.0 }] };
        for k in 0..width {
            add_tree(&mut out, gbdt, k as i64, k as i64, &zero)?;
        }
    }
    Ok(out)
}

fn add_tree(out: &mut Ensemble, gbdt: &Gbdt, id: i64, target: i64, tree: &Tree) -> Result<(), String> {
    for (n, node) in tree.nodes.iter().enumerate() {
        out.nodes_treeids.push(id);
        out.nodes_nodeids.push(n as i64);
        match *node {
            Node::Leaf { value } => {
                out.nodes_featureids.push(0);
                out.nodes_values.push(0.0);
                out.nodes_modes.push("LEAF");
                out.nodes_truenodeids.push(0);
                out.nodes_falsenodeids.push(0);
                out.nodes_missing_value_tracks_true.push(0);
                out.target_treeids.push(id);
                out.target_nodeids.push(n as i64);
                out.target_ids.push(target);
                out.target_weights.push(value);
            }
            Node::Split { split, left, right } => {
                let feature = split.feature as usize;
                let upper = match (gbdt.bins.get(feature), split.rule) {
                    (Some(FeatureBins::Numeric { upper }), Rule::UpTo(t)) => {
                        if !upper.windows(2).all(|w| w[0] <= w[1]) {
                            return Err(format!("feature {feature}'s bin bounds are not in order"));
                        }
                        (upper, t)
                    }
                    (Some(FeatureBins::Numeric { .. }), Rule::In(_)) => {
                        return Err(format!(
                            "tree {id} node {n} splits numeric feature {feature} by a set of bins, \
                             which is not a threshold"
                        ));
                    }
                    (Some(FeatureBins::Categorical { .. }), _) => {
                        return Err(format!(
                            "tree {id} node {n} splits categorical feature {feature}; \
                             the graph reads numeric columns only"
                        ));
                    }
                    (None, _) => return Err(format!("tree {id} node {n} reads feature {feature}, which has no bins")),
                };
                let (threshold, true_is_left) = threshold(upper.0, upper.1);
                let (on_true, on_false) = if true_is_left { (left, right) } else { (right, left) };
                out.nodes_featureids.push(i64::from(split.feature));
                out.nodes_values.push(threshold);
                out.nodes_modes.push("BRANCH_LEQ");
                out.nodes_truenodeids.push(i64::from(on_true));
                out.nodes_falsenodeids.push(i64::from(on_false));
                out.nodes_missing_value_tracks_true.push(i64::from(split.default_left == true_is_left));
            }
        }
    }
    Ok(())
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

    /// Walks the ensemble's tree `id` for a row as the operator's spec
    /// says (`BRANCH_LEQ`, missing values to the true branch where marked).
    fn walk(e: &Ensemble, id: i64, row: &[f32]) -> f64 {
        let at = |node: i64| {
            (0..e.nodes_treeids.len()).find(|&i| e.nodes_treeids[i] == id && e.nodes_nodeids[i] == node).unwrap()
        };
        let mut i = at(0);
        while e.nodes_modes[i] != "LEAF" {
            assert_eq!(e.nodes_modes[i], "BRANCH_LEQ");
            let v = f64::from(row[e.nodes_featureids[i] as usize]);
            let truth = v <= e.nodes_values[i] || (v.is_nan() && e.nodes_missing_value_tracks_true[i] == 1);
            i = at(if truth { e.nodes_truenodeids[i] } else { e.nodes_falsenodeids[i] });
        }
        let leaf = e.nodes_nodeids[i];
        let w = (0..e.target_treeids.len()).find(|&w| e.target_treeids[w] == id && e.target_nodeids[w] == leaf);
        e.target_weights[w.unwrap()]
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
                    assert_eq!(walk(&e, id as i64, &row), mesh, "tree {id}, row {row:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, values.len() * values.len() * 18);
    }

    #[test]
    fn arrays_line_up_and_trees_feed_their_outputs() {
        let mut gbdt = model();
        gbdt.objective = Objective::Softmax { classes: 5 };
        gbdt.init = vec![0.0, 0.1, 0.2, 0.3, 0.4];
        let e = ensemble(&gbdt).unwrap();
        let nodes = e.nodes_treeids.len();
        assert_eq!(nodes, 18 * 5);
        for len in [
            e.nodes_nodeids.len(),
            e.nodes_featureids.len(),
            e.nodes_values.len(),
            e.nodes_modes.len(),
            e.nodes_truenodeids.len(),
            e.nodes_falsenodeids.len(),
            e.nodes_missing_value_tracks_true.len(),
        ] {
            assert_eq!(len, nodes);
        }
        assert_eq!(e.target_weights.len(), 18 * 3, "three leaves a tree");
        assert_eq!((e.n_targets, e.base_values.clone()), (5, gbdt.init.clone()));
        // Tree 7 is round 1's tree for output 2.
        let of_tree_7: Vec<i64> =
            (0..e.target_ids.len()).filter(|&i| e.target_treeids[i] == 7).map(|i| e.target_ids[i]).collect();
        assert_eq!(of_tree_7, [2, 2, 2]);
    }

    #[test]
    fn no_trees_is_one_zero_leaf_per_output() {
        let gbdt = Gbdt { trees: vec![], objective: Objective::Logistic, init: vec![-0.5], ..model() };
        let e = ensemble(&gbdt).unwrap();
        assert_eq!(
            (e.nodes_modes.clone(), e.target_weights.clone(), e.base_values.clone()),
            (vec!["LEAF"], vec![0.0], vec![-0.5])
        );
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
        gbdt.bins[0] = FeatureBins::Categorical { bin_of: vec![1, 2], other: 3 };
        assert!(ensemble(&gbdt).unwrap_err().contains("splits categorical feature 0"));
        let mut gbdt = model();
        gbdt.bins[1] = FeatureBins::Numeric { upper: vec![f32::NAN, f32::INFINITY] };
        assert_eq!(ensemble(&gbdt).unwrap_err(), "feature 1's bin bounds are not in order");
    }
}
