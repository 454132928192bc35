//! [`Executor::shutdown_async`](super::Executor::shutdown_async): `shutdown` for async code.
//!
//! `shutdown` joins the feeder threads, which wait for every worker process to exit: seconds,
//! when tasks are still running. An async caller must not block its runtime for that, so a
//! short-lived thread does the blocking part and the returned future is woken when it is done
//! (no runtime is needed: any executor's waker works).

use super::{Executor, Shutdown};
use parking_lot::Mutex;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Set by the shutdown thread when it is done; the waker of the task awaiting it.
#[derive(Default)]
struct Done {
    inner: Mutex<(bool, Option<Waker>)>,
}

/// The future of [`Executor::shutdown_async`](super::Executor::shutdown_async): ready once
/// every worker process of the executor has exited and been reaped.
///
/// ```no_run
/// # async fn stop(ex: workpool::Executor) {
/// let stopping: workpool::ShuttingDown = ex.shutdown_async(workpool::Shutdown::Wait);
/// // … the runtime keeps serving other tasks meanwhile …
/// stopping.await; // every worker process has exited and been reaped
/// # }
/// ```
#[must_use = "the shutdown runs anyway; await it to know when the workers are gone"]
pub struct ShuttingDown {
    done: Arc<Done>,
}

impl fmt::Debug for ShuttingDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShuttingDown").field("done", &self.done.inner.lock().0).finish()
    }
}

impl Future for ShuttingDown {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.done.inner.lock();
        if inner.0 {
            return Poll::Ready(());
        }
        inner.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Starts `executor.shutdown(mode)` on a thread of its own (inline if no thread can start).
pub(super) fn start(executor: &Executor, mode: Shutdown) -> ShuttingDown {
    let done = Arc::new(Done::default());
    let finish = {
        let (executor, done) = (executor.clone(), done.clone());
        move || {
            executor.shutdown(mode);
            let waker = {
                let mut inner = done.inner.lock();
                inner.0 = true;
                inner.1.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    };
    let shared = Arc::new(Mutex::new(Some(finish)));
    let run = {
        let shared = shared.clone();
        move || {
            if let Some(finish) = shared.lock().take() {
                finish();
            }
        }
    };
    if std::thread::Builder::new().name("workpool-shutdown".into()).spawn(run).is_err() {
        // No thread: do it here (blocking), rather than not at all.
        if let Some(finish) = shared.lock().take() {
            finish();
        }
    }
    ShuttingDown { done }
}
