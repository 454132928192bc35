//! `Parallel`: both backends, n_jobs, ordering, streaming with backpressure, early abort,
//! nested use inside workers.

mod common;

use common::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workpool::{Backend, Executor, Parallel, Task};

workpool::test_support!();

/// Runs a Parallel inside a worker; reports the results and how many child processes the worker
/// has afterwards (a nested process pool would show up there).
#[derive(Serialize, Deserialize)]
struct Nested(u64);
impl Task for Nested {
    type Output = (Vec<u64>, usize, bool);
    fn run(self) -> (Vec<u64>, usize, bool) {
        let inner = Parallel::new().n_jobs(2).run((0..self.0).map(Square)).unwrap();
        let mut children = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            children += list.split_whitespace().count();
        }
        (inner, children, std::env::var_os("WORKPOOL_WORKER").is_some())
    }
}

/// Sleeps a little, then squares; panics on request.
#[derive(Serialize, Deserialize)]
struct Slow {
    x: u64,
    ms: u64,
    fail: bool,
}
impl Task for Slow {
    type Output = u64;
    fn run(self) -> u64 {
        std::thread::sleep(Duration::from_millis(self.ms));
        assert!(!self.fail, "task {} failed on purpose", self.x);
        self.x * self.x
    }
}

workpool::register!(Nested, Slow);

fn squares(n: u64) -> Vec<u64> {
    (0..n).map(|x| x * x).collect()
}

#[test]
fn both_backends_and_inline_give_ordered_results() {
    for backend in [Backend::Threads, Backend::Processes] {
        for jobs in [1, 2, -1] {
            let got = Parallel::new().n_jobs(jobs).backend(backend).run((0..5000).map(Square)).unwrap();
            assert_eq!(got, squares(5000), "{backend:?} n_jobs={jobs}");
        }
    }
    assert_eq!(Parallel::new().run(Vec::<Square>::new()).unwrap(), Vec::<u64>::new());
}

#[test]
fn fixed_batch_sizes_keep_order_and_cover_every_task() {
    for size in [1, 7, 1000, 100_000] {
        let got = Parallel::new().n_jobs(2).batch_size(size).run((0..3001).map(Square)).unwrap();
        assert_eq!(got, squares(3001), "batch_size {size}");
    }
}

#[test]
fn unordered_streaming_yields_everything_once() {
    for backend in [Backend::Threads, Backend::Processes] {
        let mut got: Vec<u64> = Parallel::new()
            .n_jobs(2)
            .backend(backend)
            .iter_unordered((0..2000).map(Square))
            .map(Result::unwrap)
            .collect();
        got.sort_unstable();
        assert_eq!(got, squares(2000), "{backend:?}");
    }
}

#[test]
fn a_slow_consumer_holds_back_dispatch() {
    for backend in [Backend::Threads, Backend::Processes] {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let input = (0..10_000_000u64).map(move |x| {
            counter.fetch_add(1, Ordering::Relaxed);
            Square(x)
        });
        let mut stream = Parallel::new().n_jobs(2).backend(backend).batch_size(10).iter(input);
        for i in 0..100u64 {
            assert_eq!(stream.next().unwrap().unwrap(), i * i);
            std::thread::sleep(Duration::from_micros(200)); // a slow consumer
        }
        let seen = pulled.load(Ordering::Relaxed);
        // At most 4 × n_jobs batches of 10 ahead of what was consumed.
        assert!(seen <= 100 + 4 * 2 * 10 + 10, "{backend:?}: {seen} inputs pulled for 100 consumed");
    }
}

#[test]
fn the_first_error_ends_the_call_and_cancels_the_rest() {
    for backend in [Backend::Threads, Backend::Processes] {
        let start = Instant::now();
        let tasks = (0..400u64).map(|x| Slow { x, ms: 10, fail: x == 5 });
        let err = Parallel::new().n_jobs(2).backend(backend).batch_size(1).run(tasks).unwrap_err();
        assert!(err.is_panic(), "{err:?}");
        assert!(err.to_string().contains("task 5 failed on purpose"), "{err}");
        // 400 × 10 ms over 2 jobs would take 2 s; the rest must have been cancelled.
        assert!(start.elapsed() < Duration::from_millis(1500), "{backend:?}: {:?}", start.elapsed());
    }
}

#[test]
fn an_error_does_not_kill_healthy_workers() {
    let ex = Executor::builder().workers(2).build().unwrap();
    let before: std::collections::BTreeSet<u32> = ex.map((0..6).map(|_| Nap(20))).map(Result::unwrap).collect();
    let err = Parallel::new().executor(ex.clone()).n_jobs(2).run(vec![Panic("p".into())]).unwrap_err();
    assert!(err.is_panic());
    let after: std::collections::BTreeSet<u32> = ex.map((0..6).map(|_| Nap(20))).map(Result::unwrap).collect();
    assert_eq!(before, after, "the same worker processes are still serving");
}

#[test]
fn a_crash_on_the_process_backend_is_an_error_not_a_hang() {
    let err = Parallel::new().n_jobs(2).run(vec![Crash::Abort, Crash::Abort]).unwrap_err();
    assert!(err.is_worker_death(), "{err:?}");
    let again = Parallel::new().n_jobs(2).run((0..10).map(Square)).unwrap();
    assert_eq!(again, squares(10));
}

#[test]
fn long_tasks_spread_over_every_worker() {
    // Its own executor: the reusable one is shared with the tests running beside this one.
    let ex = Executor::builder().workers(2).build().unwrap();
    let pids = Parallel::new().executor(ex).n_jobs(2).run((0..8).map(|_| Nap(50))).unwrap();
    let distinct: std::collections::BTreeSet<u32> = pids.into_iter().collect();
    assert_eq!(distinct.len(), 2, "auto-batching must not put long tasks on one worker");
}

#[test]
fn parallel_inside_a_worker_runs_on_threads_not_processes() {
    let ex = Executor::builder().workers(1).build().unwrap();
    let (inner, children, marker) = ex.submit(Nested(300)).join().unwrap();
    assert_eq!(inner, squares(300));
    assert_eq!(children, 0, "a nested Parallel started processes inside a worker");
    assert!(!marker);
}

#[test]
fn thread_caps_are_seen_inside_workers() {
    let jobs = 2;
    let ex = Executor::builder().workers(jobs).build().unwrap();
    let got = ex.submit(Env(vec!["OPENBLAS_NUM_THREADS".into(), "VECLIB_MAXIMUM_THREADS".into()])).join().unwrap();
    let expected = Some((workpool::cpu_count() / jobs).max(1).to_string());
    if std::env::var_os("OPENBLAS_NUM_THREADS").is_none() {
        assert_eq!(got[0], expected);
    }
    if std::env::var_os("VECLIB_MAXIMUM_THREADS").is_none() {
        assert_eq!(got[1], expected);
    }
}

#[test]
fn an_explicit_executor_is_used_even_with_one_job() {
    let ex = Executor::builder().workers(1).build().unwrap();
    let pids = Parallel::new().executor(ex).n_jobs(1).run((0..5).map(|_| Pid)).unwrap();
    assert!(pids.iter().all(|&p| p != std::process::id()), "ran inline instead of on the executor");
}

#[test]
fn effective_n_jobs_uses_cpu_count() {
    let cpus = workpool::cpu_count();
    assert_eq!(Parallel::new().n_jobs(-1).effective_n_jobs(), cpus);
    assert_eq!(Parallel::new().n_jobs(-2).effective_n_jobs(), (cpus - 1).max(1));
    assert_eq!(Parallel::new().n_jobs(3).effective_n_jobs(), 3);
}
