//! The worker side: `init()` and the loop that serves tasks.
//!
//! A worker is this same binary started again with [`MARKER`] in its environment and its end of
//! a socketpair on file descriptor 3. `init()` sees the marker and never returns: it says hello,
//! then reads task frames, runs them, and writes one `DONE` frame per task *before* starting the
//! next one, so a crash can never swallow a finished result. Each task is announced with a
//! `STARTED` frame (coalesced with the previous `DONE` into one write when the next task is
//! already buffered): the executor knows exactly which task a dead worker was running, and
//! which ones it never touched (those are rescheduled).

use crate::process::claims::Claims;
use crate::process::wire::{self, Done, FrameReader};
use crate::sys;
use crate::task::{self, RunStatus, PANIC_LOCATION};
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Environment variable that marks a process started by workpool; its value is
/// [`Marker::encode`]d.
pub(crate) const MARKER: &str = "WORKPOOL_WORKER";

/// Exit code of a worker whose connection broke (malformed frame, failed write).
const EXIT_PROTOCOL: i32 = 70;
/// Exit code of a worker whose parent was already gone when it started.
pub(crate) const EXIT_ORPHAN: i32 = 71;

/// True inside a worker process (after `init()` took over).
static WORKER_MODE: AtomicBool = AtomicBool::new(false);
/// True once `init()` ran in this program (the parent): its binary serves as a worker.
static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// True inside a worker process (after `init()` took over).
pub(crate) fn in_worker() -> bool {
    WORKER_MODE.load(Ordering::Relaxed)
}

/// What a process started by workpool is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Serve tasks on fd 3 (started by `posix_spawn`).
    Worker,
    /// Fork workers on request (see `forkserver.rs`).
    ForkServer,
}

/// The marker's contents: `ROLE:PROTOCOL:PARENT_PID:DIE_WITH_PARENT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) role: Role,
    /// The pid of the program that started this process.
    pub(crate) parent: u32,
    /// Whether to ask for SIGKILL when that parent's starting thread dies.
    pub(crate) die_with_parent: bool,
}

impl Marker {
    pub(crate) fn encode(&self) -> String {
        let role = match self.role {
            Role::Worker => "worker",
            Role::ForkServer => "forkserver",
        };
        format!("{role}:{}:{}:{}", wire::PROTOCOL_VERSION, self.parent, u8::from(self.die_with_parent))
    }

    fn parse(text: &str) -> Option<Marker> {
        let mut parts = text.split(':');
        let role = match parts.next()? {
            "worker" => Role::Worker,
            "forkserver" => Role::ForkServer,
            _ => return None,
        };
        let protocol: u32 = parts.next()?.parse().ok()?;
        let parent: u32 = parts.next()?.parse().ok()?;
        let die_with_parent = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        (protocol == wire::PROTOCOL_VERSION && parts.next().is_none()).then_some(Marker {
            role,
            parent,
            die_with_parent,
        })
    }
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

/// Whether this program's binary can serve as a worker: `init()` ran, or it is a test binary
/// with `test_support!()`. Checked when an executor is built, so that a program that forgot
/// `init()` fails there, with advice, before any process starts (and `main` runs only once).
pub(crate) fn check_serves() -> Result<(), String> {
    refuse_nested_workers()?;
    if INIT_CALLED.load(Ordering::Relaxed) || crate::test_support::registered() {
        return Ok(());
    }
    Err(format!(
        "workpool::init() was not called in this program, so its worker processes could not serve tasks: \
         {INIT_HINT}"
    ))
}

/// What to do when worker processes do not serve.
pub(crate) const INIT_HINT: &str = "call `workpool::init()` as the first statement of `main` (in test binaries, \
                                   add `workpool::test_support!();`)";

/// Turns this process into a worker if it was started as one; otherwise returns at once.
///
/// Call it as the **first statement of `main`**. Worker processes are this program's own
/// binary: `init()` starts a small *fork server* (the program started again, which stops in
/// its `init()`), and each worker is a fork of that server, so it costs the same however large
/// this program grows. In the fork server, and in a worker that had to be started directly,
/// `init()` never returns to `main`. Whatever `main` does *before* `init()` therefore runs in
/// those processes too (its output is discarded there) — keep it to nothing.
///
/// Set `WORKPOOL_START_METHOD=spawn` to start every worker directly with `posix_spawn` instead
/// of forking it from the server (~1 ms per worker instead of ~0.15 ms).
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
    let Some(value) = std::env::var_os(MARKER) else {
        if !INIT_CALLED.swap(true, Ordering::Relaxed) {
            super::forkserver::start_early();
        }
        return;
    };
    let text = value.to_string_lossy().into_owned();
    let Some(marker) = Marker::parse(&text) else {
        eprintln!(
            "workpool: {MARKER}={text:?} is set in the environment, but this process was not started by \
             workpool (or by another version of it); ignoring it: unset {MARKER}"
        );
        std::env::remove_var(MARKER);
        INIT_CALLED.store(true, Ordering::Relaxed);
        return;
    };
    if marker.parent != sys::parent_pid() {
        // Our parent died while we were starting.
        std::process::exit(EXIT_ORPHAN);
    }
    // Children that tasks start must be ordinary processes, not workers of ours.
    std::env::remove_var(MARKER);
    match marker.role {
        Role::ForkServer => super::forkserver::serve(&marker),
        Role::Worker => {
            if marker.die_with_parent && (sys::die_with_parent().is_err() || sys::parent_pid() != marker.parent) {
                std::process::exit(EXIT_ORPHAN);
            }
            // stdout and stderr were /dev/null until here (a test harness's banner went there);
            // the parent's own are on 4 and 5.
            // SAFETY: plain descriptor calls on descriptors the parent set up for us.
            unsafe {
                libc::dup2(4, 1);
                libc::dup2(5, 2);
                libc::close(4);
                libc::close(5);
            }
            // SAFETY: the parent put the claim ring on 6; nothing else here owns it.
            let ring = unsafe { std::os::fd::OwnedFd::from_raw_fd(6) };
            let claims = Claims::map(ring.as_fd()).ok();
            drop(ring);
            let code = match sys::set_cloexec(sys::WORKER_FD) {
                // SAFETY: the parent put our end of the socketpair on WORKER_FD and nothing else
                // in this process owns that descriptor.
                Ok(()) => serve(unsafe { UnixStream::from_raw_fd(sys::WORKER_FD) }, claims),
                Err(e) => {
                    eprintln!("workpool worker: no task socket on fd {}: {e}", sys::WORKER_FD);
                    EXIT_PROTOCOL
                }
            };
            std::process::exit(code)
        }
    }
}

