//! Tasks and helpers shared by the integration tests. Each test file that uses workers
//! includes this module and calls `workpool::test_support!()`.
#![allow(dead_code, unreachable_pub)]

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use workpool::{Executor, Task};

#[derive(Serialize, Deserialize)]
pub struct Square(pub u64);
impl Task for Square {
    type Output = u64;
    fn run(self) -> u64 {
        self.0 * self.0
    }
}

/// Sleeps, then answers with the worker's pid.
#[derive(Serialize, Deserialize)]
pub struct Nap(pub u64);
impl Task for Nap {
    type Output = u32;
    fn run(self) -> u32 {
        std::thread::sleep(Duration::from_millis(self.0));
        std::process::id()
    }
}

/// Creates `marker` (so the test knows it really started), then sleeps; answers its pid.
#[derive(Serialize, Deserialize)]
pub struct Marked {
    pub marker: PathBuf,
    pub ms: u64,
}
impl Task for Marked {
    type Output = u32;
    fn run(self) -> u32 {
        std::fs::write(&self.marker, b"started").expect("marker");
        std::thread::sleep(Duration::from_millis(self.ms));
        std::process::id()
    }
}

/// The length of its (large) argument.
#[derive(Serialize, Deserialize)]
pub struct Len(pub Vec<u8>);
impl Task for Len {
    type Output = usize;
    fn run(self) -> usize {
        self.0.len()
    }
}

/// The worker's pid, at once.
#[derive(Serialize, Deserialize)]
pub struct Pid;
impl Task for Pid {
    type Output = u32;
    fn run(self) -> u32 {
        std::process::id()
    }
}

#[derive(Serialize, Deserialize)]
pub struct Panic(pub String);
impl Task for Panic {
    type Output = u64;
    fn run(self) -> u64 {
        panic!("{}", self.0)
    }
}

/// Ways for a task to take its worker down.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
pub enum Crash {
    Abort,
    Segfault,
    Exit(i32),
}
impl Task for Crash {
    type Output = u64;
    fn run(self) -> u64 {
        match self {
            Crash::Abort => std::process::abort(),
            Crash::Segfault => {
                // SAFETY: none: a deliberate invalid write, as a buggy native library would make.
                // (`raise(SIGSEGV)` is not enough: std's handler returns from a raised SIGSEGV.)
                unsafe { std::ptr::null_mut::<u64>().write_volatile(1) };
                unreachable!("writing through a null pointer faults")
            }
            Crash::Exit(code) => std::process::exit(code),
        }
    }
}

/// Appends its id to a log file (O_APPEND, one write), then squares it, or crashes when told.
/// The log proves how many times each task really ran.
#[derive(Serialize, Deserialize)]
pub struct Logged {
    pub id: u64,
    pub log: PathBuf,
    pub crash: bool,
}
impl Task for Logged {
    type Output = u64;
    fn run(self) -> u64 {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        f.write_all(format!("{}\n", self.id).as_bytes()).expect("log write");
        drop(f);
        if self.crash {
            std::process::abort();
        }
        self.id * self.id
    }
}

/// Reads environment variables inside the worker.
#[derive(Serialize, Deserialize)]
pub struct Env(pub Vec<String>);
impl Task for Env {
    type Output = Vec<Option<String>>;
    fn run(self) -> Vec<Option<String>> {
        self.0.iter().map(|k| std::env::var(k).ok()).collect()
    }
}

/// Ways for a task to fault, or to take its channel or its process group with it.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub enum Hazard {
    /// `raise(sig)`, then returns 0 if it survived.
    Raise(i32),
    /// Recurses until the stack overflows.
    Overflow,
    /// `fork()`s a child that sleeps 20 s (holding every descriptor, the socket included),
    /// then aborts.
    ForkThenAbort,
    /// Closes every descriptor from 3 on (as a daemon does), then sleeps a second.
    CloseChannel,
    /// Starts `sleep 300`, writes its pid to the file, then sleeps for the given ms.
    Subprocess(PathBuf, u64),
}
impl Task for Hazard {
    type Output = u64;
    fn run(self) -> u64 {
        match self {
            Hazard::Raise(sig) => {
                unsafe { libc::raise(sig) };
                0
            }
            Hazard::Overflow => {
                fn deep(n: u64) -> u64 {
                    let pad = std::hint::black_box([n; 64]);
                    // Never true: the recursion only ends with the stack.
                    if std::hint::black_box(n) == u64::MAX {
                        return pad[0];
                    }
                    pad[(n % 64) as usize] + deep(n + 1)
                }
                deep(0)
            }
            Hazard::ForkThenAbort => {
                if unsafe { libc::fork() } == 0 {
                    std::thread::sleep(Duration::from_secs(20));
                    unsafe { libc::_exit(0) };
                }
                std::process::abort()
            }
            Hazard::CloseChannel => {
                for fd in 3..4096 {
                    unsafe { libc::close(fd) };
                }
                std::thread::sleep(Duration::from_secs(1));
                1
            }
            Hazard::Subprocess(file, ms) => {
                let child = std::process::Command::new("sleep").arg("300").spawn().expect("sleep");
                std::fs::write(&file, child.id().to_string()).expect("pid file");
                std::mem::forget(child);
                std::thread::sleep(Duration::from_millis(ms));
                2
            }
        }
    }
}

