//! Reconcile against kube-rs' mocked API server (tower-test): every API call the operator makes,
//! in order, with the bodies it sends.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use kube::runtime::events::Reporter;
use kube::Client;
use serde_json::{json, Value};
use swiftfed_crds::federation::ClusterFederation;
use swiftfed_operator::controller::{reconcile, Context};
use swiftfed_operator::metrics::Metrics;
use swiftfed_operator::push::Pusher;
use swiftfed_operator::sync::Syncer;

/// One expected API call: method, path (query ignored) and the answer (status, JSON).
struct Step {
    method: &'static str,
    path: String,
    answer: (u16, Value),
}

fn step(method: &'static str, path: &str, status: u16, answer: Value) -> Step {
    Step {
        method,
        path: path.to_string(),
        answer: (status, answer),
    }
}

fn not_found(name: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
           "message": format!("\"{name}\" not found")})
}

/// Serves `steps` in order and records each request's query and body. Fails the test on an
/// unexpected call; events (which the recorder may send at any point) are answered and recorded
/// apart.
fn mock(steps: Vec<Step>) -> (Client, tokio::task::JoinHandle<Recorded>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut recorded = Recorded::default();
        let mut steps = steps.into_iter();
        let mut next = steps.next();
        while let Some(current) = next.as_ref() {
            let Some((request, send)) =
                tokio::time::timeout(Duration::from_secs(10), handle.next_request())
                    .await
                    .ok()
                    .flatten()
            else {
                panic!(
                    "the operator stopped calling; still expected {} {}",
                    current.method, current.path
                );
            };
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let query = request.uri().query().unwrap_or_default().to_string();
            let body = request.into_body().collect_bytes().await.expect("body");
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if path.contains("/events") {
                recorded.events.push(body.clone());
                send.send_response(
                    Response::builder()
                        .status(201)
                        .body(Body::from(serde_json::to_vec(&body).expect("json")))
                        .expect("response"),
                );
                continue;
            }
            assert_eq!(
                (method.as_str(), path.as_str()),
                (current.method, current.path.as_str()),
                "unexpected API call"
            );
            recorded.calls.push((method, path, query, body));
            let (status, answer) = &current.answer;
            send.send_response(
                Response::builder()
                    .status(*status)
                    .body(Body::from(serde_json::to_vec(answer).expect("json")))
                    .expect("response"),
            );
            next = steps.next();
        }
        recorded
    });
    (Client::new(service, "default"), task)
}

#[derive(Default, Debug)]
struct Recorded {
    /// (method, path, query, body)
    calls: Vec<(String, String, String, Value)>,
    events: Vec<Value>,
}

fn context(client: Client) -> Arc<Context> {
    Arc::new(Context {
        client: client.clone(),
        syncer: Syncer::new(client, Pusher::default(), 9901),
        reporter: Reporter {
            controller: "swiftfed-operator".into(),
            instance: Some("test".into()),
        },
        metrics: Arc::new(Metrics::default()),
        resync: Duration::from_secs(300),
    })
}

const FED: &str = "/apis/swiftfed.io/v1alpha1/namespaces/swift/clusterfederations";
const SECRETS: &str = "/api/v1/namespaces/swift/secrets";
const PODS: &str = "/api/v1/namespaces/swift/pods";

fn federation(finalizers: Value, deleting: bool, auth: Value) -> Value {
    let mut metadata = json!({"name": "f", "namespace": "swift", "uid": "uid-f", "generation": 2,
        "resourceVersion": "7", "creationTimestamp": "2026-11-01T00:00:00Z", "finalizers": finalizers});
    if deleting {
        metadata["deletionTimestamp"] = json!("2026-11-25T00:00:00Z");
    }
    json!({"apiVersion": "swiftfed.io/v1alpha1", "kind": "ClusterFederation", "metadata": metadata,
        "spec": {"proxySelector": {"matchLabels": {"app": "swift-proxy"}},
                 "clusters": [{"name": "dr", "endpoints": ["http://127.0.0.1:1"], "auth": auth}],
                 "routes": [{"match": {"account": "AUTH_a", "container": {"prefix": "arch-"}}, "target": {"cluster": "dr"}}]}})
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

/// A selected pod created while the webhook was down: no sidecar.
fn pod_without_sidecar() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "proxy-0", "namespace": "swift", "labels": {"app": "swift-proxy"}},
        "spec": {"containers": [{"name": "swift-proxy", "image": "swift"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.5"}})
}

fn admin_token() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "swiftfed-admin-token", "namespace": "swift"},
        "data": {"token": "c2VjcmV0LXRva2Vu"}})
}

