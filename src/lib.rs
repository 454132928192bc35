//! Reusable, crash-proof worker processes and a work-stealing thread pool: joblib and loky for
//! Rust.
//!
//! workpool runs many tasks in parallel on a pool of worker processes that is created once,
//! reused for the life of the program, and survives crashing tasks. A segfault, `abort()`,
//! `exit()` or out-of-memory kill inside one task costs that task: never the pool, the caller,
//! or the terminal session. The same task type also runs on an in-process work-stealing
//! [`ThreadPool`], and a joblib-style [`Parallel`] front end picks either backend with one switch.
//!
//! # A first program
//!
//! A task is a function marked [`#[workpool::task]`](macro@task): it stays an ordinary function,
//! and gives a task type named after it (`square` gives `Square { n }`, with a [`Task`] impl,
//! registered). Worker processes come from this program's own binary, started again as
//! a small fork server, so [`init()`] must be the first statement of `main`: there it serves
//! and never returns; code before it would run there too. [`#[workpool::main]`](macro@main) puts it there.
//!
//! ```no_run
//! use workpool::{Backend, Executor, Parallel};
//!
//! /// `n²`, in whichever process runs it.
//! #[workpool::task]
//! fn square(n: u64) -> u64 {
//!     n * n
//! }
//!
//! #[workpool::main]
//! fn main() {
//!     // One task, in a worker process.
//!     let ex = Executor::builder().workers(4).build().unwrap();
//!     assert_eq!(ex.submit(Square { n: 7 }).join().unwrap(), 49);
//!
//!     // Many tasks, streamed in input order with a bounded window.
//!     let squares: Vec<u64> = ex.map((0..1000).map(|n| Square { n })).map(Result::unwrap).collect();
//!     assert_eq!(squares[999], 998_001);
//!
//!     // joblib's Parallel(n_jobs=-1)(delayed(f)(x) for x in data), auto-batched.
//!     let all = Parallel::new().n_jobs(-1).run((0..1_000_000).map(|n| Square { n })).unwrap();
//!     assert_eq!(all.len(), 1_000_000);
//!
//!     // The same task on threads instead of processes.
//!     let on_threads = Parallel::new().backend(Backend::Threads).run((0..10).map(|n| Square { n })).unwrap();
//!     assert_eq!(on_threads[3], 9);
//! }
//! ```
//!
//! The same program without the attributes: a task is any serde type with a [`Task`] impl,
//! made known to worker processes with [`register!`], and `main` calls [`init()`] itself.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use workpool::{Executor, Task};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Square(u64);
//!
//! impl Task for Square {
//!     type Output = u64;
//!     fn run(self) -> u64 {
//!         self.0 * self.0
//!     }
//! }
//!
//! workpool::register!(Square);
//!
//! fn main() {
//!     workpool::init();
//!     let ex = Executor::builder().workers(4).build().unwrap();
//!     assert_eq!(ex.submit(Square(7)).join().unwrap(), 49);
//! }
//! ```
//!
//! Test binaries have no `main` of their own: put [`test_support!()`](test_support) at the top
//! level of each integration-test file that uses worker processes.
//!
//! # What is where
//!
//! | concept | public items | source |
//! |---|---|---|
//! | tasks and their registry | [`Task`], [`register!`], [`#[task]`](macro@task), [`#[main]`](macro@main) | `task.rs`, `process/mod.rs`; the attributes' code is the `workpool-macros` crate |
//! | the process executor | [`Executor`], [`ExecutorBuilder`], [`TaskHandle`], [`Map`], [`WorkerInfo`], [`Shutdown`] | `executor/` (builder, shared state, `feeder/`: its loop, socket I/O and faults, the initializer, completion, handle, batch, map) |
//! | async callers and many handles | `impl Future for TaskHandle`, [`KillOnDrop`], [`as_completed`], [`AsCompleted`], [`MapStream`], [`ShuttingDown`], [`ctrl_c`], [`CtrlC`] | `executor/` (`handle.rs`, `completed.rs`, `shutdown.rs`, `doorbell.rs`: how a kill reaches a feeder), `ctrl_c.rs` |
//! | worker processes: both ends of the protocol | [`init`], [`test_support!`] | `process/` (`wire.rs` frames, `spawn.rs` parent side, `forkserver/` the process workers are forked from, `exec.rs` `posix_spawn`, `claims.rs` taking back tasks written ahead, `marker.rs`, `worker.rs` child side), `test_support.rs` |
//! | joblib's front end | [`Parallel`], [`Backend`], [`ParallelIter`] | `parallel/` (options, runner, sizer, iterator, progress) |
//! | workers on other hosts: launchers, the authenticated TCP link, the remote supervisor | [`Launcher`], [`ExecutorBuilder::launcher`], [`ExecutorBuilder::listen`] | `launcher.rs`, `process/remote/` (`auth.rs` the challenge, `relay.rs` frames over TCP and heartbeats, `supervisor.rs` the remote end) |
//! | the thread pool | [`ThreadPool`], [`ThreadPoolBuilder`], [`Scope`], [`ScopeFifo`], [`BroadcastContext`], [`Yield`], [`current_num_threads`], [`current_thread_index`], [`yield_now`] | `thread_pool/` (registry and calls across pools, join, scope, broadcast, jobs, latches) |
//! | the work-stealing scheduler under both | — | `scheduler/` (deques and stealing; `sleep.rs`: the sleep protocol and why no wake-up is lost) |
//! | Ctrl-C and Ctrl-Z | [`handle_ctrl_c`] | `ctrl_c.rs`, over `interrupt.rs`; `pause.rs` |
//! | errors | [`TaskError`], [`ErrorKind`], [`BuildError`] | `error.rs` |
//! | CPUs | [`cpu_count`] | `cpu.rs` |
//! | seeing a run: stats, a timeline, log events | [`ExecutorStats`], [`SlotStats`], [`Deaths`], [`ParallelStats`], [`Recording`], [`Timeline`] | `observe/` (`stats.rs`, `timeline.rs`, `log.rs`) |
//!
//! Words: a **slot** is one of the `workers(n)` places of an executor, served by one feeder
//! thread and holding at most one **worker process** at a time; a **pool thread** is a thread of
//! a [`ThreadPool`].
//!
//! # Faults
//!
//! What one task's disaster costs, and what it does not:
//!
//! | fault | what the caller sees | what happens to the pool |
//! |---|---|---|
//! | the task panics | that task: [`TaskError::is_panic`], with message and location | nothing: the worker lives on |
//! | `abort()`, a segfault, any fatal signal, `exit(n)` | that task: [`TaskError::is_worker_death`], naming the signal or exit code | the worker is reaped; tasks queued for it run elsewhere; a new one starts on demand |
//! | the worker is killed from outside while busy (OOM killer, `kill -9`) | the task it ran: `is_worker_death()`, "SIGKILL" | as above |
//! | the worker is killed while idle | nothing | it is reaped; the next task starts a new one |
//! | the task runs past [`task_timeout`](ExecutorBuilder::task_timeout) | that task: [`TaskError::is_timeout`] | its worker is killed and replaced |
//! | [`TaskHandle::kill`] while the task runs (or a dropped [`kill_on_drop`](TaskHandle::kill_on_drop) guard) | that task: [`TaskError::is_cancelled`], at once | its worker is killed; tasks written ahead behind it run elsewhere; a new one starts on demand |
//! | the [`initializer`](ExecutorBuilder::initializer) fails in a new worker | nothing, unless every retry of that start fails: then the task that waited, [`TaskError::is_spawn`] | never broken: the next task tries again |
//! | a worker past [`max_tasks_per_worker`](ExecutorBuilder::max_tasks_per_worker) or [`max_worker_memory`](ExecutorBuilder::max_worker_memory) | nothing | replaced between tasks |
//! | an argument or result that cannot be encoded or decoded | that task: [`TaskError::is_codec`] | nothing |
//! | a type never passed to [`register!`] | that handle: [`TaskError::is_not_registered`], at once | nothing |
//! | the program never calls [`init()`] | [`ExecutorBuilder::build`] fails, saying what to do, before any process starts | nothing is started |
//! | a worker fails to start (killed while starting, too slow to say hello) | nothing, unless every retry fails: then the task that waited, [`TaskError::is_spawn`] | never broken: the next task tries again |
//! | Ctrl-C while a call waits (with [`handle_ctrl_c`]) | that call: [`TaskError::is_interrupted`], promptly | queued work is cancelled, busy workers are killed, the executor stays usable |
//! | the parent process dies, even by SIGKILL | — | its workers die with it |
//!
//! Exactly once: a task that finished before its worker died never loses its result, and no task
//! runs twice (a worker announces each task it starts; only unannounced ones are rescheduled).
//!
//! # Async callers
//!
//! A [`TaskHandle`] is a [`Future`](std::future::Future) with `Output = Result<O, TaskError>`,
//! woken by the feeder thread that receives the result (no runtime inside the library). With
//! `#[tokio::main]`, put [`#[workpool::main]`](macro@main) beside it: `init()` must run before
//! the runtime is built, or every worker process would build a runtime of its own before it
//! serves. [`TaskHandle::kill`] stops a task wherever it is; [`Executor::shutdown_async`] and
//! [`ctrl_c`] let an async server stop gracefully.
//!
//! # Seeing a run
//!
//! [`Executor::stats`] tells where each slot's time went (busy, idle, starting workers), what
//! crossed its socket and how its workers died; [`ParallelIter::stats`] a `Parallel` run's
//! batch sizes, efficiency and Amdahl serial fraction. [`Executor::record`] records a timeline
//! that [`Timeline::write_chrome_json`] writes for Perfetto or `chrome://tracing`. Worker starts,
//! deaths, respawns, timeouts, recycling, failed starts and Ctrl-C are logged through the `log`
//! facade (target `workpool`): nothing is printed unless the program installs a logger.
//!
//! # Platforms
//!
//! Linux only (5.3 or later: pidfds), on every architecture Rust supports there; tested on
//! x86_64. Worker processes rely on `/proc/self/exe`, `PR_SET_PDEATHSIG`, pidfds, `memfd_create`,
//! `SCM_RIGHTS` and `/proc` for their memory use, and nothing of the kind is emulated elsewhere:
//! on any other system the crate does not compile, with an error that names the system, rather
//! than build with guarantees that silently do not hold (no parent-death signal on macOS, no
//! memory ceiling). `WORKPOOL_START_METHOD=spawn` starts every worker with `posix_spawn` instead
//! of forking it from the fork server.
//!
//! # Environment variables
//!
//! | variable | read by | effect |
//! |---|---|---|
//! | `WORKPOOL_MAX_CPU_COUNT` | [`cpu_count`] | a ceiling on the CPUs counted (after the affinity mask and cgroup quotas), so on default worker and thread counts |
//! | `WORKPOOL_START_METHOD=spawn` | [`init`], executors | start each worker with `posix_spawn` instead of forking it from the fork server |
//! | `WORKPOOL_WORKER_PANIC_OUTPUT` (any value) | worker processes | also print a task's panic message on the worker's stderr (it always reaches the caller as [`TaskError::panic_message`]); always on in `panic = "abort"` builds, where the worker dies of the panic |
//! | `OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS`, `MKL_NUM_THREADS`, `VECLIB_MAXIMUM_THREADS`, `NUMEXPR_NUM_THREADS`, `RAYON_NUM_THREADS` | set in worker processes | each one the program did not set gets `max(1, cpu_count / workers)` in every worker, so libraries with thread pools of their own do not oversubscribe the machine (as joblib does) |
//! | `WORKPOOL_WORKER` | set by workpool in worker processes | marks a process as a worker of this program (its role and protocol); never set it yourself |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
// The examples must show `fn main`: `workpool::init()` has to be its first statement.
#![allow(clippy::needless_doctest_main)]

