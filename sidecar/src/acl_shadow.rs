//! Container ACLs of routed containers, mirrored on the local cluster so that its own Swift can
//! evaluate them (`auth::LocalAuthorizer::check_container`) in `Credentials` mode.
//!
//! The mirror is a local container with the routed container's name (the "shadow"): clients
//! never reach it through the sidecar, whose route sends every request for that name to the
//! target. When an owner sets or removes `X-Container-Read`/`X-Container-Write` on a routed
//! container through the sidecar and the target accepts it, the same headers are applied to
//! the shadow with the client's own token (creating it if needed); deleting the routed
//! container deletes the shadow. In `Migrate` mode the shadow is the local container being
//! migrated, whose ACLs are thereby kept equal to the target's. ACLs set on the target
//! directly, bypassing the sidecar, are not mirrored.

use http::{HeaderMap, Method, StatusCode};

use crate::body::BodySlot;
use crate::swift_path::{encode_segment, SwiftPath};
use crate::upstream::{Outgoing, Upstream};

/// The ACL headers Swift keeps on a container, and their removing forms.
const ACL_HEADERS: [&str; 4] = [
    "x-container-read",
    "x-container-write",
    "x-remove-container-read",
    "x-remove-container-write",
];

/// What a container request, once the target accepted it, changes on the shadow.
#[derive(Debug, PartialEq)]
pub enum Update {
    /// Set or remove ACLs (the ACL headers as forwarded to the target; only an owner's keep
    /// them, the sidecar strips them otherwise).
    Acls(HeaderMap),
    /// A container `PUT`: if it created the container (201), the target has exactly these ACLs,
    /// so the shadow's others go (a stale shadow, left by a container deleted on the target
    /// directly, must not outlive its re-creation); otherwise as `Acls`. Not in `Migrate`
    /// mode, where the shadow is the real local container and keeps what it has.
    Put(HeaderMap),
    Delete,
}

/// The shadow update a container `PUT`/`POST`/`DELETE` implies.
pub fn update(
    method: &Method,
    path: &SwiftPath<'_>,
    forwarded: &HeaderMap,
    migrating: bool,
) -> Option<Update> {
    if path.container.is_none() || path.has_object {
        return None;
    }
    let acls = || -> HeaderMap {
        ACL_HEADERS
            .iter()
            .filter_map(|name| {
                let value = forwarded.get(*name)?.clone();
                Some((http::HeaderName::from_static(name), value))
            })
            .collect()
    };
    match *method {
        Method::PUT if !migrating => Some(Update::Put(acls())),
        Method::PUT | Method::POST => Some(acls()).filter(|a| !a.is_empty()).map(Update::Acls),
        Method::DELETE => Some(Update::Delete),
        _ => None,
    }
}

/// The headers that make the shadow's ACLs exactly `acls`: every ACL not set is removed.
fn exactly(mut acls: HeaderMap) -> HeaderMap {
    for (set, remove) in [
        ("x-container-read", "x-remove-container-read"),
        ("x-container-write", "x-remove-container-write"),
    ] {
        if !acls.contains_key(set) {
            acls.insert(remove, http::HeaderValue::from_static("x"));
        }
    }
    acls
}

/// Whether the headers set an ACL (rather than only remove): only then is a shadow created.
fn sets_any(acls: &HeaderMap) -> bool {
    ["x-container-read", "x-container-write"]
        .iter()
        .any(|name| acls.contains_key(*name))
}

/// Applies `update` to the shadow of `account`/`container` with the client's credentials. A
/// failure is logged and otherwise ignored: the target already answered the client, and a
/// missing or stale mirror only ever refuses (it grants no one more than the local ACLs say).
pub async fn apply(
    local: &Upstream,
    client_headers: &HeaderMap,
    account: &str,
    container: &str,
    update: Update,
    target_status: StatusCode,
) {
    let path = format!(
        "/v1/{}/{}",
        encode_segment(account),
        encode_segment(container)
    );
    let mut headers = HeaderMap::new();
    for name in ["x-auth-token", "x-storage-token", "x-service-token", "host"] {
        if let Some(v) = client_headers.get(name) {
            headers.insert(name, v.clone());
        }
    }
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("0"),
    );
    let acls = match update {
        Update::Put(acls) if target_status == StatusCode::CREATED => Some(exactly(acls)),
        Update::Put(acls) | Update::Acls(acls) => Some(acls),
        Update::Delete => None,
    };
    let (method, creates) = match acls {
        Some(acls) if acls.is_empty() => return,
        Some(acls) => {
            let creates = sets_any(&acls);
            headers.extend(acls);
            (Method::POST, creates)
        }
        None => (Method::DELETE, false),
    };
    let first = send(local, method, &path, &headers).await;
    // POST to a shadow that does not exist yet: create it with the ACLs.
    let status = match first {
        Some(StatusCode::NOT_FOUND) if creates => send(local, Method::PUT, &path, &headers).await,
        other => other,
    };
    match status {
        Some(s) if s.is_success() => {}
        // Nothing to remove from, or to delete.
        Some(StatusCode::NOT_FOUND) if !creates => {}
        other => tracing::warn!(
            account,
            container,
            status = ?other,
            "could not update the local ACL shadow container"
        ),
    }
}

async fn send(
    local: &Upstream,
    method: Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<StatusCode> {
    let out = Outgoing {
        method,
        path_and_query: path.to_string(),
        headers: headers.clone(),
        endpoint_host: false,
        expect_continue: false,
    };
    local
        .send(&out, &BodySlot::new(None))
        .await
        .ok()
        .map(|(r, _)| r.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn container_requests_imply_shadow_updates() {
        let container = SwiftPath::parse("/v1/AUTH_a/c").expect("path");
        let object = SwiftPath::parse("/v1/AUTH_a/c/o").expect("path");
        let acl = headers(&[("x-container-read", "a:b"), ("x-container-meta-k", "v")]);
        let only_acl = headers(&[("x-container-read", "a:b")]);
        assert_eq!(
            update(&Method::POST, &container, &acl, false),
            Some(Update::Acls(only_acl.clone()))
        );
        assert_eq!(
            update(&Method::POST, &container, &headers(&[]), false),
            None,
            "a POST without ACLs leaves the shadow alone"
        );
        assert_eq!(
            update(&Method::PUT, &container, &acl, false),
            Some(Update::Put(only_acl.clone()))
        );
        assert_eq!(
            update(&Method::DELETE, &container, &acl, false),
            Some(Update::Delete)
        );
        assert_eq!(update(&Method::PUT, &object, &acl, false), None);
        assert_eq!(
            update(&Method::PUT, &container, &acl, true),
            Some(Update::Acls(only_acl.clone())),
            "migrating: the local container keeps the ACLs it has"
        );
        let exact = exactly(only_acl);
        assert_eq!(
            exact.get("x-remove-container-write").map(|v| v.as_bytes()),
            Some(&b"x"[..])
        );
        assert!(!exact.contains_key("x-remove-container-read"));
        assert!(sets_any(&exact));
        assert!(!sets_any(&exactly(HeaderMap::new())));
    }
}
