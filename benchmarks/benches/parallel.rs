//! `workpool::Parallel` (joblib-style front end, auto-batching, progress bar off), measured
//! against `rayon` in the same run and against joblib/loky when their figures are supplied.
//!
//! Scenarios (medians over `WORKPOOL_BENCH_RUNS` runs, default 7):
//!
//! * **tiny**: `WORKPOOL_BENCH_TINY` (default 1,000,000) tiny tasks through
//!   `Parallel::new().n_jobs(2)` on processes and on threads, tasks/s, against a 2-thread rayon
//!   pool doing `into_par_iter().map(..).collect()` (the in-process lower bound).
//! * **cpu**: `WORKPOOL_BENCH_CPU_TASKS` (default 40) tasks that each spin for about
//!   `WORKPOOL_BENCH_CPU_MS` (default 15) ms of pure computation: sequential time (`n_jobs(1)`,
//!   run inline) over `n_jobs(2)` time, on processes and on threads, and, as a control for
//!   what the shared machine gave at that moment, over the time of the same tasks split
//!   statically across two plain `std::thread`s. Each run measures all four back to back and
//!   yields its own speedups; the table gives the median speedups over
//!   `WORKPOOL_BENCH_CPU_RUNS` runs (default max(runs, 11)).
//!
//! Python peers: `python3 /work/shared/bench/peers.py 20000` has joblib's auto-batched rate and
//! loky's CPU-bound speedup, but only at 20,000 tasks and with no loky chunked map; the 1M-task
//! peers come from the one-liner given in /work/notes/bench.md. Put either output (lines of
//! `<library> <scenario> <value> <unit>`) in a file and set `WORKPOOL_BENCH_PEERS=file` (several
//! files: separate with `:`) to add them as rows.
//! `WORKPOOL_BENCH_ONLY=tiny,cpu` picks scenarios.
//!
//! Run: `CARGO_TARGET_DIR=target/bench-helper cargo bench -p workpool-benchmarks --bench parallel`

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::time::{Duration, Instant};
use workpool::{Backend, Parallel, Task};

mod common;
#[path = "common/table.rs"]
mod table;
use common::{env_usize, fmt_rate, median, selected};
use table::{python_peers, Table};

/// The tiny task: one multiplication.
#[derive(Serialize, Deserialize)]
struct Tiny(u64);

impl Task for Tiny {
    type Output = u64;
    fn run(self) -> u64 {
        tiny(self.0)
    }
}

/// Pure computation: `iters` rounds of xorshift64*.
#[derive(Serialize, Deserialize)]
struct Spin {
    iters: u64,
    seed: u64,
}

impl Task for Spin {
    type Output = u64;
    fn run(self) -> u64 {
        spin(self.iters, self.seed)
    }
}

workpool::register!(Tiny, Spin);

fn tiny(x: u64) -> u64 {
    x.wrapping_mul(x) + 1
}

fn spin(iters: u64, seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..iters {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x = black_box(x.wrapping_mul(0x2545_f491_4f6c_dd1d));
    }
    x
}

const JOBS: isize = 2;
/// The in-process floor: a loop rayon splits in two and the compiler vectorizes, with no cost
/// per task at all. A reference point, not a like-for-like peer.
const RAYON_REF: &str = "reference: rayon par_iter().map().collect()";

