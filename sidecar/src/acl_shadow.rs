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
#[derive(Debug)]
pub enum Update {
    /// Set or remove ACLs (the ACL headers as forwarded to the target).
    Acls(HeaderMap),
    Delete,
}

/// The shadow update a request implies: container `PUT`/`POST` carrying ACL headers (only an
/// owner's keep them: the sidecar strips them otherwise), container `DELETE`.
pub fn update(method: &Method, path: &SwiftPath<'_>, forwarded: &HeaderMap) -> Option<Update> {
    if path.container.is_none() || path.has_object {
        return None;
    }
    match *method {
        Method::PUT | Method::POST => {
            let acls: HeaderMap = ACL_HEADERS
                .iter()
                .filter_map(|name| {
                    let value = forwarded.get(*name)?.clone();
                    Some((http::HeaderName::from_static(name), value))
                })
                .collect();
            (!acls.is_empty()).then_some(Update::Acls(acls))
        }
        Method::DELETE => Some(Update::Delete),
        _ => None,
    }
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
    let (method, creates) = match &update {
        Update::Acls(acls) => {
            headers.extend(acls.clone());
            (Method::POST, true)
        }
        Update::Delete => (Method::DELETE, false),
    };
    let first = send(local, method, &path, &headers).await;
    // POST to a shadow that does not exist yet: create it with the ACLs.
    let status = match first {
        Some(StatusCode::NOT_FOUND) if creates => send(local, Method::PUT, &path, &headers).await,
        other => other,
    };
    match status {
        Some(s) if s.is_success() => {}
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
