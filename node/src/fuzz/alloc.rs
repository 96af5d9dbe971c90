//! A cap on single allocations while a fuzz target runs, so that a value
//! claiming a huge size is caught even when the machine could satisfy it
//! (an 8 GiB buffer is a bug on any node, whether or not it aborts here).
//! The node's test binary allocates through [`Capped`]; outside an armed
//! target it is the system allocator plus one comparison.
//!
//! An allocator must not unwind, so a target over the cap cannot fail its
//! test by panicking: the allocator writes the run and its input (formatted
//! before the run) to stderr without allocating, then a backtrace (disarmed,
//! its small allocations pass), then aborts the test binary. cargo-fuzz has its own limit (`-malloc_limit_mb`).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    sync::atomic::{AtomicUsize, Ordering},
};

/// The default cap: 256 MiB. Targets work on inputs of at most a few KiB
/// and a fixture of 48 rows; nothing honest comes near it.
pub const DEFAULT_CAP: usize = 256 << 20;

static CAP: AtomicUsize = AtomicUsize::new(DEFAULT_CAP);

thread_local! {
    /// What to print if the running target goes over the cap (the bytes of
    /// the caller's note); none, and the cap off, outside a target.
    static ARMED: Cell<Option<(*const u8, usize)>> = const { Cell::new(None) };
}

/// Sets the cap for every thread (`MASS_FUZZ_ALLOC_CAP`).
pub fn set_cap(bytes: usize) {
    CAP.store(bytes, Ordering::Relaxed);
}

/// Runs `f` with the cap on for this thread; `note` (the run and its
/// input) is what an allocation over the cap prints.
pub fn armed<R>(note: &str, f: impl FnOnce() -> R) -> R {
    // The pointer leaves the thread-local (on return or unwind) before
    // `note` can be dropped.
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            ARMED.with(|a| a.set(None));
        }
    }
    ARMED.with(|a| a.set(Some((note.as_ptr(), note.len()))));
    let _disarm = Disarm;
    f()
}

/// The system allocator, with the cap checked on armed threads.
pub struct Capped;

fn check(size: usize) {
    let cap = CAP.load(Ordering::Relaxed);
    if size <= cap {
        return;
    }
    let Some((note, len)) = ARMED.try_with(|a| a.get()).ok().flatten() else { return };
    // SAFETY: set by `armed` from a `&str` that outlives the armed call.
    let note = unsafe { std::slice::from_raw_parts(note, len) };
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = size;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for part in [
        &b"\nfuzz: a target asked for "[..],
        &digits[at..],
        b" bytes in one allocation, over the cap (MASS_FUZZ_ALLOC_CAP); ",
        note,
        b"\n",
    ] {
        // SAFETY: writes initialized bytes to stderr; no allocation.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
    // Disarmed, the backtrace's own small allocations pass straight through.
    let _ = ARMED.try_with(|a| a.set(None));
    eprintln!("{}", std::backtrace::Backtrace::force_capture());
    std::process::abort();
}

// SAFETY: every call is passed to `System` unchanged; `check` reads atomics
// and a const-initialized thread-local, and allocates only (disarmed) on its
// way to aborting.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
