//! The candidates: direct (no proxy), the sidecar (pass-through and routed), nginx and haproxy,
//! each started from its committed config (`bench/configs/`) in front of one upstream.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use swiftfed_tests::free_port;

use crate::client::{request_head, Conn};
use crate::procs::{self, Procs};

pub const NGINX_CONF: &str = include_str!("../configs/nginx.conf");
pub const HAPROXY_CFG: &str = include_str!("../configs/haproxy.cfg");
pub const SIDECAR_ROUTING: &str = include_str!("../configs/sidecar-routing.yaml");

#[derive(Clone, Debug)]
pub struct Candidate {
    pub name: &'static str,
    /// `127.0.0.1:port` the load client talks to.
    pub addr: String,
    /// Container used in request paths (`routed` sends the sidecar through a route).
    pub container: &'static str,
    /// The proxy process (nginx: its master); `None` for direct.
    pub pid: Option<u32>,
}

impl Candidate {
    /// The proxy's processes (nginx: master and workers), measured for CPU and memory.
    pub fn pids(&self) -> Vec<u32> {
        self.pid.map(procs::with_children).unwrap_or_default()
    }

    pub fn is_proxy(&self) -> bool {
        self.pid.is_some()
    }
}

fn fill(template: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in pairs {
        out = out.replace(k, v);
    }
    out
}

/// Waits until `GET/HEAD probe` through `addr` answers 2xx, or fails with the process log.
pub async fn wait_ready(
    procs: &mut Procs,
    pid: Option<u32>,
    addr: &str,
    method: &str,
    probe: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some(pid) = pid {
            procs.check_alive(pid)?;
        }
        match Conn::connect(addr, 16 * 1024).await {
            Ok(mut c) => {
                let r = async {
                    c.send(&request_head(method, probe, addr, &[])).await?;
                    let head = c.read_head().await?;
                    c.read_body(&head, method == "HEAD", |_| {}).await?;
                    Ok::<_, String>(head.status)
                }
                .await;
                match r {
                    Ok(s) if (200..300).contains(&s) => return Ok(()),
                    Ok(s) => last = format!("status {s}"),
                    Err(e) => last = e,
                }
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = pid.map(|p| procs.log_tail(p)).unwrap_or_default();
    Err(format!(
        "{addr} not ready within 20 s ({last}); log:\n{log}"
    ))
}

pub struct Started {
    pub candidates: Vec<Candidate>,
}

/// Starts the sidecar, nginx and haproxy in front of `upstream` (`127.0.0.1:port`), with
/// `tag` naming their files in `run_dir`. `routed`: also the sidecar routed candidate, with the
/// routing table sending container `routed` to `upstream` as a target cluster.
#[allow(clippy::too_many_arguments)]
pub async fn start_proxies(
    procs: &mut Procs,
    run_dir: &Path,
    sidecar_bin: &Path,
    upstream: &str,
    tag: &str,
    routed: bool,
    also_sidecar: &[String],
    probe: (&str, &str),
) -> Result<Started, String> {
    let workers = crate::machine::cores().to_string();
    let mut candidates = vec![Candidate {
        name: "direct",
        addr: upstream.to_string(),
        container: "c",
        pid: None,
    }];

    // sidecar
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(sidecar_bin);
    cmd.args(["--listen", &addr, "--upstream", upstream])
        .env("RUST_LOG", "info");
    if routed {
        let file = run_dir.join(format!("{tag}-routing.yaml"));
        std::fs::write(&file, fill(SIDECAR_ROUTING, &[("@ORIGIN@", upstream)]))
            .map_err(|e| e.to_string())?;
        cmd.arg("--config").arg(&file);
    }
    let pid = procs.spawn("sidecar", cmd, &run_dir.join(format!("{tag}-sidecar.log")))?;
    candidates.push(Candidate {
        name: "sidecar",
        addr: addr.clone(),
        container: "c",
        pid: Some(pid),
    });
    if routed {
        candidates.push(Candidate {
            name: "sidecar routed",
            addr: addr.clone(),
            container: "routed",
            pid: Some(pid),
        });
    }

    // extra sidecar builds (--also-sidecar LABEL=PATH[,ARG...])
    for (i, spec) in also_sidecar.iter().enumerate() {
        let (label, rest) = spec
            .split_once('=')
            .ok_or_else(|| format!("--also-sidecar {spec:?}: use LABEL=PATH[,ARG...]"))?;
        let mut items = rest.split(',');
        let bin = items.next().unwrap_or_default();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", &addr, "--upstream", upstream])
            .env("RUST_LOG", "info");
        for item in items {
            match item.split_once('=') {
                Some((k, v)) if !item.starts_with('-') => {
                    cmd.env(k, v);
                }
                _ => {
                    cmd.arg(item);
                }
            }
        }
        let log = run_dir.join(format!("{tag}-sidecar-extra{i}.log"));
        let pid = procs.spawn(label, cmd, &log)?;
        candidates.push(Candidate {
            // lives for the whole run
            name: Box::leak(label.to_string().into_boxed_str()),
            addr,
            container: "c",
            pid: Some(pid),
        });
    }

    // nginx
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let nginx_dir = run_dir.join(format!("{tag}-nginx"));
    std::fs::create_dir_all(&nginx_dir).map_err(|e| e.to_string())?;
    let conf = nginx_dir.join("nginx.conf");
    let dir = nginx_dir.display().to_string();
    std::fs::write(
        &conf,
        fill(
            NGINX_CONF,
            &[
                ("@LISTEN@", &addr),
                ("@ORIGIN@", upstream),
                ("@RUN@", &dir),
                ("@WORKERS@", &workers),
            ],
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(which("nginx")?);
    cmd.arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&nginx_dir)
        .arg("-e")
        .arg(nginx_dir.join("nginx-error.log"));
    let pid = procs.spawn("nginx", cmd, &run_dir.join(format!("{tag}-nginx.log")))?;
    candidates.push(Candidate {
        name: "nginx",
        addr,
        container: "c",
        pid: Some(pid),
    });

    // haproxy
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = run_dir.join(format!("{tag}-haproxy.cfg"));
    std::fs::write(
        &cfg,
        fill(
            HAPROXY_CFG,
            &[
                ("@LISTEN@", &addr),
                ("@ORIGIN@", upstream),
                ("@WORKERS@", &workers),
            ],
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(which("haproxy")?);
    cmd.arg("-db").arg("-f").arg(&cfg);
    let pid = procs.spawn("haproxy", cmd, &run_dir.join(format!("{tag}-haproxy.log")))?;
    candidates.push(Candidate {
        name: "haproxy",
        addr,
        container: "c",
        pid: Some(pid),
    });

    let (method, probe_path) = probe;
    for c in &candidates {
        let path = probe_path.replace("{container}", c.container);
        wait_ready(procs, c.pid, &c.addr, method, &path).await?;
    }
    Ok(Started { candidates })
}

/// A program on PATH (or in /usr/sbin, where Debian puts nginx and haproxy).
pub fn which(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} not found: install it (bench/run does, with apt-get)"))
}
