//! The webhook's certificate: valid for the Service's DNS names (a real TLS client checks it
//! against the generated CA and gets an AdmissionReview answer), rotated before expiry, and
//! published as the caBundle.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use swiftfed_operator::inject::InjectorConfig;
use swiftfed_operator::testing::{serve as fake_api, FakeApi};
use swiftfed_operator::webhook::{self, CertManager, NOT_AFTER_ANNOTATION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn injector() -> InjectorConfig {
    InjectorConfig {
        image: "swiftfed-sidecar:test".into(),
        image_pull_policy: "IfNotPresent".into(),
        listen_port: 8090,
        admin_port: 9901,
        default_proxy_port: 8080,
        native_sidecar: true,
        resources: ResourceRequirements::default(),
    }
}

fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(
            ca_pem.as_bytes(),
        )
    {
        roots.add(cert.expect("CA PEM")).expect("CA");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

async fn post_review(
    port: u16,
    server_name: &str,
    ca_pem: &str,
    body: &[u8],
) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(client_config(ca_pem))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: {server_name}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(body).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn review() -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "swift", "operation": "CREATE",
            "userInfo": {"username": "x"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "swift", "labels": {"swiftfed.io/inject": "enabled"}},
                       "spec": {"containers": [{"name": "swift-proxy", "image": "swift"}]}}}}))
    .expect("json")
}

#[tokio::test]
async fn the_certificate_serves_the_service_names_and_nothing_else() {
    let names = webhook::service_names("swiftfed-webhook", "swiftfed-system");
    assert!(names.contains(&"swiftfed-webhook.swiftfed-system.svc".to_string()));
    let bundle = webhook::generate(&names, Duration::from_secs(3600)).expect("bundle");
    let tls = Arc::new(RwLock::new(
        webhook::server_config(&bundle).expect("server config"),
    ));
    let port = swiftfed_tests::free_port();
    webhook::serve(
        format!("127.0.0.1:{port}").parse().expect("addr"),
        tls,
        Arc::new(injector()),
    )
    .await
    .expect("serve");

    for name in &names {
        let answer = post_review(port, name, &bundle.ca_pem, &review())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.contains("\"uid\":\"u-1\"") && answer.contains("\"patchType\":\"JSONPatch\""),
            "{answer}"
        );
    }
    let err = post_review(
        port,
        "swiftfed-webhook.other.svc",
        &bundle.ca_pem,
        &review(),
    )
    .await
    .expect_err("a name the certificate does not carry");
    assert!(
        err.contains("NotValidForName") || err.contains("certificate"),
        "{err}"
    );
    let other = webhook::generate(&names, Duration::from_secs(3600)).expect("other bundle");
    let err = post_review(port, &names[2], &other.ca_pem, &review())
        .await
        .expect_err("another CA");
    assert!(
        err.contains("UnknownIssuer") || err.contains("certificate"),
        "{err}"
    );
}

#[test]
fn rotation_is_due_within_the_margin() {
    let now = Timestamp::now();
    let in_days = |d: i64| {
        now.checked_add(SignedDuration::from_hours(24 * d))
            .expect("time")
    };
    let margin = Duration::from_secs(30 * 24 * 3600);
    assert!(!webhook::needs_rotation(in_days(365), now, margin));
    assert!(webhook::needs_rotation(in_days(29), now, margin));
    assert!(webhook::needs_rotation(in_days(-1), now, margin));
}

const SECRET: &str = "/api/v1/namespaces/swiftfed-system/secrets/swiftfed-webhook-tls";
const MWC: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/swiftfed";

#[tokio::test]
async fn an_expiring_certificate_is_replaced_and_its_ca_published() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let soon = Timestamp::now()
        .checked_add(SignedDuration::from_hours(24))
        .expect("time");
    {
        let mut api = api.lock().expect("api");
        api.objects.insert(
            SECRET.into(),
            json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "swiftfed-webhook-tls", "namespace": "swiftfed-system",
                         "annotations": {NOT_AFTER_ANNOTATION: soon.to_string()}},
            "data": {"ca.crt": "b2xk", "tls.crt": "b2xk", "tls.key": "b2xk"}}),
        );
        api.objects.insert(MWC.into(), json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "swiftfed"},
            "webhooks": [{"name": "inject.swiftfed.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                          "clientConfig": {"service": {"name": "swiftfed-webhook", "namespace": "swiftfed-system", "path": "/mutate"}, "caBundle": "b2xk"}}]}));
    }
    let manager = CertManager {
        client: fake_api(api.clone()),
        namespace: "swiftfed-system".into(),
        secret: "swiftfed-webhook-tls".into(),
        service: "swiftfed-webhook".into(),
        webhook_configuration: "swiftfed".into(),
        validity: Duration::from_secs(365 * 24 * 3600),
        rotate_before: Duration::from_secs(30 * 24 * 3600),
    };
    let bundle = manager.ensure().await.expect("ensure");
    assert!(
        bundle.not_after
            > Timestamp::now()
                .checked_add(SignedDuration::from_hours(24 * 364))
                .expect("time")
    );
    let stored = api.lock().expect("api").objects[SECRET].clone();
    assert_eq!(
        stored["metadata"]["annotations"][NOT_AFTER_ANNOTATION],
        json!(bundle.not_after.to_string())
    );
    let decode = |v: &Value| -> String {
        let bytes: k8s_openapi::ByteString = serde_json::from_value(v.clone()).expect("base64");
        String::from_utf8(bytes.0).expect("utf8")
    };
    assert_eq!(decode(&stored["data"]["ca.crt"]), bundle.ca_pem);
    let ca_bundle =
        api.lock().expect("api").objects[MWC]["webhooks"][0]["clientConfig"]["caBundle"].clone();
    assert_eq!(
        decode(&ca_bundle),
        bundle.ca_pem,
        "the API server trusts the new CA"
    );

    // Not due: the same certificate stays.
    let again = manager.ensure().await.expect("ensure again");
    assert_eq!(again.cert_pem, bundle.cert_pem);
}
