//! Resilience of the real sidecar binary against real Swift clusters: target outages and endpoint
//! failover, routing tables swapped under load (admin API and routing file), refused pushes and
//! files, SIGHUP reloads, graceful drain on SIGTERM, and Migrate mode.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use swiftfed_tests::{
    free_port, http_request, scratch_dir, shared_pair, unique_name, HttpResponse, SwiftCluster,
};

const MIB: usize = 1 << 20;
const RELOAD_FAILURES: &str = "swiftfed_sidecar_config_reload_failures_total";
const ACTIVE_STREAMS: &str = "swiftfed_sidecar_active_streams";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Polls `probe` every 20 ms until it yields a value; panics with `what` after `budget`.
fn poll_until<T>(what: &str, budget: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + budget;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {budget:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn json(r: &HttpResponse) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", r.status, r.body_text()))
}

/// `GET /v1/config` as JSON (asserting 200).
fn config_json(sidecar: &Sidecar) -> Value {
    let r = sidecar.get_config();
    assert_eq!(r.status, 200, "GET /v1/config: {}", r.body_text());
    json(&r)
}

fn wait_revision(sidecar: &Sidecar, revision: u64) {
    poll_until(
        &format!("revision {revision} in force"),
        Duration::from_secs(10),
        || (config_json(sidecar)["revision"] == revision).then_some(()),
    );
}

/// A metric that must be present in the exposition (so that a 0 is a real 0, not a typo).
fn metric_present(sidecar: &Sidecar, name: &str) -> f64 {
    let text = sidecar.metrics();
    assert!(
        text.lines()
            .any(|l| l.split(['{', ' ']).next() == Some(name)),
        "metric {name} missing from the exposition:\n{text}"
    );
    sidecar.metric(name, &[])
}

fn reload_failures(sidecar: &Sidecar) -> f64 {
    metric_present(sidecar, RELOAD_FAILURES)
}

/// Reads a response head (through the blank line) byte by byte, leaving the body unread.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => panic!(
                "connection closed inside the response head: {:?}",
                String::from_utf8_lossy(&head)
            ),
            Err(e) => panic!(
                "reading the response head: {e} (so far {:?})",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn head_value(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

/// Caps the kernel receive buffer of a client socket, so that a paused reader really holds the
/// sender back instead of letting loopback autotuning swallow megabytes.
fn shrink_receive_buffer(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 64 * 1024;
    // SAFETY: setsockopt on a socket we own, with a correctly sized int option.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt SO_RCVBUF: {}",
        std::io::Error::last_os_error()
    );
}

/// Whether `pid` is a live process (not gone, not a zombie waiting to be reaped).
fn process_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the PID of a sidecar this test started and has not reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// A listening socket whose accept queue is full and never drained: connects to it hang (the
/// kernel drops their SYNs), as with a host that vanished. Keep the value alive while in use.
struct Blackhole {
    port: u16,
    _listener: std::net::TcpListener,
    _fillers: Vec<TcpStream>,
}

fn blackhole() -> Blackhole {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen(2) again on our own listening socket, shrinking its backlog to the minimum.
    let rc = unsafe { libc::listen(listener.as_raw_fd(), 0) };
    assert_eq!(rc, 0, "listen: {}", std::io::Error::last_os_error());
    let addr = listener.local_addr().expect("address");
    let mut fillers = Vec::new();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(e) if e.kind() == ErrorKind::TimedOut => break,
            Err(e) => panic!("filling the accept queue: {e}"),
        }
        assert!(fillers.len() < 64, "the accept queue does not fill up");
    }
    Blackhole {
        port: addr.port(),
        _listener: listener,
        _fillers: fillers,
    }
}

/// A sidecar whose routing file is polled only once an hour: after its first load, only SIGHUP
/// makes it read the file again. (The shared `Sidecar` always polls every 100 ms and clap refuses
/// a second `--config-poll`.)
struct HupOnlySidecar {
    child: Child,
    port: u16,
    admin_port: u16,
    dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
}