/// A worker forked by the fork server: serve tasks on `socket`, then exit.
pub(crate) fn serve_forked(socket: UnixStream, claims: Option<Claims>) -> ! {
    std::process::exit(serve(socket, claims))
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
fn serve(mut socket: UnixStream, claims: Option<Claims>) -> i32 {
    WORKER_MODE.store(true, Ordering::Relaxed);
    install_panic_hook();
    faults::install(socket.as_raw_fd());
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
                // A task written ahead may have been taken back (see `claims.rs`): skip it,
                // without a word (the executor has queued it again already).
                if body.ticket != 0 && claims.as_ref().is_some_and(|c| !c.claim(body.ticket)) {
                    continue;
                }
                wire::empty_frame(&mut out, wire::STARTED, id);
                if flush(&mut socket, &mut out).is_err() {
                    return EXIT_PROTOCOL;
                }
                faults::running(id);
                run_one(id, body, &mut out);
                faults::running(0);
            }
            wire::SHUTDOWN => return if flush(&mut socket, &mut out).is_ok() { 0 } else { EXIT_PROTOCOL },
            other => {
                eprintln!("workpool worker: unexpected frame kind {other}; exiting");
                return EXIT_PROTOCOL;
            }
        }
    }
}

/// Memory-fault signals in a worker. Rust's runtime handles SIGSEGV and SIGBUS to report stack
/// overflows, and *returns* from a signal that is not a fault in a guard page: a `raise(SIGSEGV)`
/// or a `kill -SEGV` would be survived once, and the task would report success. Here a signal
/// that was sent (by `kill`, `raise`, `sigqueue`) kills the worker, as in a C program; a real
/// fault is first reported to the executor (a `FAULT` frame: which task, which address), then
/// left to the runtime's handler, which prints a stack overflow and aborts, or lets the fault
/// kill the process.
mod faults {
    use crate::process::wire;
    use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

    /// The task socket, for the report (written once at install).
    static SOCKET: AtomicI32 = AtomicI32::new(-1);
    /// The task now running (0: none), written by the worker's main loop.
    static RUNNING: AtomicU64 = AtomicU64::new(0);
    /// The handlers that were installed before ours (Rust's runtime's), per signal, and their
    /// flags: written once at install, before our handler can run.
    static PREVIOUS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
    static PREVIOUS_FLAGS: [AtomicI32; 2] = [AtomicI32::new(0), AtomicI32::new(0)];
    const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

    pub(super) fn running(id: u64) {
        RUNNING.store(id, Ordering::Relaxed);
    }

    pub(super) fn install(socket: i32) {
        SOCKET.store(socket, Ordering::Relaxed);
        for (i, &signal) in SIGNALS.iter().enumerate() {
            // SAFETY: sigaction with valid, zero-initialised structs; the handler only makes
            // async-signal-safe calls.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_fault as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                    as libc::sighandler_t;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut new.sa_mask);
                if libc::sigaction(signal, &new, &mut old) == 0 {
                    PREVIOUS[i].store(old.sa_sigaction, Ordering::Relaxed);
                    PREVIOUS_FLAGS[i].store(old.sa_flags, Ordering::Relaxed);
                }
            }
        }
    }

    extern "C" fn on_fault(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
        let i = usize::from(signal == libc::SIGBUS);
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
        let (code, address) = unsafe { ((*info).si_code, (*info).si_addr() as u64) };
        if code <= 0 {
            // Sent, not a fault: die of it. It stays blocked until we return, then the default
            // action ends the process.
            // SAFETY: signal(2) and raise(3) are async-signal-safe.
            unsafe {
                libc::signal(signal, libc::SIG_DFL);
                libc::raise(signal);
            }
            return;
        }
        let (socket, id) = (SOCKET.load(Ordering::Relaxed), RUNNING.load(Ordering::Relaxed));
        if socket >= 0 && id != 0 {
            let frame = wire::fault_frame(id, signal as u32, address);
            // SAFETY: send(2) is async-signal-safe; the frame lives on this stack.
            unsafe { libc::send(socket, frame.as_ptr().cast(), frame.len(), libc::MSG_NOSIGNAL) };
        }
        let previous = PREVIOUS[i].load(Ordering::Relaxed);
        if previous == libc::SIG_DFL || previous == libc::SIG_IGN {
            // Back to the default: the faulting instruction runs again and ends the process.
            // SAFETY: async-signal-safe.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        } else if PREVIOUS_FLAGS[i].load(Ordering::Relaxed) & libc::SA_SIGINFO != 0 {
            // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this type.
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(previous) };
            handler(signal, info, context);
        } else {
            // SAFETY: a plain handler installed without SA_SIGINFO has this type.
            let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(previous) };
            handler(signal);
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
