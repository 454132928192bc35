//! The remote end of a link: what this program becomes when a launcher started it with the
//! marker role `remote` (see `process/mod.rs`).
//!
//! The supervisor connects back to the executor, passes the challenge (`auth.rs`), then starts
//! an ordinary worker next to it (`posix_spawn`, its socket on fd 3, in a process group of its
//! own, dying with the supervisor) and relays between the two: heartbeats out while the worker
//! is quiet (even while it runs a long task), heartbeats expected in. It ends everything — the
//! worker's whole process group included — when the executor's connection closes without a
//! `BYE`, falls silent for [`relay::SILENCE`], or when its standard input ends (the launcher is
//! gone). When the worker exits, its wait status goes to the executor in an `EXIT` frame, so a
//! crash on another host is reported with its signal, as a local one.

use super::auth;
use super::relay::{self, HEARTBEAT_EVERY, SILENCE};
use super::{CONNECT_VAR, LAUNCH_VAR};
use crate::launcher::KEY_VAR;
use crate::process::exec::posix_spawn;
use crate::process::marker::{self, Marker, Role};
use crate::process::wire;
use crate::sys;
use std::io::{self, BufRead, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit code of a supervisor that could not join (bad setup, wrong key, no connection).
const EXIT_JOIN: i32 = 72;

/// Serves as a remote supervisor; never returns.
pub(crate) fn serve() -> ! {
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("workpool remote worker on {}: {e}", hostname());
            EXIT_JOIN
        }
    };
    std::process::exit(code)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map_or_else(|_| "this host".into(), |h| h.trim().to_string())
}

/// Where this supervisor runs, in words, from what its launcher told it: the node (Slurm's
/// `SLURMD_NODENAME`, else the host name) and, under Slurm, the job step (`SLURM_JOB_ID`,
/// `SLURM_STEP_ID`), under MPI, the rank (`OMPI_COMM_WORLD_RANK`, `PMIX_RANK` or `PMI_RANK`, of
/// `OMPI_COMM_WORLD_SIZE` or `PMI_SIZE`). The parent names the worker by it in what it reports.
pub(crate) fn placement(var: impl Fn(&str) -> Option<String>) -> String {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    let node = var("SLURMD_NODENAME").unwrap_or_else(hostname);
    let mut place = if let Some(job) = var("SLURM_JOB_ID") {
        let step = var("SLURM_STEP_ID").map(|s| format!(".{s}")).unwrap_or_default();
        format!("{node}, Slurm step {job}{step}")
    } else if let Some(rank) = var("OMPI_COMM_WORLD_RANK").or_else(|| var("PMIX_RANK")).or_else(|| var("PMI_RANK")) {
        let size =
            var("OMPI_COMM_WORLD_SIZE").or_else(|| var("PMI_SIZE")).map(|s| format!(" of {s}")).unwrap_or_default();
        format!("{node}, MPI rank {rank}{size}")
    } else {
        node
    };
    while place.len() > relay::CONTROL_MAX {
        place.pop();
    }
    place
}

