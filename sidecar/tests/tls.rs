//! TLS with certificates made in the test (rcgen): toward target clusters, on the sidecar's Swift
//! listener, and on its admin API.
//!
//! The harness Swift clusters speak plain HTTP, so an https target is cluster b behind `Front`, a
//! small TLS terminator (`support/tls.rs`, tokio-rustls) that forwards bytes to b's proxy port. What
//! lands in cluster b is read back from b directly. Every table uses `Credentials` auth, so the
//! sidecar's own token is fetched (over http from b, or over https through the front).

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use support::tls::*;
use support::*;
use swiftfed_tests::{http_request, scratch_dir, shared_pair, unique_name, HttpResponse};

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

fn yaml_string(s: &str) -> String {
    // A JSON string is a YAML double-quoted scalar.
    serde_json::to_string(s).expect("string")
}

/// The `tls:` map of a cluster.
#[derive(Default)]
struct TlsYaml<'a> {
    ca: Option<&'a str>,
    server_name: Option<&'a str>,
    client: Option<&'a Leaf>,
    insecure: bool,
}

impl TlsYaml<'_> {
    /// The `  tls: {...}` line of a cluster; none when nothing is set.
    fn line(&self) -> String {
        let mut parts = Vec::new();
        if self.insecure {
            parts.push("insecureSkipVerify: true".to_string());
        }
        if let Some(ca) = self.ca {
            parts.push(format!("caPem: {}", yaml_string(ca)));
        }
        if let Some(name) = self.server_name {
            parts.push(format!("serverName: {}", yaml_string(name)));
        }
        if let Some(leaf) = self.client {
            parts.push(format!("clientCertPem: {}", yaml_string(&leaf.cert)));
            parts.push(format!("clientKeyPem: {}", yaml_string(&leaf.key)));
        }
        if parts.is_empty() {
            return String::new();
        }
        format!("  tls: {{{}}}\n", parts.join(", "))
    }
}

/// A table whose cluster `b` has `endpoints`, `tls` and the sidecar's own tempauth credentials
/// fetched from `auth_url`; containers starting with `prefix` go to it.
fn table(
    revision: u64,
    endpoints: &[String],
    tls: &TlsYaml,
    auth_url: &str,
    prefix: &str,
) -> String {
    let endpoints: Vec<String> = endpoints.iter().map(|e| yaml_string(e)).collect();
    format!(
        "revision: {revision}\n\
         clusters:\n\
         - name: b\n  \
           endpoints: [{}]\n\
         {}  \
           auth: {{mode: Credentials, credentials: {{type: tempauth, authUrl: {}, user: \"test:sidecar\", key: \"sidecar-key\"}}}}\n  \
           timeouts: {{connect: 1s, firstByte: 30s, idle: 30s}}\n\
         routes:\n\
         - {{match: {{account: AUTH_test, container: {{prefix: {}}}}}, target: {{cluster: b}}}}\n",
        endpoints.join(", "),
        tls.line(),
        yaml_string(auth_url),
        yaml_string(prefix),
    )
}

fn push_ok(sidecar: &Sidecar, table: &str) {
    let r = sidecar.push(table);
    assert_eq!(r.status, 200, "push: {}", r.body_text());
}

/// A client of cluster b itself, to see what landed there.
struct Direct {
    url: String,
    token: String,
}

impl Direct {
    fn of(cluster: &swiftfed_tests::SwiftCluster) -> Direct {
        let (url, token) = cluster.auth(TESTER.0, TESTER.1).expect("direct auth");
        Direct { url, token }
    }

    fn get(&self, path: &str) -> HttpResponse {
        req(
            "GET",
            &format!("{}/{path}", self.url),
            &self.token,
            &[],
            b"",
        )
    }
}

