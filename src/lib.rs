#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]

mod cpu;
mod error;
mod scheduler;
mod sync;
mod thread_pool;
mod unwind;

pub use cpu::cpu_count;
pub use error::{BuildError, ErrorKind, TaskError};
pub use thread_pool::{Scope, ThreadPool, ThreadPoolBuilder};
