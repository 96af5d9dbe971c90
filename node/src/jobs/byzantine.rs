//! Fault injection for tests: a node that lies as a data-parallel worker.
//!
//! `MASS_FAULT_BYZANTINE` set when `mass node start` runs makes the node
//! turn each honest data-parallel result into a lie before it stores it, so
//! an end-to-end test can check that the robust average
//! ([`super::task::average`]) and the driver's cap on claimed rows keep one
//! liar from steering a job. It is a knob for tests, not a product feature:
//! only data-parallel rounds are falsified (bagging, boosting and folds are
//! trained honestly), and the node says at start that it lies.
//!
//! The lies are pure functions ([`falsify`], [`flip_labels`]), tested here.

use std::{fmt, str::FromStr};

use mass_kernels::models::Member;
use mass_protocol::jobs::{Assignment, EnsembleSpec, JobSpec};
use tracing::warn;

use super::learners::Labels;
use crate::mesh::Mesh;

/// The environment variable read when a node starts.
pub const VAR: &str = "MASS_FAULT_BYZANTINE";

/// How much [`Lie::Scale`] multiplies every parameter by.
pub const SCALE: f32 = 100.0;

/// What a lying worker does to its data-parallel result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lie {
    /// Every weight and bias negated.
    SignFlip,
    /// Every weight and bias multiplied by [`SCALE`].
    Scale,
    /// Trains on wrong labels: each class shifted to the next (the last to
    /// the first), each regression target negated.
    LabelFlip,
    /// Claims to have trained on `u64::MAX` rows.
    Rows,
}

impl Lie {
    /// Every lie, as the variable spells it.
    pub const ALL: [Lie; 4] = [Lie::SignFlip, Lie::Scale, Lie::LabelFlip, Lie::Rows];

    pub fn name(self) -> &'static str {
        match self {
            Lie::SignFlip => "sign-flip",
            Lie::Scale => "scale",
            Lie::LabelFlip => "label-flip",
            Lie::Rows => "rows",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Lie::SignFlip => "every weight and bias negated",
            Lie::Scale => "every weight and bias multiplied by 100",
            Lie::LabelFlip => "trained on each class shifted to the next",
            Lie::Rows => "claims u64::MAX training rows",
        }
    }
}

impl fmt::Display for Lie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value of [`VAR`] that names no lie.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{VAR}='{0}' is not a known lie: expected sign-flip, scale, label-flip or rows (a fault-injection knob \
     for tests; unset it to run an honest node)"
)]
pub struct UnknownLie(pub String);

impl FromStr for Lie {
    type Err = UnknownLie;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Lie::ALL.into_iter().find(|lie| lie.name() == text.trim()).ok_or_else(|| UnknownLie(text.to_owned()))
    }
}

/// The lie [`VAR`] asks for: `None` when unset or empty.
pub fn from_env() -> Result<Option<Lie>, UnknownLie> {
    parse(std::env::var(VAR).ok().as_deref())
}

/// [`from_env`] on a given value.
pub fn parse(value: Option<&str>) -> Result<Option<Lie>, UnknownLie> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some),
    }
}

/// Says loudly, once at start, that this node lies.
pub fn announce(lie: Lie) {
    warn!(
        "this node lies in data-parallel training: {lie} ({}), set by {VAR}; a fault-injection knob for tests, \
         never for a real mesh",
        lie.what()
    );
}

/// The result a lying worker reports instead of its honest `member`
/// trained on `rows` rows. [`Lie::LabelFlip`] lies before training (see
/// [`flip_labels`]), so its result passes as it is; members other than
/// networks (data-parallel training averages networks only) pass too.
pub fn falsify(lie: Lie, member: Member, rows: u64) -> (Member, u64) {
    let scale = |member: Member, by: f32| match member {
        Member::Mlp(mut m) => {
            m.weights.iter_mut().for_each(|w| w.mapv_inplace(|v| v * by));
            m.biases.iter_mut().for_each(|b| b.mapv_inplace(|v| v * by));
            Member::Mlp(m)
        }
        other => other,
    };
    match lie {
        Lie::SignFlip => (scale(member, -1.0), rows),
        Lie::Scale => (scale(member, SCALE), rows),
        Lie::LabelFlip => (member, rows),
        Lie::Rows => (member, u64::MAX),
    }
}

