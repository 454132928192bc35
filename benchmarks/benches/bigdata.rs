//! Big data between processes: `workpool::Bytes` against a plain `Vec<u8>` field and against an
//! in-process memcpy of the same size (self-contained: no helpers shared with other benches).
//!
//! Scenarios (medians over `WORKPOOL_BENCH_RUNS` runs, default 5; sizes in MiB from
//! `WORKPOOL_BENCH_MIB`, default 100):
//!
//! * **memcpy**: copy the buffer into a fresh `Vec` (new pages), and into one reused (pages
//!   already there): what one copy costs on this machine.
//! * **Bytes round trip**: a task whose argument is the `Bytes` and whose result is that same
//!   `Bytes` (echo): submit → join, the result's bytes read once by the parent (as a user would).
//!   A fresh `Bytes` each run, from a `Vec` (its one copy into shared memory is paid every time;
//!   the segment of the last run is free by then and recycled, so the copy goes into pages that
//!   exist), and one `Bytes` sent again each run (no copy at all). Rates count both directions
//!   (2 × size per round trip), as `bigdata.py` does.
//! * **Vec<u8> round trip**: the same with a plain `Vec<u8>` (serde, element by element).
//! * **threshold**: round trips of fresh `Bytes` of 64 KiB to 1 MiB, each side of the 256 KiB
//!   threshold where they go out of band.
//! * **Bytes read by 100 tasks**: one `WORKPOOL_BENCH_SHARED_MIB` (default 512) MiB `Bytes`
//!   cloned into 100 tasks on 2 worker processes, each summing one byte per 64 (every cache
//!   line), against the same 100 tasks on 2 threads sharing an `Arc<Vec<u8>>` (0: skipped).
//! * **Shared<Bytes> read by 100 tasks**: the same buffer as one `Shared<Bytes>`: each worker
//!   process maps it once and keeps it (a `Bytes` per task is mapped, and its pages faulted in,
//!   by every task).
//!
//! Run: `cargo bench -p workpool-benchmarks --bench bigdata` (Python's figures, in the same sitting:
//! `python3 /work/shared/bench/bigdata.py 100`).

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workpool::{Bytes, Executor, Shared, Task};

#[derive(Serialize, Deserialize)]
struct Echo(Bytes);

impl Task for Echo {
    type Output = Bytes;
    fn run(self) -> Bytes {
        self.0
    }
}

#[derive(Serialize, Deserialize)]
struct EchoVec(Vec<u8>);

impl Task for EchoVec {
    type Output = Vec<u8>;
    fn run(self) -> Vec<u8> {
        self.0
    }
}

/// One byte of every cache line, summed.
fn read_lines(data: &[u8]) -> u64 {
    data.iter().step_by(64).map(|&b| u64::from(b)).sum()
}

#[derive(Serialize, Deserialize)]
struct ReadAll(Bytes);

impl Task for ReadAll {
    type Output = u64;
    fn run(self) -> u64 {
        read_lines(&self.0)
    }
}

#[derive(Serialize, Deserialize)]
struct ReadShared(Shared<Bytes>);

impl Task for ReadShared {
    type Output = u64;
    fn run(self) -> u64 {
        read_lines(&self.0)
    }
}

