//! Runs the real `swiftfed-sidecar` binary for integration tests, next to the harness's Swift
//! clusters.

#![allow(dead_code)]

pub mod stream;
pub mod tls;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use swiftfed_tests::{free_port, http_request, scratch_dir, unique_name, HttpResponse};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const TESTER: (&str, &str) = ("test:tester", "testing");
pub const TESTER2: (&str, &str) = ("test:tester2", "testing2");

pub struct Sidecar {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    log_path: PathBuf,
}

pub struct Options {
    pub upstream_port: u16,
    /// Written to the routing file before start; no `--config` when `None`.
    pub routing: Option<String>,
    pub extra_args: Vec<String>,
}

impl Sidecar {
    /// A sidecar in front of the proxy on `upstream_port` with `routing` as its routing file.
    pub fn start(upstream_port: u16, routing: Option<&str>) -> Sidecar {
        Sidecar::start_with(Options {
            upstream_port,
            routing: routing.map(str::to_string),
            extra_args: vec![],
        })
    }

    pub fn start_with(options: Options) -> Sidecar {
        let sidecar = Sidecar::spawn_with(options);
        sidecar.wait_ready(Duration::from_secs(20));
        sidecar
    }

    /// Starts the process without waiting for `/ready` over plain HTTP (for an admin listener
    /// behind TLS, whose caller checks readiness itself).
    pub fn spawn_with(options: Options) -> Sidecar {
        Sidecar::spawn_with_env(options, &[])
    }

