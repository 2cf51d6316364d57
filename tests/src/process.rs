//! Child processes of a cluster: started through the launcher, stopped by PID.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::env;
use crate::error::{HarnessError, Result};

/// The processes of one test cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Server {
    Memcached,
    Account,
    Container,
    Object,
    Proxy,
}

impl Server {
    pub const ALL: [Server; 5] = [
        Server::Memcached,
        Server::Account,
        Server::Container,
        Server::Object,
        Server::Proxy,
    ];

    /// Also the stem of its conf (`<name>.conf`) and log (`<name>.log`) files.
    pub fn name(self) -> &'static str {
        match self {
            Server::Memcached => "memcached",
            Server::Account => "account-server",
            Server::Container => "container-server",
            Server::Object => "object-server",
            Server::Proxy => "proxy-server",
        }
    }
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub(crate) fn log_path(dir: &Path, server: Server) -> PathBuf {
    dir.join(format!("{}.log", server.name()))
}

/// Runs `launch.py <args>` with stdout and stderr appended to `log` (appended,
/// so a restarted proxy keeps its earlier lines). `--watch-pid` ties it to us.
pub(crate) fn spawn_launcher(
    mode: &str,
    args: &[String],
    log: &Path,
    watch: bool,
) -> Result<Child> {
    let python = env::python()?;
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| HarnessError::io(format!("open log {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| HarnessError::io(format!("dup log {}", log.display()), e))?;
    let mut cmd = Command::new(&python);
    cmd.arg(env::launcher()).arg(mode).args(args);
    if watch {
        cmd.args(["--watch-pid", &std::process::id().to_string()]);
    }
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    cmd.spawn().map_err(|e| {
        HarnessError::io(
            format!(
                "spawn {} {} {mode}",
                python.display(),
                env::launcher().display()
            ),
            e,
        )
    })
}

pub(crate) fn sigterm(child: &Child) {
    // SAFETY: plain kill(2) on a PID we spawned and have not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
}

/// SIGTERM to all, wait up to `grace`, then SIGKILL whoever is left; reaps all.
/// SIGTERM first matters for memcached's launcher, which kills memcached on it.
pub(crate) fn stop_all(children: &mut [&mut Child], grace: Duration) {
    for child in children.iter() {
        sigterm(child);
    }
    let deadline = Instant::now() + grace;
    for child in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// The last `lines` lines of a log file, or why it can't be read.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
