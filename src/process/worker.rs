//! The worker side: `init()` and the loop that serves tasks.
//!
//! A worker is this same binary started again with [`MARKER`] in its environment and its end of
//! a socketpair on file descriptor 3. `init()` sees the marker and never returns: it says hello,
//! then reads task frames, runs them, and writes one `DONE` frame per task *before* starting the
//! next one, so a crash can never swallow a finished result. Each task is announced with a
//! `STARTED` frame (coalesced with the previous `DONE` into one write when the next task is
//! already buffered): the executor knows exactly which task a dead worker was running, and
//! which ones it never touched (those are rescheduled).

use crate::process::wire::{self, Done, FrameReader};
use crate::sys;
use crate::task::{self, RunStatus, PANIC_LOCATION};
use std::io::ErrorKind;
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Environment variable that marks a worker process; its value is `VERSION:PARENT_PID`.
pub(crate) const MARKER: &str = "WORKPOOL_WORKER";

/// Exit code of a worker whose connection broke (malformed frame, failed write).
const EXIT_PROTOCOL: i32 = 70;
/// Exit code of a worker whose parent was already gone when it started.
const EXIT_ORPHAN: i32 = 71;

static WORKER_MODE: AtomicBool = AtomicBool::new(false);

/// True inside a worker process (after `init()` took over).
pub(crate) fn in_worker() -> bool {
    WORKER_MODE.load(Ordering::Relaxed)
}

/// Refuses to let a process that was started as a worker but never called `init()` start
/// workers of its own (that is how fork bombs happen); the error says what to do.
pub(crate) fn refuse_nested_workers() -> Result<(), String> {
    if in_worker() || std::env::var_os(MARKER).is_none() {
        return Ok(());
    }
    Err(format!(
        "this process was started as a workpool worker but main() never called workpool::init(), so it may \
         not start workers of its own (that would be a fork bomb): {INIT_HINT}"
    ))
}

/// What to do when worker processes do not serve.
pub(crate) const INIT_HINT: &str = "call `workpool::init()` as the first statement of `main` (in test binaries, \
                                   add `workpool::test_support!();`)";

/// Turns this process into a worker if it was started as one; otherwise returns at once.
///
/// Call it as the **first statement of `main`**. Executors start their workers by running the
/// program's own binary again; in those processes `init()` serves tasks and exits, and never
/// returns to `main`. Whatever `main` does *before* `init()` therefore runs in every worker
/// too — keep it to nothing.
///
/// ```no_run
/// fn main() {
///     workpool::init();
///     // ... the program, which may now build executors ...
/// }
/// ```
///
/// Test binaries have no `main` of their own: use [`test_support!`](crate::test_support) there.
pub fn init() {
    let Some(value) = std::env::var_os(MARKER) else { return };
    let value = value.to_string_lossy().into_owned();
    let parent: Option<u32> = value.split_once(':').and_then(|(_, pid)| pid.parse().ok());
    if parent != Some(sys::parent_pid()) {
        // Our parent died while we were starting (or the marker was inherited by accident).
        std::process::exit(EXIT_ORPHAN);
    }
    WORKER_MODE.store(true, Ordering::Relaxed);
    // Children that tasks start must be ordinary processes, not workers of ours.
    std::env::remove_var(MARKER);
    let code = match sys::set_cloexec(sys::WORKER_FD) {
        Ok(()) => serve(),
        Err(e) => {
            eprintln!("workpool worker: no task socket on fd {}: {e}", sys::WORKER_FD);
            EXIT_PROTOCOL
        }
    };
    std::process::exit(code)
}

/// Makes [`init()`] the first thing `main` does.
///
/// ```no_run
/// #[workpool::main]
/// fn main() {
///     // workpool::init() has run: in a worker process it never returns to here.
/// }
/// ```
///
/// With an async runtime, write `#[workpool::main]` **above** the runtime's attribute: init then
/// runs before the runtime is built, so worker processes serve tasks without starting one. The
/// return type is kept.
///
/// ```no_run
/// #[workpool::main]
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     // The parent's runtime, as usual. Wait for tasks on blocking threads
///     // (`tokio::task::spawn_blocking`): `TaskHandle::join` blocks.
///     Ok(())
/// }
/// ```
///
/// How: the attributes expand from the outside in, so `#[workpool::main]` sees the `async fn`
/// and its `#[tokio::main]`, moves both into a plain `fn main` that calls init first, then the
/// async one. Written below `#[tokio::main]` it works too: tokio has then already turned `main`
/// into a plain function that builds the runtime, and init goes first in it. On an `async fn
/// main` with no runtime attribute below it, it is a compile error that says so.
pub use workpool_macros::main;

