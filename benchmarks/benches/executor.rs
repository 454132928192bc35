//! `workpool::Executor` (2 worker processes) against `procspawn` 1.0 in the same run, and
//! against the Python peers when their output is supplied.
//!
//! Scenarios (medians over `WORKPOOL_BENCH_RUNS` runs, default 5; workpool and the peer
//! alternate which goes first in each run):
//!
//! * **cold**: build a new `Executor` (workers 2) and get the first result of a tiny task, vs
//!   `procspawn::spawn` → `join` (one fresh process) and vs `procspawn::Pool::new(2)` → first
//!   result.
//! * **submit**: `WORKPOOL_BENCH_TASKS` (default 20,000) tiny tasks, submitted in windows of
//!   `W` handles that are then joined: W = 256 (procspawn's largest safe window: it opens
//!   channels per task and runs out of file descriptors around 500 in flight) and W = all.
//! * **map**: `Executor::map` over `WORKPOOL_BENCH_MAP` (default 1,000,000) tiny tasks, one task
//!   per item (no batching), tasks/s.
//! * **long**: right after 20,000 tiny tasks (the prefetch window at its largest), 8 tasks of
//!   100 ms through `map` and 2 tasks of 300 ms submitted together: wall time, against the ideal
//!   of every worker busy (400 ms and 300 ms).
//! * **rss**: `VmRSS` of each worker process after the above (procspawn: its pool's workers).
//! * **crash**: a task calls `std::process::abort()`; after its `join` reports the worker's
//!   death, time `submit` + `join` of the next tiny task (`WORKPOOL_BENCH_CRASH_RUNS` times,
//!   default max(runs, 9)). With 2 workers the next task may be served by the surviving worker
//!   or wait for a new one (the two cases are also shown apart); with 1 worker it always waits
//!   for a new process.
//! * **idle**: CPU used over `WORKPOOL_BENCH_IDLE_MS` (default 2000) ms of idleness after some
//!   work, as % of one core: the executor's feeder threads plus its worker processes, against
//!   procspawn's monitor threads plus its pool's workers (from `schedstat`, in ns).
//! * **resident**: cold start and crash → next result (1 worker) with an empty parent, then with
//!   `WORKPOOL_BENCH_RESIDENT_GIB` (default 8) GiB resident in the parent, and the minor faults
//!   a write over that buffer costs after the spawns (fork would leave every page
//!   copy-on-write).
//! * **payload**: one task whose argument is a `WORKPOOL_BENCH_MIB` (default 100) MiB
//!   `Vec<u8>` returning its length; MiB/s of submit → join.
//!
//! Python peers: run `python3 /work/shared/bench/peers.py 20000 > peers.txt` (in the same
//! session) and set `WORKPOOL_BENCH_PEERS=peers.txt`: their figures are added as rows.
//! `WORKPOOL_BENCH_ONLY=cold,submit,map,long,rss,idle,crash,resident,payload` picks scenarios.
//! * **timeline**: the cost of recording a timeline, in one process: each run measures `map`
//!   over `WORKPOOL_BENCH_MAP` tiny tasks and `WORKPOOL_BENCH_TASKS` submitted then joined, once
//!   with a recording open and once without, alternating which goes first; the ratio is the
//!   median of the per-run ratios.
//!
//! `WORKPOOL_BENCH_TIMELINE=1` records a timeline ([`Executor::record`]) over each measured
//! run of `submit` and `map` (finished after the clock stopped): the cost of recording.
//!
//! Run: `CARGO_TARGET_DIR=target/bench-helper cargo bench -p workpool-benchmarks --bench executor`

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use workpool::{Executor, Shutdown, Task};

mod common;
#[path = "common/table.rs"]
mod table;
use common::{env_usize, fmt_rate, selected};
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

/// Kills its worker, as a segfault or OOM kill would.
#[derive(Serialize, Deserialize)]
struct Abort;

impl Task for Abort {
    type Output = ();
    fn run(self) {
        std::process::abort()
    }
}

/// A large argument; returns its length.
#[derive(Serialize, Deserialize)]
struct Bytes(Vec<u8>);

impl Task for Bytes {
    type Output = usize;
    fn run(self) -> usize {
        self.0.len()
    }
}

/// Sleeps this many milliseconds (a long task).
#[derive(Serialize, Deserialize)]
struct Sleep(u64);

impl Task for Sleep {
    type Output = ();
    fn run(self) {
        std::thread::sleep(Duration::from_millis(self.0));
    }
}

