//! Both ends of the worker protocol, side by side.
//!
//! * [`wire`]: the frames, their layout and their parsers (the only file that knows a frame's
//!   bytes).
//! * [`spawn`]: the parent's side of a worker's life: start it, greet it, stop it, reap it.
//! * [`forkserver`]: the small process workers are forked from, and its client.
//! * [`claims`]: the shared-memory ring through which tasks written ahead are taken back.
//! * [`worker`]: the child's side: the loop that serves tasks.
//! * [`marker`]: what a started process is for, whether this program can have workers, the
//!   binary's fingerprint; `exec.rs`: `posix_spawn` of this program.
//! * here: [`init()`], which turns a started process into what its marker says.

pub(crate) mod claims;
mod exec;
pub(crate) mod forkserver;
pub(crate) mod marker;
pub(crate) mod remote;
pub(crate) mod spawn;
pub(crate) mod wire;
pub(crate) mod worker;

use crate::sys;
use claims::Claims;
use marker::{Marker, Role, INIT_CALLED, MARKER};
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;

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
            forkserver::start_early();
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
    if marker.role == Role::Remote {
        // Started by a launcher (ssh, srun, mpirun, ...): its parent is not ours to check.
        std::env::remove_var(MARKER);
        remote::supervisor::serve();
    }
    if marker.parent != sys::parent_pid() {
        // Our parent died while we were starting.
        std::process::exit(marker::EXIT_ORPHAN);
    }
    // Children that tasks start must be ordinary processes, not workers of ours.
    std::env::remove_var(MARKER);
    match marker.role {
        Role::ForkServer => forkserver::serve(&marker),
        Role::Remote => unreachable!("handled above"),
        Role::Worker => {
            if marker.die_with_parent && (sys::die_with_parent().is_err() || sys::parent_pid() != marker.parent) {
                std::process::exit(marker::EXIT_ORPHAN);
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
                Ok(()) => worker::serve(unsafe { UnixStream::from_raw_fd(sys::WORKER_FD) }, claims),
                Err(e) => {
                    eprintln!("workpool worker: no task socket on fd {}: {e}", sys::WORKER_FD);
                    worker::EXIT_PROTOCOL
                }
            };
            std::process::exit(code)
        }
    }
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
