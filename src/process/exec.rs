//! `posix_spawn` of this very program (vfork + exec: its cost does not grow with the program's
//! size), in a process group of its own, with the descriptors, environment and marker a
//! started process expects.

use super::marker::{self, Marker};
use std::ffi::CString;
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

/// `posix_spawn`s this program again as `marker` says, with each `(source, target)` descriptor
/// pair in place (sources must be 10 or above), stdin `/dev/null`, stdout and stderr
/// `/dev/null` when `quiet`, in a process group of its own, with `extra` added to this
/// program's environment. Returns the child's pid.
pub(crate) fn posix_spawn(
    marker: &Marker,
    fds: &[(BorrowedFd<'_>, i32)],
    quiet: bool,
    extra: &[(String, String)],
) -> io::Result<u32> {
    let (exe, mut argv) = program()?;
    argv.extend(crate::test_support::harness_args().into_iter().map(Into::into));
    let cstr = |s: &[u8]| CString::new(s).map_err(|_| io::Error::from(ErrorKind::InvalidInput));
    let exe = cstr(exe.as_os_str().as_bytes())?;
    let argv: Vec<CString> = argv.iter().map(|a| cstr(a.as_bytes())).collect::<io::Result<_>>()?;
    let mut envp: Vec<CString> = Vec::new();
    for (key, value) in std::env::vars_os() {
        if key != marker::MARKER && !extra.iter().any(|(k, _)| k.as_bytes() == key.as_bytes()) {
            envp.push(cstr(&[key.as_bytes(), b"=", value.as_bytes()].concat())?);
        }
    }
    for (key, value) in extra {
        envp.push(cstr(format!("{key}={value}").as_bytes())?);
    }
    envp.push(cstr(format!("{}={}", marker::MARKER, marker.encode()).as_bytes())?);
    let mut argv_ptrs: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr() as *mut _).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut envp_ptrs: Vec<*mut libc::c_char> = envp.iter().map(|a| a.as_ptr() as *mut _).collect();
    envp_ptrs.push(std::ptr::null_mut());
    let null = c"/dev/null";
    let mut pid: libc::pid_t = 0;
    // SAFETY: the file actions and attributes are initialised before use and destroyed after;
    // every pointer handed to posix_spawn (paths, argv, envp) outlives the call.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut actions);
        libc::posix_spawnattr_init(&mut attr);
        libc::posix_spawn_file_actions_addopen(&mut actions, 0, null.as_ptr(), libc::O_RDONLY, 0);
        if quiet {
            libc::posix_spawn_file_actions_addopen(&mut actions, 1, null.as_ptr(), libc::O_WRONLY, 0);
            libc::posix_spawn_file_actions_addopen(&mut actions, 2, null.as_ptr(), libc::O_WRONLY, 0);
        }
        for (source, target) in fds {
            debug_assert!(source.as_raw_fd() >= 10);
            // Source and target always differ, so the target's close-on-exec is cleared.
            libc::posix_spawn_file_actions_adddup2(&mut actions, source.as_raw_fd(), *target);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        let mut defaults: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut defaults);
        libc::sigaddset(&mut defaults, libc::SIGPIPE);
        libc::posix_spawnattr_setsigmask(&mut attr, &empty);
        libc::posix_spawnattr_setsigdefault(&mut attr, &defaults);
        libc::posix_spawnattr_setpgroup(&mut attr, 0);
        let flags = libc::POSIX_SPAWN_SETPGROUP as libc::c_short
            | libc::POSIX_SPAWN_SETSIGMASK as libc::c_short
            | libc::POSIX_SPAWN_SETSIGDEF as libc::c_short
            | libc::POSIX_SPAWN_USEVFORK as libc::c_short;
        libc::posix_spawnattr_setflags(&mut attr, flags);
        let r = libc::posix_spawn(&mut pid, exe.as_ptr(), &actions, &attr, argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
    }
    Ok(pid as u32)
}

/// The file to execute and the arguments before the harness's: `/proc/self/exe` (works even
/// when the binary was replaced on disk); when that is the dynamic loader (`ld-linux ./prog`),
/// the loader again with the program's path, found from the mapping that holds its program
/// headers.
fn program() -> io::Result<(std::path::PathBuf, Vec<std::ffi::OsString>)> {
    let exe = std::path::PathBuf::from("/proc/self/exe");
    let target = std::fs::read_link(&exe).unwrap_or_default();
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !(name.starts_with("ld-linux") || name.starts_with("ld.so") || name.starts_with("ld-musl")) {
        return Ok((exe.clone(), vec![exe.into_os_string()]));
    }
    let program = main_program_path().ok_or_else(|| {
        io::Error::other(
            "this program was started through the dynamic loader and its own path could not be found; \
             run it directly instead of through ld.so",
        )
    })?;
    Ok((exe, vec![target.into_os_string(), program.into_os_string()]))
}

/// The path of the main program: the file mapping that contains its program headers (AT_PHDR).
fn main_program_path() -> Option<std::path::PathBuf> {
    // SAFETY: getauxval has no preconditions.
    let phdr = unsafe { libc::getauxval(libc::AT_PHDR) } as u64;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (lo, hi) = fields.next()?.split_once('-')?;
        let (lo, hi) = (u64::from_str_radix(lo, 16).ok()?, u64::from_str_radix(hi, 16).ok()?);
        let path = fields.nth(4)?;
        (lo <= phdr && phdr < hi && path.starts_with('/')).then(|| path.into())
    })
}
