//! The executor property: a short random program of submits, cancels, crashing tasks (abort,
//! panic, exit), timeouts, dropped handles, dropped executors and shutdowns, run against a real
//! executor with 1–2 worker processes. Every handle gets exactly one outcome, and it is one the
//! program allows: the right value for a task that succeeded, `is_cancelled()` exactly for
//! tasks whose cancellation was accepted, the task's own panic, a worker death for a task that
//! killed its worker, a timeout for a task that hung.
//!
//! Exactly-once is checked on the side as well: each run of a task appends one byte to a file
//! named after the task, so at the end a successful or crashed task's file holds exactly one
//! byte and a cancelled task's file does not exist. And no worker process may outlive the
//! program.
//!
//! This file reaches the crate only through its public API (`super::api`) and reads its
//! program with `super::input::Bytes`: `tests/fuzz_executor.rs` and the `executor` fuzz target
//! both include it with `#[path]`.

use super::api::{ErrorKind, Executor, Shutdown, Task, TaskError, TaskHandle};
use super::input::Bytes;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a task does in its worker.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Returns the square.
    Square(u32),
    /// Sleeps this many milliseconds, returns them.
    Nap(u8),
    /// Panics (the worker lives on).
    Panic,
    /// Aborts its worker (SIGABRT).
    Abort,
    /// Exits its worker with code 3.
    Exit,
    /// Sleeps for a minute: only submitted with a task timeout, which must kill it.
    Hang,
}

/// The task the programs submit.
#[derive(Serialize, Deserialize, Debug)]
pub struct FuzzJob {
    /// Where the run markers go.
    pub dir: String,
    /// Unique within a program.
    pub id: u64,
    /// What to do.
    pub action: Action,
}

/// What a task that finished reports.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub struct Ran {
    /// The task's id.
    pub id: u64,
    /// Runs of this task so far, this one included (1 unless it ran twice).
    pub runs: u64,
    /// The result.
    pub value: u64,
    /// The process that ran it: a worker, never the submitting process.
    pub pid: u32,
}

fn marker(dir: &str, id: u64) -> PathBuf {
    Path::new(dir).join(id.to_string())
}

impl Task for FuzzJob {
    type Output = Ran;
    fn run(self) -> Ran {
        let path = marker(&self.dir, self.id);
        let mut file = std::fs::OpenOptions::new().append(true).create(true).open(&path).expect("marker file");
        file.write_all(b"x").expect("marker written");
        let runs = file.metadata().expect("marker metadata").len();
        drop(file);
        let value = match self.action {
            Action::Square(x) => u64::from(x) * u64::from(x),
            Action::Nap(ms) => {
                std::thread::sleep(Duration::from_millis(ms.into()));
                ms.into()
            }
            Action::Panic => panic!("fuzz panic {}", self.id),
            Action::Abort => std::process::abort(),
            Action::Exit => std::process::exit(3),
            Action::Hang => {
                std::thread::sleep(Duration::from_secs(60));
                0
            }
        };
        Ran { id: self.id, runs, value, pid: std::process::id() }
    }
}

super::api::register!(FuzzJob);

/// Knobs of a run (the fuzz target and the seeded test use different ones).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Operations per program at most.
    pub max_ops: usize,
    /// The task timeout of programs that use one.
    pub task_timeout: Duration,
    /// How long any single outcome may take before the program is declared hung.
    pub hang: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_ops: 24, task_timeout: Duration::from_millis(300), hang: Duration::from_secs(30) }
    }
}

/// What one program did (for statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tasks submitted.
    pub tasks: usize,
    /// Outcomes: value, panic, worker death, timeout, cancelled.
    pub ok: usize,
    /// Panics.
    pub panics: usize,
    /// Worker deaths.
    pub deaths: usize,
    /// Timeouts.
    pub timeouts: usize,
    /// Cancellations.
    pub cancelled: usize,
    /// Handles dropped unread.
    pub dropped: usize,
}

/// One submitted task whose handle the program still holds.
struct Pending {
    handle: TaskHandle<Ran>,
    meta: Meta,
}

