//! Worker processes on other hosts: the parent's side of a remote link.
//!
//! A remote slot's worker is started through the executor's [`Launcher`]: the launcher runs
//! this program on the host with the marker role `remote`, which makes it a *supervisor*
//! (`supervisor.rs`): it connects back to the executor's TCP listener, passes the mutual
//! challenge of `auth.rs`, then starts an ordinary worker next to it and relays its frames.
//! Here, the connection is relayed to a local socketpair (`relay.rs`), so the feeder drives a
//! remote worker exactly as a local one: the same frames, the same faults. What differs is
//! hidden in [`Link`]: the worker's "exit" is the link's end (the supervisor's `EXIT` report,
//! end of stream, or [`relay::SILENCE`] without a heartbeat), its kill is the end of the
//! connection, and there is no claim ring (tasks written ahead are not taken back).

pub(crate) mod auth;
pub(crate) mod relay;
pub(crate) mod supervisor;

use super::claims::Claims;
use super::spawn::{RemoteEnd, SpawnError, Worker};
use super::wire::{self, FrameReader};
use crate::launcher::{KeyVia, Launcher, KEY_VAR};
use crate::sys;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Environment variables a supervisor reads (and removes).
pub(crate) const CONNECT_VAR: &str = "WORKPOOL_CONNECT";
pub(crate) const LAUNCH_VAR: &str = "WORKPOOL_LAUNCH";
/// Shortest time a remote worker is given to connect (ssh alone may take seconds).
const MIN_START: Duration = Duration::from_secs(20);
/// Time a connection has to pass the challenge.
const CHALLENGE: Duration = Duration::from_secs(3);

/// An executor's remote side: its launcher, key and listener.
pub(crate) struct Cluster {
    launcher: Launcher,
    key: auth::Key,
    listener: TcpListener,
    /// What workers connect to.
    address: SocketAddr,
    /// Connections that passed the challenge, waiting for the feeder whose launch they are.
    pending: Mutex<HashMap<u64, TcpStream>>,
    next_launch: AtomicU64,
}

impl Cluster {
    /// Listens on `listen` (port 0: any) with a fresh key.
    pub(crate) fn new(launcher: Launcher, listen: SocketAddr) -> io::Result<Cluster> {
        // Reads this binary once, so that no challenge waits for it.
        auth::build_print();
        let listener = TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let mut address = listener.local_addr()?;
        if address.ip().is_unspecified() {
            address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Ok(Cluster {
            launcher,
            key: auth::random()?,
            listener,
            address,
            pending: Mutex::new(HashMap::new()),
            next_launch: AtomicU64::new(1),
        })
    }

    /// Starts the worker of slot `index` through the launcher and waits (at least
    /// [`MIN_START`]) for it to connect, pass the challenge and say hello.
    pub(crate) fn start(&self, index: usize, handshake: Duration) -> Result<Worker, SpawnError> {
        let fail = |message: String| SpawnError { message, sticky: false };
        let host = self.launcher.host_of(index);
        let launch = self.next_launch.fetch_add(1, Ordering::Relaxed);
        let limit = handshake.max(MIN_START);
        let env = vec![
            (super::marker::MARKER.to_string(), super::marker::Marker::remote().encode()),
            (CONNECT_VAR.to_string(), self.address.to_string()),
            (LAUNCH_VAR.to_string(), launch.to_string()),
        ];
        let exe = match &self.launcher.program {
            Some(path) => path.clone(),
            None => {
                std::fs::read_link("/proc/self/exe").map_err(|e| fail(format!("finding this program's path: {e}")))?
            }
        };
        let mut program = vec![exe.to_string_lossy().into_owned()];
        program.extend(crate::test_support::harness_args());
        let (mut command, via) = self.launcher.command_for(&host, &env, &program);
        command.stdin(Stdio::piped()).process_group(0);
        if via == KeyVia::Environment {
            command.env(KEY_VAR, auth::to_hex(&self.key));
        }
        // No `pre_exec` (it would make std fork this process instead of posix_spawn): a launcher
        // outlives us only until its worker's supervisor sees our connection close, and ends.
        let mut child = command.spawn().map_err(|e| fail(format!("starting the launcher for host {host}: {e}")))?;
        let mut stdin = child.stdin.take();
        if via == KeyVia::Stdin {
            let line = format!("{}\n", auth::to_hex(&self.key));
            if let Some(pipe) = stdin.as_mut() {
                let _ = pipe.write_all(line.as_bytes());
            }
        }
        let launcher_pid = child.id();
        let stream = match self.wait_for(launch, &mut child, Instant::now() + limit) {
            Ok(stream) => stream,
            Err(message) => {
                end_launcher(&mut child);
                // A connection that comes after all would wait here for nobody.
                self.pending.lock().remove(&launch);
                return Err(fail(format!("the worker on host {host} did not join: {message}")));
            }
        };
        match self.link(stream, host.clone(), child, stdin, launcher_pid, limit) {
            Ok(worker) => Ok(worker),
            Err(message) => Err(fail(format!("the worker on host {host}: {message}"))),
        }
    }

    /// Waits for the connection of launch `launch`, accepting (and checking) every connection
    /// that comes meanwhile; a connection of another feeder's launch is left for it.
    fn wait_for(&self, launch: u64, child: &mut Child, deadline: Instant) -> Result<TcpStream, String> {
        loop {
            if let Some(stream) = self.pending.lock().remove(&launch) {
                return Ok(stream);
            }
            match self.listener.accept() {
                Ok((stream, peer)) => match self.challenge(stream) {
                    Ok((joined, stream)) if joined.launch == launch => {
                        return self.check_print(joined, stream);
                    }
                    Ok((joined, stream)) => {
                        self.pending.lock().insert(joined.launch, stream);
                    }
                    Err(e) => crate::observe::connection_dropped(peer, &e),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("accepting connections: {e}")),
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("its launcher ended ({status}) before the worker connected"));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err("no connection within the start timeout".into());
            }
            let _ = sys::poll(self.listener.as_fd(), false, Some((deadline - now).min(Duration::from_millis(20))));
        }
    }

