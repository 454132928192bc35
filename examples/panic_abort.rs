//! A task that panics, in a program built with `panic = "abort"`: the worker cannot catch the
//! panic, so it dies of SIGABRT, and its panic message is printed on stderr (the worker's hook
//! prints it in such builds: the report could not reach the executor). `.ci/run` checks both.
//!
//! ```text
//! cargo run --profile panic-abort --example panic_abort
//! ```

/// Panics with a message the check looks for.
#[workpool::task]
fn doomed(n: u64) -> u64 {
    assert!(n != 7, "doomed task {n} panicked on purpose");
    n
}

#[workpool::main]
fn main() {
    let ex = workpool::Executor::builder().workers(1).build().expect("executor");
    assert_eq!(ex.submit(Doomed { n: 1 }).join().expect("a task that does not panic"), 1);
    let err = ex.submit(Doomed { n: 7 }).join().expect_err("a panic under panic = \"abort\" ends the worker");
    println!("error: {err}");
    println!("worker death: {}", err.is_worker_death());
    // The executor carries on with a new worker.
    println!("after: {}", ex.submit(Doomed { n: 2 }).join().expect("the next task"));
}