workpool::register!(Tiny, Abort, Bytes, Sleep);

fn tiny(x: u64) -> u64 {
    x.wrapping_mul(x) + 1
}

// procspawn runs plain functions.
fn ps_tiny(x: u64) -> u64 {
    tiny(x)
}

fn ps_abort(_: ()) {
    std::process::abort()
}

fn ps_len(bytes: Vec<u8>) -> usize {
    bytes.len()
}

const WORKERS: usize = 2;
/// procspawn's window (see the module docs).
const PS_WINDOW: usize = 256;

/// A recording of `ex` when `WORKPOOL_BENCH_TIMELINE` is set.
fn record(ex: &Executor) -> Option<workpool::Recording> {
    std::env::var_os("WORKPOOL_BENCH_TIMELINE").map(|_| ex.record())
}

/// Ends a recording (after the clock stopped); it must hold a span per task.
fn finish(recording: Option<workpool::Recording>, tasks: usize) {
    if let Some(recording) = recording {
        let recorded = recording.finish().tasks();
        assert!(recorded >= tasks, "the timeline holds {recorded} of {tasks} tasks");
    }
}

fn main() {
    workpool::init();
    procspawn::init();
    let runs = env_usize("WORKPOOL_BENCH_RUNS", 5);
    let tasks = env_usize("WORKPOOL_BENCH_TASKS", 20_000);
    let map_tasks = env_usize("WORKPOOL_BENCH_MAP", 1_000_000);
    let mib = env_usize("WORKPOOL_BENCH_MIB", 100);
    let peers = python_peers();
    println!("workpool::Executor ({WORKERS} workers) vs procspawn; {runs} runs, medians");
    let mut table = Table::default();

    // (a) cold start.
    if selected("cold") {
        let (mut wp, mut ps, mut pool) = (vec![], vec![], vec![]);
        for run in 0..runs {
            let (w, p) = alternate(run, cold_workpool, || {
                let start = Instant::now();
                assert_eq!(procspawn::spawn(3u64, ps_tiny).join().expect("procspawn"), tiny(3));
                start.elapsed()
            });
            wp.push(ms(w));
            ps.push(ms(p));
            pool.push(ms(cold_procspawn_pool()));
        }
        table.row("cold start: new executor → first result, ms (lower)", &wp, "procspawn::spawn", &ps, fmt_ms);
        table.row("", &wp, "procspawn::Pool::new(2)", &pool, fmt_ms);
        table.python(&peers, "loky cold_start_first_result", &wp, fmt_ms);
    }

    let ex = Executor::builder().workers(WORKERS).build().expect("executor");
    let ps_pool = procspawn::Pool::new(WORKERS).expect("procspawn pool");
    // Warm-up: start every worker on both sides.
    windowed_workpool(&ex, 2_000, PS_WINDOW);
    windowed_procspawn(&ps_pool, 2_000);

    // (b) tiny tasks, submitted and joined in windows.
    if selected("submit") {
        let (mut w256, mut wall, mut ps) = (vec![], vec![], vec![]);
        for run in 0..runs {
            let recording = record(&ex);
            let (w, p) =
                alternate(run, || windowed_workpool(&ex, tasks, PS_WINDOW), || windowed_procspawn(&ps_pool, tasks));
            finish(recording, tasks);
            w256.push(tasks as f64 / w.as_secs_f64());
            ps.push(tasks as f64 / p.as_secs_f64());
            let recording = record(&ex);
            wall.push(tasks as f64 / windowed_workpool(&ex, tasks, tasks).as_secs_f64());
            finish(recording, tasks);
        }
        let name = format!("{tasks} tiny tasks, submit+join in windows of {PS_WINDOW}, tasks/s");
        table.row(&name, &w256, "procspawn::Pool, W=256", &ps, fmt_rate);
        let name = format!("{tasks} tiny tasks, submit all then join, tasks/s");
        table.row(&name, &wall, "procspawn::Pool, W=256", &ps, fmt_rate);
        table.python(&peers, "loky submit_tiny", &wall, fmt_rate);
        table.python(&peers, "cf.ProcessPool submit_tiny", &wall, fmt_rate);
    }

    // (c) Executor::map, one task per item.
    if selected("map") {
        let mut wp = vec![];
        for _ in 0..runs {
            let recording = record(&ex);
            let start = Instant::now();
            let mut sum = 0u64;
            for out in ex.map((0..map_tasks as u64).map(Tiny)) {
                sum = sum.wrapping_add(out.expect("tiny task"));
            }
            wp.push(map_tasks as f64 / start.elapsed().as_secs_f64());
            finish(recording, map_tasks);
            assert_eq!(sum, (0..map_tasks as u64).map(tiny).fold(0, u64::wrapping_add));
        }
        let name = format!("Executor::map over {map_tasks} tiny tasks, tasks/s");
        table.row(&name, &wp, "(procspawn has no map)", &[], fmt_rate);
        table.python(&peers, "loky map_chunksize1", &wp, fmt_rate);
        table.python(&peers, "mp.Pool map_chunksize1", &wp, fmt_rate);
    }

    // (c2) the cost of recording a timeline, on and off in the same run.
    if selected("timeline") {
        let (mut map_on, mut map_off, mut sub_on, mut sub_off) = (vec![], vec![], vec![], vec![]);
        let map_rate = |on: bool| {
            let recording = on.then(|| ex.record());
            let start = Instant::now();
            let sum = ex.map((0..map_tasks as u64).map(Tiny)).map(|r| r.expect("tiny")).fold(0, u64::wrapping_add);
            let rate = map_tasks as f64 / start.elapsed().as_secs_f64();
            assert_eq!(sum, (0..map_tasks as u64).map(tiny).fold(0, u64::wrapping_add));
            finish(recording, if on { map_tasks } else { 0 });
            rate
        };
        let submit_rate = |on: bool| {
            let recording = on.then(|| ex.record());
            let rate = tasks as f64 / windowed_workpool(&ex, tasks, tasks).as_secs_f64();
            finish(recording, if on { tasks } else { 0 });
            rate
        };
        for run in 0..runs {
            let (on, off) = alternate(run, || map_rate(true), || map_rate(false));
            map_on.push(on);
            map_off.push(off);
            let (on, off) = alternate(run, || submit_rate(true), || submit_rate(false));
            sub_on.push(on);
            sub_off.push(off);
        }
        let name = format!("Executor::map over {map_tasks} tiny tasks, timeline recorded, tasks/s");
        table.row(&name, &map_on, "not recorded, same runs", &map_off, fmt_rate);
        let name = format!("{tasks} tiny tasks, submit all then join, timeline recorded, tasks/s");
        table.row(&name, &sub_on, "not recorded, same runs", &sub_off, fmt_rate);
    }

    // (d) resident memory of the workers.
    if selected("rss") {
        let wp_pids: Vec<u32> = ex.workers().iter().filter_map(|w| w.pid).collect();
        let wp_rss: Vec<f64> = wp_pids.iter().filter_map(|&pid| rss_mib(pid)).collect();
        let wp_set: HashSet<u32> = wp_pids.iter().copied().collect();
        let ps_rss: Vec<f64> = children().into_iter().filter(|p| !wp_set.contains(p)).filter_map(rss_mib).collect();
        println!("worker VmRSS, MiB: workpool {wp_rss:.2?} (pids {wp_pids:?}); procspawn pool {ps_rss:.2?}");
        let max = |v: &[f64]| vec![v.iter().copied().fold(0.0, f64::max)];
        table.row(
            "worker RSS (largest worker), MiB (lower)",
            &max(&wp_rss),
            "procspawn::Pool worker",
            &max(&ps_rss),
            fmt_mib,
        );
    }

    // (g) CPU used while idle: the executor's feeder threads plus its worker processes, against
    // procspawn's monitor threads plus its pool's workers.
    if selected("idle") {
        let idle_ms = env_usize("WORKPOOL_BENCH_IDLE_MS", 2000) as u64;
        windowed_workpool(&ex, 2_000, PS_WINDOW);
        windowed_procspawn(&ps_pool, 2_000);
        let wp_pids: HashSet<u32> = ex.workers().iter().filter_map(|w| w.pid).collect();
        let ps_pids: Vec<u32> = children().into_iter().filter(|p| !wp_pids.contains(p)).collect();
        // (feeder threads, workpool workers, procspawn monitors, procspawn workers)
        let measure = || {
            (
                own_threads("workpool-feeder"),
                wp_pids.iter().map(|&p| process_sched(p)).sum::<Sched>(),
                own_threads("procspawn-monit"),
                ps_pids.iter().map(|&p| process_sched(p)).sum::<Sched>(),
            )
        };
        let b = measure();
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(idle_ms));
        let secs = start.elapsed().as_secs_f64();
        let a = measure();
        let pct = |a: Sched, b: Sched| 100.0 * (a.cpu_ns - b.cpu_ns) as f64 / 1e9 / secs;
        let wakeups = |a: Sched, b: Sched| (a.slices - b.slices) as f64 / secs;
        let part = |a: Sched, b: Sched| format!("{}: {:.3}%, {:.1} wake-ups/s", a.threads, pct(a, b), wakeups(a, b));
        println!(
            "idle: workpool feeder threads {}; workers {}; procspawn monitor threads {}; workers {}",
            part(a.0, b.0),
            part(a.1, b.1),
            part(a.2, b.2),
            part(a.3, b.3)
        );
        let (a_wp, b_wp, a_ps, b_ps) = (a.0.add(a.1), b.0.add(b.1), a.2.add(a.3), b.2.add(b.3));
        let (pct, wakeups) = (|a, b| vec![pct(a, b)], |a, b| vec![wakeups(a, b)]);
        let (pct_wp, pct_ps) = (pct(a_wp, b_wp), pct(a_ps, b_ps));
        let name = format!("idle executor over {idle_ms} ms (threads + workers), % of a core (lower)");
        table.row(&name, &pct_wp, "procspawn::Pool(2)", &pct_ps, |v| format!("{v:.3}%"));
        let (w_wp, w_ps) = (wakeups(a_wp, b_wp), wakeups(a_ps, b_ps));
        table.row("idle executor wake-ups per s (lower)", &w_wp, "procspawn::Pool(2)", &w_ps, |v| format!("{v:.1}"));
    }

    // (d2) long tasks right after a burst of tiny ones (the window is at its largest then): they
    // must spread over every worker. Ideal: 8 × 100 ms on 2 workers = 400 ms; 2 × 300 ms = 300 ms.
    if selected("long") {
        let (mut eight, mut two) = (vec![], vec![]);
        for _ in 0..runs {
            windowed_workpool(&ex, 20_000, PS_WINDOW);
            std::thread::sleep(Duration::from_millis(20));
            let start = Instant::now();
            ex.map((0..8).map(|_| Sleep(100))).for_each(|r| r.expect("sleep"));
            eight.push(ms(start.elapsed()));
            windowed_workpool(&ex, 20_000, PS_WINDOW);
            std::thread::sleep(Duration::from_millis(20));
            let start = Instant::now();
            let handles: Vec<_> = (0..2).map(|_| ex.submit(Sleep(300))).collect();
            handles.into_iter().for_each(|h| h.join().expect("sleep"));
            two.push(ms(start.elapsed()));
        }
        table.row("8 × 100 ms tasks after 20,000 tiny ones, 2 workers, ms (ideal 400)", &eight, "", &[], fmt_ms);
        table.row("2 × 300 ms tasks after 20,000 tiny ones, 2 workers, ms (ideal 300)", &two, "", &[], fmt_ms);
    }

    // (e) crash → next result.
    if selected("crash") {
        let crash_runs = env_usize("WORKPOOL_BENCH_CRASH_RUNS", runs.max(9));
        let (mut wp, mut ps, mut fresh, mut surviving) = (vec![], vec![], vec![], vec![]);
        for run in 0..crash_runs {
            let ((w, new_worker), p) = alternate2(run, || crash_then_next(&ex), || crash_then_next_procspawn(&ps_pool));
            wp.push(ms(w));
            ps.push(ms(p));
            if new_worker { &mut fresh } else { &mut surviving }.push(ms(w));
        }
        let name = format!("crash → next result, {WORKERS} workers, all runs, ms (lower)");
        table.row(&name, &wp, "procspawn::Pool(2)", &ps, fmt_ms);
        table.python(&peers, "loky recover_after_crash", &wp, fmt_ms);
        let name = format!("… {} of {crash_runs} runs: served by the surviving worker", surviving.len());
        table.row(&name, &surviving, "procspawn::Pool(2)", &ps, fmt_ms);
        let name = format!("… {} of {crash_runs} runs: waited for a new worker process", fresh.len());
        table.row(&name, &fresh, "procspawn::Pool(2)", &ps, fmt_ms);
        let single = Executor::builder().workers(1).build().expect("executor");
        assert_eq!(single.submit(Tiny(1)).join().expect("tiny"), tiny(1));
        let one: Vec<f64> = (0..crash_runs).map(|_| ms(crash_then_next(&single).0)).collect();
        table.row("crash → next result, 1 worker (always a new process), ms", &one, "procspawn::Pool(2)", &ps, fmt_ms);
        single.shutdown(Shutdown::Wait);
    }

    // (g) the same with a large resident parent: starting a worker must not cost more.
    if selected("resident") {
        let gib = env_usize("WORKPOOL_BENCH_RESIDENT_GIB", 8);
        let crash_runs = env_usize("WORKPOOL_BENCH_CRASH_RUNS", runs.max(9));
        let measure = |label: &str, table: &mut Table| {
            // One start untimed in each condition: the first after a large allocation also pays
            // for the kernel's own settling (LRU aging, reclaim) on this 2-core machine.
            cold_workpool();
            let cold: Vec<f64> = (0..runs).map(|_| ms(cold_workpool())).collect();
            let single = Executor::builder().workers(1).build().expect("executor");
            assert_eq!(single.submit(Tiny(1)).join().expect("tiny"), tiny(1));
            let crash: Vec<f64> = (0..crash_runs).map(|_| ms(crash_then_next(&single).0)).collect();
            single.shutdown(Shutdown::Wait);
            table.row(&format!("cold start, {label}, ms"), &cold, "", &[], fmt_ms);
            table.row(&format!("crash → next result, 1 worker, {label}, ms"), &crash, "", &[], fmt_ms);
            (common::median(&cold), common::median(&crash))
        };
        let (cold0, crash0) = measure("empty parent", &mut table);
        let mut big = vec![0u8; gib << 30];
        touch(&mut big, 1);
        let (cold8, crash8) = measure(&format!("{gib} GiB resident"), &mut table);
        // Copy-on-write faults the spawns left behind: a write over the whole buffer.
        let before = minor_faults();
        touch(&mut big, 2);
        let faults = minor_faults() - before;
        drop(big);
        println!(
            "resident {gib} GiB: cold start {:.2}× and crash → next {:.2}× the empty parent's; {faults} minor faults \
             writing the buffer after the spawns",
            cold8 / cold0,
            crash8 / crash0
        );
    }

    // (f) a large argument.
    if selected("payload") {
        let data = vec![7u8; mib << 20];
        let (mut wp, mut ps) = (vec![], vec![]);
        for run in 0..runs.min(3) {
            let (w, p) = alternate(
                run,
                || {
                    let arg = Bytes(data.clone());
                    let start = Instant::now();
                    assert_eq!(ex.submit(arg).join().expect("bytes"), data.len());
                    start.elapsed()
                },
                || {
                    let arg = data.clone();
                    let start = Instant::now();
                    assert_eq!(ps_pool.spawn(arg, ps_len).join().expect("procspawn"), data.len());
                    start.elapsed()
                },
            );
            wp.push(mib as f64 / w.as_secs_f64());
            ps.push(mib as f64 / p.as_secs_f64());
        }
        let name = format!("{mib} MiB Vec<u8> argument, MiB/s (higher)");
        table.row(&name, &wp, "procspawn::Pool", &ps, |v| format!("{v:.0} MiB/s"));
        table.python(&peers, "loky payload_100MiB", &wp, |v| format!("{v:.0} MiB/s"));
    }

    table.print();
    ex.shutdown(Shutdown::Wait);
    ps_pool.kill();
}

