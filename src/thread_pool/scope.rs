//! `ThreadPool::scope`: spawn closures that borrow from the caller's stack.
//!
//! The scope keeps a [`CountLatch`]: one count for the body, one per spawned closure. The body
//! runs on a pool thread; when it returns, that thread drops the body's count and keeps running
//! jobs (its own spawns first, LIFO) until the count reaches zero. Panics are caught per job;
//! the first one is kept and resumed on the caller once everything finished.

use crate::thread_pool::job::HeapJob;
use crate::thread_pool::latch::CountLatch;
use crate::thread_pool::registry::{PoolThread, Registry};
use crate::unwind;
use parking_lot::Mutex;
use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// A scope for spawning closures that may borrow anything that outlives it; see
/// [`ThreadPool::scope`](crate::ThreadPool::scope).
pub struct Scope<'scope, 'env: 'scope> {
    registry: Arc<Registry>,
    latch: CountLatch,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    // Invariance over both lifetimes, exactly as std::thread::Scope.
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope").finish_non_exhaustive()
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Spawns `f` on the pool; the enclosing `scope` call returns only after it has run.
    ///
    /// A panic in `f` is caught and resumed from `scope` once every spawned closure finished.
    pub fn spawn<F>(&'scope self, f: F)
    where
        F: FnOnce() + Send + 'scope,
    {
        self.latch.increment();
        let job = HeapJob::new(move || {
            if let Err(payload) = unwind::halt_unwinding(f) {
                self.record_panic(payload);
            }
            // SAFETY: last touch of the scope from this job; the owner keeps it alive until
            // the count it waits on reaches zero.
            unsafe { CountLatch::decrement(&self.latch) };
        });
        // SAFETY: `f` borrows only for 'scope, and `run` does not return before the latch
        // counted this job out. The scheduler runs each job once.
        self.registry.push(unsafe { job.into_job_ref() });
    }

    fn record_panic(&self, payload: Box<dyn Any + Send>) {
        let mut slot = self.panic.lock();
        if slot.is_none() {
            *slot = Some(payload);
        }
    }
}

/// Runs a scope body on `thread` and waits for everything it spawned.
pub(super) fn run<'env, F, R>(thread: &PoolThread, f: F) -> R
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    let scope = Scope {
        registry: thread.registry().clone(),
        latch: CountLatch::new(thread),
        panic: Mutex::new(None),
        scope: PhantomData,
        env: PhantomData,
    };
    let result = unwind::halt_unwinding(|| f(&scope));
    // SAFETY: `scope` lives in this frame until after wait_until below.
    unsafe { CountLatch::decrement(&scope.latch) };
    thread.wait_until(&scope.latch);
    if let Some(payload) = scope.panic.lock().take() {
        unwind::resume_unwinding(payload);
    }
    match result {
        Ok(value) => value,
        Err(payload) => unwind::resume_unwinding(payload),
    }
}
