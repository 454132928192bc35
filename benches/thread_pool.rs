//! `workpool::ThreadPool` against `rayon`, both with 2 threads, measured in the same run.
//!
//! Scenarios (medians over `WORKPOOL_BENCH_RUNS` runs, default 11; the two pools alternate
//! which goes first in each run):
//!
//! * **spawn**: `WORKPOOL_BENCH_SPAWNS` (default 1,000,000) tiny closures through
//!   `scope`/`spawn`, each incrementing an `AtomicUsize`; throughput in spawns/s.
//! * **fib**: `fib(WORKPOOL_BENCH_FIB)` (default 30) by plain recursive `join`, no sequential
//!   cutoff; time in ms.
//! * **idle**: both pools sit idle, in the same window, for `WORKPOOL_BENCH_IDLE_MS` (default
//!   3000) after some work (`WORKPOOL_BENCH_IDLE_RUNS` windows, default 3);
//!   CPU time of each pool's own threads (from `/proc/self/task/*/schedstat`, in ns), as % of
//!   one core, and how often those threads were scheduled (wake-ups/s). The process-wide CPU
//!   time (`getrusage`) over the same window is printed as a cross-check.
//!
//! `WORKPOOL_BENCH_ONLY=spawn,fib,idle` picks scenarios (rows of skipped ones show NaN).
//!
//! Run: `CARGO_TARGET_DIR=target/bench-helper cargo bench --bench thread_pool`

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use workpool::ThreadPool;

mod common;
use common::{env_usize, fmt_rate, median, selected};

/// Threads per pool.
const THREADS: usize = 2;
/// Thread-name prefixes, to tell the pools' threads apart in `/proc/self/task`.
const WORKPOOL_PREFIX: &str = "wp-bench-";
const RAYON_PREFIX: &str = "rayon-bench-";

fn main() {
    workpool::init();
    let runs = env_usize("WORKPOOL_BENCH_RUNS", 11);
    let spawns = env_usize("WORKPOOL_BENCH_SPAWNS", 1_000_000);
    let fib_n = env_usize("WORKPOOL_BENCH_FIB", 30) as u64;
    let idle_ms = env_usize("WORKPOOL_BENCH_IDLE_MS", 3000) as u64;

    let wp = ThreadPool::builder()
        .num_threads(THREADS)
        .thread_name(|i| format!("{WORKPOOL_PREFIX}{i}"))
        .build()
        .expect("workpool pool");
    let ry = rayon::ThreadPoolBuilder::new()
        .num_threads(THREADS)
        .thread_name(|i| format!("{RAYON_PREFIX}{i}"))
        .build()
        .expect("rayon pool");

    println!("workpool::ThreadPool vs rayon {THREADS} threads; {runs} runs, medians; spawns={spawns}, fib({fib_n})");
    let mut table = Table::default();

    // Warm-up: fault in stacks and allocator arenas on both pools.
    spawn_workpool(&wp, spawns / 10);
    spawn_rayon(&ry, spawns / 10);

    // (a) scope/spawn throughput.
    let (mut a_wp, mut a_ry) = (Vec::new(), Vec::new());
    for run in 0..runs * selected("spawn") as usize {
        let (w, r) = alternate(run, || spawn_workpool(&wp, spawns), || spawn_rayon(&ry, spawns));
        a_wp.push(spawns as f64 / w.as_secs_f64());
        a_ry.push(spawns as f64 / r.as_secs_f64());
    }
    table.row("scope.spawn tiny closures, spawns/s (higher is better)", &a_wp, &a_ry, fmt_rate);

    // (b) fork-join fib.
    let expected = fib_seq(fib_n);
    let (mut b_wp, mut b_ry) = (Vec::new(), Vec::new());
    for run in 0..runs * selected("fib") as usize {
        let (w, r) = alternate(
            run,
            || assert_eq!(fib_workpool(&wp, fib_n), expected),
            || assert_eq!(ry.install(|| fib_rayon(fib_n)), expected),
        );
        b_wp.push(w.as_secs_f64() * 1e3);
        b_ry.push(r.as_secs_f64() * 1e3);
    }
    table.row(&format!("join fib({fib_n}), ms (lower is better)"), &b_wp, &b_ry, |v| format!("{v:.1} ms"));

    // (c) idle CPU: both pools idle in the same window, each measured on its own threads.
    let idle_runs = env_usize("WORKPOOL_BENCH_IDLE_RUNS", 3) * selected("idle") as usize;
    let (mut c_wp, mut c_ry, mut w_wp, mut w_ry, mut c_all) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..idle_runs {
        spawn_workpool(&wp, spawns / 10);
        spawn_rayon(&ry, spawns / 10);
        let before = (thread_stats(WORKPOOL_PREFIX), thread_stats(RAYON_PREFIX), process_cpu());
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(idle_ms));
        let secs = start.elapsed().as_secs_f64();
        let after = (thread_stats(WORKPOOL_PREFIX), thread_stats(RAYON_PREFIX), process_cpu());
        assert_eq!((after.0.threads, after.1.threads), (THREADS, THREADS), "each pool's threads are found by name");
        c_wp.push(100.0 * (after.0.cpu_ns - before.0.cpu_ns) as f64 / 1e9 / secs);
        c_ry.push(100.0 * (after.1.cpu_ns - before.1.cpu_ns) as f64 / 1e9 / secs);
        w_wp.push((after.0.slices - before.0.slices) as f64 / secs);
        w_ry.push((after.1.slices - before.1.slices) as f64 / secs);
        c_all.push(100.0 * (after.2 - before.2).as_secs_f64() / secs);
    }
    table.row(&format!("idle pool CPU over {idle_ms} ms, % of a core (lower)"), &c_wp, &c_ry, |v| format!("{v:.3}%"));
    table.row("idle pool wake-ups per s (lower)", &w_wp, &w_ry, |v| format!("{v:.1}"));
    table.print("rayon");
    println!(
        "(idle: process-wide CPU incl. both pools and the sleeping main thread: {:.3}% of a core, median of {idle_runs})",
        median(&c_all)
    );
}

