//! Starting worker processes: a failed start never breaks an executor, the worker's socket is
//! always where it expects it, a program that forgot `init()` fails before any process starts,
//! test binaries stay quiet, and the odd ways to run a program work or say what is wrong.
//! Child programs are this test binary re-run in a mode chosen by an environment variable.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workpool::Executor;

workpool::test_support!();

const CHILD: &str = "WORKPOOL_START_CHILD";

/// Entry of the child programs; a no-op in a normal test run.
#[test]
fn child_program() {
    match std::env::var(CHILD).as_deref() {
        Ok("closed-stdio") => closed_stdio_program(),
        Ok("fd-race") => fd_race_program(),
        Ok("marker") => marker_program(),
        Ok("plain") => plain_program(),
        Ok("failed-start") => failed_start_program(),
        Ok("context") => context_program(),
        Ok("terminal") => terminal_program(),
        Ok("interrupt-start") => interrupt_start_program(),
        Ok("ctrl-z") => ctrl_z_program(),
        Ok("eat-fd3") => eat_fd3_program(),
        _ => {}
    }
}

fn child(mode: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["child_program", "--exact", "--nocapture", "--test-threads=1", "-q"]).env(CHILD, mode);
    command
}

fn run(mut command: Command) -> (bool, String, String) {
    let out = command.stdin(Stdio::null()).output().expect("child program");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Closes stdin, stdout and stderr (as services do), then uses workers: socketpair() then
/// returns the lowest numbers, and the worker must still find its socket.
fn closed_stdio_program() {
    let mut report = std::fs::File::create(std::env::var("REPORT").unwrap()).unwrap();
    unsafe {
        libc::close(0);
        libc::close(1);
        libc::close(2);
    }
    let ex = Executor::builder().workers(2).build().unwrap();
    let got: Vec<u64> = ex.map((0..50).map(Square)).map(Result::unwrap).collect();
    use std::io::Write;
    writeln!(report, "OK {}", got.iter().sum::<u64>()).unwrap();
    // The harness would now print its summary on whatever descriptor 1 has become.
    drop(ex);
    std::process::exit(0);
}

/// Builds executors over and over while other threads open and close files: a socketpair may
/// land on any number, 3 included.
fn fd_race_program() {
    let stop = Arc::new(AtomicBool::new(false));
    let churn: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let files: Vec<_> = (0..4).filter_map(|_| std::fs::File::open("/dev/null").ok()).collect();
                    drop(files);
                }
            })
        })
        .collect();
    let rounds: usize = std::env::var("ROUNDS").unwrap().parse().unwrap();
    let mut broken = 0;
    for i in 0..rounds {
        let ex = Executor::builder().workers(1).build().unwrap();
        if ex.submit(Square(i as u64)).join().ok() != Some((i * i) as u64) {
            broken += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in churn {
        t.join().unwrap();
    }
    println!("BROKEN {broken} OF {rounds}");
}

/// `WORKPOOL_WORKER` set by hand: `init()` says so and the program runs normally.
fn marker_program() {
    workpool::init();
    let ex = Executor::builder().workers(1).build().unwrap();
    println!("RESULT {}", ex.submit(Square(12)).join().unwrap());
}

/// Submits one task and prints its result (run directly, or through the dynamic loader).
fn plain_program() {
    let ex = Executor::builder().workers(1).build().unwrap();
    println!("RESULT {}", ex.submit(Square(11)).join().unwrap());
}

/// Changes its environment and working directory after its fork server started: workers must
/// see the program as it is when they start, not as it was.
fn context_program() {
    let ex = Executor::builder().workers(1).idle_timeout(Duration::from_millis(50)).build().unwrap();
    let probe = || ex.submit(Env(vec!["WORKPOOL_TEST_LATE".into()])).join().unwrap();
    println!("BEFORE {:?}", probe());
    std::env::set_var("WORKPOOL_TEST_LATE", "set after the server started");
    std::thread::sleep(Duration::from_millis(300)); // the idle worker exits; the next is new
    println!("AFTER {:?}", probe());
    let dir = std::env::temp_dir().canonicalize().unwrap();
    std::env::set_current_dir(&dir).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let cwd = ex.submit(Cwd).join().unwrap();
    println!("CWD {}", cwd == dir.display().to_string());
}

#[test]
fn workers_see_the_environment_and_directory_the_program_has_when_they_start() {
    let (ok, stdout, stderr) = run(child("context"));
    assert!(ok, "{stdout} {stderr}");
    assert!(stdout.contains("BEFORE [None]"), "{stdout}");
    assert!(stdout.contains("AFTER [Some(\"set after the server started\")]"), "{stdout}");
    assert!(stdout.contains("CWD true"), "{stdout}");
}

/// Runs on a terminal with `stty tostop`: a worker (a background process group there) prints.
fn terminal_program() {
    let ex = Executor::builder().workers(1).task_timeout(Duration::from_secs(5)).build().unwrap();
    match ex.submit(Noisy(41)).join() {
        Ok(v) => println!("RESULT {v}"),
        Err(e) => println!("FAILED {e}"),
    }
}

/// Ctrl-C right after a submit to a cold executor, while its worker is starting: the task must
/// still be interrupted at once (the slot had no process to kill yet).
fn interrupt_start_program() {
    workpool::handle_ctrl_c().unwrap();
    let mut slow = 0;
    for round in 0..20 {
        let ex = Executor::builder().workers(1).build().unwrap();
        let handle = ex.submit(Nap(3_000));
        std::thread::sleep(Duration::from_micros(300 * (round % 5)));
        let start = Instant::now();
        // What the terminal does on Ctrl-C while this thread waits in `join` below: sent once
        // this thread sleeps (on a loaded machine 1 ms may pass before it reaches `join`, and a
        // Ctrl-C with nobody waiting exits the program, as it should).
        let waiter = unsafe { libc::gettid() };
        let ctrl_c = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1));
            let stat = format!("/proc/self/task/{waiter}/stat");
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                let state = std::fs::read_to_string(&stat).unwrap_or_default();
                if state.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('S')) {
                    break;
                }
                std::thread::yield_now();
            }
            unsafe { libc::kill(std::process::id() as i32, libc::SIGINT) };
        });
        let err = handle.join().expect_err("interrupted");
        ctrl_c.join().unwrap();
        assert!(err.is_interrupted(), "round {round}: {err}");
        if start.elapsed() > Duration::from_millis(1500) {
            slow += 1;
        }
        ex.shutdown(workpool::Shutdown::CancelQueued);
    }
    println!("SLOW {slow} OF 20");
}

