//! A boosted job's messages between its driver, workers and owners, and
//! the records it stores (setups, rounds of trees), used on a session
//! holding the fixture's rows.

use mass_kernels::models::{
    Member,
    gbdt::{
        Gbdt,
        histogram::BinSum,
        split::{Candidate, better},
        tree::{Grower, Tree},
    },
};
use mass_protocol::ContentId;

use super::{fixture::fixture, record, serve::use_model};
use crate::{
    jobs::boost::{
        messages::{self, BoostReply, BoostRequest, MergeItem, SliceItem},
        session::{Owned, Plan, Rows},
    },
    serving::model::LoadedModel,
};

/// A boosted job's request to this node as a worker or owner, answered as
/// `sessions::handle` answers it, on a session holding the fixture's rows
/// with round 0 started.
pub fn boost_request(data: &[u8]) {
    let Ok(request) = messages::decode::<BoostRequest>(data) else { return };
    let f = fixture();
    let plan = f.plan(f.setup.clone());
    let mut rows = f.rows(&plan);
    let roots = rows.start_round(&plan, 0);
    match request {
        BoostRequest::Open { slice, .. } => {
            let slice = slice.0 as usize..slice.1 as usize;
            if slice.start > slice.end || slice.end > plan.layout.features() {
                return;
            }
            let plan = Plan { slice, ..plan };
            merge_roots(&plan, &mut rows, &roots);
        }
        BoostRequest::StartRound { round, .. } => {
            rows.start_round(&plan, round);
        }
        BoostRequest::Slices { features, items, .. } => {
            let features = features.0 as usize..features.1 as usize;
            if features.start > features.end || features.end > plan.layout.features() {
                return;
            }
            let _ = rows.slices(&plan, features, &items);
        }
        BoostRequest::Merge { items, .. } => {
            let wanted: Vec<SliceItem> =
                items.iter().map(|i| SliceItem { output: i.output, order: i.order, node: i.small }).collect();
            if let Ok(slices) = rows.slices(&plan, plan.slice.clone(), &wanted) {
                Owned::default().merge(&plan, 0, &items, &[slices]);
            }
        }
        BoostRequest::EndRound { trees, .. } => {
            let outputs = plan.setup.objective.scores_per_row();
            if trees.len() == outputs && trees.iter().all(|t| t.validate(plan.layout.features()).is_ok()) {
                rows.end_round(&trees);
            }
        }
        BoostRequest::Close { .. } => {}
    }
}

/// The roots' merge of one step: every worker's root histograms over
/// `plan`'s slice, merged by its owner.
pub(super) fn merge_roots(plan: &Plan, rows: &mut Rows, roots: &[BinSum]) -> Vec<(u32, u32, Option<Candidate>)> {
    let items = root_items(plan, roots);
    let wanted: Vec<SliceItem> = items.iter().map(|i| SliceItem { output: i.output, order: None, node: 0 }).collect();
    let slices = rows.slices(plan, plan.slice.clone(), &wanted).expect("a started round's own outputs");
    Owned::default().merge(plan, 0, &items, &[slices])
}

pub(super) fn root_items(plan: &Plan, roots: &[BinSum]) -> Vec<MergeItem> {
    roots
        .iter()
        .enumerate()
        .map(|(k, root)| MergeItem {
            output: k as u32,
            order: None,
            small: 0,
            small_sum: *root,
            want_small: plan.setup.splittable(root.n),
            large: None,
        })
        .collect()
}

/// A worker's or owner's answer, used as the boosting driver uses it.
pub fn boost_reply(data: &[u8]) {
    let Ok(reply) = messages::decode::<BoostReply>(data) else { return };
    let f = fixture();
    let plan = f.plan(f.setup.clone());
    let outputs = plan.setup.objective.scores_per_row();
    match reply {
        BoostReply::Roots(sums) => {
            // `run_rounds` adds every worker's root sums.
            let mut roots = vec![BinSum::default(); outputs];
            for (total, part) in roots.iter_mut().zip(sums) {
                *total += part;
            }
            let growers: Vec<Grower> = roots.iter().map(|r| Grower::new(plan.setup.params.shape, *r)).collect();
            let _: Vec<Tree> = growers.into_iter().map(|g| plan.setup.finish_tree(g)).collect();
        }
        BoostReply::Best(found) => {
            // `grow_round` offers the best of the owners' answers, then
            // splits; the trees go to the workers, which check them.
            let mut rows = f.rows(&plan);
            let roots = rows.start_round(&plan, 0);
            let mut growers: Vec<Grower> = roots.iter().map(|r| Grower::new(plan.setup.params.shape, *r)).collect();
            let mut best: std::collections::BTreeMap<(u32, u32), Option<Candidate>> = Default::default();
            for (output, node, candidate) in found {
                let slot = best.entry((output, node)).or_insert(None);
                *slot = better(*slot, candidate);
            }
            for ((output, node), candidate) in best {
                if let Some(grower) = growers.get_mut(output as usize) {
                    grower.offer(node, candidate);
                }
            }
            for grower in &mut growers {
                if let Some(order) = grower.next() {
                    let (small, large) = order.children();
                    grower.offer(small, None);
                    grower.offer(large, None);
                }
            }
            let trees: Vec<Tree> = growers.into_iter().map(|g| plan.setup.finish_tree(g)).collect();
            if trees.iter().all(|t| t.validate(plan.layout.features()).is_ok()) {
                rows.end_round(&trees);
            }
        }
        BoostReply::Slices(slices) => {
            // An owner merges a worker's slices of the roots.
            let mut rows = f.rows(&plan);
            let roots = rows.start_round(&plan, 0);
            let items = root_items(&plan, &roots);
            if slices.len() == items.len() {
                Owned::default().merge(&plan, 0, &items, &[slices]);
            }
        }
        BoostReply::Losses { train, validation } => {
            let sum = |v: &[(f64, u64)]| v.iter().fold((0.0, 0u64), |(l, n), (a, b)| (l + a, n.saturating_add(*b)));
            let _ = (sum(&train), sum(&validation));
        }
        BoostReply::Opened { .. } | BoostReply::Closed => {}
    }
}

