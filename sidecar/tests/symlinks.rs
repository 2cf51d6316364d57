//! Symlinks whose target lives in another cluster, through the real sidecar binary: compared
//! with the same link inside one cluster (Swift's own symlink middleware) for GET, HEAD,
//! ranges, `?symlink=get`, dangling links and static links (`X-Symlink-Target-Etag`), both
//! ways (link routed and target local, link local and target routed).

mod support;

use support::*;
use swiftfed_tests::{shared_pair, unique_name, HttpResponse};

/// What a client sees of a link or its target that must not depend on where they live. The
/// `Content-Location` is compared by its last segment (the object), which both name alike.
fn view(r: &HttpResponse) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = r
        .headers
        .iter()
        .filter_map(|(k, v)| {
            let k = k.to_ascii_lowercase();
            let keep = k.starts_with("x-object-meta-")
                || [
                    "content-type",
                    "content-length",
                    "content-range",
                    "etag",
                    "x-symlink-target-etag",
                ]
                .contains(&k.as_str());
            if k == "content-location" {
                return Some((k, v.rsplit('/').next().unwrap_or("").to_string()));
            }
            keep.then(|| (k, v.clone()))
        })
        .collect();
    out.push(("status".into(), r.status.to_string()));
    out.sort();
    out
}

#[test]
fn links_across_clusters_behave_like_links_inside_one() {
    let [a, b] = shared_pair();
    let u = unique_name("sl").replace('-', "");
    let route = exact_route(&format!("{u}links"));
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    let (routed, local) = (format!("{u}links"), format!("{u}data"));
    for c in [&routed, &local] {
        ok(&req("PUT", &format!("{url}/{c}"), &token, &[], b""), c);
    }
    // (link container, target container): the reference link sits next to its target.
    for (link_c, target_c) in [(&routed, &local), (&local, &routed)] {
        let target = format!("{target_c}/t");
        ok(
            &req(
                "PUT",
                &format!("{url}/{target}"),
                &token,
                &[
                    ("Content-Type", "text/x-t"),
                    ("X-Object-Meta-Kind", "target"),
                ],
                b"the target's bytes",
            ),
            "target",
        );
        let link = |c: &str, name: &str, extra: &[(&str, &str)]| {
            let mut h = vec![("X-Symlink-Target", target.as_str())];
            h.extend_from_slice(extra);
            req("PUT", &format!("{url}/{c}/{name}"), &token, &h, b"")
        };
        ok(&link(link_c, "l", &[]), "cross-cluster link");
        ok(&link(target_c, "ref-l", &[]), "reference link");
        let crossed = format!("{url}/{link_c}/l");
        let single = format!("{url}/{target_c}/ref-l");
        for (method, query, headers) in [
            ("GET", "", vec![]),
            ("HEAD", "", vec![]),
            ("GET", "", vec![("Range", "bytes=4-9")]),
            ("GET", "?symlink=get", vec![]),
            ("HEAD", "?symlink=get", vec![]),
        ] {
            let got = req(method, &format!("{crossed}{query}"), &token, &headers, b"");
            let want = req(method, &format!("{single}{query}"), &token, &headers, b"");
            assert_eq!(
                view(&got),
                view(&want),
                "{link_c}: {method}{query} {headers:?}"
            );
            assert_eq!(got.body, want.body, "{link_c}: {method}{query} bytes");
        }
        // A server-side copy into the other cluster copies the target's content, as Swift
        // copies its own links; with `?symlink=get` it copies the link.
        let copy = |from: &str, to: &str, query: &str| {
            req(
                "PUT",
                &format!("{url}/{to}{query}"),
                &token,
                &[("X-Copy-From", from)],
                b"",
            )
        };
        ok(
            &copy(&format!("{link_c}/l"), &format!("{target_c}/copy-of-l"), ""),
            "cross-cluster copy of the link",
        );
        ok(
            &copy(
                &format!("{target_c}/ref-l"),
                &format!("{target_c}/ref-copy"),
                "",
            ),
            "Swift's copy of its link",
        );
        let got = req(
            "GET",
            &format!("{url}/{target_c}/copy-of-l"),
            &token,
            &[],
            b"",
        );
        let want = req(
            "GET",
            &format!("{url}/{target_c}/ref-copy"),
            &token,
            &[],
            b"",
        );
        assert_eq!(view(&got), view(&want), "{link_c}: copies");
        assert_eq!(got.body, b"the target's bytes");
        // So does a copy within the link's own cluster (Swift alone would copy the stand-in).
        ok(
            &copy(&format!("{link_c}/l"), &format!("{link_c}/same-copy"), ""),
            "copy of the link within its cluster",
        );
        let same = format!("{url}/{link_c}/same-copy");
        let got = req("GET", &same, &token, &[], b"");
        assert_eq!(view(&got), view(&want), "{link_c}: copy within one cluster");
        assert_eq!(got.body, b"the target's bytes");

        let shown = req("GET", &format!("{crossed}?symlink=get"), &token, &[], b"");
        assert_eq!(shown.header("x-symlink-target"), Some(target.as_str()));

        // Static links: a wrong ETag is refused; a right one follows until the target changes.
        let etag = req("HEAD", &format!("{url}/{target}"), &token, &[], b"")
            .header("etag")
            .expect("etag")
            .to_string();
        let bad = [("X-Symlink-Target-Etag", "0123456789abcdef0123456789abcdef")];
        assert_eq!(
            link(link_c, "bad", &bad).status,
            link(target_c, "ref-bad", &bad).status,
            "{link_c}: wrong static ETag"
        );
        let good = [("X-Symlink-Target-Etag", etag.as_str())];
        assert_eq!(link(link_c, "s", &good).status, 201);
        assert_eq!(link(target_c, "ref-s", &good).status, 201);
        let g = req("GET", &format!("{url}/{link_c}/s"), &token, &[], b"");
        let w = req("GET", &format!("{url}/{target_c}/ref-s"), &token, &[], b"");
        assert_eq!(view(&g), view(&w), "{link_c}: static link");
        ok(
            &req("PUT", &format!("{url}/{target}"), &token, &[], b"changed"),
            "target changes",
        );
        let g = req("GET", &format!("{url}/{link_c}/s"), &token, &[], b"");
        let w = req("GET", &format!("{url}/{target_c}/ref-s"), &token, &[], b"");
        assert_eq!(
            g.status, w.status,
            "{link_c}: static link to a changed target"
        );
        assert_eq!(g.status, 409);

        // A dangling link: 404, as in Swift.
        ok(
            &req("DELETE", &format!("{url}/{target}"), &token, &[], b""),
            "target deleted",
        );
        let g = req("GET", &crossed, &token, &[], b"");
        let w = req("GET", &single, &token, &[], b"");
        assert_eq!((g.status, w.status), (404, 404), "{link_c}: dangling");
    }

    // On b the routed link is a plain object: Swift there never follows it.
    let stored = req(
        "GET",
        &format!("{url_b}/{routed}/l?symlink=get"),
        &token_b,
        &[],
        b"",
    );
    assert_eq!(stored.status, 200);
    assert_eq!(stored.header("x-symlink-target"), None);
}

