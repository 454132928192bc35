//! workpool in one screenful: the work-stealing thread pool (`join`, `scope`), the process
//! executor (`submit`, `map`), the joblib-style `Parallel`, and a worker crash that costs one
//! task and nothing else.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```

use std::time::Instant;
use workpool::{Backend, Executor, Parallel, ThreadPool};

/// `n²`, in a worker process: `#[workpool::task]` makes the task type `Square { n }`.
#[workpool::task]
fn square(n: u64) -> u64 {
    n * n
}

/// The length of the Collatz sequence that starts at `n`: a small CPU-bound job.
#[workpool::task]
fn collatz(n: u64) -> u32 {
    let (mut n, mut steps) = (n, 0);
    while n != 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

/// A task that takes its worker process down with it, as a bug in native code would (no
/// parameters: the task type is the unit struct `Abort`).
#[workpool::task]
fn abort() {
    std::process::abort()
}

fn fib(pool: &ThreadPool, n: u64) -> u64 {
    if n < 20 {
        return fib_seq(n);
    }
    let (a, b) = pool.join(|| fib(pool, n - 1), || fib(pool, n - 2));
    a + b
}

fn fib_seq(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib_seq(n - 1) + fib_seq(n - 2)
    }
}

fn ms(since: Instant) -> String {
    format!("{:.1} ms", since.elapsed().as_secs_f64() * 1e3)
}

#[workpool::main] // workpool::init() first: in worker processes it serves tasks and never returns
fn main() {
    println!("workpool quickstart on {} CPUs\n", workpool::cpu_count());

    println!("ThreadPool: work stealing inside this process");
    let pool = ThreadPool::new(0);
    let t = Instant::now();
    let f = fib(&pool, 32);
    println!("  join    fib(32) = {f}, forked recursively ({})", ms(t));
    let data: Vec<u64> = (1..=1_000_000).collect();
    let mut sums = [0u64; 8];
    let t = Instant::now();
    pool.scope(|s| {
        for (chunk, sum) in data.chunks(data.len() / sums.len()).zip(sums.iter_mut()) {
            s.spawn(move || *sum = chunk.iter().sum());
        }
    });
    println!("  scope   1 + 2 + … + 1000000 = {}, 8 borrowed chunks ({})", sums.iter().sum::<u64>(), ms(t));

    println!("\nExecutor: tasks in worker processes (forks of this binary, started again as a fork server)");
    let ex = Executor::reusable().expect("start the executor");
    let t = Instant::now();
    let seven = ex.submit(Square { n: 7 }).join().expect("7²");
    let pids: Vec<u32> = ex.workers().iter().filter_map(|w| w.pid).collect();
    println!("  submit  Square(7) = {seven} ({}, workers started on demand: pids {pids:?})", ms(t));
    let t = Instant::now();
    let total: u64 = ex.map((0..10_000).map(|n| Square { n })).map(|r| r.expect("a square")).sum();
    println!("  map     Σ i² for i < 10000 = {total}, 10000 tasks streamed in order ({})", ms(t));

    let crash = ex.submit(Abort).join().expect_err("abort() kills the worker");
    println!("  crash   {crash}");
    let after = ex.submit(Square { n: 9 }).join().expect("the pool carries on");
    println!("          …and the pool carries on: Square(9) = {after}");

    println!("\nParallel: joblib's one-liner, on processes or threads");
    for backend in [Backend::Processes, Backend::Threads] {
        let t = Instant::now();
        let steps = Parallel::new().backend(backend).run((1..=100_000).map(|n| Collatz { n })).expect("collatz");
        let (best, n) = steps.iter().zip(1u64..).max().expect("non-empty");
        println!(
            "  {:<9} longest Collatz chain below 100001: {best} steps from {n} (100000 tasks, auto-batched, {})",
            format!("{backend:?}"),
            ms(t)
        );
    }

    let workers = ex.workers();
    let starts: u64 = workers.iter().map(|w| w.starts).sum();
    let deaths: u64 = workers.iter().map(|w| w.deaths).sum();
    println!("\n{} worker slots, {starts} worker processes started, {deaths} died (the abort)", workers.len());
}
