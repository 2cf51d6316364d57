//! Static Large Objects whose segments live in another cluster than the manifest, through the
//! real sidecar binary against real Swift: compared with the same SLO inside one cluster
//! (Swift's own SLO) for the manifest PUT (accepted and refused), GET, HEAD, ranges,
//! conditions, `?multipart-manifest=get` (and `format=raw`) and `?multipart-manifest=delete`,
//! both ways (manifest routed and segments local, manifest local and segments routed); and
//! python-swiftclient's `swift upload --use-slo` into a container whose `_segments` container
//! a route sends to the other cluster.

mod support;

use md5::{Digest, Md5};
use support::*;
use swiftfed_tests::{scratch_dir, shared_pair, swift_cli, unique_name, HttpResponse};

/// What a client sees of a large object that must not depend on where its parts live.
fn view(r: &HttpResponse) -> Vec<(String, String)> {
    headers_view(
        r,
        &[
            "content-type",
            "content-length",
            "content-range",
            "etag",
            "x-static-large-object",
            "x-manifest-etag",
        ],
    )
}

/// The answer with a `multipart/byteranges` boundary (random, Swift's and the sidecar's alike)
/// replaced by a fixed one, in the content type and the body.
fn without_boundary(r: &HttpResponse) -> HttpResponse {
    let mut r = r.clone();
    let boundary = r
        .header("content-type")
        .and_then(|t| t.split_once("boundary="))
        .map(|(_, b)| b.to_string());
    if let Some(b) = boundary.filter(|b| !b.is_empty()) {
        for (_, v) in r.headers.iter_mut() {
            *v = v.replace(&b, "BOUNDARY");
        }
        r.body = String::from_utf8_lossy(&r.body)
            .replace(&b, "BOUNDARY")
            .into_bytes();
    }
    r
}

fn hex_md5(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// No header of the sidecar's own ever reaches a client.
fn no_marker(r: &HttpResponse, what: &str) {
    assert!(
        !r.headers
            .iter()
            .any(|(k, _)| k.to_ascii_lowercase().contains("swiftfed")),
        "{what}: {:?}",
        r.headers
    );
}

struct Setup {
    sidecar: Sidecar,
    url: String,
    token: String,
    url_b: String,
    token_b: String,
    url_a: String,
    token_a: String,
    u: String,
}

/// A sidecar in front of `a` with containers `<u>man`, `<u>rsegs` and `<u>lman_segments`
/// routed to `b`.
fn setup(tag: &str) -> Setup {
    let [a, b] = shared_pair();
    let u = unique_name(tag).replace('-', "");
    let routes = [
        exact_route(&format!("{u}lman_segments")),
        exact_route(&format!("{u}man")),
        exact_route(&format!("{u}rsegs")),
    ];
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &routes)));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    Setup {
        sidecar,
        url,
        token,
        url_b,
        token_b,
        url_a,
        token_a,
        u,
    }
}

/// (manifest container, segment container, reference container next to the segments): the
/// manifest routed with segments local, then the manifest local with segments routed.
fn cases(u: &str) -> [(String, String, String); 2] {
    [
        (format!("{u}man"), format!("{u}segs"), format!("{u}segs")),
        (format!("{u}lman"), format!("{u}rsegs"), format!("{u}rsegs")),
    ]
}

const SIZES: [usize; 3] = [1000, 1000, 500];

/// Segments `seg/000..` in `segs`; the manifest body naming them (the second by a range).
fn put_segments(s: &Setup, segs: &str) -> (Vec<u8>, String) {
    let mut whole = Vec::new();
    let mut manifest = Vec::new();
    for (i, size) in SIZES.iter().enumerate() {
        let data = pattern(*size, i as u64 + 3);
        ok(
            &req(
                "PUT",
                &format!("{}/{segs}/seg/{i:03}", s.url),
                &s.token,
                &[],
                &data,
            ),
            "segment",
        );
        let mut entry = format!(
            "{{\"path\": \"/{segs}/seg/{i:03}\", \"etag\": \"{}\", \"size_bytes\": {size}",
            hex_md5(&data)
        );
        if i == 1 {
            entry.push_str(", \"range\": \"100-899\"");
            whole.extend_from_slice(&data[100..900]);
        } else {
            whole.extend_from_slice(&data);
        }
        entry.push('}');
        manifest.push(entry);
    }
    (whole, format!("[{}]", manifest.join(", ")))
}

