//! The parent's side of a worker's life: start it, greet it, stop it, reap it.
//!
//! A worker comes from the fork server ([`super::forkserver`]: ~0.15 ms whatever the size of
//! this program) or, where none can run, from `posix_spawn` (vfork + exec: ~1 ms, also
//! independent of this program's size, and no copy-on-write faults afterwards). Never from
//! `fork` in this process: that copies its page tables (170 ms from 8 GiB resident).
//!
//! Either way the worker runs in a process group of its own (the terminal's Ctrl-C reaches
//! only this program, which decides; and killing the group also stops whatever the task
//! started), and dies with its parent (`PR_SET_PDEATHSIG`, checked against `getppid()` after it
//! is set). Its death is watched through a pidfd, so it is seen at once even when another
//! process still holds its socket.
//!
//! The descriptors a spawned child gets: 0 `/dev/null`, 1 and 2 `/dev/null` until `init()`
//! moves 4 and 5 (this program's stdout and stderr) there, 3 its task socket, 6 its claim ring
//! (see `claims.rs`). Every source
//! descriptor is first duplicated to 10 or above, so none of them can be a target already (the
//! `dup2(fd, 3)` of a socket that already is 3 would leave it close-on-exec).

use super::claims::Claims;
use super::exec::posix_spawn;
use super::forkserver::{self, ForkServer};
use super::marker::{self, Marker, Role};
use super::wire::{self, FrameReader};
use crate::sys;
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Environment variables that size thread pools inside common libraries; workers get
/// `max(1, cpu_count / workers)` for each one the user did not set (as joblib does).
pub(crate) const THREAD_CAPS: [&str; 6] = [
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "RAYON_NUM_THREADS",
];

/// Why a worker could not be started; `sticky` errors will recur on every try (a worker from
/// another build of the program), others may pass.
#[derive(Debug)]
pub(crate) struct SpawnError {
    pub(crate) message: String,
    pub(crate) sticky: bool,
}

impl SpawnError {
    fn transient(message: String) -> Self {
        SpawnError { message, sticky: false }
    }
}

/// Who reaps a worker and knows its exit status.
enum Origin {
    /// Our own child (`posix_spawn`): we reap it.
    Child,
    /// A child of the fork server, which reaps it and reports its status.
    Forked(Arc<ForkServer>),
    /// A worker on another host, behind its link (`pid` is its launcher's, a child of ours in
    /// a process group of its own; the exit descriptor hangs up when the link ends).
    Remote(Arc<dyn RemoteEnd>),
}

/// The far end of a remote worker (`remote/mod.rs`'s link), as this file needs it: how to kill
/// the worker, and how it ended.
pub(crate) trait RemoteEnd: Send + Sync {
    /// Ends the link; the remote side kills the worker.
    fn kill(&self, why: &str);
    /// How the worker ended, in words, and its raw wait status when the remote side reported
    /// one; reaps the launcher (killing it after `grace`).
    fn finish(&self, grace: Duration) -> (String, Option<i32>);
}

/// A started worker that said hello.
pub(crate) struct Worker {
    pub(crate) pid: u32,
    pub(crate) socket: UnixStream,
    /// Readable once the process has exited.
    pidfd: OwnedFd,
    origin: Origin,
    /// Tasks written ahead are offered, and taken back, here.
    pub(crate) claims: Claims,
}

impl Worker {
    /// A remote worker as the feeder drives it: `socket` is relayed to its connection.
    pub(crate) fn remote(
        pid: u32,
        socket: UnixStream,
        exit: OwnedFd,
        claims: Claims,
        link: Arc<dyn RemoteEnd>,
    ) -> Worker {
        Worker { pid, socket, pidfd: exit, origin: Origin::Remote(link), claims }
    }

    /// Readable once the worker process has exited.
    pub(crate) fn exit_fd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// True once the worker process has exited.
    pub(crate) fn has_exited(&self) -> bool {
        self.wait_exit(Duration::ZERO)
    }

    /// Waits at most `limit` for the worker process to exit; true when it has.
    pub(crate) fn wait_exit(&self, limit: Duration) -> bool {
        sys::poll(self.pidfd.as_fd(), false, Some(limit)).is_ok_and(|r| r.readable || r.hangup)
    }

    /// SIGKILL to the worker and to its process group (what its tasks started).
    pub(crate) fn kill(&self) {
        if let Origin::Remote(link) = &self.origin {
            return link.kill("killed by the executor");
        }
        sys::pidfd_kill(self.pidfd.as_fd());
        sys::kill_group(self.pid);
    }

    /// Waits (at most `grace`) for the worker to exit, kills it if it lingers, stops whatever
    /// is left in its process group, reaps it, and says how it ended.
    pub(crate) fn finish(self, grace: Duration) -> String {
        self.finish_with_status(grace).0
    }

    /// [`finish`](Worker::finish), with the raw wait status too (`None` when unknown).
    pub(crate) fn finish_with_status(self, grace: Duration) -> (String, Option<i32>) {
        let deadline = Instant::now() + grace;
        while !self.has_exited() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                match &self.origin {
                    Origin::Remote(link) => link.kill("it did not stop in time"),
                    _ => sys::pidfd_kill(self.pidfd.as_fd()),
                }
            }
            let _ = sys::poll(self.pidfd.as_fd(), false, Some(left.max(Duration::from_millis(1))));
        }
        // Exited, not yet reaped by us (a child) or perhaps by the server: the group id is still
        // reserved while anything of the group lives, so this reaches only what the task left.
        sys::kill_group(self.pid);
        crate::pause::remove(self.pid);
        let status = match &self.origin {
            Origin::Child => loop {
                match sys::try_reap(self.pid) {
                    Some(status) => break Some(status),
                    // Reaped by someone else (a `waitpid(-1)` elsewhere in the program).
                    None if !sys::is_child(self.pid) => break None,
                    None => std::thread::sleep(Duration::from_micros(100)),
                }
            },
            Origin::Forked(server) => server.exit_status(self.pid, Duration::from_secs(2)),
            Origin::Remote(link) => return link.finish(Duration::from_secs(2)),
        };
        let words = match status {
            Some(status) => describe(status),
            None => "ended; its exit status is unknown (it was reaped elsewhere, or the fork server that started it \
                     is gone)"
                .into(),
        };
        (words, status)
    }
}

