//! The soak: everything at once, for a bounded time. Random outside SIGKILLs of workers, workers
//! stopped and continued, tasks that abort, segfault, exit, panic and hang past the task timeout,
//! and Ctrl-C (a real SIGINT to this process while a map is being consumed). Every task's run is
//! logged; at the end each task ran at most once, every success ran exactly once and returned
//! its own value, every failure is one the task or the faults explain, and no worker process is
//! left. `.ci/run` runs it (`cargo test --test soak -- --ignored`); `WORKPOOL_SOAK_SECS` sets its
//! length (default 40).

mod common;

use common::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workpool::{Executor, Task, TaskError};

workpool::test_support!();

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Square,
    Abort,
    Segfault,
    Exit,
    Panic,
    Hang,
}

#[derive(Serialize, Deserialize)]
struct Soak {
    id: u64,
    log: PathBuf,
    act: Act,
}

impl Task for Soak {
    type Output = u64;
    fn run(self) -> u64 {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log");
        f.write_all(format!("{}\n", self.id).as_bytes()).expect("log write");
        drop(f);
        match self.act {
            Act::Square => self.id * self.id,
            Act::Abort => std::process::abort(),
            Act::Segfault => unsafe { libc::raise(libc::SIGSEGV) as u64 },
            Act::Exit => std::process::exit(3),
            Act::Panic => panic!("soak panic {}", self.id),
            Act::Hang => {
                std::thread::sleep(Duration::from_secs(60));
                0
            }
        }
    }
}

workpool::register!(Soak);

fn act(id: u64) -> Act {
    match id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54 {
        0..=7 => Act::Abort,
        8..=15 => Act::Segfault,
        16..=19 => Act::Exit,
        20..=29 => Act::Panic,
        30..=31 => Act::Hang,
        _ => Act::Square,
    }
}

#[test]
#[ignore = "a minute of faults: run by .ci/run with --ignored"]
fn soak_every_fault_at_once_exactly_once_no_process_left() {
    workpool::handle_ctrl_c().expect("no other Ctrl-C handler in this binary");
    let secs: u64 = std::env::var("WORKPOOL_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    let dir = temp_dir("soak");
    let log = dir.join("log");
    let ex = Executor::builder().workers(3).task_timeout(Duration::from_millis(800)).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (kills, stops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let chaos = {
        let (ex, stop, kills, stops) = (ex.clone(), stop.clone(), kills.clone(), stops.clone());
        std::thread::spawn(move || {
            let mut n: u64 = 1;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let pids: Vec<u32> = ex.workers().iter().filter_map(|w| w.pid).collect();
                if let Some(&pid) = pids.get((n >> 40) as usize % pids.len().max(1)) {
                    match (n >> 33) % 8 {
                        0 => {
                            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                            kills.fetch_add(1, Ordering::Relaxed);
                        }
                        1 => {
                            unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
                            std::thread::sleep(Duration::from_millis(30));
                            unsafe { libc::kill(pid as i32, libc::SIGCONT) };
                            stops.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let mut next_id = 0u64;
    let mut outcomes: HashMap<u64, Result<u64, TaskError>> = HashMap::new();
    let mut interrupts = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        let ids: Vec<u64> = (next_id..next_id + 3000).collect();
        next_id += 3000;
        let interrupt_at = if interrupts < 10 && next_id % 9000 == 0 {
            Some(Instant::now() + Duration::from_millis(300))
        } else {
            None
        };
        let mut map = ex.map(ids.iter().map(|&id| Soak { id, log: log.clone(), act: act(id) }));
        let mut got = Vec::new();
        let mut sent = false;
        for r in map.by_ref() {
            if interrupt_at.is_some_and(|at| Instant::now() >= at) && !sent {
                unsafe { libc::kill(std::process::id() as i32, libc::SIGINT) };
                sent = true;
                interrupts += 1;
            }
            got.push(r);
        }
        if !sent {
            // A round after an interrupted one, with no Ctrl-C of its own: nothing of it may
            // fail as interrupted (work submitted after a Ctrl-C belongs to a new epoch).
            let wrong = got.iter().filter(|r| r.as_ref().is_err_and(TaskError::is_interrupted)).count();
            assert_eq!(wrong, 0, "{wrong} tasks of a round without Ctrl-C failed as interrupted");
        }
        for (id, r) in ids.iter().zip(got) {
            outcomes.insert(*id, r);
        }
    }
    stop.store(true, Ordering::Relaxed);
    chaos.join().unwrap();
    assert_eq!(ex.submit(Square(12)).join().unwrap(), 144, "the executor ends usable");
    let mut runs: HashMap<u64, usize> = HashMap::new();
    for id in read_ids(&log) {
        *runs.entry(id).or_default() += 1;
    }
    let (mut ok, mut failed) = (0, 0);
    for (id, outcome) in &outcomes {
        let ran = runs.get(id).copied().unwrap_or(0);
        assert!(ran <= 1, "task {id} ran {ran} times");
        match outcome {
            Ok(v) => {
                ok += 1;
                assert_eq!(ran, 1, "task {id} succeeded without running");
                assert_eq!(*v, id * id, "task {id} got another task's result");
                assert_eq!(act(*id), Act::Square, "task {id} should have failed");
            }
            Err(e) => {
                failed += 1;
                let explained = e.is_worker_death()
                    || e.is_interrupted()
                    || e.is_cancelled()
                    || e.is_timeout()
                    || (e.is_panic() && act(*id) == Act::Panic);
                assert!(explained, "task {id} ({:?}): {e}", act(*id));
            }
        }
    }
    eprintln!(
        "soak: {} tasks in {:?}: {ok} ok, {failed} failed; {} kills, {} stops, {interrupts} Ctrl-C",
        outcomes.len(),
        started.elapsed(),
        kills.load(Ordering::Relaxed),
        stops.load(Ordering::Relaxed)
    );
    assert!(ok > 1000 && kills.load(Ordering::Relaxed) > 10 && interrupts > 0, "the soak exercised too little");
    let pids: Vec<u32> = ex.workers().iter().filter_map(|w| w.pid).collect();
    drop(ex);
    assert!(wait_until(Duration::from_secs(10), || pids.iter().all(|&p| process_gone(p))), "workers left behind");
}
