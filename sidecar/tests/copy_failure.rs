//! A cross-cluster copy cut off halfway, through the real sidecar binary against real Swift.
//! Alone in its test binary: it watches the space used on the clusters' tmpfs, which no other
//! test may fill meanwhile.

mod support;

use support::*;
use swiftfed_tests::{shared_pair, unique_name, HttpResponse};

fn ok(r: &HttpResponse, what: &str) {
    assert!(
        r.status / 100 == 2,
        "{what}: {} {}",
        r.status,
        r.body_text()
    );
}

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
    let [a, _] = shared_pair();
    let mut c = swiftfed_tests::SwiftCluster::start("c").expect("cluster c");
    let u = unique_name("cut").replace('-', "");
    let fed = format!("{u}fed");
    let local = format!("{u}loc");
    let route = format!(
        "- {{match: {{account: AUTH_test, container: {{exact: \"{fed}\"}}}}, target: {{cluster: b}}}}"
    );
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
