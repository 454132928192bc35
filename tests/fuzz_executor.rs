//! The executor property of `tests/harness/executor.rs` (also the `executor` fuzz target) as a
//! seeded test: random programs of submits, cancels, crashing tasks, timeouts and drops against
//! real executors with 1–2 worker processes, each checked for exactly-once accounting.
//!
//! The harness (`tests/harness/executor.rs`) uses only the public API, through the `api` module
//! below; the `executor` fuzz target includes the same file.

workpool::test_support!();

/// What the included harness calls `super::api`.
mod api {
    pub(crate) use workpool::register;
    pub(crate) use workpool::{ErrorKind, Executor, Shutdown, Task, TaskError, TaskHandle};
}

#[allow(dead_code)]
#[path = "../src/rng.rs"]
mod rng;

#[allow(dead_code, unreachable_pub)]
#[path = "../src/fuzzing/input.rs"]
mod input;

#[allow(dead_code, unreachable_pub)]
#[path = "harness/executor.rs"]
mod executor;

use executor::{Limits, Summary};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The programs check that no worker process outlives them, so they must not overlap.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
#[cfg_attr(miri, ignore = "starts processes")]
fn seeded_executor_programs() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let limits = Limits { max_ops: 20, task_timeout: Duration::from_millis(300), hang: Duration::from_secs(30) };
    let budget = Duration::from_secs(25);
    let started = Instant::now();
    let mut rng = rng::XorShift::new(0xE8EC_0001);
    let mut total = Summary::default();
    let mut programs = 0;
    while programs < 60 && (programs < 8 || started.elapsed() < budget) {
        let data = rng.bytes(48);
        let s = executor::run(&data, limits);
        programs += 1;
        total.tasks += s.tasks;
        total.ok += s.ok;
        total.panics += s.panics;
        total.deaths += s.deaths;
        total.timeouts += s.timeouts;
        total.cancelled += s.cancelled;
        total.dropped += s.dropped;
    }
    eprintln!("{programs} programs in {:?}: {total:?}", started.elapsed());
    assert!(total.ok > 0 && total.panics > 0 && total.deaths > 0, "the programs exercised too little: {total:?}");
    executor::wait_for_no_workers(Duration::from_secs(10));
}

#[test]
#[cfg_attr(miri, ignore = "starts processes")]
fn a_program_with_every_fault() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // flags: 2 workers, a task timeout; then submits of each kind, a cancel, a drop, a join,
    // an executor drop, a shutdown, a map.
    let data = [
        0b0000_0011, // 2 workers, timeout
        0,
        0,
        7,
        0, // square 7
        5,
        0, // panic
        6,
        0, // abort
        7,
        0, // exit
        8,
        0, // hang
        4,
        0,
        3, // nap 3 ms
        9,
        5, // cancel the nap (if it is still queued)
        11,
        0, // drop the square's handle
        12,
        0, // join the panic
        14,
        0, // drop the executor
        0,
        0,
        9,
        0, // square 9
        16,
        5, // map of 5
        15,
        0, // shutdown, cancelling
        0,
        0,
        2,
        0, // square 2
    ];
    let s = executor::run(&data, Limits::default());
    assert!(s.panics == 1 && s.deaths == 2 && s.timeouts >= 1, "{s:?}");
}
