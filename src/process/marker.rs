//! What a process started by workpool is, and whether this program can have worker processes:
//! the environment marker, the worker-mode and `init()`-called flags, and the binary's
//! fingerprint. Both ends of the protocol read these; this file depends on neither.

use super::wire;
use crate::task;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Environment variable that marks a process started by workpool; its value is
/// [`Marker::encode`]d.
pub(crate) const MARKER: &str = "WORKPOOL_WORKER";

/// Exit code of a worker whose parent was already gone when it started.
pub(crate) const EXIT_ORPHAN: i32 = 71;

/// True inside a worker process (after `init()` took over).
static WORKER_MODE: AtomicBool = AtomicBool::new(false);
/// True once `init()` ran in this program (the parent): its binary serves as a worker.
pub(super) static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// This process now serves tasks.
pub(super) fn enter_worker_mode() {
    WORKER_MODE.store(true, Ordering::Relaxed);
}

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
    /// Started by a launcher, maybe on another host: connect back, supervise one worker
    /// (see `remote/supervisor.rs`).
    Remote,
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
    /// The marker of a remote supervisor (its parent is whatever the launcher runs).
    pub(crate) fn remote() -> Marker {
        Marker { role: Role::Remote, parent: 0, die_with_parent: false }
    }

    pub(crate) fn encode(&self) -> String {
        let role = match self.role {
            Role::Worker => "worker",
            Role::ForkServer => "forkserver",
            Role::Remote => "remote",
        };
        format!("{role}:{}:{}:{}", wire::PROTOCOL_VERSION, self.parent, u8::from(self.die_with_parent))
    }

    pub(crate) fn parse(text: &str) -> Option<Marker> {
        let mut parts = text.split(':');
        let role = match parts.next()? {
            "worker" => Role::Worker,
            "forkserver" => Role::ForkServer,
            "remote" => Role::Remote,
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
