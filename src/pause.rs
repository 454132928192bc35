//! Ctrl-Z for programs whose worker processes run in process groups of their own: the terminal
//! stops only the program's own group, so with [`crate::handle_ctrl_c`] installed the program
//! stops its workers' groups (and its fork server's) on SIGTSTP and continues them on SIGCONT
//! (`fg`), and the time it stood still does not count against any task's `task_timeout`.
//!
//! Everything here is used from signal handlers: only atomics and async-signal-safe calls.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Process groups to stop and continue with the program: every live worker's, and the fork
/// server's (0: a free entry). Written by feeders and the fork-server client, read by handlers.
static GROUPS: [AtomicU32; 512] = [const { AtomicU32::new(0) }; 512];
/// When the program was stopped (`CLOCK_MONOTONIC` ns; 0: running).
static STOPPED_AT: AtomicU64 = AtomicU64::new(0);
/// The time the program stood still, in total (ns).
static PAUSED: AtomicU64 = AtomicU64::new(0);

/// Adds a process group (a worker's or the fork server's pid).
pub(crate) fn add(pgid: u32) {
    for entry in &GROUPS {
        if entry.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            return;
        }
    }
}

/// Removes a process group, before its leader is reaped (its id may be reused after).
pub(crate) fn remove(pgid: u32) {
    for entry in &GROUPS {
        if entry.compare_exchange(pgid, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            return;
        }
    }
}

/// Sends `signal` to every group (from a signal handler).
#[cfg(feature = "ctrlc")]
fn signal_all(signal: libc::c_int) {
    for entry in &GROUPS {
        let pgid = entry.load(Ordering::SeqCst);
        if pgid > 1 {
            // SAFETY: kill(2) is async-signal-safe and has no memory preconditions.
            unsafe { libc::kill(-(pgid as libc::pid_t), signal) };
        }
    }
}

/// True from a stop until its continue was accounted: a feeder that wakes up after `fg` may run
/// before the SIGCONT handler has added the pause, and must not judge a timeout meanwhile.
pub(crate) fn stopped() -> bool {
    STOPPED_AT.load(Ordering::SeqCst) != 0
}

/// The time the program stood still so far, in ns: feeders move their task clocks by what it
/// grew since they last looked.
pub(crate) fn paused_ns() -> u64 {
    PAUSED.load(Ordering::SeqCst)
}

#[cfg(feature = "ctrlc")]
extern "C" fn on_stop(_: libc::c_int) {
    STOPPED_AT.store(crate::sys::monotonic_ns(), Ordering::SeqCst);
    signal_all(libc::SIGSTOP);
    // SAFETY: raise(3) is async-signal-safe. SIGSTOP, not SIGTSTP with its default action back:
    // a stop signal to an orphaned process group (a program not run from a terminal's job
    // control) is discarded, and the program would run on with its workers stopped.
    unsafe { libc::raise(libc::SIGSTOP) };
}

#[cfg(feature = "ctrlc")]
extern "C" fn on_continue(_: libc::c_int) {
    let at = STOPPED_AT.swap(0, Ordering::SeqCst);
    if at != 0 {
        PAUSED.fetch_add(crate::sys::monotonic_ns().saturating_sub(at), Ordering::SeqCst);
    }
    signal_all(libc::SIGCONT);
}

#[cfg(feature = "ctrlc")]
fn handle(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: sigaction with a valid, zeroed struct and an async-signal-safe handler.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

/// Installs the SIGTSTP and SIGCONT handlers (from `handle_ctrl_c`).
#[cfg(feature = "ctrlc")]
pub(crate) fn install() {
    handle(libc::SIGTSTP, on_stop);
    handle(libc::SIGCONT, on_continue);
}
