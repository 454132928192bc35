//! The fork server: a small process that forks worker processes on request, so that starting a
//! worker costs the same whatever the size of the program that asks for it.
//!
//! # Why
//!
//! `fork` copies the parent's page tables: from a program with 8 GiB resident it takes ~170 ms,
//! and it leaves every page of the parent write-protected, so the parent then pays a minor
//! fault per page it touches (2 M faults for 8 GiB). Measured on this project's machine
//! (2 cores, request → hello, medians): fork + exec (std's `Command` with `pre_exec`) 1.0 ms
//! from an empty parent, 37 ms from 2 GiB, 172 ms from 8 GiB; `posix_spawn` (vfork + exec) 1.0 ms
//! at every size and no faults; a fork from this server 0.15 ms at every size and no faults in
//! the parent. So workers come from here, and [`super::spawn`] falls back to `posix_spawn` where
//! the server cannot run.
//!
//! # How
//!
//! The server is this same binary, started once with `posix_spawn` and a marker that makes
//! `init()` run [`serve`] instead of `main`: a single thread that has done nothing else, so a
//! fork of it copies a few hundred KiB and no lock can be held across the fork (it checks that
//! it really is single-threaded, and says so instead of serving otherwise). Its standard output
//! and error are `/dev/null` (a test binary's harness prints its banner there); each worker gets
//! the asking program's current stdout, stderr, environment and working directory with the
//! request, so a worker is what a freshly started one would be.
//!
//! Messages travel on a `SOCK_SEQPACKET` socketpair (one message per request or reply,
//! descriptors attached with `SCM_RIGHTS`):
//!
//! | message | direction | body | descriptors |
//! |---|---|---|---|
//! | `H` hello | server → | `u32` protocol, `u64` fingerprint, `u32` pid, reason text (empty: serving) | — |
//! | `S` spawn | → server | `u32` request, `u32` cwd length, cwd, `=` (replace the environment) or `+` (add to the server's), then `KEY=VALUE\0`… | task socket, stdout, stderr, claim ring |
//! | `P` spawned | server → | `u32` request, `u32` pid | a pidfd of the worker |
//! | `F` failed | server → | `u32` request, `i32` errno | — |
//! | `X` exited | server → | `u32` pid, `i32` wait status (the server has reaped it) | — |
//!
//! # Lifetime
//!
//! Workers are the server's children: it reaps each one as it exits and reports its status.
//! The server ends when its control socket reaches end of stream (the program exited or was
//! killed: the kernel closes the socket either way): it kills every worker's process group,
//! reaps them and exits. Started from the main thread (by `init()`), it also asks for SIGKILL
//! when its parent dies; workers do the same towards the server (`PR_SET_PDEATHSIG`, checked
//! against `getppid()` after it is set).

mod server;

pub(crate) use server::serve;

use super::marker::{self, Marker, Role};
use super::{exec::posix_spawn, wire};
use crate::sys;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest message: a spawn request with the whole environment.
pub(super) const MAX_MESSAGE: usize = 256 * 1024;

/// How long the first request waits for the server's hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

// ===== the parent's side =====

/// What the reader thread has learned from the server.
#[derive(Default)]
struct Inbox {
    /// `None` until the hello came; then `Ok(pid)` or why the server cannot serve.
    hello: Option<Result<u32, String>>,
    replies: HashMap<u32, Result<(u32, OwnedFd), i32>>,
    /// Wait statuses of workers the server reaped.
    exits: HashMap<u32, i32>,
    /// Requests whose asker gave up waiting: their workers are killed when the reply comes.
    abandoned: Vec<u32>,
    /// The control socket reached end of stream or failed: the server is gone.
    gone: bool,
}

/// A running fork server, seen from the program that started it.
pub(crate) struct ForkServer {
    /// The server's pid (our child: reaped by `Drop`).
    pid: u32,
    control: OwnedFd,
    inbox: Mutex<Inbox>,
    changed: Condvar,
    next_request: AtomicU32,
    /// The environment the server was started with (it keeps it; requests made while ours is
    /// still the same send only their additions).
    env_at_start: Vec<(OsString, OsString)>,
}

/// The process-wide fork server, started at `init()` or on first use.
static SERVER: Mutex<Option<Arc<ForkServer>>> = Mutex::new(None);
/// Set when a server said it cannot serve in this program: workers come from `posix_spawn`.
static REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether workers may come from a fork server (`WORKPOOL_START_METHOD=spawn` says no).
fn enabled() -> bool {
    std::env::var("WORKPOOL_START_METHOD").map_or(true, |m| m.trim() != "spawn")
}

/// Starts the server now, if it may run (from `init()`, while the program is still small and
/// single-threaded; the hello is read on first use).
pub(crate) fn start_early() {
    if enabled() {
        let mut server = SERVER.lock();
        if server.is_none() {
            *server = ForkServer::start(sys::is_main_thread()).ok().map(Arc::new);
        }
    }
}