/// A fingerprint of this binary: both sides compute it; a worker whose binary differs from its
/// parent's (rebuilt in between) is refused at the handshake.
pub(crate) fn fingerprint() -> u64 {
    static PRINT: OnceLock<u64> = OnceLock::new();
    *PRINT.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let mut text = format!("{}/{}", wire::PROTOCOL_VERSION, env!("CARGO_PKG_VERSION"));
        let exe = std::fs::metadata("/proc/self/exe").or_else(|_| std::env::current_exe().and_then(std::fs::metadata));
        if let Ok(meta) = exe {
            text += &format!("/{}:{}:{}:{}.{}", meta.dev(), meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec());
        }
        for name in task::registered_names() {
            text.push('/');
            text.push_str(name);
        }
        task::fnv1a(text.as_bytes())
    })
}

fn install_panic_hook() {
    let default = std::panic::take_hook();
    let print = std::env::var_os("WORKPOOL_WORKER_PANIC_OUTPUT").is_some();
    std::panic::set_hook(Box::new(move |info| {
        let location = info.location().map(|l| l.to_string());
        PANIC_LOCATION.with(|slot| *slot.borrow_mut() = location);
        if print {
            default(info);
        }
    }));
}

/// The worker's main loop; returns the exit code.
fn serve() -> i32 {
    install_panic_hook();
    // SAFETY: the executor put our end of the socketpair on WORKER_FD (dup2 before exec) and
    // nothing else in this process owns that descriptor.
    let mut socket = unsafe { UnixStream::from_raw_fd(sys::WORKER_FD) };
    let mut out = Vec::with_capacity(wire::READ_CHUNK);
    wire::hello(&mut out, fingerprint(), std::process::id());
    let mut reader = FrameReader::new();
    loop {
        // Results are always written before blocking for more input, and before the next task
        // starts (together with its STARTED frame).
        if !reader.has_frame() {
            if flush(&mut socket, &mut out).is_err() {
                return EXIT_PROTOCOL;
            }
            match reader.fill(&mut socket) {
                Ok(0) => return 0, // the executor closed the connection: time to go
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return EXIT_PROTOCOL,
            }
        }
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("workpool worker: {e}; exiting");
                return EXIT_PROTOCOL;
            }
        };
        match frame.kind {
            wire::TASK => {
                let id = frame.id;
                let body = match wire::parse_task(frame.body) {
                    Ok(body) => body,
                    Err(e) => {
                        eprintln!("workpool worker: {e}; exiting");
                        return EXIT_PROTOCOL;
                    }
                };
                wire::empty_frame(&mut out, wire::STARTED, id);
                if flush(&mut socket, &mut out).is_err() {
                    return EXIT_PROTOCOL;
                }
                run_one(id, body, &mut out);
            }
            wire::SHUTDOWN => return if flush(&mut socket, &mut out).is_ok() { 0 } else { EXIT_PROTOCOL },
            other => {
                eprintln!("workpool worker: unexpected frame kind {other}; exiting");
                return EXIT_PROTOCOL;
            }
        }
    }
}

/// Runs one task frame and appends its `DONE` frame to `out`.
pub(crate) fn run_one(id: u64, body: wire::TaskBody<'_>, out: &mut Vec<u8>) {
    let Some(entry) = task::entry_by_key(body.key) else {
        report(out, out.len(), id, 0, &Done::Unknown);
        return;
    };
    let clock = Instant::now();
    // Outputs are appended straight behind the frame's header as the tasks run.
    let start = wire::begin_done_ok(out, id);
    let status = (entry.run)(body.payload, body.count, out);
    let elapsed = clock.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
    match &status {
        RunStatus::Ok => {
            if let Err(e) = wire::end_done_ok(out, start, elapsed) {
                let message = format!("the result is too large to send: {e}");
                report(out, start, id, elapsed, &Done::Encode(&message));
            }
        }
        RunStatus::Panic { index, message, location } => {
            report(out, start, id, elapsed, &Done::Panic { index: *index, message, location });
        }
        RunStatus::Decode(message) => report(out, start, id, elapsed, &Done::Decode(message)),
        RunStatus::Encode(message) => report(out, start, id, elapsed, &Done::Encode(message)),
    }
}

/// Replaces everything from `start` on with a `DONE` frame reporting `done`.
fn report(out: &mut Vec<u8>, start: usize, id: u64, elapsed: u64, done: &Done<'_>) {
    out.truncate(start);
    if let Err(e) = wire::done(out, id, elapsed, done) {
        // Only a message longer than a frame gets here.
        out.truncate(start);
        let message = format!("the task's report is too large to send: {e}");
        wire::done(out, id, elapsed, &Done::Encode(&message)).expect("a short report fits");
    }
}

fn flush(socket: &mut UnixStream, out: &mut Vec<u8>) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let result = sys::send_all(socket.as_fd(), out);
    out.clear();
    result
}
