//! Log events through the `log` facade, target `workpool`: nothing is printed unless the
//! program installs a logger (env_logger, or any tracing subscriber through tracing-log).
//!
//! Levels: `warn` for what cost a task (a death, a timeout, a worker that could not start at
//! all), `info` for what the pool did about it and for Ctrl-C (a respawn, a recycled worker, an
//! interrupt), `debug` for ordinary life (a start, an idle exit, a failed start that is retried).

use super::DeathCause;
use std::time::Duration;

const TARGET: &str = "workpool";

pub(super) fn started(slot: usize, pid: u32, took: Duration, tries: usize, respawn: bool) {
    if respawn {
        log::info!(target: TARGET, "slot {slot}: worker {pid} respawned in {took:.1?} ({tries} tries)");
    } else {
        log::debug!(target: TARGET, "slot {slot}: worker {pid} started in {took:.1?} ({tries} tries)");
    }
}

pub(super) fn start_failed(slot: usize, message: &str, gave_up: bool) {
    if gave_up {
        log::warn!(target: TARGET, "slot {slot}: no worker could be started: {message}");
    } else {
        log::debug!(target: TARGET, "slot {slot}: a worker failed to start, trying again: {message}");
    }
}

pub(super) fn timed_out(slot: usize, pid: u32, limit: Option<Duration>) {
    match limit {
        Some(limit) => {
            log::warn!(target: TARGET, "slot {slot}: worker {pid} killed: its task ran past the {limit:?} task timeout")
        }
        None => {
            log::warn!(target: TARGET, "slot {slot}: worker {pid} killed: it did not take its next task within the task timeout")
        }
    }
}

pub(super) fn died(slot: usize, pid: u32, cause: DeathCause, status: &str, task: Option<(&str, u64)>) {
    let during = match task {
        Some((name, id)) => format!(" while running task {id} ({name})"),
        None => String::new(),
    };
    let why = match cause {
        DeathCause::Timeout => " (task timeout)",
        DeathCause::Stalled => " (stalled)",
        DeathCause::Interrupted => " (Ctrl-C)",
        DeathCause::Killed => " (its task was killed through its handle)",
        DeathCause::Crash => "",
    };
    log::warn!(target: TARGET, "slot {slot}: worker {pid} died{during}: {status}{why}");
}

/// A connection to a remote executor's listener that failed the challenge (or was no worker at
/// all): dropped, at no other cost.
pub(crate) fn connection_dropped(peer: std::net::SocketAddr, why: &std::io::Error) {
    log::warn!(target: TARGET, "dropped a connection from {peer}: {why}");
}

pub(super) fn recycling(slot: usize, pid: u32, why: &str) {
    log::info!(target: TARGET, "slot {slot}: worker {pid} recycled ({why})");
}

pub(super) fn closed(slot: usize, pid: u32, idle: bool) {
    if idle {
        log::debug!(target: TARGET, "slot {slot}: worker {pid} exited after its idle timeout");
    } else {
        log::debug!(target: TARGET, "slot {slot}: worker {pid} stopped");
    }
}

#[cfg(feature = "ctrlc")]
pub(super) fn ctrl_c(epoch: u64, waiting: bool) {
    if waiting {
        log::info!(target: TARGET, "Ctrl-C (interrupt {epoch}): queued tasks cancelled, busy workers killed");
    } else {
        log::info!(target: TARGET, "Ctrl-C with nothing waiting: exiting with status 130");
    }
}