#[test]
fn a_ctrl_c_while_a_worker_starts_interrupts_its_task_at_once() {
    for method in ["forkserver", "spawn"] {
        let mut command = child("interrupt-start");
        command.env("WORKPOOL_START_METHOD", method);
        let (ok, stdout, stderr) = run(command);
        assert!(ok, "{method}: {stdout} {stderr}");
        assert!(stdout.contains("SLOW 0 OF 20"), "{method}: a join waited for the whole task: {stdout}");
    }
}

/// A 600 ms task with a 1 s timeout; the test stops this program (SIGTSTP) for 1.5 s meanwhile.
fn ctrl_z_program() {
    workpool::handle_ctrl_c().unwrap();
    let ex = Executor::builder().workers(1).task_timeout(Duration::from_secs(1)).build().unwrap();
    ex.submit(Square(1)).join().unwrap();
    println!("WORKER {}", ex.workers()[0].pid.unwrap());
    let handle = ex.submit(Nap(600));
    match handle.join() {
        Ok(_) => println!("RESULT ok"),
        Err(e) => println!("RESULT {e}"),
    }
}

fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')').next().and_then(|r| r.trim_start().chars().next()).unwrap_or('?')
}

#[test]
fn ctrl_z_stops_the_workers_with_the_program_and_fg_continues_them() {
    use std::io::BufRead;
    let mut command = child("ctrl-z");
    let mut program = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(program.stdout.take().unwrap()).lines();
    let worker: u32 = loop {
        let line = lines.next().expect("the program's output").unwrap();
        if let Some(pid) = line.strip_prefix("WORKER ") {
            break pid.parse().unwrap();
        }
    };
    std::thread::sleep(Duration::from_millis(100)); // the 600 ms task runs
    unsafe { libc::kill(program.id() as i32, libc::SIGTSTP) };
    let stopped = wait_until(Duration::from_secs(2), || state(program.id()) == 'T' && state(worker) == 'T');
    let (program_state, worker_state) = (state(program.id()), state(worker));
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(program.id() as i32, libc::SIGCONT) };
    let result = lines.find_map(|l| l.ok().filter(|l| l.starts_with("RESULT")));
    let status = program.wait().unwrap();
    assert!(stopped, "Ctrl-Z left the program in {program_state:?} and its worker in {worker_state:?}");
    assert!(status.success(), "{status:?}");
    assert_eq!(result.as_deref(), Some("RESULT ok"), "the paused time counted against the task's timeout");
}