/// Writes an object through the sidecar (container first) and checks it landed in b.
fn put_through(sidecar_url: &str, token: &str, b: &Direct, container: &str, body: &[u8]) {
    ok(
        &req(
            "PUT",
            &format!("{sidecar_url}/{container}"),
            token,
            &[],
            b"",
        ),
        "container PUT through the sidecar",
    );
    ok(
        &req(
            "PUT",
            &format!("{sidecar_url}/{container}/obj"),
            token,
            &[],
            body,
        ),
        "object PUT through the sidecar",
    );
    let got = b.get(&format!("{container}/obj"));
    assert_eq!(got.status, 200, "object on b: {}", got.body_text());
    assert!(got.body == body, "object on b has other bytes");
}

/// A request through the sidecar that must fail fast with a Swift-style 502/503 naming cluster
/// b and containing `reason`.
fn refused(sidecar_url: &str, token: &str, path: &str, reason: &str) -> HttpResponse {
    let start = Instant::now();
    let r = req("GET", &format!("{sidecar_url}/{path}"), token, &[], b"");
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "refusal took {took:?}: must not hang"
    );
    let text = r.body_text();
    eprintln!("refused in {took:?}: {} {text}", r.status);
    assert!(
        matches!(r.status, 502 | 503),
        "expected 502/503, got {} {text}",
        r.status
    );
    assert!(
        text.contains("of b ") || text.contains("b endpoint") || text.contains("cluster b"),
        "the answer must name cluster b: {text}"
    );
    assert!(text.contains(reason), "expected {reason:?} in: {text}");
    r
}

/// TLS settings of a test client.
struct ClientTls<'a> {
    ca: &'a str,
    name: &'a str,
    cert: Option<&'a Leaf>,
}

/// One request over TLS (`Connection: close`), read to the end.
fn https(
    port: u16,
    tls: &ClientTls,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(tls.ca));
    let config = match tls.cert {
        Some(leaf) => builder
            .with_client_auth_cert(certs(&leaf.cert), private_key(&leaf.key))
            .map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(tls.name.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(body))
        .and_then(|_| stream.flush())
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // A peer that closes without close_notify after a complete answer.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(format!("read: {e}")),
    }
    swiftfed_tests::parse_response(&raw, method == "HEAD")
}

/// A directory for certificate files.
fn cert_dir() -> PathBuf {
    let dir = scratch_dir().expect("scratch").join(unique_name("certs"));
    std::fs::create_dir_all(&dir).expect("cert dir");
    dir
}

/// Replaces a file atomically (write + rename), as a Secret volume update does.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn arg(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_string()
}

// ---------------------------------------------------------------------------------------------
// TLS toward target clusters
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_chain_carries_objects_to_the_target_cluster_and_its_https_auth_url() {
    let [a, b] = shared_pair();
    let ca = Ca::new("swiftfed test CA");
    let front = Front::start(
        b.proxy_port(),
        server_config(&ca.server(&["127.0.0.1", "localhost"]), None),
    );
    let prefix = unique_name("tls");
    let tls = TlsYaml {
        ca: Some(&ca.pem),
        ..TlsYaml::default()
    };
    // The sidecar's token comes over https too, with the cluster's TLS settings.
    let auth_url = format!("{}/auth/v1.0", front.url());
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&table(1, &[front.url()], &tls, &auth_url, &prefix)),
    );
    let (url, token) = auth_via(&sidecar, TESTER);
    let direct_b = Direct::of(b);
    let container = format!("{prefix}-c");
    put_through(&url, &token, &direct_b, &container, b"over TLS to b");
    let got = req("GET", &format!("{url}/{container}/obj"), &token, &[], b"");
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, &b"over TLS to b"[..])
    );
    assert_eq!(
        Direct::of(a).get(&format!("{container}/obj")).status,
        404,
        "nothing lands in the local cluster"
    );
    assert!(
        front.handshakes() >= 1,
        "the traffic went through the TLS front"
    );

    // A target that speaks TLS 1.2 only is still reached.
    let front12 = Front::start(
        b.proxy_port(),
        server_config_with(&ca.server(&["127.0.0.1"]), None, &[&rustls::version::TLS12]),
    );
    push_ok(
        &sidecar,
        &table(2, &[front12.url()], &tls, &b.auth_url(), &prefix),
    );
    let container12 = format!("{prefix}-12");
    put_through(&url, &token, &direct_b, &container12, b"over TLS 1.2");
    assert!(front12.handshakes() >= 1);
}