impl HupOnlySidecar {
    fn start(upstream_port: u16, routing: &str) -> HupOnlySidecar {
        let dir = scratch_dir()
            .expect("scratch dir")
            .join(unique_name("sidecar-hup"));
        std::fs::create_dir_all(&dir).expect("sidecar dir");
        let config_path = dir.join("routing.yaml");
        let token_path = dir.join("admin-token");
        let log_path = dir.join("sidecar.log");
        std::fs::write(&token_path, format!("{ADMIN_TOKEN}\n")).expect("token file");
        std::fs::write(&config_path, routing).expect("routing file");
        let log = std::fs::File::create(&log_path).expect("log file");
        let (port, admin_port) = (free_port(), free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_swiftfed-sidecar"));
        cmd.args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", &format!("127.0.0.1:{upstream_port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .arg("--admin-token-file")
            .arg(&token_path)
            .arg("--config")
            .arg(&config_path)
            .args(["--config-poll", "1h"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        // SAFETY: prctl in the child before exec; dies with the test thread that started it.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let sidecar = HupOnlySidecar {
            child: cmd.spawn().expect("spawn swiftfed-sidecar"),
            port,
            admin_port,
            dir,
            config_path,
            log_path,
        };
        let ready = format!("http://127.0.0.1:{admin_port}/ready");
        poll_until("sidecar /ready", Duration::from_secs(20), || {
            http_request("GET", &ready, &[], b"")
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| ())
        });
        sidecar
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn revision(&self) -> u64 {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        let r = http_request(
            "GET",
            &format!("http://127.0.0.1:{}/v1/config", self.admin_port),
            &[("Authorization", &auth)],
            b"",
        )
        .expect("get config");
        assert_eq!(r.status, 200, "{}", r.body_text());
        json(&r)["revision"].as_u64().expect("revision")
    }

    fn write_routing_file(&self, table: &str) {
        let tmp = self.dir.join(".routing.tmp");
        std::fs::write(&tmp, table).expect("write routing");
        std::fs::rename(&tmp, &self.config_path).expect("rename routing");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for HupOnlySidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("sidecar log ({}):\n{}", self.log_path.display(), self.log());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Outages and failover
// ---------------------------------------------------------------------------------------------

/// A stopped target cluster gets a Swift-style 503 naming the cluster at once (a refused
/// connection does not wait for the connect timeout); once the cluster is back, the same sidecar
/// serves its requests again.
#[test]
fn target_outage_is_a_fast_swift_503_and_recovery_needs_no_restart() {
    let [a, _] = shared_pair();
    let mut c = SwiftCluster::start("c").expect("start cluster c");
    let (url_c, token_c) = c.auth(TESTER.0, TESTER.1).expect("auth c");
    let container = unique_name("outage");
    let connect_timeout = Duration::from_secs(10);
    let table = format!(
        "revision: 1\nclusters:\n- name: dr-site\n  endpoints: [\"{}\"]\n  timeouts: {{connect: 10s, firstByte: 30s, idle: 30s}}\nroutes:\n- {{match: {{account: AUTH_test, container: {{exact: \"{container}\"}}}}, target: {{cluster: dr-site}}}}\n",
        c.proxy_url()
    );
    let sidecar = Sidecar::start(a.proxy_port(), Some(&table));
    let url = format!("{}/v1/AUTH_test/{container}", sidecar.url());
    ok(&req("PUT", &url, &token_c, &[], b""), "container PUT");
    ok(
        &req(
            "PUT",
            &format!("{url}/before"),
            &token_c,
            &[],
            b"written before the outage",
        ),
        "object PUT",
    );
    // It is on c (and the sidecar now holds pooled connections to c's proxy).
    let direct = req(
        "GET",
        &format!("{url_c}/{container}/before"),
        &token_c,
        &[],
        b"",
    );
    assert_eq!(direct.body, b"written before the outage");
    assert_eq!(
        req("GET", &format!("{url}/before"), &token_c, &[], b"").status,
        200
    );

    c.stop_proxy();
    let refused_port = TcpStream::connect(("127.0.0.1", c.proxy_port()));
    assert!(
        refused_port.is_err(),
        "c's proxy port still accepts connections after stop_proxy"
    );

    // Every kind of request: object read, object write with a body, container HEAD and listing,
    // repeated (the endpoint is then known to be down).
    let requests: [(&str, String, &[u8]); 5] = [
        ("GET", format!("{url}/before"), b""),
        ("PUT", format!("{url}/during"), b"never stored"),
        ("HEAD", url.clone(), b""),
        ("GET", format!("{url}?format=json"), b""),
        ("GET", format!("{url}/before"), b""),
    ];
    for (method, target, body) in &requests {
        let started = Instant::now();
        let r = req(method, target, &token_c, &[], body);
        let elapsed = started.elapsed();
        assert_eq!(
            r.status,
            503,
            "{method} {target} during the outage: {}",
            r.body_text()
        );
        assert!(
            elapsed < connect_timeout / 5,
            "{method} {target}: 503 took {elapsed:?}, not well within the {connect_timeout:?} connect timeout"
        );
        if *method != "HEAD" {
            let text = r.body_text();
            assert!(
                text.starts_with("<html><h1>Service Unavailable</h1>"),
                "not a Swift-style error page: {text}"
            );
            assert!(
                text.contains("dr-site"),
                "503 body does not name the cluster: {text}"
            );
            assert!(
                text.contains(&format!("127.0.0.1:{}", c.proxy_port())),
                "503 body does not name the endpoint tried: {text}"
            );
            assert_eq!(r.header("content-type"), Some("text/html; charset=UTF-8"));
        }
    }

    // A large upload announced with `Expect: 100-continue` (as rclone sends): the 503 comes
    // instead of `100 Continue`, so the client never sends its body.
    let mut s = TcpStream::connect(sidecar.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "PUT /v1/AUTH_test/{container}/expect HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token_c}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        64 * MIB
    )
    .expect("send head");
    let head = read_head(&mut s);
    assert!(
        head.starts_with("HTTP/1.1 503"),
        "expected the 503 without 100 Continue, got {head:?}"
    );
    let len: usize = head_value(&head, "content-length")
        .expect("length")
        .parse()
        .expect("number");
    let mut page = vec![0; len];
    s.read_exact(&mut page).expect("503 body");
    assert!(String::from_utf8_lossy(&page).contains("dr-site"));

    c.start_proxy().expect("restart c's proxy");
    // The very next requests succeed, through the same sidecar process.
    let got = req("GET", &format!("{url}/before"), &token_c, &[], b"");
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, &b"written before the outage"[..]),
        "{}",
        got.body_text()
    );
    ok(
        &req(
            "PUT",
            &format!("{url}/after"),
            &token_c,
            &[],
            b"written after the outage",
        ),
        "PUT after restart",
    );
    let direct = req(
        "GET",
        &format!("{url_c}/{container}/after"),
        &token_c,
        &[],
        b"",
    );
    assert_eq!(direct.body, b"written after the outage");
    assert_eq!(
        req(
            "HEAD",
            &format!("{url_c}/{container}/during"),
            &token_c,
            &[],
            b""
        )
        .status,
        404,
        "the PUT refused during the outage must not have been stored"
    );
}

/// With endpoints [a port nobody listens on, the real proxy], the second endpoint serves every
/// request, including a PUT whose body must survive the failed first attempt.
#[test]
fn a_second_endpoint_takes_over_when_the_first_is_down() {
    let [a, b] = shared_pair();
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let dead = free_port();
    assert!(
        TcpStream::connect(("127.0.0.1", dead)).is_err(),
        "port {dead} was supposed to be unused"
    );
    let dead_url = format!("http://127.0.0.1:{dead}");
    let container = unique_name("failover");
    // The container is made directly on b, so the sidecar's very first request carries a body.
    ok(
        &req("PUT", &format!("{url_b}/{container}"), &token_b, &[], b""),
        "container PUT on b",
    );
    let route = exact_route(&container);

    // Control: the dead endpoint alone gets a 503 that names it.
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&routing(1, std::slice::from_ref(&dead_url), &[&route])),
    );
    let url = format!("{}/v1/AUTH_test/{container}", sidecar.url());
    let r = req("GET", &url, &token_b, &[], b"");
    assert_eq!(r.status, 503, "{}", r.body_text());
    assert!(
        r.body_text().contains(&format!("127.0.0.1:{dead}")),
        "{}",
        r.body_text()
    );

    // Now [dead, real]: a new cluster spec, hence a fresh upstream that tries `dead` first.
    let pushed = sidecar.push(&routing(2, &[dead_url.clone(), b.proxy_url()], &[&route]));
    assert_eq!(pushed.status, 200, "{}", pushed.body_text());
    let first = pattern(3 * MIB + 17, 1);
    let started = Instant::now();
    let put = req("PUT", &format!("{url}/first"), &token_b, &[], &first);
    assert_eq!(put.status, 201, "{}", put.body_text());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failover PUT took {:?}",
        started.elapsed()
    );
    let direct = req(
        "GET",
        &format!("{url_b}/{container}/first"),
        &token_b,
        &[],
        b"",
    );
    assert_eq!(direct.status, 200);
    assert!(
        direct.body == first,
        "the body re-sent to the second endpoint differs ({} bytes)",
        direct.body.len()
    );