/// The wrong labels [`Lie::LabelFlip`] trains on: class `c` of `classes`
/// becomes `c + 1` (the last wraps to 0), a regression target its negation.
pub fn flip_labels(labels: &mut Labels, classes: usize) {
    match labels {
        Labels::Classes(c) => c.iter_mut().for_each(|c| *c = (*c + 1) % classes.max(1)),
        Labels::Values(v) => v.iter_mut().for_each(|v| *v = -*v),
    }
}

/// The lie this node tells about `work`, if any: only when the node was
/// started lying and `work` is a round of a data-parallel job. The
/// assignment does not say which kind of job it serves, so the job's spec
/// (stored under the job's id) is read; if it cannot be, a round that
/// starts from averaged weights is data-parallel all the same.
pub async fn lie_for(mesh: &Mesh, work: &Assignment) -> Option<Lie> {
    let lie = mesh.byzantine?;
    let data_parallel = match mesh.load::<JobSpec>(work.job).await {
        Ok(spec) => matches!(spec.ensemble, EnsembleSpec::DataParallel { .. }),
        Err(e) => {
            warn!(job = %work.job, "cannot read the job's spec to decide whether to lie: {e}");
            !work.start.is_empty()
        }
    };
    data_parallel.then(|| {
        warn!(job = %work.job, task = work.task, "lying about this data-parallel round: {lie}");
        lie
    })
}

#[cfg(test)]
mod tests {
    use mass_kernels::models::{Mlp, MlpConfig};
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    fn network() -> Mlp {
        let mut m =
            Mlp::new(3, 2, &MlpConfig { hidden: vec![4], ..MlpConfig::default() }, &mut StdRng::seed_from_u64(1));
        m.biases.iter_mut().for_each(|b| b.fill(0.5));
        m
    }

    fn parameters(member: &Member) -> Vec<f32> {
        let Member::Mlp(m) = member else { panic!("a network") };
        m.weights.iter().flatten().chain(m.biases.iter().flatten()).copied().collect()
    }

    #[test]
    fn each_lie_turns_the_honest_result_into_its_own_falsehood() {
        let honest = Member::Mlp(network());
        let before = parameters(&honest);

        let (flipped, rows) = falsify(Lie::SignFlip, honest.clone(), 300);
        assert_eq!(rows, 300);
        assert_eq!(parameters(&flipped), before.iter().map(|v| -v).collect::<Vec<_>>());

        let (scaled, rows) = falsify(Lie::Scale, honest.clone(), 300);
        assert_eq!(rows, 300);
        assert_eq!(parameters(&scaled), before.iter().map(|v| v * 100.0).collect::<Vec<_>>());

        assert_eq!(falsify(Lie::Rows, honest.clone(), 300), (honest.clone(), u64::MAX));
        assert_eq!(falsify(Lie::LabelFlip, honest.clone(), 300), (honest, 300), "it lies while training");
    }

    #[test]
    fn label_flip_moves_every_class_to_another_and_negates_targets() {
        let mut classes = Labels::Classes(vec![0, 1, 2, 9]);
        flip_labels(&mut classes, 10);
        assert_eq!(classes, Labels::Classes(vec![1, 2, 3, 0]));
        let mut values = Labels::Values(vec![1.5, -2.0]);
        flip_labels(&mut values, 0);
        assert_eq!(values, Labels::Values(vec![-1.5, 2.0]));
    }

    #[test]
    fn the_variable_names_a_lie_or_the_node_refuses_to_start() {
        assert_eq!(parse(None), Ok(None));
        assert_eq!(parse(Some("  ")), Ok(None));
        for lie in Lie::ALL {
            assert_eq!(parse(Some(lie.name())), Ok(Some(lie)));
        }
        assert_eq!(parse(Some(" label-flip\n")), Ok(Some(Lie::LabelFlip)));
        let error = parse(Some("sign_flip")).unwrap_err().to_string();
        assert!(error.contains("MASS_FAULT_BYZANTINE='sign_flip'"), "{error}");
        assert!(error.contains("sign-flip, scale, label-flip or rows"), "{error}");
    }
}
