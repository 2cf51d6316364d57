//! `Migrate` routes, through the real sidecar binary against real Swift clusters: a container
//! half moved to cluster b lists and counts as one container holding the target's objects and
//! the local ones not yet moved (the target's copy winning), checked against a reference
//! container on one cluster holding exactly that; deletes remove an object from both clusters.
//! (Reads falling back to the local cluster are in resilience.rs.)

mod support;

use support::*;
use swiftfed_tests::{shared_pair, unique_name};

fn put(url: &str, token: &str, path: &str, ctype: &str, body: &[u8]) {
    ok(
        &req(
            "PUT",
            &format!("{url}/{path}"),
            token,
            &[("Content-Type", ctype)],
            body,
        ),
        path,
    );
}

#[test]
fn a_migrating_container_lists_counts_and_deletes_as_one() {
    let [a, b] = shared_pair();
    let c = unique_name("mig");
    let reference = unique_name("migref");
    let route = format!(
        "- {{match: {{account: AUTH_test, container: {{exact: \"{c}\"}}}}, target: {{cluster: b}}, mode: Migrate}}"
    );
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    ok(
        &req("PUT", &format!("{url_a}/{c}"), &token_a, &[], b""),
        "on a",
    );
    ok(
        &req("PUT", &format!("{url_b}/{c}"), &token_b, &[], b""),
        "on b",
    );
    ok(
        &req("PUT", &format!("{url_a}/{reference}"), &token_a, &[], b""),
        "reference",
    );
    // Not yet moved (a), moved (b), moved and stale on a ("both").
    let on_a: [(&str, &str, &[u8]); 4] = [
        ("a-only-1", "text/x-a", b"aaa"),
        ("both", "text/x-old", b"stale"),
        ("dir/x", "text/x-a", b"x"),
        ("z-local", "text/x-a", b"zz"),
    ];
    let on_b: [(&str, &str, &[u8]); 3] = [
        ("both", "text/x-new", b"migrated!"),
        ("b-only", "text/x-b", b"bbbb"),
        ("dir/y", "text/x-b", b"yyyyyy"),
    ];
    for (name, ctype, body) in on_a {
        put(&url_a, &token_a, &format!("{c}/{name}"), ctype, body);
    }
    for (name, ctype, body) in on_b {
        put(&url_b, &token_b, &format!("{c}/{name}"), ctype, body);
    }
    // The reference: what the container holds once migrated (b's "both").
    for (name, ctype, body) in on_a.iter().chain(on_b.iter()) {
        if *name == "both" && *ctype == "text/x-old" {
            continue;
        }
        put(
            &url_a,
            &token_a,
            &format!("{reference}/{name}"),
            ctype,
            body,
        );
    }

    let queries = [
        "",
        "limit=2",
        "marker=b-only",
        "end_marker=dir/y",
        "marker=a-only-1&end_marker=z-local&limit=3",
        "prefix=dir/",
        "delimiter=/",
        "delimiter=/&marker=dir/",
        "reverse=true",
        "reverse=true&marker=z-local&limit=2",
        "limit=0",
        "prefix=none",
    ];
    for format in ["json", "plain", "xml"] {
        for q in queries {
            let query = format!("format={format}&{q}");
            let got = req("GET", &format!("{url}/{c}?{query}"), &token, &[], b"");
            let want = req(
                "GET",
                &format!("{url_a}/{reference}?{query}"),
                &token_a,
                &[],
                b"",
            );
            assert_eq!(got.status, want.status, "?{query}: {}", got.body_text());
            assert_eq!(listing_view(&got), listing_view(&want), "?{query}");
            if got.status == 200 {
                assert_eq!(
                    got.header("x-container-object-count"),
                    Some("6"),
                    "?{query}"
                );
            }
        }
    }
    let head = req("HEAD", &format!("{url}/{c}"), &token, &[], b"");
    let want = req("HEAD", &format!("{url_a}/{reference}"), &token_a, &[], b"");
    assert_eq!(head.status, want.status, "HEAD");
    for h in ["x-container-object-count", "x-container-bytes-used"] {
        assert_eq!(head.header(h), want.header(h), "{h}");
    }

    // Deletes: from both clusters when on both, from where it is otherwise.
    let gone = |name: &str| {
        let on_a = req("HEAD", &format!("{url_a}/{c}/{name}"), &token_a, &[], b"").status;
        let on_b = req("HEAD", &format!("{url_b}/{c}/{name}"), &token_b, &[], b"").status;
        (on_a, on_b) == (404, 404)
    };
    for name in ["both", "a-only-1", "b-only"] {
        let r = req("DELETE", &format!("{url}/{c}/{name}"), &token, &[], b"");
        assert_eq!(r.status, 204, "DELETE {name}: {}", r.body_text());
        assert!(gone(name), "{name} left behind");
        assert_eq!(
            req("GET", &format!("{url}/{c}/{name}"), &token, &[], b"").status,
            404,
            "{name} still readable"
        );
    }
    assert_eq!(
        req("DELETE", &format!("{url}/{c}/never-was"), &token, &[], b"").status,
        404
    );
    let listed = req("GET", &format!("{url}/{c}"), &token, &[], b"");
    assert_eq!(listed.body_text(), "dir/x\ndir/y\nz-local\n");
}