/// One worker started with posix_spawn (its socket on fd 3), a task that reads fd 3 and the ten
/// tasks queued behind it: their frames are gone, so the worker never takes them.
fn eat_fd3_program() {
    std::env::set_var("WORKPOOL_START_METHOD", "spawn");
    let ex = Executor::builder().workers(1).task_timeout(Duration::from_millis(1500)).build().unwrap();
    ex.submit(Square(1)).join().unwrap();
    let eater = ex.submit(EatFd3);
    // Once it runs (the worker then reads no more of its socket), ten tasks are written behind it.
    std::thread::sleep(Duration::from_millis(50));
    let behind: Vec<_> = (0..10u64).map(|i| ex.submit(Square(i))).collect();
    let start = Instant::now();
    let ate = eater.join();
    let got: Vec<u64> = behind.into_iter().map(|h| h.join().unwrap()).collect();
    println!("ATE {:?} GOT {} IN {} ms", ate.map(|n| n > 0), got.len(), start.elapsed().as_millis());
    assert_eq!(got, (0..10u64).map(|i| i * i).collect::<Vec<_>>());
}

#[test]
fn tasks_whose_frames_a_task_swallowed_still_run_within_the_task_timeout() {
    let (ok, stdout, stderr) = run(child("eat-fd3"));
    assert!(ok, "{stdout} {stderr}");
    let ms: u64 =
        stdout.split(" IN ").nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok()).unwrap_or(u64::MAX);
    assert!(stdout.contains("ATE Ok(true)"), "the task found nothing to swallow: {stdout}");
    assert!(stdout.contains("GOT 10") && ms < 5_000, "{stdout}");
}

#[test]
fn a_worker_may_print_to_a_terminal_that_stops_background_writers() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("no `script` (util-linux) here to give the program a terminal; nothing to check");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let inner = format!(
        "stty tostop; WORKPOOL_START_CHILD=terminal exec {} child_program --exact --nocapture --test-threads=1 -q",
        exe.display()
    );
    let out = Command::new("script").args(["-qec", &inner, "/dev/null"]).stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("RESULT 42"), "the task's output or result is missing: {text}");
    assert!(text.contains("noisy task 41 on stdout"), "{text}");
}

#[test]
fn a_program_that_closed_stdin_stdout_and_stderr_still_starts_workers() {
    let dir = temp_dir("closed-stdio");
    let report = dir.join("report");
    let mut command = child("closed-stdio");
    command.env("REPORT", &report);
    let (ok, _, stderr) = run(command);
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(ok && text.trim() == format!("OK {}", (0..50u64).map(|x| x * x).sum::<u64>()), "{text} {stderr}");
}

#[test]
fn executors_built_while_other_threads_churn_descriptors_are_never_broken() {
    for method in ["forkserver", "spawn"] {
        let mut command = child("fd-race");
        command.env("ROUNDS", "300").env("WORKPOOL_START_METHOD", method);
        let (ok, stdout, stderr) = run(command);
        assert!(ok, "{method}: {stdout} {stderr}");
        assert!(stdout.contains("BROKEN 0 OF 300"), "{method}: {stdout} {stderr}");
    }
}

#[test]
fn a_marker_set_by_hand_is_reported_and_ignored() {
    let mut command = child("marker");
    command.env("WORKPOOL_WORKER", "1");
    let (ok, stdout, stderr) = run(command);
    assert!(ok, "{stdout} {stderr}");
    assert!(stdout.contains("RESULT 144"), "{stdout} {stderr}");
    assert!(stderr.contains("was not started by workpool") && stderr.contains("unset WORKPOOL_WORKER"), "{stderr}");
}

