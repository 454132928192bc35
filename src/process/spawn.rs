//! Starting, greeting, stopping and reaping one worker process.

use crate::process::wire::{self, FrameReader};
use crate::process::worker::{self, INIT_HINT, MARKER};
use crate::sys;
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
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

/// Why a worker could not be started; `sticky` errors will recur on every try (wrong binary
/// set-up), others may be transient.
#[derive(Debug)]
pub(crate) struct SpawnError {
    pub(crate) message: String,
    pub(crate) sticky: bool,
}

impl SpawnError {
    fn transient(what: &str, e: io::Error) -> Self {
        SpawnError { message: format!("{what}: {e}"), sticky: false }
    }

    fn sticky(message: String) -> Self {
        SpawnError { message, sticky: true }
    }
}

/// A started worker that said hello.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) socket: UnixStream,
    pub(crate) pid: u32,
}

/// Starts a worker and waits (at most `handshake`) for its hello.
pub(crate) fn spawn(threads_per_worker: usize, handshake: Duration) -> Result<Process, SpawnError> {
    worker::refuse_nested_workers().map_err(SpawnError::sticky)?;
    let (ours, theirs) = UnixStream::pair().map_err(|e| SpawnError::transient("socketpair", e))?;
    let exe = if std::path::Path::new("/proc/self/exe").exists() {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().map_err(|e| SpawnError::transient("locating the current executable", e))?
    };
    let mut command = Command::new(exe);
    command
        .args(crate::test_support::harness_args())
        .env(MARKER, format!("{}:{}", wire::PROTOCOL_VERSION, std::process::id()))
        .stdin(Stdio::null())
        // Own process group: the terminal's Ctrl-C reaches the parent only; it decides.
        .process_group(0);
    for var in THREAD_CAPS {
        if std::env::var_os(var).is_none() {
            command.env(var, threads_per_worker.max(1).to_string());
        }
    }
    let child_fd = theirs.as_raw_fd();
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (dup2, prctl, getppid) without allocating.
    unsafe {
        command.pre_exec(move || sys::child_setup(child_fd, parent));
    }
    let mut child = command.spawn().map_err(|e| SpawnError::transient("starting a worker process", e))?;
    drop(theirs);
    let pid = child.id();
    match handshake_with(&ours, handshake) {
        Ok(()) => {}
        Err(message) => {
            sys::kill(pid);
            let status = child.wait().ok();
            let cause = status.map(|s| describe(&s)).unwrap_or_else(|| "unknown status".into());
            return Err(SpawnError::sticky(format!("{message} (worker {pid}: {cause}); {INIT_HINT}")));
        }
    }
    ours.set_nonblocking(true).map_err(|e| SpawnError::transient("configuring the worker socket", e))?;
    Ok(Process { child, socket: ours, pid })
}

fn handshake_with(socket: &UnixStream, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut reader = FrameReader::new();
    let mut stream = socket;
    loop {
        if let Some(frame) = reader.next_frame().map_err(|e| e.to_string())? {
            if frame.kind != wire::HELLO {
                return Err(format!("the worker sent frame kind {} before its hello", frame.kind));
            }
            let (version, print, _pid) = wire::parse_hello(frame.body).map_err(|e| e.to_string())?;
            if version != wire::PROTOCOL_VERSION {
                return Err(format!("the worker speaks protocol {version}, we speak {}", wire::PROTOCOL_VERSION));
            }
            if print != worker::fingerprint() {
                return Err("the worker's binary differs from ours (was it rebuilt while running?)".into());
            }
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!("the worker did not say hello within {limit:?}"));
        }
        let ready = sys::poll(socket.as_fd(), false, Some(deadline - now)).map_err(|e| e.to_string())?;
        if ready.readable || ready.hangup {
            match reader.fill(&mut stream) {
                Ok(0) => return Err("the worker exited before saying hello".into()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading the worker's hello: {e}")),
            }
        }
    }
}

/// Waits for a worker that closed its socket or was killed; kills it if it lingers.
pub(crate) fn reap(child: &mut Child, grace: Duration) -> String {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return describe(&status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_micros(200)),
            Ok(None) => {
                sys::kill(child.id());
                return child.wait().map(|s| describe(&s)).unwrap_or_else(|e| format!("could not be reaped: {e}"));
            }
            Err(e) => return format!("could not be reaped: {e}"),
        }
    }
}

/// A worker's exit status in words: "killed by signal SIGSEGV", "exited with code 3".
pub(crate) fn describe(status: &ExitStatus) -> String {
    if let Some(signal) = status.signal() {
        let dumped = if status.core_dumped() { " (core dumped)" } else { "" };
        return format!("killed by signal {}{dumped}", sys::signal_name(signal));
    }
    match status.code() {
        Some(0) => "exited with code 0 while running a task (did the task call std::process::exit?)".into(),
        Some(code) => format!("exited with code {code}"),
        None => format!("ended with status {status}"),
    }
}
