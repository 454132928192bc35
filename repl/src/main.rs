//! An interactive shell on one reusable process executor: run batches of CPU-bound tasks, crash
//! workers on purpose, start tasks that hang, press Ctrl-C, and watch the worker processes come
//! and go (they start lazily, exit when idle past the idle timeout, and come back on demand).
//!
//! ```text
//! cargo run --release -p workpool-repl
//! cargo run --release -p workpool-repl -- --workers 4 --idle-timeout 5 --task-timeout 10
//! ```
//!
//! Things to try: `run`, then `workers`; wait five seconds (the idle workers exit, and say so);
//! `crash segv`; `hang`, then Ctrl-C; `timeout 2` and `hang` again; `bg 20` and `workers`;
//! `resize 4`; then Ctrl-D, or Ctrl-C at an empty prompt, to leave with no worker left behind.
//!
//! Line editing and history come from rustyline. When standard input is not a terminal the shell
//! reads it line by line and echoes each command after its prompt, so a script piped in reads
//! like a session (this is how `repl/tests/repl.rs` drives it).

use rustyline::error::ReadlineError;
use rustyline::{
    Cmd, ConditionalEventHandler, Config, DefaultEditor, Event, EventContext, EventHandler, ExternalPrinter, KeyEvent,
    Movement, RepeatCount,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use workpool::{Backend, Executor, Parallel, Shutdown, Task, TaskError, TaskHandle, WorkerInfo};

const PROMPT: &str = "workpool> ";

/// CPU-bound work: `rounds` rounds of an integer hash, a fixed amount of computation.
#[derive(Serialize, Deserialize)]
struct Spin {
    rounds: u64,
}

/// What one [`Spin`] reports: which worker ran it, and the CPU time it took.
#[derive(Serialize, Deserialize)]
struct Spun {
    pid: u32,
    cpu_ns: u64,
    checksum: u64,
}

/// CPU time used by the calling thread so far.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One round of [`Spin`]: 10 000 steps of xorshift.
fn spin_round(mut x: u64) -> u64 {
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x)
}

impl Task for Spin {
    type Output = Spun;
    fn run(self) -> Spun {
        let start = thread_cpu_time();
        let checksum = (0..self.rounds).fold(0x9E37_79B9_7F4A_7C15, |x, _| spin_round(x));
        let cpu_ns = (thread_cpu_time() - start).as_nanos() as u64;
        Spun { pid: std::process::id(), cpu_ns, checksum }
    }
}

/// Rounds of [`Spin`] per millisecond of CPU time on this machine, measured once.
fn rounds_per_ms() -> f64 {
    static RATE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *RATE.get_or_init(|| {
        let start = thread_cpu_time();
        let (mut rounds, mut x) = (0u64, 1u64);
        while thread_cpu_time() - start < Duration::from_millis(50) {
            x = spin_round(x);
            rounds += 1;
        }
        rounds as f64 / ((thread_cpu_time() - start).as_secs_f64() * 1e3)
    })
}

/// The ways a worker can be made to fail.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
enum CrashKind {
    Segv,
    Abort,
    Exit,
    Panic,
}

/// Fails on purpose, the way `self.0` says.
#[derive(Serialize, Deserialize)]
struct Crash(CrashKind);

impl Task for Crash {
    type Output = u32;
    fn run(self) -> u32 {
        match self.0 {
            CrashKind::Segv => segfault(),
            CrashKind::Abort => std::process::abort(),
            CrashKind::Exit => std::process::exit(3),
            CrashKind::Panic => panic!("this task panicked on purpose"),
        }
    }
}

/// Dies of SIGSEGV, as a buggy native library would.
fn segfault() -> ! {
    // An actual invalid memory access would be undefined behaviour in Rust; raising the signal
    // kills the process the same way. The Rust runtime installs a SIGSEGV handler (to report
    // stack overflows) that returns from a raised signal, so the default action goes back first.
    // SAFETY: plain libc calls with valid arguments.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
    unreachable!("SIGSEGV with its default action ends the process")
}

/// Never returns: a deadlock, an infinite loop, a server that never answers.
#[derive(Serialize, Deserialize)]
struct Hang;