/// `symlink_path` in JSON container listings: Swift writes the target's path with the names of
/// the cluster holding the link, so the sidecar must name it as the client does, as one cluster
/// would (plain forwarding and `Migrate`'s merged listing alike).
#[test]
fn listings_name_link_targets_as_the_client_does() {
    let [a, b] = shared_pair();
    let (p, r) = (unique_name("lp"), unique_name("lr"));
    // AUTH_test2's `{p}-*` containers live in b's AUTH_test as `{r}-*`; `{p}-mig` migrates.
    let routes = [
        format!(
            "- {{match: {{account: AUTH_test2, container: {{exact: \"{p}-mig\"}}}}, target: {{cluster: b, account: AUTH_test, container: \"{r}-mig\"}}, mode: Migrate}}"
        ),
        format!(
            "- {{match: {{account: AUTH_test2, container: {{prefix: \"{p}-\"}}}}, target: {{cluster: b, account: AUTH_test, container: \"{r}-\"}}}}"
        ),
    ];
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &routes)));
    let (url, token) = auth_via(&sidecar, ("test2:tester", "testing"));
    let (url_b, token_b) = b.auth(TESTER.0, TESTER.1).expect("auth b");
    // The same links inside one cluster, unrouted (`{p}x-*` stays local): the reference.
    for prefix in [format!("{p}-"), format!("{p}x-")] {
        for c in ["one", "tw%20o", "mig"] {
            ok(
                &req("PUT", &format!("{url}/{prefix}{c}"), &token, &[], b""),
                c,
            );
        }
        ok(
            &req(
                "PUT",
                &format!("{url}/{prefix}tw%20o/t%20%C3%BC"),
                &token,
                &[],
                b"target",
            ),
            "target",
        );
        for c in ["one", "mig"] {
            let target = format!("{prefix}tw%20o/t%20%C3%BC");
            let link = req(
                "PUT",
                &format!("{url}/{prefix}{c}/l"),
                &token,
                &[("X-Symlink-Target", &target)],
                b"",
            );
            ok(&link, "link");
        }
    }
    // The links are Swift's own, inside b, under b's names.
    let on_b = req(
        "HEAD",
        &format!("{url_b}/{r}-one/l?symlink=get"),
        &token_b,
        &[],
        b"",
    );
    assert_eq!(
        on_b.header("x-symlink-target"),
        Some(format!("{r}-tw%20o/t%20%C3%BC").as_str())
    );

    let symlink_paths = |container: &str| -> Vec<(String, String)> {
        let listing = req(
            "GET",
            &format!("{url}/{container}?format=json"),
            &token,
            &[],
            b"",
        );
        ok(&listing, container);
        let records: serde_json::Value =
            serde_json::from_slice(&listing.body).expect("JSON listing");
        records
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|o| {
                Some((
                    o["name"].as_str()?.to_string(),
                    o.get("symlink_path")?.as_str()?.to_string(),
                ))
            })
            .collect()
    };
    for c in ["one", "mig"] {
        let reference = symlink_paths(&format!("{p}x-{c}"));
        assert_eq!(
            reference.len(),
            1,
            "Swift lists the link with its path: {reference:?}"
        );
        let expected: Vec<(String, String)> = reference
            .iter()
            .map(|(n, path)| (n.clone(), path.replace(&format!("{p}x-"), &format!("{p}-"))))
            .collect();
        assert_eq!(symlink_paths(&format!("{p}-{c}")), expected, "{c}");
    }
}

