//! Awaiting `TaskHandle`s from async code against `join` from a thread, in the same run:
//! `WORKPOOL_BENCH_TASKS` (default 20,000) tiny tasks on an `Executor` of 2 workers.
//!
//! Scenarios (medians over `WORKPOOL_BENCH_RUNS` runs, default 5; the three alternate which goes
//! first in each run):
//!
//! * **join**: one thread submits every task, then `join`s each handle in order (the peer).
//! * **await**: one async task (a tokio runtime of one thread) submits every task, then
//!   `.await`s each handle in order.
//! * **await, spawned**: one tokio task per handle (`tokio::spawn(handle)`), each awaited:
//!   what a server that offloads one task per request does.
//!
//! Run: `CARGO_TARGET_DIR=target/bench-helper cargo bench -p workpool-benchmarks --bench async`

use serde::{Deserialize, Serialize};
use std::time::Instant;
use workpool::{Executor, Task};

#[expect(dead_code, reason = "shared with the other benches; this one has no scenario filter")]
mod common;
#[expect(dead_code, reason = "shared with the other benches; this one has no Python peers")]
#[path = "common/table.rs"]
mod table;
use common::{env_usize, fmt_rate};
use table::Table;

/// The tiny task: one multiplication.
#[derive(Serialize, Deserialize)]
struct Tiny(u64);

impl Task for Tiny {
    type Output = u64;
    fn run(self) -> u64 {
        self.0.wrapping_mul(self.0) + 1
    }
}

workpool::register!(Tiny);

fn expected(tasks: usize) -> u64 {
    (0..tasks as u64).map(|n| n.wrapping_mul(n) + 1).fold(0, u64::wrapping_add)
}

/// Tasks per second of `submit` then `join` of each, from this thread.
fn join(ex: &Executor, tasks: usize) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks as u64).map(|n| ex.submit(Tiny(n))).collect();
    let sum = handles.into_iter().map(|h| h.join().unwrap()).fold(0, u64::wrapping_add);
    let rate = tasks as f64 / start.elapsed().as_secs_f64();
    assert_eq!(sum, expected(tasks));
    rate
}

/// Tasks per second of `submit` then `.await` of each, from one async task.
fn await_each(runtime: &tokio::runtime::Runtime, ex: &Executor, tasks: usize) -> f64 {
    runtime.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks as u64).map(|n| ex.submit(Tiny(n))).collect();
        let mut sum = 0u64;
        for handle in handles {
            sum = sum.wrapping_add(handle.await.unwrap());
        }
        let rate = tasks as f64 / start.elapsed().as_secs_f64();
        assert_eq!(sum, expected(tasks));
        rate
    })
}

/// Tasks per second with one tokio task awaiting each handle.
fn await_spawned(runtime: &tokio::runtime::Runtime, ex: &Executor, tasks: usize) -> f64 {
    runtime.block_on(async {
        let start = Instant::now();
        let waits: Vec<_> = (0..tasks as u64).map(|n| tokio::spawn(ex.submit(Tiny(n)))).collect();
        let mut sum = 0u64;
        for wait in waits {
            sum = sum.wrapping_add(wait.await.unwrap().unwrap());
        }
        let rate = tasks as f64 / start.elapsed().as_secs_f64();
        assert_eq!(sum, expected(tasks));
        rate
    })
}

fn main() {
    workpool::init();
    let runs = env_usize("WORKPOOL_BENCH_RUNS", 5);
    let tasks = env_usize("WORKPOOL_BENCH_TASKS", 20_000);
    let ex = Executor::builder().workers(2).build().expect("executor");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // Warm: both worker processes started, the code paths paged in.
    join(&ex, 2_000);
    await_each(&runtime, &ex, 2_000);
    let (mut joined, mut awaited, mut spawned) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        for which in 0..3 {
            match (run + which) % 3 {
                0 => joined.push(join(&ex, tasks)),
                1 => awaited.push(await_each(&runtime, &ex, tasks)),
                _ => spawned.push(await_spawned(&runtime, &ex, tasks)),
            }
        }
    }
    println!("{tasks} tiny tasks on 2 workers, {runs} runs");
    let mut table = Table::default();
    table.row(
        &format!("await each of {tasks}, one async task (tasks/s, higher is better)"),
        &awaited,
        "join from a thread",
        &joined,
        fmt_rate,
    );
    table.row(
        &format!("one tokio task per handle, {tasks} (tasks/s)"),
        &spawned,
        "join from a thread",
        &joined,
        fmt_rate,
    );
    table.print();
}