fn cold_workpool() -> Duration {
    let start = Instant::now();
    let ex = Executor::builder().workers(WORKERS).build().expect("executor");
    let built = start.elapsed();
    assert_eq!(ex.submit(Tiny(3)).join().expect("tiny"), tiny(3));
    let elapsed = start.elapsed();
    if std::env::var_os("WORKPOOL_BENCH_DEBUG").is_some() {
        eprintln!("cold: build {built:?} total {elapsed:?}");
    }
    ex.shutdown(Shutdown::Wait);
    elapsed
}

fn cold_procspawn_pool() -> Duration {
    let start = Instant::now();
    let pool = procspawn::Pool::new(WORKERS).expect("procspawn pool");
    assert_eq!(pool.spawn(3u64, ps_tiny).join().expect("procspawn"), tiny(3));
    let elapsed = start.elapsed();
    pool.kill();
    elapsed
}

/// Submits `n` tiny tasks in windows of `window` handles, joining each window.
fn windowed_workpool(ex: &Executor, n: usize, window: usize) -> Duration {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(window);
    for base in (0..n as u64).step_by(window) {
        handles.extend((base..(base + window as u64).min(n as u64)).map(|i| (i, ex.submit(Tiny(i)))));
        for (i, h) in handles.drain(..) {
            assert_eq!(h.join().expect("tiny task"), tiny(i));
        }
    }
    start.elapsed()
}

