//! `Executor::map`: ordered, streaming, bounded.

use super::handle::TaskHandle;
use super::Executor;
use crate::error::TaskError;
use crate::task::Task;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::fmt;
use std::iter::Fuse;

/// Tasks in flight per worker for `map` (submitted, not yet yielded).
const IN_FLIGHT_PER_WORKER: usize = 128;

/// The iterator returned by [`Executor::map`]: results in input order.
///
/// ```no_run
/// #[workpool::task]
/// fn cube(n: u64) -> u64 {
///     n * n * n
/// }
///
/// fn main() {
///     workpool::init();
///     let ex = workpool::Executor::builder().build().unwrap();
///     // Lazy and bounded: a million inputs, a few hundred tasks in flight at a time.
///     let mut sum = 0u64;
///     for result in ex.map((0..1_000_000u64).map(|n| Cube { n: n % 1000 })) {
///         sum += result.unwrap();
///     }
///     assert!(sum > 0);
/// }
/// ```
#[must_use = "iterators are lazy: nothing is submitted until the map is iterated"]
pub struct Map<O, I> {
    executor: Executor,
    input: Fuse<I>,
    window: VecDeque<TaskHandle<O>>,
    limit: usize,
    ended: bool,
    /// While a map is being consumed, a Ctrl-C interrupts it (even between two `next` calls)
    /// instead of exiting the program.
    waiting: Option<crate::interrupt::Waiting>,
}

impl<O, I> fmt::Debug for Map<O, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map").field("in_flight", &self.window.len()).field("limit", &self.limit).finish()
    }
}

impl<O, I: Iterator> Map<O, I> {
    pub(crate) fn new(executor: Executor, input: I) -> Self {
        let limit = executor.num_workers() * IN_FLIGHT_PER_WORKER;
        Map { executor, input: input.fuse(), window: VecDeque::new(), limit, ended: false, waiting: None }
    }
}

impl<T, I> Iterator for Map<T::Output, I>
where
    T: Task,
    I: Iterator<Item = T>,
    T::Output: DeserializeOwned,
{
    type Item = Result<T::Output, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        self.waiting.get_or_insert_with(crate::interrupt::Waiting::enter);
        while self.window.len() < self.limit {
            match self.input.next() {
                Some(task) => self.window.push_back(self.executor.submit(task)),
                None => break,
            }
        }
        let Some(next) = self.window.pop_front() else {
            self.ended = true;
            self.waiting = None;
            return None;
        };
        let result = next.join();
        if result.as_ref().is_err_and(TaskError::is_interrupted) {
            self.cancel_rest();
        }
        Some(result)
    }
}

impl<O, I> Map<O, I> {
    fn cancel_rest(&mut self) {
        self.ended = true;
        self.waiting = None;
        for handle in self.window.drain(..) {
            handle.cancel_queued();
        }
    }
}

impl<O, I> Drop for Map<O, I> {
    fn drop(&mut self) {
        self.cancel_rest();
    }
}
