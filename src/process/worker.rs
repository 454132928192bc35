//! The worker side: the loop that serves tasks.
//!
//! A worker is a fork of the fork server (or this same binary started again, with the marker
//! of `marker.rs` in its environment and its socket on file descriptor 3); `init()` hands it
//! here and it never returns: it says hello, then reads task frames, claims each one (see
//! `claims.rs`: a task taken back is skipped, with a `SKIPPED` frame), runs it, and writes one `DONE` frame per task
//! *before* starting the next one, so a crash can never swallow a finished result. Each task is
//! announced with a `STARTED` frame (coalesced with the previous `DONE` into one write when the
//! next task is already buffered): the executor knows exactly which task a dead worker was
//! running, and which ones it never touched (those are rescheduled).

use super::claims::Claims;
use super::marker;
use super::wire::{self, Done, FrameReader};
use crate::bytes::{oob, Encoded};
use crate::oob::segment::Segment;
use crate::sys;
use crate::task::{self, RunStatus, PANIC_LOCATION};
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Instant;

/// Exit code of a worker whose connection broke (malformed frame, failed write).
pub(super) const EXIT_PROTOCOL: i32 = 70;

/// A worker forked by the fork server: serve tasks on `socket`, then exit.
pub(crate) fn serve_forked(socket: UnixStream, claims: Option<Claims>) -> ! {
    std::process::exit(serve(socket, claims))
}

fn install_panic_hook() {
    let default = std::panic::take_hook();
    // With `panic = "abort"` a panic ends the worker and its report never reaches the
    // executor: the message must at least reach stderr.
    let print = std::env::var_os("WORKPOOL_WORKER_PANIC_OUTPUT").is_some() || cfg!(panic = "abort");
    std::panic::set_hook(Box::new(move |info| {
        let location = info.location().map(|l| l.to_string());
        PANIC_LOCATION.with(|slot| *slot.borrow_mut() = location);
        if print {
            default(info);
        }
    }));
}

