//! The harnesses that need the crate's internals, for fuzzing and property tests (hidden;
//! compiled for the crate's own tests and under `--cfg fuzzing`, which `cargo fuzz` sets).
//!
//! Each harness takes arbitrary bytes and panics on a violated property:
//!
//! * [`scheduler::run`]: push / pop / steal / sleep / wake / terminate programs against a
//!   reference model of the work-stealing scheduler and its sleep protocol.
//! * [`frames::run`]: byte streams through the wire's readers and parsers and the worker's
//!   task handling.
//! * [`pool::run`]: trees of `join`, `scope` and `spawn` on the thread pool (part of the
//!   `scheduler` fuzz target).
//!
//! The fourth harness, programs of submits, cancels, crashes, timeouts and drops against a real
//! process executor, needs only the public API: it lives in `tests/harness/executor.rs`, and
//! both `tests/fuzz_executor.rs` and the `executor` fuzz target include it (with [`input`]).
//!
//! The fuzz targets in `fuzz/` are one-line wrappers around these; the seeded unit tests here
//! feed them byte strings from `crate::rng::XorShift`. See `fuzz/README.md` for how to run the
//! fuzzers.

#![cfg(any(test, fuzzing))]
#![doc(hidden)]

pub mod alloc;
pub mod frames;
pub mod input;
pub mod pool;
pub mod scheduler;

use std::cell::Cell;
use std::sync::Once;

thread_local! {
    /// Set around code whose panics are expected (the frame harness's tasks).
    pub(crate) static EXPECTED_PANIC: Cell<bool> = const { Cell::new(false) };
}

/// The message prefix of panics the harnesses cause on purpose, on any thread.
const EXPECTED: &str = "workpool-fuzz: expected panic";

/// How many seeded cases a test runs: fewer under Miri, which is orders of magnitude slower.
#[cfg(test)]
pub(crate) fn cases(normal: u64, miri: u64) -> u64 {
    if cfg!(miri) {
        miri
    } else {
        normal
    }
}

/// Panics on purpose (quietly, see [`install_quiet_panic_hook`]).
pub(crate) fn expected_panic(what: &str) -> ! {
    std::panic::panic_any(format!("{EXPECTED}: {what}"))
}

/// Keeps expected panics quiet and records where they happened (as a worker's hook does, so
/// `worker::run_one` can report it); every other panic goes to the previous hook, which in a
/// fuzz target aborts: that is how libFuzzer sees a failed property, even one raised on
/// another thread.
pub(crate) fn install_quiet_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let text = payload.downcast_ref::<String>().map(String::as_str).or(payload.downcast_ref::<&str>().copied());
            if EXPECTED_PANIC.with(Cell::get) || text.is_some_and(|t| t.starts_with(EXPECTED)) {
                let location = info.location().map(|l| l.to_string());
                crate::task::PANIC_LOCATION.with(|slot| *slot.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}