#[test]
fn wrong_ca_is_a_clear_503_naming_the_cluster_and_the_next_endpoint_takes_over() {
    let [a, b] = shared_pair();
    let ca = Ca::new("trusted CA");
    let stranger = Ca::new("some other CA");
    let bad = Front::start(
        b.proxy_port(),
        server_config(&stranger.server(&["127.0.0.1"]), None),
    );
    let good = Front::start(
        b.proxy_port(),
        server_config(&ca.server(&["127.0.0.1"]), None),
    );
    let prefix = unique_name("wrongca");
    let tls = TlsYaml {
        ca: Some(&ca.pem),
        ..TlsYaml::default()
    };
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&table(1, &[bad.url()], &tls, &b.auth_url(), &prefix)),
    );
    let (url, token) = auth_via(&sidecar, TESTER);
    let container = format!("{prefix}-c");
    let r = refused(&url, &token, &container, "UnknownIssuer");
    assert_eq!(r.status, 503);
    assert!(
        r.body_text().contains("tls.caPem"),
        "the answer says what to fix: {}",
        r.body_text()
    );
    assert_eq!(
        bad.handshakes(),
        0,
        "the sidecar must not finish a handshake with an untrusted server"
    );

    // A failed handshake is a failed connect: the next endpoint gets the request, body intact.
    push_ok(
        &sidecar,
        &table(2, &[bad.url(), good.url()], &tls, &b.auth_url(), &prefix),
    );
    let body: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    put_through(&url, &token, &Direct::of(b), &container, &body);
    assert!(good.handshakes() >= 1);

    // The same trust applies to the https auth URL: its failure names the cluster too.
    let bad_auth = format!("{}/auth/v1.0", bad.url());
    push_ok(&sidecar, &table(3, &[good.url()], &tls, &bad_auth, &prefix));
    refused(&url, &token, &container, "UnknownIssuer");
}

#[test]
fn wrong_name_is_rejected_and_server_name_overrides_it() {
    let [a, b] = shared_pair();
    let ca = Ca::new("name CA");
    // The certificate names swift-b.test only, not the endpoint's address.
    let front = Front::start(
        b.proxy_port(),
        server_config(&ca.server(&["swift-b.test"]), None),
    );
    let prefix = unique_name("names");
    let mut tls = TlsYaml {
        ca: Some(&ca.pem),
        ..TlsYaml::default()
    };
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&table(1, &[front.url()], &tls, &b.auth_url(), &prefix)),
    );
    let (url, token) = auth_via(&sidecar, TESTER);
    let container = format!("{prefix}-c");
    refused(&url, &token, &container, "tls.serverName");

    tls.server_name = Some("swift-b.test");
    push_ok(
        &sidecar,
        &table(2, &[front.url()], &tls, &b.auth_url(), &prefix),
    );
    put_through(&url, &token, &Direct::of(b), &container, b"by name");

    tls.server_name = Some("other.test");
    push_ok(
        &sidecar,
        &table(3, &[front.url()], &tls, &b.auth_url(), &prefix),
    );
    refused(
        &url,
        &token,
        &format!("{container}/obj"),
        "not valid for name",
    );
}

