//! Ctrl-C for interactive programs: cancel the current work, keep the executor.
//!
//! Workers run in their own process group, so the terminal's SIGINT reaches only the parent.
//! With [`handle_ctrl_c`] installed, a Ctrl-C while some thread is waiting on a result (a
//! `join`, a `map`, a `Parallel::run`) **interrupts**: every executor fails its queued tasks and
//! kills its busy workers (those tasks report `is_interrupted()`), thread-backed `Parallel`
//! runs stop between batches, and waiting calls return promptly. The executors stay usable.
//! A Ctrl-C while nothing is waiting keeps its usual meaning: workers are killed and the
//! program exits with status 130.
//!
//! This module sits above the executor: it uses [`crate::interrupt`] (who waits, the epoch) and
//! the executor's list of live executors; neither of those knows about signals.

use crate::error::BuildError;
use crate::interrupt;
use std::sync::OnceLock;

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
    if !interrupt::anyone_waiting() {
        crate::observe::ctrl_c(0, false);
        // The usual meaning of Ctrl-C; the exit hook kills and reaps the workers.
        std::process::exit(130);
    }
    let epoch = interrupt::begin();
    crate::observe::ctrl_c(epoch, true);
    crate::executor::interrupt_all(epoch);
}