fn run() -> io::Result<i32> {
    let var = |name: &str| std::env::var(name).map_err(|_| io::Error::other(format!("{name} is not set")));
    let address: SocketAddr = var(CONNECT_VAR)?.parse().map_err(|e| io::Error::other(format!("{CONNECT_VAR}: {e}")))?;
    let launch: u64 = var(LAUNCH_VAR)?.parse().map_err(|e| io::Error::other(format!("{LAUNCH_VAR}: {e}")))?;
    let (key_text, watch_stdin) = match std::env::var(KEY_VAR) {
        Ok(text) => (text, false),
        Err(_) => {
            let mut line = String::new();
            io::stdin().lock().read_line(&mut line)?;
            (line, true)
        }
    };
    for name in [CONNECT_VAR, LAUNCH_VAR, KEY_VAR] {
        std::env::remove_var(name);
    }
    let key = auth::from_hex(&key_text).ok_or_else(|| io::Error::other("no valid key on stdin or in WORKPOOL_KEY"))?;
    let print = auth::build_print(); // reads this binary: before the clock of the challenge runs
    let mut tcp = TcpStream::connect_timeout(&address, Duration::from_secs(10))
        .map_err(|e| io::Error::other(format!("connecting to the executor at {address}: {e}")))?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(SILENCE))?;
    auth::worker_side(&mut tcp, &key, launch, print)
        .map_err(|e| io::Error::other(format!("joining the executor at {address}: {e}")))?;
    tcp.set_read_timeout(Some(SILENCE))?;
    let place = placement(|name| std::env::var(name).ok());
    relay::write_all(&mut tcp, &relay::control(relay::PLACE, place.as_bytes()))?;

    let (ours, theirs) = UnixStream::pair()?;
    let high = |fd: BorrowedFd<'_>| sys::dup_high(fd);
    let null = std::fs::File::open("/dev/null")?;
    let (socket, stdout, stderr, no_ring) =
        (high(theirs.as_fd())?, high(io::stdout().as_fd())?, high(io::stderr().as_fd())?, high(null.as_fd())?);
    let fds = [(socket.as_fd(), sys::WORKER_FD), (stdout.as_fd(), 4), (stderr.as_fd(), 5), (no_ring.as_fd(), 6)];
    let worker_marker = Marker { role: Role::Worker, parent: std::process::id(), die_with_parent: true };
    // The worker's channel is relayed over TCP, which carries no descriptors: it sends every
    // `Bytes` inline.
    let env = [(crate::oob::INLINE_ONLY_VAR.to_string(), "1".to_string())];
    let pid = posix_spawn(&worker_marker, &fds, true, &env)?;
    drop((socket, stdout, stderr, no_ring, theirs, null));
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            sys::kill(pid);
            sys::reap(pid);
            return Err(e);
        }
    };
    let kill_worker = move || {
        sys::kill(pid);
        sys::kill_group(pid);
    };

    // Executor → worker.
    let lost = Arc::new(AtomicBool::new(false));
    {
        let (mut tcp, mut to_worker, lost) = (tcp.try_clone()?, ours.try_clone()?, lost.clone());
        std::thread::Builder::new().name("workpool-link-in".into()).spawn(move || {
            let mut splitter = relay::Splitter::default();
            let mut buf = vec![0u8; wire::READ_CHUNK];
            let mut out = Vec::with_capacity(wire::READ_CHUNK);
            loop {
                let pieces = match relay::read_timeout(&mut tcp, &mut buf) {
                    Ok(Some(n)) if n > 0 => {
                        out.clear();
                        splitter.split(&buf[..n], true, &mut out)
                    }
                    _ => break, // closed, silent or broken: the executor is gone
                };
                let Ok(controls) = pieces else { break };
                if relay::write_all(&mut to_worker, &out).is_err() {
                    return; // the worker is gone: the main thread reports it
                }
                if controls.iter().any(|(kind, _)| *kind == relay::BYE) {
                    // Graceful: the worker sees end of stream, finishes and exits.
                    let _ = to_worker.shutdown(Shutdown::Write);
                    return;
                }
            }
            lost.store(true, Ordering::SeqCst);
            kill_worker();
        })?;
    }

    // Worker → executor, with heartbeats; the worker's exit; the launcher's end.
    let mut splitter = relay::Splitter::default();
    let mut buf = vec![0u8; wire::READ_CHUNK];
    let mut out = Vec::with_capacity(wire::READ_CHUNK);
    let mut last = Instant::now();
    let stdin = io::stdin();
    let mut from_worker = &ours;
    loop {
        let mut watch = vec![(ours.as_fd(), false), (pidfd.as_fd(), false)];
        if watch_stdin {
            watch.push((stdin.as_fd(), false));
        }
        let ready = sys::poll_many(&watch, Some(HEARTBEAT_EVERY))?;
        if watch_stdin && (ready[2].readable || ready[2].hangup) {
            let mut scratch = [0u8; 256];
            // SAFETY: read(2) into a stack buffer of its length.
            let n = unsafe { libc::read(stdin.as_raw_fd(), scratch.as_mut_ptr().cast(), scratch.len()) };
            if n <= 0 {
                lost.store(true, Ordering::SeqCst); // the launcher is gone
                kill_worker();
            }
        }
        if ready[0].readable || ready[0].hangup {
            match from_worker.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.clear();
                    splitter.split(&buf[..n], false, &mut out)?;
                    if relay::write_all(&mut tcp, &out).is_err() {
                        lost.store(true, Ordering::SeqCst);
                        kill_worker();
                    }
                    last = Instant::now();
                    continue;
                }
            }
        }
        if ready[1].readable || ready[1].hangup {
            break;
        }
        if last.elapsed() >= HEARTBEAT_EVERY && splitter.at_boundary() && !lost.load(Ordering::SeqCst) {
            if relay::write_all(&mut tcp, &relay::control(relay::HEARTBEAT, &[])).is_err() {
                lost.store(true, Ordering::SeqCst);
                kill_worker();
            }
            last = Instant::now();
        }
    }
    // The worker closed its socket or exited: what it wrote last goes out first.
    ours.set_nonblocking(true)?;
    while let Ok(n) = from_worker.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.clear();
        splitter.split(&buf[..n], false, &mut out)?;
        let _ = relay::write_all(&mut tcp, &out);
    }
    if sys::poll(pidfd.as_fd(), false, Some(Duration::from_millis(100))).is_ok_and(|r| !(r.readable || r.hangup)) {
        kill_worker(); // end of stream from a live worker: its task closed its socket
    }
    let status = wait_status(pid);
    sys::kill_group(pid); // whatever its tasks left behind
    if lost.load(Ordering::SeqCst) {
        return Ok(marker::EXIT_ORPHAN);
    }
    if splitter.at_boundary() {
        let _ = relay::write_all(&mut tcp, &relay::control(relay::EXIT, &status.to_le_bytes()));
    }
    let _ = tcp.shutdown(Shutdown::Both);
    Ok(0)
}

/// Reaps the worker and returns its raw wait status.
fn wait_status(pid: u32) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return status;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::placement;

    #[test]
    fn placement_names_the_node_and_the_step_or_rank() {
        fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        }
        let slurm = [("SLURMD_NODENAME", "node17"), ("SLURM_JOB_ID", "42"), ("SLURM_STEP_ID", "3")];
        assert_eq!(placement(env(&slurm)), "node17, Slurm step 42.3");
        let mpi = [("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "1")];
        assert!(placement(env(&mpi)).ends_with(", MPI rank 0 of 1"), "{}", placement(env(&mpi)));
        assert!(placement(env(&[("PMI_RANK", "2")])).ends_with(", MPI rank 2"));
        assert_eq!(placement(env(&[])), super::hostname());
        let long = "n".repeat(1000);
        assert!(placement(env(&[("SLURMD_NODENAME", &long)])).len() <= super::relay::CONTROL_MAX);
    }
}