    for i in 0..10 {
        let body = pattern(64 * 1024 + i, i as u64 + 10);
        let name = format!("{url}/o{i}");
        assert_eq!(
            req("PUT", &name, &token_b, &[], &body).status,
            201,
            "PUT o{i}"
        );
        let got = req("GET", &name, &token_b, &[], b"");
        assert_eq!(got.status, 200, "GET o{i}");
        assert!(got.body == body, "GET o{i} returned other bytes");
    }
    let listing = req("GET", &format!("{url}?format=json"), &token_b, &[], b"");
    assert_eq!(listing.status, 200);
    assert_eq!(
        json(&listing).as_array().map(Vec::len),
        Some(11),
        "{}",
        listing.body_text()
    );
}

/// Each endpoint is tried at most once per request. With two unreachable endpoints, one whose
/// connects hang (full accept queue) and one that refuses, the 503 comes after one connect
/// timeout (2 s), not two, and names each endpoint once.
#[test]
fn each_unreachable_endpoint_is_tried_once_per_request() {
    let [a, b] = shared_pair();
    let (_, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let hole = blackhole();
    let refused = free_port();
    assert!(
        TcpStream::connect(("127.0.0.1", refused)).is_err(),
        "port {refused} was supposed to be unused"
    );
    let container = unique_name("once");
    let table = format!(
        "revision: 1\nclusters:\n- name: b\n  endpoints: [\"http://127.0.0.1:{}\", \"http://127.0.0.1:{refused}\"]\n  timeouts: {{connect: 2s, firstByte: 30s, idle: 30s}}\nroutes:\n{}\n",
        hole.port,
        exact_route(&container)
    );
    let sidecar = Sidecar::start(a.proxy_port(), Some(&table));
    let started = Instant::now();
    let r = req(
        "GET",
        &format!("{}/v1/AUTH_test/{container}", sidecar.url()),
        &token_b,
        &[],
        b"",
    );
    let elapsed = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.body_text());
    let text = r.body_text();
    for port in [hole.port, refused] {
        let tried = text.matches(&format!("127.0.0.1:{port}: ")).count();
        assert_eq!(
            tried, 1,
            "endpoint 127.0.0.1:{port} was tried {tried} times in one request: {text}"
        );
    }
    assert!(
        elapsed < Duration::from_secs(3),
        "503 after {elapsed:?}: more than the one 2 s connect timeout the hanging endpoint costs"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Routing swaps under load, revision rules
// ---------------------------------------------------------------------------------------------

/// 16 clients stream 1-4 MiB objects (PUT then GET, verified) through the sidecar while the
/// routing table is replaced four times, alternately by the admin API and by the routing file.
/// No request fails; requests spanning each swap are counted (there must be some); and right
/// after each swap, a new container prefix routed only by the new table lands on b while the
/// prefix the old table routed is local again.
#[test]
fn routing_swaps_under_load_drop_nothing_and_new_requests_follow_the_new_table() {
    let [a, b] = shared_pair();
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let run = unique_name("swap");
    let stream_b = format!("{run}-stream-b");
    let stream_a = format!("{run}-stream-a");
    let prefix = |rev: u64| format!("{run}-p{rev}-");
    // Each revision changes cluster b's idle timeout too: a new upstream (and connection pool)
    // replaces the old one while requests are still streaming through the old one.
    let table = |rev: u64| {
        format!(
            "revision: {rev}\nclusters:\n- name: b\n  endpoints: [\"{}\"]\n  timeouts: {{connect: 2s, firstByte: 30s, idle: {}s}}\nroutes:\n{}\n{}\n",
            b.proxy_url(),
            30 + rev,
            exact_route(&stream_b),
            prefix_route(&prefix(rev)),
        )
    };
    let sidecar = Sidecar::start(a.proxy_port(), Some(&table(1)));
    let base = format!("{}/v1/AUTH_test", sidecar.url());
    ok(
        &req("PUT", &format!("{base}/{stream_b}"), &token_b, &[], b""),
        "stream container on b",
    );
    ok(
        &req("PUT", &format!("{base}/{stream_a}"), &token_a, &[], b""),
        "stream container on a",
    );
    ok(
        &req("PUT", &format!("{base}/{}c", prefix(1)), &token_b, &[], b""),
        "rev 1 container",
    );
    assert_eq!(
        req("HEAD", &format!("{url_b}/{stream_b}"), &token_b, &[], b"").status,
        204
    );
    assert_eq!(
        req("HEAD", &format!("{url_a}/{stream_a}"), &token_a, &[], b"").status,
        204
    );

    const CLIENTS: usize = 16;
    const MAX_ROUNDS: usize = 80;
    let data = pattern(5 * MIB, 42);
    let done = AtomicBool::new(false);
    let completed = AtomicUsize::new(0);
    let spans: Mutex<Vec<(Instant, Instant)>> = Mutex::new(Vec::new());
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut swaps: Vec<(u64, Instant, Instant)> = Vec::new();
    let started = Instant::now();

    let outcome = std::thread::scope(|s| {
        for t in 0..CLIENTS {
            let (container, token) = if t % 2 == 0 {
                (&stream_b, &token_b)
            } else {
                (&stream_a, &token_a)
            };
            let (data, done, completed, spans, failures, base) =
                (&data, &done, &completed, &spans, &failures, &base);
            s.spawn(move || {
                for i in 0..MAX_ROUNDS {
                    if done.load(Ordering::Acquire) {
                        break;
                    }
                    let size = MIB + ((t * 5 + i * 3) % 13) * 256 * 1024;
                    let offset = (t * 7919 + i * 104_729) % MIB;
                    let body = &data[offset..offset + size];
                    let url = format!("{base}/{container}/t{t}-o{}", i % 2);
                    let begin = Instant::now();
                    let put = http_request("PUT", &url, &[("X-Auth-Token", token)], body);
                    let mid = Instant::now();
                    match put {
                        Ok(r) if r.status == 201 => {}
                        Ok(r) => {
                            failures.lock().unwrap().push(format!(
                                "PUT {url}: {} {}",
                                r.status,
                                r.body_text()
                            ));
                            break;
                        }
                        Err(e) => {
                            failures.lock().unwrap().push(format!("PUT {url}: {e}"));
                            break;
                        }
                    }
                    let get = http_request("GET", &url, &[("X-Auth-Token", token)], b"");
                    let end = Instant::now();
                    match get {
                        Ok(r) if r.status == 200 && r.body == body => {}
                        Ok(r) => {
                            failures.lock().unwrap().push(format!(
                                "GET {url}: {} ({} bytes, expected {size} identical bytes)",
                                r.status,
                                r.body.len()
                            ));
                            break;
                        }
                        Err(e) => {
                            failures.lock().unwrap().push(format!("GET {url}: {e}"));
                            break;
                        }
                    }
                    spans.lock().unwrap().extend([(begin, mid), (mid, end)]);
                    completed.fetch_add(1, Ordering::AcqRel);
                }
            });
        }

        // The swaps, on this thread, while the clients stream. A panic here must still stop
        // the clients, so it is caught and re-raised after the scope.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let load_running = |at_least: usize| {
                poll_until("client traffic", Duration::from_secs(120), || {
                    let f = failures.lock().unwrap();
                    assert!(f.is_empty(), "client requests failed: {f:#?}");
                    (completed.load(Ordering::Acquire) >= at_least).then_some(())
                });
            };
            load_running(CLIENTS);
            for rev in 2..=5u64 {
                let before = Instant::now();
                if rev % 2 == 0 {
                    let r = sidecar.push(&table(rev));
                    assert_eq!(r.status, 200, "push rev {rev}: {}", r.body_text());
                    assert_eq!(json(&r)["revision"], rev);
                } else {
                    sidecar.write_routing_file(&table(rev));
                    wait_revision(&sidecar, rev);
                }
                let after = Instant::now();
                swaps.push((rev, before, after));

                // Requests started now follow the new table: b's token is accepted only if
                // the request reaches b (a refuses it).
                let c = format!("{}c", prefix(rev));
                let r = req("PUT", &format!("{base}/{c}"), &token_b, &[], b"");
                assert_eq!(
                    r.status,
                    201,
                    "rev {rev}: container PUT for the new prefix: {}",
                    r.body_text()
                );
                let body = format!("routed by revision {rev}");
                let r = req(
                    "PUT",
                    &format!("{base}/{c}/o"),
                    &token_b,
                    &[],
                    body.as_bytes(),
                );
                assert_eq!(r.status, 201, "rev {rev}: object PUT: {}", r.body_text());
                let on_b = req("GET", &format!("{url_b}/{c}/o"), &token_b, &[], b"");
                assert_eq!(
                    (on_b.status, on_b.body_text()),
                    (200, body),
                    "rev {rev}: object on b"
                );
                assert_eq!(
                    req("HEAD", &format!("{url_a}/{c}"), &token_a, &[], b"").status,
                    404,
                    "rev {rev}: nothing on a"
                );
                // ... and the prefix only the previous table routed is local again: a answers
                // (404 for a's token, 401 for b's), where b would say 401 and 204.
                let old = format!("{}c", prefix(rev - 1));
                assert_eq!(
                    req("HEAD", &format!("{base}/{old}"), &token_a, &[], b"").status,
                    404,
                    "rev {rev}: {old} with a's token"
                );
                assert_eq!(
                    req("HEAD", &format!("{base}/{old}"), &token_b, &[], b"").status,
                    401,
                    "rev {rev}: {old} with b's token"
                );

                let now = completed.load(Ordering::Acquire);
                load_running(now + CLIENTS / 2);
            }
        }));
        done.store(true, Ordering::Release);
        result
    });
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    let elapsed = started.elapsed();

    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "requests failed during the swaps: {failures:#?}"
    );
    let spans = spans.into_inner().unwrap();
    for (rev, before, after) in &swaps {
        let spanning = spans
            .iter()
            .filter(|(s, e)| s < before && e > after)
            .count();
        assert!(
            spanning > 0,
            "no client request was in flight across the swap to revision {rev}: the test did not test it"
        );
        eprintln!("swap to revision {rev}: {spanning} requests in flight across it, all succeeded");
    }
    eprintln!(
        "{} PUT+GET pairs by {CLIENTS} clients in {elapsed:?}, zero failures",
        spans.len() / 2
    );
    assert_eq!(config_json(&sidecar)["revision"], 5);
    poll_until("active streams back to 0", Duration::from_secs(10), || {
        (metric_present(&sidecar, ACTIVE_STREAMS) == 0.0).then_some(())
    });
}

