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
//! With `WORKPOOL_SSH_PORT` set (and `WORKPOOL_SSH_IDENTITY`, `WORKPOOL_SSH_OPTIONS` as for
//! `examples/cluster.rs`), a third row runs the same over `Launcher::ssh(["127.0.0.1"])`, and
//! the line after the table gives ssh's own start (`ssh ... 127.0.0.1 true`, median) to compare
//! the crash → next result with.
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

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Local,
    Loopback,
    Ssh,
}

/// The ssh options from the environment, as `-o` arguments and as launcher options.
fn ssh_setup() -> Option<(u16, Vec<String>)> {
    let port = std::env::var("WORKPOOL_SSH_PORT").ok()?.parse().ok()?;
    let mut args = Vec::new();
    if let Ok(identity) = std::env::var("WORKPOOL_SSH_IDENTITY") {
        args.extend(["-i".to_string(), identity]);
    }
    for option in std::env::var("WORKPOOL_SSH_OPTIONS").unwrap_or_default().split_whitespace() {
        args.extend(["-o".to_string(), option.to_string()]);
    }
    Some((port, args))
}

fn executor(kind: Kind, workers: usize) -> Executor {
    let builder = Executor::builder().workers(workers);
    let builder = match kind {
        Kind::Local => builder,
        Kind::Loopback => builder.launcher(Launcher::command(["env", "-i", "{command}"])),
        Kind::Ssh => {
            let (port, args) = ssh_setup().expect("WORKPOOL_SSH_PORT");
            let mut launcher = Launcher::ssh(["127.0.0.1"]).port(port);
            for pair in args.chunks(2) {
                launcher = match pair[0].as_str() {
                    "-i" => launcher.identity_file(&pair[1]),
                    _ => launcher.ssh_option(&pair[1]),
                };
            }
            builder.launcher(launcher)
        }
    };
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
    let mut rows = vec![("local", Kind::Local), ("loopback", Kind::Loopback)];
    if ssh_setup().is_some() {
        rows.push(("ssh", Kind::Ssh));
    }
    for (name, remote) in rows {
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
    if let Some((port, args)) = ssh_setup() {
        let mut start = Vec::new();
        for _ in 0..runs {
            let clock = Instant::now();
            let status = std::process::Command::new("ssh")
                .args(["-o", "BatchMode=yes", "-p", &port.to_string()])
                .args(&args)
                .args(["127.0.0.1", "true"])
                .status()
                .unwrap();
            assert!(status.success());
            start.push(clock.elapsed().as_secs_f64());
        }
        println!("ssh's own start (ssh 127.0.0.1 true): {:.1} ms", median(&start) * 1e3);
    }
}