#[cfg(windows)]
compile_error!(
    "workpool does not support Windows: its worker processes need Linux (fork server, pidfds, \
     PR_SET_PDEATHSIG, memfd, SCM_RIGHTS). Run it under WSL 2 (Linux), or use a thread pool such as rayon."
);
#[cfg(target_os = "macos")]
compile_error!(
    "workpool does not support macOS: it has no pidfds, no PR_SET_PDEATHSIG (workers could outlive \
     a killed parent) and no memfd. workpool needs Linux 5.3 or later; on a Mac, build and run \
     inside a Linux container or VM."
);
#[cfg(all(unix, not(any(target_os = "linux", target_os = "macos"))))]
compile_error!(
    "workpool supports Linux only: this Unix (FreeBSD, NetBSD, OpenBSD, illumos, ...) lacks the \
     Linux interfaces its worker processes rely on (pidfds, PR_SET_PDEATHSIG, memfd_create, \
     /proc/self/exe). Run it on Linux 5.3 or later."
);
#[cfg(not(any(unix, windows)))]
compile_error!("workpool supports Linux only (5.3 or later); this target has no processes to run workers in.");

mod bytes;
mod codec;
mod cpu;
#[cfg(feature = "ctrlc")]
mod ctrl_c;
mod error;
mod executor;
pub mod fuzzing; // Only under cfg(test) or cfg(fuzzing), and doc(hidden): see its first lines.
mod interrupt;
mod launcher;
mod observe;
mod oob;
mod parallel;
mod pause;
mod process;
mod rng;
mod scheduler;
mod sync;
mod sys;
mod task;
mod test_support;
mod thread_pool;
mod unwind;

