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
//! | the process executor | [`Executor`], [`ExecutorBuilder`], [`TaskHandle`], [`Map`], [`WorkerInfo`], [`Shutdown`] | `executor/` (builder, shared state, `feeder/`: its loop, socket I/O and faults, completion, handle, batch, map) |
//! | worker processes: both ends of the protocol | [`init`], [`test_support!`] | `process/` (`wire.rs` frames, `spawn.rs` parent side, `forkserver/` the process workers are forked from, `exec.rs` `posix_spawn`, `claims.rs` taking back tasks written ahead, `marker.rs`, `worker.rs` child side), `test_support.rs` |
//! | joblib's front end | [`Parallel`], [`Backend`], [`ParallelIter`] | `parallel/` (options, runner, sizer, iterator, progress) |
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
//! Linux (5.3 or later: pidfds). Worker processes rely on `/proc/self/exe`, `PR_SET_PDEATHSIG`,
//! pidfds and `/proc` for their memory use. `WORKPOOL_START_METHOD=spawn` starts every worker
//! with `posix_spawn` instead of forking it from the fork server.
#![deny(unsafe_op_in_unsafe_fn)]
// The examples must show `fn main`: `workpool::init()` has to be its first statement.
#![allow(clippy::needless_doctest_main)]

mod codec;
mod cpu;
mod ctrl_c;
mod error;
mod executor;
pub mod fuzzing; // Only under cfg(test) or cfg(fuzzing), and doc(hidden): see its first lines.
mod interrupt;
mod observe;
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

pub use cpu::cpu_count;
pub use ctrl_c::handle_ctrl_c;
pub use error::{BuildError, ErrorKind, TaskError};
pub use executor::{
    Executor, ExecutorBuilder, Map, Shutdown, TaskHandle, WorkerInfo, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
};
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
