//! Faults around a running task that used to hang, get the wrong verdict, or leave a process
//! behind: raised memory-fault signals, stack overflows, a task that forks and dies, a task that
//! closes its worker's channel, subprocesses of tasks, concurrent shutdowns, the memory ceiling
//! on a fresh worker, and the thread pools of `Parallel`.

mod common;

use common::*;
use std::time::{Duration, Instant};
use workpool::{Backend, Executor, Parallel, Shutdown};

workpool::test_support!();

fn executor(workers: usize) -> Executor {
    Executor::builder().workers(workers).build().expect("executor")
}

fn pid_in(file: &std::path::Path) -> u32 {
    assert!(wait_until(Duration::from_secs(10), || file.exists()));
    std::thread::sleep(Duration::from_millis(20));
    std::fs::read_to_string(file).unwrap().trim().parse().unwrap()
}

#[test]
fn a_raised_sigsegv_or_sigbus_kills_the_worker_as_in_a_c_program() {
    let ex = executor(1);
    for (sig, name) in [(libc::SIGSEGV, "SIGSEGV"), (libc::SIGBUS, "SIGBUS")] {
        // Twice: Rust's runtime used to survive the first one and report success.
        for _ in 0..2 {
            let err = ex.submit(Hazard::Raise(sig)).join().expect_err("a raised fault signal must kill the worker");
            assert!(err.is_worker_death() && err.to_string().contains(name), "{err}");
        }
    }
    assert_eq!(ex.submit(Square(4)).join().unwrap(), 16);
}

#[test]
fn a_sigsegv_sent_from_outside_kills_the_busy_worker() {
    let marker = temp_dir("outside-segv").join("started");
    let ex = executor(1);
    let busy = ex.submit(Marked { marker: marker.clone(), ms: 5_000 });
    assert!(wait_until(Duration::from_secs(10), || marker.exists()));
    let pid = ex.workers()[0].pid.unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGSEGV) };
    let err = busy.join().unwrap_err();
    assert!(err.is_worker_death() && err.to_string().contains("SIGSEGV"), "{err}");
}

#[test]
fn a_stack_overflow_is_reported_as_one() {
    let ex = executor(1);
    let err = ex.submit(Hazard::Overflow).join().unwrap_err();
    assert!(err.is_worker_death() && err.to_string().contains("overflowed its stack"), "{err}");
    assert_eq!(ex.submit(Square(5)).join().unwrap(), 25);
}

#[test]
fn a_task_that_forks_and_aborts_is_seen_dead_at_once_and_its_child_is_stopped() {
    let ex = executor(1);
    let start = Instant::now();
    let err = ex.submit(Hazard::ForkThenAbort).join().unwrap_err();
    assert!(err.is_worker_death() && err.to_string().contains("SIGABRT"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(3), "not when the forked child exits: {:?}", start.elapsed());
    assert_eq!(ex.submit(Square(6)).join().unwrap(), 36);
}

#[test]
fn a_task_that_closes_its_workers_channel_is_told_so_promptly() {
    let ex = executor(1);
    let start = Instant::now();
    let err = ex.submit(Hazard::CloseChannel).join().unwrap_err();
    assert!(err.is_worker_death() && err.to_string().contains("closed or broke the worker's channel"), "{err}");
    assert!(start.elapsed() < Duration::from_millis(1500), "{:?}", start.elapsed());
    assert_eq!(ex.submit(Square(7)).join().unwrap(), 49);
}

#[test]
fn a_timed_out_tasks_subprocess_dies_with_its_worker() {
    let file = temp_dir("timeout-subprocess").join("pid");
    let ex = Executor::builder().workers(1).task_timeout(Duration::from_millis(500)).build().unwrap();
    let handle = ex.submit(Hazard::Subprocess(file.clone(), 60_000));
    let sleeper = pid_in(&file);
    let _guard = KillOnDrop(vec![sleeper]);
    assert!(handle.join().unwrap_err().is_timeout());
    assert!(wait_until(Duration::from_secs(3), || process_gone(sleeper)), "sleep 300 outlived the timeout kill");
}

#[test]
fn shutdown_stops_what_tasks_left_running() {
    let file = temp_dir("shutdown-subprocess").join("pid");
    let ex = executor(1);
    assert_eq!(ex.submit(Hazard::Subprocess(file.clone(), 0)).join().unwrap(), 2);
    let sleeper = pid_in(&file);
    let _guard = KillOnDrop(vec![sleeper]);
    ex.shutdown(Shutdown::Wait);
    assert!(wait_until(Duration::from_secs(3), || process_gone(sleeper)), "sleep 300 outlived shutdown");
}

#[test]
fn concurrent_shutdowns_all_return_after_the_workers_are_reaped() {
    let ex = executor(2);
    let pids: Vec<u32> = ex.map((0..6).map(|_| Nap(20))).map(Result::unwrap).collect();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                ex.shutdown(Shutdown::Wait);
                for &pid in &pids {
                    assert!(process_gone(pid), "shutdown returned while worker {pid} still runs");
                }
            });
        }
    });
}