/// A sidecar never goes back: an older revision, or the same revision with other content, is a
/// 409 that changes nothing; the same revision with the same content (even re-encoded as JSON)
/// is a 200 no-op.
#[test]
fn only_newer_revisions_are_applied() {
    let [a, b] = shared_pair();
    let (_, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (_, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let run = unique_name("rev");
    let table = |rev: u64, name: &str| {
        routing(
            rev,
            &[b.proxy_url()],
            &[&prefix_route(&format!("{run}-{name}-"))],
        )
    };
    let in_force = table(5, "five");
    let sidecar = Sidecar::start(a.proxy_port(), Some(&in_force));
    let base = format!("{}/v1/AUTH_test", sidecar.url());
    let five = format!("{base}/{run}-five-c");
    let four = format!("{base}/{run}-four-c");
    ok(
        &req("PUT", &five, &token_b, &[], b""),
        "container routed by revision 5",
    );
    let before = config_json(&sidecar);
    assert_eq!(before["revision"], 5);

    for (what, offered, older) in [
        ("older revision", table(4, "four"), 4),
        ("same revision, other content", table(5, "four"), 5),
        ("revision 0", table(0, "four"), 0),
    ] {
        let r = sidecar.push(&offered);
        assert_eq!(r.status, 409, "{what}: {}", r.body_text());
        let body = json(&r);
        assert_eq!(body["currentRevision"], 5, "{what}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("revision {older}")) && error.contains('5'),
            "{what}: {error}"
        );
        assert_eq!(
            config_json(&sidecar),
            before,
            "{what}: the table in force changed"
        );
        // Routing did not change either: `four` is local (a answers a's token with 404; b
        // would refuse it with 401), `five` still goes to b.
        assert_eq!(req("HEAD", &four, &token_a, &[], b"").status, 404, "{what}");
        assert_eq!(req("HEAD", &five, &token_b, &[], b"").status, 204, "{what}");
    }

    // A repeated push of the table in force: accepted, nothing to do.
    let r = sidecar.push(&in_force);
    assert_eq!(
        (r.status, json(&r)),
        (200, serde_json::json!({"revision": 5}))
    );
    let as_json = serde_json::to_string(&before["table"]).expect("json");
    let r = sidecar.push(&as_json);
    assert_eq!(
        (r.status, json(&r)),
        (200, serde_json::json!({"revision": 5})),
        "same table as JSON"
    );
    assert_eq!(config_json(&sidecar), before);

    // Forward only: 6 applies, then 5 (the former table) is refused.
    let r = sidecar.push(&table(6, "four"));
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(
        req("HEAD", &four, &token_b, &[], b"").status,
        404,
        "revision 6 routes `four` to b (no container there yet)"
    );
    assert_eq!(
        req("HEAD", &four, &token_a, &[], b"").status,
        401,
        "revision 6 routes `four` to b, which refuses a's token"
    );
    let r = sidecar.push(&in_force);
    assert_eq!(r.status, 409, "{}", r.body_text());
    assert_eq!(config_json(&sidecar)["revision"], 6);
    assert_eq!(
        req("HEAD", &five, &token_b, &[], b"").status,
        401,
        "revision 5 must not come back"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Refused pushes, admin authentication, redaction
// ---------------------------------------------------------------------------------------------

/// Invalid tables are refused with a JSON body naming each field and reason; the table in force
/// stays (same revision and content in `GET /v1/config`) and keeps routing.
#[test]
fn invalid_pushes_are_refused_with_field_errors_and_change_nothing() {
    let [a, b] = shared_pair();
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let prefix = unique_name("invalid");
    let routed = format!("{prefix}-c");
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&routing(1, &[b.proxy_url()], &[&prefix_route(&prefix)])),
    );
    let base = format!("{}/v1/AUTH_test", sidecar.url());
    ok(
        &req("PUT", &format!("{base}/{routed}"), &token_b, &[], b""),
        "routed container",
    );
    let baseline = config_json(&sidecar);
    assert_eq!(baseline["revision"], 1);
    let failures_before = reload_failures(&sidecar);
    let b_url = b.proxy_url();

    let unknown_cluster = format!(
        "revision: 2\nclusters:\n- name: b\n  endpoints: [\"{b_url}\"]\nroutes:\n- {{match: {{account: AUTH_test, container: {{prefix: \"x-\"}}}}, target: {{cluster: nowhere}}}}\n"
    );
    let bad_urls = "revision: 2\nclusters:\n- name: b\n  endpoints: [\"ftp://127.0.0.1:1\", \"http://127.0.0.1:1/v1/AUTH_x\", \"not a url\"]\n  timeouts: {connect: 0s}\nroutes: []\n".to_string();
    let syntax =
        format!("revision: 2\nclusters: [{{name: b, endpoints: [\"{b_url}\"]\nroutes: []\n");
    let unknown_field = "revision: 2\nclusters: []\nroutez: []\n".to_string();
    let wrong_type = "revision: two\n".to_string();
    // (what, table, status, [(field, words its reason contains)], words the error text contains)
    type Case<'a> = (
        &'a str,
        String,
        u16,
        Vec<(&'a str, Vec<&'a str>)>,
        Vec<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "unknown cluster",
            unknown_cluster,
            422,
            vec![(
                "routes[0].target.cluster",
                vec!["unknown cluster", "nowhere"],
            )],
            vec![],
        ),
        (
            "bad URLs and timeout",
            bad_urls,
            422,
            vec![
                (
                    "clusters[0].endpoints[0]",
                    vec!["ftp://127.0.0.1:1", "http:// or https://"],
                ),
                (
                    "clusters[0].endpoints[1]",
                    vec!["/v1/AUTH_x", "without path"],
                ),
                ("clusters[0].endpoints[2]", vec!["not a url", "not a URL"]),
                (
                    "clusters[0].timeouts.connect",
                    vec!["0s", "greater than zero"],
                ),
            ],
            vec![],
        ),
        ("YAML syntax error", syntax, 400, vec![], vec!["line"]),
        ("unknown field", unknown_field, 400, vec![], vec!["routez"]),
        (
            "wrong type",
            wrong_type,
            400,
            vec![],
            vec!["revision", "two"],
        ),
    ];
    let n_cases = cases.len();
    for (what, table, status, fields, words) in cases {
        let r = sidecar.push(&table);
        assert_eq!(r.status, status, "{what}: {}", r.body_text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
        let body = json(&r);
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no error text in {body}"));
        for w in &words {
            assert!(
                error.contains(w),
                "{what}: error {error:?} does not mention {w:?}"
            );
        }
        let errors = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no errors list in {body}"));
        let got: Vec<&str> = errors.iter().filter_map(|e| e["field"].as_str()).collect();
        let expected: Vec<&str> = fields.iter().map(|(f, _)| *f).collect();
        assert_eq!(got, expected, "{what}: fields named in {body}");
        for (field, reason_words) in &fields {
            let reason = errors
                .iter()
                .find(|e| e["field"] == *field)
                .and_then(|e| e["reason"].as_str())
                .unwrap_or_default();
            for w in reason_words {
                assert!(
                    reason.contains(w),
                    "{what}: reason for {field} ({reason:?}) does not mention {w:?}"
                );
            }
        }
        // Nothing changed: same revision, same table, and the old route still routes.
        assert_eq!(
            config_json(&sidecar),
            baseline,
            "{what}: the table in force changed"
        );
        let name = format!("after-{}", what.replace(' ', "-"));
        let put = req(
            "PUT",
            &format!("{base}/{routed}/{name}"),
            &token_b,
            &[],
            what.as_bytes(),
        );
        assert_eq!(
            put.status,
            201,
            "{what}: routed PUT after the refusal: {}",
            put.body_text()
        );
        let on_b = req(
            "GET",
            &format!("{url_b}/{routed}/{name}"),
            &token_b,
            &[],
            b"",
        );
        assert_eq!(
            on_b.body,
            what.as_bytes(),
            "{what}: the object must be on b"
        );
    }
    assert_eq!(
        reload_failures(&sidecar),
        failures_before + n_cases as f64,
        "each refused table is counted"
    );

    // A table the sidecar cannot set up is refused too, naming the cluster: here a CA bundle
    // that is well-formed PEM (validation passes) but no certificate rustls can use.
    let https = "revision: 2\nclusters:\n- name: tls-site\n  endpoints: [\"https://127.0.0.1:1\"]\n  tls: {caPem: \"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n\"}\nroutes: []\n";
    let r = sidecar.push(https);
    assert_eq!(r.status, 422, "{}", r.body_text());
    let error = json(&r)["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("tls-site") && error.contains("not usable as a CA"),
        "{error}"
    );
    assert_eq!(
        json(&r)["errors"][0]["field"].as_str(),
        Some("clusters[0].tls.caPem"),
        "{}",
        r.body_text()
    );
    assert_eq!(config_json(&sidecar), baseline);

    // The refused revision 2 was not used up: a valid revision 2 applies.
    let r = sidecar.push(&routing(2, &[b.proxy_url()], &[&prefix_route(&prefix)]));
    assert_eq!(
        (r.status, json(&r)),
        (200, serde_json::json!({"revision": 2}))
    );
}

/// `PUT`/`GET /v1/config` need the bearer token: without it or with a wrong one, 401 and nothing
/// changes. `GET /v1/config` shows Credentials with the key redacted, while the real key stays in
/// use; the key appears neither in the admin API, nor in metrics, nor in the log.
#[test]
fn admin_api_requires_the_token_and_never_shows_credentials() {
    let [a, b] = shared_pair();
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let run = unique_name("adminauth");
    let first = format!("{run}-first-");
    let second = format!("{run}-second-");
    // The sidecar's own key on b ("sidecar-key", see support::routing_credentials).
    const KEY: &str = "sidecar-key";
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&routing_credentials(1, b, &[&prefix_route(&first)])),
    );
    let baseline = config_json(&sidecar);
    let (url, token) = auth_via(&sidecar, TESTER);
    ok(
        &req("PUT", &format!("{url}/{first}c"), &token, &[], b""),
        "container routed with Credentials",
    );
    ok(
        &req(
            "PUT",
            &format!("{url}/{first}c/o"),
            &token,
            &[],
            b"with the sidecar's key",
        ),
        "object",
    );
    assert_eq!(
        req("GET", &format!("{url_b}/{first}c/o"), &token_b, &[], b"").body,
        b"with the sidecar's key"
    );
    // A container only on b, under the prefix only revision 2 routes: 204 through the sidecar
    // when routed, a's 404 when not.
    ok(
        &req("PUT", &format!("{url_b}/{second}c"), &token_b, &[], b""),
        "container on b",
    );
    let second_via_sidecar = || req("HEAD", &format!("{url}/{second}c"), &token, &[], b"").status;
    assert_eq!(second_via_sidecar(), 404, "before any push");

    let newer = routing_credentials(2, b, &[&prefix_route(&second)]);
    let config_url = format!("{}/v1/config", sidecar.admin_url());
    let wrong_bearer = format!("Bearer {ADMIN_TOKEN}x");
    let short_bearer = format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]);
    let basic = format!("Basic {ADMIN_TOKEN}");
    let attempts: [(&str, Vec<(&str, &str)>); 6] = [
        ("no Authorization", vec![]),
        (
            "wrong token",
            vec![("Authorization", wrong_bearer.as_str())],
        ),
        (
            "token minus its last character",
            vec![("Authorization", short_bearer.as_str())],
        ),
        ("token without Bearer", vec![("Authorization", ADMIN_TOKEN)]),
        ("Basic scheme", vec![("Authorization", basic.as_str())]),
        ("empty Bearer", vec![("Authorization", "Bearer ")]),
    ];
    for (what, headers) in &attempts {
        let r = http_request("PUT", &config_url, headers, newer.as_bytes()).expect("push");
        assert_eq!(r.status, 401, "PUT with {what}: {}", r.body_text());
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer"),
            "PUT with {what}"
        );
        let g = http_request("GET", &config_url, headers, b"").expect("get");
        assert_eq!(g.status, 401, "GET with {what}: {}", g.body_text());
        assert!(
            !g.body_text().contains("revision"),
            "GET with {what} leaked the table: {}",
            g.body_text()
        );
    }
    assert_eq!(
        config_json(&sidecar),
        baseline,
        "a refused push changed the table"
    );
    // The second prefix is still local: a answers (404), not b (204).
    assert_eq!(second_via_sidecar(), 404, "after the refused pushes");

    // Redacted, at revision 1 and after an authorized push of revision 2.
    for expected in [1, 2] {
        if expected == 2 {
            let r = sidecar.push(&newer);
            assert_eq!(r.status, 200, "{}", r.body_text());
        }
        let r = sidecar.get_config();
        assert_eq!(r.status, 200);
        let text = r.body_text();
        assert!(
            !text.contains(KEY),
            "GET /v1/config shows the credentials key: {text}"
        );
        let body = json(&r);
        assert_eq!(body["revision"], expected);
        let credentials = &body["table"]["clusters"][0]["auth"]["credentials"];
        assert_eq!(credentials["key"], "<redacted>", "{body}");
        assert_eq!(credentials["user"], "test:sidecar", "{body}");
    }
    // The real key is what the sidecar uses: the newly routed prefix reaches b.
    assert_eq!(second_via_sidecar(), 204, "under revision 2");
    ok(
        &req(
            "PUT",
            &format!("{url}/{second}c/o"),
            &token,
            &[],
            b"revision 2",
        ),
        "object under revision 2",
    );
    assert_eq!(
        req("GET", &format!("{url_b}/{second}c/o"), &token_b, &[], b"").body,
        b"revision 2"
    );

    assert!(
        !sidecar.metrics().contains(KEY),
        "metrics show the credentials key"
    );
    assert!(
        !sidecar.log().contains(KEY),
        "the log shows the credentials key"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. The routing file: refused files, SIGHUP
// ---------------------------------------------------------------------------------------------

/// Invalid routing files written while the sidecar runs are refused (the reload-failure metric
/// grows by one per file), the old table stays in force and keeps routing; a valid file then
/// applies. SIGHUP re-reads even an unchanged file (which the poller does not).
#[test]
fn invalid_routing_files_are_refused_and_the_old_table_kept() {
    let [a, b] = shared_pair();
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let run = unique_name("badfile");
    let routed = format!("{run}-one-c");
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&routing(
            1,
            &[b.proxy_url()],
            &[&prefix_route(&format!("{run}-one-"))],
        )),
    );
    let base = format!("{}/v1/AUTH_test", sidecar.url());
    ok(
        &req("PUT", &format!("{base}/{routed}"), &token_b, &[], b""),
        "routed container",
    );
    let baseline = config_json(&sidecar);
    assert_eq!(reload_failures(&sidecar), 0.0);

    let files = [
        ("YAML syntax error", "revision: 2\nclusters: [\n".to_string()),
        (
            "unknown cluster",
            "revision: 2\nclusters: []\nroutes:\n- {match: {account: AUTH_test}, target: {cluster: nowhere}}\n".to_string(),
        ),
        ("bad endpoint", "revision: 2\nclusters: [{name: b, endpoints: [\"ftp://x\"]}]\n".to_string()),
        // Valid, but not newer than the table in force.
        ("stale revision", routing(1, &[b.proxy_url()], &[])),
    ];
    for (i, (what, text)) in files.iter().enumerate() {
        sidecar.write_routing_file(text);
        let expected = (i + 1) as f64;
        poll_until(
            &format!("{what}: reload failure counted"),
            Duration::from_secs(10),
            || (reload_failures(&sidecar) == expected).then_some(()),
        );
        assert_eq!(
            config_json(&sidecar),
            baseline,
            "{what}: the table in force changed"
        );
        assert_eq!(
            sidecar.metric("swiftfed_sidecar_config_revision", &[]),
            1.0,
            "{what}"
        );
        let ready = http_request("GET", &format!("{}/ready", sidecar.admin_url()), &[], b"")
            .expect("ready");
        assert_eq!(
            ready.status, 200,
            "{what}: a refused file must not make the sidecar unready"
        );
        let name = format!("after-{i}");
        assert_eq!(
            req(
                "PUT",
                &format!("{base}/{routed}/{name}"),
                &token_b,
                &[],
                what.as_bytes()
            )
            .status,
            201,
            "{what}"
        );
        assert_eq!(
            req(
                "GET",
                &format!("{url_b}/{routed}/{name}"),
                &token_b,
                &[],
                b""
            )
            .body,
            what.as_bytes(),
            "{what}"
        );
    }
    assert!(
        sidecar
            .log()
            .contains("routing file refused; previous table kept"),
        "{}",
        sidecar.log()
    );

    // The poller does not retry identical bytes: the count stays put over several poll periods
    // (100 ms each) ...
    let settled = reload_failures(&sidecar);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        reload_failures(&sidecar),
        settled,
        "the poller re-read an unchanged file"
    );
    // ... but SIGHUP reloads the file as it is, and refuses it once more.
    signal(sidecar.pid(), libc::SIGHUP);
    poll_until(
        "SIGHUP reload attempt counted",
        Duration::from_secs(10),
        || (reload_failures(&sidecar) == settled + 1.0).then_some(()),
    );
    assert_eq!(config_json(&sidecar), baseline);

    // A valid, newer file applies.
    let two = format!("{run}-two-");
    sidecar.write_routing_file(&routing(2, &[b.proxy_url()], &[&prefix_route(&two)]));
    wait_revision(&sidecar, 2);
    assert_eq!(
        req("PUT", &format!("{base}/{two}c"), &token_b, &[], b"").status,
        201,
        "revision 2 routes {two} to b"
    );
    assert_eq!(
        req("HEAD", &format!("{url_b}/{two}c"), &token_b, &[], b"").status,
        204
    );
}

