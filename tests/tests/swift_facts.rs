//! What Swift 2.38 + tempauth answers, pinned, because the sidecar's
//! authorization design (Credentials mode: ask the local cluster first) relies
//! on it, and how Swift's large objects answer where the sidecar reproduces
//! them. If a Swift upgrade changes one of these, this test says which.
//!
//! Own cluster: it sets an account ACL on AUTH_test, which would change what
//! test:tester2 may do in concurrent tests on the shared pair.

use std::path::{Path, PathBuf};

use swiftfed_tests::{http_request, shared_pair, unique_name, SwiftCluster};

struct Who {
    label: &'static str,
    token: Option<String>,
}

/// Status per user, in the order of `users()`: tester (.admin of AUTH_test),
/// tester2 (plain user of AUTH_test), no token, test2:tester (.admin elsewhere).
type Row = [u16; 4];

fn users(c: &SwiftCluster) -> Vec<Who> {
    let token = |u, k| Some(c.auth(u, k).unwrap().1);
    vec![
        Who {
            label: "test:tester",
            token: token("test:tester", "testing"),
        },
        Who {
            label: "test:tester2",
            token: token("test:tester2", "testing2"),
        },
        Who {
            label: "no token",
            token: None,
        },
        Who {
            label: "test2:tester",
            token: token("test2:tester", "testing"),
        },
    ]
}

fn status(c: &SwiftCluster, method: &str, path: &str, who: &Who) -> u16 {
    status_with(c, method, path, who, &[])
}

fn status_with(
    c: &SwiftCluster,
    method: &str,
    path: &str,
    who: &Who,
    extra: &[(&str, &str)],
) -> u16 {
    let mut headers = extra.to_vec();
    if let Some(t) = &who.token {
        headers.push(("X-Auth-Token", t.as_str()));
    }
    let url = format!("{}{path}", c.proxy_url());
    http_request(method, &url, &headers, b"")
        .unwrap_or_else(|e| panic!("{e}"))
        .status
}

/// Files under the devices dir (sizes ignored: a HEAD may flush a `.pending`).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.join("node")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Checks one request for every user, tester last (the others must not see
/// what tester's request may create), and that it left no file behind.
fn check(c: &SwiftCluster, who: &[Who], method: &str, path: &str, want: Row) {
    check_with(c, who, method, path, &[], want)
}

/// `check`, with extra request headers.
fn check_with(
    c: &SwiftCluster,
    who: &[Who],
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    want: Row,
) {
    let before = files(c.dir());
    let mut got = [0; 4];
    for i in [3, 2, 1, 0] {
        got[i] = status_with(c, method, path, &who[i], extra);
    }
    let labels: Vec<_> = who.iter().map(|w| w.label).collect();
    assert_eq!(got, want, "{method} {path:.60} for {labels:?}");
    let after = files(c.dir());
    assert_eq!(before, after, "{method} {path:.60} left a trace");
}

fn set_acl(c: &SwiftCluster, admin: &Who, acl: &str) {
    let url = c.storage_url("AUTH_test");
    let token = admin.token.as_deref().unwrap();
    let resp = http_request(
        "POST",
        &url,
        &[("X-Auth-Token", token), ("X-Account-Access-Control", acl)],
        b"",
    )
    .unwrap();
    assert_eq!(resp.status, 204, "set ACL {acl}");
}

