//! Dynamic Large Objects whose segments live in another cluster than the manifest, through the
//! real sidecar binary: compared with the same DLO inside one cluster (Swift's own DLO), for
//! GET, HEAD, ranges, `?multipart-manifest=get` and a metadata POST, both ways (manifest
//! routed and segments local, manifest local and segments routed).

mod support;

use support::*;
use swiftfed_tests::{shared_pair, unique_name, HttpResponse};

/// What a client sees of a large object that must not depend on where its parts live.
fn view(r: &HttpResponse) -> Vec<(String, String)> {
    headers_view(
        r,
        &[
            "content-type",
            "content-length",
            "content-range",
            "etag",
            "x-object-manifest",
        ],
    )
}

#[test]
fn dlo_segments_in_another_cluster_read_like_swifts_own() {
    let [a, b] = shared_pair();
    let u = unique_name("dlo").replace('-', "");
    let routes = [
        exact_route(&format!("{u}man")),
        exact_route(&format!("{u}rsegs")),
    ];
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &routes)));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let segments: [(&str, Vec<u8>); 3] = [
        ("seg/000", vec![b'a'; 1000]),
        ("seg/001", vec![b'b'; 1000]),
        ("seg/002", vec![b'c'; 500]),
    ];
    let whole: Vec<u8> = segments.iter().flat_map(|(_, d)| d.clone()).collect();

    // (manifest container, segment container, reference manifest container next to segments)
    let cases = [
        (format!("{u}man"), format!("{u}segs"), format!("{u}ref1")),
        (format!("{u}lman"), format!("{u}rsegs"), format!("{u}rsegs")),
    ];
    for (manifest_c, segs, reference_c) in &cases {
        for c in [manifest_c, segs, reference_c] {
            ok(&req("PUT", &format!("{url}/{c}"), &token, &[], b""), c);
        }
        for (name, data) in &segments {
            ok(
                &req("PUT", &format!("{url}/{segs}/{name}"), &token, &[], data),
                name,
            );
        }
        let manifest_value = format!("{segs}/seg/");
        let put_manifest = |c: &str, o: &str| {
            req(
                "PUT",
                &format!("{url}/{c}/{o}"),
                &token,
                &[
                    ("X-Object-Manifest", &manifest_value),
                    ("Content-Type", "text/x-dlo"),
                    ("X-Object-Meta-Color", "red"),
                ],
                b"",
            )
        };
        ok(&put_manifest(manifest_c, "big"), "cross-cluster manifest");
        // The reference lives with its segments: Swift's own DLO.
        ok(&put_manifest(reference_c, "ref-big"), "reference manifest");
        let crossed = format!("{url}/{manifest_c}/big");
        let single = format!("{url}/{reference_c}/ref-big");

        for (method, headers) in [
            ("GET", vec![]),
            ("HEAD", vec![]),
            ("GET", vec![("Range", "bytes=900-1100")]),
            ("GET", vec![("Range", "bytes=-100")]),
            ("GET", vec![("Range", "bytes=2400-")]),
            ("GET", vec![("Range", "bytes=5000-")]),
            // Several ranges: Swift's DLO answers the whole object (see swift_facts.rs).
            ("GET", vec![("Range", "bytes=0-9,1500-1509")]),
            ("GET", vec![("Range", "bytes=-10,900-1100,5000-")]),
        ] {
            let got = req(method, &crossed, &token, &headers, b"");
            let want = req(method, &single, &token, &headers, b"");
            assert_eq!(
                view(&got),
                view(&want),
                "{manifest_c}: {method} {headers:?}"
            );
            if want.status / 100 == 2 {
                assert!(
                    got.body == want.body,
                    "{manifest_c}: {method} {headers:?} bytes"
                );
            }
        }
        assert!(
            req("GET", &crossed, &token, &[], b"").body == whole,
            "assembled bytes"
        );
        let got = req(
            "GET",
            &format!("{crossed}?multipart-manifest=get"),
            &token,
            &[],
            b"",
        );
        let want = req(
            "GET",
            &format!("{single}?multipart-manifest=get"),
            &token,
            &[],
            b"",
        );
        assert_eq!(view(&got), view(&want), "{manifest_c}: the manifest itself");

        // A server-side copy into the other cluster copies the assembled content, as Swift
        // copies its own DLO.
        let copy = |from: &str, to: &str| {
            req(
                "PUT",
                &format!("{url}/{to}"),
                &token,
                &[("X-Copy-From", from)],
                b"",
            )
        };
        ok(
            &copy(&format!("{manifest_c}/big"), &format!("{segs}/copy-of-big")),
            "cross-cluster copy of the DLO",
        );
        ok(
            &copy(
                &format!("{reference_c}/ref-big"),
                &format!("{reference_c}/ref-copy"),
            ),
            "Swift's copy of its DLO",
        );
        let got = req(
            "GET",
            &format!("{url}/{segs}/copy-of-big"),
            &token,
            &[],
            b"",
        );
        let want = req(
            "GET",
            &format!("{url}/{reference_c}/ref-copy"),
            &token,
            &[],
            b"",
        );
        assert_eq!(view(&got), view(&want), "{manifest_c}: copies");
        assert!(got.body == whole, "the copy holds the content");
        // So does a copy within the manifest's own cluster (Swift alone would copy the
        // stand-in, a manifest that reads the wrong cluster).
        ok(
            &copy(
                &format!("{manifest_c}/big"),
                &format!("{manifest_c}/same-copy"),
            ),
            "copy of the DLO within its cluster",
        );
        let got = req(
            "GET",
            &format!("{url}/{manifest_c}/same-copy"),
            &token,
            &[],
            b"",
        );
        assert_eq!(
            view(&got),
            view(&want),
            "{manifest_c}: copy within one cluster"
        );
        assert!(
            got.body == whole,
            "the copy within one cluster holds the content"
        );

        // A metadata POST without X-Object-Manifest makes the manifest a plain object in
        // Swift 2.38; so it does across clusters.
        for target in [&crossed, &single] {
            ok(
                &req(
                    "POST",
                    target,
                    &token,
                    &[("X-Object-Meta-Color", "blue")],
                    b"",
                ),
                "POST",
            );
        }
        let got = req("GET", &crossed, &token, &[], b"");
        let want = req("GET", &single, &token, &[], b"");
        assert_eq!(view(&got), view(&want), "{manifest_c}: after POST");
        assert_eq!(got.body, want.body, "after POST");
    }

    // On b the routed manifest is a plain object: Swift's DLO never reads across clusters.
    let stored = req("HEAD", &format!("{url_b}/{u}man/big"), &token_b, &[], b"");
    assert_eq!(stored.status, 200);
    assert_eq!(stored.header("x-object-manifest"), None);
}

