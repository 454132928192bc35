//! Remote workers over loopback TCP against local workers, 2 workers each, in the same run:
//!
//! * **tiny**: `Executor::map` over `WORKPOOL_BENCH_TASKS` (default 100,000) tiny tasks, one
//!   task per item, tasks/s (through the link: relay threads on both ends, heartbeats);
//! * **payload**: one task whose argument is a `WORKPOOL_BENCH_MIB` (default 100) MiB `Vec<u8>`
//!   returning it, MiB/s of the round trip;
//! * **crash**: a task aborts; time from its `join` to the next tiny task's result (1 worker:
//!   the next task always waits for a new worker, started through the launcher);
//! * **start**: the first result of a new executor (1 worker): the launcher's start time.
//!
//! The remote workers are started by `Launcher::command(["env", "-i", "{command}"])`: the same
//! link as over ssh, without ssh's own cost (ssh adds its connection set-up to `start` and
//! `crash`, and its encryption to nothing: the link does not run through ssh). Medians over
//! `WORKPOOL_BENCH_RUNS` runs (default 5); `WORKPOOL_BENCH_ONLY=local` or `loopback` picks one row.
//!
//! Run: `cargo bench -p workpool-benchmarks --bench cluster`

use serde::{Deserialize, Serialize};
use std::time::Instant;
use workpool::{Executor, Launcher, Task};

mod common;
use common::{env_usize, fmt_rate, median, selected};

#[derive(Serialize, Deserialize)]
struct Tiny(u64);

impl Task for Tiny {
    type Output = u64;
    fn run(self) -> u64 {
        self.0.wrapping_mul(2_654_435_761)
    }
}
workpool::register!(Tiny);

#[derive(Serialize, Deserialize)]
struct Echo(Vec<u8>);

impl Task for Echo {
    type Output = Vec<u8>;
    fn run(self) -> Vec<u8> {
        self.0
    }
}
workpool::register!(Echo);

#[derive(Serialize, Deserialize)]
struct Crash;

impl Task for Crash {
    type Output = ();
    fn run(self) {
        std::process::abort()
    }
}
workpool::register!(Crash);

fn executor(remote: bool, workers: usize) -> Executor {
    let builder = Executor::builder().workers(workers);
    let builder = if remote { builder.launcher(Launcher::command(["env", "-i", "{command}"])) } else { builder };
    builder.build().unwrap()
}

fn main() {
    workpool::init();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs = env_usize("WORKPOOL_BENCH_RUNS", 5);
    let tasks = env_usize("WORKPOOL_BENCH_TASKS", 100_000);
    let mib = env_usize("WORKPOOL_BENCH_MIB", 100);
    println!("{:<8} {:>16} {:>16} {:>16} {:>16}", "", "tiny tasks/s", "payload MiB/s", "crash → next", "start");
    for (name, remote) in [("local", false), ("loopback", true)] {
        if !selected(name) {
            continue;
        }
        let (mut tiny, mut payload, mut crash, mut start) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let clock = Instant::now();
            let one = executor(remote, 1);
            one.submit(Tiny(1)).join().unwrap();
            start.push(clock.elapsed().as_secs_f64());
            let _ = one.submit(Crash).join();
            let clock = Instant::now();
            one.submit(Tiny(2)).join().unwrap();
            crash.push(clock.elapsed().as_secs_f64());
            drop(one);

            let ex = executor(remote, 2);
            ex.submit(Tiny(0)).join().unwrap();
            let clock = Instant::now();
            let n = ex.map((0..tasks as u64).map(Tiny)).filter(Result::is_ok).count();
            assert_eq!(n, tasks);
            tiny.push(tasks as f64 / clock.elapsed().as_secs_f64());
            let bytes = vec![7u8; mib << 20];
            let clock = Instant::now();
            assert_eq!(ex.submit(Echo(bytes)).join().unwrap().len(), mib << 20);
            payload.push(mib as f64 / clock.elapsed().as_secs_f64());
        }
        let ms = |v: &[f64]| format!("{:.1} ms", median(v) * 1e3);
        println!(
            "{name:<8} {:>16} {:>16.0} {:>16} {:>16}",
            fmt_rate(median(&tiny)),
            median(&payload),
            ms(&crash),
            ms(&start)
        );
    }
}