workpool::register!(Echo, EchoVec, ReadAll, ReadShared);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn timed(runs: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn row(what: &str, t: Duration, bytes: usize) {
    let rate = bytes as f64 / t.as_secs_f64() / 1e9;
    println!("  {what:<44} {:>9.1} ms {:>8.2} GB/s", t.as_secs_f64() * 1e3, rate);
}

fn main() {
    workpool::init();
    let runs = env_usize("WORKPOOL_BENCH_RUNS", 5);
    let mib = env_usize("WORKPOOL_BENCH_MIB", 100);
    let shared_mib = env_usize("WORKPOOL_BENCH_SHARED_MIB", 512);
    let len = mib << 20;
    let source: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let ex = Executor::builder().workers(2).build().expect("an executor");
    ex.submit(Echo(Bytes::from(vec![1u8; 4 << 20]))).join().expect("warm-up");
    // A round trip moves the buffer both ways: its rate counts 2 × size, as bigdata.py's does,
    // so that the two compare as they are printed.
    println!(
        "{mib} MiB, medians of {runs} runs (GB/s: 10^9 bytes moved per second; a round trip moves 2 × {mib} MiB)\n"
    );

    let fresh = timed(runs, || {
        let copy = source.clone();
        std::hint::black_box(&copy);
    });
    let mut reused = vec![0u8; len];
    let warm = timed(runs, || {
        reused.copy_from_slice(&source);
        std::hint::black_box(&reused);
    });
    row("memcpy into a fresh Vec", fresh, len);
    row("memcpy into a reused Vec", warm, len);

    // A fresh `Bytes` each run, made from a `Vec` the program already has (`From<Vec<u8>>`
    // takes it without a copy): its one copy into shared memory is timed (into the recycled
    // segment of the last run).
    let mut vecs: Vec<Vec<u8>> = (0..runs).map(|_| source.clone()).collect();
    let bytes_trip = timed(runs, || {
        let data = Bytes::from(vecs.pop().expect("one per run"));
        let back = ex.submit(Echo(data)).join().expect("echo");
        std::hint::black_box(read_lines(&back));
    });
    // One `Bytes` made once and sent each run: its segment is made once, so this is workpool's
    // own cost of a round trip (no copy at all).
    let data = Bytes::from(&source[..]);
    let bytes_again = timed(runs, || {
        let back = ex.submit(Echo(data.clone())).join().expect("echo");
        std::hint::black_box(read_lines(&back));
    });
    let vec_trip = timed(runs.min(3), || {
        let back = ex.submit(EchoVec(source.clone())).join().expect("echo");
        std::hint::black_box(read_lines(&back));
    });
    row("Bytes round trip (fresh Bytes each run)", bytes_trip, 2 * len);
    row("Bytes round trip (the same Bytes again)", bytes_again, 2 * len);
    row("Vec<u8> round trip", vec_trip, 2 * len);
    println!("  Bytes round trip / memcpy into a fresh Vec: {:.2}×", bytes_trip.as_secs_f64() / fresh.as_secs_f64());

    // Around the out-of-band threshold (256 KiB): below it inline, from it on in a segment. Fresh
    // buffers each time, round trips, 40 per size.
    println!("\nround trips of fresh Bytes around the 256 KiB threshold (40 each):");
    for kib in [64usize, 128, 255, 256, 512, 1024] {
        let len = kib << 10;
        let mut bufs: Vec<Vec<u8>> = (0..40).map(|_| source[..len].to_vec()).collect();
        let start = Instant::now();
        for _ in 0..40 {
            let back = ex.submit(Echo(Bytes::from(bufs.pop().expect("one each")))).join().expect("echo");
            std::hint::black_box(read_lines(&back));
        }
        let way = if kib >= 256 { "out of band" } else { "inline" };
        row(&format!("{kib:>5} KiB ({way})"), start.elapsed() / 40, 2 * len);
    }

    if shared_mib == 0 {
        return;
    }
    let big: Vec<u8> = (0..shared_mib << 20).map(|i| (i % 251) as u8).collect();
    let expect = read_lines(&big);
    let shared = Bytes::from(big.clone());
    let arc = Arc::new(big);
    let tasks = 100;
    let on_processes = timed(runs, || {
        let results: Vec<u64> = ex.map((0..tasks).map(|_| ReadAll(shared.clone()))).map(|r| r.expect("read")).collect();
        assert!(results.iter().all(|&r| r == expect));
    });
    let dataset = Shared::new(Bytes::from(arc.to_vec()));
    let on_processes_shared = timed(runs, || {
        let results: Vec<u64> =
            ex.map((0..tasks).map(|_| ReadShared(dataset.clone()))).map(|r| r.expect("read")).collect();
        assert!(results.iter().all(|&r| r == expect));
    });
    let on_threads = timed(runs, || {
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                let (arc, next) = (arc.clone(), &next);
                s.spawn(move || {
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < tasks {
                        assert_eq!(read_lines(&arc), expect);
                    }
                });
            }
        });
    });
    println!("\n{tasks} tasks each reading one {shared_mib} MiB buffer (one byte per cache line), 2 workers:");
    println!("  worker processes, Bytes     {:>9.1} ms", on_processes.as_secs_f64() * 1e3);
    println!("  worker processes, Shared<Bytes> {:>5.1} ms", on_processes_shared.as_secs_f64() * 1e3);
    println!("  threads, Arc<Vec<u8>>       {:>9.1} ms", on_threads.as_secs_f64() * 1e3);
    println!("  processes (Bytes) / threads: {:.2}×", on_processes.as_secs_f64() / on_threads.as_secs_f64());
    println!(
        "  processes (Shared<Bytes>) / threads: {:.2}×",
        on_processes_shared.as_secs_f64() / on_threads.as_secs_f64()
    );
}