/// The server to ask for a worker: the running one, or a new one when it is gone. `None` when
/// no server can serve here (disabled, or it refused: then the caller uses `posix_spawn`).
pub(crate) fn get() -> Option<Arc<ForkServer>> {
    if !enabled() {
        return None;
    }
    if REFUSED.load(Ordering::Relaxed) {
        return None;
    }
    let mut slot = SERVER.lock();
    if let Some(server) = slot.as_ref() {
        let inbox = server.inbox.lock();
        match (&inbox.hello, inbox.gone) {
            (Some(Err(_)), _) => {
                // It cannot serve here: do not try again (and reap it now).
                REFUSED.store(true, Ordering::Relaxed);
                drop(inbox);
                slot.take();
                return None;
            }
            (_, false) => return Some(server.clone()),
            (_, true) => {}
        }
    }
    // Started lazily (a test binary, or the server died): not from `init()`'s thread, so no
    // parent-death signal, which would follow the thread that started it, not the process.
    *slot = ForkServer::start(false).ok().map(Arc::new);
    slot.clone()
}

extern "C" fn stop_at_exit() {
    stop();
}

/// Stops the server (at exit): end of stream makes it kill and reap its workers.
pub(crate) fn stop() {
    if let Some(server) = SERVER.try_lock().and_then(|mut slot| slot.take()) {
        // Workers of live executors still hold the server: close it now, not when the last goes.
        server.close();
    }
}

impl ForkServer {
    fn start(die_with_us: bool) -> io::Result<ForkServer> {
        let (ours, theirs) = seqpacket_pair()?;
        let marker = Marker { role: Role::ForkServer, parent: std::process::id(), die_with_parent: die_with_us };
        let theirs_high = sys::dup_high(theirs.as_fd())?;
        drop(theirs);
        let pid = posix_spawn(&marker, &[(theirs_high.as_fd(), sys::WORKER_FD)], true, &[])?;
        static AT_EXIT: std::sync::Once = std::sync::Once::new();
        AT_EXIT.call_once(|| sys::at_exit(stop_at_exit));
        crate::pause::add(pid);
        let server = ForkServer {
            pid,
            control: ours,
            inbox: Mutex::new(Inbox::default()),
            changed: Condvar::new(),
            next_request: AtomicU32::new(1),
            env_at_start: environment(),
        };
        Ok(server)
    }

    /// Starts the reader thread on first use (not in `init()`: a program that never builds an
    /// executor keeps a single thread).
    fn ensure_reader(self: &Arc<Self>) {
        static STARTED: std::sync::Mutex<Option<u32>> = std::sync::Mutex::new(None);
        let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        if *started == Some(self.pid) {
            return;
        }
        let me = Arc::downgrade(self);
        let control = match self.control.try_clone() {
            Ok(fd) => fd,
            Err(_) => {
                self.inbox.lock().gone = true;
                return;
            }
        };
        let spawned =
            std::thread::Builder::new().name("workpool-forkserver".into()).spawn(move || read_loop(me, control));
        if spawned.is_err() {
            self.inbox.lock().gone = true;
        }
        *started = Some(self.pid);
    }

