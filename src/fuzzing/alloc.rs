//! An allocator wrapper that records the largest single allocation a thread asks for, so the
//! frame harness can check that no input makes the wire code allocate beyond its bound.
//!
//! The `frames` fuzz target and `tests/frame_allocations.rs` (built with `--cfg fuzzing`)
//! install it with `#[global_allocator]`; ordinary unit tests do not. Where it is not
//! installed, [`measure`] reports `None` and the harness skips the check.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// The system allocator, plus a per-thread record of the largest request.
#[derive(Debug, Default, Clone, Copy)]
pub struct TrackingAlloc;

static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    // `const` thread-locals without destructors: using them allocates nothing and is fine at
    // any point of a thread's life, which is what an allocator needs.
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
    let _ = TRACKING.try_with(|on| {
        if on.get() {
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(size)));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// bookkeeping touches only const thread-locals and an atomic, and never allocates.
unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns the largest single allocation it made on this thread, or `None` when
/// [`TrackingAlloc`] is not the global allocator.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Option<usize>) {
    // Make sure at least one allocation went through the wrapper if it is installed.
    drop(Box::new(0u8));
    let was = TRACKING.with(|on| on.replace(true));
    let before = PEAK.with(|peak| peak.replace(0));
    let result = f();
    let peak = PEAK.with(|peak| peak.replace(before.max(peak.get())));
    TRACKING.with(|on| on.set(was));
    (result, INSTALLED.load(Ordering::Relaxed).then_some(peak))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_allocator_installed_nothing_is_measured() {
        // Ordinary unit tests keep the system allocator; tests/frame_allocations.rs installs
        // this one and checks the measurements.
        let (sum, peak) = measure(|| vec![0u8; 1000].len() + 1);
        assert_eq!((sum, peak), (1001, None));
    }
}
