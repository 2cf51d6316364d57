//! A real Swift cluster on 127.0.0.1: memcached, account, container, object
//! and proxy servers, one process each, in its own dir on tmpfs.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::config::{self, Ports, ProxyAuth};
use crate::env;
use crate::error::{HarnessError, Result};
use crate::http::request_with_timeout;
use crate::process::{self, Server};

/// Generous: five Python servers importing Swift on a loaded 2-core machine took more than 30 s;
/// a server that dies is reported at once, so the good path never waits for this.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_GRACE: Duration = Duration::from_secs(3);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const LOG_TAIL_LINES: usize = 30;

/// Options for [`SwiftCluster`]; start with [`SwiftCluster::builder`].
#[derive(Clone, Debug)]
pub struct ClusterBuilder {
    name: String,
    token_life: u64,
    ready_timeout: Duration,
    constraints: Vec<(String, String)>,
    bulk: Vec<(String, String)>,
    keystone: Option<ProxyAuth>,
}

impl ClusterBuilder {
    /// Authenticate with `keystone` (`authtoken` + `keystoneauth`, accounts
    /// `AUTH_<project_id>`) instead of tempauth; see [`crate::Keystone`].
    pub fn keystone(mut self, keystone: &crate::Keystone) -> Self {
        self.keystone = Some(ProxyAuth::Keystone {
            url: keystone.url(),
            admin_password: keystone.admin_password().to_string(),
        });
        self
    }

    /// tempauth `token_life` in seconds (default 86400); short values let tests
    /// watch tokens expire.
    pub fn token_life(mut self, seconds: u64) -> Self {
        self.token_life = seconds;
        self
    }

    /// A `[swift-constraints]` setting, e.g. `("max_file_size", "1048576")` to
    /// test large-object limits with small uploads. Shows in `GET /info`.
    pub fn constraint(mut self, name: &str, value: impl ToString) -> Self {
        self.constraints.push((name.to_string(), value.to_string()));
        self
    }

    /// A `[filter:bulk]` setting, e.g. `("max_containers_per_extraction", "2")` to test
    /// extract-archive limits with small archives. Shows in `GET /info`.
    pub fn bulk(mut self, name: &str, value: impl ToString) -> Self {
        self.bulk.push((name.to_string(), value.to_string()));
        self
    }

    /// How long `start` waits for every server to answer (default 90 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    pub fn start(self) -> Result<SwiftCluster> {
        SwiftCluster::start_with(self)
    }
}

pub struct SwiftCluster {
    name: String,
    dir: PathBuf,
    ports: Ports,
    ready_timeout: Duration,
    auth: ProxyAuth,
    /// Indexed like `Server::ALL`; `None` when not running (e.g. a stopped proxy).
    children: [Option<Child>; 5],
}

impl SwiftCluster {
    /// Starts a cluster with default options and waits until it serves requests.
    pub fn start(name: &str) -> Result<SwiftCluster> {
        Self::builder(name).start()
    }

    pub fn builder(name: &str) -> ClusterBuilder {
        ClusterBuilder {
            name: name.to_string(),
            token_life: 86400,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            constraints: Vec::new(),
            bulk: Vec::new(),
            keystone: None,
        }
    }

