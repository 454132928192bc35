//! The same `Task` types on both `Parallel` backends, timed: threads share memory and pay
//! nothing per task; processes isolate crashes and pay to encode, send and decode every argument
//! and result. Tiny tasks and big arguments show the difference; CPU-bound tasks barely do.
//!
//! ```text
//! cargo run --release --example threads_vs_processes
//! ```

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use workpool::{Backend, Parallel, Task};

/// A tiny task: the sum of 64 consecutive numbers (about a nanosecond of work per number).
#[derive(Serialize, Deserialize)]
struct Tiny(u64);

impl Task for Tiny {
    type Output = u64;
    fn run(self) -> u64 {
        (self.0..self.0 + 64).map(std::hint::black_box).sum()
    }
}

/// A CPU-bound task: about `n` rounds of an integer hash.
#[derive(Serialize, Deserialize)]
struct Crunch {
    seed: u64,
    n: u64,
}

impl Task for Crunch {
    type Output = u64;
    fn run(self) -> u64 {
        let mut x = self.seed | 1;
        for _ in 0..self.n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        x
    }
}

/// A task with a big argument and little work per byte: the checksum of a 1 MiB buffer.
#[derive(Serialize, Deserialize)]
struct Checksum(Vec<u8>);

impl Task for Checksum {
    type Output = u64;
    fn run(self) -> u64 {
        self.0.iter().fold(0u64, |h, &b| h.rotate_left(5) ^ u64::from(b))
    }
}

workpool::register!(Tiny, Crunch, Checksum);

/// Runs `make()`'s tasks inline, on threads and on processes; returns the three times.
fn race<T: Task, I>(make: impl Fn() -> I) -> [Duration; 3]
where
    I: Iterator<Item = T>,
    T::Output: PartialEq + std::fmt::Debug,
{
    let jobs = workpool::cpu_count() as isize;
    let setups = [
        Parallel::new().n_jobs(1),
        Parallel::new().n_jobs(jobs).backend(Backend::Threads),
        Parallel::new().n_jobs(jobs).backend(Backend::Processes),
    ];
    let mut reference = None;
    setups.map(|parallel| {
        let start = Instant::now();
        let out = parallel.run(make()).expect("no task fails");
        let elapsed = start.elapsed();
        match &reference {
            None => reference = Some(out),
            Some(expected) => assert_eq!(&out, expected, "every backend computes the same"),
        }
        elapsed
    })
}

fn main() {
    workpool::init();
    let jobs = workpool::cpu_count();
    // Start the worker processes and threads now: start-up is not what is compared here.
    for backend in [Backend::Threads, Backend::Processes] {
        Parallel::new().backend(backend).run((0..64).map(Tiny)).expect("warm-up");
    }

    println!("the same tasks three ways: inline (n_jobs = 1), {jobs} threads, {jobs} worker processes\n");
    println!("  {:<38} {:>9} {:>9} {:>10}", "", "inline", "threads", "processes");
    let rows: [(&str, [Duration; 3]); 3] = [
        ("200000 tiny tasks (~0.1 µs each)", race(|| (0..200_000).map(Tiny))),
        ("64 CPU-bound tasks (~5 ms each)", race(|| (0..64).map(|seed| Crunch { seed, n: 3_000_000 }))),
        (
            "64 tasks with 1 MiB arguments",
            race(|| (0..64u8).map(|i| Checksum((0..1 << 20).map(|j: u32| (j as u8) ^ i).collect()))),
        ),
    ];
    for (what, [inline, threads, processes]) in rows {
        println!("  {what:<38} {:>9} {:>9} {:>10}", ms(inline), ms(threads), ms(processes));
    }
    println!(
        "\nthreads: nothing copied, nothing isolated (a crash takes the program down)\n\
         processes: every argument and result is encoded and sent over a socket, and a crash costs one task"
    );
}

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.0} ms", d.as_secs_f64() * 1e3)
    }
}
