//! `#[workpool::task]` at run time: the generated types run on both backends, through
//! `submit`, `map` and `Parallel`, and the functions stay callable as they were written. (What
//! it refuses at compile time is in `macros/tests/task_attr_ui.rs`.)

use serde::{Deserialize, Serialize};
use workpool::{Backend, Executor, Parallel, Task};

workpool::test_support!();

/// Adds two numbers.
#[workpool::task]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[workpool::task]
fn resize_image(mut pixels: Vec<u8>, width: u32, label: String) -> (usize, u32, String) {
    pixels.truncate(width as usize);
    (pixels.len(), width, label.to_uppercase())
}

/// No parameters: a unit struct, `Pid` (the worker's process id).
#[workpool::task]
fn pid() -> u32 {
    std::process::id()
}

/// No result: `Output = ()`.
#[workpool::task]
fn check_positive(x: i64) {
    assert!(x > 0, "{x} is not positive");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// A parameter type of the user's own.
pub struct Point {
    x: i32,
    y: i32,
}

/// A type name of one's own, more derives, serde attributes on a parameter, a raw identifier.
#[workpool::task(name = "Mirror", derive(Debug, Clone))]
pub fn mirror_point(point: Point, #[serde(default)] r#type: Option<String>) -> Point {
    let _ = r#type;
    Point { x: -point.x, y: -point.y }
}

mod nested {
    /// Visible from the parent module: the struct and its fields get the function's `pub(super)`.
    #[workpool::task]
    pub(super) fn double(x: u64) -> u64 {
        x * 2
    }
}

#[test]
fn the_functions_stay_callable() {
    assert_eq!(add(1, 2), 3);
    assert_eq!(resize_image(vec![1, 2, 3], 2, "a".into()), (2, 2, "A".into()));
    assert_eq!(nested::double(4), 8);
    check_positive(1);
    assert_eq!(mirror_point(Point { x: 1, y: 2 }, None), Point { x: -1, y: -2 });
}

#[test]
fn generated_types_run_in_worker_processes() {
    let ex = Executor::builder().workers(2).build().unwrap();
    assert_eq!(ex.submit(Add { a: 1, b: 2 }).join().unwrap(), 3);
    let resized = ex.submit(ResizeImage { pixels: vec![9; 10], width: 4, label: "thumb".into() }).join().unwrap();
    assert_eq!(resized, (4, 4, "THUMB".to_string()));
    let worker = ex.submit(Pid).join().unwrap();
    assert_ne!(worker, std::process::id(), "Pid ran in a worker");
    ex.submit(CheckPositive { x: 5 }).join().unwrap();
    let err = ex.submit(CheckPositive { x: -5 }).join().unwrap_err();
    assert_eq!(err.panic_message(), Some("-5 is not positive"));
    let mirrored = ex.submit(Mirror { point: Point { x: 3, y: 4 }, r#type: Some("t".into()) }).join().unwrap();
    assert_eq!(mirrored, Point { x: -3, y: -4 });
    assert_eq!(ex.submit(nested::Double { x: 21 }).join().unwrap(), 42);
    let sums: Vec<u64> = ex.map((0..100).map(|a| Add { a, b: 1 })).map(Result::unwrap).collect();
    assert_eq!(sums, (1..=100).collect::<Vec<_>>());
}

#[test]
fn generated_types_run_in_parallel_on_both_backends() {
    for backend in [Backend::Processes, Backend::Threads] {
        let parallel = Parallel::new().n_jobs(2).backend(backend);
        let sums = parallel.run((0..1000).map(|a| Add { a, b: a })).unwrap();
        assert_eq!(sums, (0..1000).map(|a| 2 * a).collect::<Vec<_>>(), "{backend:?}");
        let pids = parallel.run((0..4).map(|_| Pid)).unwrap();
        assert_eq!(pids.iter().all(|&p| p == std::process::id()), backend == Backend::Threads, "{backend:?}");
    }
}

#[test]
fn the_generated_type_is_an_ordinary_task() {
    // `run` calls the function; the options' derives are there.
    assert_eq!(Add { a: 2, b: 3 }.run(), 5);
    let mirror = Mirror { point: Point { x: 1, y: 1 }, r#type: None };
    assert!(format!("{:?}", mirror.clone()).starts_with("Mirror"));
    fn output_of<T: Task>(_: &T) -> &'static str {
        std::any::type_name::<T::Output>()
    }
    assert_eq!(output_of(&CheckPositive { x: 1 }), "()");
}