impl Task for Hang {
    type Output = ();
    fn run(self) {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// Sleeps `ms` milliseconds (the background task of `bg`); returns the worker's pid.
#[derive(Serialize, Deserialize)]
struct Nap {
    ms: u64,
}

impl Task for Nap {
    type Output = u32;
    fn run(self) -> u32 {
        std::thread::sleep(Duration::from_millis(self.ms));
        std::process::id()
    }
}

/// Says which worker process ran it.
#[derive(Serialize, Deserialize)]
struct WhoAmI;

impl Task for WhoAmI {
    type Output = u32;
    fn run(self) -> u32 {
        std::process::id()
    }
}

workpool::register!(Spin, Crash, Hang, Nap, WhoAmI);

/// The executor's settings; every change builds a new reusable executor.
#[derive(Clone, Copy)]
struct Settings {
    workers: usize,
    idle: Duration,
    task_timeout: Option<Duration>,
}

impl Settings {
    fn executor(&self) -> Executor {
        let mut builder = Executor::builder().workers(self.workers).idle_timeout(self.idle);
        if let Some(limit) = self.task_timeout {
            builder = builder.task_timeout(limit);
        }
        builder.reusable().unwrap_or_else(|e| fail(&format!("cannot build the executor: {e}")))
    }

    fn describe(&self) -> String {
        let timeout = self.task_timeout.map_or("none".to_string(), secs);
        format!(
            "{} worker process{} (started on demand), idle timeout {}, task timeout {timeout}",
            self.workers,
            if self.workers == 1 { "" } else { "es" },
            secs(self.idle)
        )
    }
}

/// A task started with `bg`.
struct Background {
    handle: TaskHandle<u32>,
    ms: u64,
}

/// What the main loop and the watcher thread share.
struct State {
    executor: Executor,
    settings: Settings,
    /// True while the shell waits for a command: the only time the watcher may print.
    at_prompt: bool,
    /// The workers as last seen by the watcher, to notice idle exits.
    seen: Vec<WorkerInfo>,
    /// Workers that left without dying, to be confirmed on the next look: (slot, pid, deaths).
    suspects: Vec<(usize, u32, u64)>,
    /// What the watcher will say at the next prompt.
    notes: Vec<String>,
    background: Vec<Background>,
}

struct Shell {
    state: Arc<Mutex<State>>,
}

fn main() {
    workpool::init();
    let settings = parse_args();
    if let Err(e) = workpool::handle_ctrl_c() {
        fail(&e.to_string());
    }
    let interactive = std::io::stdin().is_terminal();
    let executor = settings.executor();
    let seen = executor.workers();
    let state = Arc::new(Mutex::new(State {
        executor,
        settings,
        at_prompt: false,
        seen,
        suspects: Vec::new(),
        notes: Vec::new(),
        background: Vec::new(),
    }));
    let shell = Shell { state: state.clone() };

    let config = Config::builder().auto_add_history(true).max_history_size(1000).map(|b| b.build());
    let mut editor = config
        .and_then(DefaultEditor::with_config)
        .unwrap_or_else(|e| fail(&format!("cannot set up line editing: {e}")));
    // Ctrl-C clears a line being typed; on an empty line it quits.
    editor.bind_sequence(KeyEvent::ctrl('C'), EventHandler::Conditional(Box::new(CtrlC)));
    let printer: Option<Box<dyn ExternalPrinter + Send>> = match editor.create_external_printer() {
        Ok(printer) => Some(Box::new(printer)),
        Err(_) => None, // not a terminal: the watcher prints on stdout
    };
    let watcher_state = state.clone();
    std::thread::Builder::new()
        .name("repl-watcher".into())
        .spawn(move || watch(watcher_state, printer, interactive))
        .unwrap_or_else(|e| fail(&format!("cannot start the watcher thread: {e}")));

    let _quiet = QuietCtrlC::new();
    println!("workpool repl: {}", settings.describe());
    println!("type `help` for the commands; Ctrl-C stops a running command; Ctrl-D quits");
    loop {
        if !interactive {
            print!("{PROMPT}");
            let _ = std::io::stdout().flush();
        }
        shell.prompt_begins();
        let line = editor.readline(PROMPT);
        shell.lock().at_prompt = false;
        match line {
            Ok(line) => {
                if !interactive {
                    println!("{line}");
                }
                if !shell.execute(line.trim()) {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => {
                println!("^C");
                break;
            }
            Err(ReadlineError::Eof) => {
                println!("{}", if interactive { "^D" } else { "(end of input)" });
                break;
            }
            Err(e) => {
                eprintln!("error reading the command line: {e}");
                break;
            }
        }
    }
    shell.quit();
}

/// Keeps the terminal from echoing `^C` while a command runs (its echo would land after a full
/// progress-bar line, wrap, and leave the bar behind); restores the setting on drop.
struct QuietCtrlC(Option<libc::termios>);

impl QuietCtrlC {
    fn new() -> QuietCtrlC {
        if !std::io::stdin().is_terminal() {
            return QuietCtrlC(None);
        }
        // SAFETY: termios is plain data; tcgetattr fills it in for a terminal on fd 0.
        let mut original: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor and a valid out-pointer.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut original) } != 0 {
            return QuietCtrlC(None);
        }
        let mut quiet = original;
        quiet.c_lflag &= !libc::ECHOCTL;
        // SAFETY: as above. rustyline saves and restores the mode around each prompt, so the
        // change holds for the whole session.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) };
        QuietCtrlC(Some(original))
    }
}

impl Drop for QuietCtrlC {
    fn drop(&mut self) {
        if let Some(original) = &self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, original) };
        }
    }
}

