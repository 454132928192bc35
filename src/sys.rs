//! The few system calls std does not offer, each behind a safe function.
//!
//! Linux-first (`PR_SET_PDEATHSIG` is Linux-only; elsewhere EOF on the task socket is what stops
//! an orphaned worker). Every `unsafe` block here is a plain FFI call with valid arguments.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The file descriptor a worker finds its socket on.
pub(crate) const WORKER_FD: RawFd = 3;

/// What `poll` saw on a descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ready {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// Hang-up or error: the peer is gone (reading still drains what it sent).
    pub(crate) hangup: bool,
}

/// Waits until `fd` is readable (or writable, when `want_write`), or `timeout` passes
/// (`None`: no limit). Interrupted waits return an empty `Ready`.
pub(crate) fn poll(fd: BorrowedFd<'_>, want_write: bool, timeout: Option<Duration>) -> io::Result<Ready> {
    Ok(poll_many(&[(fd, want_write)], timeout)?[0])
}

/// What `poll` saw on each of several descriptors, waiting at most `timeout` (`None`: no
/// limit) for any of them. `want_write[i]` asks for writability of `fds[i]` too.
pub(crate) fn poll_many(fds: &[(BorrowedFd<'_>, bool)], timeout: Option<Duration>) -> io::Result<Vec<Ready>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, want_write)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN | if *want_write { libc::POLLOUT } else { 0 },
            revents: 0,
        })
        .collect();
    let n = ppoll(&mut pfds, timeout);
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted { Ok(vec![Ready::default(); fds.len()]) } else { Err(err) };
    }
    Ok(pfds
        .iter()
        .map(|p| Ready {
            readable: p.revents & libc::POLLIN != 0,
            writable: p.revents & libc::POLLOUT != 0,
            hangup: p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
        })
        .collect())
}

/// `ppoll` with a timeout to the nanosecond (`poll`'s milliseconds would round a 0.4 ms
/// deadline up to a whole one, or down to a busy loop).
fn ppoll(pfds: &mut [libc::pollfd], timeout: Option<Duration>) -> libc::c_int {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `pfds` is a valid pollfd array of its length, `ts_ptr` null or a valid timespec,
    // both for the duration of the call; a null signal mask keeps the thread's own.
    unsafe { libc::ppoll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ts_ptr, std::ptr::null()) }
}

/// `writev` on a socket without raising SIGPIPE when the peer is gone (the error is EPIPE).
/// Rust's `main` ignores SIGPIPE, but a host whose `main` is not Rust's would be killed.
pub(crate) fn send_vectored(socket: BorrowedFd<'_>, slices: &[std::io::IoSlice<'_>]) -> io::Result<usize> {
    send_vectored_fds(socket, slices, &[])
}

/// [`send_vectored`] with the descriptors `fds` passed beside the bytes (SCM_RIGHTS). On a
/// stream socket the kernel attaches them to the first bytes this call sends: they reach the
/// peer with (or before) those bytes, and are sent once whenever the call sends anything.
pub(crate) fn send_vectored_fds(
    socket: BorrowedFd<'_>,
    slices: &[std::io::IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let space = cmsg_space(raw.len());
    let mut control = vec![0u8; space];
    // SAFETY: zeroed msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix; sendmsg only reads the buffers.
    msg.msg_iov = slices.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = slices.len() as _;
    if !raw.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `control` has room for one cmsghdr carrying `raw.len()` descriptors.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN((raw.len() * std::mem::size_of::<RawFd>()) as u32) as _;
            std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(cmsg).cast::<RawFd>(), raw.len());
        }
    }
    // SAFETY: msg points to `slices` and `control`, which outlive the call.
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

/// Sends SIGKILL to every process of process group `pgid` (a worker and whatever its tasks
/// started). Only call it while the group leader is not yet reaped, so the id cannot have been
/// reused.
pub(crate) fn kill_group(pgid: u32) {
    if pgid > 1 {
        // SAFETY: kill has no memory-safety preconditions; a negative pid names a group.
        unsafe { libc::kill(-(pgid as libc::pid_t), libc::SIGKILL) };
    }
}

