//! `ExecutorBuilder::initializer`: run once in every worker process before its first task; a
//! failing one is a start failure of that worker (the waiting task fails with `is_spawn()`,
//! naming the initializer's error), never a broken executor.

mod common;

use common::*;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use workpool::{Executor, Task};

workpool::test_support!();

/// Times the initializer ran in this process.
static INITIALIZED: AtomicU32 = AtomicU32::new(0);

/// The initializer: counts itself, or fails while `fail_while` exists (panic or abort).
#[derive(Clone, Serialize, Deserialize)]
struct Setup {
    fail_while: Option<PathBuf>,
    abort: bool,
}
impl Task for Setup {
    type Output = ();
    fn run(self) {
        if self.fail_while.as_ref().is_some_and(|p| p.exists()) {
            if self.abort {
                std::process::abort();
            }
            panic!("setup refused: the flag file exists");
        }
        INITIALIZED.fetch_add(1, Ordering::SeqCst);
    }
}

/// How many times the initializer ran in this worker, and its pid.
#[derive(Serialize, Deserialize)]
struct Count;
impl Task for Count {
    type Output = (u32, u32);
    fn run(self) -> (u32, u32) {
        (INITIALIZED.load(Ordering::SeqCst), std::process::id())
    }
}

/// Never registered.
#[derive(Serialize, Deserialize)]
struct Unregistered;
impl Task for Unregistered {
    type Output = ();
    fn run(self) {}
}

workpool::register!(Setup, Count);

#[test]
fn the_initializer_runs_once_in_every_worker_before_its_first_task() {
    let ex = Executor::builder().workers(2).initializer(Setup { fail_while: None, abort: false }).build().unwrap();
    let results: Vec<(u32, u32)> = ex.map((0..200).map(|_| Count)).map(Result::unwrap).collect();
    assert!(results.iter().all(|&(count, _)| count == 1), "once per worker, before any task: {results:?}");
    // A replaced worker is initialized again.
    assert!(ex.submit(Crash::Abort).join().unwrap_err().is_worker_death());
    let (count, _) = ex.submit(Count).join().unwrap();
    assert_eq!(count, 1);
    assert_eq!(INITIALIZED.load(Ordering::SeqCst), 0, "never in the parent");
}

#[test]
fn a_failing_initializer_is_a_start_failure_not_a_broken_executor() {
    for abort in [false, true] {
        let flag = temp_dir(&format!("init-fails-{abort}")).join("refuse");
        std::fs::write(&flag, b"").unwrap();
        let ex = Executor::builder()
            .workers(1)
            .initializer(Setup { fail_while: Some(flag.clone()), abort })
            .build()
            .unwrap();
        let err = ex.submit(Count).join().unwrap_err();
        assert!(err.is_spawn(), "{err}");
        let text = err.to_string();
        assert!(text.contains("initializer"), "{text}");
        if abort {
            assert!(text.contains("SIGABRT"), "the worker's death is named: {text}");
        } else {
            assert!(text.contains("setup refused: the flag file exists"), "the panic is named: {text}");
        }
        assert_eq!(ex.workers()[0].pid, None, "the failed worker was reaped");
        std::fs::remove_file(&flag).unwrap();
        let (count, pid) = ex.submit(Count).join().expect("the next task starts a worker again");
        assert_eq!(count, 1);
        assert!(pid != std::process::id());
    }
}

#[test]
fn a_slow_initializer_is_bounded_by_the_task_timeout() {
    #[derive(Clone, Serialize, Deserialize)]
    struct Hang;
    impl Task for Hang {
        type Output = ();
        fn run(self) {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    workpool::register!(Hang);
    let ex = Executor::builder().workers(1).task_timeout(Duration::from_millis(100)).initializer(Hang).build().unwrap();
    let start = std::time::Instant::now();
    let err = ex.submit(Count).join().unwrap_err();
    assert!(err.is_spawn() && err.to_string().contains("task timeout"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(20), "{:?}", start.elapsed());
}

#[test]
fn an_unregistered_initializer_fails_the_build() {
    let err = Executor::builder().workers(1).initializer(Unregistered).build().unwrap_err();
    assert!(err.to_string().contains("register!(Unregistered)"), "{err}");
}
