//! Ctrl-C for interactive programs: cancel the current work, keep the executor.
//!
//! Workers run in their own process group, so the terminal's SIGINT reaches only the parent.
//! With [`handle_ctrl_c`] installed, a Ctrl-C while some thread is waiting on a result (a
//! `join`, a `map`, a `Parallel::run`) **interrupts**: every executor fails its queued tasks and
//! kills its busy workers (those tasks report `is_interrupted()`), thread-backed `Parallel`
//! runs stop between batches, and waiting calls return promptly. The executors stay usable.
//! A Ctrl-C while nothing is waiting keeps its usual meaning: workers are killed and the
//! program exits with status 130 — unless an async program awaits [`ctrl_c`]: while one of
//! its futures lives, a Ctrl-C resolves them instead, and the program shuts down as it sees fit.
//!
//! This module sits above the executor: it uses [`crate::interrupt`] (who waits, the epoch) and
//! the executor's list of live executors; neither of those knows about signals.

use crate::error::BuildError;
use crate::interrupt;
use parking_lot::Mutex;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

/// Installs the Ctrl-C handler (opt-in; calling it again is harmless), and Ctrl-Z handling:
/// worker processes run in process groups of their own, so the terminal's Ctrl-Z (SIGTSTP)
/// stops only this program; with this installed it stops its workers too, `fg` (SIGCONT)
/// continues them, and the time stood still does not count against any `task_timeout`.
///
/// # Errors
/// When another Ctrl-C handler was installed in this process by other means (the `ctrlc` crate
/// allows one per process).
///
/// ```no_run
/// workpool::init();
/// workpool::handle_ctrl_c().expect("no other Ctrl-C handler");
/// ```
pub fn handle_ctrl_c() -> Result<(), BuildError> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            crate::pause::install();
            ctrlc::set_handler(on_ctrl_c).map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| BuildError::msg(format!("could not install the Ctrl-C handler: {e}")))
}

/// What a Ctrl-C does (runs on the `ctrlc` crate's handler thread).
fn on_ctrl_c() {
    let heard = wake_listeners();
    if !interrupt::anyone_waiting() {
        crate::observe::ctrl_c(0, false);
        if heard {
            return; // an async program shuts down on its own terms
        }
        // The usual meaning of Ctrl-C; the exit hook kills and reaps the workers.
        std::process::exit(130);
    }
    let epoch = interrupt::begin();
    crate::observe::ctrl_c(epoch, true);
    crate::executor::interrupt_all(epoch);
}

// ===== the Ctrl-C future =====

/// The live [`CtrlC`] futures: presses heard so far, and the wakers of those that wait.
struct Listeners {
    presses: u64,
    next_id: u64,
    /// (future id, waker) of each live future that was polled and is pending.
    waiting: Vec<(u64, Option<Waker>)>,
}

static LISTENERS: Mutex<Listeners> = Mutex::new(Listeners { presses: 0, next_id: 0, waiting: Vec::new() });

/// Counts a press and wakes every live [`CtrlC`]; false when there is none.
fn wake_listeners() -> bool {
    let mut listeners = LISTENERS.lock();
    listeners.presses += 1;
    let wakers: Vec<Waker> = listeners.waiting.iter_mut().filter_map(|(_, w)| w.take()).collect();
    let any = !listeners.waiting.is_empty();
    drop(listeners);
    wakers.into_iter().for_each(Waker::wake);
    any
}

/// A future that resolves at the next Ctrl-C (SIGINT) after it was made: how an async server
/// shuts down gracefully. Installs [`handle_ctrl_c`] if it is not yet.
///
/// While at least one such future lives, a Ctrl-C no longer ends the program (status 130):
/// it resolves these futures, and calls that wait synchronously at that moment (a `join`, a
/// `map`) are still interrupted as usual. Drop the future to give Ctrl-C its old meaning back.
///
/// # Errors
/// As [`handle_ctrl_c`]: another Ctrl-C handler was installed in this process by other means.
///
/// # Examples
///
/// ```no_run
/// # async fn serve(ex: workpool::Executor) {
/// let stop = workpool::ctrl_c().expect("no other Ctrl-C handler");
/// // tokio::select! { _ = stop => {}, _ = accept_loop(&ex) => {} }
/// stop.await;
/// ex.shutdown_async(workpool::Shutdown::CancelQueued).await;
/// # }
/// ```
pub fn ctrl_c() -> Result<CtrlC, BuildError> {
    handle_ctrl_c()?;
    let mut listeners = LISTENERS.lock();
    let id = listeners.next_id;
    listeners.next_id += 1;
    listeners.waiting.push((id, None));
    Ok(CtrlC { id, seen: listeners.presses })
}

/// The future of [`ctrl_c`].
///
/// ```no_run
/// # async fn serve(ex: workpool::Executor) {
/// let stop: workpool::CtrlC = workpool::ctrl_c().expect("no other Ctrl-C handler");
/// stop.await; // the first Ctrl-C from now on
/// ex.shutdown_async(workpool::Shutdown::CancelQueued).await;
/// # }
/// ```
#[must_use = "a Ctrl-C future does nothing unless awaited"]
pub struct CtrlC {
    id: u64,
    /// Presses heard before this future was made.
    seen: u64,
}

impl fmt::Debug for CtrlC {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CtrlC").field("pressed", &(LISTENERS.lock().presses > self.seen)).finish()
    }
}

impl Future for CtrlC {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut listeners = LISTENERS.lock();
        if listeners.presses > self.seen {
            return Poll::Ready(());
        }
        if let Some((_, waker)) = listeners.waiting.iter_mut().find(|(id, _)| *id == self.id) {
            *waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for CtrlC {
    fn drop(&mut self) {
        LISTENERS.lock().waiting.retain(|(id, _)| *id != self.id);
    }
}