/// A DLO manifest whose segments live in another cluster lists as Swift lists its own DLO
/// manifest (the stored object, in both), in JSON and XML.
#[test]
fn cross_cluster_dlo_lists_like_swifts_own() {
    let [a, b] = shared_pair();
    let u = unique_name("dlol").replace('-', "");
    let route = exact_route(&format!("{u}man"));
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (manifest_c, segs) = (format!("{u}man"), format!("{u}segs"));
    for c in [&manifest_c, &segs] {
        ok(&req("PUT", &format!("{url}/{c}"), &token, &[], b""), c);
    }
    ok(
        &req("PUT", &format!("{url}/{segs}/seg/0"), &token, &[], b"abc"),
        "segment",
    );
    let value = format!("{segs}/seg/");
    for c in [&manifest_c, &segs] {
        for (name, extra) in [
            ("x/bare", vec![]),
            ("x/typed", vec![("Content-Type", "text/y")]),
        ] {
            let mut h = vec![("X-Object-Manifest", value.as_str())];
            h.extend_from_slice(&extra);
            ok(
                &req("PUT", &format!("{url}/{c}/{name}"), &token, &h, b""),
                name,
            );
        }
    }
    let (got, got_json, got_xml) = listed(&url, &token, &manifest_c);
    let (_, want_json, want_xml) = listed(&url, &token, &segs);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got_json, want_json, "JSON listing");
    assert_eq!(got_xml, want_xml, "XML listing");
}