/// A stored boosting setup, as `BoostRequest::Open` uses it: one whole
/// round grown on the fixture's rows.
pub fn boost_setup(data: &[u8]) {
    let Some(setup) = record::<mass_kernels::models::gbdt::BoostSetup>(data) else { return };
    let f = fixture();
    // `BoostRequest::Open` checks the setup against the job's pipeline.
    if setup.check(&f.pipeline).is_err() {
        return;
    }
    let plan = f.plan(setup);
    let mut rows = f.rows(&plan);
    grow_round(&plan, &mut rows);
}

/// One round as the driver, the workers and the owners grow it, in one
/// process: each step merges the smaller children's histograms, offers
/// the best splits and asks for the next.
fn grow_round(plan: &Plan, rows: &mut Rows) {
    let roots = rows.start_round(plan, 0);
    let mut growers: Vec<Grower> = roots.iter().map(|r| Grower::new(plan.setup.params.shape, *r)).collect();
    let mut items = root_items(plan, &roots);
    let mut owned = Owned::default();
    // Each step splits a leaf; a tree has fewer leaves than rows.
    for _ in 0..=rows.rows() * growers.len() as u64 {
        for item in &items {
            let grower = &mut growers[item.output as usize];
            if !item.want_small {
                grower.offer(item.small, None);
            }
            if let Some((large, _, false)) = item.large {
                grower.offer(large, None);
            }
        }
        let asked: Vec<MergeItem> =
            items.iter().copied().filter(|i| i.want_small || i.large.is_some_and(|l| l.2)).collect();
        let wanted: Vec<SliceItem> =
            asked.iter().map(|i| SliceItem { output: i.output, order: i.order, node: i.small }).collect();
        let slices = rows.slices(plan, plan.slice.clone(), &wanted).expect("a started round's own outputs");
        for (output, node, candidate) in owned.merge(plan, 0, &asked, &[slices]) {
            if let Some(grower) = growers.get_mut(output as usize) {
                grower.offer(node, candidate);
            }
        }
        items.clear();
        for (k, grower) in growers.iter_mut().enumerate() {
            while let Some(order) = grower.next() {
                let (small, large) = order.children();
                let sum_of = |node| if node == order.left { order.left_sum } else { order.right_sum };
                let want = |node: u32, grower: &Grower| grower.may_split(node) && plan.setup.splittable(sum_of(node).n);
                let (want_small, want_large) = (want(small, grower), want(large, grower));
                if !want_small && !want_large {
                    grower.offer(small, None);
                    grower.offer(large, None);
                    continue;
                }
                items.push(MergeItem {
                    output: k as u32,
                    order: Some(order),
                    small,
                    small_sum: sum_of(small),
                    want_small,
                    large: Some((large, sum_of(large), want_large)),
                });
                break;
            }
        }
        if items.is_empty() {
            break;
        }
    }
    let trees: Vec<Tree> = growers.into_iter().map(|g| plan.setup.finish_tree(g)).collect();
    if trees.iter().all(|t| t.validate(plan.layout.features()).is_ok()) {
        rows.end_round(&trees);
    }
}

/// A stored round of trees: checked against the fixture's features, added
/// to a worker's rows, and served inside a boosted member.
pub fn trees(data: &[u8]) {
    let Some(trees) = record::<Vec<Tree>>(data) else { return };
    let f = fixture();
    let plan = f.plan(f.setup.clone());
    if trees.iter().any(|t| t.validate(plan.layout.features()).is_err()) {
        return;
    }
    let mut rows = f.rows(&plan);
    rows.start_round(&plan, 0);
    if trees.len() == plan.setup.objective.scores_per_row() {
        rows.end_round(&trees);
    }
    let setup = &f.setup;
    let gbdt = Gbdt { bins: setup.bins.clone(), objective: setup.objective, init: setup.init.clone(), trees };
    let member = Member::Gbdt(gbdt);
    if member.validate(f.pipeline.features, f.pipeline.classes.len()).is_ok()
        && let Ok(model) = LoadedModel::trained(
            ContentId::of(data),
            f.model_manifest.clone(),
            f.schema().clone(),
            f.pipeline.clone(),
            vec![member, f.members[0].clone()],
            None,
        )
    {
        use_model(&model);
    }
}