#[test]
fn mutual_tls_required_by_the_target_and_presented_by_the_sidecar() {
    let [a, b] = shared_pair();
    let ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let front = Front::start(
        b.proxy_port(),
        server_config(&ca.server(&["127.0.0.1"]), Some(&client_ca)),
    );
    let prefix = unique_name("mtls");
    let container = format!("{prefix}-c");
    let no_cert = TlsYaml {
        ca: Some(&ca.pem),
        ..TlsYaml::default()
    };
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&table(1, &[front.url()], &no_cert, &b.auth_url(), &prefix)),
    );
    let (url, token) = auth_via(&sidecar, TESTER);
    // TLS 1.3 reports a missing client certificate after the client's side of the handshake,
    // as an alert on the first read: a 502 naming the endpoint and the alert.
    refused(&url, &token, &container, "requires a client certificate");
    assert_eq!(front.client_certs(), 0);
    assert!(
        front
            .refusals()
            .iter()
            .any(|e| e.contains("no certificate")),
        "the front refused for want of a certificate: {:?}",
        front.refusals()
    );

    let leaf = client_ca.client("swiftfed-sidecar");
    let with_cert = TlsYaml {
        ca: Some(&ca.pem),
        client: Some(&leaf),
        ..TlsYaml::default()
    };
    push_ok(
        &sidecar,
        &table(2, &[front.url()], &with_cert, &b.auth_url(), &prefix),
    );
    put_through(&url, &token, &Direct::of(b), &container, b"mutual");
    assert!(
        front.client_certs() >= 1,
        "the sidecar presented its certificate"
    );

    // A certificate from a CA the target does not trust is refused by the target.
    let stranger = Ca::new("stranger CA").client("swiftfed-sidecar");
    let wrong_cert = TlsYaml {
        ca: Some(&ca.pem),
        client: Some(&stranger),
        ..TlsYaml::default()
    };
    push_ok(
        &sidecar,
        &table(3, &[front.url()], &wrong_cert, &b.auth_url(), &prefix),
    );
    refused(
        &url,
        &token,
        &format!("{container}/obj"),
        "the target refused the client certificate",
    );

    // The private key is a secret: never shown by GET /v1/config, never logged.
    let shown = sidecar.get_config().body_text();
    assert!(shown.contains("\"clientKeyPem\":\"<redacted>\""), "{shown}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    let key_line = stranger
        .key
        .lines()
        .nth(1)
        .expect("a base64 line of the key");
    assert!(!sidecar.log().contains(key_line), "key material in the log");
}

#[test]
fn target_ca_and_client_certificate_rotate_with_a_new_routing_table_without_restart() {
    let [a, b] = shared_pair();
    let (ca1, ca2) = (Ca::new("server CA 1"), Ca::new("server CA 2"));
    let (clients1, clients2) = (Ca::new("client CA 1"), Ca::new("client CA 2"));
    let (leaf1, leaf2) = (clients1.client("sidecar-1"), clients2.client("sidecar-2"));
    let front = Front::start(
        b.proxy_port(),
        server_config(&ca1.server(&["127.0.0.1"]), Some(&clients1)),
    );
    let prefix = unique_name("rotate");
    let container = format!("{prefix}-c");
    let first = TlsYaml {
        ca: Some(&ca1.pem),
        client: Some(&leaf1),
        ..TlsYaml::default()
    };
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&table(1, &[front.url()], &first, &b.auth_url(), &prefix)),
    );
    let pid = sidecar.pid();
    let (url, token) = auth_via(&sidecar, TESTER);
    put_through(&url, &token, &Direct::of(b), &container, b"before rotation");

    // The target moves to a new CA and a new client CA; the sidecar's old trust fails.
    front.swap(server_config(&ca2.server(&["127.0.0.1"]), Some(&clients2)));
    refused(&url, &token, &format!("{container}/obj"), "UnknownIssuer");

    // The routing file (a mounted Secret) brings the new CA and client certificate.
    let second = TlsYaml {
        ca: Some(&ca2.pem),
        client: Some(&leaf2),
        ..TlsYaml::default()
    };
    sidecar.write_routing_file(&table(2, &[front.url()], &second, &b.auth_url(), &prefix));
    let got = poll_until("the new CA in force", Duration::from_secs(10), || {
        let r = req("GET", &format!("{url}/{container}/obj"), &token, &[], b"");
        (r.status == 200).then_some(r)
    });
    assert_eq!(got.body, b"before rotation");
    assert_eq!(sidecar.pid(), pid);
    let config: serde_json::Value =
        serde_json::from_slice(&sidecar.get_config().body).expect("config JSON");
    assert_eq!(config["revision"], 2, "the same process applied revision 2");
    assert!(front.client_certs() >= 2);
}

