//! Proposing the next trial of a hyperparameter study: grid, random, TPE
//! (tree-structured Parzen estimators, as Optuna's default sampler) and a
//! genetic strategy. Pure: a proposal depends only on the space, the
//! strategy, the finished trials so far, the trial's number and the seed,
//! so a driver that takes over proposes what its predecessor would have.

use std::collections::BTreeMap;

use mass_protocol::studies::{Domain, ParamValue, Space, Strategy};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};

/// A finished trial as the sampler sees it: its parameters and score
/// (oriented so that higher is better; `None` when it failed).
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub params: &'a BTreeMap<String, ParamValue>,
    pub score: Option<f64>,
}

/// Candidates TPE draws from the good trials' density before keeping the best.
const TPE_CANDIDATES: usize = 24;
/// Share of finished trials TPE counts as good.
const TPE_GAMMA: f64 = 0.25;

fn rng_for(seed: u64, number: usize, salt: u64) -> StdRng {
    let mixed = seed ^ (number as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    StdRng::seed_from_u64(mixed)
}

/// The trial `number`'s parameters.
pub fn propose(
    space: &Space,
    strategy: &Strategy,
    history: &[Observation<'_>],
    number: usize,
    seed: u64,
) -> BTreeMap<String, ParamValue> {
    let mut rng = rng_for(seed, number, 1);
    match strategy {
        Strategy::Grid { steps } => grid(space, *steps, number, seed),
        Strategy::Random => random(space, &mut rng),
        Strategy::Tpe { startup } => {
            let finished = history.iter().filter(|o| o.score.is_some()).count();
            if number < *startup || finished < 2 { random(space, &mut rng) } else { tpe(space, history, &mut rng) }
        }
        Strategy::Genetic { population, mutation } => {
            let parents: Vec<&Observation<'_>> = history.iter().filter(|o| o.score.is_some()).collect();
            if number < (*population).max(2) || parents.len() < 2 {
                random(space, &mut rng)
            } else {
                genetic(space, &parents, *mutation, &mut rng)
            }
        }
    }
}

/// A domain's value drawn uniformly (in log space for log domains).
fn sample(domain: &Domain, rng: &mut StdRng) -> ParamValue {
    match domain {
        Domain::Choice(values) => values[rng.random_range(0..values.len())].clone(),
        Domain::Uniform([lo, hi]) => ParamValue::Number(rng.random_range(*lo..=*hi)),
        Domain::LogUniform([lo, hi]) => ParamValue::Number(rng.random_range(lo.ln()..=hi.ln()).exp().clamp(*lo, *hi)),
        Domain::Int([lo, hi]) => ParamValue::Number(rng.random_range(*lo..=*hi) as f64),
        Domain::LogInt([lo, hi]) => {
            let x = rng.random_range((*lo as f64).ln()..=(*hi as f64).ln()).exp();
            ParamValue::Number(x.round().clamp(*lo as f64, *hi as f64))
        }
    }
}

fn random(space: &Space, rng: &mut StdRng) -> BTreeMap<String, ParamValue> {
    space.iter().map(|(name, domain)| (name.clone(), sample(domain, rng))).collect()
}

/// The values a grid tries for a domain.
fn grid_values(domain: &Domain, steps: usize) -> Vec<ParamValue> {
    let steps = steps.max(2);
    let spread = |lo: f64, hi: f64| (0..steps).map(move |i| lo + (hi - lo) * i as f64 / (steps - 1) as f64);
    let mut values: Vec<ParamValue> = match domain {
        Domain::Choice(values) => return values.clone(),
        Domain::Uniform([lo, hi]) => spread(*lo, *hi).map(ParamValue::Number).collect(),
        // exp(ln(x)) may miss x by an ulp: clamped so the ends stay inside.
        Domain::LogUniform([lo, hi]) => {
            spread(lo.ln(), hi.ln()).map(|x| ParamValue::Number(x.exp().clamp(*lo, *hi))).collect()
        }
        Domain::Int([lo, hi]) => spread(*lo as f64, *hi as f64).map(|x| ParamValue::Number(x.round())).collect(),
        Domain::LogInt([lo, hi]) => {
            spread((*lo as f64).ln(), (*hi as f64).ln()).map(|x| ParamValue::Number(x.exp().round())).collect()
        }
    };
    values.dedup();
    values
}

/// Combinations a grid of `steps` points per range has (saturating).
pub fn grid_size(space: &Space, steps: usize) -> usize {
    space.values().map(|d| grid_values(d, steps).len()).fold(1usize, |n, k| n.saturating_mul(k))
}

/// Combination `number` of the grid, in an order shuffled by the seed (so a
/// budget smaller than the grid still covers it evenly).
fn grid(space: &Space, steps: usize, number: usize, seed: u64) -> BTreeMap<String, ParamValue> {
    let axes: Vec<(&String, Vec<ParamValue>)> = space.iter().map(|(n, d)| (n, grid_values(d, steps))).collect();
    let total: usize = axes.iter().map(|(_, v)| v.len()).product::<usize>().max(1);
    let mut order: Vec<usize> = (0..total.min(1 << 20)).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut index = order[number % order.len()];
    axes.into_iter()
        .map(|(name, values)| {
            let value = values[index % values.len()].clone();
            index /= values.len();
            (name.clone(), value)
        })
        .collect()
}

/// A numeric domain's value in the space TPE models it in (log for log domains).
fn to_model(domain: &Domain, value: &ParamValue) -> Option<f64> {
    let v = value.number()?;
    match domain {
        Domain::LogUniform(_) | Domain::LogInt(_) => (v > 0.0).then(|| v.ln()),
        Domain::Choice(_) => None,
        _ => Some(v),
    }
}

fn bounds(domain: &Domain) -> (f64, f64) {
    match domain {
        Domain::Uniform([lo, hi]) => (*lo, *hi),
        Domain::LogUniform([lo, hi]) => (lo.ln(), hi.ln()),
        Domain::Int([lo, hi]) => (*lo as f64 - 0.5, *hi as f64 + 0.5),
        Domain::LogInt([lo, hi]) => ((*lo as f64).ln(), (*hi as f64).ln()),
        Domain::Choice(_) => (0.0, 1.0),
    }
}

fn from_model(domain: &Domain, x: f64) -> ParamValue {
    match domain {
        Domain::LogUniform([lo, hi]) => ParamValue::Number(x.exp().clamp(*lo, *hi)),
        Domain::LogInt([lo, hi]) => ParamValue::Number(x.exp().round().clamp(*lo as f64, *hi as f64)),
        Domain::Int([lo, hi]) => ParamValue::Number(x.round().clamp(*lo as f64, *hi as f64)),
        Domain::Uniform([lo, hi]) => ParamValue::Number(x.clamp(*lo, *hi)),
        Domain::Choice(values) => values[0].clone(),
    }
}

/// A Parzen estimator over one numeric parameter: a Gaussian at each point
/// (bandwidth from its neighbours) plus a flat prior over the domain.
struct Parzen {
    points: Vec<f64>,
    widths: Vec<f64>,
    lo: f64,
    hi: f64,
}

impl Parzen {
    fn new(mut points: Vec<f64>, lo: f64, hi: f64) -> Self {
        points.sort_by(f64::total_cmp);
        let span = (hi - lo).max(1e-12);
        let floor = span / (points.len() as f64 + 1.0).min(100.0);
        let widths = (0..points.len())
            .map(|i| {
                let left = if i > 0 { points[i] - points[i - 1] } else { points[i] - lo };
                let right = if i + 1 < points.len() { points[i + 1] - points[i] } else { hi - points[i] };
                left.max(right).clamp(floor, span)
            })
            .collect();
        Self { points, widths, lo, hi }
    }

    fn density(&self, x: f64) -> f64 {
        let prior = 1.0 / (self.hi - self.lo).max(1e-12);
        let kernels: f64 = self
            .points
            .iter()
            .zip(&self.widths)
            .map(|(m, s)| (-0.5 * ((x - m) / s).powi(2)).exp() / (s * (2.0 * std::f64::consts::PI).sqrt()))
            .sum();
        (kernels + prior) / (self.points.len() as f64 + 1.0)
    }

    fn draw(&self, rng: &mut StdRng) -> f64 {
        let pick = rng.random_range(0..=self.points.len());
        if pick == self.points.len() {
            return rng.random_range(self.lo..=self.hi);
        }
        // Box-Muller, clamped into the domain.
        let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random_range(0.0..1.0));
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (self.points[pick] + z * self.widths[pick]).clamp(self.lo, self.hi)
    }
}

/// Independent TPE per parameter: split the finished trials into the best
/// quarter and the rest, draw candidates from the good density and keep
/// the one with the highest good/bad ratio.
fn tpe(space: &Space, history: &[Observation<'_>], rng: &mut StdRng) -> BTreeMap<String, ParamValue> {
    let mut finished: Vec<&Observation<'_>> = history.iter().filter(|o| o.score.is_some()).collect();
    finished.sort_by(|a, b| b.score.unwrap_or(f64::MIN).total_cmp(&a.score.unwrap_or(f64::MIN)));
    let n_good = ((finished.len() as f64 * TPE_GAMMA).ceil() as usize).clamp(1, finished.len() - 1);
    let (good, bad) = finished.split_at(n_good);
    space
        .iter()
        .map(|(name, domain)| {
            let value = match domain {
                Domain::Choice(values) => {
                    let weights = |set: &[&Observation<'_>]| -> Vec<f64> {
                        values
                            .iter()
                            .map(|v| 1.0 + set.iter().filter(|o| o.params.get(name) == Some(v)).count() as f64)
                            .collect()
                    };
                    let (wg, wb) = (weights(good), weights(bad));
                    let (sg, sb) = (wg.iter().sum::<f64>(), wb.iter().sum::<f64>());
                    let mut best = (f64::NEG_INFINITY, 0);
                    for _ in 0..TPE_CANDIDATES {
                        let mut u = rng.random_range(0.0..sg);
                        let mut i = 0;
                        while i + 1 < wg.len() && u >= wg[i] {
                            u -= wg[i];
                            i += 1;
                        }
                        let ratio = (wg[i] / sg).ln() - (wb[i] / sb).ln();
                        if ratio > best.0 {
                            best = (ratio, i);
                        }
                    }
                    values[best.1].clone()
                }
                _ => {
                    let (lo, hi) = bounds(domain);
                    let points = |set: &[&Observation<'_>]| -> Vec<f64> {
                        set.iter().filter_map(|o| o.params.get(name).and_then(|v| to_model(domain, v))).collect()
                    };
                    let (l, g) = (Parzen::new(points(good), lo, hi), Parzen::new(points(bad), lo, hi));
                    let mut best = (f64::NEG_INFINITY, lo);
                    for _ in 0..TPE_CANDIDATES {
                        let x = l.draw(rng);
                        let ratio = l.density(x).ln() - g.density(x).ln();
                        if ratio > best.0 {
                            best = (ratio, x);
                        }
                    }
                    from_model(domain, best.1)
                }
            };
            (name.clone(), value)
        })
        .collect()
}

/// A child of two parents picked by tournaments of three: each parameter
/// from either parent, and resampled with probability `mutation`.
fn genetic(
    space: &Space,
    parents: &[&Observation<'_>],
    mutation: f64,
    rng: &mut StdRng,
) -> BTreeMap<String, ParamValue> {
    let tournament = |rng: &mut StdRng| -> &Observation<'_> {
        (0..3)
            .map(|_| parents[rng.random_range(0..parents.len())])
            .max_by(|a, b| a.score.unwrap_or(f64::MIN).total_cmp(&b.score.unwrap_or(f64::MIN)))
            .expect("three draws")
    };
    let (mother, father) = (tournament(rng), tournament(rng));
    space
        .iter()
        .map(|(name, domain)| {
            let inherited = if rng.random_bool(0.5) { mother } else { father }.params.get(name).cloned();
            let value = match inherited {
                Some(v) if !rng.random_bool(mutation.clamp(0.0, 1.0)) => v,
                _ => sample(domain, rng),
            };
            (name.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> Space {
        BTreeMap::from([
            ("learning_rate".to_owned(), Domain::LogUniform([1e-4, 1e-1])),
            ("epochs".to_owned(), Domain::Int([5, 60])),
            (
                "model".to_owned(),
                Domain::Choice(vec![ParamValue::Text("linear".into()), ParamValue::Text("mlp:32".into())]),
            ),
        ])
    }

    fn in_space(params: &BTreeMap<String, ParamValue>) -> bool {
        let lr = params["learning_rate"].number().unwrap();
        let epochs = params["epochs"].number().unwrap();
        (1e-4..=1e-1).contains(&lr) && (5.0..=60.0).contains(&epochs) && epochs.fract() == 0.0
    }

    #[test]
    fn every_strategy_proposes_inside_the_space_and_repeats_itself() {
        let strategies = [
            Strategy::Grid { steps: 3 },
            Strategy::Random,
            Strategy::Tpe { startup: 3 },
            Strategy::Genetic { population: 4, mutation: 0.2 },
        ];
        for strategy in strategies {
            let mut journal: Vec<(BTreeMap<String, ParamValue>, Option<f64>)> = Vec::new();
            for number in 0..12 {
                let history: Vec<Observation<'_>> =
                    journal.iter().map(|(p, s)| Observation { params: p, score: *s }).collect();
                let params = propose(&space(), &strategy, &history, number, 7);
                assert!(in_space(&params), "{strategy:?}: {params:?}");
                assert_eq!(params, propose(&space(), &strategy, &history, number, 7), "{strategy:?} repeats");
                let score = -(params["learning_rate"].number().unwrap().ln() - 0.01f64.ln()).powi(2);
                journal.push((params, Some(score)));
            }
        }
    }

    #[test]
    fn the_grid_visits_every_combination_once() {
        let grid_space = BTreeMap::from([
            ("epochs".to_owned(), Domain::Int([1, 3])),
            ("model".to_owned(), Domain::Choice(vec![ParamValue::Text("a".into()), ParamValue::Text("b".into())])),
        ]);
        let combos: std::collections::BTreeSet<String> =
            (0..6).map(|n| format!("{:?}", propose(&grid_space, &Strategy::Grid { steps: 3 }, &[], n, 1))).collect();
        assert_eq!(combos.len(), 6);
    }

    #[test]
    fn tpe_concentrates_near_the_best_trials() {
        let one = BTreeMap::from([("l2".to_owned(), Domain::Uniform([0.0, 1.0]))]);
        let mut journal: Vec<(BTreeMap<String, ParamValue>, Option<f64>)> = Vec::new();
        for number in 0..40 {
            let history: Vec<Observation<'_>> =
                journal.iter().map(|(p, s)| Observation { params: p, score: *s }).collect();
            let params = propose(&one, &Strategy::Tpe { startup: 10 }, &history, number, 3);
            let x = params["l2"].number().unwrap();
            journal.push((params, Some(-(x - 0.8f64).abs())));
        }
        let late: Vec<f64> = journal[30..].iter().map(|(p, _)| p["l2"].number().unwrap()).collect();
        let near = late.iter().filter(|x| (**x - 0.8).abs() < 0.15).count();
        assert!(near >= 6, "TPE's last 10 proposals: {late:?}");
    }
}