/// What the program knows about a submitted task.
#[derive(Clone, Copy, Debug)]
struct Meta {
    id: u64,
    action: Action,
    /// Executor generation it was submitted to.
    generation: u32,
    /// `cancel()` returned true.
    cancelled: bool,
    /// A `Shutdown::CancelQueued` happened while it may have been queued.
    may_be_cancelled: bool,
}

/// What the program knows about every task at the end, for the marker check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Ran (value, panic, death or timeout): exactly one run.
    Ran,
    /// Cancelled: never ran.
    NeverRan,
    /// Handle dropped, or timed out before it could mark (a kill at the very start): at most
    /// one run.
    AtMostOnce,
}

struct Program {
    limits: Limits,
    dir: String,
    workers: usize,
    timeout: Option<Duration>,
    idle: Option<Duration>,
    recycle: Option<u64>,
    executor: Executor,
    generation: u32,
    next_id: u64,
    pending: Vec<Pending>,
    fates: Vec<(u64, Action, Fate)>,
    summary: Summary,
}

fn unique_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("workpool-fuzz-{}-{n}", std::process::id()))
}

impl Program {
    fn build(&self) -> Executor {
        let mut builder = Executor::builder().workers(self.workers);
        if let Some(t) = self.timeout {
            builder = builder.task_timeout(t);
        }
        if let Some(idle) = self.idle {
            builder = builder.idle_timeout(idle);
        }
        if let Some(n) = self.recycle {
            builder = builder.max_tasks_per_worker(n);
        }
        builder.build().expect("an executor builds")
    }

    fn job(&mut self, action: Action) -> FuzzJob {
        self.next_id += 1;
        self.summary.tasks += 1;
        FuzzJob { dir: self.dir.clone(), id: self.next_id, action }
    }

    fn submit(&mut self, action: Action) {
        let job = self.job(action);
        let id = job.id;
        let handle = self.executor.submit(job);
        let meta = self.meta(id, action);
        self.pending.push(Pending { handle, meta });
    }

    fn meta(&self, id: u64, action: Action) -> Meta {
        Meta { id, action, generation: self.generation, cancelled: false, may_be_cancelled: false }
    }

    /// Checks one outcome against what the program allows; returns the task's fate.
    fn check(&mut self, p: &Meta, result: Result<Ran, TaskError>) -> Fate {
        let what = format!("task {} ({:?})", p.id, p.action);
        match result {
            Ok(ran) => {
                assert!(!p.cancelled, "{what}: cancel() returned true, yet it ran");
                assert_eq!(ran.id, p.id, "{what}: got another task's output");
                assert_eq!(ran.runs, 1, "{what}: ran more than once");
                assert_ne!(ran.pid, std::process::id(), "{what}: ran in the submitting process, not in a worker");
                let want = match p.action {
                    Action::Square(x) => u64::from(x) * u64::from(x),
                    Action::Nap(ms) => ms.into(),
                    other => panic!("{what}: {other:?} cannot succeed"),
                };
                assert_eq!(ran.value, want, "{what}: wrong value");
                self.summary.ok += 1;
                Fate::Ran
            }
            Err(e) if e.is_cancelled() => {
                assert!(p.cancelled || p.may_be_cancelled, "{what}: cancelled, but nobody cancelled it");
                self.summary.cancelled += 1;
                Fate::NeverRan
            }
            Err(e) => {
                assert!(!p.cancelled, "{what}: cancel() returned true, yet it ended with: {e}");
                match (p.action, e.kind()) {
                    (Action::Panic, ErrorKind::Panic { message, .. }) => {
                        assert_eq!(message, &format!("fuzz panic {}", p.id), "{what}");
                        self.summary.panics += 1;
                        Fate::Ran
                    }
                    (Action::Abort, ErrorKind::WorkerDeath { cause, .. }) => {
                        assert!(cause.contains("SIGABRT"), "{what}: {e}");
                        self.summary.deaths += 1;
                        Fate::Ran
                    }
                    (Action::Exit, ErrorKind::WorkerDeath { cause, .. }) => {
                        assert!(cause.contains("code 3"), "{what}: {e}");
                        self.summary.deaths += 1;
                        Fate::Ran
                    }
                    // A hung task must time out; any other may too on a loaded machine, when
                    // the program has a timeout.
                    (_, ErrorKind::Timeout { .. }) if self.timeout.is_some() => {
                        self.summary.timeouts += 1;
                        Fate::AtMostOnce
                    }
                    _ => panic!("{what}: unexpected outcome: {e}"),
                }
            }
        }
    }

