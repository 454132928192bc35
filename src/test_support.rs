//! Worker processes for test binaries, which have no `main` of their own: the
//! [`test_support!`](crate::test_support) macro and what the executor does with it.
//!
//! libtest generates a test binary's `main`, so `workpool::init()` cannot be its first
//! statement. The macro defines one test that only calls `init()`, and registers where it
//! lives; the executor then re-runs the test binary with arguments that select exactly that
//! test, which turns the re-run binary into a fork server or a worker. The test is ignored in
//! ordinary runs (`cargo test` lists it as ignored, with a reason that says what it is), and
//! the harness's own output in those processes goes to `/dev/null`.

/// Lets test binaries (which have no `main` of their own) start workers: use it once, at the
/// top level of each integration-test file or in the crate's unit tests, and the executor will
/// re-run the test binary with only the entry test this macro defines.
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Square(u64);
/// # impl workpool::Task for Square { type Output = u64; fn run(self) -> u64 { self.0 * self.0 } }
/// # workpool::register!(Square);
/// workpool::test_support!();
///
/// #[test]
/// fn squares_in_workers() {
///     let ex = workpool::Executor::builder().workers(2).build().unwrap();
///     assert_eq!(ex.submit(Square(3)).join().unwrap(), 9);
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! test_support {
    () => {
        #[test]
        #[ignore = "not a test: workpool's worker processes start here (workpool::test_support!)"]
        fn __workpool_worker_entry() {
            $crate::init();
        }
        $crate::__private::inventory::submit! {
            $crate::__private::TestEntry { module: module_path!() }
        }
    };
}

/// The test entry registered by `test_support!` (hidden; not for direct use).
#[doc(hidden)]
pub struct TestEntry {
    /// `module_path!()` where the macro was used.
    pub module: &'static str,
}

inventory::collect!(TestEntry);

/// Arguments that make a libtest binary run only the worker entry test.
pub(crate) fn harness_args() -> Vec<String> {
    let Some(entry) = inventory::iter::<TestEntry>.into_iter().next() else { return Vec::new() };
    let path = match entry.module.split_once("::") {
        Some((_crate, rest)) => format!("{rest}::__workpool_worker_entry"),
        None => "__workpool_worker_entry".to_string(),
    };
    vec![path, "--exact".into(), "--ignored".into(), "--nocapture".into(), "--test-threads=1".into(), "-q".into()]
}

/// True in a test binary that used `test_support!()`.
pub(crate) fn registered() -> bool {
    inventory::iter::<TestEntry>.into_iter().next().is_some()
}