    fn start_with(opts: ClusterBuilder) -> Result<SwiftCluster> {
        env::python()?;
        let memcached_bin = env::memcached()?;
        let dir = env::process_dir()?.join(format!("{}-{}", opts.name, env::next_cluster_number()));
        let devices = dir.join("node/d1");
        fs::create_dir_all(&devices)
            .map_err(|e| HarnessError::io(format!("create {}", devices.display()), e))?;
        let ports = Ports {
            memcached: env::free_port(),
            account: env::free_port(),
            container: env::free_port(),
            object: env::free_port(),
            proxy: env::free_port(),
        };
        // From here on, Drop cleans up whatever was started if a step fails.
        let mut cluster = SwiftCluster {
            name: opts.name.clone(),
            dir,
            ports,
            ready_timeout: opts.ready_timeout,
            auth: opts.keystone.clone().unwrap_or(ProxyAuth::Tempauth {
                token_life: opts.token_life,
            }),
            children: Default::default(),
        };
        cluster.write_configs(&opts)?;

        // Rings are needed by the proxy only: build them while the rest starts.
        let rings_log = cluster.dir.join("rings.log");
        let rings = process::spawn_launcher("rings", &cluster.rings_args(), &rings_log, false)?;
        let memcached_args = vec![
            "--port".into(),
            ports.memcached.to_string(),
            "--memcached".into(),
            memcached_bin.display().to_string(),
        ];
        cluster.spawn(Server::Memcached, "memcached", memcached_args)?;
        for server in [Server::Account, Server::Container, Server::Object] {
            cluster.spawn_swift(server)?;
        }
        cluster.wait_rings(rings, &rings_log)?;
        cluster.spawn_swift(Server::Proxy)?;

        let deadline = Instant::now() + opts.ready_timeout;
        for server in Server::ALL {
            cluster.wait_ready(server, deadline)?;
        }
        Ok(cluster)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn proxy_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.proxy)
    }

    pub fn proxy_port(&self) -> u16 {
        self.ports.proxy
    }

    /// Empties the cluster's memcached (`flush_all`): tempauth forgets every token it issued,
    /// as after a restart of the cache, so tests can watch clients renew theirs.
    pub fn forget_tokens(&self) -> Result<()> {
        let fail = |e: std::io::Error| HarnessError::io("memcached flush_all".to_string(), e);
        let mut stream = TcpStream::connect(("127.0.0.1", self.ports.memcached)).map_err(fail)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(fail)?;
        stream.write_all(b"flush_all\r\n").map_err(fail)?;
        let mut answer = [0u8; 4];
        stream.read_exact(&mut answer).map_err(fail)?;
        if &answer != b"OK\r\n" {
            return Err(fail(std::io::Error::other(format!(
                "unexpected answer {:?}",
                String::from_utf8_lossy(&answer)
            ))));
        }
        Ok(())
    }

    /// tempauth v1 endpoint: `http://127.0.0.1:PORT/auth/v1.0`.
    pub fn auth_url(&self) -> String {
        format!("{}/auth/v1.0", self.proxy_url())
    }

    /// `http://127.0.0.1:PORT/v1/<account>`, as tempauth returns it when asked
    /// directly at the proxy.
    pub fn storage_url(&self, account: &str) -> String {
        format!("{}/v1/{account}", self.proxy_url())
    }

    /// The cluster's dir: confs, rings, logs (`<server>.log`), devices (`node/d1`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Logs in with tempauth v1; returns (X-Storage-Url, X-Auth-Token).
    pub fn auth(&self, user: &str, key: &str) -> Result<(String, String)> {
        auth_at(&self.auth_url(), user, key)
    }

    /// The last lines of a server's log (stdout, stderr and Swift's own logging).
    pub fn log_tail(&self, server: Server) -> String {
        process::tail(&process::log_path(&self.dir, server), LOG_TAIL_LINES)
    }

    /// Stops the proxy (for outage tests); the backends and memcached keep running,
    /// so tokens and data survive. No-op when it is already stopped.
    pub fn stop_proxy(&mut self) {
        if let Some(mut child) = self.children[slot(Server::Proxy)].take() {
            process::stop_all(&mut [&mut child], STOP_GRACE);
        }
    }

    /// Starts the proxy again on the same port and waits until it serves requests.
    pub fn start_proxy(&mut self) -> Result<()> {
        if self.children[slot(Server::Proxy)].is_none() {
            self.spawn_swift(Server::Proxy)?;
        }
        self.wait_ready(Server::Proxy, Instant::now() + self.ready_timeout)
    }

    /// PIDs of the running processes (launchers; memcached runs under its launcher).
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.children.iter().flatten().map(Child::id).collect()
    }

    fn write_configs(&self, opts: &ClusterBuilder) -> Result<()> {
        let p = self.ports;
        let files = [
            (
                "swift.conf",
                config::swift_conf(&env::random_hex(), &opts.constraints),
            ),
            (
                "account-server.conf",
                config::backend_conf(&self.dir, "account", p.account),
            ),
            (
                "container-server.conf",
                config::backend_conf(&self.dir, "container", p.container),
            ),
            (
                "object-server.conf",
                config::backend_conf(&self.dir, "object", p.object),
            ),
            (
                "proxy-server.conf",
                config::proxy_conf(&self.dir, p, &self.auth, &opts.bulk),
            ),
        ];
        for (file, text) in files {
            let path = self.dir.join(file);
            fs::write(&path, text)
                .map_err(|e| HarnessError::io(format!("write {}", path.display()), e))?;
        }
        Ok(())
    }

    fn rings_args(&self) -> Vec<String> {
        let p = self.ports;
        vec![
            "--dir".into(),
            self.dir.display().to_string(),
            "--ring".into(),
            format!("account={}", p.account),
            "--ring".into(),
            format!("container={}", p.container),
            "--ring".into(),
            format!("object={}", p.object),
        ]
    }

    fn wait_rings(&self, mut rings: Child, log: &Path) -> Result<()> {
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            match rings.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(HarnessError::Command {
                        command: format!("launch.py rings {}", self.rings_args().join(" ")),
                        status: status.to_string(),
                        output: process::tail(log, LOG_TAIL_LINES),
                    })
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => {
                    let _ = rings.kill();
                    let _ = rings.wait();
                    return Err(HarnessError::Command {
                        command: "launch.py rings".into(),
                        status: format!("{other:?}, gave up after {:?}", self.ready_timeout),
                        output: process::tail(log, LOG_TAIL_LINES),
                    });
                }
            }
        }
    }

    fn spawn_swift(&mut self, server: Server) -> Result<()> {
        let args = vec![
            "--conf".into(),
            self.dir
                .join(format!("{}.conf", server.name()))
                .display()
                .to_string(),
            "--swift-conf".into(),
            self.dir.join("swift.conf").display().to_string(),
            "--app".into(),
            server.name().into(),
        ];
        self.spawn(server, "server", args)
    }

    fn spawn(&mut self, server: Server, mode: &str, args: Vec<String>) -> Result<()> {
        let log = process::log_path(&self.dir, server);
        let child = process::spawn_launcher(mode, &args, &log, true)?;
        self.children[slot(server)] = Some(child);
        Ok(())
    }

    fn port(&self, server: Server) -> u16 {
        match server {
            Server::Memcached => self.ports.memcached,
            Server::Account => self.ports.account,
            Server::Container => self.ports.container,
            Server::Object => self.ports.object,
            Server::Proxy => self.ports.proxy,
        }
    }

    /// Polls `server` until its probe passes; fails early if the process exits.
    fn wait_ready(&mut self, server: Server, deadline: Instant) -> Result<()> {
        let started = Instant::now();
        let mut last = String::from("not probed yet");
        loop {
            if let Some(child) = self.children[slot(server)].as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("process exited ({status}); last probe: {last}");
                    return Err(self.not_ready(server, started, last));
                }
            } else {
                return Err(self.not_ready(server, started, "not running".into()));
            }
            match self.probe(server) {
                Ok(()) => return Ok(()),
                Err(why) => last = why,
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(server, started, last));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn not_ready(&self, server: Server, started: Instant, detail: String) -> HarnessError {
        let log = process::log_path(&self.dir, server);
        HarnessError::NotReady {
            cluster: self.name.clone(),
            server: server.name().into(),
            detail: format!("after {:.1?}: {detail}", started.elapsed()),
            log_tail: process::tail(&log, LOG_TAIL_LINES),
            log,
        }
    }

    /// One readiness check. The proxy is ready when a user can log in and HEAD
    /// their account, which also proves the rings, backends and memcached work.
    fn probe(&self, server: Server) -> std::result::Result<(), String> {
        let port = self.port(server);
        if server == Server::Memcached {
            return probe_memcached(port);
        }
        let base = format!("http://127.0.0.1:{port}");
        let health = get(&format!("{base}/healthcheck"), &[])?;
        if health.status != 200 {
            return Err(format!("GET /healthcheck answered {}", health.status));
        }
        if server != Server::Proxy {
            return Ok(());
        }
        let (storage_url, token) = match &self.auth {
            ProxyAuth::Tempauth { .. } => {
                auth_at(&self.auth_url(), "test:tester", "testing").map_err(|e| e.to_string())?
            }
            ProxyAuth::Keystone {
                url,
                admin_password,
            } => {
                let t = crate::keystone::password_token_at(url, "admin", admin_password, None)
                    .map_err(|e| e.to_string())?;
                (self.storage_url(&format!("AUTH_{}", t.project_id)), t.token)
            }
        };
        let head = request_with_timeout(
            "HEAD",
            &storage_url,
            &[("X-Auth-Token", &token)],
            b"",
            PROBE_TIMEOUT,
        )
        .map_err(|e| e.to_string())?;
        // a never-written account answers 200, an existing one 204
        if !(200..300).contains(&head.status) {
            return Err(format!("HEAD {storage_url} answered {}", head.status));
        }
        Ok(())
    }
}