fn windowed_procspawn(pool: &procspawn::Pool, n: usize) -> Duration {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(PS_WINDOW);
    for base in (0..n as u64).step_by(PS_WINDOW) {
        handles.extend((base..(base + PS_WINDOW as u64).min(n as u64)).map(|i| (i, pool.spawn(i, ps_tiny))));
        for (i, h) in handles.drain(..) {
            assert_eq!(h.join().expect("procspawn task"), tiny(i));
        }
    }
    start.elapsed()
}

/// Crashes a worker, then times the next tiny task; also says whether a new worker was started
/// for it.
fn crash_then_next(ex: &Executor) -> (Duration, bool) {
    let err = ex.submit(Abort).join().expect_err("the worker aborts");
    assert!(err.is_worker_death(), "expected a worker death, got {err}");
    let starts = |ex: &Executor| ex.workers().iter().map(|w| w.starts).sum::<u64>();
    let before = starts(ex);
    let start = Instant::now();
    assert_eq!(ex.submit(Tiny(5)).join().expect("tiny after crash"), tiny(5));
    let elapsed = start.elapsed();
    (elapsed, starts(ex) > before)
}

fn crash_then_next_procspawn(pool: &procspawn::Pool) -> Duration {
    assert!(pool.spawn((), ps_abort).join().is_err(), "the worker aborts");
    let start = Instant::now();
    assert_eq!(pool.spawn(5u64, ps_tiny).join().expect("procspawn after crash"), tiny(5));
    start.elapsed()
}