fn put_manifest(s: &Setup, at: &str, body: &str, extra: &[(&str, &str)]) -> HttpResponse {
    let mut headers = vec![
        ("Content-Type", "text/x-slo"),
        ("X-Object-Meta-Color", "red"),
    ];
    headers.extend_from_slice(extra);
    req(
        "PUT",
        &format!("{}/{at}?multipart-manifest=put", s.url),
        &s.token,
        &headers,
        body.as_bytes(),
    )
}

#[test]
fn slo_segments_in_another_cluster_read_like_swifts_own() {
    let s = setup("slo");
    for (manifest_c, segs, reference_c) in &cases(&s.u) {
        for c in [manifest_c, segs] {
            ok(
                &req("PUT", &format!("{}/{c}", s.url), &s.token, &[], b""),
                c,
            );
        }
        let (whole, body) = put_segments(&s, segs);
        let crossed_put = put_manifest(&s, &format!("{manifest_c}/big"), &body, &[]);
        let single_put = put_manifest(&s, &format!("{reference_c}/ref-big"), &body, &[]);
        ok(&crossed_put, "cross-cluster manifest");
        ok(&single_put, "reference manifest");
        // With `heartbeat=on`: 202 and Swift's report (its `Last Modified` aside).
        let reported = |at: &str| {
            let url = format!("{}/{at}?multipart-manifest=put&heartbeat=on", s.url);
            let r = req("PUT", &url, &s.token, &[], body.as_bytes());
            let text: Vec<String> = r
                .body_text()
                .lines()
                .filter(|l| !l.starts_with("Last Modified: "))
                .map(str::to_string)
                .collect();
            (r.status, r.header("content-type").map(str::to_string), text)
        };
        let got = reported(&format!("{manifest_c}/big-hb"));
        assert_eq!(got.0, 202);
        assert_eq!(got, reported(&format!("{reference_c}/ref-big-hb")));
        assert_eq!(
            crossed_put.header("etag"),
            single_put.header("etag"),
            "{manifest_c}: the PUT answers the SLO's ETag"
        );
        let crossed = format!("{}/{manifest_c}/big", s.url);
        let single = format!("{}/{reference_c}/ref-big", s.url);
        let single_etag = req("HEAD", &single, &s.token, &[], b"")
            .header("etag")
            .expect("etag")
            .to_string();

        for (method, headers) in [
            ("GET", vec![]),
            ("HEAD", vec![]),
            ("GET", vec![("Range", "bytes=900-1100")]),
            ("GET", vec![("Range", "bytes=-100")]),
            ("GET", vec![("Range", "bytes=2200-")]),
            ("GET", vec![("Range", "bytes=5000-")]),
            ("GET", vec![("Range", "bytes=0-9,1500-1600,-5")]),
            ("GET", vec![("Range", "bytes=0-9,5000-")]),
            ("HEAD", vec![("Range", "bytes=10-19")]),
            ("GET", vec![("If-None-Match", single_etag.as_str())]),
            ("GET", vec![("If-Match", single_etag.as_str())]),
            ("GET", vec![("If-Match", "\"nope\"")]),
            ("HEAD", vec![("If-None-Match", "\"nope\"")]),
        ] {
            let got = without_boundary(&req(method, &crossed, &s.token, &headers, b""));
            let want = without_boundary(&req(method, &single, &s.token, &headers, b""));
            no_marker(&got, "GET/HEAD");
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
            req("GET", &crossed, &s.token, &[], b"").body == whole,
            "assembled bytes"
        );
        for query in [
            "multipart-manifest=get",
            "multipart-manifest=get&format=raw",
        ] {
            let got = req("GET", &format!("{crossed}?{query}"), &s.token, &[], b"");
            let want = req("GET", &format!("{single}?{query}"), &s.token, &[], b"");
            no_marker(&got, query);
            assert_eq!(view(&got), view(&want), "{manifest_c}: {query}");
            assert_eq!(got.body_text(), want.body_text(), "{manifest_c}: {query}");
        }
        // A server-side copy into the other cluster copies the assembled content, as Swift
        // copies its own SLO.
        let copy = |from: &str, to: &str| {
            let to = format!("{}/{to}", s.url);
            req("PUT", &to, &s.token, &[("X-Copy-From", from)], b"")
        };
        ok(
            &copy(&format!("{manifest_c}/big"), &format!("{segs}/copy-of-big")),
            "cross-cluster copy of the SLO",
        );
        ok(
            &copy(
                &format!("{reference_c}/ref-big"),
                &format!("{reference_c}/ref-copy"),
            ),
            "Swift's copy of its SLO",
        );
        let got = req(
            "GET",
            &format!("{}/{segs}/copy-of-big", s.url),
            &s.token,
            &[],
            b"",
        );
        let want = req(
            "GET",
            &format!("{}/{reference_c}/ref-copy", s.url),
            &s.token,
            &[],
            b"",
        );
        assert_eq!(view(&got), view(&want), "{manifest_c}: copies");
        assert!(got.body == whole, "the copy holds the content");
        // So does a copy within the manifest's cluster (Swift alone would copy the stored
        // manifest), with `COPY` too.
        ok(
            &copy(
                &format!("{manifest_c}/big"),
                &format!("{manifest_c}/same-copy"),
            ),
            "copy within the manifest's cluster",
        );
        let dest = format!("{manifest_c}/same-copy2");
        ok(
            &req(
                "COPY",
                &crossed,
                &s.token,
                &[("Destination", dest.as_str())],
                b"",
            ),
            "COPY within the manifest's cluster",
        );
        for name in ["same-copy", "same-copy2"] {
            let got = req(
                "GET",
                &format!("{}/{manifest_c}/{name}", s.url),
                &s.token,
                &[],
                b"",
            );
            assert_eq!(view(&got), view(&want), "{manifest_c}: {name}");
            assert!(got.body == whole, "{name} holds the content");
        }
        // `?multipart-manifest=get` copies the manifest itself, still an SLO.
        let manifest_copy = format!("{}/{manifest_c}/manifest-copy", s.url);
        let from = [("X-Copy-From", format!("{manifest_c}/big"))];
        let from: Vec<(&str, &str)> = from.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ok(
            &req(
                "PUT",
                &format!("{manifest_copy}?multipart-manifest=get"),
                &s.token,
                &from,
                b"",
            ),
            "manifest copy",
        );
        let got = req("GET", &manifest_copy, &s.token, &[], b"");
        assert_eq!(got.header("x-static-large-object"), Some("True"));
        assert!(got.body == whole, "the manifest copy reads the content");

        // A metadata POST keeps an SLO an SLO (Swift keeps its system metadata).
        for target in [&crossed, &single] {
            let post = [("X-Object-Meta-Color", "blue")];
            ok(&req("POST", target, &s.token, &post, b""), "POST");
        }
        let got = req("GET", &crossed, &s.token, &[], b"");
        let want = req("GET", &single, &s.token, &[], b"");
        assert_eq!(view(&got), view(&want), "{manifest_c}: after POST");
        assert!(got.body == whole, "{manifest_c}: assembled after POST");
    }

    // Where things landed: the routed manifest on b is a plain object holding Swift's manifest
    // JSON (b's SLO never reads across clusters); the routed segments are on b only.
    let u = &s.u;
    let stored = req(
        "GET",
        &format!("{}/{u}man/big", s.url_b),
        &s.token_b,
        &[],
        b"",
    );
    assert_eq!(stored.status, 200);
    assert_eq!(stored.header("x-static-large-object"), None);
    assert!(stored
        .body_text()
        .contains(&format!("\"/{u}segs/seg/000\"")));
    let on_b = req(
        "GET",
        &format!("{}/{u}rsegs/seg/000", s.url_b),
        &s.token_b,
        &[],
        b"",
    );
    assert_eq!(on_b.body, pattern(SIZES[0], 3), "routed segment on b");
    let on_a = req(
        "HEAD",
        &format!("{}/{u}rsegs/seg/000", s.url_a),
        &s.token_a,
        &[],
        b"",
    );
    assert_eq!(on_a.status / 100, 4, "the routed segment is not on a");
    let local_manifest = req(
        "HEAD",
        &format!("{}/{u}lman/big", s.url_a),
        &s.token_a,
        &[],
        b"",
    );
    assert_eq!(local_manifest.status, 200, "the local manifest on a");
}