/// Runs `a` and `b` once each, `a` first on even runs; returns their wall times.
fn alternate(run: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (Duration, Duration) {
    if run % 2 == 0 {
        let ta = time(&mut a);
        (ta, time(&mut b))
    } else {
        let tb = time(&mut b);
        (time(&mut a), tb)
    }
}

fn time(f: &mut impl FnMut()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn spawn_workpool(pool: &ThreadPool, n: usize) {
    let counter = AtomicUsize::new(0);
    pool.scope(|s| {
        for _ in 0..n {
            s.spawn(|| {
                counter.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    assert_eq!(counter.load(Ordering::Relaxed), n);
}

fn spawn_rayon(pool: &rayon::ThreadPool, n: usize) {
    let counter = AtomicUsize::new(0);
    pool.scope(|s| {
        for _ in 0..n {
            s.spawn(|_| {
                counter.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    assert_eq!(counter.load(Ordering::Relaxed), n);
}

fn fib_workpool(pool: &ThreadPool, n: u64) -> u64 {
    if n < 2 {
        return black_box(n);
    }
    let (a, b) = pool.join(|| fib_workpool(pool, n - 1), || fib_workpool(pool, n - 2));
    a + b
}

fn fib_rayon(n: u64) -> u64 {
    if n < 2 {
        return black_box(n);
    }
    let (a, b) = rayon::join(|| fib_rayon(n - 1), || fib_rayon(n - 2));
    a + b
}

fn fib_seq(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib_seq(n - 1) + fib_seq(n - 2)
    }
}

/// CPU time and scheduling count summed over this process's threads whose name starts with a
/// prefix.
#[derive(Clone, Copy, Default)]
struct ThreadStats {
    cpu_ns: u64,
    /// Times the threads were put on a CPU (`schedstat` field 3): wake-ups, for blocked threads.
    slices: u64,
    /// Threads that matched.
    threads: usize,
}

fn thread_stats(prefix: &str) -> ThreadStats {
    let mut total = ThreadStats::default();
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    for task in tasks.flatten() {
        let path = task.path();
        // comm is truncated to 15 bytes; the prefixes are shorter than that.
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else { continue };
        if !comm.starts_with(prefix) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("schedstat")) else { continue };
        let fields: Vec<u64> = stat.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        if let [cpu_ns, _wait_ns, slices] = fields[..] {
            total.cpu_ns += cpu_ns;
            total.slices += slices;
            total.threads += 1;
        }
    }
    total
}

/// User + system CPU time of the whole process.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct we hand it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

// ---- table and statistics (each bench binary carries its own copy) ----

/// Rows of: scenario, workpool median, peer median, the median of the per-run ratios
/// workpool / peer (each run measures both, so noise between runs cancels), and the min .. max of
/// workpool's runs. Whether a high or a low ratio is better is said in the scenario's name.
#[derive(Default)]
struct Table {
    rows: Vec<[String; 5]>,
}

impl Table {
    fn row(&mut self, name: &str, wp: &[f64], peer: &[f64], fmt: fn(f64) -> String) {
        let ratios: Vec<f64> = wp.iter().zip(peer).map(|(w, p)| w / p).collect();
        let ratio = median(&ratios);
        let min = wp.iter().copied().fold(f64::INFINITY, f64::min);
        let max = wp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        self.rows.push([
            name.to_string(),
            fmt(median(wp)),
            fmt(median(peer)),
            if ratio.is_finite() { format!("{ratio:.2}x") } else { "n/a".into() },
            format!("{} .. {}", fmt(min), fmt(max)),
        ]);
    }

    fn print(&self, peer: &str) {
        println!();
        println!("| scenario | workpool | {peer} | workpool / {peer} | workpool min .. max |");
        println!("|---|---:|---:|---:|---|");
        for [a, b, c, d, e] in &self.rows {
            println!("| {a} | {b} | {c} | {d} | {e} |");
        }
    }
}
