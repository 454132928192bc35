#![doc = include_str!("../README.md")]
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
mod parallel;
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
pub use parallel::{Backend, Parallel, ParallelIter};
pub use process::worker::init;
pub use task::Task;
pub use thread_pool::{Scope, ThreadPool, ThreadPoolBuilder};

#[doc(hidden)]
pub mod __private {
    pub use crate::task::Registration;
    pub use crate::test_support::TestEntry;
    pub use inventory;
}