#[test]
fn tempauth_status_codes_and_traces() {
    let c = SwiftCluster::start("facts").unwrap();
    let who = users(&c);
    // The sidecar's probe container name (sidecar/src/auth.rs): far over
    // max_container_name_length (256).
    let long = format!("/v1/AUTH_test/swiftfed-authz-probe-{}", "x".repeat(1100));
    // The sidecar's owner probe: an account POST with a metadata name far over 128 bytes.
    let owner_probe = format!("x-account-meta-swiftfed-owner-probe-{}", "x".repeat(1000));
    let owner = |who: &[Who], want: Row| {
        let before = files(c.dir());
        let mut got = [0; 4];
        for i in [3, 2, 1, 0] {
            let mut headers = vec![(owner_probe.as_str(), "1")];
            if let Some(t) = &who[i].token {
                headers.push(("X-Auth-Token", t.as_str()));
            }
            got[i] = http_request("POST", &c.storage_url("AUTH_test"), &headers, b"")
                .unwrap_or_else(|e| panic!("{e}"))
                .status;
        }
        assert_eq!(got, want, "owner probe");
        assert_eq!(before, files(c.dir()), "owner probe left a trace");
    };

    // a never-written account answers 200, a written one 204
    assert_eq!(status(&c, "HEAD", "/v1/AUTH_test", &who[0]), 200);
    assert_eq!(status(&c, "PUT", "/v1/AUTH_test/exists", &who[0]), 201);
    assert_eq!(status(&c, "HEAD", "/v1/AUTH_test", &who[0]), 204);

    // No ACL: authorization comes first; an unauthorized user learns nothing
    // about existence, and over-long names are not rejected (404, not 400).
    check(&c, &who, "HEAD", &long, [404, 403, 401, 403]);
    check(
        &c,
        &who,
        "DELETE",
        &format!("{long}/x"),
        [404, 403, 401, 403],
    );
    check(
        &c,
        &who,
        "HEAD",
        "/v1/AUTH_test/exists",
        [204, 403, 401, 403],
    );
    check(
        &c,
        &who,
        "HEAD",
        "/v1/AUTH_test/nonexistent",
        [404, 403, 401, 403],
    );
    check(&c, &who, "PUT", &long, [400, 403, 401, 403]); // length checked after authz
    owner(&who, [400, 403, 401, 403]); // metadata checked after authz, owners only

    set_acl(&c, &who[0], r#"{"read-only":["test:tester2"]}"#);
    check(&c, &who, "HEAD", &long, [404, 404, 401, 403]);
    check(
        &c,
        &who,
        "DELETE",
        &format!("{long}/x"),
        [404, 403, 401, 403],
    );
    check(
        &c,
        &who,
        "HEAD",
        "/v1/AUTH_test/exists",
        [204, 204, 401, 403],
    );
    check(
        &c,
        &who,
        "HEAD",
        "/v1/AUTH_test/nonexistent",
        [404, 404, 401, 403],
    );

    owner(&who, [400, 403, 401, 403]);

    set_acl(&c, &who[0], r#"{"read-write":["test:tester2"]}"#);
    owner(&who, [400, 403, 401, 403]); // read-write is not ownership
    check(&c, &who, "HEAD", &long, [404, 404, 401, 403]);
    check(
        &c,
        &who,
        "DELETE",
        &format!("{long}/x"),
        [404, 404, 401, 403],
    );
    check(&c, &who, "PUT", &long, [400, 400, 401, 403]);
    check(
        &c,
        &who,
        "DELETE",
        "/v1/AUTH_test/nonexistent/x",
        [404, 404, 401, 403],
    );

    set_acl(&c, &who[0], r#"{"admin":["test:tester2"]}"#);
    owner(&who, [400, 400, 401, 403]); // an admin ACL makes an owner

    // Trace: DELETE of a missing object in an existing container answers 404
    // yet writes a tombstone (.ts) and a deleted row for the container DB.
    let before = files(c.dir());
    assert_eq!(
        status(&c, "DELETE", "/v1/AUTH_test/exists/ghost", &who[0]),
        404
    );
    let new: Vec<_> = files(c.dir())
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    assert!(
        new.iter().any(|f| f.extension().is_some_and(|e| e == "ts")),
        "expected a tombstone, new files: {new:?}"
    );
    let listing = http_request(
        "GET",
        &c.storage_url("AUTH_test/exists"),
        &[("X-Auth-Token", who[0].token.as_deref().unwrap())],
        b"",
    )
    .unwrap();
    assert_eq!(
        (listing.status, listing.body_text()),
        (204, String::new()),
        "tombstone is not listed"
    );
}

/// The container-level probes of the sidecar (`check_container` in sidecar/src/auth.rs), run on
/// the ACL shadow container: Swift authorizes each with the container's ACL before anything
/// else, and none leaves a trace.
#[test]
fn tempauth_container_acl_probes() {
    let c = SwiftCluster::start("facts-acl").unwrap();
    let who = users(&c);
    let owner = who[0].token.clone().unwrap();
    // Over max_object_name_length (1024): cannot exist, and a PUT of it is refused.
    let long = format!("swiftfed-authz-probe-{}", "x".repeat(1100));
    let set = |headers: &[(&str, &str)]| {
        let mut all = vec![("X-Auth-Token", owner.as_str())];
        all.extend_from_slice(headers);
        let r = http_request("POST", &c.storage_url("AUTH_test/shadow"), &all, b"").unwrap();
        assert_eq!(r.status, 204, "set {headers:?}");
    };
    let list = "/v1/AUTH_test/shadow";
    let read = format!("/v1/AUTH_test/shadow/{long}");
    let write = format!("/v1/AUTH_test/shadow/{long}");
    let zero = [("Content-Length", "0")];
    let referer = [("Referer", "http://example.com/page")];

    // No shadow: the ACL is empty; owners pass authorization and get 404.
    let missing = format!("/v1/AUTH_test/noshadow/{long}");
    check(
        &c,
        &who,
        "HEAD",
        "/v1/AUTH_test/noshadow",
        [404, 403, 401, 403],
    );
    check(&c, &who, "HEAD", &missing, [404, 403, 401, 403]);
    check_with(&c, &who, "PUT", &missing, &zero, [404, 403, 401, 403]);

    let r = http_request(
        "PUT",
        &c.storage_url("AUTH_test/shadow"),
        &[
            ("X-Auth-Token", &owner),
            ("X-Container-Read", "test:tester2"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 201);
    // Read ACL: listing (2xx) and object reads (404); writes still refused.
    check(&c, &who, "HEAD", list, [204, 204, 401, 403]);
    check(&c, &who, "HEAD", &read, [404, 404, 401, 403]);
    check_with(&c, &who, "PUT", &write, &zero, [400, 403, 401, 403]);

    // Write ACL: the PUT is authorized, then refused for its name before any write.
    set(&[("X-Container-Write", "test:tester2")]);
    check_with(&c, &who, "PUT", &write, &zero, [400, 400, 401, 403]);
    set(&[("X-Remove-Container-Write", "x")]);
    check_with(&c, &who, "PUT", &write, &zero, [400, 403, 401, 403]);

    // Referrer: objects with `.r:*`, listings only with `.rlistings` too.
    set(&[("X-Container-Read", ".r:*")]);
    check_with(&c, &who, "HEAD", &read, &referer, [404, 404, 404, 404]);
    check_with(&c, &who, "HEAD", list, &referer, [204, 403, 401, 403]);
    // `.r:*` matches a request without any Referer too: public objects.
    check(&c, &who, "HEAD", &read, [404, 404, 404, 404]);
    set(&[("X-Container-Read", ".r:*,.rlistings")]);
    check_with(&c, &who, "HEAD", list, &referer, [204, 204, 204, 204]);
    // `.r:.example.com`: hosts under example.com, not example.com itself.
    set(&[("X-Container-Read", ".r:.example.com")]);
    check_with(&c, &who, "HEAD", &read, &referer, [404, 403, 401, 403]);
    let sub = [("Referer", "http://www.example.com/page")];
    check_with(&c, &who, "HEAD", &read, &sub, [404, 404, 404, 404]);
    check_with(
        &c,
        &who,
        "HEAD",
        &read,
        &[("Referer", "http://other.org/")],
        [404, 403, 401, 403],
    );

    // A removed ACL grants nothing.
    set(&[("X-Remove-Container-Read", "x")]);
    check(&c, &who, "HEAD", &read, [404, 403, 401, 403]);
    check(&c, &who, "HEAD", list, [204, 403, 401, 403]);
}

/// Several ranges on a DLO: Swift's DLO middleware drops the Range header and answers 200 with
/// the whole object (`dlo.py`: only a single range is honoured), while a plain object answers
/// 206 `multipart/byteranges`. The sidecar's cross-cluster DLO does the same.
#[test]
fn dlo_multi_range_get_is_the_whole_object() {
    let [a, _] = shared_pair();
    let (url, token) = a.auth("test:tester", "testing").unwrap();
    let c = unique_name("facts-dlo").replace('-', "");
    let send = |method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
        let mut all = vec![("X-Auth-Token", token.as_str())];
        all.extend_from_slice(headers);
        http_request(method, &format!("{url}/{c}{path}"), &all, body).unwrap()
    };
    assert_eq!(send("PUT", "", &[], b"").status / 100, 2);
    assert_eq!(send("PUT", "/seg/0", &[], &[b'a'; 100]).status, 201);
    assert_eq!(send("PUT", "/seg/1", &[], &[b'b'; 100]).status, 201);
    let manifest = format!("{c}/seg/");
    let put = send("PUT", "/dlo", &[("X-Object-Manifest", &manifest)], b"");
    assert_eq!(put.status, 201);
    let whole: Vec<u8> = [[b'a'; 100], [b'b'; 100]].concat();

    let ranges = [("Range", "bytes=0-9,150-159")];
    let dlo = send("GET", "/dlo", &ranges, b"");
    assert_eq!(dlo.status, 200);
    assert_eq!(dlo.body, whole);
    assert_eq!(dlo.header("content-range"), None);
    assert_eq!(dlo.header("content-length"), Some("200"));
    // A single range is honoured.
    let one = send("GET", "/dlo", &[("Range", "bytes=95-104")], b"");
    assert_eq!((one.status, one.body.as_slice()), (206, &whole[95..105]));
    // A plain object answers the same ranges in several parts.
    let plain = send("GET", "/seg/0", &[("Range", "bytes=0-9,50-59")], b"");
    assert_eq!(plain.status, 206);
    assert!(plain
        .header("content-type")
        .is_some_and(|t| t.starts_with("multipart/byteranges")));
}

/// A container listing shows an SLO's total size because Swift's SLO middleware appends
/// `swift_bytes=<total>` to the manifest's content type on the backend; a client may not: the
/// proxy refuses the parameter, and sysmeta overrides of the listing are dropped. So the
/// sidecar's cross-cluster SLO manifests (plain objects) list with the manifest's own size
/// (README, "Large objects and versioning across clusters").
#[test]
fn clients_cannot_set_the_size_a_listing_shows() {
    let [a, _] = swiftfed_tests::shared_pair();
    let (url, token) = a.auth("test:tester", "testing").expect("auth");
    let container = swiftfed_tests::unique_name("facts-bytes");
    let put = |path: &str, headers: &[(&str, &str)], body: &[u8]| {
        let mut all = vec![("X-Auth-Token", token.as_str())];
        all.extend_from_slice(headers);
        http_request("PUT", &format!("{url}/{path}"), &all, body).expect("PUT")
    };
    assert_eq!(put(&container, &[], b"").status / 100, 2);
    let refused = put(
        &format!("{container}/o"),
        &[("Content-Type", "text/plain;swift_bytes=1000")],
        b"abc",
    );
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.body_text(),
        "Invalid Content-Type, swift_* is not a valid parameter name."
    );
    let overridden = put(
        &format!("{container}/o"),
        &[("X-Object-Sysmeta-Container-Update-Override-Size", "1000")],
        b"abc",
    );
    assert_eq!(overridden.status, 201);
    let listing = http_request(
        "GET",
        &format!("{url}/{container}?format=json"),
        &[("X-Auth-Token", token.as_str())],
        b"",
    )
    .expect("listing");
    let text = listing.body_text();
    assert!(text.contains("\"bytes\": 3"), "{text}");
}

/// Content-Type parameters of other names are kept as given, on the object and in listings,
/// except a parameter value's `/` and what follows: what the sidecar's stand-ins rely on to
/// carry what listings show (sidecar/src/standin.rs).
#[test]
fn content_type_parameters_of_other_names_are_kept() {
    let [a, _] = swiftfed_tests::shared_pair();
    let (url, token) = a.auth("test:tester", "testing").expect("auth");
    let container = swiftfed_tests::unique_name("facts-ct");
    let auth = [("X-Auth-Token", token.as_str())];
    let send = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut all = auth.to_vec();
        all.extend_from_slice(headers);
        http_request(method, &format!("{url}/{path}"), &all, b"").expect("request")
    };
    assert_eq!(send("PUT", &container, &[]).status / 100, 2);
    let given = "text/x;swiftfed_slo_bytes=1000;swiftfed_symlink_target=c%2Fo%20x";
    let put = send("PUT", &format!("{container}/o"), &[("Content-Type", given)]);
    assert_eq!(put.status, 201);
    let head = send("HEAD", &format!("{container}/o"), &[]);
    assert_eq!(head.header("content-type"), Some(given));
    let listing = send("GET", &format!("{container}?format=json"), &[]);
    let text = listing.body_text();
    assert!(
        text.contains(&format!("\"content_type\": \"{given}\"")),
        "{text}"
    );
    assert!(text.contains("\"bytes\": 0"), "{text}");
    let slashed = "text/x;swiftfed_symlink_target=c/o";
    let put = send(
        "PUT",
        &format!("{container}/p"),
        &[("Content-Type", slashed)],
    );
    assert_eq!(put.status, 201);
    let listing = send("GET", &format!("{container}?format=json&prefix=p"), &[]);
    let text = listing.body_text();
    assert!(
        text.contains("\"content_type\": \"text/x;swiftfed_symlink_target=c\""),
        "{text}"
    );
}