#[test]
fn a_program_run_through_the_dynamic_loader_starts_its_workers() {
    let loader = ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(loader) = loader else {
        eprintln!("no dynamic loader at a known path; nothing to check");
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new(loader);
    command.arg(&exe).args(["child_program", "--exact", "--nocapture", "--test-threads=1", "-q"]).env(CHILD, "plain");
    let (ok, stdout, stderr) = run(command);
    assert!(ok && stdout.contains("RESULT 121"), "{stdout} {stderr}");
}

#[test]
fn workers_of_a_test_binary_print_nothing_of_the_harness() {
    let (ok, stdout, stderr) = run(child("plain"));
    assert!(ok && stdout.contains("RESULT 121"), "{stdout} {stderr}");
    // The child program's own harness prints its banner once; its fork server and workers
    // print none.
    assert_eq!(stdout.matches("running 1 test").count(), 1, "{stdout}");
}

#[test]
fn the_worker_entry_is_an_ignored_test_that_says_what_it_is() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(&exe).args(["__workpool_worker_entry", "--exact"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ignored, not a test: workpool's worker processes start here"), "{text}");
    assert!(text.contains("0 passed; 0 failed; 1 ignored"), "{text}");
}

#[test]
fn a_failed_start_fails_only_the_waiting_task_and_the_next_task_tries_again() {
    let (ok, stdout, stderr) = run(child("failed-start"));
    assert!(ok, "{stdout} {stderr}");
    assert!(stdout.contains("FAILED-START OK"), "{stdout} {stderr}");
}

/// Every start fails: a posix_spawned worker cannot say hello within a microsecond.
fn failed_start_program() {
    std::env::set_var("WORKPOOL_START_METHOD", "spawn");
    let ex = Executor::builder().workers(1).handshake_timeout(Duration::from_micros(1)).build().unwrap();
    let start = Instant::now();
    let err = ex.submit(Square(2)).join().unwrap_err();
    assert!(err.is_spawn(), "{err:?}");
    assert!(err.to_string().contains("the next task will try again"), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(300), "tried again with back-off: {:?}", start.elapsed());
    // Not sticky: the next task really tries (and fails the same way, after the same tries).
    let again = Instant::now();
    assert!(ex.submit(Square(3)).join().unwrap_err().is_spawn());
    assert!(again.elapsed() >= Duration::from_millis(300), "a second task must try again, not fail fast");
    assert_eq!(ex.workers()[0].starts, 0);
    println!("FAILED-START OK");
}

#[test]
fn workers_killed_at_random_while_they_start_and_run_cost_only_their_running_tasks() {
    // Another thread SIGKILLs a random worker process every 2 ms, starting ones included
    // (children of the fork server that no slot shows yet).
    let ex = Executor::builder().workers(2).build().unwrap();
    assert_eq!(ex.submit(Square(1)).join().unwrap(), 1);
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (stop, kills) = (stop.clone(), kills.clone());
        std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let workers = worker_processes();
                if !workers.is_empty() {
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let pid = workers[(n >> 33) as usize % workers.len()];
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    seen.insert(pid);
                    kills.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            seen.len()
        })
    };
    let results: Vec<_> = ex.map((0..100_000u64).map(Square)).collect();
    stop.store(true, Ordering::Relaxed);
    let killed = killer.join().unwrap();
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    // A task fails only when its worker died under it, or when every try of the start it was
    // waiting for was killed too (a start is tried four times before that task is failed).
    assert!(
        failed.iter().all(|e| e.is_worker_death() || (e.is_spawn() && e.to_string().contains("will try again"))),
        "only deaths of running tasks: {:?}",
        failed.iter().find(|e| !e.is_worker_death())
    );
    assert!(failed.len() <= killed, "{} failures for {killed} killed processes", failed.len());
    for (i, r) in results.iter().enumerate() {
        if let Ok(v) = r {
            assert_eq!(*v, (i * i) as u64);
        }
    }
    assert!(kills.load(Ordering::Relaxed) > 10, "the killer must really have struck");
    assert_eq!(ex.submit(Square(7)).join().unwrap(), 49, "the executor ends usable");
}

/// Worker processes of this test process: descendants running this binary, the fork server
/// left out.
fn worker_processes() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    let stats: Vec<(u32, u32, String)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let comm = stat[stat.find('(')? + 1..stat.rfind(')')?].to_string();
            let ppid = stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid, comm))
        })
        .collect();
    let servers: Vec<u32> = stats.iter().filter(|s| s.1 == me && s.2 == "workpool-fork").map(|s| s.0).collect();
    for (pid, ppid, comm) in &stats {
        if comm != "workpool-fork" && (*ppid == me || servers.contains(ppid)) {
            let mut cmd = String::new();
            if std::fs::File::open(format!("/proc/{pid}/cmdline")).and_then(|mut f| f.read_to_string(&mut cmd)).is_ok()
                && cmd.contains("__workpool_worker_entry")
            {
                out.push(*pid);
            }
        }
    }
    out
}