    /// Asks for a worker on `socket`; returns its pid and a pidfd. `Err` when the server cannot
    /// (then the caller starts the worker itself).
    pub(crate) fn spawn(
        self: &Arc<Self>,
        socket: BorrowedFd<'_>,
        claims: BorrowedFd<'_>,
        extra: &[(String, String)],
        limit: Duration,
    ) -> Result<(u32, OwnedFd), String> {
        self.ensure_reader();
        let deadline = Instant::now() + HELLO_TIMEOUT;
        let mut inbox = self.inbox.lock();
        while inbox.hello.is_none() && !inbox.gone {
            if self.changed.wait_until(&mut inbox, deadline).timed_out() {
                return Err("the fork server did not say hello".into());
            }
        }
        match &inbox.hello {
            Some(Err(why)) => return Err(why.clone()),
            _ if inbox.gone => return Err("the fork server is gone".into()),
            _ => {}
        }
        drop(inbox);
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let cwd = std::env::current_dir().map(|d| d.into_os_string()).unwrap_or_default();
        let mut message = vec![b'S'];
        message.extend_from_slice(&request.to_le_bytes());
        message.extend_from_slice(&(cwd.len() as u32).to_le_bytes());
        message.extend_from_slice(cwd.as_bytes());
        let now = environment();
        let (mode, base): (u8, &[(OsString, OsString)]) =
            if now == self.env_at_start { (b'+', &[]) } else { (b'=', &now) };
        message.push(mode);
        let extra = extra.iter().map(|(k, v)| (OsStr::new(k), OsStr::new(v)));
        for (key, value) in base.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())).chain(extra) {
            message.extend_from_slice(key.as_bytes());
            message.push(b'=');
            message.extend_from_slice(value.as_bytes());
            message.push(0);
        }
        if message.len() > MAX_MESSAGE {
            return Err("the environment is too large for the fork server".into());
        }
        let stdout = std::io::stdout();
        let stderr = std::io::stderr();
        sys::send_with_fds(self.control.as_fd(), &message, &[socket, stdout.as_fd(), stderr.as_fd(), claims])
            .map_err(|e| format!("asking the fork server: {e}"))?;
        let deadline = Instant::now() + limit;
        let mut inbox = self.inbox.lock();
        loop {
            if let Some(reply) = inbox.replies.remove(&request) {
                return reply.map_err(|errno| {
                    format!("the fork server could not fork: {}", io::Error::from_raw_os_error(errno))
                });
            }
            if inbox.gone {
                return Err("the fork server is gone".into());
            }
            if self.changed.wait_until(&mut inbox, deadline).timed_out() && !inbox.replies.contains_key(&request) {
                // A stopped server (Ctrl-Z reaches its process group too): its late reply is
                // dropped, and its worker killed, by `read_loop`.
                inbox.abandoned.push(request);
                return Err(format!("the fork server did not answer within {limit:?}"));
            }
        }
    }

    /// The wait status of worker `pid`, once the server reaped it (waiting at most `limit`).
    pub(crate) fn exit_status(&self, pid: u32, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        let mut inbox = self.inbox.lock();
        loop {
            if let Some(status) = inbox.exits.remove(&pid) {
                return Some(status);
            }
            if inbox.gone || self.changed.wait_until(&mut inbox, deadline).timed_out() {
                return inbox.exits.remove(&pid);
            }
        }
    }
}

impl ForkServer {
    /// Ends the server: end of stream on the control socket makes it kill and reap its workers
    /// and exit; it is given a moment, then killed. Reaps it. Idempotent.
    fn close(&self) {
        crate::pause::remove(self.pid);
        let _ = shutdown(self.control.as_fd());
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            match sys::try_reap(self.pid) {
                Some(_) => return,
                None if !sys::is_child(self.pid) => return,
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        sys::kill(self.pid);
        sys::reap(self.pid);
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        self.close();
    }
}

fn shutdown(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: shutdown on a descriptor we own.
    if unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The reader thread: files every message of the server in the inbox.
fn read_loop(server: std::sync::Weak<ForkServer>, control: OwnedFd) {
    let mut buf = vec![0u8; 64];
    loop {
        let got = sys::recv_with_fds(control.as_fd(), &mut buf, 1);
        let Some(server) = server.upgrade() else { return };
        let mut inbox = server.inbox.lock();
        match got {
            Ok((0, _)) | Err(_) => {
                inbox.gone = true;
                server.changed.notify_all();
                return;
            }
            Ok((n, mut fds)) => {
                let m = &buf[..n];
                let u32_at = |i: usize| m.get(i..i + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
                match (m.first(), u32_at(1), u32_at(5)) {
                    (Some(b'H'), Some(version), _) => {
                        let pid = u32_at(13).unwrap_or(0);
                        let print = m.get(5..13).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
                        let why = String::from_utf8_lossy(m.get(17..).unwrap_or_default()).into_owned();
                        inbox.hello =
                            Some(if version != wire::PROTOCOL_VERSION || print != Some(marker::fingerprint()) {
                                Err("the fork server runs a different build of this program".into())
                            } else if !why.is_empty() {
                                Err(why)
                            } else {
                                Ok(pid)
                            });
                    }
                    (Some(b'P'), Some(request), Some(pid)) if !fds.is_empty() => {
                        let pidfd = fds.remove(0);
                        if let Some(i) = inbox.abandoned.iter().position(|&r| r == request) {
                            inbox.abandoned.swap_remove(i);
                            sys::pidfd_kill(pidfd.as_fd());
                        } else {
                            inbox.replies.insert(request, Ok((pid, pidfd)));
                        }
                    }
                    (Some(b'F'), Some(request), Some(errno)) => {
                        inbox.replies.insert(request, Err(errno as i32));
                    }
                    (Some(b'X'), Some(pid), Some(status)) => {
                        inbox.exits.insert(pid, status as i32);
                    }
                    _ => {
                        // A broken server: stop using it (a new one starts on the next request).
                        inbox.gone = true;
                    }
                }
                server.changed.notify_all();
            }
        }
    }
}

/// This program's environment, without workpool's marker.
fn environment() -> Vec<(OsString, OsString)> {
    std::env::vars_os().filter(|(k, _)| k != marker::MARKER).collect()
}

fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created for us.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
