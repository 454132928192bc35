//! `workpool::ThreadPool` against `rayon`, same thread count, same process, same runs.
//!
//! ```sh
//! cargo bench -p workpool-benchmarks --bench thread_pool
//! ```
//!
//! Scenarios (`WORKPOOL_BENCH_RUNS` runs each, default 11; workpool and rayon alternate which
//! goes first in each run; the table gives medians and the median of the per-run ratios):
//!
//! * **fib**: `fib(WORKPOOL_BENCH_FIB)` (default 30) by plain recursive `join`, no sequential
//!   cutoff: the cost of a `join` itself.
//! * **spawn**: `WORKPOOL_BENCH_SPAWNS` (default 1,000,000) tiny closures through one
//!   `scope`'s `spawn`, each incrementing an atomic counter; spawns/s.
//! * **sort**: quicksort of `WORKPOOL_BENCH_SORT` (default 10,000,000) random `u32`s, the two
//!   halves of every partition by `join`, sequential below 5 × 1024 elements (the cutoff of
//!   rayon-demo's quicksort). Each run sorts a fresh copy of the same input.
//! * **tree**: a walk over a complete 4-ary tree of `WORKPOOL_BENCH_TREE_LEVELS` levels
//!   (default 10, 1,398,101 nodes) in one `scope`: each node's closure hashes the node's value
//!   into a shared sum and spawns one closure per child (nested spawns, all in one scope).
//! * **idle**: both pools idle, in the same window, for `WORKPOOL_BENCH_IDLE_MS` (default
//!   3000) after some work (`WORKPOOL_BENCH_IDLE_RUNS` windows, default 3): CPU time of each
//!   pool's own threads (from `/proc/self/task/*/schedstat`) as % of one core, and how often
//!   they were put on a CPU (wake-ups/s).
//!
//! `WORKPOOL_BENCH_THREADS` (default 2) sets both pools' size; `WORKPOOL_BENCH_ONLY=fib,spawn,
//! sort,tree,idle` picks scenarios.

use rayon::ThreadPool as RayonPool;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use workpool::ThreadPool;
use workpool_benchmarks::measure::{alternate_ms, env_usize, fmt_ms, fmt_rate, median, selected};
use workpool_benchmarks::table::Table;
use workpool_benchmarks::threads::{process_cpu, thread_stats};

/// Thread-name prefixes, to tell the pools' threads apart in `/proc/self/task`.
const WORKPOOL_PREFIX: &str = "wp-bench-";
const RAYON_PREFIX: &str = "rayon-bench-";

/// Below this many elements the quicksort goes on sequentially.
const SORT_CUTOFF: usize = 5 * 1024;