#[test]
fn slo_manifest_put_refused_like_swifts_own() {
    let s = setup("slobad");
    for (manifest_c, segs, reference_c) in &cases(&s.u) {
        for c in [manifest_c, segs] {
            ok(
                &req("PUT", &format!("{}/{c}", s.url), &s.token, &[], b""),
                c,
            );
        }
        let (_, good) = put_segments(&s, segs);
        let bad = [
            // Missing segment, wrong size, wrong etag, unsatisfiable range, empty non-last.
            format!("[{{\"path\": \"/{segs}/seg/none\"}}, {{\"path\": \"/{segs}/seg/002\"}}]"),
            format!("[{{\"path\": \"/{segs}/seg/000\", \"size_bytes\": 7}}]"),
            format!(
                "[{{\"path\": \"/{segs}/seg/000\", \"etag\": \"{}\"}}]",
                hex_md5(b"other")
            ),
            format!("[{{\"path\": \"/{segs}/seg/000\", \"range\": \"5000-\"}}]"),
            format!(
                "[{{\"path\": \"/{segs}/seg/000\", \"size_bytes\": 0}}, {{\"path\": \"/{segs}/seg/002\"}}]"
            ),
        ];
        for body in &bad {
            for accept in ["text/plain", "application/json", "application/xml"] {
                let got = put_manifest(&s, &format!("{manifest_c}/x"), body, &[("Accept", accept)]);
                let want = put_manifest(
                    &s,
                    &format!("{reference_c}/ref-x"),
                    body,
                    &[("Accept", accept)],
                );
                assert_eq!(got.status, want.status, "{manifest_c}: {body}: {accept}");
                assert_eq!(
                    got.body_text(),
                    want.body_text(),
                    "{manifest_c}: {body}: {accept}"
                );
                assert_eq!(
                    got.header("content-type"),
                    want.header("content-type"),
                    "{manifest_c}: {body}: {accept}"
                );
            }
        }
        // With `heartbeat=on` Swift answers 202 and reports the refusal in the body.
        for accept in ["text/plain", "application/json", "application/xml"] {
            let put = |at: &str| {
                req(
                    "PUT",
                    &format!("{}/{at}?multipart-manifest=put&heartbeat=on", s.url),
                    &s.token,
                    &[("Accept", accept)],
                    bad[0].as_bytes(),
                )
            };
            let got = put(&format!("{manifest_c}/x"));
            let want = put(&format!("{reference_c}/ref-x"));
            assert_eq!(got.status, 202, "{manifest_c}: heartbeat {accept}");
            assert_eq!(got.status, want.status, "{manifest_c}: heartbeat {accept}");
            assert_eq!(
                got.body_text(),
                want.body_text(),
                "{manifest_c}: heartbeat {accept}"
            );
            assert_eq!(got.header("content-type"), want.header("content-type"));
        }
        // An ETag that is not the SLO's: 422, as Swift.
        let wrong = [("Etag", "0123456789abcdef0123456789abcdef")];
        let got = put_manifest(&s, &format!("{manifest_c}/y"), &good, &wrong);
        let want = put_manifest(&s, &format!("{reference_c}/ref-y"), &good, &wrong);
        assert_eq!(got.status, 422);
        assert_eq!(got.status, want.status);
        let heartbeat = [("Etag", "0123456789abcdef0123456789abcdef")];
        let put = |at: &str| {
            let url = format!("{}/{at}?multipart-manifest=put&heartbeat=on", s.url);
            req("PUT", &url, &s.token, &heartbeat, good.as_bytes())
        };
        let got = put(&format!("{manifest_c}/y"));
        let want = put(&format!("{reference_c}/ref-y"));
        assert_eq!(
            (got.status, got.body_text()),
            (want.status, want.body_text())
        );
        // Nothing was stored by the refused PUTs.
        for o in ["x", "y"] {
            let r = req(
                "HEAD",
                &format!("{}/{manifest_c}/{o}", s.url),
                &s.token,
                &[],
                b"",
            );
            assert_eq!(r.status, 404, "{manifest_c}/{o}");
        }
    }
}

