//! A program that never calls `workpool::init()` (this test binary has no `test_support!()`):
//! its worker processes could not serve. Building an executor must fail at once, with advice,
//! before any process is started: the program's `main` (here, this test suite) runs once.

mod common;

use std::time::{Duration, Instant};
use workpool::{Backend, Executor, Parallel};

fn children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)) == Some(me.as_str())
        })
        .count()
}

#[test]
fn without_init_building_fails_with_advice_and_no_process_starts() {
    let before = children();
    let start = Instant::now();
    let err = Executor::builder().workers(1).build().unwrap_err().to_string();
    assert!(err.contains("workpool::init()"), "the error must say what to do: {err}");
    assert!(err.contains("test_support"), "and how to do it in tests: {err}");
    let again = Executor::builder().workers(2).reusable().unwrap_err().to_string();
    assert_eq!(err, again);
    assert!(start.elapsed() < Duration::from_millis(200), "nothing was started: {:?}", start.elapsed());
    assert_eq!(children(), before, "no process may be started for an executor that cannot work");
    // Parallel on processes reports the same, as the error of its run.
    let run = Parallel::new().n_jobs(2).backend(Backend::Processes).run((0..4).map(common::Square));
    let err = run.unwrap_err();
    assert!(err.is_spawn() && err.to_string().contains("workpool::init()"), "{err}");
    assert_eq!(children(), before);
}
