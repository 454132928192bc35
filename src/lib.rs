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

/// Lets test binaries (which have no `main` of their own) start workers: use it once, at the
/// top level of each integration-test file or in the crate's unit tests, and the executor will
/// re-run the test binary with only the entry test this macro defines.
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Square(u64);
/// # impl workpool::Task for Square { type Output = u64; fn run(self) -> u64 { self.0 * self.0 } }
/// # workpool::register!(Square);
/// workpool::test_support!();
///
/// #[test]
/// fn squares_in_workers() {
///     let ex = workpool::Executor::builder().workers(2).build().unwrap();
///     assert_eq!(ex.submit(Square(3)).join().unwrap(), 9);
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! test_support {
    () => {
        #[test]
        fn __workpool_worker_entry() {
            $crate::init();
        }
        $crate::__private::inventory::submit! {
            $crate::__private::TestEntry { module: module_path!() }
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::process::spawn::TestEntry;
    pub use crate::task::Registration;
    pub use inventory;
}
