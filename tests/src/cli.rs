//! python-swiftclient's `swift` CLI, a real client to drive clusters and the sidecar.

use std::process::{Command, Output};

use crate::cluster::SwiftCluster;
use crate::env;
use crate::error::{HarnessError, Result};

/// Something with a tempauth v1 endpoint: a cluster, or a URL such as the
/// sidecar's `http://127.0.0.1:PORT/auth/v1.0`.
pub trait AuthEndpoint {
    fn auth_endpoint(&self) -> String;
}

impl AuthEndpoint for SwiftCluster {
    fn auth_endpoint(&self) -> String {
        self.auth_url()
    }
}

impl AuthEndpoint for str {
    fn auth_endpoint(&self) -> String {
        self.to_string()
    }
}

impl AuthEndpoint for String {
    fn auth_endpoint(&self) -> String {
        self.clone()
    }
}

/// Runs `swift -A <auth url> -U <user> -K <key> <args...>` and returns its
/// output whatever the exit status (check `output.status` yourself); errs only
/// when it cannot run. `ST_*`/`OS_*` variables are cleared so the environment
/// cannot redirect it.
pub fn swift_cli<T: AuthEndpoint + ?Sized>(
    target: &T,
    user: &str,
    key: &str,
    args: &[&str],
) -> Result<Output> {
    let bin = env::venv_bin("swift");
    let auth_url = target.auth_endpoint();
    let mut cmd = swift_command();
    cmd.args(["-A", &auth_url, "-U", user, "-K", key])
        .args(args);
    cmd.output().map_err(|e| {
        HarnessError::io(
            format!(
                "run {} -A {auth_url} -U {user} {}",
                bin.display(),
                args.join(" ")
            ),
            e,
        )
    })
}

/// The `swift` CLI of the venv with `ST_*`/`OS_*` variables cleared, so the environment cannot
/// redirect it.
pub(crate) fn swift_command() -> Command {
    let mut cmd = Command::new(env::venv_bin("swift"));
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("ST_") || n.starts_with("OS_") {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// Like [`swift_cli`], but a non-zero exit is an error carrying stdout and stderr.
pub fn swift_cli_ok<T: AuthEndpoint + ?Sized>(
    target: &T,
    user: &str,
    key: &str,
    args: &[&str],
) -> Result<Output> {
    let out = swift_cli(target, user, key, args)?;
    if !out.status.success() {
        return Err(HarnessError::Command {
            command: format!(
                "swift -A {} -U {user} {}",
                target.auth_endpoint(),
                args.join(" ")
            ),
            status: out.status.to_string(),
            output: format!(
                "stdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(out)
}