#[test]
fn the_memory_ceiling_catches_a_fresh_worker_grown_by_its_first_task() {
    let ex = Executor::builder().workers(1).max_worker_memory(40 << 20).build().unwrap();
    let first = ex.submit(Leak(64)).join().unwrap(); // the worker's very first task
    let next = ex.submit(Pid).join().unwrap();
    assert_ne!(first, next, "the bloated worker ran the next task");
}

#[test]
fn parallel_on_threads_keeps_a_bounded_number_of_threads() {
    let threads = || std::fs::read_dir("/proc/self/task").unwrap().count();
    let before = threads();
    for n in 2..=12 {
        let got = Parallel::new().n_jobs(n).backend(Backend::Threads).run((0..20).map(Square)).unwrap();
        assert_eq!(got.len(), 20);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(threads() <= before + 12, "{} threads before, {} after 11 sizes", before, threads());
}

// ===== lost parallelism =====

fn warm(ex: &Executor) {
    // A burst of tiny tasks: the prefetch window grows to its largest.
    let got: Vec<u64> = ex.map((0..20_000).map(Square)).map(Result::unwrap).collect();
    assert_eq!(got.len(), 20_000);
    // A moment for the feeders to go idle after their last results (a program between two
    // calls has that much): the idle ones are then left the next tasks.
    std::thread::sleep(Duration::from_millis(50));
}

#[test]
fn two_long_tasks_on_two_warm_workers_run_at_the_same_time() {
    let ex = executor(2);
    warm(&ex);
    for round in 0..5 {
        let start = Instant::now();
        let handles: Vec<_> = (0..2).map(|_| ex.submit(Nap(300))).collect();
        let pids: std::collections::BTreeSet<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let took = start.elapsed();
        assert!(took < Duration::from_millis(550), "round {round}: {took:?} on {pids:?}: they ran one after another");
        assert_eq!(pids.len(), 2, "round {round}");
    }
}

#[test]
fn n_tasks_that_wait_for_each_other_on_n_workers_all_run_at_once() {
    for n in [2, 3] {
        let ex = executor(n);
        warm(&ex);
        let dir = temp_dir(&format!("rendezvous-{n}"));
        let handles: Vec<_> = (0..n).map(|me| ex.submit(Rendezvous { dir: dir.clone(), n, me })).collect();
        for h in handles {
            assert!(h.join().unwrap(), "{n} tasks on {n} workers did not all run at once");
        }
    }
}

#[test]
fn one_task_after_another_reuses_the_warm_worker() {
    let ex = executor(4);
    let first = ex.submit(Pid).join().unwrap();
    for round in 0..40 {
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(ex.submit(Pid).join().unwrap(), first, "round {round}: a second process served it");
    }
    let starts: u64 = ex.workers().iter().map(|w| w.starts).sum();
    assert_eq!(starts, 1, "{:?}", ex.workers());
}

#[test]
fn long_tasks_after_a_burst_of_tiny_ones_spread_over_every_worker() {
    let ex = executor(2);
    warm(&ex);
    let start = Instant::now();
    let done: Vec<u32> = ex.map((0..8).map(|_| Nap(250))).map(Result::unwrap).collect();
    let took = start.elapsed();
    assert!(took < Duration::from_millis(1600), "8 x 250 ms on 2 workers took {took:?}");
    assert_eq!(done.iter().collect::<std::collections::BTreeSet<_>>().len(), 2);
}

#[test]
fn stopped_idle_workers_do_not_hold_tasks_past_the_task_timeout() {
    let ex = Executor::builder().workers(2).task_timeout(Duration::from_secs(1)).build().unwrap();
    warm(&ex);
    let pids = worker_pids(&ex);
    assert_eq!(pids.len(), 2);
    let _guard = KillOnDrop(pids.iter().copied().collect());
    for &pid in &pids {
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    }
    let start = Instant::now();
    let got = ex.submit(Square(9)).join();
    let took = start.elapsed();
    for &pid in &pids {
        unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    }
    assert_eq!(got.unwrap(), 81);
    assert!(took < Duration::from_secs(5), "a stopped worker held the task for {took:?}");
}

#[test]
fn tasks_queued_for_a_stopped_worker_run_on_the_other_one() {
    let ex = executor(2);
    warm(&ex);
    let pids: Vec<u32> = worker_pids(&ex).into_iter().collect();
    let _guard = KillOnDrop(pids.clone());
    unsafe { libc::kill(pids[0] as i32, libc::SIGSTOP) };
    let start = Instant::now();
    let got: Vec<u64> = ex.map((0..100).map(Square)).map(Result::unwrap).collect();
    let took = start.elapsed();
    unsafe { libc::kill(pids[0] as i32, libc::SIGCONT) };
    assert_eq!(got, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn parallel_times_each_task_of_a_batch_not_the_batch() {
    let ex = Executor::builder().workers(2).task_timeout(Duration::from_millis(500)).build().unwrap();
    // 50 tasks of 20 ms per batch: 1 s per batch, no task near the limit.
    let got = Parallel::new().executor(ex.clone()).batch_size(50).run((0..100).map(|_| Nap(20)));
    assert_eq!(got.expect("no task ran past its timeout").len(), 100);
    // A task that does hang in a batch is still stopped.
    let tasks = (0..10).map(|i| Nap(if i == 5 { 60_000 } else { 10 }));
    let start = Instant::now();
    let err = Parallel::new().executor(ex).batch_size(10).run(tasks).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}

/// Its argument's `Deserialize` panics in the worker (the submitting side encodes it fine).
struct PanicsOnDecode;
impl serde::Serialize for PanicsOnDecode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(1)
    }
}
impl<'de> serde::Deserialize<'de> for PanicsOnDecode {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("Deserialize of PanicsOnDecode panics")
    }
}
impl workpool::Task for PanicsOnDecode {
    type Output = u32;
    fn run(self) -> u32 {
        0
    }
}