    /// Runs the challenge on a new connection (bounded in time).
    fn challenge(&self, mut stream: TcpStream) -> io::Result<(auth::Joined, TcpStream)> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(CHALLENGE))?;
        stream.set_write_timeout(Some(CHALLENGE))?;
        stream.set_nodelay(true)?;
        let joined = auth::parent_side(&mut stream, &self.key).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                io::Error::other(format!("no answer to the challenge within {CHALLENGE:?}"))
            }
            io::ErrorKind::UnexpectedEof => {
                io::Error::other("it hung up during the challenge (a worker given another key refuses this executor)")
            }
            _ => e,
        })?;
        Ok((joined, stream))
    }

    fn check_print(&self, joined: auth::Joined, stream: TcpStream) -> Result<TcpStream, String> {
        if joined.print != auth::build_print() {
            let _ = stream.shutdown(Shutdown::Both);
            return Err(
                "it runs a different build of this program (its binary, version or tasks differ): install this very \
                 binary at the same path there"
                    .into(),
            );
        }
        Ok(stream)
    }

    /// Relays an authenticated connection to a local socketpair and waits for the worker's
    /// hello on it.
    fn link(
        &self,
        stream: TcpStream,
        host: String,
        mut child: Child,
        stdin: Option<std::process::ChildStdin>,
        pid: u32,
        limit: Duration,
    ) -> Result<Worker, String> {
        let setup = || -> io::Result<_> {
            let (ours, theirs) = UnixStream::pair()?;
            let mut fds = [0; 2];
            // SAFETY: pipe2 writes two descriptors into the array.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: both were just created for us.
            let (exit_read, exit_write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            stream.set_read_timeout(Some(relay::SILENCE))?;
            stream.set_write_timeout(Some(relay::SILENCE))?;
            Ok((ours, theirs, exit_read, exit_write, stream.try_clone()?))
        };
        let (ours, theirs, exit_read, exit_write, tcp_out) = match setup() {
            Ok(parts) => parts,
            Err(e) => {
                end_launcher(&mut child);
                return Err(format!("setting up its link: {e}"));
            }
        };
        let link = Arc::new(Link {
            tcp: stream,
            exit: Mutex::new(Some(exit_write)),
            status: Mutex::new(None),
            why: Mutex::new(None),
            stdin: Mutex::new(stdin),
            child: Mutex::new(Some(child)),
            host: Mutex::new(host),
        });
        spawn_relays(&link, theirs, tcp_out);
        let claims = Claims::none().map_err(|e| format!("claim ring: {e}"));
        let worker = match claims {
            Ok(claims) => Worker::remote(pid, ours, exit_read, claims, link.clone()),
            Err(e) => {
                link.kill("its start failed");
                return Err(e);
            }
        };
        if let Err(e) = hello(&worker, limit) {
            link.kill("its start failed");
            worker.finish(Duration::ZERO);
            return Err(e);
        }
        worker.socket.set_nonblocking(true).map_err(|e| format!("configuring its socket: {e}"))?;
        Ok(worker)
    }
}

