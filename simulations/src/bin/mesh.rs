//! The whole-mesh replication simulation (`mass_simulations::replication`).
//! `MASS_SIM_SEED=7 cargo run --release -p mass-simulations -- --nodes 10000 [--blobs N] [--epochs N] [--planted-bug]`
//! prints a summary; on a violated invariant it prints the seed that replays it.

use std::{process::ExitCode, time::Instant};

use mass_simulations::replication::{Rule, Scenario, run};

fn main() -> ExitCode {
    let (mut nodes, mut blobs, mut epochs, mut rule) = (1000u32, None, None, Rule::Node);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Option<u32> {
            let value = args.next().and_then(|v| v.parse().ok());
            if value.is_none() {
                eprintln!("{name} needs a whole number");
            }
            value
        };
        match arg.as_str() {
            "--nodes" => match number("--nodes") {
                Some(n) => nodes = n,
                None => return ExitCode::from(2),
            },
            "--blobs" => match number("--blobs") {
                Some(n) => blobs = Some(n),
                None => return ExitCode::from(2),
            },
            "--epochs" => match number("--epochs") {
                Some(n) => epochs = Some(n),
                None => return ExitCode::from(2),
            },
            "--planted-bug" => rule = Rule::CountsAnswers,
            other => {
                eprintln!("unknown argument {other:?}; expected --nodes N, --blobs N, --epochs N, --planted-bug");
                return ExitCode::from(2);
            }
        }
    }
    let seed = match std::env::var("MASS_SIM_SEED") {
        Ok(value) => match value.parse() {
            Ok(seed) => seed,
            Err(_) => {
                eprintln!("MASS_SIM_SEED must be a whole number, not {value:?}");
                return ExitCode::from(2);
            }
        },
        Err(_) => rand::random(),
    };
    let mut scenario = Scenario::large(seed, nodes, blobs.unwrap_or(2000.min(nodes.max(100))));
    if let Some(epochs) = epochs {
        scenario.epochs = epochs;
    }
    scenario.rule = rule;
    println!(
        "seed {seed}: {} nodes, {} blobs, k = {}, {} epochs{}",
        scenario.nodes,
        scenario.blobs,
        scenario.k,
        scenario.epochs,
        if rule == Rule::Node { "" } else { ", planted bug" }
    );
    let started = Instant::now();
    let outcome = run(&scenario);
    let wall = started.elapsed().as_secs_f64();
    match outcome {
        Ok(r) => {
            let simulated_s = r.simulated_ms as f64 / 1000.0;
            println!(
                "| nodes | blobs | steps | simulated s | copies moved | drops | messages (lost) | crashes | joins | destroyed | drained | partitions | predictions answered | wall s | node-s per wall s |"
            );
            println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
            println!(
                "| {} | {} | {} | {simulated_s:.0} | {} | {} | {} ({}) | {} | {} | {} | {}/{} | {} | {}/{} | {wall:.2} | {:.0} |",
                r.nodes,
                r.blobs,
                r.steps,
                r.copies_moved,
                r.drops,
                r.messages,
                r.lost,
                r.crashes,
                r.joins,
                r.destroys,
                r.drained,
                r.drains,
                r.partitions,
                r.answered,
                r.requests,
                f64::from(r.nodes) * simulated_s / wall,
            );
            ExitCode::SUCCESS
        }
        Err(violation) => {
            eprintln!("invariant violated: {violation}");
            let bug = if rule == Rule::Node { "" } else { " --planted-bug" };
            eprintln!(
                "replay: MASS_SIM_SEED={seed} cargo run --release -p mass-simulations -- --nodes {nodes} --blobs {} --epochs {}{bug}",
                scenario.blobs, scenario.epochs
            );
            ExitCode::FAILURE
        }
    }
}
