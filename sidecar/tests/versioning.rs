//! Object versioning on routed containers, through the real sidecar binary against real Swift:
//! versions are kept in the cluster of their container (the hidden `\x00versions\x00<c>` routes
//! with `<c>`; an `X-Versions-Location`/`X-History-Location` archive routed to the same cluster
//! works), and an archive in another cluster is refused with a 400 naming the header before
//! anything changes — no version is ever written where its container cannot find it.

mod support;

use support::*;
use swiftfed_tests::{shared_pair, unique_name};

#[test]
fn versions_stay_with_their_container() {
    let [a, b] = shared_pair();
    let u = unique_name("ver").replace('-', "");
    let docs = format!("{u}docs");
    let routes = [
        exact_route(&docs),
        prefix_route(&format!("{u}arch-")),
        prefix_route(&format!("{u}old-")),
    ];
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &routes)));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_a, token_a) = a.auth(TESTER.0, TESTER.1).expect("auth a");
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");

    // New-style versioning: the hidden versions container lives on b with its container.
    ok(
        &req(
            "PUT",
            &format!("{url}/{docs}"),
            &token,
            &[("X-Versions-Enabled", "true")],
            b"",
        ),
        "versioned container",
    );
    for body in [&b"first"[..], b"second"] {
        ok(
            &req("PUT", &format!("{url}/{docs}/o"), &token, &[], body),
            "PUT",
        );
    }
    let listed = req(
        "GET",
        &format!("{url}/{docs}?versions&format=json"),
        &token,
        &[],
        b"",
    );
    ok(&listed, "versions listing");
    let versions: Vec<serde_json::Value> = serde_json::from_slice(&listed.body).expect("json");
    assert_eq!(versions.len(), 2, "{}", listed.body_text());
    let oldest = versions
        .iter()
        .find(|v| v["is_latest"] == false)
        .and_then(|v| v["version_id"].as_str())
        .expect("an older version");
    let old = req(
        "GET",
        &format!("{url}/{docs}/o?version-id={oldest}"),
        &token,
        &[],
        b"",
    );
    assert_eq!((old.status, old.body.as_slice()), (200, &b"first"[..]));
    let on_b = req(
        "GET",
        &format!("{url_b}/{docs}?versions&format=json"),
        &token_b,
        &[],
        b"",
    );
    let on_b: Vec<serde_json::Value> = serde_json::from_slice(&on_b.body).expect("json on b");
    assert_eq!(on_b.len(), 2, "both versions are on b");
    assert_eq!(
        req("HEAD", &format!("{url_a}/{docs}"), &token_a, &[], b"").status,
        404,
        "nothing on a"
    );

    // Old-style archives: one routed to the same cluster works (the old copy lands there)...
    for (header, primary, archive) in [
        (
            "X-Versions-Location",
            format!("{u}old-v"),
            format!("{u}arch-v"),
        ),
        (
            "X-History-Location",
            format!("{u}old-h"),
            format!("{u}arch-h"),
        ),
    ] {
        ok(
            &req("PUT", &format!("{url}/{archive}"), &token, &[], b""),
            "archive",
        );
        ok(
            &req(
                "PUT",
                &format!("{url}/{primary}"),
                &token,
                &[(header, &archive)],
                b"",
            ),
            header,
        );
        for body in [&b"one"[..], b"two"] {
            ok(
                &req("PUT", &format!("{url}/{primary}/o"), &token, &[], body),
                "PUT",
            );
        }
        let kept = req(
            "GET",
            &format!("{url_b}/{archive}?format=json"),
            &token_b,
            &[],
            b"",
        );
        let kept: Vec<serde_json::Value> = serde_json::from_slice(&kept.body).expect("json");
        assert_eq!(kept.len(), 1, "{header}: the old version is archived on b");

        // ...one in another cluster is refused, naming the header, and nothing changes.
        let local_archive = format!("{u}local-archive");
        ok(
            &req("PUT", &format!("{url}/{local_archive}"), &token, &[], b""),
            "local archive",
        );
        let refused = req(
            "POST",
            &format!("{url}/{primary}"),
            &token,
            &[(header, &local_archive)],
            b"",
        );
        assert_eq!(refused.status, 400, "{header}: {}", refused.body_text());
        assert!(
            refused
                .body_text()
                .to_ascii_lowercase()
                .contains(&header.to_ascii_lowercase()),
            "{}",
            refused.body_text()
        );
        let still = req("HEAD", &format!("{url_b}/{primary}"), &token_b, &[], b"");
        assert_eq!(
            still.header(&header.to_ascii_lowercase()),
            Some(archive.as_str()),
            "{header} unchanged on b"
        );
        // A local container may not archive into a routed one either.
        let local_primary = format!("{u}local-{}", header.len());
        let refused = req(
            "PUT",
            &format!("{url}/{local_primary}"),
            &token,
            &[(header, &archive)],
            b"",
        );
        assert_eq!(refused.status, 400, "{header} local → routed");
        assert_eq!(
            req(
                "HEAD",
                &format!("{url_a}/{local_primary}"),
                &token_a,
                &[],
                b""
            )
            .status,
            404,
            "not created"
        );
    }
}
