//! Cross-cluster operations cut off halfway, through the real sidecar binary against real
//! Swift: a copy whose destination dies, and DLO and SLO reads whose segment cluster dies. The client
//! gets an error, never a truncated object presented as complete, and nothing half-written is
//! left. Its own test binary: the copy test watches the space used on the clusters' tmpfs,
//! which no other test may fill meanwhile (the tests here run one at a time, see `SERIAL`).

mod support;

use std::io::{Read, Write};
use std::sync::Mutex;

use support::*;
use swiftfed_tests::{shared_pair, unique_name};

/// One test at a time: each stops a cluster's proxy and one watches the shared tmpfs.
static SERIAL: Mutex<()> = Mutex::new(());

/// Bytes in use on the file system holding a cluster's devices (tmpfs): Swift writes objects
/// to anonymous temp files (`O_TMPFILE`), so a PUT in progress shows only here.
fn used_bytes(cluster: &swiftfed_tests::SwiftCluster) -> u64 {
    let path = std::ffi::CString::new(cluster.dir().as_os_str().as_encoded_bytes())
        .expect("path without NUL");
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a zeroed statvfs to fill.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    assert_eq!(rc, 0, "statvfs {}", cluster.dir().display());
    (stat.f_blocks - stat.f_bfree) * stat.f_frsize
}

/// The destination cluster dies in the middle of a cross-cluster copy: the client gets an
/// error, and once the cluster is back it holds no object, not even a truncated one.
#[test]
fn a_copy_cut_off_halfway_leaves_nothing_behind() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let [a, _] = shared_pair();
    let mut c = swiftfed_tests::SwiftCluster::start("c").expect("cluster c");
    let u = unique_name("cut").replace('-', "");
    let fed = format!("{u}fed");
    let local = format!("{u}loc");
    let route = exact_route(&fed);
    // Cluster c plays "b" in the routing table.
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, &c, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_c, token_c) = c.auth(TESTER.0, TESTER.1).expect("auth c");
    ok(
        &req("PUT", &format!("{url_c}/{fed}"), &token_c, &[], b""),
        "fed on c",
    );
    ok(
        &req("PUT", &format!("{url_a}/{local}"), &token_a, &[], b""),
        "local",
    );
    let size = 256usize << 20;
    ok(
        &req(
            "PUT",
            &format!("{url_a}/{local}/big"),
            &token_a,
            &[],
            &pattern(size, 5),
        ),
        "source on a",
    );

    let before = used_bytes(&c);
    let copy = {
        let (url, token, fed, local) = (url.clone(), token.clone(), fed.clone(), local.clone());
        std::thread::spawn(move || {
            swiftfed_tests::http_request(
                "PUT",
                &format!("{url}/{fed}/copy"),
                &[
                    ("X-Auth-Token", &token),
                    ("X-Copy-From", &format!("{local}/big")),
                ],
                b"",
            )
        })
    };
    // Stop c's proxy once a good part of the object is being written there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while used_bytes(&c) < before + (32 << 20) {
        if copy.is_finished() {
            let answer = copy.join().expect("copy thread");
            panic!(
                "the copy ended before it was cut off: {:?}",
                answer.map(|r| (r.status, r.body_text()))
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the copy never got going"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    c.stop_proxy();
    let answer = copy.join().expect("copy thread");
    if let Ok(r) = &answer {
        assert!(r.status >= 500, "a cut-off copy answered {}", r.status);
    }
    c.start_proxy().expect("c back");
    assert_eq!(
        req("HEAD", &format!("{url_c}/{fed}/copy"), &token_c, &[], b"").status,
        404,
        "no object at the destination"
    );
    let listed = req("GET", &format!("{url_c}/{fed}"), &token_c, &[], b"");
    assert!(listed.body.is_empty(), "listed: {}", listed.body_text());
}

/// A DLO whose segments live in cluster c is read through the sidecar; c's proxy stops after
/// the client got 32 MiB: the answer ends short of its `Content-Length` (the client sees a
/// broken transfer), it is not completed with anything else.
#[test]
fn a_dlo_read_cut_off_halfway_ends_short() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let [a, _] = shared_pair();
    let mut c = swiftfed_tests::SwiftCluster::start("c").expect("cluster c");
    let u = unique_name("cutdlo").replace('-', "");
    let segs = format!("{u}segs");
    let manifest = format!("{u}man");
    let route = exact_route(&segs);
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, &c, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    for container in [&segs, &manifest] {
        ok(
            &req("PUT", &format!("{url}/{container}"), &token, &[], b""),
            container,
        );
    }
    let segment = pattern(64 << 20, 9);
    for i in 0..4 {
        ok(
            &req(
                "PUT",
                &format!("{url}/{segs}/part/{i:03}"),
                &token,
                &[],
                &segment,
            ),
            "segment",
        );
    }
    let value = format!("{segs}/part/");
    ok(
        &req(
            "PUT",
            &format!("{url}/{manifest}/big"),
            &token,
            &[("X-Object-Manifest", &value)],
            b"",
        ),
        "manifest",
    );
    let path = format!("/v1/AUTH_test/{manifest}/big");
    read_cut_off(&sidecar, &path, &token, 4 * segment.len(), || {
        c.stop_proxy()
    });
}

/// The same with a Static Large Object whose segments live in cluster c: the manifest is
/// local, its segments in a container routed to c.
#[test]
fn an_slo_read_cut_off_halfway_ends_short() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let [a, _] = shared_pair();
    let mut c = swiftfed_tests::SwiftCluster::start("c").expect("cluster c");
    let u = unique_name("cutslo").replace('-', "");
    let segs = format!("{u}segs");
    let manifest = format!("{u}man");
    let route = exact_route(&segs);
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, &c, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    for container in [&segs, &manifest] {
        ok(
            &req("PUT", &format!("{url}/{container}"), &token, &[], b""),
            container,
        );
    }
    let segment = pattern(64 << 20, 11);
    let mut entries = Vec::new();
    for i in 0..4 {
        let path = format!("{segs}/part/{i:03}");
        ok(
            &req("PUT", &format!("{url}/{path}"), &token, &[], &segment),
            "segment",
        );
        entries.push(format!("{{\"path\": \"/{path}\"}}"));
    }
    let body = format!("[{}]", entries.join(", "));
    ok(
        &req(
            "PUT",
            &format!("{url}/{manifest}/big?multipart-manifest=put"),
            &token,
            &[],
            body.as_bytes(),
        ),
        "manifest",
    );
    let path = format!("/v1/AUTH_test/{manifest}/big");
    read_cut_off(&sidecar, &path, &token, 4 * segment.len(), || {
        c.stop_proxy()
    });
}

/// GETs `path` through the sidecar, runs `cut` once the client got 32 MiB, and checks that
/// the answer (a 200 of `length` bytes) then ends short of its `Content-Length`.
fn read_cut_off(sidecar: &Sidecar, path: &str, token: &str, length: usize, cut: impl FnOnce()) {
    let mut stream = std::net::TcpStream::connect(sidecar.addr()).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n\r\n"
    )
    .expect("request");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let head_end = loop {
        let n = stream.read(&mut buf).expect("head");
        assert!(n > 0, "no answer");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let announced: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    assert_eq!(announced, length);
    let mut body = got.len() - head_end;
    while body < 32 << 20 {
        let n = stream.read(&mut buf).expect("body");
        assert!(n > 0, "ended early before the cut");
        body += n;
    }
    cut();
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => body += n,
        }
    }
    assert!(
        body < length,
        "the answer went on to its full length ({body} of {length}) without the segments"
    );
}