    fn join(&mut self, p: Pending) {
        let m = p.meta;
        let result = match p.handle.join_timeout(self.limits.hang) {
            Ok(result) => result,
            Err(_) => panic!("task {} ({:?}) got no outcome within {:?}: hang", m.id, m.action, self.limits.hang),
        };
        let fate = self.check(&m, result);
        self.fates.push((m.id, m.action, fate));
    }

    fn shutdown(&mut self, mode: Shutdown) {
        if mode == Shutdown::CancelQueued {
            for p in &mut self.pending {
                if p.meta.generation == self.generation {
                    p.meta.may_be_cancelled = true;
                }
            }
        }
        self.executor.shutdown(mode);
        for p in &self.pending {
            if p.meta.generation == self.generation {
                let m = p.meta;
                assert!(p.handle.is_finished(), "task {} ({:?}) unfinished after shutdown({mode:?})", m.id, m.action);
            }
        }
        let job = self.job(Action::Square(1));
        let after = self.executor.submit(job);
        let refused = after.join_timeout(self.limits.hang).expect("a refused submit answers at once");
        assert!(
            matches!(refused.as_ref().map_err(TaskError::kind), Err(ErrorKind::ShutDown)),
            "a submit after shutdown must fail with ShutDown: {refused:?}"
        );
        self.summary.tasks -= 1;
        self.next_generation();
    }

    fn next_generation(&mut self) {
        self.generation += 1;
        self.executor = self.build();
    }
}

/// Runs one program (see the module docs); panics on any violation.
pub fn run(data: &[u8], limits: Limits) -> Summary {
    let mut input = Bytes::new(data);
    let flags = input.byte();
    let dir = unique_dir();
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let workers = 1 + (flags & 1) as usize;
    let timeout = (flags & 2 != 0).then_some(limits.task_timeout);
    let idle = (flags & 4 != 0).then(|| Duration::from_millis(1 + u64::from(flags >> 5) * 4));
    let recycle = (flags & 8 != 0).then(|| 1 + u64::from(flags >> 6));
    let mut program = Program {
        limits,
        dir: dir.to_str().expect("a UTF-8 temporary directory").to_string(),
        workers,
        timeout,
        idle,
        recycle,
        executor: Executor::builder().workers(1).build().expect("an executor builds"),
        generation: 0,
        next_id: 0,
        pending: Vec::new(),
        fates: Vec::new(),
        summary: Summary::default(),
    };
    program.executor = program.build();
    let mut crashes = 0;
    let mut hangs = 0;
    for _ in 0..limits.max_ops {
        if input.is_empty() {
            break;
        }
        let op = input.byte();
        let pick = input.byte() as usize;
        match op % 18 {
            0..=3 => program.submit(Action::Square(u32::from(input.u16()))),
            4 => program.submit(Action::Nap(input.byte() % 20)),
            5 => program.submit(Action::Panic),
            6 | 7 if crashes < 4 => {
                crashes += 1;
                program.submit(if op % 18 == 6 { Action::Abort } else { Action::Exit });
            }
            8 if program.timeout.is_some() && hangs < 2 => {
                hangs += 1;
                program.submit(Action::Hang);
            }
            9 | 10 if !program.pending.is_empty() => {
                let i = pick % program.pending.len();
                let p = &mut program.pending[i];
                if p.handle.cancel() {
                    p.meta.cancelled = true;
                    assert!(p.handle.is_finished(), "a cancelled task must be finished at once");
                }
            }
            11 if !program.pending.is_empty() => {
                let m = program.pending.remove(pick % program.pending.len()).meta;
                let fate = if m.cancelled { Fate::NeverRan } else { Fate::AtMostOnce };
                program.fates.push((m.id, m.action, fate));
                program.summary.dropped += 1;
            }
            12 | 13 if !program.pending.is_empty() => {
                let p = program.pending.remove(pick % program.pending.len());
                program.join(p);
            }
            14 => {
                // Drop every clone: queued and running tasks still finish.
                program.next_generation();
            }
            15 => program.shutdown(if pick % 2 == 0 { Shutdown::CancelQueued } else { Shutdown::Wait }),
            16 => {
                let n = pick % 6;
                let jobs: Vec<FuzzJob> = (0..n).map(|k| program.job(Action::Square(k as u32 + 2))).collect();
                let ids: Vec<u64> = jobs.iter().map(|j| j.id).collect();
                let executor = program.executor.clone();
                let results: Vec<_> = executor.map(jobs).collect();
                assert_eq!(results.len(), n, "map must yield one result per task");
                for (k, (result, id)) in results.into_iter().zip(ids).enumerate() {
                    let m = program.meta(id, Action::Square(k as u32 + 2));
                    let fate = program.check(&m, result);
                    program.fates.push((id, m.action, fate));
                }
            }
            _ => std::thread::sleep(Duration::from_micros(u64::from(input.byte()) * 20)),
        }
    }
    for p in std::mem::take(&mut program.pending) {
        program.join(p);
    }
    program.executor.shutdown(Shutdown::Wait);
    // Every task's run count, now that nothing runs any more.
    for &(id, action, fate) in &program.fates {
        let runs = std::fs::metadata(marker(&program.dir, id)).map(|m| m.len()).unwrap_or(0);
        let ok = match fate {
            Fate::Ran => runs == 1,
            Fate::NeverRan => runs == 0,
            Fate::AtMostOnce => runs <= 1,
        };
        assert!(ok, "task {id} ({action:?}), {fate:?}: ran {runs} times");
    }
    let summary = program.summary;
    drop(program);
    let _ = std::fs::remove_dir_all(&dir);
    wait_for_no_workers(limits.hang);
    wait_for_no_feeders(limits.hang);
    summary
}