/// Waits a moment, then reads whatever is waiting on its worker's fd 3 (where a worker started
/// with posix_spawn has its task socket): the frames of the tasks queued behind it vanish.
#[derive(Serialize, Deserialize)]
pub struct EatFd3;
impl Task for EatFd3 {
    type Output = usize;
    fn run(self) -> usize {
        // Long enough for the executor to write the next task behind this one.
        std::thread::sleep(Duration::from_millis(400));
        let mut buf = vec![0u8; 1 << 16];
        let n = unsafe { libc::recv(3, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        n.max(0) as usize
    }
}

/// Writes its marker in `dir`, then waits (at most 10 s) until `n` markers are there: true when
/// all `n` tasks ran at the same time.
#[derive(Serialize, Deserialize)]
pub struct Rendezvous {
    pub dir: PathBuf,
    pub n: usize,
    pub me: usize,
}
impl Task for Rendezvous {
    type Output = bool;
    fn run(self) -> bool {
        std::fs::write(self.dir.join(self.me.to_string()), b"here").expect("marker");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::fs::read_dir(&self.dir).map(|d| d.count()).unwrap_or(0) >= self.n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }
}

/// The worker's current directory.
#[derive(Serialize, Deserialize)]
pub struct Cwd;
impl Task for Cwd {
    type Output = String;
    fn run(self) -> String {
        std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default()
    }
}

/// Allocates and leaks `mb` megabytes (touching every page), then answers with its pid.
#[derive(Serialize, Deserialize)]
pub struct Leak(pub usize);
impl Task for Leak {
    type Output = u32;
    fn run(self) -> u32 {
        let v = vec![1u8; self.0 << 20];
        std::mem::forget(v);
        std::process::id()
    }
}

/// Prints to stdout and stderr (with bytes that look like frames), then answers.
#[derive(Serialize, Deserialize)]
pub struct Noisy(pub u64);
impl Task for Noisy {
    type Output = u64;
    fn run(self) -> u64 {
        let junk = [0xffu8, 0xff, 0xff, 0x7f, 12, 0, 0, 0, 0, 0, 0, 0, 0];
        std::io::stdout().write_all(&junk).unwrap();
        println!(" noisy task {} on stdout", self.0);
        eprintln!("noisy task {} on stderr", self.0);
        self.0 + 1
    }
}

/// Serializes to an error (so `submit` must fail it without a worker).
#[derive(Debug)]
pub struct Unserializable;
impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Unserializable refuses to be serialized"))
    }
}
impl<'de> Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unserializable)
    }
}
impl Task for Unserializable {
    type Output = u64;
    fn run(self) -> u64 {
        0
    }
}

/// Serializes fine but refuses to deserialize (fails in the worker).
pub struct Undecodable(pub u64);
impl Serialize for Undecodable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}
impl<'de> Deserialize<'de> for Undecodable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        Err(serde::de::Error::custom(format!("Undecodable({v}) refuses to be deserialized")))
    }
}
impl Task for Undecodable {
    type Output = u64;
    fn run(self) -> u64 {
        self.0
    }
}

/// Runs fine in the worker, but its output cannot be serialized there.
#[derive(Serialize, Deserialize)]
pub struct BadOutput;
impl Task for BadOutput {
    type Output = Unserializable;
    fn run(self) -> Unserializable {
        Unserializable
    }
}

/// Never registered.
#[derive(Serialize, Deserialize)]
pub struct Stranger;
impl Task for Stranger {
    type Output = ();
    fn run(self) {}
}

workpool::register!(
    Square,
    Nap,
    Marked,
    Len,
    Pid,
    Panic,
    Crash,
    Logged,
    Env,
    Cwd,
    Hazard,
    Rendezvous,
    EatFd3,
    Leak,
    Noisy,
    Unserializable,
    Undecodable,
    BadOutput
);

/// A worker that exited and was reaped has no /proc entry; a zombie is dead too (its parent may
/// be gone and PID 1 may be slow to reap it).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// No /proc entry at all: exited *and* reaped (zombies do not count as gone).
pub fn reaped(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

/// Live worker pids of an executor.
pub fn worker_pids(ex: &Executor) -> BTreeSet<u32> {
    ex.workers().iter().filter_map(|w| w.pid).collect()
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("workpool-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn read_ids(log: &Path) -> Vec<u64> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(|l| l.parse().unwrap()).collect()
}

/// Makes this test process the reaper of its orphaned descendants (process-wide), so that
/// workers orphaned by a killed child program become *our* children, and can be reaped here.
pub fn become_subreaper() {
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0);
}

/// Reaps `pid` if it is a dead child of ours (no-op otherwise); true once it has no /proc entry.
pub fn reap_if_ours(pid: u32) -> bool {
    unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
    reaped(pid)
}

/// Kills every pid in `pids` when dropped, and reaps those that became our children, so a test
/// leaves nothing behind even when it fails.
pub struct KillOnDrop(pub Vec<u32>);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        for &pid in &self.0 {
            wait_until(Duration::from_millis(500), || reap_if_ours(pid));
        }
        reap_orphaned_fork_servers();
    }
}

/// Fork servers of child programs that died became our children (we are a subreaper): they
/// exit on their own once their program is gone; reap them, so that none is left as a zombie.
pub fn reap_orphaned_fork_servers() {
    let me = std::process::id();
    let servers: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            stat.contains("(workpool-fork)") && ppid == Some(me)
        })
        .collect();
    for pid in servers {
        wait_until(Duration::from_secs(2), || reap_if_ours(pid));
    }
}
