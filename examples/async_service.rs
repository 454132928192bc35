//! An async service that offloads crash-prone work to worker processes: a tokio program whose
//! "requests" parse untrusted documents with a parser that sometimes aborts, loops forever or
//! panics. Each request awaits its task (no runtime thread is blocked; a heartbeat shows it), a
//! crash costs only that request, a hung parse is stopped by a per-task timeout, a client that
//! gives up kills its task (`kill_on_drop`), and the service shuts down without blocking.
//!
//! ```text
//! cargo run --release --example async_service
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workpool::{Executor, Shutdown};

/// The "untrusted parser": counts the words of a document, unless the document is poison.
#[workpool::task]
fn parse(doc: String) -> usize {
    match doc.as_str() {
        "<abort>" => std::process::abort(), // a native library's assertion
        "<loop>" => loop {
            std::thread::sleep(Duration::from_secs(1)); // a parser stuck on its input
        },
        "<panic>" => panic!("unexpected token at byte 3"),
        "<slow>" => {
            std::thread::sleep(Duration::from_secs(5));
            0
        }
        "<long>" => {
            std::thread::sleep(Duration::from_millis(300)); // a large document
            0
        }
        text => text.split_whitespace().count(),
    }
}

#[workpool::main]
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let ex = Executor::builder().workers(2).build().expect("executor");
    // A heartbeat on the same (only) runtime thread: it would stall if anything blocked.
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                let due = Instant::now() + Duration::from_millis(10);
                tokio::time::sleep_until(due.into()).await;
                worst = worst.max(due.elapsed());
            }
            worst
        }
    });

    let docs = ["hello async world", "<abort>", "one two three four", "<loop>", "<panic>", "five"];
    let requests: Vec<_> = docs
        .iter()
        .map(|doc| {
            let ex = ex.clone();
            let doc = doc.to_string();
            tokio::spawn(async move {
                // A per-request limit: a stuck parse is stopped, and only its worker is killed.
                let words = ex.submit_with_timeout(Parse { doc: doc.clone() }, Duration::from_millis(500)).await;
                (doc, words)
            })
        })
        .collect();
    for request in requests {
        let (doc, words) = request.await.expect("request task");
        match words {
            Ok(n) => println!("{doc:>20}  ->  {n} words"),
            Err(e) if e.is_worker_death() => {
                println!("{doc:>20}  ->  worker died (signal {:?}), request failed alone", e.signal())
            }
            Err(e) if e.is_timeout() => println!("{doc:>20}  ->  timed out, its worker was replaced"),
            Err(e) => println!("{doc:>20}  ->  {}", e.panic_message().unwrap_or("failed")),
        }
    }

    // A client that gives up after 100 ms: dropping the guarded handle kills the task.
    let guarded = ex.submit(Parse { doc: "<slow>".into() }).kill_on_drop();
    let gave_up = tokio::time::timeout(Duration::from_millis(100), guarded).await.is_err();
    println!("{:>20}  ->  client gave up: {gave_up}; its task was killed, not left running", "<slow>");

    // Results in completion order, awaited as a stream (`as_completed` is also a
    // `futures_core::Stream`; `StreamExt::next` from futures or tokio-stream does the same as
    // this `poll_fn`). The long document, submitted first, comes last.
    let handles = ["<long>", "a b c d e", "a"].map(|doc| ex.submit(Parse { doc: doc.into() }));
    let mut stream = workpool::as_completed(handles);
    let mut order = Vec::new();
    while let Some((index, words)) =
        std::future::poll_fn(|cx| futures_core::Stream::poll_next(std::pin::Pin::new(&mut stream), cx)).await
    {
        order.push((index, words.expect("parsed")));
    }
    println!("{:>20}  ->  {order:?} (index, words, in completion order)", "as_completed");

    ex.shutdown_async(Shutdown::Wait).await;
    stop.store(true, Ordering::SeqCst);
    let worst = heartbeat.await.expect("heartbeat");
    let workers = ex.workers();
    let left = workers.iter().filter(|w| w.pid.is_some()).count();
    println!(
        "\nheartbeat on the runtime thread: at most {} ms late; {} worker processes started, {} died or were killed, \
         {left} left after the shutdown",
        worst.as_millis(),
        workers.iter().map(|w| w.starts).sum::<u64>(),
        workers.iter().map(|w| w.deaths).sum::<u64>()
    );
    assert_eq!(left, 0, "every worker process was reaped");
}
