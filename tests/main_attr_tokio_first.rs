//! `#[workpool::main]` written below `#[tokio::main]`: tokio expands first, into a plain `fn
//! main` that builds the runtime, and `workpool::init()` goes before that. Worker processes
//! serve tasks without starting a runtime, and the parent's runtime works as usual. A test
//! program with its own `main` (`harness = false`); `main_attr.rs` is the other order.

use std::error::Error;
use workpool::Executor;

/// What a task sees of its process: inside a tokio runtime or not, and how many threads.
#[workpool::task]
fn surroundings() -> (bool, usize, u32) {
    let in_runtime = tokio::runtime::Handle::try_current().is_ok();
    let threads = std::fs::read_dir("/proc/self/task").map(|dir| dir.count()).unwrap_or(0);
    (in_runtime, threads, std::process::id())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
#[workpool::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    assert!(tokio::runtime::Handle::try_current().is_ok(), "the parent runs in its runtime");
    let ex = Executor::builder().workers(1).build()?;
    let submitted = ex.clone();
    let (in_runtime, threads, pid) =
        tokio::task::spawn_blocking(move || submitted.submit(Surroundings).join()).await??;
    assert_ne!(pid, std::process::id(), "the task ran in a worker process");
    assert!(!in_runtime, "a worker must serve before any runtime starts");
    assert_eq!(threads, 1, "a worker has no runtime threads");
    let answer = tokio::spawn(async { 6 * 7 }).await?;
    assert_eq!(answer, 42);
    println!("main_attr_tokio_first: init ran before the runtime: 1 passed, 0 failed");
    Ok(())
}
