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

/// glibc hands every freed block past its mmap threshold (and any free top
/// of its heaps past the trim threshold) back to the kernel, so the next
/// block of that size faults in and zeroes its pages again: page faults
/// were 11% of a bagging job's samples (a shard's 22 MB feature matrix,
/// made and dropped by each task). Blocks up to 32 MB (glibc's most) come
/// from the heaps, which keep up to 256 MB free before giving any back.
#[allow(unsafe_code)]
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called first thing in main, before any thread or allocation
    // that the settings could race with; mallopt only sets malloc's knobs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
