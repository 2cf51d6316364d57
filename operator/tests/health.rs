//! The operator's health endpoints, as the chart's probes use them: `/readyz` stays 503 until the
//! webhook's certificate is loaded (so the webhook Service never sends the API server to a
//! replica that would fail the TLS handshake), leadership plays no part, `/healthz` is always 200.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use swiftfed_operator::metrics::Metrics;
use swiftfed_operator::run::serve_health;
use swiftfed_tests::{free_port, http_request, HttpResponse};

async fn get(port: u16, path: &str) -> HttpResponse {
    let url = format!("http://127.0.0.1:{port}{path}");
    tokio::task::spawn_blocking(move || http_request("GET", &url, &[], b""))
        .await
        .expect("request thread")
        .expect("health endpoint answers")
}

#[tokio::test]
async fn ready_only_once_the_webhook_certificate_is_loaded_leader_or_not() {
    let port = free_port();
    let leading = Arc::new(AtomicBool::new(false));
    let (loaded_tx, loaded_rx) = tokio::sync::watch::channel(false);
    serve_health(
        format!("127.0.0.1:{port}").parse().expect("address"),
        Arc::new(Metrics::default()),
        leading.clone(),
        loaded_rx,
    )
    .await
    .expect("serve");

    let waiting = get(port, "/readyz").await;
    assert_eq!(waiting.status, 503, "{}", waiting.body_text());
    assert!(waiting.body_text().contains("webhook certificate"));
    assert_eq!(
        get(port, "/healthz").await.status,
        200,
        "alive while not ready"
    );

    loaded_tx.send(true).expect("send");
    let ready = get(port, "/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body_text(), "ok (standby)\n");

    leading.store(true, Ordering::Release);
    assert_eq!(get(port, "/readyz").await.body_text(), "ok (leader)\n");
    assert_eq!(get(port, "/metrics").await.status, 200);
}

#[tokio::test]
async fn without_a_webhook_ready_at_once_even_after_the_sender_is_gone() {
    let port = free_port();
    // As `run` does without --webhook-listen: the channel starts true and its sender is dropped.
    let (loaded_tx, loaded_rx) = tokio::sync::watch::channel(true);
    drop(loaded_tx);
    serve_health(
        format!("127.0.0.1:{port}").parse().expect("address"),
        Arc::new(Metrics::default()),
        Arc::new(AtomicBool::new(false)),
        loaded_rx,
    )
    .await
    .expect("serve");
    let ready = get(port, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body_text());
}
