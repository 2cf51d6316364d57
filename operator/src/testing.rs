//! An in-memory Kubernetes API for tests and benchmarks: objects in a map, served through kube's
//! mocked client. It answers GET (object or list), POST, PUT, PATCH (merge semantics, also for
//! server-side apply) and status updates; enough for the operator's calls, nothing more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

/// Objects by API path (`/api/v1/namespaces/swift/secrets/x`); lists are served by prefix.
#[derive(Default)]
pub struct FakeApi {
    pub objects: HashMap<String, Value>,
}

impl FakeApi {
    pub fn answer(&mut self, method: &str, path: &str, body: Value) -> (u16, Value) {
        if path.ends_with("/events") {
            return (201, body);
        }
        match method {
            "GET" => {
                if let Some(o) = self.objects.get(path) {
                    return (200, o.clone());
                }
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|(k, _)| k.rsplit_once('/').map(|(dir, _)| dir) == Some(path))
                    .map(|(_, v)| v.clone())
                    .collect();
                let is_list = ["clusterfederations", "secrets", "pods"]
                    .iter()
                    .any(|r| path.ends_with(&format!("/{r}")));
                if !is_list {
                    return (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
                    );
                }
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            "PATCH" | "POST" | "PUT" => {
                let (key, status_only) = match path.strip_suffix("/status") {
                    Some(k) => (k.to_string(), true),
                    None => (path.to_string(), false),
                };
                let key = if method == "POST" {
                    format!(
                        "{key}/{}",
                        body["metadata"]["name"].as_str().unwrap_or_default()
                    )
                } else {
                    key
                };
                let mut object = self.objects.get(&key).cloned().unwrap_or(json!({}));
                if body.is_array() {
                    // A JSON patch (RFC 6902).
                    let Ok(patch) = serde_json::from_value::<json_patch::Patch>(body) else {
                        return (
                            422,
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422, "message": "bad JSON patch"}),
                        );
                    };
                    if json_patch::patch(&mut object, &patch).is_err() {
                        return (
                            422,
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422, "message": "JSON patch does not apply"}),
                        );
                    }
                } else if status_only {
                    object["status"] = body["status"].clone();
                } else {
                    merge(&mut object, &body);
                }
                self.objects.insert(key, object.clone());
                (if method == "POST" { 201 } else { 200 }, object)
            }
            _ => (405, json!({})),
        }
    }
}

fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

pub fn serve(api: Arc<Mutex<FakeApi>>) -> Client {
    let service = tower::service_fn(move |request: Request<Body>| {
        let api = api.clone();
        async move {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let body = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let (status, answer) = api
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .answer(&method, &path, body);
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).unwrap_or_default()))
        }
    });
    Client::new(service, "default")
}
