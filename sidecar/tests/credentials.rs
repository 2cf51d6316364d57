//! `Credentials` auth against real Swift, through the real sidecar binary: the sidecar sits in
//! front of a local cluster and forwards routed containers to a target cluster with its own
//! tempauth token (`test:sidecar`, an admin of AUTH_test on the target), but only after the local
//! cluster has authorized the client for the operation. These tests check both halves: a client
//! known only to the local cluster can use routed containers, and a client the local cluster
//! refuses gets exactly the local refusal while nothing on the target is read or written.
//!
//! Tests that set account ACLs do it on a local cluster of their own, so that test:tester2 stays
//! a user without any access on the shared pair.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::*;
use swiftfed_tests::{shared_pair, unique_name, HttpResponse, SwiftCluster};

const TEST2: (&str, &str) = ("test2:tester", "testing");
const RESELLER: (&str, &str) = ("admin:admin", "admin");

const TOKEN_FETCHES: &str = "swiftfed_sidecar_auth_token_fetches_total";
const AUTHZ_CHECKS: &str = "swiftfed_sidecar_authz_checks_total";
/// One sample per request the sidecar sent to a cluster: proves whether anything reached `b`.
const UPSTREAM_SENDS: &str = "swiftfed_sidecar_upstream_latency_seconds_count";

/// A route sending the containers of `account` whose name starts with `prefix` to cluster `b`.
fn prefix_route(account: &str, prefix: &str) -> String {
    format!("- {{match: {{account: {account}, container: {{prefix: \"{prefix}\"}}}}, target: {{cluster: b}}}}")
}

/// A request with an optional token (`None`: no auth header at all).
fn send(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    match token {
        Some(t) => req(method, url, t, headers, body),
        None => swiftfed_tests::http_request(method, url, headers, body)
            .unwrap_or_else(|e| panic!("{method} {url}: {e}")),
    }
}

/// What a GET shows of a resource, minus what changes without anyone writing (dates, trans ids):
/// status, body and every header that a write would change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    status: u16,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

fn snapshot(url: &str, token: &str) -> Snapshot {
    let r = req("GET", url, token, &[], b"");
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| {
            k.starts_with("x-object-meta-")
                || k.starts_with("x-container-meta-")
                || k.starts_with("x-account-meta-")
                || matches!(
                    k.as_str(),
                    "etag"
                        | "content-type"
                        | "content-length"
                        | "last-modified"
                        | "x-timestamp"
                        | "x-put-timestamp"
                        | "x-container-object-count"
                        | "x-container-bytes-used"
                        | "x-container-read"
                        | "x-container-write"
                )
        })
        .collect();
    headers.sort();
    Snapshot {
        status: r.status,
        body: r.body,
        headers,
    }
}

/// Polls `url` with `token` directly until it answers `want` (a state change on a real cluster,
/// not a fixed sleep), within `budget`.
fn wait_for_status(url: &str, token: &str, want: u16, budget: Duration) {
    let deadline = Instant::now() + budget;
    loop {
        let got = req("HEAD", url, token, &[], b"").status;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "HEAD {url} still answers {got}, not {want}, after {budget:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn set_account_acl(url: &str, owner_token: &str, acl: &str) {
    let r = req(
        "POST",
        url,
        owner_token,
        &[("X-Account-Access-Control", acl)],
        b"",
    );
    assert_eq!(r.status, 204, "set account ACL {acl}: {}", r.body_text());
}

/// Item 1: the client holds a token of the local cluster only; the routed container is created,
/// written and read on the target with the sidecar's own token.
#[test]
fn a_client_known_only_locally_writes_and_reads_on_the_target() {
    let [a, b] = shared_pair();
    let prefix = unique_name("cred");
    let route = prefix_route("AUTH_test", &prefix);
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    assert!(
        url.starts_with(&sidecar.url()),
        "storage URL {url} must point at the sidecar"
    );
    // The client's token is a's: b does not know it.
    assert_eq!(
        req("HEAD", &b.storage_url("AUTH_test"), &token, &[], b"").status,
        401,
        "a's token must mean nothing to b"
    );
    assert_eq!(
        req("HEAD", &a.storage_url("AUTH_test"), &token, &[], b"").status / 100,
        2
    );
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");

    let c = format!("{prefix}-c");
    ok(
        &req(
            "PUT",
            &format!("{url}/{c}"),
            &token,
            &[("X-Container-Meta-Kind", "fed")],
            b"",
        ),
        "container PUT",
    );
    ok(
        &req(
            "PUT",
            &format!("{url}/{c}/dir/obj"),
            &token,
            &[
                ("Content-Type", "text/x-test"),
                ("X-Object-Meta-Color", "blue"),
            ],
            b"federated payload",
        ),
        "object PUT",
    );
    ok(
        &req(
            "POST",
            &format!("{url}/{c}/dir/obj"),
            &token,
            &[("X-Object-Meta-Color", "green")],
            b"",
        ),
        "object POST",
    );

    // On b, read directly with b's own credentials; absent from a.
    let on_b = req("GET", &format!("{url_b}/{c}/dir/obj"), &token_b, &[], b"");
    assert_eq!(
        (on_b.status, on_b.body.as_slice()),
        (200, &b"federated payload"[..])
    );
    assert_eq!(on_b.header("x-object-meta-color"), Some("green"));
    assert_eq!(on_b.header("content-type"), Some("text/x-test"));
    assert_eq!(
        req("HEAD", &format!("{url_b}/{c}"), &token_b, &[], b"").header("x-container-meta-kind"),
        Some("fed")
    );
    assert_eq!(
        req("HEAD", &format!("{url_a}/{c}"), &token_a, &[], b"").status,
        404,
        "routed container must not exist on a"
    );

    // Reads through the sidecar, with either token header Swift accepts.
    let got = req("GET", &format!("{url}/{c}/dir/obj"), &token, &[], b"");
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, &b"federated payload"[..])
    );
    assert_eq!(got.header("x-object-meta-color"), Some("green"));
    let got = swiftfed_tests::http_request(
        "GET",
        &format!("{url}/{c}/dir/obj"),
        &[("X-Storage-Token", &token)],
        b"",
    )
    .expect("GET");
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, &b"federated payload"[..]),
        "X-Storage-Token works like X-Auth-Token"
    );
    let listing = req("GET", &format!("{url}/{c}"), &token, &[], b"");
    assert_eq!(
        (listing.status, listing.body_text().trim()),
        (200, "dir/obj")
    );

    // One token for b served all of it; every check was allowed.
    assert_eq!(
        sidecar.metric(TOKEN_FETCHES, &[("cluster", "b")]),
        1.0,
        "{}",
        sidecar.metrics()
    );
    assert_eq!(sidecar.metric(AUTHZ_CHECKS, &[("result", "denied")]), 0.0);
    assert!(sidecar.metric(AUTHZ_CHECKS, &[("result", "allowed")]) >= 1.0);

    // Deletes through the sidecar remove the data from b.
    assert_eq!(
        req("DELETE", &format!("{url}/{c}/dir/obj"), &token, &[], b"").status,
        204
    );
    assert_eq!(
        req("DELETE", &format!("{url}/{c}"), &token, &[], b"").status,
        204
    );
    assert_eq!(
        req("HEAD", &format!("{url_b}/{c}"), &token_b, &[], b"").status,
        404
    );
}

