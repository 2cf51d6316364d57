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
        format!(
            "- {{match: {{account: AUTH_test, container: {{prefix: \"{u}fed-\"}}}}, target: {{cluster: b}}}}"
        ),
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
