//! Leader election on a Lease, against an in-memory API that enforces resourceVersion like the
//! real one: one replica leads, the other takes over only when the lease expires or is released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use swiftfed_operator::leader::LeaderElector;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

fn fake_api() -> Client {
    let leases: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        let mut version = 0u64;
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let body = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let mut body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let name = path.strip_prefix(&format!("{LEASES}/")).map(str::to_string);
            let mut leases = leases.lock().expect("leases");
            let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "conflict"});
            let (status, answer) = match (method.as_str(), name) {
                ("GET", Some(name)) => match leases.get(&name) {
                    Some(l) => (200, l.clone()),
                    None => (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
                    ),
                },
                ("POST", None) => {
                    let name = body["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    match leases.entry(name) {
                        std::collections::hash_map::Entry::Occupied(_) => (409, conflict),
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            version += 1;
                            body["metadata"]["resourceVersion"] = json!(version.to_string());
                            slot.insert(body.clone());
                            (201, body)
                        }
                    }
                }
                ("PUT", Some(name)) => {
                    let current = leases
                        .get(&name)
                        .map(|l| l["metadata"]["resourceVersion"].clone());
                    if current != Some(body["metadata"]["resourceVersion"].clone()) {
                        (409, conflict)
                    } else {
                        version += 1;
                        body["metadata"]["resourceVersion"] = json!(version.to_string());
                        leases.insert(name, body.clone());
                        (200, body)
                    }
                }
                _ => (405, json!({})),
            };
            send.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&answer).unwrap_or_default()))
                    .expect("response"),
            );
        }
    });
    Client::new(service, "default")
}

#[tokio::test]
async fn one_leader_at_a_time_and_takeover_on_expiry_or_release() {
    let client = fake_api();
    let lease = Duration::from_secs(1);
    let one = LeaderElector::new(client.clone(), "ops", "swiftfed", "one", lease);
    let two = LeaderElector::new(client, "ops", "swiftfed", "two", lease);

    assert!(
        one.try_acquire_or_renew().await.expect("api"),
        "first replica takes the free lease"
    );
    assert!(
        !two.try_acquire_or_renew().await.expect("api"),
        "second waits while it is held"
    );
    assert!(
        one.try_acquire_or_renew().await.expect("api"),
        "the holder renews"
    );
    assert!(!two.try_acquire_or_renew().await.expect("api"));

    // The holder stops renewing (it died): the other takes over once the lease expired, not before.
    let stopped = Instant::now();
    let deadline = stopped + Duration::from_secs(10);
    while !two.try_acquire_or_renew().await.expect("api") {
        assert!(Instant::now() < deadline, "no takeover after expiry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        stopped.elapsed() >= lease - Duration::from_millis(100),
        "took over after {:?}, before expiry",
        stopped.elapsed()
    );
    assert!(
        !one.try_acquire_or_renew().await.expect("api"),
        "the old leader does not get it back"
    );

    // A graceful stop releases the lease: the other replica need not wait.
    two.release().await;
    assert!(
        one.try_acquire_or_renew().await.expect("api"),
        "released lease is taken at once"
    );
}
