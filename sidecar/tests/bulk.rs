//! Bulk delete (`?bulk-delete`) of paths spread over clusters, through the real sidecar binary:
//! the answer is the one a single cluster holding every path gives (a reference account on
//! one cluster with the same containers and objects), in each format, and the objects are gone
//! from the clusters they lived in.

mod support;

use support::*;
use swiftfed_tests::{shared_pair, unique_name};

#[test]
fn bulk_deletes_across_clusters_answer_like_one_cluster() {
    let [a, b] = shared_pair();
    let u = unique_name("bd").replace('-', "");
    let routes = [
        prefix_route(&format!("{u}fed-")),
        format!(
            "- {{match: {{account: AUTH_test, container: {{prefix: \"{u}docs\"}}}}, target: {{cluster: b, container: \"{u}docs-b\"}}}}"
        ),
    ];
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &routes)));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (url_ref, token_ref) = a.auth("test2:tester", "testing").expect("auth reference");

    for (round, accept) in [
        None,
        Some("application/json"),
        Some("application/xml"),
        Some("text/xml"),
        Some("text/plain"),
    ]
    .into_iter()
    .enumerate()
    {
        let n = |s: &str| format!("{u}{s}{round}");
        let (local, fed, docs, empty) = (n("local"), n("fed-a"), n("docs"), n("fed-empty"));
        // The same containers and objects through the sidecar and in the reference account.
        for (base, tok) in [(&url, &token), (&url_ref, &token_ref)] {
            for c in [&local, &fed, &docs, &empty] {
                ok(&req("PUT", &format!("{base}/{c}"), tok, &[], b""), c);
            }
            for o in [
                format!("{local}/one"),
                format!("{local}/two%20words"),
                format!("{fed}/x/y"),
                format!("{fed}/kept"),
                format!("{docs}/d"),
            ] {
                ok(&req("PUT", &format!("{base}/{o}"), tok, &[], b"data"), &o);
            }
        }
        // Objects on three sides, one missing, an empty container (deleted) and a non-empty one
        // (409: it keeps an object the list does not name).
        let list = format!(
            "/{local}/one\n/{local}/two%20words\n{fed}/x/y\n/{docs}/d\n/{docs}/missing\n/{empty}\n/{fed}\n"
        );
        let mut headers = vec![("Content-Type", "text/plain")];
        if let Some(accept) = accept {
            headers.push(("Accept", accept));
        }
        let got = req(
            "DELETE",
            &format!("{url}?bulk-delete"),
            &token,
            &headers,
            list.as_bytes(),
        );
        let want = req(
            "DELETE",
            &format!("{url_ref}?bulk-delete"),
            &token_ref,
            &headers,
            list.as_bytes(),
        );
        assert_eq!(got.status, want.status, "{accept:?}");
        assert_eq!(
            got.header("content-type"),
            want.header("content-type"),
            "{accept:?}"
        );
        // Swift may prefix whitespace while it works; the answer is what follows.
        assert_eq!(
            got.body_text().trim_start(),
            want.body_text().trim_start(),
            "{accept:?}"
        );
        assert!(
            want.body_text().contains("409"),
            "the reference saw the conflict: {}",
            want.body_text()
        );

        // Where they lived, they are gone; what was not listed stays.
        for (base, tok, path, status) in [
            (&url_a, &token_a, format!("{local}/one"), 404),
            (&url_a, &token_a, format!("{local}/two%20words"), 404),
            (&url_b, &token_b, format!("{fed}/x/y"), 404),
            (&url_b, &token_b, format!("{u}docs-b{round}/d"), 404),
            (&url_b, &token_b, format!("{fed}/kept"), 200),
            (&url_b, &token_b, empty.clone(), 404),
        ] {
            assert_eq!(
                req("HEAD", &format!("{base}/{path}"), tok, &[], b"").status / 100,
                status / 100,
                "{path}"
            );
        }
    }
}

/// A client the local cluster refuses gets Swift's bulk answer (200, each path refused in the
/// body) — `401 Unauthorized` for a client it does not know, `403 Forbidden` for one without
/// rights — also for paths in clusters reached with the sidecar's own credentials, and
/// nothing is deleted anywhere.
#[test]
fn refused_clients_get_swifts_answer_path_by_path() {
    let [a, b] = shared_pair();
    let u = unique_name("bdr").replace('-', "");
    let route = prefix_route(&format!("{u}fed-"));
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (_, no_rights) = a.auth("test:tester2", "testing2").expect("auth tester2");
    // Through the sidecar one path is local and one routed; the reference has both local.
    let (local, fed, reference) = (format!("{u}local"), format!("{u}fed-x"), format!("{u}ref"));
    for c in [&local, &fed, &reference] {
        ok(&req("PUT", &format!("{url}/{c}"), &token, &[], b""), c);
        ok(
            &req("PUT", &format!("{url}/{c}/o"), &token, &[], b"data"),
            c,
        );
    }
    let json = [
        ("Content-Type", "text/plain"),
        ("Accept", "application/json"),
    ];
    let answer = |base: &str, tok: &str, second: &str| -> serde_json::Value {
        let list = format!("/{local}/o\n/{second}/o\n");
        let r = req(
            "DELETE",
            &format!("{base}?bulk-delete"),
            tok,
            &json,
            list.as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.body_text());
        serde_json::from_str(r.body_text().trim_start()).expect("a JSON answer")
    };
    // Swift deletes concurrently: the errors' order is not part of the answer.
    let sorted = |mut v: serde_json::Value| {
        if let Some(errors) = v["Errors"].as_array_mut() {
            errors.sort_by_key(|e| e.to_string());
        }
        v
    };
    for (who, tok, status) in [
        ("unknown", "AUTH_tkbogus", "401 Unauthorized"),
        ("without rights", no_rights.as_str(), "403 Forbidden"),
    ] {
        let want = answer(&url_a, tok, &reference);
        assert_eq!(
            want["Errors"].as_array().map(|e| e.len()),
            Some(2),
            "reference, {who}: {want}"
        );
        assert!(
            want.to_string().contains(status),
            "reference, {who}: {want}"
        );
        let got = answer(&url, tok, &fed);
        let want = want.to_string().replace(&reference, &fed);
        let want = serde_json::from_str(&want).expect("JSON");
        assert_eq!(sorted(got), sorted(want), "{who}");
    }
    for (base, tok, c) in [
        (&url_a, &token_a, &local),
        (
            &b.auth(TESTER.0, TESTER.1).expect("auth b").0,
            &b.auth(TESTER.0, TESTER.1).expect("auth b").1,
            &fed,
        ),
    ] {
        ok(
            &req("HEAD", &format!("{base}/{c}/o"), tok, &[], b""),
            "still there",
        );
    }
}
