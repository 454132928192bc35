//! Type-erased jobs: what the scheduler moves between thread-pool threads.
//!
//! A [`JobRef`] is a data pointer plus the function that knows its type. Three kinds exist:
//! [`StackJob`] lives in the frame of a thread that blocks until it has run (`join`, calls from
//! outside the pool or from another pool, the parts of a broadcast); [`HeapJob`] is boxed and
//! frees itself when run (`spawn`, scope spawns); a [`JobFifo`] token stands for "the oldest job
//! of this FIFO queue" (`spawn_fifo`, `scope_fifo`).

use crate::thread_pool::latch::Latch;
use crate::unwind;
use crossbeam_deque::{Injector, Steal};
use std::any::Any;
use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

/// A pointer to a job and the function that runs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JobRef {
    pointer: NonNull<()>,
    execute: unsafe fn(NonNull<()>),
}

// SAFETY: a JobRef is only created for jobs whose closure and result are `Send`, and each JobRef
// is executed at most once, by whichever thread pops it.
unsafe impl Send for JobRef {}

impl PartialEq for JobRef {
    /// Two references are the same job when they point to the same job data.
    fn eq(&self, other: &Self) -> bool {
        self.pointer == other.pointer
    }
}

impl JobRef {
    /// Runs the job.
    ///
    /// # Safety
    /// The job must still be alive and must not have run before.
    #[inline]
    pub(crate) unsafe fn execute(self) {
        // SAFETY: forwarded from the caller.
        unsafe { (self.execute)(self.pointer) }
    }
}

/// The outcome of a job run on another thread.
pub(crate) enum JobResult<R> {
    None,
    Ok(R),
    Panic(Box<dyn Any + Send>),
}

impl<R> JobResult<R> {
    /// The value, or the panic resumed on this thread.
    pub(crate) fn into_return_value(self) -> R {
        match self {
            JobResult::Ok(value) => value,
            JobResult::Panic(payload) => unwind::resume_unwinding(payload),
            JobResult::None => unreachable!("a job's result was read before the job ran"),
        }
    }
}

/// A job in the stack frame of a thread that waits for it (through its latch) before returning.
///
/// Its closure is taken exactly once: by [`StackJob::run_inline`] (the owner popped it back) or
/// by the one run of its [`JobRef`]. A stack job that never runs leaks its closure; every owner
/// waits for its job, so that does not happen.
pub(crate) struct StackJob<L, F, R> {
    pub(crate) latch: L,
    func: UnsafeCell<ManuallyDrop<F>>,
    result: UnsafeCell<JobResult<R>>,
}

impl<L: Latch, F: FnOnce() -> R + Send, R: Send> StackJob<L, F, R> {
    #[inline]
    pub(crate) fn new(func: F, latch: L) -> Self {
        StackJob { latch, func: UnsafeCell::new(ManuallyDrop::new(func)), result: UnsafeCell::new(JobResult::None) }
    }

    /// A reference for the scheduler.
    ///
    /// # Safety
    /// The job must outlive every use of the returned reference: its owner must wait on `latch`
    /// (or take the job back with [`StackJob::run_inline`]) before the frame is left.
    #[inline]
    pub(crate) unsafe fn as_job_ref(&self) -> JobRef {
        JobRef { pointer: NonNull::from(self).cast(), execute: Self::execute }
    }

    /// # Safety
    /// `this` points to a live `StackJob` of this type that has not run.
    unsafe fn execute(this: NonNull<()>) {
        // SAFETY: the caller guarantees the pointer and the single run. The owner does not touch
        // `func` or `result` until the latch is set, which is the last thing done here.
        unsafe {
            let this = this.cast::<Self>().as_ref();
            let func = ManuallyDrop::take(&mut *this.func.get());
            *this.result.get() = match unwind::halt_unwinding(func) {
                Ok(value) => JobResult::Ok(value),
                Err(payload) => JobResult::Panic(payload),
            };
            Latch::set(&this.latch);
        }
    }

    /// Runs the job on the owner's thread, when the owner popped it back before anyone stole it.
    ///
    /// # Safety
    /// The job's reference was popped back by its owner: it has not run and never will.
    #[inline]
    pub(crate) unsafe fn run_inline(&self) -> R {
        // SAFETY: forwarded; nobody else can reach the closure any more.
        unsafe { ManuallyDrop::take(&mut *self.func.get())() }
    }

    /// The result, after the latch was set.
    pub(crate) fn into_result(self) -> R {
        self.result.into_inner().into_return_value()
    }
}

/// A boxed job that frees itself after running.
pub(crate) struct HeapJob<F> {
    func: F,
}

impl<F: FnOnce() + Send> HeapJob<F> {
    pub(crate) fn new(func: F) -> Box<Self> {
        Box::new(HeapJob { func })
    }

    /// Leaks the box into a job reference; running the reference frees it.
    ///
    /// # Safety
    /// Everything `F` borrows must outlive the job's run (guaranteed by `'static` for `spawn` and
    /// by the scope's latch for scope spawns). The reference must be executed exactly once.
    pub(crate) unsafe fn into_job_ref(self: Box<Self>) -> JobRef {
        let pointer = NonNull::new(Box::into_raw(self)).expect("Box is never null").cast();
        JobRef { pointer, execute: Self::execute }
    }

    /// # Safety
    /// `this` came from `into_job_ref` and runs once.
    unsafe fn execute(this: NonNull<()>) {
        // SAFETY: the pointer came from Box::into_raw of this very type, and this is its only run.
        let this = unsafe { Box::from_raw(this.cast::<Self>().as_ptr()) };
        let HeapJob { func } = *this;
        func();
    }
}

/// A FIFO queue of jobs behind LIFO deques, as rayon-core's `JobFifo`.
///
/// `push` queues the job here and returns a *token*, a [`JobRef`] that the caller pushes on its
/// deque like any job. Whoever runs a token (the owner popping it, or a thief) takes the
/// **oldest** job of this queue and runs that. Tokens and jobs are equally many, so every token
/// finds one; a thread that spawns several jobs this way runs them oldest first, while each is
/// still stealable like any other.
///
/// One `JobFifo` is pushed to by one thread only (each pool thread has its own, and a FIFO scope
/// keeps one per pool thread), so its jobs come out in that thread's spawn order.
pub(crate) struct JobFifo {
    jobs: Injector<JobRef>,
}

impl JobFifo {
    pub(crate) fn new() -> Self {
        JobFifo { jobs: Injector::new() }
    }

    /// Queues `job` and returns the token to push in its place.
    ///
    /// # Safety
    /// The `JobFifo` must outlive the token's run, and `job` must satisfy what running it needs
    /// (as for any [`JobRef`]).
    #[inline]
    pub(crate) unsafe fn push(&self, job: JobRef) -> JobRef {
        self.jobs.push(job);
        JobRef { pointer: NonNull::from(self).cast(), execute: Self::execute }
    }

    /// # Safety
    /// `this` points to a live `JobFifo` that holds at least one job for this token.
    unsafe fn execute(this: NonNull<()>) {
        // SAFETY: the caller guarantees the pointer.
        let this = unsafe { this.cast::<Self>().as_ref() };
        loop {
            match this.jobs.steal() {
                // SAFETY: the job was live and unrun when queued, and only this token runs it.
                Steal::Success(job) => return unsafe { job.execute() },
                Steal::Empty => unreachable!("a FIFO token found its queue empty"),
                Steal::Retry => {}
            }
        }
    }
}