fn main() {
    workpool::init();
    let runs = env_usize("WORKPOOL_BENCH_RUNS", 7);
    let n_tiny = env_usize("WORKPOOL_BENCH_TINY", 1_000_000);
    let cpu_tasks = env_usize("WORKPOOL_BENCH_CPU_TASKS", 40);
    let cpu_ms = env_usize("WORKPOOL_BENCH_CPU_MS", 15);
    let peers = python_peers();
    let procs = Parallel::new().n_jobs(JOBS);
    let threads = procs.clone().backend(Backend::Threads);
    let rayon_pool = rayon::ThreadPoolBuilder::new().num_threads(JOBS as usize).build().expect("rayon pool");
    println!("workpool::Parallel n_jobs({JOBS}) vs rayon / joblib / loky; {runs} runs, medians");
    let mut table = Table::default();

    // (a) tiny tasks, auto-batched.
    if selected("tiny") {
        let expected: u64 = (0..n_tiny as u64).map(tiny).fold(0, u64::wrapping_add);
        let check = |out: Vec<u64>| assert_eq!(out.into_iter().fold(0, u64::wrapping_add), expected);
        // Warm-up: start the reusable executor's workers and the thread pool.
        check(procs.run((0..n_tiny as u64).map(Tiny)).expect("processes"));
        check(threads.run((0..n_tiny as u64).map(Tiny)).expect("threads"));
        let (mut p, mut t, mut r) = (vec![], vec![], vec![]);
        for _ in 0..runs {
            let rate = |d: Duration| n_tiny as f64 / d.as_secs_f64();
            p.push(rate(time(|| check(procs.run((0..n_tiny as u64).map(Tiny)).expect("processes")))));
            t.push(rate(time(|| check(threads.run((0..n_tiny as u64).map(Tiny)).expect("threads")))));
            r.push(rate(time(|| {
                check(rayon_pool.install(|| (0..n_tiny as u64).into_par_iter().map(tiny).collect::<Vec<u64>>()))
            })));
        }
        let name = format!("{n_tiny} tiny tasks, processes, auto-batched, tasks/s");
        table.row(&name, &p, RAYON_REF, &r, fmt_rate);
        table.python(&peers, "joblib parallel_auto_batch_1M", &p, fmt_rate);
        table.python(&peers, "joblib parallel_auto_batch", &p, fmt_rate);
        table.python(&peers, "loky map_chunksize1000_1M", &p, fmt_rate);
        table.python(&peers, "loky map_chunksize100_1M", &p, fmt_rate);
        let name = format!("{n_tiny} tiny tasks, threads, auto-batched, tasks/s");
        table.row(&name, &t, RAYON_REF, &r, fmt_rate);
        table.python(&peers, "joblib threads_auto_batch_1M", &t, fmt_rate);
        table.python(&peers, "joblib threads_auto_batch", &t, fmt_rate);
    }

    // (b) CPU-bound speedup.
    if selected("cpu") {
        let iters = calibrate(Duration::from_millis(cpu_ms as u64));
        let make = || (0..cpu_tasks as u64).map(|seed| Spin { iters, seed });
        let expected: Vec<u64> = Parallel::new().n_jobs(1).run(make()).expect("inline");
        procs.run(make()).expect("warm-up");
        let (mut seq, mut sp_p, mut sp_t, mut sp_c) = (vec![], vec![], vec![], vec![]);
        for _ in 0..env_usize("WORKPOOL_BENCH_CPU_RUNS", runs.max(11)) {
            let inline = Parallel::new().n_jobs(1);
            let s = time(|| assert_eq!(inline.run(make()).expect("inline"), expected));
            let p = time(|| assert_eq!(procs.run(make()).expect("processes"), expected));
            let t = time(|| assert_eq!(threads.run(make()).expect("threads"), expected));
            let c = time(|| assert_eq!(two_plain_threads(iters, cpu_tasks as u64), expected));
            seq.push(s.as_secs_f64() * 1e3);
            sp_p.push(s.as_secs_f64() / p.as_secs_f64());
            sp_t.push(s.as_secs_f64() / t.as_secs_f64());
            sp_c.push(s.as_secs_f64() / c.as_secs_f64());
        }
        println!(
            "cpu: {cpu_tasks} tasks x {iters} rounds; sequential (n_jobs(1)) median {:.0} ms ({:.1} ms/task)",
            median(&seq),
            median(&seq) / cpu_tasks as f64
        );
        let fmt_x = |v: f64| format!("{v:.2}x");
        let name = format!("CPU-bound speedup, {cpu_tasks} x ~{cpu_ms} ms tasks, processes (target 1.95x)");
        table.row(&name, &sp_p, "ideal", &[2.0], fmt_x);
        table.row("", &sp_p, CONTROL, &sp_c, fmt_x);
        table.python(&peers, "loky cpu_scaling_speedup", &sp_p, fmt_x);
        let name = format!("CPU-bound speedup, {cpu_tasks} x ~{cpu_ms} ms tasks, threads");
        table.row(&name, &sp_t, "ideal", &[2.0], fmt_x);
        table.row("", &sp_t, CONTROL, &sp_c, fmt_x);
    }

    table.print();
}

/// The control for the speedup: the same tasks split statically over two plain threads, which
/// shows what the machine gave in that run (other load on a shared machine lowers it).
const CONTROL: &str = "control: same split over 2 std threads";

fn two_plain_threads(iters: u64, tasks: u64) -> Vec<u64> {
    let half = |parity: u64| move || (0..tasks).filter(|i| i % 2 == parity).map(|seed| spin(iters, seed)).collect();
    let (even, odd): (Vec<u64>, Vec<u64>) = std::thread::scope(|s| {
        let odd = s.spawn(half(1));
        (half(0)(), odd.join().expect("control thread"))
    });
    let (mut even, mut odd) = (even.into_iter(), odd.into_iter());
    (0..tasks).map(|i| if i % 2 == 0 { even.next() } else { odd.next() }.expect("one per task")).collect()
}

/// Rounds of [`spin`] that take about `target` on this machine (best of a few tries).
fn calibrate(target: Duration) -> u64 {
    let probe = 1_000_000;
    let best = (0..5).map(|_| time(|| _ = black_box(spin(probe, 1)))).min().expect("tries");
    (probe as f64 * target.as_secs_f64() / best.as_secs_f64()) as u64
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}
