//! Programs of submits, cancels, crashes, timeouts and drops against a real executor (see
//! `workpool::fuzzing::executor`).
//!
//! The executor starts its workers by running this very binary again. libFuzzer owns `main`,
//! but it calls `LLVMFuzzerInitialize` (this macro's `init` block) before it parses any
//! argument, so `workpool::init()` there turns a re-executed copy into a worker before libFuzzer
//! sees its (empty) command line; it never returns in a worker.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(
    init: {
        workpool::init();
        // libFuzzer's `main` is not Rust's, so SIGPIPE still has its default action (terminate)
        // here, where Rust programs ignore it. The executor writes to worker sockets with plain
        // writes; a worker that just died must give it EPIPE, not kill the fuzzer. (Set
        // WORKPOOL_FUZZ_DEFAULT_SIGPIPE to see what happens without this; see fuzz/README.md.)
        if std::env::var_os("WORKPOOL_FUZZ_DEFAULT_SIGPIPE").is_none() {
            // SAFETY: setting a signal's disposition to SIG_IGN has no memory-safety preconditions.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        }
    },
    |data: &[u8]| {
        let limits = workpool::fuzzing::executor::Limits {
            max_ops: 16,
            task_timeout: Duration::from_millis(300),
            hang: Duration::from_secs(30),
        };
        workpool::fuzzing::executor::run(data, limits);
    }
);
