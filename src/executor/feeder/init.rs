//! The executor's initializer (`ExecutorBuilder::initializer`): run once in every new worker
//! process, before its first task, as part of that worker's start.
//!
//! It travels as an ordinary `TASK` frame with ticket 0 (never claimed, never taken back), so
//! the worker's side needs nothing new: the feeder writes it right after the hello and reads
//! the worker's `STARTED` and `DONE` for it before the worker joins the slot. Anything but
//! success (a panic, a codec error, the worker dying or running past the executor's
//! `task_timeout`) makes this start fail like any other start failure: the worker is killed
//! and reaped, the start is tried again with back-off, and when every try failed the task that
//! waited for this worker fails with `is_spawn()` and the initializer's error. The executor is
//! not broken by it: the next task tries again.

use super::*;
use crate::process::spawn::SpawnError;

/// The encoded initializer of an executor: its type name and its complete `TASK` frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Initializer {
    pub(crate) task: &'static str,
    pub(crate) frame: Arc<[u8]>,
}

impl Feeder {
    /// Runs the initializer, if the executor has one, in a worker that just said hello; the
    /// worker back when it succeeded, a (transient) start failure otherwise.
    pub(super) fn initialize(&self, worker: Worker) -> Result<Worker, SpawnError> {
        let Some(init) = &self.shared.config.initializer else { return Ok(worker) };
        match run_initializer(&worker, &init.frame, self.shared.config.task_timeout) {
            Ok(()) => Ok(worker),
            Err(why) => {
                let pid = worker.pid;
                worker.kill(); // a worker that died already keeps its own exit status
                let cause = worker.finish(Duration::ZERO);
                Err(SpawnError {
                    message: format!(
                        "the executor's initializer {} failed in worker {pid}: {why} ({cause})",
                        init.task
                    ),
                    sticky: false,
                })
            }
        }
    }
}

/// Writes the initializer's frame and waits for its `DONE`: `Err` says what went wrong.
fn run_initializer(worker: &Worker, frame: &[u8], limit: Option<Duration>) -> Result<(), String> {
    let deadline = limit.map(|limit| Instant::now() + limit);
    let socket = worker.socket.as_fd();
    let mut written = 0;
    let mut reader = FrameReader::new();
    loop {
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(format!("it ran longer than the task timeout ({:?})", limit.expect("a deadline")));
        }
        let want_write = written < frame.len();
        let watch = [(socket, want_write), (worker.exit_fd(), false)];
        let ready = sys::poll_many(&watch, timeout.map(|t| t.min(POLL_TICK)).or(Some(POLL_TICK)))
            .map_err(|e| format!("poll failed: {e}"))?;
        if want_write && ready[0].writable {
            match sys::send_vectored(socket, &[IoSlice::new(&frame[written..])]) {
                Ok(n) => written += n,
                Err(e) if matches!(e.kind(), IoKind::WouldBlock | IoKind::Interrupted) => {}
                Err(_) => return Err(DIED.into()),
            }
        }
        if ready[0].readable || ready[0].hangup {
            match reader.fill(&mut &worker.socket) {
                Ok(0) => return Err(DIED.into()),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), IoKind::WouldBlock | IoKind::Interrupted) => {}
                Err(_) => return Err(DIED.into()),
            }
            while let Some(frame) = reader.next_frame().map_err(|e| format!("the worker broke the protocol ({e})"))? {
                match frame.kind {
                    wire::STARTED | wire::FAULT => {}
                    wire::DONE => return outcome(frame.body),
                    kind => return Err(format!("the worker sent frame kind {kind} during the initializer")),
                }
            }
        } else if ready[1].readable || ready[1].hangup {
            return Err(DIED.into());
        }
    }
}

/// The initializer's `DONE` report, as success or its error in words.
fn outcome(body: &[u8]) -> Result<(), String> {
    let (done, _elapsed) = wire::parse_done(body).map_err(|e| format!("the worker broke the protocol ({e})"))?;
    match done {
        Done::Ok(_) => Ok(()),
        Done::Panic { message, location: "", .. } => Err(format!("it panicked: {message}")),
        Done::Panic { message, location, .. } => Err(format!("it panicked at {location}: {message}")),
        Done::Decode(message) => Err(format!("decoding it in the worker failed: {message}")),
        Done::Encode(message) => Err(format!("encoding its result in the worker failed: {message}")),
        Done::Unknown => Err("the worker does not know its type (is it registered?)".into()),
    }
}

const DIED: &str = "the worker died while running it";
