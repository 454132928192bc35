//! The quickstart's process work — `submit`, `map`, `Parallel`, a crash that costs one task —
//! on workers that `ssh` starts, here on this machine (`localhost:2`, or the hosts given as
//! arguments, `name` or `name:slots`). Each host needs this binary at the same path, and
//! key-based ssh login without a prompt; the example says so and stops when ssh cannot log in.
//!
//! ```text
//! cargo run --release --example cluster               # two workers over ssh to localhost
//! cargo run --release --example cluster -- a:4 b:4    # eight, on hosts a and b
//! ```
//!
//! `WORKPOOL_SSH_PORT`, `WORKPOOL_SSH_IDENTITY` and `WORKPOOL_SSH_OPTIONS` (space-separated
//! `Key=value`), when set, become the launcher's `.port(..)`, `.identity_file(..)` and
//! `.ssh_option(..)`s (e.g. for an sshd of one's own on another port).

use std::time::Instant;
use workpool::{Executor, Launcher};

#[workpool::task]
fn square(n: u64) -> u64 {
    n * n
}

/// The length of the Collatz sequence that starts at `n`: a small CPU-bound job.
#[workpool::task]
fn collatz(n: u64) -> u32 {
    let (mut n, mut steps) = (n, 0);
    while n != 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

#[workpool::task]
fn abort() {
    std::process::abort()
}

#[workpool::main]
fn main() {
    let mut hosts: Vec<String> = std::env::args().skip(1).collect();
    if hosts.is_empty() {
        hosts.push("localhost:2".into());
    }
    let port = std::env::var("WORKPOOL_SSH_PORT").ok().and_then(|p| p.parse::<u16>().ok());
    let identity = std::env::var_os("WORKPOOL_SSH_IDENTITY");
    let mut launcher = Launcher::ssh(&hosts);
    let mut probe = vec!["-o".to_string(), "BatchMode=yes".into(), "-o".into(), "ConnectTimeout=5".into()];
    if let Some(port) = port {
        launcher = launcher.port(port);
        probe.extend(["-p".into(), port.to_string()]);
    }
    if let Some(identity) = &identity {
        launcher = launcher.identity_file(identity);
        probe.extend(["-i".into(), identity.to_string_lossy().into_owned()]);
    }
    for option in std::env::var("WORKPOOL_SSH_OPTIONS").unwrap_or_default().split_whitespace() {
        launcher = launcher.ssh_option(option);
        probe.extend(["-o".into(), option.to_string()]);
    }
    for host in &hosts {
        let name = host.rsplit_once(':').map_or(host.as_str(), |(name, _)| name);
        let login = std::process::Command::new("ssh")
            .args(&probe)
            .args([name, "true"])
            .stdin(std::process::Stdio::null())
            .output();
        if !login.is_ok_and(|out| out.status.success()) {
            println!("skipped: `ssh -o BatchMode=yes {name} true` does not log in (no sshd, or no key login there)");
            return;
        }
    }
    let clock = Instant::now();
    let ex = Executor::builder().launcher(launcher).build().unwrap();
    println!("{} slots on {}", ex.workers().len(), hosts.join(", "));
    println!(
        "7² = {} (first result, workers started by ssh: {:?})",
        ex.submit(Square { n: 7 }).join().unwrap(),
        clock.elapsed()
    );

    let clock = Instant::now();
    let longest = ex.map((1..100_001).map(|n| Collatz { n })).map(Result::unwrap).max().unwrap();
    println!("longest Collatz sequence below 100001: {longest} steps ({:?} for 100,000 tasks)", clock.elapsed());

    let all = workpool::Parallel::new().executor(ex.clone()).run((0..10_000).map(|n| Square { n })).unwrap();
    println!("Parallel on the same workers: {} results, last {}", all.len(), all[9_999]);

    let err = ex.submit(Abort {}).join().unwrap_err();
    println!("a crashing task: {err}");
    println!("and the next one still runs: 8² = {}", ex.submit(Square { n: 8 }).join().unwrap());
}
