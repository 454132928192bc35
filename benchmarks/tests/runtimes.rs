//! `TaskHandle`, `as_completed` and `Executor::map_stream` under the runtimes other than tokio
//! (tokio has `tests/async_tokio.rs` in the library): smol, and `futures::executor::block_on`.
//! The library depends on no runtime; these live here, in a crate that depends on workpool as
//! a user's does, so that the library's own first build stays small.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use workpool::{as_completed, Executor, Task};

workpool::test_support!();

#[derive(Serialize, Deserialize)]
struct Square(u64);
impl Task for Square {
    type Output = u64;
    fn run(self) -> u64 {
        self.0 * self.0
    }
}
workpool::register!(Square);

/// Sleeps, then says which worker process ran it.
#[derive(Serialize, Deserialize)]
struct Nap(u64);
impl Task for Nap {
    type Output = u32;
    fn run(self) -> u32 {
        std::thread::sleep(Duration::from_millis(self.0));
        std::process::id()
    }
}
workpool::register!(Nap);

fn executor() -> Executor {
    Executor::builder().workers(2).build().expect("executor")
}

/// Whether `pid` is gone; reaps it first if it is our child (PID 1 here reaps no orphans).
fn gone(pid: u32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid on one pid with WNOHANG; harmless when it is not our child.
    unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
}

#[test]
fn two_hundred_concurrent_awaits_under_smol() {
    let ex = executor();
    let got: Vec<u64> = smol::block_on(async {
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let handle = ex.submit(Square(i));
                smol::spawn(async move { handle.await.expect("a square") })
            })
            .collect();
        let mut got = Vec::new();
        for task in tasks {
            got.push(task.await);
        }
        got
    });
    assert_eq!(got, (0..200u64).map(|i| i * i).collect::<Vec<_>>());
    ex.shutdown(workpool::Shutdown::Wait);
}

#[test]
fn a_timer_keeps_ticking_under_smol_while_handles_are_awaited() {
    // Awaiting never blocks the thread: on smol's single-threaded block_on, a timer raced
    // against a 300 ms task fires first, and the task still completes afterwards.
    let ex = executor();
    smol::block_on(async {
        let handle = ex.submit(Nap(300));
        let start = Instant::now();
        let raced = futures_lite::future::or(async { Err(handle.await) }, async {
            smol::Timer::after(Duration::from_millis(50)).await;
            Ok(start.elapsed())
        })
        .await;
        let fired = raced.expect("the timer fires while the task runs");
        assert!(fired < Duration::from_millis(250), "the timer was held up: {fired:?}");
    });
    ex.shutdown(workpool::Shutdown::Wait);
}

#[test]
fn kill_under_smol_cancels_the_running_task_and_its_worker_goes() {
    let ex = executor();
    smol::block_on(async {
        let victim = ex.submit(Nap(60_000));
        let deadline = Instant::now() + Duration::from_secs(10);
        while victim.pid().is_none() && Instant::now() < deadline {
            smol::Timer::after(Duration::from_millis(5)).await;
        }
        let pid = victim.pid().expect("the task reached a worker");
        // Let it start (kill of a prefetched task costs no worker; this one must cost one).
        smol::Timer::after(Duration::from_millis(200)).await;
        assert!(victim.kill());
        let err = victim.await.expect_err("killed");
        assert!(err.is_cancelled(), "{err}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gone(pid) && Instant::now() < deadline {
            smol::Timer::after(Duration::from_millis(10)).await;
        }
        assert!(gone(pid), "the killed task's worker {pid} lives on");
        // The pool carries on.
        assert_eq!(ex.submit(Square(7)).await.expect("after a kill"), 49);
    });
    ex.shutdown(workpool::Shutdown::Wait);
}

#[test]
fn as_completed_and_map_stream_are_streams_under_smol() {
    use futures_lite::StreamExt;
    let ex = executor();
    smol::block_on(async {
        // Completion order: the short nap first.
        let handles = vec![ex.submit(Nap(400)), ex.submit(Nap(10))];
        let order: Vec<usize> = StreamExt::map(as_completed(handles), |(i, r)| {
            r.expect("a nap");
            i
        })
        .collect()
        .await;
        assert_eq!(order, vec![1, 0]);
        let squares: Vec<u64> = ex.map_stream((0..50u64).map(Square)).map(|r| r.expect("a square")).collect().await;
        assert_eq!(squares, (0..50u64).map(|i| i * i).collect::<Vec<_>>());
    });
    ex.shutdown(workpool::Shutdown::Wait);
}

#[test]
fn handles_await_under_the_futures_crates_block_on() {
    let ex = executor();
    let handles: Vec<_> = (0..40).map(|_| ex.submit(Nap(20))).collect();
    let pids: BTreeSet<u32> = futures_executor::block_on(futures_util::future::join_all(handles))
        .into_iter()
        .map(|r| r.expect("a nap"))
        .collect();
    assert_eq!(pids.len(), 2, "both workers served: {pids:?}");
    let squares = futures_executor::block_on(async {
        let (a, b) = futures_util::future::join(ex.submit(Square(3)), ex.submit(Square(4))).await;
        (a.expect("3²"), b.expect("4²"))
    });
    assert_eq!(squares, (9, 16));
    ex.shutdown(workpool::Shutdown::Wait);
}
