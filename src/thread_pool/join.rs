//! `ThreadPool::join`: fork-join as rayon-core does it.
//!
//! `join` pushes `b` on the calling pool thread's own (LIFO) deque, runs `a` inline, and then
//! either pops `b` back (nobody stole it: run it right here) or, if it was stolen, keeps running
//! other jobs until the thief sets `b`'s latch. A panic in `a` still waits for `b`, because `b`
//! may borrow from this frame; either panic is resumed after both finished.

use super::job::StackJob;
use super::latch::{Probe, SpinLatch};
use super::registry::PoolThread;
use crate::unwind;

#[inline]
pub(super) fn join_on<A, B, RA, RB>(thread: &PoolThread, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let job_b = StackJob::new(b, SpinLatch::new(thread));
    // SAFETY: we do not leave this frame before job_b ran (inline, or until its latch is set).
    let job_b_ref = unsafe { job_b.as_job_ref() };
    thread.queue.push(job_b_ref);

    let result_a = match unwind::halt_unwinding(a) {
        Ok(value) => value,
        Err(payload) => {
            // `b` may borrow from the caller's frame: it must finish before we unwind.
            thread.wait_until(&job_b.latch);
            unwind::resume_unwinding(payload)
        }
    };

    while !job_b.latch.probe() {
        match thread.queue.pop() {
            Some(job) if job == job_b_ref => {
                // Nobody stole it: run it right here, panics propagate directly.
                // SAFETY: popped back by its owner, so it never ran and nobody else has it.
                let result_b = unsafe { job_b.run_inline() };
                return (result_a, result_b);
            }
            // SAFETY: jobs in the scheduler are live until run.
            Some(job) => unsafe { thread.execute(job) },
            None => {
                thread.wait_until(&job_b.latch);
                break;
            }
        }
    }
    (result_a, job_b.into_result())
}
