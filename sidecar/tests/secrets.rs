//! Secrets hygiene: after a run that uses every kind of secret the sidecar handles — its own key
//! for the target, the token it gets with it, the admin token, clients' tokens (good, bogus),
//! a temp URL signature — none of them appears in the log, the metrics, `GET /v1/config`, or any
//! answer the sidecar produced.

mod support;

use support::*;
use swiftfed_tests::{shared_pair, unique_name};

#[test]
fn no_secret_reaches_logs_metrics_config_or_answers() {
    let [a, b] = shared_pair();
    let routed = unique_name("secret");
    let route = exact_route(&routed);
    let sidecar = Sidecar::start(a.proxy_port(), Some(&routing_credentials(1, b, &[&route])));
    let (url, client_token) = auth_via(&sidecar, TESTER);
    let mut answers = Vec::new();

    // Normal traffic through the sidecar's own credentials.
    answers.push(req(
        "PUT",
        &format!("{url}/{routed}"),
        &client_token,
        &[],
        b"",
    ));
    answers.push(req(
        "PUT",
        &format!("{url}/{routed}/o"),
        &client_token,
        &[],
        b"x",
    ));
    answers.push(req(
        "GET",
        &format!("{url}/{routed}/o"),
        &client_token,
        &[],
        b"",
    ));
    // Refused clients.
    let bogus = "bogus-client-token-4c1d2e";
    answers.push(req("GET", &format!("{url}/{routed}/o"), bogus, &[], b""));
    answers.push(req("PUT", &format!("{url}/{routed}/p"), bogus, &[], b"y"));
    // A temp URL signature in the query.
    let signature = "5f1e0c9a7b3d2e4f6a8b0c1d2e3f4a5b6c7d8e9f";
    answers.push(req(
        "GET",
        &format!("{url}/{routed}/o?temp_url_sig={signature}&temp_url_expires=1"),
        "",
        &[],
        b"",
    ));
    // Admin API, right and wrong.
    answers.push(sidecar.get_config());
    answers.push(sidecar.push("revision: 0\nclusters: [{name: x, endpoints: []}]\n"));

    // The token the sidecar holds for b: tempauth hands the same one to the same user while it
    // is valid, so asking b directly reveals it to the test.
    let (_, sidecar_token) = b.auth("test:sidecar", "sidecar-key").expect("auth b");
    let secrets = [
        ("the sidecar's key for b", "sidecar-key".to_string()),
        ("the sidecar's token for b", sidecar_token),
        ("the admin token", ADMIN_TOKEN.to_string()),
        ("a client's token", client_token),
        ("a bogus client token", bogus.to_string()),
        ("a temp URL signature", signature.to_string()),
    ];
    let mut places = vec![
        ("the log".to_string(), sidecar.log()),
        ("/metrics".to_string(), sidecar.metrics()),
        (
            "GET /v1/config".to_string(),
            sidecar.get_config().body_text(),
        ),
    ];
    for (i, answer) in answers.iter().enumerate() {
        let headers: Vec<String> = answer
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        places.push((
            format!("answer {i}"),
            format!("{}\n{}", headers.join("\n"), answer.body_text()),
        ));
    }
    // The run really used the secrets: routed requests succeeded and the log has their lines.
    assert_eq!(answers[2].status, 200, "{}", answers[2].body_text());
    assert!(
        places[0].1.contains(&routed),
        "the access log records the requests"
    );
    for (what, secret) in &secrets {
        for (place, text) in &places {
            assert!(!text.contains(secret.as_str()), "{what} appears in {place}");
        }
    }
}