/// A link to make: its name, target and further headers.
type Link<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

/// A container listing (JSON and XML) shows links whose target lives in another cluster as
/// Swift shows its own: `symlink_path`, a static link's `symlink_etag` and `symlink_bytes`, the
/// Content-Type Swift gives a link (`application/symlink`, the client's, a static link's
/// target's), and `?symlink=get` shows that Content-Type too.
#[test]
fn cross_cluster_links_list_like_swifts_own() {
    let [a, b] = shared_pair();
    let u = unique_name("sll").replace('-', "");
    let route = exact_route(&format!("{u}links"));
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);
    let (routed, local) = (format!("{u}links"), format!("{u}data"));
    for c in [&routed, &local] {
        ok(&req("PUT", &format!("{url}/{c}"), &token, &[], b""), c);
    }
    // (link container, target container): the reference links sit next to their target.
    for (link_c, target_c) in [(&routed, &local), (&local, &routed)] {
        // An object name with `/`, which Swift keeps in `symlink_path`.
        let target = format!("{target_c}/d/t");
        let put = req(
            "PUT",
            &format!("{url}/{target}"),
            &token,
            &[("Content-Type", "text/x-t")],
            b"the target's bytes",
        );
        ok(&put, "target");
        let etag = put.header("etag").expect("etag").to_string();
        // An SLO next to the target, for a static link to it.
        let seg = req(
            "PUT",
            &format!("{url}/{target_c}/d/seg"),
            &token,
            &[],
            b"seg",
        );
        ok(&seg, "segment");
        let manifest = format!(
            "[{{\"path\": \"/{target_c}/d/seg\", \"etag\": {}, \"size_bytes\": 3}}]",
            seg.header("etag")
                .map(|e| format!("\"{}\"", e.trim_matches('"')))
                .expect("etag")
        );
        let slo = format!("{target_c}/d/slo");
        let put_slo = req(
            "PUT",
            &format!("{url}/{slo}?multipart-manifest=put"),
            &token,
            &[],
            manifest.as_bytes(),
        );
        ok(&put_slo, "SLO");
        // A static link to an SLO names its manifest's ETag (Swift checks below its SLO).
        let head_slo = req("HEAD", &format!("{url}/{slo}"), &token, &[], b"");
        let slo_etag = head_slo
            .header("x-manifest-etag")
            .expect("manifest etag")
            .to_string();
        let kinds: [Link; 5] = [
            ("x/dynamic", &target, vec![]),
            ("x/typed", &target, vec![("Content-Type", "text/y")]),
            (
                "x/static",
                &target,
                vec![("X-Symlink-Target-Etag", etag.as_str())],
            ),
            (
                "x/account",
                &target,
                vec![("X-Symlink-Target-Account", "AUTH_test")],
            ),
            (
                "x/to-slo",
                &slo,
                vec![("X-Symlink-Target-Etag", slo_etag.as_str())],
            ),
        ];
        for c in [link_c, target_c] {
            for (name, to, extra) in &kinds {
                let mut h = vec![("X-Symlink-Target", *to)];
                h.extend_from_slice(extra);
                let r = req("PUT", &format!("{url}/{c}/{name}"), &token, &h, b"");
                ok(&r, name);
            }
        }
        let (got, got_json, got_xml) = listed(&url, &token, link_c);
        let (want, want_json, want_xml) = listed(&url, &token, target_c);
        assert_eq!(got.len(), 5, "{got:?}");
        // Swift lists its links with their paths (static ones with the target's facts).
        assert!(
            want.iter().all(|r| r.get("symlink_path").is_some()),
            "{want:?}"
        );
        assert!(
            want.iter().any(|r| r.get("symlink_bytes").is_some()),
            "{want:?}"
        );
        assert!(want.iter().any(|r| r.get("slo_etag").is_some()), "{want:?}");
        assert_eq!(got_json, want_json, "{link_c}: JSON listing");
        assert_eq!(got_xml, want_xml, "{link_c}: XML listing");
        for (name, ..) in &kinds {
            let shown = |c: &str| {
                let url = format!("{url}/{c}/{name}?symlink=get");
                req("HEAD", &url, &token, &[], b"")
                    .header("content-type")
                    .map(str::to_string)
            };
            assert_eq!(
                shown(link_c),
                shown(target_c),
                "{link_c}/{name}: ?symlink=get"
            );
        }
    }
}
