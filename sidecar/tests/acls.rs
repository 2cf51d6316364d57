//! Container ACLs of routed containers in `Credentials` mode, against real Swift through the real
//! sidecar: an owner sets `X-Container-Read`/`X-Container-Write` through the sidecar, which
//! mirrors them on a local shadow container; ACL users then get through the sidecar exactly what
//! the local cluster grants them on that container, and nothing more, while the target (`b`)
//! is untouched by whatever they are refused.

mod support;

use std::time::{Duration, Instant};

use support::*;
use swiftfed_tests::{http_request, shared_pair, unique_name, HttpResponse};

const TEST2: (&str, &str) = ("test2:tester", "testing");
const REFERER: (&str, &str) = ("Referer", "http://www.example.com/page");

fn anonymous(method: &str, url: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_request(method, url, headers, b"").unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Polls `attempt` until it answers `want` (the authorization cache lapsing), within 15 s.
fn eventually(what: &str, want: u16, attempt: impl Fn() -> HttpResponse) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = attempt().status;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {got}, not {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A sidecar in front of `a` routing AUTH_test's containers starting with `prefix` to `b` with
/// its own credentials; grants are cached for 1 s only.
fn credentials_sidecar(prefix: &str) -> Sidecar {
    let [a, b] = shared_pair();
    let route = prefix_route(prefix);
    Sidecar::start_with(Options {
        upstream_port: a.proxy_port(),
        routing: Some(routing_credentials(1, b, &[&route])),
        extra_args: vec!["--authz-cache-ttl".into(), "1s".into()],
    })
}

#[test]
fn container_acls_set_through_the_sidecar_grant_exactly_what_they_grant_locally() {
    let [a, b] = shared_pair();
    let prefix = unique_name("acl");
    let sidecar = credentials_sidecar(&prefix);
    let (url, owner) = auth_via(&sidecar, TESTER);
    let (_, reader) = auth_via(&sidecar, TESTER2);
    let (_, stranger) = auth_via(&sidecar, TEST2);
    let (url_a, owner_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_b, owner_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let c = format!("{prefix}-c");
    let obj = format!("{url}/{c}/o");
    let on_b = |name: &str| req("HEAD", &format!("{url_b}/{c}/{name}"), &owner_b, &[], b"").status;
    let shadow = || req("GET", &format!("{url_a}/{c}"), &owner_a, &[], b"");
    let post_acl = |headers: &[(&str, &str)]| {
        ok(
            &req("POST", &format!("{url}/{c}"), &owner, headers, b""),
            "ACL POST",
        );
    };

    ok(
        &req(
            "PUT",
            &format!("{url}/{c}"),
            &owner,
            &[("X-Container-Read", "test:tester2")],
            b"",
        ),
        "container PUT with a read ACL",
    );
    ok(&req("PUT", &obj, &owner, &[], b"payload"), "object PUT");
    assert_eq!(
        req("HEAD", &format!("{url_b}/{c}"), &owner_b, &[], b"").header("x-container-read"),
        Some("test:tester2"),
        "the ACL is on the target"
    );
    let s = shadow();
    assert_eq!(s.status, 204, "the shadow exists locally, empty");
    assert_eq!(s.header("x-container-read"), Some("test:tester2"));

    // Read ACL: reads and listings through the sidecar; writes refused as locally.
    let got = req("GET", &obj, &reader, &[], b"");
    assert_eq!((got.status, got.body.as_slice()), (200, &b"payload"[..]));
    assert_eq!(req("HEAD", &obj, &reader, &[], b"").status, 200);
    let listing = req("GET", &format!("{url}/{c}"), &reader, &[], b"");
    assert_eq!((listing.status, listing.body_text().trim()), (200, "o"));
    assert_eq!(
        listing.header("x-container-read"),
        None,
        "ACLs are shown to owners only"
    );
    let local_put = req("PUT", &format!("{url_a}/{c}/new"), &reader, &[], b"x").status;
    assert_eq!(local_put, 403);
    assert_eq!(
        req("PUT", &format!("{url}/{c}/new"), &reader, &[], b"x").status,
        local_put
    );
    assert_eq!(req("DELETE", &obj, &reader, &[], b"").status, local_put);
    assert_eq!(
        req(
            "POST",
            &format!("{url}/{c}"),
            &reader,
            &[("X-Container-Meta-K", "v")],
            b""
        )
        .status,
        403,
        "container writes are the owner's"
    );
    assert_eq!(on_b("new"), 404, "refused PUT reached the target");
    assert_eq!(on_b("o"), 200, "refused DELETE reached the target");

    // No ACL: the local answer, nothing on the target.
    for (token, want) in [(Some(stranger.as_str()), 403), (None, 401)] {
        let send = |method: &str, u: &str| match token {
            Some(t) => req(method, u, t, &[], b"x"),
            None => anonymous(method, u, &[]),
        };
        let local = send("GET", &format!("{url_a}/{c}/o")).status;
        assert_eq!(local, want);
        assert_eq!(send("GET", &obj).status, want);
        assert_eq!(send("GET", &format!("{url}/{c}")).status, want);
        assert_eq!(send("PUT", &format!("{url}/{c}/new")).status, want);
        assert_eq!(on_b("new"), 404);
    }

    // Write ACL.
    post_acl(&[("X-Container-Write", "test:tester2")]);
    assert_eq!(
        req("PUT", &format!("{url}/{c}/w"), &reader, &[], b"w").status,
        201
    );
    assert_eq!(
        on_b("w"),
        200,
        "the write-ACL user's object is on the target"
    );

    // Referrers: objects with `.r:`, listings only with `.rlistings` too. Setting them replaces
    // test:tester2's read grant, which lapses with the authorization cache.
    post_acl(&[("X-Container-Read", ".r:.example.com")]);
    let got = anonymous("GET", &obj, &[REFERER]);
    assert_eq!((got.status, got.body.as_slice()), (200, &b"payload"[..]));
    let elsewhere = anonymous("GET", &obj, &[("Referer", "http://other.org/")]).status;
    assert_eq!(
        elsewhere,
        anonymous(
            "GET",
            &format!("{url_a}/{c}/o"),
            &[("Referer", "http://other.org/")]
        )
        .status
    );
    assert_eq!(elsewhere, 401);
    let local_list = anonymous("GET", &format!("{url_a}/{c}"), &[REFERER]).status;
    assert_eq!(local_list, 401, "no .rlistings: no listing locally");
    assert_eq!(
        anonymous("GET", &format!("{url}/{c}"), &[REFERER]).status,
        local_list
    );
    eventually(
        "read grant of test:tester2 after its ACL was replaced",
        403,
        || req("GET", &obj, &reader, &[], b""),
    );
    post_acl(&[("X-Container-Read", ".r:.example.com,.rlistings")]);
    let listing = anonymous("GET", &format!("{url}/{c}"), &[REFERER]);
    assert_eq!(
        (listing.status, listing.body_text()),
        (200, "o\nw\n".to_string())
    );

    // Removing the ACLs through the sidecar revokes them.
    post_acl(&[
        ("X-Remove-Container-Read", "x"),
        ("X-Remove-Container-Write", "x"),
    ]);
    assert_eq!(anonymous("GET", &obj, &[REFERER]).status, 401);
    // Until the cached grant lapses (1 s here), writes still succeed: that is the cache's
    // documented window.
    eventually("write grant after X-Remove-Container-Write", 403, || {
        req("PUT", &format!("{url}/{c}/late"), &reader, &[], b"x")
    });
    assert_eq!(
        req("PUT", &format!("{url}/{c}/later"), &reader, &[], b"x").status,
        403
    );
    assert_eq!(on_b("later"), 404);

    // The shadow never held an object; deleting the routed container deletes it.
    let s = shadow();
    assert_eq!((s.status, s.body_text()), (204, String::new()));
    assert_eq!(s.header("x-container-object-count"), Some("0"));
    for name in ["o", "w", "late"] {
        let status = req("DELETE", &format!("{url}/{c}/{name}"), &owner, &[], b"").status;
        assert!(matches!(status, 204 | 404), "DELETE {name}: {status}");
    }
    ok(
        &req("DELETE", &format!("{url}/{c}"), &owner, &[], b""),
        "container DELETE",
    );
    assert_eq!(
        shadow().status,
        404,
        "the shadow went with the routed container"
    );
}

/// A shadow left behind by a container deleted on the target directly (bypassing the sidecar)
/// does not outlive the container's re-creation through the sidecar.
#[test]
fn a_container_created_through_the_sidecar_gets_exactly_its_own_acls() {
    let [a, b] = shared_pair();
    let prefix = unique_name("stale");
    let sidecar = credentials_sidecar(&prefix);
    let (url, owner) = auth_via(&sidecar, TESTER);
    let (_, reader) = auth_via(&sidecar, TESTER2);
    let (url_a, owner_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_b, owner_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let c = format!("{prefix}-c");
    let acl = [("X-Container-Read", "test:tester2")];
    ok(
        &req("PUT", &format!("{url}/{c}"), &owner, &acl, b""),
        "PUT with ACL",
    );
    assert_eq!(
        req("DELETE", &format!("{url_b}/{c}"), &owner_b, &[], b"").status,
        204
    );
    let stale = req("HEAD", &format!("{url_a}/{c}"), &owner_a, &[], b"");
    assert_eq!(
        stale.header("x-container-read"),
        Some("test:tester2"),
        "stale shadow"
    );

    ok(
        &req("PUT", &format!("{url}/{c}"), &owner, &[], b""),
        "re-created without ACL",
    );
    let shadow = req("HEAD", &format!("{url_a}/{c}"), &owner_a, &[], b"");
    assert_eq!(
        shadow.header("x-container-read"),
        None,
        "the stale ACL is gone"
    );
    assert_eq!(
        req("GET", &format!("{url}/{c}"), &reader, &[], b"").status,
        403
    );
    ok(
        &req("DELETE", &format!("{url}/{c}"), &owner, &[], b""),
        "container DELETE",
    );
    assert_eq!(
        req("HEAD", &format!("{url_a}/{c}"), &owner_a, &[], b"").status,
        404
    );
}

/// The target follows symlinks and reads manifest segments with the sidecar's owner-level token;
/// a client allowed by a container ACL only must not reach other containers that way.
#[test]
fn acl_users_reach_nothing_beyond_their_container() {
    let [_, b] = shared_pair();
    let prefix = unique_name("beyond");
    let sidecar = credentials_sidecar(&prefix);
    let (url, owner) = auth_via(&sidecar, TESTER);
    let (_, user) = auth_via(&sidecar, TESTER2);
    let (url_b, owner_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (c, other) = (format!("{prefix}-c"), format!("{prefix}-other"));
    let both = [
        ("X-Container-Read", "test:tester2"),
        ("X-Container-Write", "test:tester2"),
    ];
    ok(
        &req("PUT", &format!("{url}/{c}"), &owner, &both, b""),
        "ACL container",
    );
    ok(
        &req("PUT", &format!("{url}/{other}"), &owner, &[], b""),
        "other container",
    );
    ok(
        &req(
            "PUT",
            &format!("{url}/{other}/secret"),
            &owner,
            &[],
            b"secret",
        ),
        "secret",
    );
    let target = format!("{other}/secret");
    ok(
        &req(
            "PUT",
            &format!("{url}/{c}/link"),
            &owner,
            &[("X-Symlink-Target", &target)],
            b"",
        ),
        "owner's symlink",
    );
    ok(
        &req("PUT", &format!("{url}/{c}/seg1"), &owner, &[], b"own "),
        "segment",
    );
    ok(
        &req(
            "PUT",
            &format!("{url}/{c}/dlo"),
            &owner,
            &[("X-Object-Manifest", &format!("{c}/seg"))],
            b"",
        ),
        "owner's DLO in the same container",
    );

    // Reading through the owner's symlink into a container without ACL: refused.
    let got = req("GET", &format!("{url}/{c}/link"), &user, &[], b"");
    assert_eq!(got.status, 403, "{}", got.body_text());
    assert!(!got.body_text().contains("secret"));
    // A DLO whose segments are in the same container is read as Swift would.
    let got = req("GET", &format!("{url}/{c}/dlo"), &user, &[], b"");
    assert_eq!((got.status, got.body_text().as_str()), (200, "own "));
    // An SLO of the owner's whose segment lives in another cluster (the local one here, out of
    // the route's prefix) is assembled by the sidecar: not for a container-ACL user either.
    let local = format!("x{prefix}");
    ok(
        &req("PUT", &format!("{url}/{local}"), &owner, &[], b""),
        "local",
    );
    let secret_seg = format!("{url}/{local}/seg");
    ok(&req("PUT", &secret_seg, &owner, &[], b"secret"), "segment");
    let manifest = format!("[{{\"path\": \"/{local}/seg\"}}]");
    let slo = format!("{url}/{c}/slo");
    ok(
        &req(
            "PUT",
            &format!("{slo}?multipart-manifest=put"),
            &owner,
            &[],
            manifest.as_bytes(),
        ),
        "owner's SLO with its segment elsewhere",
    );
    assert_eq!(req("GET", &slo, &owner, &[], b"").body_text(), "secret");
    let got = req("GET", &slo, &user, &[], b"");
    assert_eq!(got.status, 403, "{}", got.body_text());
    assert!(!got.body_text().contains("secret"));
    for doomed in [&slo, &secret_seg, &format!("{url}/{local}")] {
        ok(&req("DELETE", doomed, &owner, &[], b""), "cleanup");
    }
    // Creating links or manifests that point elsewhere: refused, nothing on the target.
    for (name, header) in [
        ("mylink", "X-Symlink-Target"),
        ("mydlo", "X-Object-Manifest"),
    ] {
        let r = req(
            "PUT",
            &format!("{url}/{c}/{name}"),
            &user,
            &[(header, &target)],
            b"",
        );
        assert_eq!(r.status, 403, "{header}");
        let on_b = req("HEAD", &format!("{url_b}/{c}/{name}"), &owner_b, &[], b"");
        assert_eq!(on_b.status, 404, "{header} reached the target");
    }
    // Copying from elsewhere needs account-level read.
    let r = req(
        "PUT",
        &format!("{url}/{c}/copy"),
        &user,
        &[("X-Copy-From", &target)],
        b"",
    );
    assert_eq!(r.status, 403);

    for name in ["link", "seg1", "dlo"] {
        ok(
            &req("DELETE", &format!("{url}/{c}/{name}"), &owner, &[], b""),
            "cleanup",
        );
    }
    ok(
        &req("DELETE", &format!("{url}/{other}/secret"), &owner, &[], b""),
        "cleanup",
    );
    for container in [&c, &other] {
        ok(
            &req("DELETE", &format!("{url}/{container}"), &owner, &[], b""),
            "cleanup",
        );
    }
}
