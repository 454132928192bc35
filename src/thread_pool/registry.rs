//! A pool's shared state ([`Registry`]) and its threads ([`PoolThread`]): where jobs are pushed,
//! how a call reaches a pool thread (from outside every pool, or from another pool), and the loop
//! each pool thread runs.
//!
//! # Calls from other threads
//!
//! [`Registry::in_worker`] runs a closure on a thread of this pool, whoever calls:
//!
//! * **a thread of this pool**: the closure runs right there;
//! * **a thread outside every pool**: the closure is injected as a job and the caller blocks on
//!   a [`LockLatch`] until a pool thread ran it;
//! * **a thread of another pool A**: the closure is injected into this pool (B), and the A-thread
//!   waits on a [`SpinLatch::cross`] the way it waits in `join`: it keeps running A's jobs, and
//!   sleeps through A's protocol when there are none, until B's thread sets the latch and wakes
//!   it. So a thread of A never blocks A while B works for it: `A.install(|| B.install(||
//!   A.install(..)))` on one-thread pools completes (the A-thread, waiting for B, runs the inner
//!   A job), where blocking would deadlock. rayon-core's `in_worker_cross` does the same.

use super::job::{JobFifo, JobRef, StackJob};
use super::latch::{LockLatch, Probe, SpinLatch};
use crate::scheduler::{Queue, Shared, Wait};
use crate::unwind;
use std::any::Any;
use std::cell::Cell;
use std::sync::Arc;

pub(crate) type PanicHandler = dyn Fn(Box<dyn Any + Send>) + Send + Sync;
pub(crate) type ThreadHandler = dyn Fn(usize) + Send + Sync;

/// The state shared by a pool's threads (and by the jobs that need to reach them). Every field
/// is set at build and read-only afterwards, except the queues inside `shared` and `fifos`.
pub(crate) struct Registry {
    /// The scheduler: jobs injected by any thread, each pool thread's deque and mailbox.
    pub(crate) shared: Arc<Shared<JobRef>>,
    /// Read by whichever pool thread caught a `spawn`ed job's panic (or a handler's).
    pub(crate) panic_handler: Option<Box<PanicHandler>>,
    /// Run by each pool thread, with its index, before its first job and after its last.
    pub(crate) start_handler: Option<Box<ThreadHandler>>,
    pub(crate) exit_handler: Option<Box<ThreadHandler>>,
    /// `ThreadPool::spawn_fifo`'s queues, one per pool thread (pushed by that thread only). Here
    /// rather than in the `PoolThread` so that a token stolen by another thread can still reach
    /// its queue after the spawning thread exited.
    pub(crate) fifos: Box<[JobFifo]>,
}

impl Registry {
    #[inline]
    pub(crate) fn wake_thread(&self, index: usize) {
        self.shared.sleep.wake_thread(index);
    }

    #[inline]
    pub(crate) fn num_threads(&self) -> usize {
        self.shared.threads()
    }

    /// Queues a job of a scope: on the current thread's own deque when called from one of this
    /// pool's threads (the scope waits for it through the scheduler), otherwise on the injector.
    #[inline]
    pub(crate) fn push(self: &Arc<Self>, job: JobRef) {
        match PoolThread::current_in(self) {
            Some(thread) => thread.queue.push(job),
            None => self.shared.inject(job),
        }
    }

    /// Queues a job nobody waits for through the scheduler (`ThreadPool::spawn`): like
    /// [`Registry::push`], but announced so that no sleeping thread can miss it, since the
    /// spawning thread may go on to block outside the pool (on a channel the job sends to).
    #[inline]
    pub(crate) fn push_detached(self: &Arc<Self>, job: JobRef) {
        match PoolThread::current_in(self) {
            Some(thread) => thread.queue.push_detached(job),
            None => self.shared.inject(job),
        }
    }

    /// Queues a job nobody waits for (`ThreadPool::spawn_fifo`) to run in FIFO order relative to
    /// the other FIFO jobs the current thread queued: through the current thread's [`JobFifo`]
    /// when it is one of this pool's threads (announced as by [`Registry::push_detached`]),
    /// otherwise on the injector (FIFO already).
    ///
    /// # Safety
    /// As for any job queued: `job` must stay valid until it ran.
    pub(crate) unsafe fn push_fifo(self: &Arc<Self>, job: JobRef) {
        match PoolThread::current_in(self) {
            // SAFETY: the JobFifo lives in the registry, which outlives every pool thread that
            // could run the token.
            Some(thread) => thread.queue.push_detached(unsafe { self.fifos[thread.index()].push(job) }),
            None => self.shared.inject(job),
        }
    }

