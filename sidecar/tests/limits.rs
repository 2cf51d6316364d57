//! Header limits: the largest requests and answers Swift itself accepts and sends pass through the
//! sidecar with its default limits (header count, request head size), local and routed.

mod support;

use support::*;
use swiftfed_tests::{shared_pair, unique_name};

/// Swift's defaults: `max_meta_count` 90, `max_meta_overall_size` 4096 bytes (names + values),
/// and `MAX_HEADER_COUNT` = 90 + 36 headers per request; eventlet reads header lines of up to
/// 8 KiB.
const META_COUNT: usize = 90;
const SWIFT_MAX_HEADERS: usize = META_COUNT + 36;

fn meta(i: usize) -> (String, String) {
    // 90 × (4 + 40) bytes = 3960, within the 4096-byte overall limit.
    (format!("X-Object-Meta-m{i:03}"), format!("{i:040}"))
}

#[test]
fn maximum_metadata_and_largest_heads_pass_both_ways() {
    let [a, b] = shared_pair();
    let routed = unique_name("limits-routed");
    let local = unique_name("limits-local");
    let route = exact_route(&routed);
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, token) = auth_via(&sidecar, TESTER);

    let metas: Vec<(String, String)> = (0..META_COUNT).map(meta).collect();
    // Four header lines just under eventlet's 8 KiB line limit: a 32 KiB request head.
    let big = "b".repeat(8000);
    let bigs: Vec<(String, String)> = (0..4)
        .map(|i| (format!("X-Big-{i}"), big.clone()))
        .collect();
    // http_request adds Host, Content-Length and the token: fill up to Swift's header count.
    let fillers: Vec<(String, String)> = (0..SWIFT_MAX_HEADERS - META_COUNT - bigs.len() - 4)
        .map(|i| (format!("X-Filler-{i}"), "f".into()))
        .collect();
    let headers: Vec<(&str, &str)> = metas
        .iter()
        .chain(&bigs)
        .chain(&fillers)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    for (c, cluster) in [(&local, a), (&routed, b)] {
        ok(
            &req("PUT", &format!("{url}/{c}"), &token, &[], b""),
            "container PUT",
        );
        let put = req("PUT", &format!("{url}/{c}/o"), &token, &headers, b"x");
        ok(
            &put,
            &format!("PUT with {} headers into {c}", headers.len()),
        );

        // Stored in the cluster the container lives in: read there directly.
        let (cluster_url, cluster_token) = cluster.auth(TESTER.0, TESTER.1).expect("auth");
        let direct = req(
            "HEAD",
            &format!("{cluster_url}/{c}/o"),
            &cluster_token,
            &[],
            b"",
        );
        ok(&direct, "HEAD on the cluster");
        // And answered through the sidecar with every item (an answer of ~100 headers).
        for method in ["HEAD", "GET"] {
            let got = req(method, &format!("{url}/{c}/o"), &token, &[], b"");
            ok(&got, &format!("{method} through the sidecar"));
            for (name, value) in &metas {
                assert_eq!(
                    direct.header(name),
                    Some(value.as_str()),
                    "{name} on the cluster"
                );
                assert_eq!(
                    got.header(name),
                    Some(value.as_str()),
                    "{name} in the {method} answer"
                );
            }
        }
    }
}