fn decode_routing(secret: &Value) -> Value {
    let encoded = secret["data"]["routing.json"]
        .as_str()
        .expect("routing.json");
    let bytes: k8s_openapi::ByteString = serde_json::from_value(json!(encoded)).expect("base64");
    serde_json::from_slice(&bytes.0).expect("routing JSON")
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

#[tokio::test]
async fn a_new_federation_is_rendered_snapshotted_and_reported() {
    let fed = federation(json!([]), false, json!({"mode": "Passthrough"}));
    let with_finalizer = federation(
        json!(["swiftfed.io/routes"]),
        false,
        json!({"mode": "Passthrough"}),
    );
    let (client, server) = mock(vec![
        step("PATCH", &format!("{FED}/f"), 200, with_finalizer.clone()),
        step(
            "GET",
            FED,
            200,
            list("ClusterFederationList", vec![with_finalizer.clone()]),
        ),
        step(
            "GET",
            &format!("{SECRETS}/swiftfed-routing"),
            404,
            not_found("swiftfed-routing"),
        ),
        step(
            "PATCH",
            &format!("{SECRETS}/swiftfed-routing"),
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "swiftfed-routing"}}),
        ),
        step(
            "GET",
            &format!("{SECRETS}/swiftfed-admin-token"),
            200,
            admin_token(),
        ),
        step(
            "GET",
            PODS,
            200,
            list("PodList", vec![pod_without_sidecar()]),
        ),
        step(
            "PATCH",
            &format!("{FED}/f/status"),
            200,
            with_finalizer.clone(),
        ),
    ]);
    let fed: ClusterFederation = serde_json::from_value(fed).expect("federation");
    reconcile(Arc::new(fed), context(client))
        .await
        .expect("reconcile");
    let recorded = server.await.expect("mock server");

    // The finalizer is added with optimistic concurrency.
    let finalizer = &recorded.calls[0].3;
    assert_eq!(
        finalizer["metadata"]["finalizers"],
        json!(["swiftfed.io/routes"])
    );
    assert_eq!(finalizer["metadata"]["resourceVersion"], "7");

    // The snapshot: server-side apply, revision 1, the rendered route, owned by the federation.
    let (_, _, query, secret) = &recorded.calls[3];
    assert!(
        query.contains("fieldManager=swiftfed-operator") && query.contains("force=true"),
        "{query}"
    );
    assert_eq!(
        secret["metadata"]["annotations"]["swiftfed.io/revision"],
        "1"
    );
    assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], "uid-f");
    let table = decode_routing(secret);
    assert_eq!(table["revision"], 1);
    assert_eq!(table["routes"][0]["target"]["cluster"], "f/dr");
    assert_eq!(
        table["routes"][0]["proxySelector"]["matchLabels"]["app"],
        "swift-proxy"
    );

    // Status: the pod without a sidecar is missing, nothing is in sync, the cluster is down.
    let status = &recorded.calls[6].3["status"];
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["revision"], 1);
    assert_eq!(status["sidecars"]["selected"], 1);
    assert_eq!(status["sidecars"]["missing"], 1);
    assert_eq!(status["sidecars"]["summary"], "0/1");
    assert_eq!(status["sidecars"]["pods"][0]["state"], "Missing");
    assert_eq!(condition(status, "InvalidSpec")["status"], "False");
    assert_eq!(condition(status, "Degraded")["reason"], "SidecarMissing");
    assert!(condition(status, "Degraded")["message"]
        .as_str()
        .unwrap_or_default()
        .contains("swift/proxy-0"));
    assert_eq!(status["clusters"][0]["name"], "dr");
    assert_eq!(status["clusters"][0]["reachable"], false);
    // An event names the pod to fix.
    assert!(
        recorded
            .events
            .iter()
            .any(|e| e["reason"] == "SidecarMissing"
                && e["note"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("swift/proxy-0")),
        "{:?}",
        recorded.events
    );
}

#[tokio::test]
async fn a_missing_credentials_secret_is_invalid_spec_and_never_pushed() {
    let auth = json!({"mode": "Credentials", "credentialsSecretRef": {"name": "dr-creds"}});
    let fed = federation(json!(["swiftfed.io/routes"]), false, auth.clone());
    let (client, server) = mock(vec![
        step(
            "GET",
            FED,
            200,
            list("ClusterFederationList", vec![fed.clone()]),
        ),
        step(
            "GET",
            &format!("{SECRETS}/dr-creds"),
            404,
            not_found("dr-creds"),
        ),
        step(
            "GET",
            &format!("{SECRETS}/swiftfed-routing"),
            404,
            not_found("swiftfed-routing"),
        ),
        step(
            "PATCH",
            &format!("{SECRETS}/swiftfed-routing"),
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "swiftfed-routing"}}),
        ),
        step(
            "GET",
            &format!("{SECRETS}/swiftfed-admin-token"),
            200,
            admin_token(),
        ),
        step("GET", PODS, 200, list("PodList", vec![])),
        step("PATCH", &format!("{FED}/f/status"), 200, fed.clone()),
    ]);
    let fed: ClusterFederation = serde_json::from_value(fed).expect("federation");
    reconcile(Arc::new(fed), context(client))
        .await
        .expect("reconcile");
    let recorded = server.await.expect("mock server");

    let table = decode_routing(&recorded.calls[3].3);
    assert_eq!(
        table["routes"],
        json!([]),
        "an invalid federation's routes are never pushed"
    );
    let status = &recorded.calls[6].3["status"];
    let invalid = condition(status, "InvalidSpec");
    assert_eq!(invalid["status"], "True");
    assert!(
        invalid["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Secret swift/dr-creds not found"),
        "{invalid}"
    );
    assert_eq!(condition(status, "Ready")["status"], "False");
    assert!(recorded.events.iter().any(|e| e["reason"] == "InvalidSpec"));
    // The snapshot never contains a key (there is none) and the status never does either.
    assert!(!status.to_string().contains("key"));
}