/// Ctrl-C at the prompt: quit on an empty line, clear the line otherwise.
struct CtrlC;

impl ConditionalEventHandler for CtrlC {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        if ctx.line().is_empty() {
            Some(Cmd::Interrupt)
        } else {
            Some(Cmd::Kill(Movement::WholeBuffer))
        }
    }
}

impl Shell {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn executor(&self) -> Executor {
        self.lock().executor.clone()
    }

    fn prompt_begins(&self) {
        self.lock().at_prompt = true;
    }

    /// Runs one command line; false when it is time to quit.
    fn execute(&self, line: &str) -> bool {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&command, args)) = words.split_first() else { return true };
        let before = self.executor().workers();
        let result = match (command, args) {
            ("help" | "h" | "?", _) => {
                help();
                Ok(())
            }
            ("quit" | "exit" | "q", _) => return false,
            ("run", _) => self.run(args),
            ("crash", _) => self.crash(args),
            ("hang", []) => self.hang(),
            ("bg", _) => self.background(args),
            ("workers", []) => {
                self.show_workers();
                Ok(())
            }
            ("resize" | "workers", [n]) => self.resize(n),
            ("idle", [s]) => self.set_idle(s),
            ("timeout", [s]) => self.set_timeout(s),
            _ => Err(format!("unknown command `{line}`; type `help` for the list")),
        };
        if let Err(message) = result {
            println!("{message}");
        }
        let after = self.settle();
        if before.len() == after.len() {
            let started: Vec<String> = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| a.starts > b.starts)
                .filter_map(|(_, a)| a.pid.map(|p| p.to_string()))
                .collect();
            if !started.is_empty() {
                let s = if started.len() == 1 { "" } else { "es" };
                println!("  (started worker process{s} {} on demand)", started.join(", "));
            }
        }
        true
    }

    /// The workers once the executor has caught up with the command: a result can reach us a
    /// moment before the worker's counters are updated, and killed workers are reaped after the
    /// interrupted tasks have already failed.
    fn settle(&self) -> Vec<WorkerInfo> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let (workers, background) = {
                let state = self.lock();
                let background = state.background.iter().filter(|b| !b.handle.is_finished()).count();
                (state.executor.workers(), background)
            };
            let in_flight: usize = workers.iter().map(|w| w.in_flight).sum();
            if in_flight <= background || Instant::now() >= deadline {
                return workers;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn run(&self, args: &[&str]) -> Result<(), String> {
        let executor = self.executor();
        let workers = executor.num_workers();
        let count = match args.first() {
            Some(n) => parse_count(n)?,
            None => 8 * workers,
        };
        let ms = match args.get(1) {
            Some(ms) => ms.parse::<u64>().map_err(|_| format!("`{ms}` is not a number of milliseconds"))?,
            None => 100,
        };
        if args.len() > 2 {
            return Err("usage: run [TASKS] [MS]".into());
        }
        // `n_jobs(1)` would run inline in this process; the executor's workers size the run.
        let parallel = Parallel::new()
            .executor(executor)
            .backend(Backend::Processes)
            .n_jobs(workers.max(2) as isize)
            .progress(true);
        let rounds = ((ms as f64 * rounds_per_ms()).round() as u64).max(1);
        let before = self.executor().workers();
        let start = Instant::now();
        let mut per_pid: BTreeMap<u32, usize> = BTreeMap::new();
        let mut cpu = Duration::ZERO;
        let mut failure = None;
        for result in parallel.iter((0..count).map(|_| Spin { rounds })) {
            match result {
                Ok(spun) => {
                    *per_pid.entry(spun.pid).or_default() += 1;
                    cpu += Duration::from_nanos(spun.cpu_ns);
                }
                Err(e) => failure = Some(e),
            }
        }
        let wall = start.elapsed();
        let done: usize = per_pid.values().sum();
        match failure {
            Some(e) if e.is_interrupted() => {
                let killed: u64 =
                    self.settle().iter().zip(&before).map(|(a, b)| a.deaths.saturating_sub(b.deaths)).sum();
                println!(
                    "interrupted after {}: {done} of {count} tasks done, {killed} busy worker{} killed; the pool is ready",
                    secs(wall),
                    if killed == 1 { "" } else { "s" }
                );
            }
            Some(e) => println!("failed after {done} of {count} tasks: {e}"),
            None => {
                // CPU time over wall time: how many cores the batch really kept busy.
                println!(
                    "{count} tasks × {ms} ms on {workers} worker{}: {} of CPU time in {}, {:.2}× parallel",
                    if workers == 1 { "" } else { "s" },
                    secs(cpu),
                    secs(wall),
                    cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9)
                );
            }
        }
        if !per_pid.is_empty() {
            let shares: Vec<String> = per_pid.iter().map(|(pid, n)| format!("pid {pid}: {n}")).collect();
            println!("  tasks per worker: {}", shares.join(", "));
        }
        Ok(())
    }

    fn crash(&self, args: &[&str]) -> Result<(), String> {
        let kind = match args {
            [] | ["segv" | "segfault" | "sigsegv"] => CrashKind::Segv,
            ["abort"] => CrashKind::Abort,
            ["exit"] => CrashKind::Exit,
            ["panic"] => CrashKind::Panic,
            _ => return Err("usage: crash [segv|abort|exit|panic]".into()),
        };
        let executor = self.executor();
        match executor.submit(Crash(kind)).join() {
            Ok(pid) => println!("unexpected: the crash task returned normally on pid {pid}"),
            Err(e) => report_crash(kind, &e),
        }
        match executor.submit(WhoAmI).join() {
            Ok(pid) => println!("the pool carries on: the next task ran on worker pid {pid}"),
            Err(e) => println!("the follow-up task failed: {e}"),
        }
        Ok(())
    }

    fn hang(&self) -> Result<(), String> {
        let executor = self.executor();
        let limit = self.lock().settings.task_timeout;
        match limit {
            Some(limit) => println!(
                "a task that never returns is running; the task timeout ({}) will stop it, or press Ctrl-C",
                secs(limit)
            ),
            None => println!("a task that never returns is running (no task timeout is set): press Ctrl-C"),
        }
        let start = Instant::now();
        match executor.submit(Hang).join() {
            Ok(()) => println!("unexpected: the hanging task returned"),
            Err(e) if e.is_timeout() => {
                println!("timed out after {}: the worker was killed and will be replaced", secs(start.elapsed()))
            }
            Err(e) if e.is_interrupted() => {
                println!("interrupted after {}: the worker was killed, the pool is ready", secs(start.elapsed()))
            }
            Err(e) => println!("error: {e}"),
        }
        Ok(())
    }

    fn background(&self, args: &[&str]) -> Result<(), String> {
        let seconds = match args {
            [] => 10.0,
            [s] => parse_secs(s)?.as_secs_f64(),
            _ => return Err("usage: bg [SECS]".into()),
        };
        let ms = (seconds * 1000.0) as u64;
        let executor = {
            let mut state = self.lock();
            let handle = state.executor.submit(Nap { ms });
            state.background.push(Background { handle, ms });
            state.executor.clone()
        };
        // Wait (briefly) until a worker has it: starting a worker process takes a moment.
        let deadline = Instant::now() + Duration::from_secs(3);
        let busy = loop {
            let busy: Vec<u32> = executor.workers().iter().filter(|w| w.in_flight > 0).filter_map(|w| w.pid).collect();
            if !busy.is_empty() || Instant::now() >= deadline {
                break busy;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let on = busy.iter().map(|p| format!("pid {p}")).collect::<Vec<_>>().join(", ");
        println!("a {} sleep runs in the background (busy: {on}); see `workers`", secs(Duration::from_millis(ms)));
        Ok(())
    }

    fn show_workers(&self) {
        let state = self.lock();
        let infos = state.executor.workers();
        println!("{}", state.settings.describe());
        println!("  slot  pid       state        tasks run  starts  deaths");
        for (slot, w) in infos.iter().enumerate() {
            let pid = w.pid.map_or("-".to_string(), |p| p.to_string());
            let status = match (w.pid, w.in_flight) {
                (Some(_), 0) => "idle".to_string(),
                (Some(_), n) => format!("busy ({n})"),
                (None, _) if w.starts == 0 => "not started".to_string(),
                (None, _) => "exited".to_string(),
            };
            println!("  {slot:>4}  {pid:<8}  {status:<11}  {:>9}  {:>6}  {:>6}", w.tasks_run, w.starts, w.deaths);
        }
        // Where the time went (Executor::stats), since this executor was built.
        let stats = state.executor.stats();
        println!("  where the time went, over the {} since this executor was built:", secs(stats.uptime));
        let line = |s: &workpool::SlotStats| {
            let d = &s.deaths;
            format!(
                "busy {}, idle {}, starting workers {}; {} to workers, {} back; deaths: {} signal, {} exit, {} timeout, {} Ctrl-C",
                secs(s.busy),
                secs(s.idle),
                secs(s.starting),
                bytes(s.bytes_to_workers),
                bytes(s.bytes_from_workers),
                d.signal,
                d.exit,
                d.timeout + d.stalled,
                d.interrupted
            )
        };
        for (slot, s) in stats.slots.iter().enumerate() {
            println!("  slot {slot}: {}", line(s));
        }
        println!("  all:    {}; {:.0} % busy", line(&stats.total), 100.0 * stats.efficiency());
    }

    fn resize(&self, n: &str) -> Result<(), String> {
        let workers = parse_count(n)?;
        self.reconfigure(|s| s.workers = workers);
        Ok(())
    }

    fn set_idle(&self, s: &str) -> Result<(), String> {
        let idle = parse_secs(s)?;
        self.reconfigure(|settings| settings.idle = idle);
        Ok(())
    }

    fn set_timeout(&self, s: &str) -> Result<(), String> {
        let limit = match s {
            "off" | "none" | "0" => None,
            s => Some(parse_secs(s)?),
        };
        self.reconfigure(|settings| settings.task_timeout = limit);
        Ok(())
    }

    /// Replaces the executor with one of new settings; the old one finishes its tasks and stops.
    fn reconfigure(&self, change: impl FnOnce(&mut Settings)) {
        let (old, settings) = {
            let mut state = self.lock();
            change(&mut state.settings);
            let settings = state.settings;
            let new = settings.executor();
            let old = std::mem::replace(&mut state.executor, new);
            state.seen = state.executor.workers();
            state.suspects.clear();
            (old, settings)
        };
        let running = old.workers().iter().filter(|w| w.in_flight > 0).count();
        if running > 0 {
            println!("waiting for the old workers to finish {running} running task(s)...");
        }
        old.shutdown(Shutdown::Wait);
        println!("now: {}", settings.describe());
    }

    fn quit(&self) {
        let executor = self.executor();
        let running = self.lock().background.iter().filter(|b| !b.handle.is_finished()).count();
        if running > 0 {
            println!("waiting for {running} background task(s) to finish...");
        }
        let live = executor.workers().iter().filter(|w| w.pid.is_some()).count();
        executor.shutdown(Shutdown::CancelQueued);
        let left = executor.workers().iter().filter(|w| w.pid.is_some()).count();
        match (live, left) {
            (0, 0) => println!("bye (no worker process was running)"),
            (1, 0) => println!("bye: the worker process has exited"),
            (_, 0) => println!("bye: all {live} worker processes have exited"),
            (_, left) => println!("bye ({left} worker process(es) still running!)"),
        }
    }
}

fn report_crash(kind: CrashKind, e: &TaskError) {
    match kind {
        CrashKind::Panic if e.is_panic() => {
            println!("the task panicked: {}", e.panic_message().unwrap_or("?"));
            println!("  a panic is caught in the worker: the task fails, the worker process lives on");
        }
        _ => println!("error: {e}"),
    }
}

/// The watcher: notices workers leaving after their idle timeout and background tasks
/// finishing, and tells at the prompt (never in the middle of a command's output).
fn watch(state: Arc<Mutex<State>>, mut printer: Option<Box<dyn ExternalPrinter + Send>>, interactive: bool) {
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        let now = state.executor.workers();
        // A worker that left while its death count stayed put exited by itself: idle. Deaths
        // (crashes, timeouts, Ctrl-C) are reported by the commands that caused them. The
        // counters are read one by one, so a pid that just vanished is confirmed a tick later.
        let idle = secs(state.settings.idle);
        let suspects = std::mem::take(&mut state.suspects);
        for (slot, pid, deaths) in suspects {
            if now.get(slot).is_some_and(|w| w.deaths == deaths) {
                state.notes.push(format!("worker {pid} exited after {idle} idle; the next task starts a new one"));
            }
        }
        if now.len() == state.seen.len() {
            let vanished: Vec<(usize, u32, u64)> = (state.seen.iter().zip(&now).enumerate())
                .filter_map(|(slot, (before, after))| {
                    let pid = before.pid?;
                    (after.pid != Some(pid) && after.deaths == before.deaths).then_some((slot, pid, after.deaths))
                })
                .collect();
            state.suspects = vanished;
        }
        state.seen = now;
        if !state.at_prompt {
            continue;
        }
        let mut messages = std::mem::take(&mut state.notes);
        let (finished, running): (Vec<_>, Vec<_>) =
            std::mem::take(&mut state.background).into_iter().partition(|bg| bg.handle.is_finished());
        state.background = running;
        for bg in finished {
            let slept = secs(Duration::from_millis(bg.ms));
            messages.push(match bg.handle.join() {
                Ok(pid) => format!("background sleep of {slept} finished on worker {pid}"),
                Err(e) => format!("background sleep of {slept}: {e}"),
            });
        }
        if messages.is_empty() {
            continue;
        }
        let text: String = messages.iter().map(|m| format!("· {m}\n")).collect();
        match printer.as_mut().filter(|_| interactive) {
            Some(printer) => {
                // Never print through rustyline while holding the lock: its printer can block
                // until the next prompt reads the message.
                drop(state);
                let _ = printer.print(text);
            }
            None => {
                print!("\n{text}{PROMPT}");
                let _ = std::io::stdout().flush();
            }
        }
    }
}

