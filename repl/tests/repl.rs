//! Drives the shell (`repl/src/main.rs`) as a person would: types commands, presses Ctrl-C during long
//! commands and at the prompt, waits for idle workers to leave, and quits; then checks that
//! every worker process the shell ever named is gone.
//!
//! Three sessions go through pipes (the shell reads them line by line and echoes each command
//! after its prompt); one goes through a pseudo-terminal, where rustyline edits the line and
//! Ctrl-C is the byte 0x03 that the terminal turns into SIGINT, or that rustyline reads as a key
//! at the prompt.
//!
//! Cargo builds the shell's binary before it runs this file (`CARGO_BIN_EXE_workpool-repl`).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PROMPT: &str = "workpool> ";
/// Generous: the shell is a debug build and CI machines have two busy cores.
const ANSWER: Duration = Duration::from_secs(20);

/// The sessions run one at a time: they time things, and each uses both cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shell's binary, built by cargo for this test.
fn repl_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_workpool-repl"))
}

/// Orphaned workers become our children (so that we can reap them and look for leftovers
/// without depending on what init does with zombies).
fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "prctl(PR_SET_CHILD_SUBREAPER): {}", std::io::Error::last_os_error());
}

/// True once `pid` no longer runs: its /proc entry is gone, or it is an orphaned zombie of
/// ours, which this reaps.
fn is_gone(pid: u32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid on one pid with a valid status pointer; it fails harmlessly (ECHILD) for
    // processes that are not our children.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn assert_all_gone(pids: &BTreeSet<u32>, transcript: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left: Vec<u32> = pids.iter().copied().collect();
    while !left.is_empty() && Instant::now() < deadline {
        left.retain(|&pid| !is_gone(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(left.is_empty(), "worker processes {left:?} outlived the shell\n--- transcript ---\n{transcript}");
}

/// Removes terminal escape sequences and carriage returns.
fn plain(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\x1b' => match chars.next() {
                Some('[') => {
                    // CSI: parameters and intermediates, then one final byte in @..~.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    // OSC: up to BEL or ESC \.
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            c => out.push(c),
        }
    }
    out
}

/// Every worker pid the shell printed: `pid N` in results and errors, and the pid column of
/// its `workers` table.
fn pids_in(text: &str) -> BTreeSet<u32> {
    let mut pids = BTreeSet::new();
    for piece in text.split("pid ").skip(1) {
        if let Ok(pid) = piece.chars().take_while(char::is_ascii_digit).collect::<String>().parse() {
            pids.insert(pid);
        }
    }
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if let [slot, pid, state, ..] = cols[..] {
            if slot.parse::<usize>().is_ok() && matches!(state, "idle" | "busy") {
                if let Ok(pid) = pid.parse() {
                    pids.insert(pid);
                }
            }
        }
    }
    pids
}

/// The pids of the running workers in one `workers` table.
fn table_pids(table: &str) -> Vec<u32> {
    pids_in(table).into_iter().filter(|pid| table.contains(&format!(" {pid} "))).collect()
}

/// The sum of the deaths column of a `workers` table (rows of running or exited workers).
fn deaths(table: &str) -> u64 {
    let rows = table.lines().map(|l| l.split_whitespace().collect::<Vec<_>>());
    rows.filter(|cols| cols.len() == 6 && cols[0].parse::<usize>().is_ok())
        .filter_map(|cols| cols[5].parse::<u64>().ok())
        .sum()
}

/// The busy time of the `all:` line of a `workers` table, in seconds ("busy 312 ms", "busy 1.25 s").
fn busy_in_total(table: &str) -> f64 {
    let line = table.lines().find(|l| l.trim_start().starts_with("all:")).expect("an `all:` line");
    seconds_after(line, "busy ").expect("a busy time")
}

/// The duration printed right after the first `marker` in `text` ("276 ms" or "1.50 s"), in
/// seconds.
fn seconds_after(text: &str, marker: &str) -> Option<f64> {
    let words: Vec<&str> = text.split(marker).nth(1)?.split([' ', ',']).collect();
    let value: f64 = words.first()?.parse().ok()?;
    match *words.get(1)? {
        "ms" => Some(value / 1000.0),
        "s" => Some(value),
        _ => None,
    }
}

/// A running shell, its output so far, and a cursor into that output.
struct Session {
    child: Child,
    input: Option<Box<dyn Write + Send>>,
    chunks: Receiver<Vec<u8>>,
    /// Everything read so far, escape sequences removed.
    text: String,
    raw: Vec<u8>,
    /// Where the next search starts.
    pos: usize,
    /// Through a pseudo-terminal: the shell does not echo commands itself.
    terminal: bool,
}

impl Session {
    fn read_into(chunks: &std::sync::mpsc::Sender<Vec<u8>>, mut from: impl Read) {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return, // EOF, or EIO on a terminal whose last user left
                Ok(n) => {
                    if chunks.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Through pipes, in its own process group (so a SIGINT to the group reaches the shell
    /// and nothing else: its workers have process groups of their own).
    fn with_pipes(args: &[&str]) -> Session {
        become_subreaper();
        let mut child = Command::new(repl_binary())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start the repl example");
        let (tx, rx) = channel();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let tx2 = tx.clone();
        std::thread::spawn(move || Session::read_into(&tx, stdout));
        std::thread::spawn(move || Session::read_into(&tx2, stderr));
        let stdin: ChildStdin = child.stdin.take().expect("piped");
        Session {
            child,
            input: Some(Box::new(stdin)),
            chunks: rx,
            text: String::new(),
            raw: Vec::new(),
            pos: 0,
            terminal: false,
        }
    }

    /// On a new pseudo-terminal that becomes the shell's controlling terminal.
    fn with_terminal(args: &[&str]) -> Session {
        become_subreaper();
        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize { ws_row: 40, ws_col: 120, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: valid out-pointers; a null name and termios mean "defaults".
        let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two fresh descriptors that nothing else owns.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the terminal"));
        let mut command = Command::new(repl_binary());
        command.args(args).env("TERM", "xterm").stdin(stdio(&slave)).stdout(stdio(&slave)).stderr(stdio(&slave));
        // SAFETY: setsid and ioctl are async-signal-safe and allocate nothing. The child gets a
        // session of its own (and so a process group of its own) with the terminal on stdin
        // as its controlling terminal, as a shell would set it up.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start the repl example on a terminal");
        drop(slave);
        let reader = File::from(master.try_clone().expect("dup the terminal's master"));
        let (tx, rx) = channel();
        std::thread::spawn(move || Session::read_into(&tx, reader));
        Session {
            child,
            input: Some(Box::new(File::from(master))),
            chunks: rx,
            text: String::new(),
            raw: Vec::new(),
            pos: 0,
            terminal: true,
        }
    }

    fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    fn fail(&self, what: &str) -> ! {
        panic!("{what}\n--- transcript (as read) ---\n{}\n--- end ---", self.text)
    }

    /// Takes in output until `deadline`; false when the shell closed its output.
    fn pump(&mut self, deadline: Instant) -> bool {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.chunks.recv_timeout(wait) {
            Ok(chunk) => {
                self.raw.extend_from_slice(&chunk);
                // Chunks may split UTF-8 sequences: decode everything read so far each time.
                let all = String::from_utf8_lossy(&self.raw).into_owned();
                if self.terminal {
                    // A terminal asks for the cursor position now and then; answer like one.
                    if chunk.windows(4).any(|w| w == b"\x1b[6n") {
                        self.write_raw(b"\x1b[1;1R");
                    }
                    self.text = plain(&all);
                } else {
                    self.text = all;
                }
                true
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    /// Waits for `needle` after the cursor; returns the text up to its end and moves past it.
    fn expect(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(at) = self.text[self.pos..].find(needle) {
                let end = self.pos + at + needle.len();
                let seen = self.text[self.pos..end].to_string();
                self.pos = end;
                return seen;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("no `{needle}` within {within:?}"));
            }
            if !self.pump(deadline) && !self.text[self.pos..].contains(needle) {
                self.fail(&format!("the shell closed its output before printing `{needle}`"));
            }
        }
    }

    fn write_raw(&mut self, bytes: &[u8]) {
        let input = self.input.as_mut().expect("input is open");
        input.write_all(bytes).and_then(|()| input.flush()).expect("write to the shell");
    }

    /// Types a command (and Enter) without waiting for it.
    fn type_line(&mut self, line: &str) {
        let enter = if self.terminal { "\r" } else { "\n" };
        self.write_raw(format!("{line}{enter}").as_bytes());
    }

    /// Through pipes: types `line` and returns what it printed, up to the next prompt.
    fn command(&mut self, line: &str) -> String {
        assert!(!self.terminal, "terminal sessions wait for specific output instead");
        self.type_line(line);
        // The echo follows a prompt that may already have been consumed.
        if self.text[..self.pos].ends_with(PROMPT) {
            self.pos -= PROMPT.len();
        }
        self.expect(&format!("{PROMPT}{line}\n"), ANSWER);
        let out = self.expect(PROMPT, ANSWER);
        out[..out.len() - PROMPT.len()].to_string()
    }

    /// Ctrl-C as the terminal sends it to a foreground job: SIGINT to the process group.
    fn interrupt_group(&self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill with a negative pid signals that process group.
        let rc = unsafe { libc::kill(-pgid, libc::SIGINT) };
        assert_eq!(rc, 0, "kill(-{pgid}, SIGINT): {}", std::io::Error::last_os_error());
    }

    fn close_input(&mut self) {
        self.input = None;
    }

    /// Waits for the shell to exit (reading its last words).
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Drain what is left of its output.
                let drain = Instant::now() + Duration::from_millis(500);
                while Instant::now() < drain && self.pump(drain) {}
                return status;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("the shell did not exit within {within:?}"));
            }
            self.pump(Instant::now() + Duration::from_millis(50));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // On failure, leave nothing behind: the shell dies, and its workers with it (they
        // watch their parent); they are reaped here as our orphans.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let pids = pids_in(&self.text);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !pids.iter().all(|&pid| is_gone(pid)) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_session_through_pipes_survives_crashes_ctrl_c_and_idle_exits() {
    let _serial = serial();
    let mut s = Session::with_pipes(&["--workers", "2", "--idle-timeout", "1.5", "--task-timeout", "10"]);
    s.expect("workpool repl: 2 worker processes", ANSWER);
    s.expect(PROMPT, ANSWER);

    // Workers start lazily.
    let table = s.command("workers");
    assert_eq!(table.matches("not started").count(), 2, "no worker before the first task:\n{table}");

    let out = s.command("run 6 50");
    assert!(out.contains("6 tasks × 50 ms on 2 workers: ") && out.contains(" of CPU time in "), "{out}");
    assert!(out.contains("started worker processes"), "{out}");
    let table = s.command("workers");
    let first = table_pids(&table);
    assert_eq!(first.len(), 2, "two running workers:\n{table}");
    let idle = table.lines().filter(|l| l.split_whitespace().nth(2) == Some("idle")).count();
    assert_eq!(idle, 2, "both idle once the batch is done:\n{table}");
    for pid in &first {
        assert!(Path::new(&format!("/proc/{pid}")).exists(), "worker {pid} runs");
    }
    // Where the time went: the slots were busy at least as long as the tasks used the CPU
    // (a task spins a calibrated number of rounds, so its CPU time is near 50 ms, not exactly),
    // and not absurdly longer.
    let cpu = seconds_after(&out, "on 2 workers: ").expect("the CPU time of the batch");
    let busy = busy_in_total(&table);
    assert!(cpu > 0.15, "six tasks of about 50 ms each: {out}");
    assert!(busy >= cpu * 0.98 && busy < 3.0, "busy {busy} s for {cpu} s of CPU time in:\n{out}\n{table}");
    assert!(table.contains("  slot 0: busy ") && table.contains("  slot 1: busy "), "a stats line per slot:\n{table}");

    // Crashes cost one task each; the pool carries on.
    let out = s.command("crash segv");
    assert!(out.contains("killed by signal SIGSEGV") && out.contains("the pool carries on"), "{out}");
    let out = s.command("crash abort");
    assert!(out.contains("killed by signal SIGABRT") && out.contains("the pool carries on"), "{out}");
    let out = s.command("crash panic");
    assert!(out.contains("panicked on purpose") && out.contains("lives on"), "{out}");
    let table = s.command("workers");
    assert!(table.contains("deaths"), "{table}");
    assert_eq!(deaths(&table), 2, "a segfault and an abort; a panic is no death:\n{table}");
    assert!(table.contains("deaths: 2 signal, 0 exit, 0 timeout, 0 Ctrl-C; "), "by cause:\n{table}");

    // Ctrl-C during a long batch: back to the prompt, the pool intact.
    s.type_line("run 100 200");
    s.expect("run 100 200\n", ANSWER);
    std::thread::sleep(Duration::from_millis(1200));
    s.interrupt_group();
    let out = s.expect(PROMPT, ANSWER);
    assert!(out.contains("interrupted after") && out.contains("of 100 tasks done"), "{out}");
    assert!(!out.contains("100 of 100"), "the batch was cut short:\n{out}");
    let out = s.command("run 4 20");
    assert!(out.contains("4 tasks × 20 ms on 2 workers"), "the shell answers after Ctrl-C:\n{out}");

    // Ctrl-C stops a task that would never end.
    s.type_line("hang");
    s.expect("or press Ctrl-C", ANSWER);
    std::thread::sleep(Duration::from_millis(500));
    s.interrupt_group();
    let out = s.expect(PROMPT, ANSWER);
    assert!(out.contains("interrupted after"), "{out}");

    // ... and so does the task timeout.
    let out = s.command("timeout 1");
    assert!(out.contains("task timeout 1 s"), "{out}");
    let out = s.command("hang");
    assert!(out.contains("timed out after"), "{out}");

    let out = s.command("timeout off");
    assert!(out.contains("task timeout none"), "{out}");

    // A background task keeps a worker busy while the prompt is back.
    let out = s.command("bg 1");
    assert!(out.contains("runs in the background"), "{out}");
    let table = s.command("workers");
    assert!(table.contains("busy (1)"), "{table}");
    s.expect("background sleep of 1 s finished on worker", ANSWER);

    // Idle workers leave by themselves, and say so; the next command brings them back.
    let live = table_pids(&s.command("workers"));
    assert!(!live.is_empty(), "the background task's worker is still there");
    s.expect("exited after 1.50 s idle", ANSWER);
    let table = s.command("workers");
    assert!(table_pids(&table).is_empty(), "every worker left after the idle timeout:\n{table}");
    assert!(live.iter().all(|&pid| is_gone(pid)), "idle workers {live:?} are gone");
    let out = s.command("run 2 10");
    assert!(out.contains("started worker process"), "{out}");

    let out = s.command("resize 3");
    assert!(out.contains("now: 3 worker processes"), "{out}");
    let out = s.command("run 3 10");
    assert!(out.contains("on 3 workers"), "{out}");

    s.type_line("quit");
    s.expect("quit\n", ANSWER);
    let out = s.expect("\n", ANSWER);
    assert!(out.starts_with("bye: all") && out.contains("worker processes have exited"), "{out}");
    let status = s.wait_exit(ANSWER);
    assert_eq!(status.code(), Some(0), "quit exits 0");
    let pids = pids_in(&s.text);
    assert!(pids.len() >= 4, "the session named the workers it used: {pids:?}");
    assert_all_gone(&pids, &s.text);
}

#[test]
fn end_of_input_quits_cleanly() {
    let _serial = serial();
    let mut s = Session::with_pipes(&["--workers", "2"]);
    s.expect(PROMPT, ANSWER);
    let out = s.command("run 8 50");
    assert!(out.contains("8 tasks × 50 ms"), "{out}");
    let table = s.command("workers");
    assert_eq!(table_pids(&table).len(), 2, "{table}");
    s.close_input();
    s.expect("(end of input)", ANSWER);
    s.expect("bye: all 2 worker processes have exited", ANSWER);
    let status = s.wait_exit(ANSWER);
    assert_eq!(status.code(), Some(0));
    assert_all_gone(&pids_in(&s.text), &s.text);
}

#[test]
fn ctrl_c_at_an_idle_prompt_exits_130_without_leaving_workers() {
    let _serial = serial();
    let mut s = Session::with_pipes(&["--workers", "2"]);
    s.expect(PROMPT, ANSWER);
    s.command("run 8 50");
    let table = s.command("workers");
    assert_eq!(table_pids(&table).len(), 2, "{table}");
    // Nothing waits for a result now: Ctrl-C means "leave", as in any program.
    s.interrupt_group();
    let status = s.wait_exit(ANSWER);
    assert_eq!(status.code(), Some(130), "exit status {status:?} (signal {:?})", status.signal());
    assert_all_gone(&pids_in(&s.text), &s.text);
}

#[test]
fn a_session_on_a_terminal_edits_lines_and_handles_ctrl_c() {
    let _serial = serial();
    let mut s = Session::with_terminal(&["--workers", "2", "--task-timeout", "off"]);
    s.expect("workpool repl: 2 worker processes", ANSWER);
    s.expect(PROMPT, ANSWER);

    s.type_line("run 4 20");
    s.expect("4 tasks × 20 ms on 2 workers", ANSWER);
    s.expect(PROMPT, ANSWER);

    // Ctrl-C while a task hangs: the terminal sends SIGINT; the command stops, the shell stays.
    s.type_line("hang");
    s.expect("press Ctrl-C", ANSWER);
    std::thread::sleep(Duration::from_millis(500));
    s.write_raw(b"\x03");
    s.expect("interrupted after", ANSWER);
    s.expect(PROMPT, ANSWER);

    // Ctrl-C on a half-typed line clears it, and the shell stays.
    s.write_raw(b"bogus");
    s.expect("bogus", ANSWER);
    s.write_raw(b"\x03");
    std::thread::sleep(Duration::from_millis(200));
    s.type_line("workers");
    let table = s.expect("deaths", ANSWER);
    assert!(!table.contains("unknown command"), "Ctrl-C cleared `bogus`:\n{table}");
    let table = s.expect(PROMPT, ANSWER);
    assert_eq!(deaths(&table), 1, "the hanging task's worker was killed:\n{table}");

    // Ctrl-C at an empty prompt quits cleanly.
    s.write_raw(b"\x03");
    s.expect("bye: the worker process has exited", ANSWER);
    let status = s.wait_exit(ANSWER);
    assert_eq!(status.code(), Some(0), "Ctrl-C at the prompt quits with status 0");
    assert_all_gone(&pids_in(&s.text), &s.transcript());
}
