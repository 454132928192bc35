//! The fork server's own side: the loop that forks workers, reaps them and reports their
//! statuses (the protocol is described in `mod.rs`).

use super::super::marker::{self, Marker};
use super::super::{wire, worker};
use super::MAX_MESSAGE;
use crate::sys;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;

/// The server's loop (never returns): entered from `init()` in a process started as a fork server.
pub(crate) fn serve(marker: &Marker) -> ! {
    if marker.die_with_parent && (sys::die_with_parent().is_err() || sys::parent_pid() != marker.parent) {
        std::process::exit(marker::EXIT_ORPHAN);
    }
    // SAFETY: the parent put our end of the control socket on WORKER_FD; nobody else owns it.
    let control = unsafe { OwnedFd::from_raw_fd(sys::WORKER_FD) };
    // `ps` shows what this process is; workers get the program's own name back.
    let name = std::fs::read("/proc/self/comm").unwrap_or_default();
    sys::set_name(b"workpool-fork");
    let _ = sys::set_cloexec(control.as_raw_fd());
    // A test binary's harness keeps its main thread waiting while the entry test (this code)
    // runs: it holds nothing a fork could copy in a locked state. Anywhere else, another
    // thread could hold a lock at fork time, so the server refuses.
    let threads = sys::thread_count();
    let why = if threads == 1 || crate::test_support::registered() {
        String::new()
    } else {
        format!(
            "the fork server would have {threads} threads at fork time (something started threads before \
             workpool::init()); workers are started with posix_spawn instead"
        )
    };
    let mut hello = vec![b'H'];
    hello.extend_from_slice(&wire::PROTOCOL_VERSION.to_le_bytes());
    hello.extend_from_slice(&marker::fingerprint().to_le_bytes());
    hello.extend_from_slice(&std::process::id().to_le_bytes());
    hello.extend_from_slice(why.as_bytes());
    if sys::send_with_fds(control.as_fd(), &hello, &[]).is_err() || !why.is_empty() {
        std::process::exit(0);
    }
    let mut children: Vec<(u32, OwnedFd)> = Vec::new();
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let mut watch: Vec<(BorrowedFd<'_>, bool)> = vec![(control.as_fd(), false)];
        watch.extend(children.iter().map(|(_, fd)| (fd.as_fd(), false)));
        let Ok(ready) = sys::poll_many(&watch, None) else { shut_down(&children) };
        drop(watch);
        let exited: Vec<usize> =
            ready.iter().skip(1).enumerate().filter(|(_, r)| r.readable || r.hangup).map(|(i, _)| i).collect();
        for &i in exited.iter().rev() {
            let (pid, _fd) = children.remove(i);
            let mut status = 0;
            // SAFETY: `status` is a valid out-pointer; `pid` is our exited child.
            unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
            let mut report = vec![b'X'];
            report.extend_from_slice(&pid.to_le_bytes());
            report.extend_from_slice(&status.to_le_bytes());
            if sys::send_with_fds(control.as_fd(), &report, &[]).is_err() {
                shut_down(&children);
            }
        }
        if !(ready[0].readable || ready[0].hangup) {
            continue;
        }
        let (n, fds) = match sys::recv_with_fds(control.as_fd(), &mut buf, 4) {
            Ok((0, _)) | Err(_) => shut_down(&children),
            Ok(got) => got,
        };
        let Some(request) = parse_spawn(&buf[..n]) else { shut_down(&children) };
        let [socket, stdout, stderr, claims]: [OwnedFd; 4] = match fds.try_into() {
            Ok(fds) => fds,
            Err(_) => shut_down(&children),
        };
        // SAFETY: this process is single-threaded (checked above), so the child may run Rust
        // code freely: no lock can be held by a thread that does not exist in the child.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let inherited: Vec<RawFd> =
                std::iter::once(control.as_raw_fd()).chain(children.iter().map(|(_, fd)| fd.as_raw_fd())).collect();
            sys::set_name(name.strip_suffix(b"\n").unwrap_or(&name));
            become_worker(&request, inherited, socket, [stdout, stderr], claims);
        }
        drop((socket, stdout, stderr, claims));
        let mut reply = Vec::with_capacity(9);
        if pid < 0 {
            reply.push(b'F');
            reply.extend_from_slice(&request.id.to_le_bytes());
            reply.extend_from_slice(&io::Error::last_os_error().raw_os_error().unwrap_or(0).to_le_bytes());
            let _ = sys::send_with_fds(control.as_fd(), &reply, &[]);
            continue;
        }
        let pid = pid as u32;
        match sys::pidfd_open(pid) {
            Ok(pidfd) => {
                reply.push(b'P');
                reply.extend_from_slice(&request.id.to_le_bytes());
                reply.extend_from_slice(&pid.to_le_bytes());
                let sent = sys::send_with_fds(control.as_fd(), &reply, &[pidfd.as_fd()]);
                children.push((pid, pidfd));
                if sent.is_err() {
                    shut_down(&children);
                }
            }
            Err(e) => {
                sys::kill(pid);
                sys::reap(pid);
                reply.push(b'F');
                reply.extend_from_slice(&request.id.to_le_bytes());
                reply.extend_from_slice(&e.raw_os_error().unwrap_or(0).to_le_bytes());
                let _ = sys::send_with_fds(control.as_fd(), &reply, &[]);
            }
        }
    }
}

