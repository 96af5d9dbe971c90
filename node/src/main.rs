//! The `mass` binary: parse the command line, run it, turn errors into one
//! readable line and an exit code that says what kind of failure it was
//! (`mass_node::cli::exit`; clap exits 2 on a usage error itself).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_sigpipe();
    keep_freed_memory();
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

/// glibc gives big blocks (from 128 KiB, a threshold that rises only as far
/// as the largest block freed) their own mappings and returns the top of the
/// heap past 128 KiB free, so every shard read, feature matrix and batch of
/// a job came back as fresh pages, faulted in one at a time: a fifth of a
/// scoring node's samples. Blocks up to 32 MiB (glibc's most) now come from
/// the heap, and up to 64 MiB free stays with it for the next job. Offline
/// scoring of MNIST on one node: 0.060-0.067 s -> 0.038-0.041 s (BENCHMARKS.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn keep_freed_memory() {
    // SAFETY: called first thing in main, before any thread exists or any
    // memory is handed out; mallopt only sets the allocator's thresholds.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}
