//! A real `sshd` on 127.0.0.1 for the ssh launcher's tests: host and user keys generated in a
//! temporary directory, a config of its own, run as a child (`-D`) and reaped on drop.
//! [`Sshd::start`] returns `None`, saying why on stderr, where sshd is not installed (CI
//! installs `openssh-server`: see `.ci/run`).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Sshd {
    child: Child,
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
}

impl Sshd {
    pub(crate) fn start() -> Option<Sshd> {
        let sshd = PathBuf::from("/usr/sbin/sshd");
        if !sshd.exists() || Command::new("ssh-keygen").arg("-?").stderr(Stdio::null()).status().is_err() {
            eprintln!("SKIPPED: no /usr/sbin/sshd or ssh-keygen here (apt-get install -y openssh-server)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "workpool-sshd-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        for name in ["host", "user"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(name))
                .status()
                .unwrap();
            assert!(status.success(), "ssh-keygen failed");
        }
        std::fs::copy(dir.join("user.pub"), dir.join("authorized_keys")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
             PrintMotd no\nMaxStartups 64\nMaxSessions 64\n",
            d = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let child = Command::new(&sshd)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = Sshd { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || server.child.try_wait().unwrap().is_some() {
                eprintln!("SKIPPED: sshd did not start on 127.0.0.1:{port}");
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    /// The launcher for this server, with `slots` slots on 127.0.0.1.
    pub(crate) fn launcher(&self, slots: usize) -> workpool::Launcher {
        workpool::Launcher::ssh([format!("127.0.0.1:{slots}")])
            .port(self.port)
            .identity_file(self.dir.join("user"))
            .ssh_option("StrictHostKeyChecking=no")
            .ssh_option("UserKnownHostsFile=/dev/null")
            .ssh_option("LogLevel=ERROR")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