/// Reads the worker's hello from the relayed socket.
fn hello(worker: &Worker, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut reader = FrameReader::new();
    let mut stream = &worker.socket;
    loop {
        if let Some(frame) = reader.next_frame().map_err(|e| e.to_string())? {
            if frame.kind != wire::HELLO {
                return Err(format!("it sent frame kind {} before its hello", frame.kind));
            }
            let (version, _print, _pid) = wire::parse_hello(frame.body).map_err(|e| e.to_string())?;
            if version != wire::PROTOCOL_VERSION {
                return Err(format!("it speaks protocol {version}, we speak {}", wire::PROTOCOL_VERSION));
            }
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!("it did not say hello within {limit:?}"));
        }
        let ready = sys::poll(worker.socket.as_fd(), false, Some(deadline - now)).map_err(|e| e.to_string())?;
        if ready.readable || ready.hangup {
            match reader.fill(&mut stream) {
                Ok(0) => return Err("it exited before saying hello".into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading its hello: {e}")),
            }
        }
    }
}

/// Kills a launcher's process group and reaps it.
fn end_launcher(child: &mut Child) {
    sys::kill_group(child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// One remote worker's connection, as the parent holds it.
pub(crate) struct Link {
    tcp: TcpStream,
    /// The write end of the pipe whose other end is the worker's "exit" descriptor: dropped
    /// (so the read end hangs up) when the link ends.
    exit: Mutex<Option<OwnedFd>>,
    /// The remote worker's wait status, from its supervisor's `EXIT` report.
    status: Mutex<Option<i32>>,
    /// How the link ended, when not by an `EXIT` report.
    why: Mutex<Option<String>>,
    /// The launcher's standard input: its end tells the supervisor to stop.
    stdin: Mutex<Option<std::process::ChildStdin>>,
    child: Mutex<Option<Child>>,
    /// The host the launcher was asked for, then with where the worker says it runs (its
    /// `PLACE` report): "localhost (node17, Slurm step 42.3)".
    host: Mutex<String>,
}

impl Link {
    /// The link is over: record why (the first reason wins), close the connection, and let the
    /// feeder see the worker as exited.
    pub(crate) fn end(&self, why: &str) {
        self.why.lock().get_or_insert_with(|| why.to_string());
        let _ = self.tcp.shutdown(Shutdown::Both);
        self.exit.lock().take();
    }
}

impl RemoteEnd for Link {
    /// Kills the remote worker: its supervisor kills it when the connection ends without a
    /// `BYE`, or when its standard input ends.
    fn kill(&self, why: &str) {
        self.end(why);
        self.stdin.lock().take();
    }

    /// How the remote worker ended, in words, with the wait status its supervisor reported;
    /// reaps the launcher (killing it after `grace`).
    fn finish(&self, grace: Duration) -> (String, Option<i32>) {
        self.stdin.lock().take();
        if let Some(mut child) = self.child.lock().take() {
            let deadline = Instant::now() + grace;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        end_launcher(&mut child);
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            sys::kill_group(child.id());
        }
        let status = *self.status.lock();
        let words = match (status, self.why.lock().clone()) {
            (Some(status), _) => format!("{} on host {}", super::spawn::describe(status), self.host.lock()),
            (None, Some(why)) => format!("{why} (host {})", self.host.lock()),
            (None, None) => format!("ended (host {})", self.host.lock()),
        };
        (words, status)
    }
}

/// The two relay threads of a link: feeder → connection (with heartbeats) and connection →
/// feeder (without them, and watching for silence).
fn spawn_relays(link: &Arc<Link>, local: UnixStream, mut tcp_out: TcpStream) {
    let (out_link, in_link) = (link.clone(), link.clone());
    let mut local_in = match local.try_clone() {
        Ok(clone) => clone,
        Err(e) => return link.end(&format!("the link could not be set up: {e}")),
    };
    let mut local_out = local;
    let spawned = std::thread::Builder::new().name("workpool-link-out".into()).spawn(move || {
        let mut splitter = relay::Splitter::default();
        let mut buf = vec![0u8; wire::READ_CHUNK];
        let mut out = Vec::with_capacity(wire::READ_CHUNK);
        let mut last = Instant::now();
        loop {
            let ready = sys::poll(local_out.as_fd(), false, Some(relay::HEARTBEAT_EVERY));
            if ready.is_ok_and(|r| r.readable || r.hangup) {
                match local_out.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        // The feeder closed the worker: say goodbye (the worker finishes), or
                        // the link already ended.
                        let _ = relay::write_all(&mut tcp_out, &relay::control(relay::BYE, &[]));
                        let _ = tcp_out.shutdown(Shutdown::Write);
                        return;
                    }
                    Ok(n) => {
                        out.clear();
                        if let Err(e) = splitter.split(&buf[..n], false, &mut out) {
                            return out_link.kill(&format!("the executor sent a malformed frame ({e})"));
                        }
                        if relay::write_all(&mut tcp_out, &out).is_err() {
                            return out_link.end("the connection broke (a write failed or timed out)");
                        }
                        last = Instant::now();
                    }
                }
            } else if last.elapsed() >= relay::HEARTBEAT_EVERY && splitter.at_boundary() {
                if relay::write_all(&mut tcp_out, &relay::control(relay::HEARTBEAT, &[])).is_err() {
                    return out_link.end("the connection broke (a heartbeat could not be sent)");
                }
                last = Instant::now();
            }
        }
    });
    if let Err(e) = spawned {
        return link.end(&format!("no relay thread: {e}"));
    }
    let spawned = std::thread::Builder::new().name("workpool-link-in".into()).spawn(move || {
        let mut tcp = match in_link.tcp.try_clone() {
            Ok(tcp) => tcp,
            Err(e) => return in_link.end(&format!("the link could not be set up: {e}")),
        };
        let mut splitter = relay::Splitter::default();
        let mut buf = vec![0u8; wire::READ_CHUNK];
        let mut out = Vec::with_capacity(wire::READ_CHUNK);
        let why = loop {
            match relay::read_timeout(&mut tcp, &mut buf) {
                Ok(None) => break format!("silent for {:?} (no heartbeat: stopped, hung or cut off)", relay::SILENCE),
                Ok(Some(0)) => break "the connection was closed".to_string(),
                Err(e) => break format!("the connection broke ({e})"),
                Ok(Some(n)) => {
                    out.clear();
                    let controls = match splitter.split(&buf[..n], true, &mut out) {
                        Ok(controls) => controls,
                        Err(e) => break format!("the worker's side broke the protocol ({e})"),
                    };
                    if relay::write_all(&mut local_in, &out).is_err() {
                        break "the executor closed the worker".to_string();
                    }
                    for (kind, body) in controls {
                        if kind == relay::EXIT && body.len() == 4 {
                            *in_link.status.lock() = Some(i32::from_le_bytes(body[..4].try_into().expect("4 bytes")));
                        }
                        if kind == relay::PLACE {
                            let place = String::from_utf8_lossy(&body).into_owned();
                            let mut host = in_link.host.lock();
                            if !place.is_empty() && *host != place {
                                *host = format!("{host} ({place})");
                            }
                        }
                    }
                }
            }
        };
        // "Exited" before end of stream: the feeder reads the results, then sees the death.
        in_link.end(&why);
        let _ = local_in.shutdown(Shutdown::Both);
    });
    if let Err(e) = spawned {
        link.end(&format!("no relay thread: {e}"));
    }
}
