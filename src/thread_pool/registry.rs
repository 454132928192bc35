//! A pool's shared state ([`Registry`]) and its threads ([`PoolThread`]): where jobs are pushed,
//! how a call from outside reaches a pool thread, and the loop each pool thread runs.

use super::job::{JobRef, StackJob};
use super::latch::{LockLatch, Probe};
use crate::scheduler::{Queue, Shared, Wait};
use crate::unwind;
use std::any::Any;
use std::cell::Cell;
use std::sync::Arc;

pub(crate) type PanicHandler = dyn Fn(Box<dyn Any + Send>) + Send + Sync;

/// The state shared by a pool's threads (and by the jobs that need to reach them).
pub(crate) struct Registry {
    /// The scheduler: jobs injected by any thread, and each pool thread's deque.
    pub(crate) shared: Arc<Shared<JobRef>>,
    /// Set at build, read by whichever pool thread caught a `spawn`ed job's panic.
    pub(crate) panic_handler: Option<Box<PanicHandler>>,
}

impl Registry {
    #[inline]
    pub(crate) fn wake_thread(&self, index: usize) {
        self.shared.sleep.wake_thread(index);
    }

    /// Queues a job: on the current thread's own deque when called from one of this pool's
    /// threads, otherwise on the injector.
    #[inline]
    pub(crate) fn push(self: &Arc<Self>, job: JobRef) {
        match PoolThread::current_in(self) {
            Some(thread) => thread.queue.push(job),
            None => self.shared.inject(job),
        }
    }

    /// Runs `op` on a thread of this pool: directly when already on one, otherwise by injecting
    /// it and blocking this thread until it finished.
    #[inline]
    pub(crate) fn on_pool_thread<OP, R>(self: &Arc<Self>, op: OP) -> R
    where
        OP: FnOnce(&PoolThread) -> R + Send,
        R: Send,
    {
        if let Some(thread) = PoolThread::current_in(self) {
            return op(thread);
        }
        let job = StackJob::new(
            || {
                let thread = PoolThread::current().expect("injected jobs run on pool threads");
                op(thread)
            },
            LockLatch::new(),
        );
        // SAFETY: we block on the latch below before `job` leaves this frame.
        self.shared.inject(unsafe { job.as_job_ref() });
        job.latch.wait();
        job.into_result()
    }

    pub(crate) fn handle_panic(&self, payload: Box<dyn Any + Send>) {
        match &self.panic_handler {
            Some(handler) => {
                // A panicking handler must not take the thread down with it.
                if unwind::halt_unwinding(|| handler(payload)).is_err() {
                    eprintln!("workpool: the thread pool's panic handler panicked");
                }
            }
            None => eprintln!(
                "workpool: a job spawned on the thread pool panicked: {} (the pool thread lives on)",
                unwind::payload_message(&*payload)
            ),
        }
    }
}

/// A pool thread: its scheduler queue and the registry it belongs to.
pub(crate) struct PoolThread {
    pub(crate) queue: Queue<JobRef>,
    registry: Arc<Registry>,
}

thread_local! {
    static POOL_THREAD: Cell<*const PoolThread> = const { Cell::new(std::ptr::null()) };
}

impl PoolThread {
    /// The pool thread running on this thread, if any.
    #[inline]
    pub(crate) fn current() -> Option<&'static PoolThread> {
        let ptr = POOL_THREAD.with(Cell::get);
        // SAFETY: the pointer is set by `main_loop` for exactly the lifetime of the PoolThread
        // on that thread's stack, and cleared before it is dropped; only this thread reads it.
        unsafe { ptr.as_ref() }
    }

    /// The current thread if it belongs to `registry`.
    #[inline]
    pub(crate) fn current_in(registry: &Arc<Registry>) -> Option<&'static PoolThread> {
        Self::current().filter(|w| Arc::ptr_eq(&w.registry, registry))
    }

    #[inline]
    pub(crate) fn index(&self) -> usize {
        self.queue.index()
    }

    #[inline]
    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// # Safety
    /// `job` is live and has not run.
    #[inline]
    pub(crate) unsafe fn execute(&self, job: JobRef) {
        // SAFETY: forwarded. Jobs catch their own panics; if one still escaped, the thread's
        // state could be inconsistent, so abort rather than unwind through the loop.
        let guard = unwind::AbortIfPanic;
        unsafe { job.execute() };
        std::mem::forget(guard);
    }

    /// Runs other jobs until `latch` is set, sleeping when there are none.
    pub(crate) fn wait_until<L: Probe>(&self, latch: &L) {
        while !latch.probe() {
            match self.queue.wait(&|| latch.probe(), None, false) {
                // SAFETY: jobs in the scheduler are live until run, and each is popped once.
                Wait::Job(job) => unsafe { self.execute(job) },
                Wait::Ready => return,
                Wait::TimedOut | Wait::Terminated => {}
            }
        }
    }

    pub(crate) fn main_loop(queue: Queue<JobRef>, registry: Arc<Registry>) {
        let thread = PoolThread { queue, registry };
        POOL_THREAD.with(|cell| cell.set(&thread));
        while let Wait::Job(job) = thread.queue.wait(&|| false, None, true) {
            // SAFETY: as in `wait_until`.
            unsafe { thread.execute(job) };
        }
        POOL_THREAD.with(|cell| cell.set(std::ptr::null()));
    }
}