/// Waits until no feeder thread is left: those of executors the program dropped end on their
/// own once their queues are drained. (Also what makes the fuzzer's leak check meaningful: it
/// runs right after an input, and memory a finishing thread still owns is no leak.)
pub fn wait_for_no_feeders(limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let feeders = feeder_threads();
        if feeders == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{feeders} feeder threads still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Threads of this process named `workpool-feeder-N` (from `/proc`; 0 where there is none).
fn feeder_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("workpool-feede")) // comm holds 15 bytes of the name
        .count()
}

/// Waits until no child process of ours is left (workers of dropped executors exit once their
/// feeders see the queues drained); fails if one outlives `limit`.
pub fn wait_for_no_workers(limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let children = child_processes();
        if children.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            let described: Vec<String> = children
                .iter()
                .map(|pid| {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    format!("{stat:.60} cmdline {:?}", String::from_utf8_lossy(&cmdline))
                })
                .collect();
            panic!("processes left behind after {limit:?}: {described:#?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Worker processes of this program: descendants (children, and children of the fork server)
/// that run this very binary, the fork server itself left out (from `/proc`; empty where there
/// is none). Other processes are not ours to judge: a fuzzer keeps `llvm-symbolizer` running.
pub fn child_processes() -> Vec<u32> {
    let me = std::process::id();
    let exe = std::fs::read_link("/proc/self/exe").ok();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    // pid -> (ppid, zombie, comm)
    let table: Vec<(u32, u32, bool, String)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            let comm = stat[open + 1..close].to_string();
            let after = &stat[close + 1..];
            let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid, after.trim_start().starts_with('Z'), comm))
        })
        .collect();
    let server = |comm: &str| comm == "workpool-fork";
    let children: Vec<u32> = table.iter().filter(|t| t.1 == me).map(|t| t.0).collect();
    table
        .iter()
        .filter(|(_, ppid, _, _)| *ppid == me || children.contains(ppid))
        .filter(|(pid, _, zombie, comm)| {
            // A zombie has no exe link any more; it still counts, it is not reaped.
            !server(comm) && (*zombie || std::fs::read_link(format!("/proc/{pid}/exe")).ok() == exe)
        })
        .map(|t| t.0)
        .collect()
}
