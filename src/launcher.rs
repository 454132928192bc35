//! [`Launcher`]: how an executor's worker processes are started, on this machine or on others.

use std::path::PathBuf;
use std::process::Command;

/// How an executor starts its worker processes: on this machine (the default), or on other
/// hosts through `ssh`, Slurm's `srun`, `mpirun`, or any other starter.
///
/// A remote worker is this same program (the same binary path on the host), started with a
/// marker in its environment; it connects back to the executor over TCP (see
/// [`ExecutorBuilder::listen`](crate::ExecutorBuilder::listen)), proves with a mutual
/// HMAC-SHA256 challenge that it holds the executor's random key (which the launcher carries on
/// its standard input or in its environment, never on a command line), then serves tasks with
/// the protocol of local workers. Each slot's worker is started through the launcher when the
/// slot first needs one, and again after it died. `workers(n)` is the number of slots; left at
/// 0 it is the sum of the hosts' slots.
///
/// ```no_run
/// use workpool::{Executor, Launcher};
///
/// fn main() {
///     workpool::init();
///     let launcher = Launcher::ssh(["node1:4", "node2:4"]).port(2222).ssh_option("ConnectTimeout=5");
///     let ex = Executor::builder().launcher(launcher).listen("10.0.0.1:0".parse().unwrap()).build().unwrap();
///     assert_eq!(ex.workers().len(), 8);
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Launcher {
    pub(crate) kind: Kind,
    /// `(host, slots)`, in order.
    pub(crate) hosts: Vec<(String, usize)>,
    /// The program's path on the hosts, when not the same as here.
    pub(crate) program: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Local,
    Ssh { port: Option<u16>, identity: Option<PathBuf>, options: Vec<String> },
    Srun,
    Mpirun,
    Command(Vec<String>),
}

/// How the key reaches the remote process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyVia {
    /// A hex line on its standard input (which then stays open: its end means the launcher
    /// is gone).
    Stdin,
    /// `WORKPOOL_KEY` in the launcher's environment, which the launcher passes on.
    Environment,
}

/// Environment variable that carries the key when the launcher passes the environment on.
pub(crate) const KEY_VAR: &str = "WORKPOOL_KEY";

/// The "host" of an `srun` slot that Slurm places anywhere in the allocation.
const ANY_NODE: &str = "a node of the allocation";

/// The tasks of the Slurm allocation this program runs in, from its environment: `SLURM_NTASKS`
/// (`salloc -n`, `sbatch --ntasks`), else the CPUs of all its nodes (`SLURM_JOB_CPUS_PER_NODE`,
/// as `"4(x2),2"`: two nodes of 4 and one of 2). `None` outside an allocation.
fn allocation_tasks(var: impl Fn(&str) -> Option<String>) -> Option<usize> {
    var("SLURM_JOB_ID")?;
    if let Some(n) = var("SLURM_NTASKS").or_else(|| var("SLURM_NPROCS")).and_then(|n| n.trim().parse().ok()) {
        return Some(n);
    }
    let per_node = var("SLURM_JOB_CPUS_PER_NODE")?;
    let mut total = 0;
    for part in per_node.split(',') {
        let (cpus, times) = match part.split_once("(x") {
            Some((cpus, rest)) => (cpus, rest.trim_end_matches(')')),
            None => (part, "1"),
        };
        total += cpus.trim().parse::<usize>().ok()? * times.trim().parse::<usize>().ok()?;
    }
    (total > 0).then_some(total)
}

fn parse_host(text: &str) -> (String, usize) {
    match text.rsplit_once(':') {
        Some((name, slots)) if !name.is_empty() => match slots.parse::<usize>() {
            Ok(n) => (name.to_string(), n.max(1)),
            Err(_) => (text.to_string(), 1),
        },
        _ => (text.to_string(), 1),
    }
}

impl Default for Launcher {
    fn default() -> Self {
        Launcher::local()
    }
}

impl Launcher {
    /// Workers on this machine, forked from the fork server (the default).
    ///
    /// ```
    /// assert_eq!(workpool::Launcher::local(), workpool::Launcher::default());
    /// ```
    pub fn local() -> Launcher {
        Launcher { kind: Kind::Local, hosts: Vec::new(), program: None }
    }

