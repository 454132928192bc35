//! Panics as values: jobs never unwind through scheduler code.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

/// Runs `f`, catching a panic as a value.
pub(crate) fn halt_unwinding<F: FnOnce() -> R, R>(f: F) -> Result<R, Box<dyn Any + Send>> {
    panic::catch_unwind(AssertUnwindSafe(f))
}

/// Resumes a panic caught by [`halt_unwinding`] on this thread.
pub(crate) fn resume_unwinding(payload: Box<dyn Any + Send>) -> ! {
    panic::resume_unwind(payload)
}

/// The text of a panic payload (`&str` or `String`; anything else gets a placeholder).
pub(crate) fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any> (a panic payload that is not a string)".to_string()
    }
}

/// Aborts the process if dropped while unwinding: guards code that must not be interrupted by a
/// panic (scheduler invariants), as rayon-core's `AbortIfPanic` does.
pub(crate) struct AbortIfPanic;

impl Drop for AbortIfPanic {
    fn drop(&mut self) {
        eprintln!("workpool: a panic unwound through scheduler internals; aborting");
        std::process::abort();
    }
}
