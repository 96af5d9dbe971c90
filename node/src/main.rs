//! The `mass` binary: parse the command line, run it, turn errors into one
//! readable line and a non-zero exit.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mass_node::cli::Cli::parse();
    match mass_node::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