fn main() {
    workpool::init();
    let threads = env_usize("WORKPOOL_BENCH_THREADS", 2);
    let runs = env_usize("WORKPOOL_BENCH_RUNS", 11);
    let wp = ThreadPool::builder()
        .num_threads(threads)
        .thread_name(|i| format!("{WORKPOOL_PREFIX}{i}"))
        .build()
        .expect("workpool pool");
    let ry = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("{RAYON_PREFIX}{i}"))
        .build()
        .expect("rayon pool");
    println!(
        "workpool {} ThreadPool vs rayon, {threads} threads each, {runs} runs per scenario (alternating order)",
        env!("CARGO_PKG_VERSION")
    );
    let mut table = Table::new("rayon");
    // Warm-up: fault in stacks and allocator arenas on both pools.
    spawn_workpool(&wp, 100_000);
    spawn_rayon(&ry, 100_000);

    if selected("fib") {
        let n = env_usize("WORKPOOL_BENCH_FIB", 30) as u64;
        let want = fib_seq(n);
        let (w, r) = alternate_ms(
            runs,
            || assert_eq!(wp.install(|| fib_workpool(&wp, n)), want),
            || assert_eq!(ry.install(|| fib_rayon(n)), want),
        );
        table.row(&format!("`fib({n})` by recursive `join`, time (lower is better)"), &w, &r, fmt_ms);
    }

    if selected("spawn") {
        let n = env_usize("WORKPOOL_BENCH_SPAWNS", 1_000_000);
        let (w, r) = alternate_ms(runs, || spawn_workpool(&wp, n), || spawn_rayon(&ry, n));
        let rate = |ms: &[f64]| ms.iter().map(|t| n as f64 / (t / 1e3)).collect::<Vec<_>>();
        table.row(&format!("{n} tiny `scope.spawn`s, spawns/s (higher is better)"), &rate(&w), &rate(&r), fmt_rate);
    }

    if selected("sort") {
        let n = env_usize("WORKPOOL_BENCH_SORT", 10_000_000);
        let input = random_u32s(n);
        let mut want = input.clone();
        want.sort_unstable();
        let mut buf = input.clone();
        let (mut w, mut r) = (Vec::new(), Vec::new());
        for run in 0..runs {
            // The copy and the check stay outside the timed part.
            let mut one = |sort: &mut dyn FnMut(&mut [u32])| {
                buf.copy_from_slice(&input);
                let start = Instant::now();
                sort(&mut buf);
                let ms = start.elapsed().as_secs_f64() * 1e3;
                assert!(buf == want, "sorted");
                ms
            };
            let mut by_wp = |v: &mut [u32]| wp.install(|| quicksort_workpool(&wp, v));
            let mut by_ry = |v: &mut [u32]| ry.install(|| quicksort_rayon(v));
            if run % 2 == 0 {
                w.push(one(&mut by_wp));
                r.push(one(&mut by_ry));
            } else {
                r.push(one(&mut by_ry));
                w.push(one(&mut by_wp));
            }
        }
        table.row(&format!("quicksort of {n} `u32` by `join`, time (lower)"), &w, &r, fmt_ms);
    }

    if selected("tree") {
        let levels = env_usize("WORKPOOL_BENCH_TREE_LEVELS", 10) as u32;
        let tree = Tree::complete(levels);
        let want = tree.sum_seq();
        let (w, r) = alternate_ms(
            runs,
            || assert_eq!(tree_workpool(&wp, &tree), want),
            || assert_eq!(tree_rayon(&ry, &tree), want),
        );
        table.row(&format!("tree walk, `scope` + nested `spawn`, {} nodes, time (lower)", tree.len()), &w, &r, fmt_ms);
    }

    if selected("idle") {
        idle(&wp, &ry, threads, &mut table);
    }
    println!();
    print!("{}", table.render());
}

// ===== fib =====

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

// ===== spawn =====

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

fn spawn_rayon(pool: &RayonPool, n: usize) {
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

// ===== sort =====

/// Lomuto partition around the last element; returns the pivot's final index.
fn partition(v: &mut [u32]) -> usize {
    let last = v.len() - 1;
    let pivot = v[last];
    let mut store = 0;
    for i in 0..last {
        if v[i] <= pivot {
            v.swap(store, i);
            store += 1;
        }
    }
    v.swap(store, last);
    store
}

fn quicksort_seq(v: &mut [u32]) {
    if v.len() > 1 {
        let mid = partition(v);
        let (lo, hi) = v.split_at_mut(mid);
        quicksort_seq(lo);
        quicksort_seq(&mut hi[1..]);
    }
}

fn quicksort_workpool(pool: &ThreadPool, v: &mut [u32]) {
    if v.len() <= SORT_CUTOFF {
        return quicksort_seq(v);
    }
    let mid = partition(v);
    let (lo, hi) = v.split_at_mut(mid);
    pool.join(|| quicksort_workpool(pool, lo), || quicksort_workpool(pool, &mut hi[1..]));
}

fn quicksort_rayon(v: &mut [u32]) {
    if v.len() <= SORT_CUTOFF {
        return quicksort_seq(v);
    }
    let mid = partition(v);
    let (lo, hi) = v.split_at_mut(mid);
    rayon::join(|| quicksort_rayon(lo), || quicksort_rayon(&mut hi[1..]));
}

/// `n` pseudo-random numbers (xorshift64*, fixed seed): the same input for both pools.
fn random_u32s(n: usize) -> Vec<u32> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
        })
        .collect()
}