/// CPU time and scheduling count from `schedstat` files (nanoseconds of CPU; times put on a
/// CPU, which for blocked threads counts wake-ups).
#[derive(Clone, Copy, Default)]
struct Sched {
    cpu_ns: u64,
    slices: u64,
    /// Threads (or, for `process_sched`, processes) counted.
    threads: usize,
}

impl Sched {
    fn add(self, other: Sched) -> Sched {
        Sched {
            cpu_ns: self.cpu_ns + other.cpu_ns,
            slices: self.slices + other.slices,
            threads: self.threads + other.threads,
        }
    }
}

impl std::iter::Sum for Sched {
    fn sum<I: Iterator<Item = Sched>>(iter: I) -> Sched {
        iter.fold(Sched::default(), Sched::add)
    }
}

/// Sums the schedstat of the threads under `/proc/<pid>/task` whose name starts with `prefix`.
fn threads_sched(proc_dir: &str, prefix: &str) -> Sched {
    let mut total = Sched::default();
    for task in std::fs::read_dir(format!("{proc_dir}/task")).into_iter().flatten().flatten() {
        let path = task.path();
        let named = std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.starts_with(prefix));
        let Ok(stat) = std::fs::read_to_string(path.join("schedstat")) else { continue };
        let fields: Vec<u64> = stat.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        if let (true, [cpu_ns, _wait_ns, slices]) = (named, &fields[..]) {
            total = total.add(Sched { cpu_ns: *cpu_ns, slices: *slices, threads: 1 });
        }
    }
    total
}

