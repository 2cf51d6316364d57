//! An in-memory Kubernetes API for tests and benchmarks: objects in a map, served through kube's
//! mocked client. It answers GET (object, namespaced or cluster-wide list), POST, PUT, PATCH
//! (merge semantics, also for server-side apply) and status updates; watches are refused with
//! `410 Gone` (a watcher then backs off and lists again), so informers work from lists alone.
//! Every request is also recorded as the RBAC permission it needs ([`Access`]), which is how the
//! chart's RBAC is checked against what the operator's code really does.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

/// Objects by API path (`/api/v1/namespaces/swift/secrets/x`); lists are served by prefix.
#[derive(Default)]
pub struct FakeApi {
    pub objects: HashMap<String, Value>,
    /// Every request served, as the permission it needs.
    pub accesses: BTreeSet<Access>,
}

/// One request as RBAC sees it: verb, API group, resource (`resource/subresource`), namespace
/// (`None`: cluster-wide or a cluster-scoped resource) and object name (`None` for collections).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// A request path split the way the API server routes it.
#[derive(Debug, PartialEq, Eq)]
pub struct ApiPath {
    /// `/api/v1` or `/apis/GROUP/VERSION`.
    pub prefix: String,
    pub group: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl ApiPath {
    pub fn parse(path: &str) -> Option<ApiPath> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (prefix, group, rest) = match parts.as_slice() {
            ["api", version, rest @ ..] => (format!("/api/{version}"), String::new(), rest),
            ["apis", group, version, rest @ ..] => {
                (format!("/apis/{group}/{version}"), group.to_string(), rest)
            }
            _ => return None,
        };
        let (namespace, rest) = match rest {
            // `/api/v1/namespaces/x` is the Namespace object itself, not a namespaced path.
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
            _ => (None, rest),
        };
        let (resource, name, subresource) = match rest {
            [resource] => (resource.to_string(), None, None),
            [resource, name] => (resource.to_string(), Some(name.to_string()), None),
            [resource, name, sub] => (
                resource.to_string(),
                Some(name.to_string()),
                Some(sub.to_string()),
            ),
            _ => return None,
        };
        Some(ApiPath {
            prefix,
            group,
            namespace,
            resource,
            name,
            subresource,
        })
    }

    /// The RBAC verb of `method` on this path (`query` tells a watch from a list).
    pub fn access(&self, method: &str, query: &str) -> Access {
        let watch = query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1");
        let verb = match (method, self.name.is_some()) {
            ("GET", _) if watch => "watch",
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            (other, _) => other,
        };
        Access {
            verb: verb.to_string(),
            group: self.group.clone(),
            resource: match &self.subresource {
                Some(sub) => format!("{}/{sub}", self.resource),
                None => self.resource.clone(),
            },
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": message})
}

impl FakeApi {
    /// Answers a request and records the permission it needs.
    pub fn request(&mut self, method: &str, path: &str, query: &str, body: Value) -> (u16, Value) {
        let parsed = ApiPath::parse(path);
        if let Some(p) = &parsed {
            self.accesses.insert(p.access(method, query));
        }
        if method == "GET"
            && query
                .split('&')
                .any(|p| p == "watch=true" || p == "watch=1")
        {
            return (
                410,
                status(410, "Expired", "watch not served here: list again"),
            );
        }
        self.answer(method, path, body)
    }

    pub fn answer(&mut self, method: &str, path: &str, body: Value) -> (u16, Value) {
        if path.ends_with("/events") {
            return (201, body);
        }
        let parsed = ApiPath::parse(path);
        if method == "PATCH"
            && parsed.as_ref().is_some_and(|p| p.resource == "events")
            && !self.objects.contains_key(path)
        {
            // Event series updates (kube's Recorder) patch the event it created.
            return (200, body);
        }
        match method {
            "GET" => {
                if let Some(o) = self.objects.get(path) {
                    return (200, o.clone());
                }
                let collection = parsed.filter(|p| p.name.is_none());
                let Some(collection) = collection else {
                    return (404, status(404, "NotFound", "not found"));
                };
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|(k, _)| {
                        ApiPath::parse(k).is_some_and(|o| {
                            o.subresource.is_none()
                                && o.prefix == collection.prefix
                                && o.resource == collection.resource
                                && (collection.namespace.is_none()
                                    || o.namespace == collection.namespace)
                        })
                    })
                    .map(|(_, v)| v.clone())
                    .collect();
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
                if method == "POST" && self.objects.contains_key(&key) {
                    return (409, status(409, "AlreadyExists", "already exists"));
                }
                let mut object = self.objects.get(&key).cloned().unwrap_or(json!({}));
                if body.is_array() {
                    // A JSON patch (RFC 6902).
                    let Ok(patch) = serde_json::from_value::<json_patch::Patch>(body) else {
                        return (422, status(422, "Invalid", "bad JSON patch"));
                    };
                    if json_patch::patch(&mut object, &patch).is_err() {
                        return (422, status(422, "Invalid", "JSON patch does not apply"));
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
            let query = request.uri().query().unwrap_or_default().to_string();
            let body = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let (status, answer) = api
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .request(&method, &path, &query, body);
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).unwrap_or_default()))
        }
    });
    Client::new(service, "default")
}