/// Waits for child `pid` to exit and reaps it (no-op if it was already reaped by someone else).
pub(crate) fn reap(pid: u32) {
    // SAFETY: waitpid with a null status pointer is allowed; an unknown pid yields ECHILD.
    unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0) };
}

/// Reaps child `pid` if it has exited: its raw wait status; `None` while it runs (or when it
/// is not our child).
pub(crate) fn try_reap(pid: u32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer for the call.
    let got = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    (got == pid as libc::pid_t).then_some(status)
}

/// True while `pid` is our child, running or exited but not yet reaped.
pub(crate) fn is_child(pid: u32) -> bool {
    // SAFETY: waitid with WNOWAIT only looks; the siginfo out-pointer is valid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
    r == 0
}

/// A descriptor that becomes readable when process `pid` exits (`pidfd_open`, Linux 5.3). Race
/// free for our own unreaped children: their pid cannot be reused before we reap them.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// SIGKILL through a pidfd: it can only reach the process the pidfd was opened for.
pub(crate) fn pidfd_kill(pidfd: BorrowedFd<'_>) {
    // SAFETY: pidfd_send_signal with a null siginfo and no flags.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<u8>(), 0) };
}

/// A close-on-exec duplicate of `fd` numbered 10 or above, out of the way of the descriptors a
/// child gets (0 to 5).
pub(crate) fn dup_high(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) returns a new descriptor or -1.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just returned to us, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Sends `bytes` and the descriptors `fds` (SCM_RIGHTS) in one message, without SIGPIPE.
pub(crate) fn send_with_fds(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let space = cmsg_space(raw.len());
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `control` has room for one cmsghdr carrying `raw.len()` descriptors.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN((raw.len() * std::mem::size_of::<RawFd>()) as u32) as _;
            std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(cmsg).cast::<RawFd>(), raw.len());
        }
    }
    loop {
        // SAFETY: `msg` points to valid buffers for the duration of the call.
        let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            // Datagram-like use on a SOCK_SEQPACKET or a short control message on a stream:
            // a partial send of such a small message does not happen.
            return if n as usize == bytes.len() { Ok(()) } else { Err(io::ErrorKind::WriteZero.into()) };
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Receives one message into `buf`, and up to `max_fds` descriptors sent with it (close-on-exec).
/// Returns the bytes received (0: end of stream) and the descriptors.
pub(crate) fn recv_with_fds(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let space = cmsg_space(max_fds);
    let mut control = vec![0u8; space.max(1)];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: as above.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    let mut fds = Vec::new();
    let truncated = msg.msg_flags & libc::MSG_CTRUNC != 0;
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if truncated {
        // Descriptors were sent and lost (no room, or this process is at its RLIMIT_NOFILE):
        // the stream can no longer pair descriptors with their frames.
        drop(fds);
        return Err(io::Error::other("descriptors passed with the message were lost (control data truncated)"));
    }
    Ok((n, fds))
}

fn cmsg_space(fds: usize) -> usize {
    if fds == 0 {
        return 0;
    }
    // SAFETY: CMSG_SPACE is a pure computation.
    unsafe { libc::CMSG_SPACE((fds * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// Asks the kernel to SIGKILL this process when the thread that started it exits.
pub(crate) fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and no pointers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `CLOCK_MONOTONIC` in ns: one clock for every process of the machine (what `Instant` reads).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sets the process name `ps` shows (its main thread's name), cut to the kernel's 15 bytes.
pub(crate) fn set_name(name: &[u8]) {
    let _ = std::fs::write("/proc/self/comm", &name[..name.len().min(15)]);
}

/// True when the calling thread is the process's main thread.
pub(crate) fn is_main_thread() -> bool {
    // SAFETY: gettid and getpid cannot fail.
    unsafe { libc::gettid() == libc::getpid() }
}

/// Threads of this process right now (from /proc/self/task).
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(usize::MAX)
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