// ===== tree =====

/// A complete 4-ary tree in heap order: node `i`'s children are `4i + 1 ..= 4i + 4`.
struct Tree {
    values: Vec<u64>,
}

impl Tree {
    fn complete(levels: u32) -> Tree {
        let nodes = (4usize.pow(levels + 1) - 1) / 3;
        Tree { values: (0..nodes as u64).collect() }
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn children(&self, i: usize) -> std::ops::Range<usize> {
        let first = (4 * i + 1).min(self.len());
        first..(first + 4).min(self.len())
    }

    fn sum_seq(&self) -> u64 {
        self.values.iter().map(|&v| work(v)).fold(0, u64::wrapping_add)
    }
}

/// The per-node work: a few multiplications (SplitMix64's finaliser).
#[inline]
fn work(v: u64) -> u64 {
    let mut z = v.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn tree_workpool(pool: &ThreadPool, tree: &Tree) -> u64 {
    fn visit<'s>(s: &'s workpool::Scope<'s, '_>, tree: &'s Tree, i: usize, sum: &'s AtomicU64) {
        sum.fetch_add(work(tree.values[i]), Ordering::Relaxed);
        for child in tree.children(i) {
            s.spawn(move || visit(s, tree, child, sum));
        }
    }
    let sum = AtomicU64::new(0);
    pool.scope(|s| visit(s, tree, 0, &sum));
    sum.into_inner()
}

fn tree_rayon(pool: &RayonPool, tree: &Tree) -> u64 {
    fn visit<'s>(s: &rayon::Scope<'s>, tree: &'s Tree, i: usize, sum: &'s AtomicU64) {
        sum.fetch_add(work(tree.values[i]), Ordering::Relaxed);
        for child in tree.children(i) {
            s.spawn(move |s| visit(s, tree, child, sum));
        }
    }
    let sum = AtomicU64::new(0);
    pool.scope(|s| visit(s, tree, 0, &sum));
    sum.into_inner()
}

// ===== idle =====

fn idle(wp: &ThreadPool, ry: &RayonPool, threads: usize, table: &mut Table) {
    let idle_ms = env_usize("WORKPOOL_BENCH_IDLE_MS", 3000) as u64;
    let windows = env_usize("WORKPOOL_BENCH_IDLE_RUNS", 3);
    let (mut c_wp, mut c_ry, mut w_wp, mut w_ry, mut c_all) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..windows {
        spawn_workpool(wp, 100_000);
        spawn_rayon(ry, 100_000);
        let before = (thread_stats(WORKPOOL_PREFIX), thread_stats(RAYON_PREFIX), process_cpu());
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(idle_ms));
        let secs = start.elapsed().as_secs_f64();
        let after = (thread_stats(WORKPOOL_PREFIX), thread_stats(RAYON_PREFIX), process_cpu());
        assert_eq!((after.0.threads, after.1.threads), (threads, threads), "each pool's threads are found by name");
        c_wp.push(100.0 * (after.0.cpu_ns - before.0.cpu_ns) as f64 / 1e9 / secs);
        c_ry.push(100.0 * (after.1.cpu_ns - before.1.cpu_ns) as f64 / 1e9 / secs);
        w_wp.push((after.0.slices - before.0.slices) as f64 / secs);
        w_ry.push((after.1.slices - before.1.slices) as f64 / secs);
        c_all.push(100.0 * (after.2 - before.2).as_secs_f64() / secs);
    }
    table.row(&format!("idle pool over {idle_ms} ms after work, CPU % of a core (lower)"), &c_wp, &c_ry, |v| {
        format!("{v:.3} %")
    });
    table.row("idle pool, wake-ups per s (lower)", &w_wp, &w_ry, |v| format!("{v:.1}"));
    println!(
        "(idle: the whole process, both pools and the sleeping main thread: {:.3} % of a core, median of {windows})",
        median(&c_all)
    );
}
