//! `workpool::ctrl_c()`: an async program hears Ctrl-C as a future instead of exiting with 130,
//! and shuts down gracefully with `shutdown_async`. The SIGINT is real (sent to this process);
//! one test in this binary, as the handler is process-wide.

mod common;

use common::*;
use std::time::{Duration, Instant};
use workpool::{Executor, Shutdown};

workpool::test_support!();

fn sigint_self() {
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGINT) }, 0);
}

#[test]
fn ctrl_c_resolves_the_future_and_the_server_shuts_down_gracefully() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let ex = Executor::builder().workers(2).build().unwrap();
        let in_flight = ex.submit(Nap(300));
        let pid = loop {
            match ex.workers().iter().find_map(|w| w.pid) {
                Some(pid) => break pid,
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        let stop = workpool::ctrl_c().expect("the handler installs");
        let sender = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            sigint_self();
        });
        tokio::time::timeout(Duration::from_secs(10), stop).await.expect("Ctrl-C resolved the future");
        sender.join().unwrap();
        // A future made after that press waits for the next one.
        let later = workpool::ctrl_c().unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(100), later).await.is_err(), "an old press is not news");
        // Graceful: the task that was running is finished, not interrupted (nobody waited on
        // it synchronously), and the shutdown does not block the runtime.
        let result = in_flight.await;
        assert!(result.is_ok(), "the running task finished: {result:?}");
        let more = ex.submit(Nap(300));
        let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = tokio::spawn({
            let stopped = stopped.clone();
            async move {
                let mut ticks = 0u32;
                while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks += 1;
                }
                ticks
            }
        });
        let start = Instant::now();
        ex.shutdown_async(Shutdown::Wait).await;
        stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(200), "Shutdown::Wait waited for the task: {took:?}");
        assert!(more.is_finished());
        assert!(more.await.is_ok(), "Shutdown::Wait ran what was submitted");
        let ticks = ticker.await.unwrap();
        assert!(ticks >= 10, "the runtime kept running during the {took:?} shutdown: {ticks} ticks");
        assert!(wait_until(Duration::from_secs(5), || reaped(pid)), "workers gone after the shutdown");
        assert!(ex.submit(Square(2)).await.unwrap_err().to_string().contains("shut down"));
    });
}