    /// Workers started by the system's `ssh` on each host, `"name"` (one slot) or
    /// `"name:slots"`, as `ssh -T -x -a -o BatchMode=yes host -- 'env WORKPOOL_…=… /same/path'`:
    /// the binary must exist at the same path there, and key-based login must work without a
    /// prompt. The environment is not forwarded (as with ssh itself), except the few variables
    /// workpool sets on purpose; the key goes through ssh's standard input.
    ///
    /// ```
    /// let launcher = workpool::Launcher::ssh(["a", "b:3"]);
    /// assert_eq!(launcher.slots(), 4);
    /// ```
    pub fn ssh<I, S>(hosts: I) -> Launcher
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Launcher {
            kind: Kind::Ssh { port: None, identity: None, options: Vec::new() },
            hosts: hosts.into_iter().map(|h| parse_host(h.as_ref())).collect(),
            program: None,
        }
    }

    /// The port `ssh` connects to (`-p`); only for [`Launcher::ssh`].
    ///
    /// ```
    /// let launcher = workpool::Launcher::ssh(["a"]).port(2222);
    /// # let _ = launcher;
    /// ```
    pub fn port(mut self, port: u16) -> Launcher {
        if let Kind::Ssh { port: p, .. } = &mut self.kind {
            *p = Some(port);
        }
        self
    }

    /// The private key `ssh` logs in with (`-i`); only for [`Launcher::ssh`].
    ///
    /// ```
    /// let launcher = workpool::Launcher::ssh(["a"]).identity_file("/home/me/.ssh/cluster");
    /// # let _ = launcher;
    /// ```
    pub fn identity_file(mut self, path: impl Into<PathBuf>) -> Launcher {
        if let Kind::Ssh { identity, .. } = &mut self.kind {
            *identity = Some(path.into());
        }
        self
    }

    /// One more `-o Key=value` for `ssh`; only for [`Launcher::ssh`].
    ///
    /// ```
    /// let launcher = workpool::Launcher::ssh(["a"]).ssh_option("StrictHostKeyChecking=accept-new");
    /// # let _ = launcher;
    /// ```
    pub fn ssh_option(mut self, option: impl Into<String>) -> Launcher {
        if let Kind::Ssh { options, .. } = &mut self.kind {
            options.push(option.into());
        }
        self
    }

    /// Workers started by Slurm's `srun`, inside an allocation (`salloc`, `sbatch`): one job
    /// step of one task per worker (`srun --nodes=1 --ntasks=1 --exact`), placed by Slurm
    /// unless [`hosts`](Launcher::hosts) names nodes (`--nodelist`). Without hosts, the
    /// allocation's `SLURM_*` variables give the slots: `SLURM_NTASKS`, else the CPUs of its
    /// nodes (`SLURM_JOB_CPUS_PER_NODE`); outside an allocation, one slot, each worker then a
    /// job of its own. Each worker reports the node and step it runs in (`SLURMD_NODENAME`,
    /// `SLURM_JOB_ID`, `SLURM_STEP_ID`), which name it in errors. The key travels in the step's
    /// environment (`--export` of workpool's variables only).
    ///
    /// One step per worker rather than one step of all of them: a worker that dies (a crash
    /// in its task, a timeout) then ends only its own step, and its slot starts a new one.
    ///
    /// ```
    /// // In `salloc -n 8`: 8 slots, wherever Slurm puts them.
    /// let in_allocation = workpool::Launcher::srun();
    /// # let _ = in_allocation;
    /// let launcher = workpool::Launcher::srun().hosts(["node1:8"]);
    /// assert_eq!(launcher.slots(), 8);
    /// ```
    pub fn srun() -> Launcher {
        Launcher { kind: Kind::Srun, hosts: Vec::new(), program: None }
    }

    /// Workers started by `mpirun` (Open MPI or MPICH): one process per worker (`-np 1`, on
    /// `--host` when [`hosts`](Launcher::hosts) names some). No MPI library is linked; the key
    /// travels in the environment (`-x`). As root, Open MPI's `--allow-run-as-root` is added;
    /// `--oversubscribe` always. Each worker reports its node and rank
    /// (`OMPI_COMM_WORLD_RANK`, `PMIX_RANK` or `PMI_RANK`), which name it in errors.
    ///
    /// One `mpirun` per worker rather than one job of all of them: MPI ends a whole job when
    /// one of its processes dies abnormally (Open MPI's default), and a crashing task must
    /// cost its own worker only.
    ///
    /// ```
    /// let launcher = workpool::Launcher::mpirun().hosts(["localhost:2"]);
    /// assert_eq!(launcher.slots(), 2);
    /// ```
    pub fn mpirun() -> Launcher {
        Launcher { kind: Kind::Mpirun, hosts: vec![("localhost".into(), 1)], program: None }
    }

    /// Workers started by any other command, given as a template of arguments: `{host}` is
    /// replaced by the slot's host, an argument that is exactly `{command}` by the words that
    /// start the worker (`env WORKPOOL_…=… /path/to/this/program …`), and `{command_line}`
    /// inside an argument by the same words quoted for a POSIX shell. The key goes to the
    /// command's standard input, which must reach the worker (as `docker exec -i`,
    /// `kubectl exec -i` do). Hosts default to `localhost` with one slot.
    ///
    /// ```
    /// let launcher = workpool::Launcher::command(["docker", "exec", "-i", "{host}", "{command}"])
    ///     .hosts(["box1:2", "box2:2"]);
    /// assert_eq!(launcher.slots(), 4);
    /// ```
    pub fn command<I, S>(template: I) -> Launcher
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Launcher {
            kind: Kind::Command(template.into_iter().map(Into::into).collect()),
            hosts: vec![("localhost".into(), 1)],
            program: None,
        }
    }

    /// The hosts of this launcher, `"name"` or `"name:slots"` (replacing the default ones).
    ///
    /// ```
    /// let launcher = workpool::Launcher::command(["{command}"]).hosts(["localhost:3"]);
    /// assert_eq!(launcher.slots(), 3);
    /// ```
    pub fn hosts<I, S>(mut self, hosts: I) -> Launcher
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.hosts = hosts.into_iter().map(|h| parse_host(h.as_ref())).collect();
        self
    }

    /// The path of this program on the hosts, when it is not the same path as here. It must
    /// be the very same build: a worker whose binary differs is refused when it connects.
    ///
    /// ```
    /// let launcher = workpool::Launcher::ssh(["a"]).program("/opt/app/bin/app");
    /// # let _ = launcher;
    /// ```
    pub fn program(mut self, path: impl Into<PathBuf>) -> Launcher {
        self.program = Some(path.into());
        self
    }

    /// The number of slots over all hosts (0 for [`Launcher::local`]: there,
    /// [`workers`](crate::ExecutorBuilder::workers) decides).
    ///
    /// ```
    /// assert_eq!(workpool::Launcher::ssh(["a:2", "b"]).slots(), 3);
    /// ```
    pub fn slots(&self) -> usize {
        if self.kind == Kind::Srun && self.hosts.is_empty() {
            return allocation_tasks(|name| std::env::var(name).ok()).unwrap_or(1);
        }
        self.hosts.iter().map(|(_, n)| n).sum()
    }

    pub(crate) fn is_local(&self) -> bool {
        self.kind == Kind::Local
    }

    /// The host of slot `index`: the hosts' slots in order, round again when there are more
    /// workers than slots.
    pub(crate) fn host_of(&self, index: usize) -> String {
        if self.kind == Kind::Srun && self.hosts.is_empty() {
            return ANY_NODE.to_string();
        }
        let all: Vec<&str> = self.hosts.iter().flat_map(|(h, n)| std::iter::repeat_n(h.as_str(), *n)).collect();
        all.get(index % all.len().max(1)).map_or_else(|| "localhost".to_string(), |h| h.to_string())
    }

    /// The command that starts one worker on `host`; `env` are the variables the worker needs
    /// (not secret), `program` this binary's path and arguments.
    pub(crate) fn command_for(&self, host: &str, env: &[(String, String)], program: &[String]) -> (Command, KeyVia) {
        let mut words: Vec<String> = vec!["env".into()];
        words.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        words.extend(program.iter().cloned());
        match &self.kind {
            Kind::Local => unreachable!("local workers are not launched"),
            Kind::Ssh { port, identity, options } => {
                let mut cmd = Command::new("ssh");
                cmd.args(["-T", "-x", "-a", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]);
                for option in options {
                    cmd.arg("-o").arg(option);
                }
                if let Some(port) = port {
                    cmd.arg("-p").arg(port.to_string());
                }
                if let Some(identity) = identity {
                    cmd.arg("-i").arg(identity);
                }
                cmd.arg(host).arg("--").arg(format!("exec {}", shell_line(&words)));
                (cmd, KeyVia::Stdin)
            }
            Kind::Command(template) => {
                let mut args = Vec::new();
                for part in template {
                    if part == "{command}" {
                        args.extend(words.iter().cloned());
                    } else {
                        args.push(part.replace("{host}", host).replace("{command_line}", &shell_line(&words)));
                    }
                }
                let mut cmd = Command::new(args.first().cloned().unwrap_or_default());
                cmd.args(&args[1..]);
                (cmd, KeyVia::Stdin)
            }
            Kind::Mpirun => {
                let mut cmd = Command::new("mpirun");
                // SAFETY: geteuid has no preconditions.
                if unsafe { libc::geteuid() } == 0 {
                    cmd.arg("--allow-run-as-root");
                }
                cmd.args(["--oversubscribe", "-np", "1"]);
                if host != "localhost" {
                    cmd.arg("--host").arg(host);
                }
                for (k, v) in env {
                    cmd.env(k, v).arg("-x").arg(k);
                }
                cmd.arg("-x").arg(KEY_VAR);
                cmd.args(program);
                (cmd, KeyVia::Environment)
            }
            Kind::Srun => {
                let mut cmd = Command::new("srun");
                // `--exact`: a step takes one task's share of the allocation, not all of it, so
                // that the other slots' steps can run beside it.
                cmd.args(["--nodes=1", "--ntasks=1", "--exact", "--kill-on-bad-exit=1"]);
                if host != "localhost" && host != ANY_NODE {
                    cmd.arg(format!("--nodelist={host}"));
                }
                let mut names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
                names.push(KEY_VAR);
                cmd.arg(format!("--export={}", names.join(",")));
                for (k, v) in env {
                    cmd.env(k, v);
                }
                cmd.args(program);
                (cmd, KeyVia::Environment)
            }
        }
    }
}

