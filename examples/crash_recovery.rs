//! Crash isolation: a batch in which some tasks segfault, abort, exit, panic or hang. Each of
//! them fails on its own with an error that says what happened; every other task in the batch
//! still gets its result; dead and hung workers are replaced without being asked.
//!
//! ```text
//! cargo run --release --example crash_recovery
//! ```

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use workpool::{ErrorKind, Executor, Task, TaskError};

/// What a job does: mostly real work, sometimes one of the ways native code dies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
enum Job {
    /// Sum of the digits of every number below `n`.
    Work(u64),
    Segfault,
    Abort,
    Exit(i32),
    Panic,
    Hang,
}

impl Task for Job {
    type Output = u64;
    fn run(self) -> u64 {
        match self {
            Job::Work(n) => (0..n).map(digit_sum).sum(),
            Job::Segfault => segfault(),
            Job::Abort => std::process::abort(),
            Job::Exit(code) => std::process::exit(code),
            Job::Panic => panic!("index out of range: the len is 3 but the index is 7"),
            Job::Hang => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
        }
    }
}

workpool::register!(Job);

fn digit_sum(mut n: u64) -> u64 {
    let mut sum = 0;
    while n > 0 {
        sum += n % 10;
        n /= 10;
    }
    sum
}

/// Dies of SIGSEGV, as a bad pointer in a C library would.
fn segfault() -> ! {
    // A genuine invalid access would be undefined behaviour in Rust; raising the signal ends the
    // process the same way. Rust's runtime catches SIGSEGV (to report stack overflows) and
    // returns from a raised one, so the default action is restored first.
    // SAFETY: plain libc calls with valid arguments.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
    unreachable!("SIGSEGV with its default action ends the process")
}

/// One line per failure kind.
fn describe(e: &TaskError) -> String {
    match e.kind() {
        ErrorKind::WorkerDeath { cause, pid } => format!("worker {pid} died: {cause}"),
        ErrorKind::Panic { message, .. } => format!("panicked: {message} (the worker lived on)"),
        ErrorKind::Timeout { limit } => format!("ran past the {limit:?} task timeout: its worker was killed"),
        _ => e.to_string(),
    }
}

fn main() {
    workpool::init();
    let executor =
        Executor::builder().workers(2).task_timeout(Duration::from_secs(1)).build().expect("start the executor");

    let mut jobs: Vec<Job> = (0..24).map(|i| Job::Work(20_000 + 1_000 * i)).collect();
    for (at, bad) in [(3, Job::Segfault), (7, Job::Abort), (11, Job::Exit(3)), (15, Job::Panic), (19, Job::Hang)] {
        jobs.insert(at, bad);
    }
    println!("{} tasks on 2 worker processes (task timeout 1 s); 5 of them are bad:\n", jobs.len());

    let start = Instant::now();
    let results: Vec<Result<u64, TaskError>> = executor.map(jobs.iter().copied()).collect();
    let elapsed = start.elapsed();

    let mut good = 0;
    for (i, (job, result)) in jobs.iter().zip(&results).enumerate() {
        match result {
            Ok(_) => good += 1,
            Err(e) => println!("  task {i:>2} {:<10} → {}", format!("{job:?}"), describe(e)),
        }
    }
    let work: u64 = results.iter().filter_map(|r| r.as_ref().ok()).sum();
    println!("\n  the other {good} tasks succeeded (their digit sums add up to {work}) in {elapsed:.2?}");

    println!("\nworker slots afterwards:");
    for (slot, w) in executor.workers().iter().enumerate() {
        let pid = w.pid.map_or("-".into(), |p| p.to_string());
        println!(
            "  slot {slot}: pid {pid:<7} tasks run {:>2}, processes started {}, died {}",
            w.tasks_run, w.starts, w.deaths
        );
    }
    let again = executor.submit(Job::Work(10)).join().expect("the executor is healthy");
    println!("\nand it keeps working: Work(10) = {again}");
}
