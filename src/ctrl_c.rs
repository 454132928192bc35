//! Ctrl-C for interactive programs: cancel the current work, keep the executor.
//!
//! Workers run in their own process group, so the terminal's SIGINT reaches only the parent.
//! With [`handle_ctrl_c`] installed, a Ctrl-C while some thread is waiting on a result (a
//! `join`, a `map`, a `Parallel::run`) **interrupts**: every executor fails its queued tasks and
//! kills its busy workers (those tasks report `is_interrupted()`), thread-backed `Parallel`
//! runs stop between batches, and waiting calls return promptly. The executors stay usable.
//! A Ctrl-C while nothing is waiting keeps its usual meaning: workers are killed and the
//! program exits with status 130.

use crate::error::BuildError;
use crate::executor::Core;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{OnceLock, Weak};

/// Threads blocked waiting for a result right now.
static WAITING: AtomicUsize = AtomicUsize::new(0);
/// Ctrl-C presses handled as interrupts so far.
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);
/// Every executor built in this process (dropped ones are pruned on registration).
static EXECUTORS: Mutex<Vec<Weak<Core>>> = Mutex::new(Vec::new());

/// Marks the current thread as waiting for a result while it lives.
pub(crate) struct Waiting(());

impl Waiting {
    pub(crate) fn enter() -> Self {
        WAITING.fetch_add(1, Ordering::SeqCst);
        Waiting(())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Number of interrupts so far; code that cannot be killed (threads) polls it.
pub(crate) fn interrupts() -> u64 {
    INTERRUPTS.load(Ordering::SeqCst)
}

pub(crate) fn register(core: &std::sync::Arc<Core>) {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| crate::sys::at_exit(stop_all_workers));
    let mut all = EXECUTORS.lock();
    all.retain(|w| w.strong_count() > 0);
    all.push(std::sync::Arc::downgrade(core));
}

fn live_executors() -> Vec<std::sync::Arc<Core>> {
    EXECUTORS.lock().iter().filter_map(Weak::upgrade).collect()
}

/// At exit: kill and reap the workers of every executor still alive (the reusable one lives in
/// a static and is never dropped). Their feeders would not outlive this process anyway.
extern "C" fn stop_all_workers() {
    // `try_lock`: never block process exit on a lock some other thread might hold.
    let Some(all) = EXECUTORS.try_lock() else { return };
    let cores: Vec<_> = all.iter().filter_map(Weak::upgrade).collect();
    drop(all);
    for core in cores {
        core.kill_all();
    }
}

/// Installs the Ctrl-C handler (opt-in; calling it again is harmless).
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
        .get_or_init(|| ctrlc::set_handler(on_ctrl_c).map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| BuildError::msg(format!("could not install the Ctrl-C handler: {e}")))
}

/// What a Ctrl-C does (runs on the `ctrlc` crate's handler thread).
fn on_ctrl_c() {
    if WAITING.load(Ordering::SeqCst) == 0 {
        // The usual meaning of Ctrl-C; the exit hook kills and reaps the workers.
        std::process::exit(130);
    }
    interrupt();
}

/// Interrupts every executor as a Ctrl-C would (without needing a signal).
pub(crate) fn interrupt() {
    INTERRUPTS.fetch_add(1, Ordering::SeqCst);
    for core in live_executors() {
        core.interrupt();
    }
}