#[test]
fn slo_multipart_delete_removes_segments_in_every_cluster() {
    let s = setup("slodel");
    for (manifest_c, segs, reference_c) in &cases(&s.u) {
        for c in [manifest_c, segs] {
            ok(
                &req("PUT", &format!("{}/{c}", s.url), &s.token, &[], b""),
                c,
            );
        }
        // The reference's segments are copies of their own, in the same container.
        let ref_segs = reference_c;
        let (_, body) = put_segments(&s, segs);
        ok(
            &put_manifest(&s, &format!("{manifest_c}/big"), &body, &[]),
            "crossed",
        );
        let ref_body = body.replace("/seg/", "/refseg/");
        for i in 0..SIZES.len() {
            let from = format!("{segs}/seg/{i:03}");
            ok(
                &req(
                    "PUT",
                    &format!("{}/{ref_segs}/refseg/{i:03}", s.url),
                    &s.token,
                    &[("X-Copy-From", &from)],
                    b"",
                ),
                "reference segment",
            );
        }
        ok(
            &put_manifest(&s, &format!("{reference_c}/ref-big"), &ref_body, &[]),
            "reference",
        );
        // The second round finds both gone: Swift's answer for a missing manifest.
        for accept in [None, Some("application/json")] {
            let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("Accept", *a)).collect();
            let got = req(
                "DELETE",
                &format!("{}/{manifest_c}/big?multipart-manifest=delete", s.url),
                &s.token,
                &headers,
                b"",
            );
            let want = req(
                "DELETE",
                &format!("{}/{reference_c}/ref-big?multipart-manifest=delete", s.url),
                &s.token,
                &headers,
                b"",
            );
            assert_eq!(got.status, want.status, "{manifest_c}: {accept:?}");
            assert_eq!(
                got.body_text(),
                want.body_text(),
                "{manifest_c}: {accept:?}"
            );
        }
        // Segments and manifest are gone wherever they lived.
        for name in [
            format!("{segs}/seg/000"),
            format!("{segs}/seg/001"),
            format!("{segs}/seg/002"),
            format!("{manifest_c}/big"),
        ] {
            let r = req("HEAD", &format!("{}/{name}", s.url), &s.token, &[], b"");
            assert_eq!(r.status, 404, "{name} deleted");
        }
    }
    let u = &s.u;
    for (url, token, name) in [
        (&s.url_b, &s.token_b, format!("{u}rsegs/seg/000")),
        (&s.url_b, &s.token_b, format!("{u}man/big")),
        (&s.url_a, &s.token_a, format!("{u}segs/seg/000")),
        (&s.url_a, &s.token_a, format!("{u}lman/big")),
    ] {
        let r = req("HEAD", &format!("{url}/{name}"), token, &[], b"");
        assert_eq!(r.status, 404, "{name} gone where it lived");
    }
}

