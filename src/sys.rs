//! The few system calls std does not offer, each behind a safe function.
//!
//! Linux-first (`PR_SET_PDEATHSIG` is Linux-only; elsewhere EOF on the task socket is what stops
//! an orphaned worker). Every `unsafe` block here is a plain FFI call with valid arguments.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

/// The file descriptor a worker finds its socket on.
pub(crate) const WORKER_FD: RawFd = 3;

/// What `poll` saw on a descriptor.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ready {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// Hang-up or error: the peer is gone (reading still drains what it sent).
    pub(crate) hangup: bool,
}

/// Waits until `fd` is readable (or writable, when `want_write`), or `timeout` passes
/// (`None`: no limit). Interrupted waits return an empty `Ready`.
pub(crate) fn poll(fd: BorrowedFd<'_>, want_write: bool, timeout: Option<Duration>) -> io::Result<Ready> {
    let mut events = libc::POLLIN;
    if want_write {
        events |= libc::POLLOUT;
    }
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 };
    let ms = match timeout {
        None => -1,
        // Round up so that a deadline 0.4 ms away does not become a busy loop of 0 ms polls.
        Some(t) => t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
    };
    // SAFETY: `pfd` is a valid pollfd array of length 1 for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted { Ok(Ready::default()) } else { Err(err) };
    }
    let r = pfd.revents;
    Ok(Ready {
        readable: r & libc::POLLIN != 0,
        writable: r & libc::POLLOUT != 0,
        hangup: r & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
    })
}

/// `writev` on a socket without raising SIGPIPE when the peer is gone (the error is EPIPE).
/// Rust's `main` ignores SIGPIPE, but a host whose `main` is not Rust's would be killed.
pub(crate) fn send_vectored(socket: BorrowedFd<'_>, slices: &[std::io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: zeroed msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix; sendmsg only reads the buffers.
    msg.msg_iov = slices.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = slices.len() as _;
    // SAFETY: msg points to `slices`, which outlive the call.
    let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Sends all of `bytes` on a blocking socket, without SIGPIPE (see [`send_vectored`]).
pub(crate) fn send_all(socket: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match send_vectored(socket, &[std::io::IoSlice::new(bytes)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends SIGKILL to `pid`. A process that already exited (but is not yet reaped) ignores it.
pub(crate) fn kill(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// Waits for child `pid` to exit and reaps it (no-op if it was already reaped by someone else).
pub(crate) fn reap(pid: u32) {
    // SAFETY: waitpid with a null status pointer is allowed; an unknown pid yields ECHILD.
    unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0) };
}

/// Runs `hook` when the process exits normally (return from `main` or `std::process::exit`).
pub(crate) fn at_exit(hook: extern "C" fn()) {
    // SAFETY: registering a plain `extern "C" fn()` has no other precondition.
    unsafe { libc::atexit(hook) };
}

/// The parent process id.
pub(crate) fn parent_pid() -> u32 {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// Marks `fd` close-on-exec, so children a task starts do not inherit it.
pub(crate) fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number; an invalid one yields EBADF, not UB.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// In a freshly forked child, before exec: put the worker's socket on [`WORKER_FD`] and ask
/// the kernel to SIGKILL the child when the parent dies.
///
/// Only async-signal-safe calls (dup2, prctl, getppid); returns an error instead of panicking.
pub(crate) fn child_setup(socket: RawFd, parent: u32) -> io::Result<()> {
    // SAFETY: dup2 on descriptor numbers; it also clears FD_CLOEXEC on the new descriptor.
    if unsafe { libc::dup2(socket, WORKER_FD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and no pointers.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // The parent may have died before prctl took effect: then nobody would ever signal us.
    // (No allocation here: this runs between fork and exec.)
    if parent_pid() != parent {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// Resident set size of `pid` in bytes, from `/proc/PID/statm` (None where unavailable).
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// The conventional name of a signal number (`SIGSEGV`), or `signal N`.
pub(crate) fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(libc::SIGSEGV), "SIGSEGV");
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL");
        assert_eq!(signal_name(77), "signal 77");
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn sending_to_a_closed_socket_is_an_error_not_a_sigpipe() {
        use std::os::fd::AsFd;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(theirs);
        // As in a host whose main is not Rust's: SIGPIPE at its default would kill us.
        // SAFETY: restoring the disposition Rust's runtime installed before main.
        let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let vectored = send_vectored(ours.as_fd(), &[std::io::IoSlice::new(b"frame")]);
        let all = send_all(ours.as_fd(), b"frame");
        unsafe { libc::signal(libc::SIGPIPE, previous) };
        assert_eq!(vectored.unwrap_err().raw_os_error(), Some(libc::EPIPE));
        assert_eq!(all.unwrap_err().raw_os_error(), Some(libc::EPIPE));
    }

    #[test]
    fn own_rss_is_plausible() {
        let rss = rss_bytes(std::process::id()).unwrap();
        assert!(rss > 100_000 && rss < 10_000_000_000, "{rss}");
    }
}