#[test]
fn a_target_that_never_finishes_the_handshake_times_out_and_fails_over() {
    let [a, b] = shared_pair();
    let ca = Ca::new("timeout CA");
    // The kernel completes TCP connects on a listening socket nobody accepts from: a peer that
    // takes the connection and never says a word of TLS.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!(
        "https://127.0.0.1:{}",
        silent.local_addr().expect("addr").port()
    );
    let good = Front::start(
        b.proxy_port(),
        server_config(&ca.server(&["127.0.0.1"]), None),
    );
    let prefix = unique_name("silent");
    let container = format!("{prefix}-c");
    let tls = TlsYaml {
        ca: Some(&ca.pem),
        ..TlsYaml::default()
    };
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&table(
            1,
            std::slice::from_ref(&silent_url),
            &tls,
            &b.auth_url(),
            &prefix,
        )),
    );
    let (url, token) = auth_via(&sidecar, TESTER);
    let r = refused(&url, &token, &container, "did not finish within 1s");
    assert_eq!(r.status, 503);

    push_ok(
        &sidecar,
        &table(2, &[silent_url, good.url()], &tls, &b.auth_url(), &prefix),
    );
    let start = Instant::now();
    put_through(
        &url,
        &token,
        &Direct::of(b),
        &container,
        b"after a silent one",
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "failover took {:?}",
        start.elapsed()
    );
}

#[test]
fn system_roots_are_the_trust_when_no_ca_is_given() {
    let [a, b] = shared_pair();
    let ca = Ca::new("a CA the system trusts");
    let front = Front::start(
        b.proxy_port(),
        server_config(&ca.server(&["127.0.0.1"]), None),
    );
    // The system store, as rustls-native-certs reads it, here from SSL_CERT_FILE.
    let store = cert_dir().join("system-roots.pem");
    replace(&store, &ca.pem);
    let prefix = unique_name("sysroots");
    let sidecar = Sidecar::spawn_with_env(
        Options {
            upstream_port: a.proxy_port(),
            routing: Some(table(
                1,
                &[front.url()],
                &TlsYaml::default(),
                &b.auth_url(),
                &prefix,
            )),
            extra_args: vec![],
        },
        &[("SSL_CERT_FILE", &arg(&store))],
    );
    sidecar.wait_ready(Duration::from_secs(20));
    let (url, token) = auth_via(&sidecar, TESTER);
    put_through(
        &url,
        &token,
        &Direct::of(b),
        &format!("{prefix}-c"),
        b"system roots",
    );
    assert!(front.handshakes() >= 1);
}

#[test]
fn insecure_skip_verify_only_when_set_and_logged_as_a_warning() {
    let [a, b] = shared_pair();
    let unknown = Ca::new("a CA nobody trusts");
    let front = Front::start(
        b.proxy_port(),
        server_config(&unknown.server(&["somewhere.else"]), None),
    );
    let trusted = Ca::new("the trusted CA");
    let prefix = unique_name("insecure");
    let container = format!("{prefix}-c");
    let verified = TlsYaml {
        ca: Some(&trusted.pem),
        ..TlsYaml::default()
    };
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&table(1, &[front.url()], &verified, &b.auth_url(), &prefix)),
    );
    let (url, token) = auth_via(&sidecar, TESTER);
    refused(&url, &token, &container, "UnknownIssuer");
    assert!(!sidecar.log().contains("verification is OFF"));

    let insecure = TlsYaml {
        insecure: true,
        ..TlsYaml::default()
    };
    push_ok(
        &sidecar,
        &table(2, &[front.url()], &insecure, &b.auth_url(), &prefix),
    );
    put_through(&url, &token, &Direct::of(b), &container, b"unverified");
    let warning = sidecar
        .log()
        .lines()
        .find(|l| l.contains("verification is OFF"))
        .map(str::to_string)
        .expect("a warning when the table is applied");
    assert!(
        warning.contains("WARN") && warning.contains("cluster=\"b\""),
        "{warning}"
    );
}

