//! A timeline of a mixed run: tiny tasks through `map`, a `Parallel` call, long tasks, a crash
//! and a timeout, recorded with `Executor::record` and written as Chrome trace-event JSON to
//! `timeline.json` in the current folder (open it in <https://ui.perfetto.dev> or
//! `chrome://tracing`). Then the executor's stats: where each slot's time went.
//!
//! ```text
//! cargo run --release --example timeline
//! python3 docs/render_timeline.py timeline.json docs/timeline.svg   # a picture without a browser
//! ```

use std::time::{Duration, Instant};
use workpool::{Executor, Parallel};

/// A tiny task: one multiplication.
#[workpool::task]
fn square(n: u64) -> u64 {
    n * n
}

/// A long task: sleeps `ms` milliseconds.
#[workpool::task]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Kills its worker with SIGABRT.
#[workpool::task]
fn crash() -> u64 {
    std::process::abort()
}

/// Never returns: stopped by the task timeout.
#[workpool::task]
fn hang() -> u64 {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[workpool::main]
fn main() {
    let ex = Executor::builder().workers(2).task_timeout(Duration::from_millis(300)).build().expect("executor");
    let recording = ex.record();
    let start = Instant::now();

    let sum: u64 = ex.map((0..2_000).map(|n| Square { n })).map(Result::unwrap).sum();
    println!("map        2000 tiny tasks, Σ n² = {sum}");

    let mut run = Parallel::new().executor(ex.clone()).iter((0..20).map(|_| Nap { ms: 15 }));
    let naps: u64 = run.by_ref().map(Result::unwrap).sum();
    let stats = run.stats();
    println!(
        "Parallel   20 × 15 ms in batches {:?}: {naps} ms of naps, efficiency {:.2}, serial fraction {:.2}",
        stats.batch_sizes,
        stats.efficiency(),
        stats.serial_fraction().unwrap_or(0.0)
    );

    let long: Vec<_> = [120, 80, 200].into_iter().map(|ms| ex.submit(Nap { ms })).collect();
    let crashed = ex.submit(Crash {}).join().expect_err("the crash fails its task");
    println!("crash      {crashed}");
    for handle in long {
        handle.join().expect("long task");
    }
    println!("long       120, 80 and 200 ms naps done");
    let hung = ex.submit(Hang {}).join().expect_err("the hang times out");
    println!("timeout    {hung}");
    let after: u64 = (0..50).map(|n| ex.submit(Square { n }).join().unwrap()).sum();
    println!("after      50 more tiny tasks one at a time, Σ = {after}");

    let timeline = recording.finish();
    timeline.write_chrome_json("timeline.json").expect("writing timeline.json");
    println!(
        "\nwrote timeline.json: {} task spans over {:.0?} (open it in https://ui.perfetto.dev)",
        timeline.tasks(),
        start.elapsed()
    );

    let stats = ex.stats();
    println!("\nslot  tasks  busy      idle      starting  starts  to workers  from workers  deaths");
    for (i, s) in stats.slots.iter().chain([&stats.total]).enumerate() {
        let name = if i < stats.slots.len() { format!("{i:>4}") } else { "   Σ".to_string() };
        println!(
            "{name}  {:>5}  {:>8.1?}  {:>8.1?}  {:>8.1?}  {:>6}  {:>8} B  {:>10} B  {} ({} signal, {} timeout)",
            s.tasks_run,
            s.busy,
            s.idle,
            s.starting,
            s.starts,
            s.bytes_to_workers,
            s.bytes_from_workers,
            s.deaths.total(),
            s.deaths.signal,
            s.deaths.timeout
        );
    }
    println!("efficiency since the executor was built: {:.2}", stats.efficiency());
}
