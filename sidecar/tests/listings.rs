//! Account listings through the sidecar include the containers routed to other clusters, in
//! order, in every format, with Swift's paging parameters exact across the merged set: checked
//! against a reference account on one real cluster that holds the same container names.
//!
//! One test in this binary: it lists whole accounts, so nothing else may create containers in
//! them meanwhile.

mod support;

use support::*;
use swiftfed_tests::{shared_pair, swift_cli, unique_name, HttpResponse};

fn make(url: &str, token: &str, containers: &[&str]) {
    for c in containers {
        ok(&req("PUT", &format!("{url}/{c}"), token, &[], b""), c);
    }
}

fn number(r: &HttpResponse, h: &str) -> u64 {
    r.header(h)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{h} missing: {:?}", r.headers))
}

#[test]
fn account_listings_merge_routed_containers_exactly() {
    let [a, b] = shared_pair();
    // Names unique to this run, so that leftovers of an earlier run cannot matter.
    let u = unique_name("l").replace('-', "");
    let n = |s: &str| format!("{u}{s}");
    let routes = [
        format!(
            "- {{match: {{account: AUTH_test, container: {{prefix: \"{}\"}}}}, target: {{cluster: b}}}}",
            n("fed-")
        ),
        format!(
            "- {{match: {{account: AUTH_test, container: {{exact: \"{}\"}}}}, target: {{cluster: b, container: \"{}\"}}}}",
            n("docs"),
            n("docs-b")
        ),
    ];
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &routes)));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (url_ref, token_ref) = a.auth("test2:tester", "testing").expect("auth reference");

    // Local containers, one of them shadowed by the prefix route (hidden: requests for it go
    // to b, where it does not exist).
    let local = [
        n("alpha"),
        n("mid-1"),
        n("mid-2"),
        n("zeta"),
        n("fed-shadow"),
    ];
    // On b: routed ones, the renamed exact route and its segment container, and one no route
    // leads to (hidden).
    let on_b = [
        n("fed-a"),
        n("fed-m"),
        n("fed-z-1"),
        n("docs-b"),
        n("docs-b_segments"),
        n("other-on-b"),
    ];
    let reference = [
        n("alpha"),
        n("mid-1"),
        n("mid-2"),
        n("zeta"),
        n("fed-a"),
        n("fed-m"),
        n("fed-z-1"),
        n("docs"),
        n("docs_segments"),
    ];
    let refs = |v: &[String]| v.iter().map(String::clone).collect::<Vec<_>>();
    make(
        &url_a,
        &token_a,
        &refs(&local).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    make(
        &url_b,
        &token_b,
        &refs(&on_b).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    make(
        &url_ref,
        &token_ref,
        &refs(&reference)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    // Objects, through the sidecar (so they land where the routes say) and in the reference.
    for (c, body) in [
        (n("alpha"), &b"abc"[..]),
        (n("fed-a"), b"fives"),
        (n("docs"), b"sevenxx"),
    ] {
        ok(
            &req("PUT", &format!("{url}/{c}/o"), &token, &[], body),
            "object",
        );
        ok(
            &req("PUT", &format!("{url_ref}/{c}/o"), &token_ref, &[], body),
            "ref object",
        );
    }

    let p = |s: &str| s.replace("{u}", &u);
    let queries: Vec<String> = [
        "",
        "limit=3",
        "marker={u}docs",
        "marker={u}fed-a&limit=2",
        "end_marker={u}mid-1",
        "marker={u}alpha&end_marker={u}fed-z-1",
        "prefix={u}fed-",
        "prefix={u}d",
        "delimiter=-",
        "delimiter=-&prefix={u}fed-",
        "delimiter=-&marker={u}fed-",
        "reverse=true",
        "reverse=on&marker={u}fed-m&limit=3",
        "reverse=true&end_marker={u}docs",
        "delimiter=-&reverse=true",
        "limit=0",
        "prefix={u}nothing",
    ]
    .iter()
    .map(|q| p(q))
    .collect();
    let mut checked = 0;
    for format in ["json", "plain", "xml"] {
        for q in &queries {
            let query = if q.is_empty() {
                format!("format={format}")
            } else {
                format!("format={format}&{q}")
            };
            // The reference lists everything of the account; the merged one must equal it on
            // the names of this run (other names cannot exist in these accounts).
            let got = req("GET", &format!("{url}?{query}"), &token, &[], b"");
            let want = req("GET", &format!("{url_ref}?{query}"), &token_ref, &[], b"");
            assert_eq!(got.status, want.status, "?{query}: {}", got.body_text());
            assert_eq!(listing_view(&got), listing_view(&want), "?{query}");
            checked += 1;
        }
    }
    for accept in [
        "application/json",
        "text/xml",
        "application/xml",
        "text/plain",
        "*/*",
    ] {
        let got = req("GET", &url, &token, &[("Accept", accept)], b"");
        let want = req("GET", &url_ref, &token_ref, &[("Accept", accept)], b"");
        assert_eq!(got.status, want.status, "Accept: {accept}");
        assert_eq!(listing_view(&got), listing_view(&want), "Accept: {accept}");
    }
    assert!(checked > 40);

    // python-swiftclient sees the same as on one cluster.
    for args in [
        vec!["list"],
        vec!["list", "--prefix", &n("fed-")],
        vec!["list", "--prefix", &n("mid")],
    ] {
        let merged = swift_cli(&sidecar.auth_url(), TESTER.0, TESTER.1, &args).expect("swift list");
        let single = swift_cli(a, "test2:tester", "testing", &args).expect("swift list ref");
        assert!(
            merged.status.success(),
            "{}",
            String::from_utf8_lossy(&merged.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&merged.stdout),
            String::from_utf8_lossy(&single.stdout),
            "swift {args:?}"
        );
    }

    // HEAD counts: the local account's own numbers plus each routed container's own HEAD on b.
    let head = req("HEAD", &url, &token, &[], b"");
    let want = req("HEAD", &url_ref, &token_ref, &[], b"");
    assert_eq!(head.status, want.status, "HEAD");
    assert_eq!(
        number(&head, "x-account-container-count"),
        number(&want, "x-account-container-count")
    );
    let local_head = req("HEAD", &url_a, &token_a, &[], b"");
    let mut objects = number(&local_head, "x-account-object-count");
    let mut bytes = number(&local_head, "x-account-bytes-used");
    for c in [
        n("fed-a"),
        n("fed-m"),
        n("fed-z-1"),
        n("docs-b"),
        n("docs-b_segments"),
    ] {
        let h = req("HEAD", &format!("{url_b}/{c}"), &token_b, &[], b"");
        objects += number(&h, "x-container-object-count");
        bytes += number(&h, "x-container-bytes-used");
    }
    assert_eq!(number(&head, "x-account-object-count"), objects);
    assert_eq!(number(&head, "x-account-bytes-used"), bytes);
    assert!(bytes >= 12, "the routed objects are counted: {bytes}");
    let get = req("GET", &format!("{url}?format=json"), &token, &[], b"");
    assert_eq!(
        number(&get, "x-account-container-count"),
        number(&want, "x-account-container-count")
    );

    // Past 100 routed containers the counts use b's own account-listing numbers for them
    // (no HEAD per container): the container count stays exact.
    for i in 0..100 {
        let c = n(&format!("fed-many-{i:03}"));
        ok(&req("PUT", &format!("{url_b}/{c}"), &token_b, &[], b""), &c);
        ok(
            &req("PUT", &format!("{url_ref}/{c}"), &token_ref, &[], b""),
            &c,
        );
    }
    let head = req("HEAD", &url, &token, &[], b"");
    let want = req("HEAD", &url_ref, &token_ref, &[], b"");
    assert_eq!(
        number(&head, "x-account-container-count"),
        number(&want, "x-account-container-count"),
        "many routed containers"
    );
    let listed_on_b = req(
        "GET",
        &format!("{url_b}?format=json&prefix={}", n("")),
        &token_b,
        &[],
        b"",
    );
    let listed_on_b: Vec<serde_json::Value> =
        serde_json::from_slice(&listed_on_b.body).expect("json");
    let routed_objects: u64 = listed_on_b
        .iter()
        .filter(|c| c["name"].as_str() != Some(n("other-on-b").as_str()))
        .filter_map(|c| c["count"].as_u64())
        .sum();
    let local_head = req("HEAD", &url_a, &token_a, &[], b"");
    assert_eq!(
        number(&head, "x-account-object-count"),
        number(&local_head, "x-account-object-count") + routed_objects,
        "objects from b's listing numbers"
    );

    // A client the local cluster refuses gets the local answer, and nothing from b.
    let denied = req("GET", &url, "AUTH_tk_not_a_token", &[], b"");
    assert_eq!(denied.status, 401);
    assert!(!denied.body_text().contains(&n("fed-a")));
}