#[test]
fn unusable_tls_settings_are_refused_naming_the_field() {
    let [a, _] = shared_pair();
    let ca = Ca::new("refusal CA");
    let leaf = ca.client("sidecar");
    let other = ca.client("other");
    let sidecar = Sidecar::start(a.proxy_port(), None);
    // A key that does not belong to the certificate: syntactically fine, refused by rustls.
    let mismatched = Leaf {
        cert: leaf.cert.clone(),
        key: other.key.clone(),
    };
    let tls = TlsYaml {
        ca: Some(&ca.pem),
        client: Some(&mismatched),
        ..TlsYaml::default()
    };
    let r = sidecar.push(&table(
        1,
        &["https://127.0.0.1:1".to_string()],
        &tls,
        "https://127.0.0.1:1/auth/v1.0",
        "x-",
    ));
    assert_eq!(r.status, 422, "{}", r.body_text());
    assert!(
        r.body_text().contains("clusters[0].tls.clientKeyPem"),
        "{}",
        r.body_text()
    );
    assert!(!r.body_text().contains("PRIVATE KEY"));
}

// ---------------------------------------------------------------------------------------------
// TLS on the sidecar's own listeners
// ---------------------------------------------------------------------------------------------

#[test]
fn swift_listener_serves_tls_and_new_connections_get_a_rotated_certificate() {
    let [a, _] = shared_pair();
    let (ca1, ca2) = (Ca::new("listener CA 1"), Ca::new("listener CA 2"));
    let dir = cert_dir();
    let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
    let first = ca1.server(&["127.0.0.1"]);
    replace(&cert_path, &first.cert);
    replace(&key_path, &first.key);
    let sidecar = Sidecar::start_with(Options {
        upstream_port: a.proxy_port(),
        routing: None,
        extra_args: vec![
            "--tls-cert".into(),
            arg(&cert_path),
            "--tls-key".into(),
            arg(&key_path),
        ],
    });
    let trust1 = ClientTls {
        ca: &ca1.pem,
        name: "127.0.0.1",
        cert: None,
    };
    let auth = https(
        sidecar.port,
        &trust1,
        "GET",
        "/auth/v1.0",
        &[("X-Auth-User", TESTER.0), ("X-Auth-Key", TESTER.1)],
        b"",
    )
    .expect("auth over TLS");
    assert_eq!(auth.status, 200, "{}", auth.body_text());
    let token = auth.header("x-auth-token").expect("token").to_string();
    let container = unique_name("tlslistener");
    let put = https(
        sidecar.port,
        &trust1,
        "PUT",
        &format!("/v1/AUTH_test/{container}"),
        &[("X-Auth-Token", &token)],
        b"",
    )
    .expect("PUT over TLS");
    ok(&put, "container PUT over TLS");
    let put = https(
        sidecar.port,
        &trust1,
        "PUT",
        &format!("/v1/AUTH_test/{container}/obj"),
        &[("X-Auth-Token", &token)],
        b"via the TLS listener",
    )
    .expect("object PUT over TLS");
    ok(&put, "object PUT over TLS");
    assert_eq!(
        Direct::of(a).get(&format!("{container}/obj")).body,
        b"via the TLS listener"
    );
    assert!(
        !matches!(http_request("GET", &format!("{}/info", sidecar.url()), &[], b""), Ok(r) if r.status == 200),
        "plain HTTP must not be served on a TLS listener"
    );

    // Rotation: the files are replaced (key first, as any order must work); new connections
    // get the new certificate, without a restart.
    let second = ca2.server(&["127.0.0.1"]);
    replace(&key_path, &second.key);
    replace(&cert_path, &second.cert);
    let trust2 = ClientTls {
        ca: &ca2.pem,
        name: "127.0.0.1",
        cert: None,
    };
    let info = poll_until(
        "the rotated certificate served",
        Duration::from_secs(10),
        || https(sidecar.port, &trust2, "GET", "/info", &[], b"").ok(),
    );
    assert_eq!(info.status, 200);
    let old = https(sidecar.port, &trust1, "GET", "/info", &[], b"")
        .expect_err("the old CA no longer matches");
    assert!(old.contains("UnknownIssuer"), "{old}");

    // Unusable files are refused and the certificate in use kept.
    replace(&cert_path, "not a certificate\n");
    poll_until("the refusal logged", Duration::from_secs(10), || {
        sidecar
            .log()
            .contains("TLS files changed but are not usable")
            .then_some(())
    });
    let still = https(sidecar.port, &trust2, "GET", "/info", &[], b"").expect("still served");
    assert_eq!(still.status, 200);
}