/// Starts a worker and waits (at most `handshake`) for its hello.
pub(crate) fn start(threads_per_worker: usize, handshake: Duration) -> Result<Worker, SpawnError> {
    marker::refuse_nested_workers().map_err(|message| SpawnError { message, sticky: true })?;
    let (ours, theirs) = UnixStream::pair().map_err(|e| SpawnError::transient(format!("socketpair: {e}")))?;
    let (claims, claims_fd) = Claims::create().map_err(|e| SpawnError::transient(format!("claim ring: {e}")))?;
    let mut env = Vec::new();
    for var in THREAD_CAPS {
        if std::env::var_os(var).is_none() {
            env.push((var.to_string(), threads_per_worker.max(1).to_string()));
        }
    }
    let forked = forkserver::get().and_then(|server| {
        let (pid, pidfd) = server.spawn(theirs.as_fd(), claims_fd.as_fd(), &env, handshake).ok()?;
        Some((pid, pidfd, Origin::Forked(server)))
    });
    let (pid, pidfd, origin) = match forked {
        Some(forked) => forked,
        None => {
            let marker = Marker { role: Role::Worker, parent: std::process::id(), die_with_parent: true };
            let high = |fd: BorrowedFd<'_>| sys::dup_high(fd).map_err(|e| SpawnError::transient(format!("dup: {e}")));
            let (socket, stdout, stderr) =
                (high(theirs.as_fd())?, high(io::stdout().as_fd())?, high(io::stderr().as_fd())?);
            let ring = high(claims_fd.as_fd())?;
            let fds = [(socket.as_fd(), sys::WORKER_FD), (stdout.as_fd(), 4), (stderr.as_fd(), 5), (ring.as_fd(), 6)];
            let pid = posix_spawn(&marker, &fds, true, &env)
                .map_err(|e| SpawnError::transient(format!("starting a worker process: {e}")))?;
            match sys::pidfd_open(pid) {
                Ok(pidfd) => (pid, pidfd, Origin::Child),
                Err(e) => {
                    sys::kill(pid);
                    sys::reap(pid);
                    return Err(SpawnError::transient(format!("pidfd_open: {e}")));
                }
            }
        }
    };
    drop(theirs);
    drop(claims_fd);
    crate::pause::add(pid);
    let worker = Worker { pid, socket: ours, pidfd, origin, claims };
    if let Err((message, sticky)) = handshake_with(&worker, handshake) {
        worker.kill();
        let cause = worker.finish(Duration::ZERO);
        return Err(SpawnError { message: format!("{message} (worker {pid}: {cause})"), sticky });
    }
    worker
        .socket
        .set_nonblocking(true)
        .map_err(|e| SpawnError::transient(format!("configuring the worker socket: {e}")))?;
    Ok(worker)
}

/// Waits for the worker's hello; the error says whether it will recur (another build).
fn handshake_with(worker: &Worker, limit: Duration) -> Result<(), (String, bool)> {
    let deadline = Instant::now() + limit;
    let mut reader = FrameReader::new();
    let mut stream = &worker.socket;
    loop {
        if let Some(frame) = reader.next_frame().map_err(|e| (e.to_string(), false))? {
            if frame.kind != wire::HELLO {
                return Err((format!("the worker sent frame kind {} before its hello", frame.kind), false));
            }
            let (version, print, _pid) = wire::parse_hello(frame.body).map_err(|e| (e.to_string(), false))?;
            if version != wire::PROTOCOL_VERSION {
                return Err((
                    format!("the worker speaks protocol {version}, we speak {}", wire::PROTOCOL_VERSION),
                    true,
                ));
            }
            if print != marker::fingerprint() {
                return Err(("the worker's binary differs from ours (was it rebuilt while running?)".into(), true));
            }
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err((format!("the worker did not say hello within {limit:?}"), false));
        }
        let watch = [(worker.socket.as_fd(), false), (worker.exit_fd(), false)];
        let ready = sys::poll_many(&watch, Some(deadline - now)).map_err(|e| (e.to_string(), false))?;
        if ready[0].readable || ready[0].hangup {
            match reader.fill(&mut stream) {
                Ok(0) => return Err(("the worker exited before saying hello".into(), false)),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err((format!("reading the worker's hello: {e}"), false)),
            }
        } else if ready[1].readable || ready[1].hangup {
            return Err(("the worker exited before saying hello".into(), false));
        }
    }
}

/// A raw wait status in words: "killed by signal SIGSEGV", "exited with code 3".
pub(crate) fn describe(status: i32) -> String {
    if libc::WIFSIGNALED(status) {
        let dumped = if libc::WCOREDUMP(status) { " (core dumped)" } else { "" };
        return format!("killed by signal {}{dumped}", sys::signal_name(libc::WTERMSIG(status)));
    }
    match libc::WEXITSTATUS(status) {
        0 => "exited with code 0 while running a task (did the task call std::process::exit?)".into(),
        code => format!("exited with code {code}"),
    }
}
