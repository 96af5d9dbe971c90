//! The `mass` binary: parse the command line, run it, turn errors into one
//! readable line and an exit code that says what kind of failure it was
//! (`mass_node::cli::exit`; clap exits 2 on a usage error itself).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = mass_node::cli::Cli::parse();
    match mass_node::cli::run(cli) {
        Ok(()) => ExitCode::from(mass_node::cli::exit::OK),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(mass_node::cli::exit::code(&error))
        }
    }
}

/// Rust ignores SIGPIPE, which turns `mass data show | head` into a panic on
/// the next print. A command-line tool should end quietly instead, as `cat` does.
#[allow(unsafe_code)]
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; setting a
    // signal's disposition to the default has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