    /// Runs `op` on a thread of this pool and returns its result (see the module docs for the
    /// three kinds of callers). A panic in `op` is resumed on the caller.
    #[inline]
    pub(crate) fn in_worker<OP, R>(self: &Arc<Self>, op: OP) -> R
    where
        OP: FnOnce(&PoolThread) -> R + Send,
        R: Send,
    {
        match PoolThread::current() {
            Some(thread) if Arc::ptr_eq(&thread.registry, self) => op(thread),
            Some(thread) => self.in_worker_cross(thread, op),
            None => self.in_worker_cold(op),
        }
    }

    /// From a thread outside every pool: inject, block.
    #[cold]
    fn in_worker_cold<OP, R>(self: &Arc<Self>, op: OP) -> R
    where
        OP: FnOnce(&PoolThread) -> R + Send,
        R: Send,
    {
        let job = StackJob::new(Self::on_injected(op), LockLatch::new());
        // SAFETY: we block on the latch below before `job` leaves this frame.
        self.shared.inject(unsafe { job.as_job_ref() });
        job.latch.wait();
        job.into_result()
    }

    /// From a thread of another pool: inject here, keep that thread's own pool going meanwhile.
    #[cold]
    fn in_worker_cross<OP, R>(self: &Arc<Self>, current: &PoolThread, op: OP) -> R
    where
        OP: FnOnce(&PoolThread) -> R + Send,
        R: Send,
    {
        debug_assert!(!Arc::ptr_eq(&current.registry, self));
        let job = StackJob::new(Self::on_injected(op), SpinLatch::cross(current));
        // SAFETY: `wait_until` returns only once the latch is set, before `job` leaves this frame.
        self.shared.inject(unsafe { job.as_job_ref() });
        current.wait_until(&job.latch);
        job.into_result()
    }

    fn on_injected<OP, R>(op: OP) -> impl FnOnce() -> R + Send
    where
        OP: FnOnce(&PoolThread) -> R + Send,
    {
        move || op(PoolThread::current().expect("injected jobs run on pool threads"))
    }

    /// Reports a caught panic: to the builder's panic handler, else on stderr.
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

    /// Runs a start or exit handler; a panic in it goes to [`Registry::handle_panic`].
    fn run_handler(&self, handler: &Option<Box<ThreadHandler>>, index: usize) {
        if let Some(handler) = handler {
            if let Err(payload) = unwind::halt_unwinding(|| handler(index)) {
                self.handle_panic(payload);
            }
        }
    }
}

/// A pool thread: its scheduler queue and the registry it belongs to. Lives on the pool
/// thread's own stack for as long as the thread runs; other threads never touch it.
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
    #[inline]
    pub(crate) fn wait_until<L: Probe>(&self, latch: &L) {
        if !latch.probe() {
            self.wait_until_cold(latch);
        }
    }

    #[cold]
    fn wait_until_cold<L: Probe>(&self, latch: &L) {
        while !latch.probe() {
            match self.queue.wait(&|| latch.probe(), None, false) {
                // SAFETY: jobs in the scheduler are live until run, and each is popped once.
                Wait::Job(job) => unsafe { self.execute(job) },
                Wait::Ready => return,
                Wait::TimedOut | Wait::Terminated => {}
            }
        }
    }

    /// Runs one job from anywhere in the pool, if there is one; true when it did.
    pub(crate) fn run_one(&self) -> bool {
        match self.queue.find_work() {
            Some(job) => {
                // SAFETY: as in `wait_until`.
                unsafe { self.execute(job) };
                true
            }
            None => false,
        }
    }

    pub(crate) fn main_loop(queue: Queue<JobRef>, registry: Arc<Registry>) {
        let thread = PoolThread { queue, registry };
        POOL_THREAD.with(|cell| cell.set(&thread));
        let registry = &thread.registry;
        registry.run_handler(&registry.start_handler, thread.index());
        while let Wait::Job(job) = thread.queue.wait(&|| false, None, true) {
            // SAFETY: as in `wait_until`.
            unsafe { thread.execute(job) };
        }
        registry.run_handler(&registry.exit_handler, thread.index());
        POOL_THREAD.with(|cell| cell.set(std::ptr::null()));
    }
}
