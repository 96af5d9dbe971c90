//! The CI seed budget for the whole-mesh replication simulation: fresh random
//! seeds of the small scenario on every run. A failure prints its seed;
//! `MASS_SIM_SEED=<seed> cargo test -p mass-simulations --test seed_budget`
//! replays it alone. `MASS_SIM_SEEDS` changes how many seeds run (default 300).

use mass_simulations::replication::{Report, Rule, Scenario, Violation, run};

const DEFAULT_SEEDS: usize = 300;

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("MASS_SIM_SEED") {
        return vec![seed.parse().expect("MASS_SIM_SEED must be a whole number")];
    }
    let count = std::env::var("MASS_SIM_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_SEEDS);
    (0..count).map(|_| rand::random()).collect()
}

fn scenario(seed: u64, rule: Rule) -> Scenario {
    Scenario { rule, ..Scenario::small(seed) }
}

#[test]
fn fresh_seeds_keep_every_blob_and_converge() {
    let mut total = Report::default();
    for seed in seeds() {
        let report = run(&scenario(seed, Rule::Node)).unwrap_or_else(|violation| {
            panic!("{violation}\nreplay: MASS_SIM_SEED={seed} cargo test -p mass-simulations --test seed_budget")
        });
        total.copies_moved += report.copies_moved;
        total.drops += report.drops;
        total.destroys += report.destroys;
        total.lost += report.lost;
        total.drained += report.drained;
        total.requests += report.requests;
        total.answered += report.answered;
        total.slowest_answer_ms = total.slowest_answer_ms.max(report.slowest_answer_ms);
    }
    eprintln!(
        "predictions: {} of {} answered (all others refused by their deadline), slowest answer {} ms",
        total.answered, total.requests, total.slowest_answer_ms
    );
    // Predictions went through chaos: some answered, some could not be.
    assert!(total.answered > 0 && total.answered < total.requests, "{total:?}");
    // The faults did happen: copies were repaired, migrated back, disks
    // lost, nodes drained and gone.
    assert!(total.copies_moved > 0 && total.drops > 0 && total.destroys > 0, "{total:?}");
    assert!(total.drained > 0, "no drained node ever left: {total:?}");
    assert!(total.lost > 0, "no message was lost: {total:?}");
}

#[test]
fn the_planted_bug_is_caught_and_its_seed_replays() {
    let found: Option<Violation> = seeds().into_iter().find_map(|seed| run(&scenario(seed, Rule::CountsAnswers)).err());
    let violation = found.expect("the planted bug (a home counted twice) went unnoticed by every seed");
    eprintln!("planted bug caught: {violation}");
    assert!(violation.what.contains("unsafe drop") || violation.what.contains("lost"), "{violation}");
    let again = run(&scenario(violation.seed, Rule::CountsAnswers)).expect_err("the seed did not replay");
    assert_eq!(again, violation, "the replay differs");
    // The node's rule passes the same seed.
    run(&scenario(violation.seed, Rule::Node)).unwrap_or_else(|v| panic!("{v}"));
}