pub use bytes::{shared_values_cached, Bytes, Shared};
pub use cpu::cpu_count;
#[cfg(feature = "ctrlc")]
#[cfg_attr(docsrs, doc(cfg(feature = "ctrlc")))]
pub use ctrl_c::{ctrl_c, handle_ctrl_c, CtrlC};
pub use error::{BuildError, ErrorKind, TaskError};
pub use executor::{
    as_completed, AsCompleted, Executor, ExecutorBuilder, KillOnDrop, Map, MapStream, Shutdown, ShuttingDown,
    TaskHandle, WorkerInfo, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
};
pub use launcher::Launcher;
pub use observe::{Deaths, ExecutorStats, ParallelStats, Recording, SlotStats, Timeline};
pub use parallel::{Backend, Parallel, ParallelIter};
pub use process::{init, main};
pub use task::{task, Task};
pub use thread_pool::{
    current_num_threads, current_thread_index, yield_now, BroadcastContext, Scope, ScopeFifo, ThreadPool,
    ThreadPoolBuilder, Yield,
};

/// The README's examples, compiled as doctests (the README itself is not the crate's docs).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[doc(hidden)]
pub mod __private {
    pub use crate::task::{assert_task_argument, assert_task_output, Registration, TaskArgument, TaskOutput};
    pub use crate::test_support::TestEntry;
    pub use inventory;
    // What `#[workpool::task]` derives with, so that its users need not name serde themselves.
    pub use serde;
}