impl Drop for SwiftCluster {
    fn drop(&mut self) {
        // proxy first, so nothing talks to half-stopped backends
        let mut running: Vec<&mut Child> = self.children.iter_mut().rev().flatten().collect();
        process::stop_all(&mut running, STOP_GRACE);
        if std::env::var_os("SWIFTFED_KEEP_DIRS").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn slot(server: Server) -> usize {
    Server::ALL.iter().position(|s| *s == server).unwrap()
}

fn get(url: &str, headers: &[(&str, &str)]) -> std::result::Result<crate::HttpResponse, String> {
    request_with_timeout("GET", url, headers, b"", PROBE_TIMEOUT).map_err(|e| e.to_string())
}

/// tempauth v1 login at `auth_url`; returns (X-Storage-Url, X-Auth-Token).
pub fn auth_at(auth_url: &str, user: &str, key: &str) -> Result<(String, String)> {
    let resp = request_with_timeout(
        "GET",
        auth_url,
        &[("X-Auth-User", user), ("X-Auth-Key", key)],
        b"",
        PROBE_TIMEOUT,
    )?;
    let fail = |detail: String| HarnessError::Http {
        method: format!("GET (auth as {user})"),
        url: auth_url.to_string(),
        detail,
    };
    if resp.status != 200 {
        return Err(fail(format!(
            "status {}: {}",
            resp.status,
            resp.body_text().trim()
        )));
    }
    match (resp.header("X-Storage-Url"), resp.header("X-Auth-Token")) {
        (Some(url), Some(token)) => Ok((url.to_string(), token.to_string())),
        _ => Err(fail(format!(
            "200 without X-Storage-Url/X-Auth-Token: {:?}",
            resp.headers
        ))),
    }
}

fn probe_memcached(port: u16) -> std::result::Result<(), String> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut conn =
        TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(PROBE_TIMEOUT)).ok();
    conn.write_all(b"version\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 64];
    let n = conn.read(&mut buf).map_err(|e| format!("read: {e}"))?;
    if buf[..n].starts_with(b"VERSION") {
        Ok(())
    } else {
        Err(format!(
            "unexpected answer {:?}",
            String::from_utf8_lossy(&buf[..n])
        ))
    }
}