/// The worker's main loop; returns the exit code.
pub(super) fn serve(mut socket: UnixStream, claims: Option<Claims>) -> i32 {
    marker::enter_worker_mode();
    // A worker's own segments (results) are sealed whole: the parent never trusts a worker to
    // leave a recyclable one alone.
    crate::oob::pool::disable();
    install_panic_hook();
    // A worker runs in a process group of its own, in the background of the terminal it prints
    // to: a write under `stty tostop`, or a `tcsetattr`, would stop it with SIGTTOU (and a read
    // with SIGTTIN) until someone sent SIGCONT. Ignored, they let the write through and make a
    // read fail with EIO instead of hanging. (Processes a task starts inherit the ignoring.)
    // SAFETY: signal(2) with SIG_IGN has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        libc::signal(libc::SIGTTIN, libc::SIG_IGN);
    }
    if let Some(claims) = &claims {
        // The ring lives as long as this process serves (`claims` is dropped only at exit).
        task::TASKS_BEGUN.store(claims.begun() as *const [_; 2] as *mut _, std::sync::atomic::Ordering::Relaxed);
    }
    faults::install(socket.as_raw_fd());
    let mut out = Vec::with_capacity(wire::READ_CHUNK);
    wire::hello(&mut out, marker::fingerprint(), std::process::id());
    let mut reader = FrameReader::new();
    // Segments of the DONE frames in `out`, passed with the next flush.
    let mut out_fds = Vec::new();
    loop {
        // Results are always written before blocking for more input, and before the next task
        // starts (together with its STARTED frame).
        if !reader.has_frame() {
            if flush(&mut socket, &mut out, &mut out_fds).is_err() {
                return EXIT_PROTOCOL;
            }
            match reader.fill_socket(socket.as_fd()) {
                Ok(0) => return 0, // the executor closed the connection: time to go
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return EXIT_PROTOCOL,
            }
        }
        let (frame, fds) = match reader.next_frame_fds() {
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
                // A task written ahead may have been taken back (see `claims.rs`): skip it (the
                // executor has queued it again already) and say so, so that the executor
                // forgets it; the answer goes with the next write, like a DONE.
                if body.ticket != 0 && claims.as_ref().is_some_and(|c| !c.claim(body.ticket)) {
                    wire::empty_frame(&mut out, wire::SKIPPED, id);
                    continue;
                }
                wire::empty_frame(&mut out, wire::STARTED, id);
                if flush(&mut socket, &mut out, &mut out_fds).is_err() {
                    return EXIT_PROTOCOL;
                }
                faults::running(id);
                out_fds.extend(run_one(id, body, fds, &mut out));
                faults::running(0);
            }
            wire::SHARE => crate::bytes::shared::sent(frame.id, frame.body),
            wire::FORGET => match wire::parse_u64s(frame.body) {
                Ok(ids) => {
                    crate::bytes::shared::forget(&ids);
                    // What the dropped values held of the parent's segments, it may now reuse.
                    let released = kept_segments::update(&[]);
                    if !released.is_empty() {
                        wire::released(&mut out, &released);
                    }
                }
                Err(e) => {
                    eprintln!("workpool worker: {e}; exiting");
                    return EXIT_PROTOCOL;
                }
            },
            wire::SHUTDOWN => {
                return if flush(&mut socket, &mut out, &mut out_fds).is_ok() { 0 } else { EXIT_PROTOCOL }
            }
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

/// Runs one task frame, whose descriptors are `fds`, and appends its `DONE` frame to `out`;
/// returns the segments that frame carries (the out-of-band buffers of its outputs). Whatever
/// else the task received is closed and unmapped here, when its arguments are dropped.
pub(crate) fn run_one(id: u64, body: wire::TaskBody<'_>, fds: Vec<OwnedFd>, out: &mut Vec<u8>) -> Vec<Arc<Segment>> {
    let Some(entry) = task::entry_by_key(body.key) else {
        report(out, out.len(), id, 0, &Done::Unknown);
        return Vec::new();
    };
    crate::bytes::shared::in_worker();
    let clock = Instant::now();
    // Outputs are appended straight behind the frame's header as the tasks run.
    let start = wire::begin_done_ok(out, id);
    let received = Encoded::from_parent(fds);
    let (status, segments) =
        received.decode(|_| oob::encoding(oob::worker_out_of_band(), || (entry.run)(body.payload, body.count, out)));
    // The task's values are dropped by now: a segment still referred to was kept (stored by
    // the task, or a cached shared value), and the parent must not write it again until told.
    let kept = received.kept(&segments);
    drop(received);
    let elapsed = clock.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
    let sent = match &status {
        RunStatus::Ok => match wire::end_done_ok(out, start, elapsed, segments.len()) {
            Ok(()) => segments,
            Err(e) => {
                let message = format!(
                    "the result is too large to send: {e}; put large data in `workpool::Bytes`, which travels \
                     in shared memory outside the frame"
                );
                report(out, start, id, elapsed, &Done::Encode(&message));
                Vec::new()
            }
        },
        RunStatus::Panic { index, message, location } => {
            report(out, start, id, elapsed, &Done::Panic { index: *index, message, location });
            Vec::new()
        }
        RunStatus::Decode(message) => {
            report(out, start, id, elapsed, &Done::Decode(message));
            Vec::new()
        }
        RunStatus::Encode(message) => {
            report(out, start, id, elapsed, &Done::Encode(message));
            Vec::new()
        }
    };
    if !kept.is_empty() {
        wire::mark_kept(out, start);
    }
    let released = kept_segments::update(&kept);
    if !released.is_empty() {
        wire::released(out, &released);
    }
    sent
}

/// The parent's recyclable segments this worker said it kept (`ST_KEPT`), so that it can say
/// when it lets go of them (`RELEASED`): a shared value leaving the cache, a `Bytes` a task
/// stored and later dropped.
mod kept_segments {
    use crate::oob::segment::Segment;
    use std::sync::{Arc, Mutex, Weak};

    static KEPT: Mutex<Vec<(Weak<Segment>, u64)>> = Mutex::new(Vec::new());

    /// Adds the segments the last task kept; returns the inodes of those no longer referred to.
    pub(super) fn update(kept: &[Arc<Segment>]) -> Vec<u64> {
        let mut all = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        for segment in kept {
            if let Some(ino) = segment.parents_inode() {
                if !all.iter().any(|(w, i)| *i == ino && w.strong_count() > 0) {
                    all.push((Arc::downgrade(segment), ino));
                }
            }
        }
        let mut released = Vec::new();
        all.retain(|(w, ino)| {
            let alive = w.strong_count() > 0;
            if !alive {
                released.push(*ino);
            }
            alive
        });
        released
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

/// Writes `out`; the descriptors `fds` of the frames in it go with the first bytes (before
/// or with their frames' first bytes, as the wire asks), and are closed here once sent.
fn flush(socket: &mut UnixStream, out: &mut Vec<u8>, fds: &mut Vec<Arc<Segment>>) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let mut result = Ok(());
    let mut sent = 0;
    if !fds.is_empty() {
        let borrowed: Vec<_> = fds.iter().map(|s| s.fd()).collect();
        result = loop {
            match sys::send_vectored_fds(socket.as_fd(), &[std::io::IoSlice::new(out)], &borrowed) {
                Ok(n) => {
                    sent = n;
                    break Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        fds.clear();
    }
    if result.is_ok() {
        result = sys::send_all(socket.as_fd(), &out[sent..]);
    }
    out.clear();
    result
}