#[tokio::test]
async fn deleting_a_federation_removes_its_routes_before_the_finalizer_goes() {
    let fed = federation(
        json!(["swiftfed.io/routes", "other/keep"]),
        true,
        json!({"mode": "Passthrough"}),
    );
    let previous = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "swiftfed-routing", "annotations": {"swiftfed.io/revision": "4", "swiftfed.io/config-hash": "old"}}});
    let (client, server) = mock(vec![
        step(
            "GET",
            FED,
            200,
            list("ClusterFederationList", vec![fed.clone()]),
        ),
        step("GET", &format!("{SECRETS}/swiftfed-routing"), 200, previous),
        step(
            "PATCH",
            &format!("{SECRETS}/swiftfed-routing"),
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "swiftfed-routing"}}),
        ),
        step(
            "GET",
            &format!("{SECRETS}/swiftfed-admin-token"),
            200,
            admin_token(),
        ),
        step("GET", PODS, 200, list("PodList", vec![])),
        step("PATCH", &format!("{FED}/f"), 200, fed.clone()),
    ]);
    let fed: ClusterFederation = serde_json::from_value(fed).expect("federation");
    reconcile(Arc::new(fed), context(client))
        .await
        .expect("reconcile");
    let recorded = server.await.expect("mock server");

    // The routes are gone in a newer revision first...
    let secret = &recorded.calls[2].3;
    assert_eq!(
        secret["metadata"]["annotations"]["swiftfed.io/revision"],
        "5"
    );
    assert_eq!(decode_routing(secret)["routes"], json!([]));
    // ...then only our finalizer is released.
    assert_eq!(
        recorded.calls[5].3["metadata"]["finalizers"],
        json!(["other/keep"])
    );
}

#[test]
fn status_output_lists_pods() {
    let fed: ClusterFederation =
        serde_json::from_value(federation(json!([]), false, json!({"mode": "Passthrough"})))
            .expect("federation");
    let mut fed = fed;
    fed.status = Some(serde_json::from_value(json!({
        "revision": 3,
        "sidecars": {"selected": 2, "inSync": 1, "rejected": 1, "missing": 0, "summary": "1/2",
            "pods": [{"name": "swift/a", "state": "InSync", "revision": 3},
                     {"name": "swift/b", "state": "Rejected", "lastError": "422: bad"}]},
        "conditions": [{"type": "Ready", "status": "False", "reason": "Syncing", "message": "waiting",
            "lastTransitionTime": "2026-11-25T00:00:00Z"}]
    })).expect("status"));
    let text = swiftfed_operator::cli::format_status(&[fed]);
    assert!(text.contains("swift/f  revision 3  synced 1/2"), "{text}");
    assert!(
        text.contains("swift/b") && text.contains("Rejected") && text.contains("422: bad"),
        "{text}"
    );
}

#[tokio::test]
async fn an_updated_spec_gets_a_newer_revision() {
    let fed = federation(
        json!(["swiftfed.io/routes"]),
        false,
        json!({"mode": "Passthrough"}),
    );
    let previous = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "swiftfed-routing", "annotations": {"swiftfed.io/revision": "1", "swiftfed.io/config-hash": "hash-of-the-old-spec"}}});
    let (client, server) = mock(vec![
        step(
            "GET",
            FED,
            200,
            list("ClusterFederationList", vec![fed.clone()]),
        ),
        step("GET", &format!("{SECRETS}/swiftfed-routing"), 200, previous),
        step(
            "PATCH",
            &format!("{SECRETS}/swiftfed-routing"),
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "swiftfed-routing"}}),
        ),
        step(
            "GET",
            &format!("{SECRETS}/swiftfed-admin-token"),
            200,
            admin_token(),
        ),
        step("GET", PODS, 200, list("PodList", vec![])),
        step("PATCH", &format!("{FED}/f/status"), 200, fed.clone()),
    ]);
    let parsed: ClusterFederation = serde_json::from_value(fed).expect("federation");
    reconcile(Arc::new(parsed), context(client))
        .await
        .expect("reconcile");
    let recorded = server.await.expect("mock server");
    let secret = &recorded.calls[2].3;
    assert_eq!(
        secret["metadata"]["annotations"]["swiftfed.io/revision"],
        "2"
    );
    assert_eq!(decode_routing(secret)["revision"], 2);
    let status = &recorded.calls[5].3["status"];
    assert_eq!(status["revision"], 2);
    // No sidecars selected: nothing to wait for, so the federation is Ready.
    assert_eq!(condition(status, "Ready")["status"], "True");
}
