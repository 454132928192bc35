//! A binary whose workers never call `workpool::init()` (this test binary has no
//! `test_support!()`): the worker that starts is just the test binary again. It must not start
//! workers of its own (no fork bomb), and the parent must fail with advice, fast after the first
//! time.

mod common;

use common::Square;
use std::time::{Duration, Instant};
use workpool::Executor;

#[test]
fn without_init_tasks_fail_with_advice_and_nothing_forks_further() {
    let built = Executor::builder().workers(1).handshake_timeout(Duration::from_secs(5)).build();
    let ex = match built {
        Err(e) => {
            // We are the re-executed "worker": the marker is set and init() was never called.
            // Building an executor here must be refused, or every worker would start more.
            assert!(e.to_string().contains("workpool::init()"), "{e}");
            return;
        }
        Ok(ex) => ex,
    };
    let err = ex.submit(Square(3)).join().unwrap_err();
    assert!(err.is_spawn(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("workpool::init()"), "the error must say what to do: {text}");
    assert!(text.contains("test_support"), "and how to do it in tests: {text}");
    let start = Instant::now();
    let again = ex.submit(Square(4)).join().unwrap_err();
    assert!(again.is_spawn());
    assert!(start.elapsed() < Duration::from_millis(200), "a set-up error must fail fast the second time");
}