#[test]
fn admin_api_over_tls_takes_the_token_or_a_client_certificate_from_its_ca() {
    let [a, _] = shared_pair();
    let ca = Ca::new("admin server CA");
    let operators = Ca::new("operator client CA");
    let operator = operators.client("swiftfed-operator");
    let rogue = Ca::new("rogue CA").client("swiftfed-operator");
    let dir = cert_dir();
    let leaf = ca.server(&["127.0.0.1"]);
    let (cert_path, key_path, client_ca_path) = (
        dir.join("admin.crt"),
        dir.join("admin.key"),
        dir.join("operators.crt"),
    );
    replace(&cert_path, &leaf.cert);
    replace(&key_path, &leaf.key);
    replace(&client_ca_path, &operators.pem);
    let sidecar = Sidecar::spawn_with(Options {
        upstream_port: a.proxy_port(),
        routing: None,
        extra_args: vec![
            "--admin-tls-cert".into(),
            arg(&cert_path),
            "--admin-tls-key".into(),
            arg(&key_path),
            "--admin-client-ca".into(),
            arg(&client_ca_path),
        ],
    });
    let anonymous = ClientTls {
        ca: &ca.pem,
        name: "127.0.0.1",
        cert: None,
    };
    let as_operator = ClientTls {
        ca: &ca.pem,
        name: "127.0.0.1",
        cert: Some(&operator),
    };
    let as_rogue = ClientTls {
        ca: &ca.pem,
        name: "127.0.0.1",
        cert: Some(&rogue),
    };
    let admin =
        |tls: &ClientTls, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
            https(sidecar.admin_port, tls, method, path, headers, body)
        };
    poll_until("admin /ready over TLS", Duration::from_secs(20), || {
        admin(&anonymous, "GET", "/ready", &[], b"")
            .ok()
            .filter(|r| r.status == 200)
    });

    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let r = admin(
        &anonymous,
        "GET",
        "/v1/config",
        &[("Authorization", &bearer)],
        b"",
    )
    .expect("GET with token");
    assert_eq!(r.status, 200, "{}", r.body_text());
    let r = admin(&anonymous, "GET", "/v1/config", &[], b"").expect("GET without anything");
    assert_eq!(r.status, 401, "{}", r.body_text());
    let r = admin(
        &anonymous,
        "GET",
        "/v1/config",
        &[("Authorization", "Bearer wrong-token")],
        b"",
    )
    .expect("GET with a wrong token");
    assert_eq!(r.status, 401);

    // The operator's certificate stands in for the token.
    let table =
        "revision: 1\nclusters: [{name: b, endpoints: [\"http://127.0.0.1:1\"]}]\nroutes: []\n";
    let r = admin(&as_operator, "PUT", "/v1/config", &[], table.as_bytes()).expect("PUT with cert");
    assert_eq!(r.status, 200, "{}", r.body_text());
    let r = admin(&as_operator, "GET", "/v1/config", &[], b"").expect("GET with cert");
    assert_eq!(r.status, 200);
    let shown: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(shown["revision"], 1);

    // A certificate from another CA is refused in the handshake, token or not.
    let err = admin(
        &as_rogue,
        "GET",
        "/v1/config",
        &[("Authorization", &bearer)],
        b"",
    )
    .expect_err("rogue certificate refused");
    assert!(
        err.to_lowercase().contains("alert") || err.contains("reset") || err.contains("closed"),
        "{err}"
    );
    poll_until(
        "the refused handshake logged",
        Duration::from_secs(10),
        || {
            sidecar
                .log()
                .contains("TLS handshake refused")
                .then_some(())
        },
    );
    // Plain HTTP is not served on the TLS admin listener.
    assert!(
        !matches!(http_request("GET", &format!("{}/ready", sidecar.admin_url()), &[], b""), Ok(r) if r.status == 200)
    );
}