/// Its output's `Serialize` panics in the worker.
#[derive(serde::Serialize, serde::Deserialize)]
struct PanicsOnEncode;
#[derive(Debug)]
struct Unsendable;
impl serde::Serialize for Unsendable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("Serialize of Unsendable panics")
    }
}
impl<'de> serde::Deserialize<'de> for Unsendable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unsendable)
    }
}
impl workpool::Task for PanicsOnEncode {
    type Output = Unsendable;
    fn run(self) -> Unsendable {
        Unsendable
    }
}

workpool::register!(PanicsOnDecode, PanicsOnEncode);

#[test]
fn a_panic_in_serde_code_is_a_codec_error_and_the_worker_lives_on() {
    let ex = executor(1);
    let before = ex.submit(Pid).join().unwrap();
    let err = ex.submit(PanicsOnDecode).join().unwrap_err();
    assert!(err.is_codec() && err.to_string().contains("Deserialize panicked"), "{err}");
    let err = ex.submit(PanicsOnEncode).join().unwrap_err();
    assert!(err.is_codec() && err.to_string().contains("Serialize panicked"), "{err}");
    assert_eq!(ex.submit(Pid).join().unwrap(), before, "the worker lived on");
}

/// Runs `f` on a thread of its own; its result, or `None` when it took longer than `limit`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// A window of two (the last task took 50 ms) written to the one worker of `ex`, stopped first:
/// its pid (killed on drop), and the two handles.
fn two_written_to_a_stopped_worker(
    ex: &Executor,
) -> (u32, KillOnDrop, workpool::TaskHandle<u64>, workpool::TaskHandle<u64>) {
    ex.submit(Nap(50)).join().unwrap();
    let pid = ex.workers()[0].pid.unwrap();
    let guard = KillOnDrop(vec![pid]);
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let (first, second) = (ex.submit(Square(2)), ex.submit(Square(3)));
    assert!(wait_until(Duration::from_secs(10), || first.pid().is_some() && second.pid().is_some()));
    std::thread::sleep(Duration::from_millis(100)); // both frames written
    (pid, guard, first, second)
}

#[test]
fn a_window_taken_back_whole_is_cleared_and_shutdown_returns() {
    // Both tasks of a window written to a stopped worker; the kill of the first takes both back
    // through the claim ring before the worker claimed either. Continued, the worker skips both
    // and says so (SKIPPED): the feeder must then forget them, or they fill its window for good
    // (the second task never runs again, shutdown waits forever).
    let ex = executor(1);
    let (pid, _guard, first, second) = two_written_to_a_stopped_worker(&ex);
    assert!(first.kill());
    std::thread::sleep(Duration::from_millis(100)); // the doorbell answered
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    assert!(first.join().unwrap_err().is_cancelled());
    let got = within(Duration::from_secs(10), move || second.join());
    if got.is_none() {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) }; // unsticks the feeder: its tasks run again
    }
    assert_eq!(got.expect("the task taken back never ran again").unwrap(), 9);
    let returned = within(Duration::from_secs(10), move || ex.shutdown(Shutdown::Wait));
    if returned.is_none() {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    assert!(returned.is_some(), "shutdown(Wait) did not return");
    assert!(wait_until(Duration::from_secs(5), || reap_if_ours(pid) || process_gone(pid)));
}

#[test]
fn a_stopped_worker_that_owes_answers_only_for_tasks_taken_back_is_killed_at_the_task_timeout() {
    // As above, but the worker stays stopped: it never says it skipped the two tasks taken
    // back, so its window stays full. With a task_timeout it is killed as stalled (no task
    // fails: neither started), and the second task runs on a fresh worker.
    let ex = Executor::builder().workers(1).task_timeout(Duration::from_secs(1)).build().unwrap();
    let (pid, _guard, first, second) = two_written_to_a_stopped_worker(&ex);
    let start = Instant::now();
    assert!(first.kill());
    let got = within(Duration::from_secs(10), move || second.join());
    if got.is_none() {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) }; // unsticks the feeder
    }
    assert_eq!(got.expect("the stopped worker held its window past the task timeout").unwrap(), 9);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(first.join().unwrap_err().is_cancelled());
    assert!(
        wait_until(Duration::from_secs(5), || reap_if_ours(pid) || process_gone(pid)),
        "the stopped worker lives on"
    );
    assert_ne!(ex.workers()[0].pid, Some(pid), "a fresh worker ran the task");
}
