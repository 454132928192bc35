//! Programs of submits, cancels, crashes, timeouts and drops against a real executor (the
//! harness in `tests/harness/executor.rs`, which `tests/fuzz_executor.rs` runs as seeded tests).
//!
//! The executor starts its workers by running this very binary again. libFuzzer owns `main`,
//! but it calls `LLVMFuzzerInitialize` (this macro's `init` block) before it parses any
//! argument, so `workpool::init()` there turns a re-executed copy into a worker before libFuzzer
//! sees its (empty) command line; it never returns in a worker.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;

/// What the harness calls `super::api`: workpool's public API.
mod api {
    pub(crate) use workpool::register;
    pub(crate) use workpool::{ErrorKind, Executor, Shutdown, Task, TaskError, TaskHandle};
}

#[allow(dead_code)]
#[path = "../../src/fuzzing/input.rs"]
mod input;

#[allow(dead_code)]
#[path = "../../tests/harness/executor.rs"]
mod executor;

/// libFuzzer's `main` is not Rust's, so SIGPIPE keeps its default action (terminate) here, as in
/// any C or Python host. The executor must never raise it (it sends with MSG_NOSIGNAL); if it
/// does, abort, so that libFuzzer reports the input instead of the process vanishing.
extern "C" fn on_sigpipe(_: libc::c_int) {
    let message = b"workpool fuzz: SIGPIPE raised in the submitting process\n";
    // SAFETY: write(2) and abort(3) are async-signal-safe; the buffer is valid.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
        libc::abort();
    }
}

fuzz_target!(
    init: {
        workpool::init();
        // Only the fuzzing process gets here: workers never return from init().
        // SAFETY: installs a handler that only makes async-signal-safe calls.
        unsafe { libc::signal(libc::SIGPIPE, on_sigpipe as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    },
    |data: &[u8]| {
        let limits = executor::Limits {
            max_ops: 16,
            task_timeout: Duration::from_millis(300),
            hang: Duration::from_secs(30),
        };
        executor::run(data, limits);
    }
);