/// A spawn request.
struct Request {
    id: u32,
    cwd: Vec<u8>,
    /// True: `env` replaces the whole environment; false: it is added to the server's own.
    replace: bool,
    env: Vec<(Vec<u8>, Vec<u8>)>,
}

fn parse_spawn(m: &[u8]) -> Option<Request> {
    if m.first() != Some(&b'S') || m.len() < 9 {
        return None;
    }
    let id = u32::from_le_bytes(m[1..5].try_into().ok()?);
    let cwd_len = u32::from_le_bytes(m[5..9].try_into().ok()?) as usize;
    let cwd = m.get(9..9 + cwd_len)?.to_vec();
    let replace = match m.get(9 + cwd_len)? {
        b'=' => true,
        b'+' => false,
        _ => return None,
    };
    let env = m[10 + cwd_len..]
        .split(|&b| b == 0)
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let eq = kv.iter().position(|&b| b == b'=')?;
            Some((kv[..eq].to_vec(), kv[eq + 1..].to_vec()))
        })
        .collect();
    Some(Request { id, cwd, replace, env })
}

/// End of the server: kill every worker's process group, reap them, exit.
fn shut_down(children: &[(u32, OwnedFd)]) -> ! {
    for (pid, _) in children {
        sys::kill_group(*pid);
        sys::kill(*pid);
    }
    for (pid, _) in children {
        sys::reap(*pid);
    }
    std::process::exit(0)
}

/// In the forked child: close the server's descriptors, take the asking program's stdio,
/// environment and directory, and serve tasks on `socket`. Never returns.
fn become_worker(request: &Request, inherited: Vec<RawFd>, socket: OwnedFd, stdio: [OwnedFd; 2], claims: OwnedFd) -> ! {
    let [stdout, stderr] = stdio;
    let server = sys::parent_pid();
    for fd in inherited {
        // SAFETY: descriptors of the server this child must not keep (the control socket and
        // the other workers' pidfds); nothing in the child uses them.
        unsafe { libc::close(fd) };
    }
    // SAFETY: plain system calls on descriptors this child owns.
    unsafe {
        libc::setpgid(0, 0);
        libc::dup2(stdout.as_raw_fd(), 1);
        libc::dup2(stderr.as_raw_fd(), 2);
    }
    drop((stdout, stderr));
    if sys::die_with_parent().is_err() || sys::parent_pid() != server {
        std::process::exit(marker::EXIT_ORPHAN);
    }
    if request.replace {
        for (key, _) in std::env::vars_os() {
            std::env::remove_var(key);
        }
    }
    for (key, value) in &request.env {
        std::env::set_var(std::ffi::OsStr::from_bytes(key), std::ffi::OsStr::from_bytes(value));
    }
    if !request.cwd.is_empty() {
        let _ = std::env::set_current_dir(std::ffi::OsStr::from_bytes(&request.cwd));
    }
    let claims = super::super::claims::Claims::map(claims.as_fd()).ok();
    worker::serve_forked(UnixStream::from(socket), claims)
}