    /// `spawn_with`, with extra environment variables for the sidecar process.
    pub fn spawn_with_env(options: Options, env: &[(&str, &str)]) -> Sidecar {
        let dir = scratch_dir()
            .expect("scratch dir")
            .join(unique_name("sidecar"));
        fs::create_dir_all(&dir).expect("sidecar dir");
        let config_path = dir.join("routing.yaml");
        let token_path = dir.join("admin-token");
        fs::write(&token_path, format!("{ADMIN_TOKEN}\n")).expect("token file");
        let log_path = dir.join("sidecar.log");
        let log = fs::File::create(&log_path).expect("log file");
        let port = free_port();
        let admin_port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_swiftfed-sidecar"));
        cmd.args(["--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--upstream",
                &format!("127.0.0.1:{}", options.upstream_port),
            ])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .arg("--admin-token-file")
            .arg(&token_path)
            .args(["--config-poll", "100ms"])
            .args(&options.extra_args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        if let Some(routing) = &options.routing {
            fs::write(&config_path, routing).expect("routing file");
            cmd.arg("--config").arg(&config_path);
        }
        // The sidecar dies with the test thread that started it, even if the test process is
        // killed: no sidecar outlives its test.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn swiftfed-sidecar");
        Sidecar {
            child,
            port,
            admin_port,
            dir,
            config_path,
            log_path,
        }
    }

    /// Polls `/ready` until it answers 200, or panics with the log.
    pub fn wait_ready(&self, budget: Duration) {
        let deadline = Instant::now() + budget;
        loop {
            if let Ok(r) = http_request("GET", &format!("{}/ready", self.admin_url()), &[], b"") {
                if r.status == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "sidecar not ready within {budget:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn auth_url(&self) -> String {
        format!("{}/auth/v1.0", self.url())
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// `PUT /v1/config` with the admin token.
    pub fn push(&self, table: &str) -> HttpResponse {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        http_request(
            "PUT",
            &format!("{}/v1/config", self.admin_url()),
            &[("Authorization", &auth)],
            table.as_bytes(),
        )
        .expect("push")
    }

    pub fn get_config(&self) -> HttpResponse {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        http_request(
            "GET",
            &format!("{}/v1/config", self.admin_url()),
            &[("Authorization", &auth)],
            b"",
        )
        .expect("get config")
    }

    pub fn metrics(&self) -> String {
        http_request("GET", &format!("{}/metrics", self.admin_url()), &[], b"")
            .expect("metrics")
            .body_text()
    }

    /// Sum of all samples of `name` whose labels contain every `key="value"` in `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next().is_some_and(|n| n == name))
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Peak resident memory of the sidecar process (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGTERM, then wait for exit (bounded).
    pub fn terminate(&mut self, budget: Duration) -> ExitStatus {
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + budget;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sidecar did not exit within {budget:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Replaces the routing file atomically (write + rename, as Kubernetes does).
    pub fn write_routing_file(&self, table: &str) {
        let tmp = self.dir.join(".routing.tmp");
        fs::write(&tmp, table).expect("write routing");
        fs::rename(&tmp, &self.config_path).expect("rename routing");
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("sidecar log ({}):\n{}", self.log_path.display(), self.log());
        }
    }
}

/// A routing table with one Passthrough cluster `b` at `endpoints` and the given routes (YAML
/// list items, each starting with `- `).
pub fn routing(revision: u64, endpoints: &[String], routes: &[&str]) -> String {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "revision: {revision}\nclusters:\n- name: b\n  endpoints: [{}]\n  timeouts: {{connect: 1s, firstByte: 30s, idle: 30s}}\nroutes:\n{}\n",
        endpoints.join(", "),
        routes.join("\n")
    )
}

/// (storage URL, token) obtained through the sidecar (auth goes to the local cluster).
pub fn auth_via(sidecar: &Sidecar, user: (&str, &str)) -> (String, String) {
    let r = http_request(
        "GET",
        &sidecar.auth_url(),
        &[("X-Auth-User", user.0), ("X-Auth-Key", user.1)],
        b"",
    )
    .expect("auth through sidecar");
    assert_eq!(
        r.status / 100,
        2,
        "auth via sidecar: {} {}",
        r.status,
        r.body_text()
    );
    (
        r.header("x-storage-url").expect("storage url").to_string(),
        r.header("x-auth-token").expect("token").to_string(),
    )
}

pub fn req(
    method: &str,
    url: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut all = vec![("X-Auth-Token", token)];
    all.extend_from_slice(headers);
    http_request(method, url, &all, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// A routing table whose cluster `b` uses the sidecar's own tempauth credentials on `b`
/// (`test:sidecar`, an admin of AUTH_test there).
pub fn routing_credentials(
    revision: u64,
    b: &swiftfed_tests::SwiftCluster,
    routes: &[&str],
) -> String {
    routing_credentials_in(revision, &[("b", b)], routes)
}

/// The same with several named clusters, each with the sidecar's credentials on it.
pub fn routing_credentials_in(
    revision: u64,
    clusters: &[(&str, &swiftfed_tests::SwiftCluster)],
    routes: &[&str],
) -> String {
    let clusters: Vec<String> = clusters
        .iter()
        .map(|(name, c)| {
            format!(
                "- name: {name}\n  endpoints: [\"{}\"]\n  auth: {{mode: Credentials, credentials: {{type: tempauth, authUrl: \"{}\", user: \"test:sidecar\", key: \"sidecar-key\"}}}}\n  timeouts: {{connect: 1s, firstByte: 30s, idle: 30s}}\n",
                c.proxy_url(),
                c.auth_url()
            )
        })
        .collect();
    format!(
        "revision: {revision}\nclusters:\n{}routes:\n{}\n",
        clusters.concat(),
        routes.join("\n")
    )
}

/// Raw request/response on one TCP connection, for what the blocking client cannot express.
pub fn raw_exchange(addr: &str, request: &[u8], read_budget: Duration) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(read_budget)).expect("timeout");
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// What a listing says, minus what differs between two accounts or containers holding the
/// same names (`last_modified`, the listed account's or container's own name): JSON as rows of
/// (name or subdir, count, bytes, hash, content type), XML without those fields, plain text as
/// is; each with its content type.
pub fn listing_view(r: &HttpResponse) -> String {
    let ctype = r.header("content-type").unwrap_or_default().to_string();
    let text = r.body_text();
    if ctype.starts_with("application/json") {
        let items: Vec<serde_json::Value> = serde_json::from_str(&text).expect("json listing");
        let rows: Vec<String> = items
            .iter()
            .map(|i| match i["subdir"].as_str() {
                Some(s) => format!("subdir {s}"),
                None => format!(
                    "{} {} {} {} {}",
                    i["name"], i["count"], i["bytes"], i["hash"], i["content_type"]
                ),
            })
            .collect();
        return format!("{ctype}\n{}", rows.join("\n"));
    }
    if ctype.contains("xml") {
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("<last_modified>") {
            out.push_str(&rest[..start]);
            let end = rest.find("</last_modified>").expect("closed") + "</last_modified>".len();
            rest = &rest[end..];
        }
        out.push_str(rest);
        // The root element's name attribute: the first one after the declaration.
        let out = match out
            .find("?>")
            .and_then(|d| out[d..].find(" name=\"").map(|n| d + n))
        {
            Some(at) => {
                let value_end = out[at + 7..].find('"').map(|e| at + 7 + e + 1);
                match value_end {
                    Some(e) => format!("{}{}", &out[..at], &out[e..]),
                    None => out,
                }
            }
            None => out,
        };
        return format!("{ctype}\n{out}");
    }
    format!("{ctype}\n{text}")
}

/// Deterministic bytes that differ everywhere (a repeated block would hide misplaced segments).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Asserts a 2xx answer, naming what was attempted and showing Swift's body otherwise.
pub fn ok(r: &HttpResponse, what: &str) {
    assert!(
        r.status / 100 == 2,
        "{what}: {} {}",
        r.status,
        r.body_text()
    );
}

/// `text` with every `open…close` span blanked (times that differ between two objects).
pub fn blanked(text: &str, open: &str, close: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(open) {
        out.push_str(&rest[..at + open.len()]);
        rest = &rest[at + open.len()..];
        rest = rest.find(close).map_or("", |e| &rest[e..]);
    }
    out.push_str(rest);
    out
}

/// A container's listing of `x/` as the client gets it: the JSON records, and the JSON and
/// XML texts, times blanked and the container's name fixed.
pub fn listed(url: &str, token: &str, container: &str) -> (Vec<serde_json::Value>, String, String) {
    let url = format!("{url}/{container}?prefix=x/");
    let json = req("GET", &format!("{url}&format=json"), token, &[], b"");
    ok(&json, "JSON listing");
    let records: Vec<serde_json::Value> = serde_json::from_slice(&json.body).expect("JSON listing");
    let json_text = blanked(&json.body_text(), "\"last_modified\": \"", "\"");
    let xml = req("GET", &format!("{url}&format=xml"), token, &[], b"");
    ok(&xml, "XML listing");
    assert_eq!(
        xml.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
    let xml_text = blanked(
        &xml.body_text().replace(container, "C"),
        "<last_modified>",
        "</last_modified>",
    );
    (records, json_text, xml_text)
}

/// The headers of an answer a client may compare across clusters: user metadata and `named`
/// (lower case), with the status; sorted.
pub fn headers_view(r: &HttpResponse, named: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| k.starts_with("x-object-meta-") || named.contains(&k.as_str()))
        .collect();
    out.push(("status".into(), r.status.to_string()));
    out.sort();
    out
}

/// A route sending `AUTH_test`'s container `container` to cluster `b`.
pub fn exact_route(container: &str) -> String {
    format!("- {{match: {{account: AUTH_test, container: {{exact: \"{container}\"}}}}, target: {{cluster: b}}}}")
}

/// A route sending `AUTH_test`'s containers named `prefix…` to cluster `b`.
pub fn prefix_route(prefix: &str) -> String {
    format!("- {{match: {{account: AUTH_test, container: {{prefix: \"{prefix}\"}}}}, target: {{cluster: b}}}}")
}