/// Words quoted for a POSIX shell (each in single quotes).
pub(crate) fn shell_line(words: &[String]) -> String {
    words.iter().map(|w| format!("'{}'", w.replace('\'', "'\\''"))).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_slots() {
        let l = Launcher::ssh(["a:2", "b", "c:x"]);
        assert_eq!(l.hosts, vec![("a".into(), 2), ("b".into(), 1), ("c:x".into(), 1)]);
        assert_eq!(
            (l.host_of(0), l.host_of(1), l.host_of(2), l.host_of(4)),
            ("a".into(), "a".into(), "b".into(), "a".into())
        );
    }

    #[test]
    fn an_allocation_gives_srun_its_slots() {
        fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        }
        assert_eq!(allocation_tasks(env(&[])), None, "outside an allocation");
        assert_eq!(allocation_tasks(env(&[("SLURM_NTASKS", "4")])), None, "no job id: no allocation");
        assert_eq!(allocation_tasks(env(&[("SLURM_JOB_ID", "7"), ("SLURM_NTASKS", "6")])), Some(6));
        let cpus = [("SLURM_JOB_ID", "7"), ("SLURM_JOB_CPUS_PER_NODE", "4(x2),2")];
        assert_eq!(allocation_tasks(env(&cpus)), Some(10));
        assert_eq!(allocation_tasks(env(&[("SLURM_JOB_ID", "7"), ("SLURM_JOB_CPUS_PER_NODE", "x")])), None);
        let l = Launcher::srun();
        assert_eq!(l.host_of(3), ANY_NODE);
        let (cmd, via) = l.command_for(&l.host_of(0), &[], &["/bin/w".into()]);
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(via, KeyVia::Environment);
        assert!(args.contains(&"--exact".to_string()) && !args.iter().any(|a| a.starts_with("--nodelist")), "{args:?}");
        let named = Launcher::srun().hosts(["n1:2"]);
        let (cmd, _) = named.command_for(&named.host_of(1), &[], &["/bin/w".into()]);
        assert!(cmd.get_args().any(|a| a == "--nodelist=n1"));
    }

    #[test]
    fn ssh_command_carries_no_key_and_quotes_the_program() {
        let l = Launcher::ssh(["h"]).port(2200).identity_file("/k").ssh_option("UserKnownHostsFile=/dev/null");
        let (cmd, via) = l.command_for("h", &[("A".into(), "1".into())], &["/bin/it's".into()]);
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(via, KeyVia::Stdin);
        assert!(
            args.contains(&"BatchMode=yes".to_string()) && args.contains(&"UserKnownHostsFile=/dev/null".to_string())
        );
        assert_eq!(args.last().unwrap(), "exec 'env' 'A=1' '/bin/it'\\''s'");
        assert!(args.windows(2).any(|w| w == ["-p", "2200"]) && args.windows(2).any(|w| w == ["-i", "/k"]));
    }
}