/// With polling effectively off (`--config-poll 1h`), a new routing file takes effect on SIGHUP.
#[test]
fn sighup_reloads_the_routing_file() {
    let [a, b] = shared_pair();
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (_, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let run = unique_name("hup");
    let one = format!("{run}-one-");
    let two = format!("{run}-two-");
    let sidecar = HupOnlySidecar::start(
        a.proxy_port(),
        &routing(1, &[b.proxy_url()], &[&prefix_route(&one)]),
    );
    assert_eq!(sidecar.revision(), 1);
    let base = format!("{}/v1/AUTH_test", sidecar.url());

    sidecar.write_routing_file(&routing(2, &[b.proxy_url()], &[&prefix_route(&two)]));
    // Not polled: still revision 1, `two` still local.
    assert_eq!(sidecar.revision(), 1);
    assert_eq!(
        req("HEAD", &format!("{base}/{two}c"), &token_a, &[], b"").status,
        404
    );

    signal(sidecar.child.id(), libc::SIGHUP);
    poll_until("revision 2 after SIGHUP", Duration::from_secs(10), || {
        (sidecar.revision() == 2).then_some(())
    });
    assert!(
        process_running(sidecar.child.id()),
        "SIGHUP must not stop the sidecar"
    );
    ok(
        &req("PUT", &format!("{base}/{two}c"), &token_b, &[], b""),
        "container routed by the reloaded file",
    );
    assert_eq!(
        req("HEAD", &format!("{url_b}/{two}c"), &token_b, &[], b"").status,
        204
    );
    assert!(sidecar.log().contains("SIGHUP"), "{}", sidecar.log());
}

// ---------------------------------------------------------------------------------------------
// 5. Graceful drain
// ---------------------------------------------------------------------------------------------

/// SIGTERM while a slow GET (client reading a 96 MiB object slowly) and a slow PUT (client
/// sending its body in pieces) are in flight: new connections are refused at once, idle
/// keep-alive connections are closed, the process stays until both requests complete
/// successfully, then exits with status 0.
#[test]
fn sigterm_drains_requests_in_flight_then_exits_zero() {
    let [a, b] = shared_pair();
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let container = unique_name("drain");
    let mut sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&routing(1, &[b.proxy_url()], &[&exact_route(&container)])),
    );
    let pid = sidecar.pid();
    let addr = sidecar.addr();
    let path = format!("/v1/AUTH_test/{container}");
    ok(
        &req("PUT", &format!("{url_b}/{container}"), &token_b, &[], b""),
        "container on b",
    );
    let big = pattern(96 * MIB, 7);
    ok(
        &req(
            "PUT",
            &format!("{url_b}/{container}/big"),
            &token_b,
            &[],
            &big,
        ),
        "big object on b",
    );
    let upload = pattern(8 * MIB + 5, 8);
    let piece = 256 * 1024;

    // An idle keep-alive connection, after one complete request.
    let mut idle = TcpStream::connect(&addr).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(idle, "GET /info HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let head = read_head(&mut idle);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let len: usize = head_value(&head, "content-length")
        .expect("length")
        .parse()
        .expect("number");
    let mut info = vec![0; len];
    idle.read_exact(&mut info).expect("info body");
    poll_until("no request in flight", Duration::from_secs(10), || {
        (metric_present(&sidecar, ACTIVE_STREAMS) == 0.0).then_some(())
    });

    // The slow GET: head and the first MiB, then the client pauses.
    let mut get = TcpStream::connect(&addr).expect("connect");
    shrink_receive_buffer(&get);
    get.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        get,
        "GET {path}/big HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token_b}\r\n\r\n"
    )
    .expect("send");
    let head = read_head(&mut get);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        head_value(&head, "content-length"),
        Some(big.len().to_string())
    );
    let mut received = vec![0u8; big.len()];
    get.read_exact(&mut received[..MIB]).expect("first MiB");

    // The slow PUT: head and the first MiB of the body.
    let mut put = TcpStream::connect(&addr).expect("connect");
    put.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        put,
        "PUT {path}/uploaded HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token_b}\r\nContent-Length: {}\r\n\r\n",
        upload.len()
    )
    .expect("send head");
    put.write_all(&upload[..MIB]).expect("first MiB");

    // Both requests are in the sidecar's hands.
    poll_until(
        "both slow requests in flight",
        Duration::from_secs(10),
        || (metric_present(&sidecar, ACTIVE_STREAMS) == 2.0).then_some(()),
    );

    signal(pid, libc::SIGTERM);

    // New connections are refused from now on, while the two requests are still going. (A
    // connect that hangs, e.g. in a full backlog nobody accepts from, counts as not refused.)
    let socket: std::net::SocketAddr = addr.parse().expect("socket address");
    poll_until(
        "new connections refused after SIGTERM",
        Duration::from_secs(5),
        || match TcpStream::connect_timeout(&socket, Duration::from_millis(500)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(()),
            Err(e) if e.kind() == ErrorKind::TimedOut => None,
            Err(e) => panic!("connect after SIGTERM: unexpected error {e}"),
            Ok(_) => None,
        },
    );
    // The idle keep-alive connection is closed (EOF), not kept until the drain ends.
    let mut byte = [0u8; 1];
    match idle.read(&mut byte) {
        Ok(0) => {}
        other => panic!("idle keep-alive connection after SIGTERM: expected EOF, got {other:?}"),
    }
    assert!(
        process_running(pid),
        "the sidecar exited with two requests in flight"
    );

    // The PUT goes on, in pieces, and completes.
    for chunk in upload[MIB..].chunks(piece) {
        put.write_all(chunk).expect("PUT body piece after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    let head = read_head(&mut put);
    assert!(
        head.starts_with("HTTP/1.1 201"),
        "PUT in flight at SIGTERM: {head}"
    );
    // The GET is still being served: the sidecar waits for it.
    assert!(
        process_running(pid),
        "the sidecar exited while the GET was still streaming"
    );

    // The GET completes, byte for byte.
    get.read_exact(&mut received[MIB..])
        .expect("rest of the GET after SIGTERM");
    assert!(
        received == big,
        "the GET in flight at SIGTERM returned other bytes"
    );

    // Then the sidecar exits on its own, with status 0.
    poll_until(
        "the sidecar exits after the drain",
        Duration::from_secs(10),
        || (!process_running(pid)).then_some(()),
    );
    let status = sidecar.terminate(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after drain: {status:?}"
    );

    let stored = req(
        "GET",
        &format!("{url_b}/{container}/uploaded"),
        &token_b,
        &[],
        b"",
    );
    assert_eq!(stored.status, 200);
    assert!(
        stored.body == upload,
        "the PUT in flight at SIGTERM stored other bytes ({})",
        stored.body.len()
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Migrate mode
// ---------------------------------------------------------------------------------------------

/// A Migrate route: object GET/HEAD that the target answers with 404 are served from the local
/// cluster (a); objects on the target come from the target; writes go to the target only.
#[test]
fn migrate_reads_fall_back_to_local_and_writes_go_to_the_target() {
    let [a, b] = shared_pair();
    let prefix = unique_name("migrate");
    let route = format!(
        "- {{match: {{account: AUTH_test, container: {{prefix: \"{prefix}-\"}}}}, target: {{cluster: b}}, mode: Migrate}}"
    );
    // Credentials auth: the client's token is a's, valid for the local fallback; the sidecar's
    // own key is used on b.
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let half = format!("{prefix}-half"); // on both clusters, migration in progress
    let fresh = format!("{prefix}-fresh"); // only on a: nothing migrated yet
    for c in [&half, &fresh] {
        ok(
            &req("PUT", &format!("{url_a}/{c}"), &token_a, &[], b""),
            "container on a",
        );
    }
    ok(
        &req("PUT", &format!("{url_b}/{half}"), &token_b, &[], b""),
        "container on b",
    );
    let meta = [
        ("Content-Type", "text/x-old"),
        ("X-Object-Meta-Origin", "a"),
    ];
    ok(
        &req(
            "PUT",
            &format!("{url_a}/{half}/old"),
            &token_a,
            &meta,
            b"only on the local cluster",
        ),
        "old on a",
    );
    ok(
        &req(
            "PUT",
            &format!("{url_a}/{fresh}/old"),
            &token_a,
            &meta,
            b"only on the local cluster",
        ),
        "old on a",
    );
    ok(
        &req(
            "PUT",
            &format!("{url_a}/{half}/both"),
            &token_a,
            &[],
            b"stale copy on a",
        ),
        "both on a",
    );
    ok(
        &req(
            "PUT",
            &format!("{url_b}/{half}/both"),
            &token_b,
            &[],
            b"migrated copy on b",
        ),
        "both on b",
    );

    for c in [&half, &fresh] {
        let got = req("GET", &format!("{url}/{c}/old"), &token, &[], b"");
        assert_eq!(
            (got.status, got.body.as_slice()),
            (200, &b"only on the local cluster"[..]),
            "{c}: GET falls back to a"
        );
        assert_eq!(got.header("x-object-meta-origin"), Some("a"), "{c}");
        assert_eq!(got.header("content-type"), Some("text/x-old"), "{c}");
        let head = req("HEAD", &format!("{url}/{c}/old"), &token, &[], b"");
        assert_eq!(head.status, 200, "{c}: HEAD falls back to a");
        assert_eq!(head.header("content-length"), Some("25"), "{c}");
        assert_eq!(head.header("x-object-meta-origin"), Some("a"), "{c}");
        let range = req(
            "GET",
            &format!("{url}/{c}/old"),
            &token,
            &[("Range", "bytes=0-3")],
            b"",
        );
        assert_eq!(
            (range.status, range.body.as_slice()),
            (206, &b"only"[..]),
            "{c}: ranged GET falls back"
        );
        // Nowhere at all: 404.
        assert_eq!(
            req("GET", &format!("{url}/{c}/missing"), &token, &[], b"").status,
            404,
            "{c}"
        );
        assert_eq!(
            req("HEAD", &format!("{url}/{c}/missing"), &token, &[], b"").status,
            404,
            "{c}"
        );
    }
    // On the target: the target's copy wins.
    let got = req("GET", &format!("{url}/{half}/both"), &token, &[], b"");
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, &b"migrated copy on b"[..])
    );

    // Writes go to the target only.
    ok(
        &req(
            "PUT",
            &format!("{url}/{half}/new"),
            &token,
            &[],
            b"written during migration",
        ),
        "PUT via sidecar",
    );
    assert_eq!(
        req("GET", &format!("{url_b}/{half}/new"), &token_b, &[], b"").body,
        b"written during migration"
    );
    assert_eq!(
        req("HEAD", &format!("{url_a}/{half}/new"), &token_a, &[], b"").status,
        404,
        "PUT must not land on a"
    );
    // A DELETE removes the object from both clusters (tests/migrate.rs has the details): one
    // only a holds is gone from a, one on both is gone from both, not read from a again.
    assert_eq!(
        req("DELETE", &format!("{url}/{half}/old"), &token, &[], b"").status,
        204
    );
    assert_eq!(
        req("HEAD", &format!("{url_a}/{half}/old"), &token_a, &[], b"").status,
        404,
        "DELETE reaches a"
    );
    assert_eq!(
        req("DELETE", &format!("{url}/{half}/both"), &token, &[], b"").status,
        204
    );
    assert_eq!(
        req("HEAD", &format!("{url_b}/{half}/both"), &token_b, &[], b"").status,
        404
    );
    assert_eq!(
        req("GET", &format!("{url}/{half}/both"), &token, &[], b"").status,
        404
    );
    // The container listing merges both clusters: only "new" is left on either.
    let listing = req("GET", &format!("{url}/{half}"), &token, &[], b"");
    assert_eq!(
        (listing.status, listing.body_text()),
        (200, "new\n".to_string())
    );
}