/// Storage URL and token of one cluster, read directly.
type Direct<'a> = (&'a str, &'a str);

/// python-swiftclient as a new user runs it through `sidecar`: `swift upload --use-slo -S 1 MiB`
/// into `container`, whose `_segments` container a route sends elsewhere; then where the bytes
/// landed (`manifest_at`, `segments_at`; nothing in a third cluster `neither`), `swift download` (md5 checked
/// by the client, bytes compared), `swift stat`, `swift list` and `swift delete` (segments
/// gone where they lived).
fn swift_upload_round_trip(
    sidecar: &Sidecar,
    container: &str,
    manifest_at: Direct<'_>,
    segments_at: Direct<'_>,
    neither: Option<Direct<'_>>,
) {
    let segments = format!("{container}_segments");
    let dir = scratch_dir().expect("scratch").join(unique_name("sloup"));
    std::fs::create_dir_all(&dir).expect("dir");
    let data = pattern((3 << 20) + 12345, 21);
    let file = dir.join("big.bin");
    std::fs::write(&file, &data).expect("file");
    let cli = |args: &[&str]| {
        let out = swift_cli(&sidecar.auth_url(), TESTER.0, TESTER.1, args).expect("swift cli");
        assert!(
            out.status.success(),
            "swift {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let path = file.to_string_lossy().to_string();
    cli(&[
        "upload",
        "--use-slo",
        "-S",
        "1048576",
        "--object-name",
        "big.bin",
        container,
        &path,
    ]);

    let direct = |(url, token): Direct<'_>, method: &str, path: &str| {
        req(method, &format!("{url}/{path}"), token, &[], b"")
    };
    let listed = direct(segments_at, "GET", &format!("{segments}?format=json"));
    assert_eq!(listed.status, 200, "segments container where routed");
    let names: Vec<serde_json::Value> = serde_json::from_slice(&listed.body).expect("json");
    assert_eq!(names.len(), 4, "four segments: {}", listed.body_text());
    let manifest = format!("{container}/big.bin");
    assert_eq!(
        direct(manifest_at, "HEAD", &manifest).status,
        200,
        "manifest"
    );
    assert_eq!(
        direct(manifest_at, "GET", &segments).status,
        404,
        "no segments there"
    );
    if let Some(neither) = neither {
        assert_eq!(
            direct(neither, "GET", &segments).status,
            404,
            "no segments elsewhere"
        );
        assert_eq!(
            direct(neither, "HEAD", &manifest).status / 100,
            4,
            "nor manifest"
        );
    }

    let out_file = dir.join("down.bin");
    let out_name = out_file.to_string_lossy().to_string();
    let downloaded = cli(&["download", container, "big.bin", "-o", &out_name]);
    assert!(
        std::fs::read(&out_file).expect("downloaded") == data,
        "downloaded bytes: {downloaded}"
    );
    let stat = cli(&["stat", container, "big.bin"]);
    assert!(
        stat.contains(&format!("Content Length: {}", data.len())),
        "{stat}"
    );
    let listed = cli(&["list", container]);
    assert_eq!(listed.trim(), "big.bin");
    cli(&["delete", container, "big.bin"]);
    let left = direct(segments_at, "GET", &format!("{segments}?format=json"));
    assert!(
        left.status == 204 || left.body_text().trim() == "[]",
        "segments deleted where they lived: {} {}",
        left.status,
        left.body_text()
    );
    assert_eq!(
        direct(manifest_at, "HEAD", &manifest).status,
        404,
        "manifest deleted"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn swiftclient_slo_upload_with_segments_in_another_cluster() {
    let s = setup("sloup");
    // `<u>lman` is local; a route sends its `_segments` container to b (overriding the
    // segments-follow-their-container default).
    swift_upload_round_trip(
        &s.sidecar,
        &format!("{}lman", s.u),
        (&s.url_a, &s.token_a),
        (&s.url_b, &s.token_b),
        None,
    );
}

/// Three clusters: the container routed to b, its `_segments` container routed to c, nothing
/// on the local one.
#[test]
fn swiftclient_slo_upload_with_container_and_segments_in_two_other_clusters() {
    let [a, b] = shared_pair();
    let c = swiftfed_tests::SwiftCluster::start("c").expect("cluster c");
    let u = unique_name("slo3").replace('-', "");
    let routes = [
        exact_route(&u),
        format!(
            "- {{match: {{account: AUTH_test, container: {{exact: \"{u}_segments\"}}}}, target: {{cluster: c}}}}"
        ),
    ];
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let table = routing_credentials_in(1, &[("b", b), ("c", &c)], &routes);
    let sidecar = Sidecar::start(a.proxy_port(), Some(&table));
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (url_c, token_c) = c.auth(TESTER.0, TESTER.1).expect("auth c");
    swift_upload_round_trip(
        &sidecar,
        &u,
        (&url_b, &token_b),
        (&url_c, &token_c),
        Some((&url_a, &token_a)),
    );
}

#[test]
fn nested_slo_in_another_cluster_reads_like_swifts_own() {
    let s = setup("slonest");
    let u = &s.u;
    let (local, segs) = (format!("{u}lman"), format!("{u}rsegs"));
    for c in [&local, &segs] {
        ok(
            &req("PUT", &format!("{}/{c}", s.url), &s.token, &[], b""),
            c,
        );
    }
    let (whole, body) = put_segments(&s, &segs);
    // Swift's own SLO on b (its segments are there too), then used as a segment elsewhere.
    ok(&put_manifest(&s, &format!("{segs}/sub"), &body, &[]), "sub");
    let nested = format!(
        "[{{\"path\": \"/{segs}/sub\"}}, {{\"path\": \"/{segs}/seg/002\", \"range\": \"-10\"}}]"
    );
    ok(
        &put_manifest(&s, &format!("{local}/nested"), &nested, &[]),
        "crossed",
    );
    ok(
        &put_manifest(&s, &format!("{segs}/ref-nested"), &nested, &[]),
        "reference",
    );
    let crossed = format!("{}/{local}/nested", s.url);
    let single = format!("{}/{segs}/ref-nested", s.url);
    for (method, headers, query) in [
        ("GET", vec![], ""),
        ("HEAD", vec![], ""),
        ("GET", vec![("Range", "bytes=2000-2305")], ""),
        ("GET", vec![], "?multipart-manifest=get"),
    ] {
        let got = req(
            method,
            &format!("{crossed}{query}"),
            &s.token,
            &headers,
            b"",
        );
        let want = req(method, &format!("{single}{query}"), &s.token, &headers, b"");
        assert_eq!(view(&got), view(&want), "{method} {headers:?} {query}");
        assert!(got.body == want.body, "{method} {headers:?} {query}: bytes");
    }
    let mut expected = whole.clone();
    expected.extend_from_slice(&pattern(SIZES[2], 5)[SIZES[2] - 10..]);
    assert!(
        req("GET", &crossed, &s.token, &[], b"").body == expected,
        "nested bytes"
    );

    // `?multipart-manifest=delete` goes into the nested SLO as Swift's does; the reference is
    // a copy of the whole tree inside b.
    for i in 0..SIZES.len() {
        let from = format!("{segs}/seg/{i:03}");
        let to = format!("{}/{segs}/refseg/{i:03}", s.url);
        ok(
            &req("PUT", &to, &s.token, &[("X-Copy-From", &from)], b""),
            "copy",
        );
    }
    let ref_sub = body.replace("/seg/", "/refseg/");
    ok(
        &put_manifest(&s, &format!("{segs}/ref-sub"), &ref_sub, &[]),
        "ref sub",
    );
    let ref_nested = nested
        .replace("/sub", "/ref-sub")
        .replace("/seg/", "/refseg/");
    ok(
        &put_manifest(&s, &format!("{segs}/ref-nested2"), &ref_nested, &[]),
        "reference tree",
    );
    let delete = |url: &str| {
        let url = format!("{url}?multipart-manifest=delete");
        req(
            "DELETE",
            &url,
            &s.token,
            &[("Accept", "application/json")],
            b"",
        )
    };
    let got = delete(&crossed);
    let want = delete(&format!("{}/{segs}/ref-nested2", s.url));
    assert_eq!(got.status, want.status);
    assert_eq!(got.body_text(), want.body_text(), "nested delete");
    for name in [
        format!("{segs}/sub"),
        format!("{segs}/seg/000"),
        format!("{segs}/seg/001"),
        format!("{segs}/seg/002"),
    ] {
        let r = req("HEAD", &format!("{}/{name}", s.url_b), &s.token_b, &[], b"");
        assert_eq!(r.status, 404, "{name} deleted on b");
    }
    let r = req(
        "HEAD",
        &format!("{}/{local}/nested", s.url_a),
        &s.token_a,
        &[],
        b"",
    );
    assert_eq!(r.status, 404, "the manifest deleted on a");
}

#[test]
fn inline_data_segments_read_like_swifts_own() {
    let s = setup("sloinline");
    for (manifest_c, segs, reference_c) in &cases(&s.u) {
        for c in [manifest_c, segs] {
            ok(
                &req("PUT", &format!("{}/{c}", s.url), &s.token, &[], b""),
                c,
            );
        }
        put_segments(&s, segs);
        // "hello", a segment elsewhere, "!".
        let body = format!(
            "[{{\"data\": \"aGVsbG8=\"}}, {{\"path\": \"/{segs}/seg/000\"}}, {{\"data\": \"IQ==\"}}]"
        );
        let crossed_put = put_manifest(&s, &format!("{manifest_c}/inline"), &body, &[]);
        let single_put = put_manifest(&s, &format!("{reference_c}/ref-inline"), &body, &[]);
        ok(&crossed_put, "crossed");
        ok(&single_put, "reference");
        assert_eq!(crossed_put.header("etag"), single_put.header("etag"));
        let crossed = format!("{}/{manifest_c}/inline", s.url);
        let single = format!("{}/{reference_c}/ref-inline", s.url);
        for (method, headers, query) in [
            ("GET", vec![], ""),
            ("HEAD", vec![], ""),
            ("GET", vec![("Range", "bytes=3-7")], ""),
            ("GET", vec![("Range", "bytes=-3")], ""),
            ("GET", vec![], "?multipart-manifest=get"),
            ("GET", vec![], "?multipart-manifest=get&format=raw"),
        ] {
            let got = req(
                method,
                &format!("{crossed}{query}"),
                &s.token,
                &headers,
                b"",
            );
            let want = req(method, &format!("{single}{query}"), &s.token, &headers, b"");
            assert_eq!(view(&got), view(&want), "{method} {headers:?} {query}");
            assert!(got.body == want.body, "{method} {headers:?} {query}: bytes");
        }
        let mut expected = b"hello".to_vec();
        expected.extend_from_slice(&pattern(SIZES[0], 3));
        expected.push(b'!');
        assert!(req("GET", &crossed, &s.token, &[], b"").body == expected);
        // Inline data only, bad base64, missing padding: refused as Swift refuses them.
        for bad in [
            format!("[{{\"data\": \"aGVsbG8\"}}, {{\"path\": \"/{segs}/seg/000\"}}]"),
            "[{\"data\": \"aGVsbG8=\"}]".to_string(),
            format!("[{{\"data\": \"%%%\"}}, {{\"path\": \"/{segs}/seg/000\"}}]"),
        ] {
            let got = put_manifest(&s, &format!("{manifest_c}/bad"), &bad, &[]);
            let want = put_manifest(&s, &format!("{reference_c}/ref-bad"), &bad, &[]);
            assert_eq!(
                (got.status, got.body_text()),
                (want.status, want.body_text()),
                "{bad}"
            );
        }
    }
}

#[test]
fn cross_cluster_slo_lists_like_swifts_own() {
    let s = setup("slolist");
    for (manifest_c, segs, reference_c) in &cases(&s.u) {
        for c in [manifest_c, segs] {
            ok(
                &req("PUT", &format!("{}/{c}", s.url), &s.token, &[], b""),
                c,
            );
        }
        let (_, body) = put_segments(&s, segs);
        // With the client's Content-Type, and with Swift's guess from the name (without an
        // extension, and with one, as `swift upload --use-slo` sends them).
        for c in [manifest_c, reference_c] {
            ok(&put_manifest(&s, &format!("{c}/x/big"), &body, &[]), c);
            for name in ["bare", "disk.iso"] {
                let bare = format!("{}/{c}/x/{name}?multipart-manifest=put", s.url);
                ok(&req("PUT", &bare, &s.token, &[], body.as_bytes()), c);
            }
        }
        let (got, got_json, got_xml) = listed(&s.url, &s.token, manifest_c);
        let (want, want_json, want_xml) = listed(&s.url, &s.token, reference_c);
        assert_eq!(got.len(), 3, "{got:?}");
        // Swift lists its SLOs with their total size and `slo_etag`.
        for r in &want {
            assert_eq!(r["bytes"], 2300, "{want:?}");
            assert!(r.get("slo_etag").is_some(), "{want:?}");
        }
        assert_eq!(got_json, want_json, "{manifest_c}: JSON listing");
        assert_eq!(got_xml, want_xml, "{manifest_c}: XML listing");
        for name in ["x/big", "x/bare", "x/disk.iso"] {
            let head = |c: &str| req("HEAD", &format!("{}/{c}/{name}", s.url), &s.token, &[], b"");
            let (got, want) = (head(manifest_c), head(reference_c));
            no_marker(&got, "HEAD");
            assert_eq!(view(&got), view(&want), "{manifest_c}/{name}: HEAD");
        }
        // A POST with a new Content-Type keeps the listing's size and ETag.
        for c in [manifest_c, reference_c] {
            let url = format!("{}/{c}/x/big", s.url);
            ok(
                &req("POST", &url, &s.token, &[("Content-Type", "text/y")], b""),
                "POST",
            );
        }
        let (_, got_json, got_xml) = listed(&s.url, &s.token, manifest_c);
        let (_, want_json, want_xml) = listed(&s.url, &s.token, reference_c);
        assert_eq!((got_json, got_xml), (want_json, want_xml), "after POST");
    }
}

/// A `Migrate` container's merged listing shows a cross-cluster SLO as Swift shows its own.
#[test]
fn cross_cluster_slo_lists_like_swifts_own_in_a_migrated_container() {
    let [a, b] = shared_pair();
    let u = unique_name("slomig").replace('-', "");
    let route = format!(
        "- {{match: {{account: AUTH_test, container: {{exact: \"{u}mig\"}}}}, target: {{cluster: b}}, mode: Migrate}}"
    );
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (migrated, segs) = (format!("{u}mig"), format!("{u}segs"));
    for c in [&migrated, &segs] {
        ok(&req("PUT", &format!("{url}/{c}"), &token, &[], b""), c);
    }
    let data = pattern(1500, 7);
    ok(
        &req("PUT", &format!("{url}/{segs}/seg"), &token, &[], &data),
        "segment",
    );
    let body = format!(
        "[{{\"path\": \"/{segs}/seg\", \"etag\": \"{}\", \"size_bytes\": 1500}}]",
        hex_md5(&data)
    );
    // The manifest goes to b, its segment stays in a: a stand-in; the reference is Swift's.
    for c in [&migrated, &segs] {
        let at = format!("{url}/{c}/x/big?multipart-manifest=put");
        let headers = [("Content-Type", "text/x-slo")];
        ok(&req("PUT", &at, &token, &headers, body.as_bytes()), c);
    }
    let (got, got_json, got_xml) = listed(&url, &token, &migrated);
    let (_, want_json, want_xml) = listed(&url, &token, &segs);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["bytes"], 1500, "{got:?}");
    assert_eq!(got_json, want_json, "JSON listing");
    assert_eq!(got_xml, want_xml, "XML listing");
}