/// This process's threads named `prefix…`.
fn own_threads(prefix: &str) -> Sched {
    threads_sched("/proc/self", prefix)
}

/// All threads of another process, counted as one.
fn process_sched(pid: u32) -> Sched {
    Sched { threads: 1, ..threads_sched(&format!("/proc/{pid}"), "") }
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Pids of this process's children (over all its threads).
fn children() -> Vec<u32> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    pids
}

/// Writes one byte per page of `buf`.
fn touch(buf: &mut [u8], value: u8) {
    for i in (0..buf.len()).step_by(4096) {
        buf[i] = value;
    }
    std::hint::black_box(&buf);
}

/// Minor page faults of this process so far.
fn minor_faults() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_minflt
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn fmt_ms(v: f64) -> String {
    format!("{v:.2} ms")
}

fn fmt_mib(v: f64) -> String {
    format!("{v:.1} MiB")
}

/// Runs `a` and `b` once each, `a` first on even runs; returns what each returned.
fn alternate<T>(run: usize, a: impl FnMut() -> T, b: impl FnMut() -> T) -> (T, T) {
    alternate2(run, a, b)
}

/// [`alternate`] for closures with different results.
fn alternate2<A, B>(run: usize, mut a: impl FnMut() -> A, mut b: impl FnMut() -> B) -> (A, B) {
    if run % 2 == 0 {
        let ra = a();
        (ra, b())
    } else {
        let rb = b();
        (a(), rb)
    }
}
