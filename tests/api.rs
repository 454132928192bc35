//! Static guarantees of the public API: thread-safety of the types users share.

use workpool::{BuildError, Executor, Parallel, TaskError, TaskHandle, ThreadPool};

fn send_sync<T: Send + Sync>() {}
fn clone<T: Clone>() {}
fn error<T: std::error::Error + Send + Sync + 'static>() {}

#[test]
fn shared_types_are_send_and_sync() {
    send_sync::<Executor>();
    send_sync::<ThreadPool>();
    send_sync::<TaskHandle<Vec<u8>>>();
    send_sync::<Parallel>();
    clone::<Executor>();
    clone::<Parallel>();
    error::<TaskError>();
    error::<BuildError>();
}
