//! Runs the membership simulation over a range of seeds and loss rates and
//! prints a table. `cargo run -p mass-simulations --release --bin membership -- [NODES] [SEEDS]`

use mass_simulations::membership::{Scenario, run};

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let seeds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    println!("| nodes | loss | seeds | crashes | detections | max detection ms | false downs per 1k peer-minutes |");
    println!("|---|---|---|---|---|---|---|");
    for loss in [0.0, 0.1, 0.3, 0.5] {
        let mut total = mass_simulations::membership::Report::default();
        for seed in 0..seeds {
            let mut scenario = Scenario::small(seed);
            scenario.nodes = nodes;
            scenario.loss = loss;
            scenario.crashes = nodes / 10;
            match run(&scenario) {
                Ok(r) => {
                    total.crashes += r.crashes;
                    total.detections += r.detections;
                    total.max_detection_ms = total.max_detection_ms.max(r.max_detection_ms);
                    total.false_downs += r.false_downs;
                }
                Err(violation) => {
                    eprintln!("invariant violated: {violation}");
                    std::process::exit(1);
                }
            }
        }
        let peer_minutes =
            f64::from(nodes) * f64::from(nodes - 1) * (Scenario::small(0).duration_ms as f64 / 60_000.0) * seeds as f64;
        println!(
            "| {nodes} | {loss} | {seeds} | {} | {} | {} | {:.3} |",
            total.crashes,
            total.detections,
            total.max_detection_ms,
            total.false_downs as f64 * 1000.0 / peer_minutes
        );
    }
}
