//! A Ctrl-C seen by the three views: a log event, a global event on the timeline, and the
//! killed worker counted as interrupted. A file of its own: the SIGINT it sends to its own
//! process would interrupt any other test's wait.

mod common;

use common::*;
use parking_lot::Mutex;
use serde_json::Value;
use std::time::Duration;
use workpool::Executor;

workpool::test_support!();

static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        LOGGED.lock().push(record.args().to_string());
    }
    fn flush(&self) {}
}

#[test]
fn ctrl_c_is_logged_recorded_and_counted() {
    log::set_logger(&Capture).expect("the only logger");
    log::set_max_level(log::LevelFilter::Info);
    workpool::handle_ctrl_c().expect("no other Ctrl-C handler");
    let ex = Executor::builder().workers(1).build().unwrap();
    let recording = ex.record();
    let handle = ex.submit(Nap(20_000));
    let ex2 = ex.clone();
    let presser = std::thread::spawn(move || {
        assert!(
            wait_until(Duration::from_secs(10), || ex2.workers()[0].in_flight > 0 && ex2.workers()[0].pid.is_some())
        );
        std::thread::sleep(Duration::from_millis(300)); // the nap has begun, and the join waits
                                                        // SAFETY: a signal to our own process, whose SIGINT handler handle_ctrl_c installed.
        unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
    });
    let err = handle.join().unwrap_err();
    presser.join().unwrap();
    assert!(err.is_interrupted(), "{err:?}");
    assert!(wait_until(Duration::from_secs(10), || ex.stats().total.deaths.interrupted == 1), "{:?}", ex.stats());
    let logged = LOGGED.lock().clone();
    assert!(logged.iter().any(|m| m.starts_with("Ctrl-C (interrupt 1)")), "{logged:?}");
    assert!(logged.iter().any(|m| m.contains("died while running task") && m.ends_with("(Ctrl-C)")), "{logged:?}");
    let trace: Value = serde_json::from_str(&recording.finish().to_chrome_json()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    assert!(events.iter().any(|e| e["name"] == "Ctrl-C" && e["s"] == "g"), "{trace}");
    assert!(events.iter().any(|e| e["name"] == "death" && e["args"]["cause"] == "interrupted"), "{trace}");
    // The executor stays usable.
    assert_eq!(ex.submit(Square(6)).join().unwrap(), 36);
}