fn help() {
    const LINES: [&str; 10] = [
        "run [N] [MS]    N CPU-bound tasks of MS ms of CPU each (default: 8 per worker, 100 ms), timed",
        "crash [KIND]    crash a worker on purpose: segv (default), abort, exit or panic",
        "hang            a task that never returns: the task timeout stops it, or press Ctrl-C",
        "bg [SECS]       a task that sleeps SECS (default 10) in the background: `workers` shows it busy",
        "workers         each worker slot: pid, idle or busy, tasks run, processes started, deaths",
        "resize N        use N worker processes (also: workers N)",
        "idle SECS       idle workers exit after SECS",
        "timeout SECS    the task timeout (`timeout off`: none)",
        "help            this list",
        "quit            stop the workers and leave (also Ctrl-D, or Ctrl-C at an empty prompt)",
    ];
    for line in LINES {
        println!("  {line}");
    }
}

fn parse_args() -> Settings {
    let mut settings = Settings {
        workers: workpool::cpu_count(),
        idle: Duration::from_secs(5),
        task_timeout: Some(Duration::from_secs(10)),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("usage: repl [--workers N] [--idle-timeout SECS] [--task-timeout SECS|off]");
            std::process::exit(0);
        }
        let value = args.next().unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        let parsed = match flag.as_str() {
            "--workers" => parse_count(&value).map(|n| settings.workers = n),
            "--idle-timeout" => parse_secs(&value).map(|d| settings.idle = d),
            "--task-timeout" if matches!(value.as_str(), "off" | "none" | "0") => {
                settings.task_timeout = None;
                Ok(())
            }
            "--task-timeout" => parse_secs(&value).map(|d| settings.task_timeout = Some(d)),
            _ => Err(format!("unknown option {flag}; try --help")),
        };
        if let Err(message) = parsed {
            fail(&message);
        }
    }
    settings
}

fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a positive whole number")),
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.trim_end_matches('s').parse::<f64>() {
        Ok(x) if x > 0.0 && x < 1e6 => Ok(Duration::from_secs_f64(x)),
        _ => Err(format!("`{s}` is not a number of seconds")),
    }
}

/// `1.5 s`, `250 ms`.
/// A byte count in words: "830 B", "12.3 KiB", "4.5 MiB".
fn bytes(n: u64) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
    }
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn fail(message: &str) -> ! {
    eprintln!("repl: {message}");
    std::process::exit(2)
}