/// The requests a client without access tries on a routed container that exists on b (`c`, with
/// object `o`), and on names that do not exist yet (`c/new-object`, `c/copied`, container
/// `fresh`): (method, path below the account, headers, body).
type Attempt = (
    &'static str,
    String,
    Vec<(&'static str, String)>,
    &'static [u8],
);

fn hostile_requests(c: &str, fresh: &str) -> Vec<Attempt> {
    vec![
        ("GET", format!("{c}/o"), vec![], b""),
        ("HEAD", format!("{c}/o"), vec![], b""),
        ("GET", c.to_string(), vec![], b""),
        ("HEAD", c.to_string(), vec![], b""),
        ("PUT", format!("{c}/o"), vec![], b"overwritten"),
        ("PUT", format!("{c}/new-object"), vec![], b"planted"),
        ("PUT", fresh.to_string(), vec![], b""),
        (
            "POST",
            format!("{c}/o"),
            vec![("X-Object-Meta-Color", "red".into())],
            b"",
        ),
        (
            "POST",
            c.to_string(),
            vec![
                ("X-Container-Meta-Kind", "defaced".into()),
                ("X-Container-Read", ".r:*".into()),
            ],
            b"",
        ),
        (
            "COPY",
            format!("{c}/o"),
            vec![("Destination", format!("/{c}/copied"))],
            b"",
        ),
        ("DELETE", format!("{c}/o"), vec![], b""),
        ("DELETE", c.to_string(), vec![], b""),
    ]
}

/// b's URLs that `hostile_requests` could change.
fn watched_on_b(url_b: &str, c: &str, fresh: &str) -> Vec<String> {
    vec![
        format!("{url_b}/{c}/o"),
        format!("{url_b}/{c}"),
        format!("{url_b}/{c}/new-object"),
        format!("{url_b}/{c}/copied"),
        format!("{url_b}/{fresh}"),
    ]
}

/// Request headers as `req` takes them.
type Headers<'h> = Vec<(&'h str, &'h str)>;

fn pairs<'h>(headers: &'h [(&'static str, String)]) -> Vec<(&'static str, &'h str)> {
    headers.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Item 2: the confused deputy. Clients the local cluster refuses (a plain user without ACL, no
/// token, a bogus token, a token for another account) get the local cluster's own answer for
/// each request, the sidecar sends nothing to b, and b's data is unchanged.
#[test]
fn clients_refused_locally_get_the_local_answer_and_nothing_reaches_the_target() {
    let [a, b] = shared_pair();
    let prefix = unique_name("deputy");
    let route = prefix_route("AUTH_test", &prefix);
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, owner) = auth_via(&sidecar, TESTER);
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    // Precondition: AUTH_test on a has no account ACL (the owner would see it).
    let account = req("HEAD", &url_a, &token_a, &[], b"");
    assert_eq!(
        account.header("x-account-access-control"),
        None,
        "the shared cluster a must be ACL-free"
    );

    let c = format!("{prefix}-c");
    let fresh = format!("{prefix}-fresh");
    ok(
        &req(
            "PUT",
            &format!("{url}/{c}"),
            &owner,
            &[("X-Container-Meta-Kind", "fed")],
            b"",
        ),
        "container PUT",
    );
    ok(
        &req(
            "PUT",
            &format!("{url}/{c}/o"),
            &owner,
            &[("X-Object-Meta-Color", "blue")],
            b"original",
        ),
        "object PUT",
    );
    let watched = watched_on_b(&url_b, &c, &fresh);
    let before: Vec<Snapshot> = watched.iter().map(|u| snapshot(u, &token_b)).collect();
    assert_eq!(
        (before[0].status, before[0].body.as_slice()),
        (200, &b"original"[..])
    );
    assert_eq!(
        (before[2].status, before[3].status, before[4].status),
        (404, 404, 404)
    );

    let tester2 = auth_via(&sidecar, TESTER2).1;
    let other_account = auth_via(&sidecar, TEST2).1;
    let bogus = format!("AUTH_tk{}", "0123456789abcdef".repeat(2));
    let clients: [(&str, Option<&str>, u16); 4] = [
        ("test:tester2 (no access, no ACL)", Some(&tester2), 403),
        ("no token", None, 401),
        ("bogus token", Some(&bogus), 401),
        (
            "test2:tester (token for AUTH_test2)",
            Some(&other_account),
            403,
        ),
    ];
    let sent_to_b = sidecar.metric(UPSTREAM_SENDS, &[("cluster", "b")]);
    let denied_before = sidecar.metric(AUTHZ_CHECKS, &[("result", "denied")]);
    let mut tried = 0.0;
    for (who, token, expected) in clients {
        for (method, path, headers, body) in hostile_requests(&c, &fresh) {
            let headers = pairs(&headers);
            let direct = send(method, &format!("{url_a}/{path}"), token, &headers, body);
            let through = send(method, &format!("{url}/{path}"), token, &headers, body);
            assert_eq!(
                direct.status,
                expected,
                "{who}: {method} {path} directly on a: {}",
                direct.body_text()
            );
            assert_eq!(
                through.status,
                direct.status,
                "{who}: {method} {path} through the sidecar must get a's answer: {}",
                through.body_text()
            );
            assert!(
                !through.body_text().contains("original"),
                "{who}: {method} {path} leaked the object"
            );
            tried += 1.0;
        }
    }
    // Every one of them was judged by a, none was sent to b.
    assert_eq!(
        sidecar.metric(AUTHZ_CHECKS, &[("result", "denied")]) - denied_before,
        tried
    );
    assert_eq!(
        sidecar.metric(UPSTREAM_SENDS, &[("cluster", "b")]),
        sent_to_b,
        "a refused request reached b"
    );
    let after: Vec<Snapshot> = watched.iter().map(|u| snapshot(u, &token_b)).collect();
    for ((u, b0), b1) in watched.iter().zip(&before).zip(&after) {
        assert_eq!(b0, b1, "{u} changed on b");
    }
    // And nothing was created on a either.
    assert_eq!(
        req("HEAD", &format!("{url_a}/{fresh}"), &token_a, &[], b"").status,
        404
    );

    // The owner, for contrast, still reads through the same sidecar.
    assert_eq!(
        req("GET", &format!("{url}/{c}/o"), &owner, &[], b"").body,
        b"original"
    );
}

/// Item 2, expired tokens: a token the local cluster no longer accepts is refused with the local
/// 401, and nothing is sent to b. The token here was never used through the sidecar.
#[test]
fn an_expired_client_token_gets_the_local_401() {
    let [_, b] = shared_pair();
    let local = SwiftCluster::builder("cred-expiry")
        .token_life(2)
        .start()
        .expect("start local cluster");
    let prefix = unique_name("expired");
    let route = prefix_route("AUTH_test", &prefix);
    let sidecar = Sidecar::start(
        local.proxy_port(),
        Some(&routing_credentials(1, b, &[&route])),
    );
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let c = format!("{prefix}-c");
    assert_eq!(
        req("PUT", &format!("{url_b}/{c}"), &token_b, &[], b"").status,
        201
    );
    assert_eq!(
        req("PUT", &format!("{url_b}/{c}/o"), &token_b, &[], b"original").status,
        201
    );

    // The reseller admin may do anything in AUTH_test on `local` while its token lives.
    let (_, stale) = auth_via(&sidecar, RESELLER);
    let url = format!("{}/v1/AUTH_test", sidecar.url());
    let url_local = local.storage_url("AUTH_test");
    wait_for_status(&url_local, &stale, 401, Duration::from_secs(10));

    let before = [
        snapshot(&format!("{url_b}/{c}/o"), &token_b),
        snapshot(&format!("{url_b}/{c}/p"), &token_b),
    ];
    let sent_to_b = sidecar.metric(UPSTREAM_SENDS, &[("cluster", "b")]);
    for (method, path, body) in [
        ("GET", format!("{c}/o"), &b""[..]),
        ("HEAD", c.clone(), b""),
        ("PUT", format!("{c}/p"), b"planted"),
        ("DELETE", format!("{c}/o"), b""),
    ] {
        let direct = req(method, &format!("{url_local}/{path}"), &stale, &[], body);
        let through = req(method, &format!("{url}/{path}"), &stale, &[], body);
        assert_eq!(direct.status, 401, "{method} {path} directly");
        assert_eq!(
            through.status,
            401,
            "{method} {path} through the sidecar: {}",
            through.body_text()
        );
    }
    assert_eq!(
        sidecar.metric(UPSTREAM_SENDS, &[("cluster", "b")]),
        sent_to_b,
        "an expired token's request reached b"
    );
    let after = [
        snapshot(&format!("{url_b}/{c}/o"), &token_b),
        snapshot(&format!("{url_b}/{c}/p"), &token_b),
    ];
    assert_eq!(before, after);
}

/// Item 2, expired tokens continued: a token that was used through the sidecar and then expires
/// on the local cluster. The sidecar remembers successful checks for `--authz-cache-ttl` (10 s by
/// default, documented in the README), so the bound proven here is: once the last check that
/// allowed the token is older than that TTL, the token is refused with the local 401 and nothing
/// it sends reaches b. What the sidecar answered inside the window is reported, not asserted.
#[test]
fn an_expired_client_token_is_refused_once_the_authz_cache_lapses() {
    const AUTHZ_CACHE_TTL: Duration = Duration::from_secs(10); // the sidecar's default
                                                               // Long enough for the token to outlive the uses below on a loaded machine (2 s did not).
    const TOKEN_LIFE: u64 = 6;
    let [_, b] = shared_pair();
    let local = SwiftCluster::builder("cred-expiry-used")
        .token_life(TOKEN_LIFE)
        .start()
        .expect("start local cluster");
    let prefix = unique_name("expused");
    let route = prefix_route("AUTH_test", &prefix);
    let sidecar = Sidecar::start(
        local.proxy_port(),
        Some(&routing_credentials(1, b, &[&route])),
    );
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let url_local = local.storage_url("AUTH_test");
    let c = format!("{prefix}-c");
    // Used while valid, for a write and a read: the last local checks happen here.
    assert_eq!(
        req("PUT", &format!("{url}/{c}"), &token, &[], b"").status,
        201
    );
    assert_eq!(
        req("HEAD", &format!("{url}/{c}"), &token, &[], b"").status,
        204
    );
    let last_allowed_check = Instant::now();
    assert_eq!(
        sidecar.metric(AUTHZ_CHECKS, &[("result", "allowed")]),
        2.0,
        "one local check each for write and read"
    );
    // Then it expires on the local cluster.
    let budget = Duration::from_secs(TOKEN_LIFE + 10);
    wait_for_status(&url_local, &token, 401, budget);
    let expired_after = last_allowed_check.elapsed();

    // Inside the cache window: observed only.
    let early = req(
        "PUT",
        &format!("{url}/{c}/inside-window"),
        &token,
        &[],
        b"too late",
    );
    eprintln!(
        "token expired locally {expired_after:.1?} after its last check; a PUT through the sidecar right after got {} (a answers 401)",
        early.status
    );

    // Past the window: refused like a refuses it, for reads and writes, nothing reaches b.
    let deadline = last_allowed_check + AUTHZ_CACHE_TTL + Duration::from_secs(2);
    loop {
        let status = req("HEAD", &format!("{url}/{c}"), &token, &[], b"").status;
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "an expired token still gets {status} through the sidecar {:?} after its last check",
            last_allowed_check.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent_to_b = sidecar.metric(UPSTREAM_SENDS, &[("cluster", "b")]);
    for (method, path, body) in [
        ("GET", c.clone(), &b""[..]),
        ("PUT", format!("{c}/after-window"), b"too late"),
        ("DELETE", c.clone(), b""),
    ] {
        assert_eq!(
            req(method, &format!("{url_local}/{path}"), &token, &[], body).status,
            401,
            "{method} directly"
        );
        assert_eq!(
            req(method, &format!("{url}/{path}"), &token, &[], body).status,
            401,
            "{method} through the sidecar"
        );
    }
    assert_eq!(
        sidecar.metric(UPSTREAM_SENDS, &[("cluster", "b")]),
        sent_to_b,
        "an expired token's request reached b"
    );
    assert_eq!(
        req(
            "HEAD",
            &format!("{url_b}/{c}/after-window"),
            &token_b,
            &[],
            b""
        )
        .status,
        404
    );
    assert_eq!(
        req("HEAD", &format!("{url_b}/{c}"), &token_b, &[], b"").status,
        204,
        "the container survived the DELETE"
    );
}

/// Item 2 with account ACLs (on a local cluster of this test's own): a read-only ACL lets
/// test:tester2 read the routed container on b but not write it; read-write lets it write.
#[test]
fn account_acls_on_the_local_cluster_decide_reads_and_writes_on_the_target() {
    let [_, b] = shared_pair();
    let local = SwiftCluster::builder("cred-acl")
        .start()
        .expect("start local cluster");
    let prefix = unique_name("acl");
    let route = prefix_route("AUTH_test", &prefix);
    let sidecar = Sidecar::start(
        local.proxy_port(),
        Some(&routing_credentials(1, b, &[&route])),
    );
    let (url, owner) = auth_via(&sidecar, TESTER);
    let (_, tester2) = auth_via(&sidecar, TESTER2);
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let url_local = local.storage_url("AUTH_test");
    let c = format!("{prefix}-c");
    let fresh = format!("{prefix}-fresh");
    ok(
        &req("PUT", &format!("{url}/{c}"), &owner, &[], b""),
        "container PUT",
    );
    ok(
        &req(
            "PUT",
            &format!("{url}/{c}/o"),
            &owner,
            &[("X-Object-Meta-Color", "blue")],
            b"original",
        ),
        "object PUT",
    );

    // No ACL yet: tester2 is refused, as on the local cluster.
    for method in ["GET", "HEAD"] {
        assert_eq!(
            req(method, &format!("{url_local}/{c}/o"), &tester2, &[], b"").status,
            403
        );
        assert_eq!(
            req(method, &format!("{url}/{c}/o"), &tester2, &[], b"").status,
            403,
            "{method} without ACL"
        );
    }

    set_account_acl(&url_local, &owner, r#"{"read-only":["test:tester2"]}"#);
    let got = req("GET", &format!("{url}/{c}/o"), &tester2, &[], b"");
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, &b"original"[..]),
        "read-only ACL: GET"
    );
    assert_eq!(got.header("x-object-meta-color"), Some("blue"));
    assert_eq!(
        req("HEAD", &format!("{url}/{c}/o"), &tester2, &[], b"").status,
        200,
        "read-only ACL: HEAD object"
    );
    let listing = req("GET", &format!("{url}/{c}"), &tester2, &[], b"");
    assert_eq!(
        (listing.status, listing.body_text().trim()),
        (200, "o"),
        "read-only ACL: listing"
    );

    let watched = watched_on_b(&url_b, &c, &fresh);
    let before: Vec<Snapshot> = watched.iter().map(|u| snapshot(u, &token_b)).collect();
    let sent_to_b = sidecar.metric(UPSTREAM_SENDS, &[("cluster", "b")]);
    for (method, path, headers, body) in hostile_requests(&c, &fresh) {
        if matches!(method, "GET" | "HEAD") {
            continue;
        }
        let headers = pairs(&headers);
        let direct = req(
            method,
            &format!("{url_local}/{path}"),
            &tester2,
            &headers,
            body,
        );
        let through = req(method, &format!("{url}/{path}"), &tester2, &headers, body);
        // Directly, a COPY first reads its source, which does not exist on the local cluster
        // (404) and so never reaches the write it would be refused; through the sidecar the
        // source exists (on b) and the destination write is refused as a refuses writes.
        if method != "COPY" {
            assert_eq!(
                direct.status, 403,
                "read-only ACL: {method} {path} directly on the local cluster"
            );
        }
        assert_eq!(
            through.status,
            403,
            "read-only ACL: {method} {path} through the sidecar: {}",
            through.body_text()
        );
    }
    assert_eq!(
        sidecar.metric(UPSTREAM_SENDS, &[("cluster", "b")]),
        sent_to_b,
        "a refused write reached b"
    );
    let after: Vec<Snapshot> = watched.iter().map(|u| snapshot(u, &token_b)).collect();
    for ((u, b0), b1) in watched.iter().zip(&before).zip(&after) {
        assert_eq!(b0, b1, "{u} changed on b");
    }

    set_account_acl(&url_local, &owner, r#"{"read-write":["test:tester2"]}"#);
    assert_eq!(
        req(
            "PUT",
            &format!("{url}/{c}/by-tester2"),
            &tester2,
            &[],
            b"tester2 was here"
        )
        .status,
        201
    );
    assert_eq!(
        req(
            "POST",
            &format!("{url}/{c}/o"),
            &tester2,
            &[("X-Object-Meta-Color", "red")],
            b""
        )
        .status,
        202
    );
    assert_eq!(
        req("PUT", &format!("{url}/{fresh}"), &tester2, &[], b"").status,
        201
    );
    assert_eq!(
        req(
            "GET",
            &format!("{url_b}/{c}/by-tester2"),
            &token_b,
            &[],
            b""
        )
        .body,
        b"tester2 was here"
    );
    assert_eq!(
        req("HEAD", &format!("{url_b}/{c}/o"), &token_b, &[], b"").header("x-object-meta-color"),
        Some("red")
    );
    assert_eq!(
        req("HEAD", &format!("{url_b}/{fresh}"), &token_b, &[], b"").status,
        204
    );
    assert_eq!(
        req(
            "DELETE",
            &format!("{url}/{c}/by-tester2"),
            &tester2,
            &[],
            b""
        )
        .status,
        204
    );
    assert_eq!(
        req(
            "HEAD",
            &format!("{url_b}/{c}/by-tester2"),
            &token_b,
            &[],
            b""
        )
        .status,
        404
    );
    // Account-level writes stay the owner's even with read-write (and the sidecar refuses them
    // on federated accounts anyway); here the account is not federated, so a answers.
    assert_eq!(
        req("POST", &url, &tester2, &[("X-Account-Meta-X", "y")], b"").status,
        403
    );
}

/// A non-owner allowed by an account ACL must not get owner powers on b, where the sidecar acts
/// as an account owner: Swift drops owner-only headers (container ACLs, sync, temp URL keys)
/// from non-owners' container writes and hides them from non-owners' reads.
#[test]
fn acl_users_get_no_owner_powers_on_the_target() {
    let [_, b] = shared_pair();
    let local = SwiftCluster::builder("cred-owner")
        .start()
        .expect("start local cluster");
    let prefix = unique_name("owner");
    let route = prefix_route("AUTH_test", &prefix);
    let sidecar = Sidecar::start(
        local.proxy_port(),
        Some(&routing_credentials(1, b, &[&route])),
    );
    let (url, owner) = auth_via(&sidecar, TESTER);
    let (_, tester2) = auth_via(&sidecar, TESTER2);
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let url_local = local.storage_url("AUTH_test");
    let routed = format!("{prefix}-c");
    let unrouted = unique_name("plain");
    for c in [&routed, &unrouted] {
        ok(
            &req(
                "PUT",
                &format!("{url}/{c}"),
                &owner,
                &[
                    ("X-Container-Write", "test:tester"),
                    ("X-Container-Meta-Temp-Url-Key", "owner-secret"),
                ],
                b"",
            ),
            "container PUT by the owner",
        );
    }
    set_account_acl(&url_local, &owner, r#"{"read-write":["test:tester2"]}"#);

    let escalation = [
        ("X-Container-Read", ".r:*,.rlistings"),
        ("X-Container-Write", "test:tester2"),
        ("X-Container-Meta-Temp-Url-Key", "tester2-key"),
    ];
    // The reference: on the unrouted container, the local cluster accepts the POST and ignores
    // the owner-only headers; tester2 does not see them either.
    let local_post = req(
        "POST",
        &format!("{url}/{unrouted}"),
        &tester2,
        &escalation,
        b"",
    );
    assert_eq!(local_post.status, 204);
    let local_head = req("HEAD", &format!("{url_local}/{unrouted}"), &owner, &[], b"");
    assert_eq!(
        (
            local_head.header("x-container-read"),
            local_head.header("x-container-write"),
            local_head.header("x-container-meta-temp-url-key")
        ),
        (None, Some("test:tester"), Some("owner-secret")),
        "reference: Swift ignores owner-only headers from a read-write ACL user"
    );
    let local_seen = req("HEAD", &format!("{url}/{unrouted}"), &tester2, &[], b"");
    assert_eq!(
        (
            local_seen.header("x-container-write"),
            local_seen.header("x-container-meta-temp-url-key")
        ),
        (None, None)
    );

    // The same through the sidecar on the routed container: tester2 must neither see nor
    // change the owner-only settings there.
    let mut breaches = Vec::new();
    let routed_seen = req("HEAD", &format!("{url}/{routed}"), &tester2, &[], b"");
    assert_eq!(routed_seen.status, 204);
    for h in ["x-container-write", "x-container-meta-temp-url-key"] {
        if let Some(v) = routed_seen.header(h) {
            breaches.push(format!(
                "HEAD by test:tester2 through the sidecar shows {h}: {v}"
            ));
        }
    }
    let routed_post = req(
        "POST",
        &format!("{url}/{routed}"),
        &tester2,
        &escalation,
        b"",
    );
    assert_eq!(
        routed_post.status, 204,
        "tester2 may POST container metadata (read-write ACL)"
    );
    let on_b = req("HEAD", &format!("{url_b}/{routed}"), &token_b, &[], b"");
    for (h, owner_value) in [
        ("x-container-read", None),
        ("x-container-write", Some("test:tester")),
        ("x-container-meta-temp-url-key", Some("owner-secret")),
    ] {
        if on_b.header(h) != owner_value {
            breaches.push(format!("after tester2's POST through the sidecar, b has {h}: {:?} (the owner set {owner_value:?})", on_b.header(h)));
        }
    }
    assert!(
        breaches.is_empty(),
        "a read-write ACL user gets owner powers on b through the sidecar:\n{}",
        breaches.join("\n")
    );
}

/// Two accounts on the local cluster whose routed containers the sidecar's credentials reach on
/// b: AUTH_test's `mine*` containers, and AUTH_test2's `theirs*` containers, which a route moves
/// into b's AUTH_test (as a production sidecar's credentials reach every routed account). The
/// victim, test2:tester, keeps a secret in its routed container; the attacker, test:tester, owns
/// AUTH_test but has no access to AUTH_test2.
struct TwoAccounts {
    sidecar: Sidecar,
    url: String,
    attacker: String,
    url2: String,
    vault: String,
    vault_b: String,
    loot: String,
    url_b: String,
    token_b: String,
}

fn two_accounts(a: &SwiftCluster, b: &SwiftCluster) -> TwoAccounts {
    let mine = unique_name("mine");
    let theirs = unique_name("theirs");
    let renamed = unique_name("vault");
    let routes = [
        prefix_route("AUTH_test", &mine),
        format!("- {{match: {{account: AUTH_test2, container: {{prefix: \"{theirs}\"}}}}, target: {{cluster: b, account: AUTH_test, container: \"{renamed}\"}}}}"),
    ];
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &routes)));
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (url2, victim) = auth_via(&sidecar, TEST2);
    let vault = format!("{theirs}-c");
    let vault_b = format!("{renamed}-c");
    ok(
        &req("PUT", &format!("{url2}/{vault}"), &victim, &[], b""),
        "victim container",
    );
    ok(
        &req(
            "PUT",
            &format!("{url2}/{vault}/secret"),
            &victim,
            &[],
            b"victim's secret",
        ),
        "victim object",
    );
    assert_eq!(
        req(
            "GET",
            &format!("{url_b}/{vault_b}/secret"),
            &token_b,
            &[],
            b""
        )
        .body,
        b"victim's secret"
    );
    let (url, attacker) = auth_via(&sidecar, TESTER);
    assert_eq!(
        req(
            "GET",
            &format!("{url2}/{vault}/secret"),
            &attacker,
            &[],
            b""
        )
        .status,
        403,
        "the path's account is checked"
    );
    let loot = format!("{mine}-loot");
    ok(
        &req("PUT", &format!("{url}/{loot}"), &attacker, &[], b""),
        "attacker's routed container",
    );
    ok(
        &req(
            "PUT",
            &format!("{url}/{loot}/mine"),
            &attacker,
            &[],
            b"attacker's data",
        ),
        "attacker's object",
    );
    TwoAccounts {
        sidecar,
        url,
        attacker,
        url2,
        vault,
        vault_b,
        loot,
        url_b,
        token_b,
    }
}

/// Server-side copies name a second account in headers (X-Copy-From-Account, Destination-Account):
/// the local check must cover it too, or the sidecar copies out of or into an account the client
/// cannot access. The client gets a's answer and b is unchanged.
#[test]
fn copies_do_not_reach_accounts_the_client_cannot_access() {
    let [a, b] = shared_pair();
    let t = two_accounts(a, b);
    let url_a = a.storage_url("AUTH_test");
    let local = unique_name("local-loot");
    ok(
        &req("PUT", &format!("{url_a}/{local}"), &t.attacker, &[], b""),
        "attacker's local container",
    );
    ok(
        &req(
            "PUT",
            &format!("{url_a}/{local}/mine"),
            &t.attacker,
            &[],
            b"attacker's data",
        ),
        "attacker's local object",
    );
    let sent_to_b = t.sidecar.metric(UPSTREAM_SENDS, &[("cluster", "b")]);

    // Copy out of the victim's account: PUT with X-Copy-From-Account.
    let from = format!("{}/secret", t.vault);
    let h = [
        ("X-Copy-From", from.as_str()),
        ("X-Copy-From-Account", "AUTH_test2"),
    ];
    let direct = req(
        "PUT",
        &format!("{url_a}/{local}/stolen"),
        &t.attacker,
        &h,
        b"",
    );
    let through = req(
        "PUT",
        &format!("{}/{}/stolen", t.url, t.loot),
        &t.attacker,
        &h,
        b"",
    );
    assert_eq!(direct.status, 403, "reference: a refuses the copy");
    assert_eq!(
        through.status,
        direct.status,
        "PUT X-Copy-From-Account: {}",
        through.body_text()
    );

    // Copy into the victim's account: COPY with Destination-Account.
    let dest = format!("/{}/planted", t.vault);
    let h = [
        ("Destination", dest.as_str()),
        ("Destination-Account", "AUTH_test2"),
    ];
    let direct = req(
        "COPY",
        &format!("{url_a}/{local}/mine"),
        &t.attacker,
        &h,
        b"",
    );
    let through = req(
        "COPY",
        &format!("{}/{}/mine", t.url, t.loot),
        &t.attacker,
        &h,
        b"",
    );
    assert_eq!(direct.status, 403, "reference: a refuses the copy");
    assert_eq!(
        through.status,
        direct.status,
        "COPY Destination-Account: {}",
        through.body_text()
    );

    assert_eq!(
        t.sidecar.metric(UPSTREAM_SENDS, &[("cluster", "b")]),
        sent_to_b,
        "a refused copy reached b"
    );
    assert_eq!(
        req(
            "HEAD",
            &format!("{}/{}/stolen", t.url_b, t.loot),
            &t.token_b,
            &[],
            b""
        )
        .status,
        404
    );
    assert_eq!(
        req(
            "HEAD",
            &format!("{}/{}/planted", t.url_b, t.vault_b),
            &t.token_b,
            &[],
            b""
        )
        .status,
        404
    );
    // The victim's own copy within its account works (the checks are not blanket refusals).
    let (_, victim) = auth_via(&t.sidecar, TEST2);
    let own = req(
        "COPY",
        &format!("{}/{}/secret", t.url2, t.vault),
        &victim,
        &[("Destination", &format!("/{}/copy", t.vault))],
        b"",
    );
    assert_eq!(own.status, 201, "{}", own.body_text());
}

/// A symlink names a second account too (X-Symlink-Target-Account), and Swift follows it on
/// every GET with the reader's rights. Through the sidecar the reader's rights are the
/// sidecar's: reading the link must still get a's answer (403) and not the victim's data.
#[test]
fn symlinks_do_not_reach_accounts_the_client_cannot_access() {
    let [a, b] = shared_pair();
    let t = two_accounts(a, b);
    let url_a = a.storage_url("AUTH_test");
    let local = unique_name("local-link");
    ok(
        &req("PUT", &format!("{url_a}/{local}"), &t.attacker, &[], b""),
        "attacker's local container",
    );
    let target = format!("{}/secret", t.vault);
    let h = [
        ("X-Symlink-Target", target.as_str()),
        ("X-Symlink-Target-Account", "AUTH_test2"),
    ];
    assert_eq!(
        req(
            "PUT",
            &format!("{url_a}/{local}/link"),
            &t.attacker,
            &h,
            b""
        )
        .status,
        201,
        "Swift lets anyone create a symlink"
    );
    let direct = req(
        "GET",
        &format!("{url_a}/{local}/link"),
        &t.attacker,
        &[],
        b"",
    );
    assert_eq!(direct.status, 403, "reference: a refuses to follow it");

    let put = req(
        "PUT",
        &format!("{}/{}/link", t.url, t.loot),
        &t.attacker,
        &h,
        b"",
    );
    if put.status == 201 {
        for method in ["GET", "HEAD"] {
            let through = req(
                method,
                &format!("{}/{}/link", t.url, t.loot),
                &t.attacker,
                &[],
                b"",
            );
            assert!(
                through.status == direct.status && !through.body_text().contains("victim's secret"),
                "{method} of a symlink into AUTH_test2 through the sidecar: {} {:?} (a answers {})",
                through.status,
                through.body_text(),
                direct.status
            );
        }
    } else {
        // Refusing to create it is the other safe answer.
        assert_eq!(put.status / 100, 4, "{}", put.body_text());
        assert_eq!(
            req(
                "HEAD",
                &format!("{}/{}/link?symlink=get", t.url_b, t.loot),
                &t.token_b,
                &[],
                b""
            )
            .status,
            404
        );
    }
}

/// Refusals that do not depend on who asks (a name in a header pointing to another cluster, an
/// account-level write on a federated account) must not come before the local check: a client
/// the local cluster refuses gets a's 401/403, not an answer that tells which containers and
/// accounts are routed where.
#[test]
fn clients_refused_locally_learn_nothing_about_routes() {
    let [a, b] = shared_pair();
    let prefix = unique_name("hidden");
    let routes = [
        prefix_route("AUTH_test", &prefix),
        "- {match: {account: AUTH_test2}, target: {cluster: b}}".to_string(),
    ];
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &routes)));
    let tester2 = auth_via(&sidecar, TESTER2).1;
    let routed = format!("{prefix}-c");
    let unrouted = unique_name("local");
    let sidecar_test = format!("{}/v1/AUTH_test", sidecar.url());
    let sidecar_test2 = format!("{}/v1/AUTH_test2", sidecar.url());
    let (a_test, a_test2) = (a.storage_url("AUTH_test"), a.storage_url("AUTH_test2"));
    let dest = format!("/{unrouted}/x");
    let from = format!("{unrouted}/o");
    let cases: [(&str, String, String, Headers); 3] = [
        (
            "COPY",
            format!("{a_test}/{routed}/o"),
            format!("{sidecar_test}/{routed}/o"),
            vec![("Destination", dest.as_str())],
        ),
        (
            "PUT",
            format!("{a_test}/{routed}/x"),
            format!("{sidecar_test}/{routed}/x"),
            vec![("X-Copy-From", from.as_str())],
        ),
        (
            "POST",
            a_test2.clone(),
            sidecar_test2.clone(),
            vec![("X-Account-Meta-Probe", "1")],
        ),
    ];
    let mut leaks = Vec::new();
    for (who, token) in [("no token", None), ("test:tester2", Some(tester2.as_str()))] {
        for (method, direct_url, through_url, headers) in &cases {
            let direct = send(method, direct_url, token, headers, b"");
            let through = send(method, through_url, token, headers, b"");
            assert!(
                matches!(direct.status, 401 | 403),
                "{who}: {method} directly: {}",
                direct.status
            );
            if through.status != direct.status {
                leaks.push(format!(
                    "{who}: {method} {through_url} {headers:?}: a answers {}, the sidecar {} {:?}",
                    direct.status,
                    through.status,
                    through.body_text()
                ));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "clients refused by a get answers that depend on routes:\n{}",
        leaks.join("\n")
    );
}

/// Item 4: with an account-wide route in Credentials mode, account-level writes are refused with
/// 403 (the sidecar cannot tell what they would touch), nothing changes on b, and account reads
/// are b's account, for the users a allows to read it.
#[test]
fn account_level_writes_on_a_federated_account_are_refused_and_reads_work() {
    let [a, b] = shared_pair();
    let route = "- {match: {account: AUTH_test}, target: {cluster: b}}";
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let only_on_b = unique_name("only-b");
    let only_on_a = unique_name("only-a");
    assert_eq!(
        req("PUT", &format!("{url_b}/{only_on_b}"), &token_b, &[], b"").status,
        201
    );
    assert_eq!(
        req("PUT", &format!("{url_a}/{only_on_a}"), &token_a, &[], b"").status,
        201
    );
    let meta = format!("X-Account-Meta-{}", unique_name("m"));

    let sent_to_b = sidecar.metric(UPSTREAM_SENDS, &[("cluster", "b")]);
    let bulk = format!("/{only_on_b}\n");
    let writes: [(&str, String, Headers, &[u8]); 5] = [
        ("POST", url.clone(), vec![(meta.as_str(), "set")], b""),
        ("PUT", url.clone(), vec![], b""),
        ("DELETE", url.clone(), vec![], b""),
        (
            "POST",
            format!("{url}?bulk-delete"),
            vec![("Content-Type", "text/plain")],
            bulk.as_bytes(),
        ),
        (
            "DELETE",
            format!("{url}?bulk-delete"),
            vec![("Content-Type", "text/plain")],
            bulk.as_bytes(),
        ),
    ];
    for (method, u, headers, body) in writes {
        let r = req(method, &u, &token, &headers, body);
        assert_eq!(r.status, 403, "{method} {u}: {}", r.body_text());
        assert!(
            r.body_text().contains("account-level"),
            "the refusal says why: {}",
            r.body_text()
        );
    }
    assert_eq!(
        sidecar.metric(UPSTREAM_SENDS, &[("cluster", "b")]),
        sent_to_b,
        "an account-level write reached b"
    );
    let account_b = req("HEAD", &url_b, &token_b, &[], b"");
    assert_eq!(
        account_b.header(&meta),
        None,
        "account metadata must not change on b"
    );
    assert_eq!(
        req("HEAD", &format!("{url_b}/{only_on_b}"), &token_b, &[], b"").status,
        204,
        "bulk delete must not reach b"
    );

    // Reads: b's account, not a's.
    let head = req("HEAD", &url, &token, &[], b"");
    assert_eq!(
        head.status,
        204,
        "account HEAD through the sidecar: {}",
        head.body_text()
    );
    assert!(head.header("x-account-container-count").is_some());
    let listing = req("GET", &url, &token, &[], b"");
    assert_eq!(listing.status, 200);
    let names: Vec<&str> = std::str::from_utf8(&listing.body)
        .expect("utf8")
        .lines()
        .collect();
    assert!(names.contains(&only_on_b.as_str()), "listing comes from b");
    assert!(
        !names.contains(&only_on_a.as_str()),
        "listing must not come from a"
    );
    // Container-level requests in the federated account go to b with the sidecar's token.
    let c = unique_name("acct-wide");
    assert_eq!(
        req("PUT", &format!("{url}/{c}"), &token, &[], b"").status,
        201
    );
    assert_eq!(
        req("HEAD", &format!("{url_b}/{c}"), &token_b, &[], b"").status,
        204
    );
    assert_eq!(
        req("HEAD", &format!("{url_a}/{c}"), &token_a, &[], b"").status,
        404
    );

    // Account reads are still a's decision: tester2 and strangers get a's answer.
    let (_, tester2) = auth_via(&sidecar, TESTER2);
    for method in ["GET", "HEAD"] {
        assert_eq!(req(method, &url_a, &tester2, &[], b"").status, 403);
        assert_eq!(
            req(method, &url, &tester2, &[], b"").status,
            403,
            "{method} account as tester2"
        );
        assert_eq!(
            send(method, &url, None, &[], b"").status,
            401,
            "{method} account without token"
        );
    }
}

/// Item 3: the sidecar's token for b lasts a few seconds; under steady concurrent load across
/// several lifetimes no request fails (bodiless ones and PUTs with a body alike), and tokens are
/// fetched per lifetime, not per request: at most twice per lifetime b advertises (the early
/// refresh at 80%, which tempauth answers with the same token, and the renewal at expiry), plus
/// the first fetch and one spare.
#[test]
fn sidecar_tokens_are_refreshed_under_load_without_failures() {
    const TOKEN_LIFE: u64 = 4;
    const THREADS: usize = 16;
    let run = Duration::from_secs(16);
    let [a, _] = shared_pair();
    let target = SwiftCluster::builder("cred-short-token")
        .token_life(TOKEN_LIFE)
        .start()
        .expect("start target");
    // The life b advertises for a new token (X-Auth-Token-Expires; tempauth truncates it).
    let fresh = swiftfed_tests::http_request(
        "GET",
        &target.auth_url(),
        &[("X-Auth-User", TESTER2.0), ("X-Auth-Key", TESTER2.1)],
        b"",
    )
    .expect("auth");
    let advertised: f64 = fresh
        .header("x-auth-token-expires")
        .expect("X-Auth-Token-Expires")
        .parse()
        .expect("seconds");
    assert!(
        advertised >= 1.0 && advertised <= TOKEN_LIFE as f64,
        "advertised life {advertised}"
    );

    let prefix = unique_name("refresh");
    let route = prefix_route("AUTH_test", &prefix);
    let sidecar = Sidecar::start(
        a.proxy_port(),
        Some(&routing_credentials(1, &target, &[&route])),
    );
    let (url, token) = auth_via(&sidecar, TESTER);
    let c = format!("{prefix}-c");
    ok(
        &req("PUT", &format!("{url}/{c}"), &token, &[], b""),
        "container PUT",
    );
    assert_eq!(sidecar.metric(TOKEN_FETCHES, &[("cluster", "b")]), 1.0);

    let started = Instant::now();
    let requests = AtomicU64::new(0);
    let failures: Mutex<Vec<(bool, String)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (url, token, c, requests, failures) = (&url, &token, &c, &requests, &failures);
            s.spawn(move || {
                let mut n = 0u64;
                while started.elapsed() < run {
                    let name = format!("{url}/{c}/t{t}-{}", n % 4);
                    let body = format!("thread {t} round {n}");
                    let note = |with_body: bool, what: &str, r: &HttpResponse| {
                        let line = format!(
                            "{:>6.2}s {what}: {} {:.90}",
                            started.elapsed().as_secs_f64(),
                            r.status,
                            r.body_text()
                        );
                        failures.lock().unwrap().push((with_body, line));
                    };
                    // A PUT with a body, then bodiless reads.
                    let put = req("PUT", &name, token, &[], body.as_bytes());
                    if put.status != 201 {
                        note(true, "PUT", &put);
                    }
                    let get = req("GET", &name, token, &[], b"");
                    if put.status == 201 && (get.status != 200 || get.body != body.as_bytes()) {
                        note(false, "GET", &get);
                    }
                    let head = req("HEAD", &format!("{url}/{c}"), token, &[], b"");
                    if head.status != 204 {
                        note(false, "HEAD", &head);
                    }
                    requests.fetch_add(3, Ordering::Relaxed);
                    n += 1;
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let requests = requests.load(Ordering::Relaxed);
    let fetches = sidecar.metric(TOKEN_FETCHES, &[("cluster", "b")]) - 1.0;
    let failures = failures.into_inner().unwrap();
    let lifetimes = elapsed.as_secs_f64() / advertised;
    // Per token lifetime the sidecar asks at most twice: once at 80% of the life (tempauth then
    // hands back the same token, which is kept to its end) and once when it has expired. Many
    // concurrent requests must never multiply that (single flight).
    let bound = 2.0 * lifetimes.ceil() + 2.0;
    let report = |with_body: bool| -> Vec<String> {
        failures
            .iter()
            .filter(|(b, _)| *b == with_body)
            .map(|(_, l)| l.clone())
            .collect()
    };
    let (bodiless, with_body) = (report(false), report(true));
    eprintln!(
        "{requests} requests in {elapsed:.1?} ({lifetimes:.1} advertised token lifetimes of {advertised}s), {fetches} token fetches (bound {bound}), {} failed GET/HEAD, {} failed PUT",
        bodiless.len(),
        with_body.len()
    );
    assert!(
        requests >= 300,
        "the load must be substantial: {requests} requests"
    );
    assert!(
        bodiless.is_empty(),
        "{} bodiless requests failed while b's tokens expired; first ones:\n{}",
        bodiless.len(),
        bodiless
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        with_body.is_empty(),
        "{} PUTs with a body (of {}) failed while b's tokens expired; first ones:\n{}",
        with_body.len(),
        requests / 3,
        with_body
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        fetches <= bound,
        "{fetches} token fetches in {elapsed:.1?} for {requests} requests; bound {bound}"
    );
}
