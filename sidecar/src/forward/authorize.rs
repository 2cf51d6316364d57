//! Local authorization of requests the sidecar sends with its own credentials: the local
//! cluster decides, for every account (and container, through its ACL shadow) a request
//! touches, before the target sees the request.

use http::header::{self, HeaderMap};
use http::{Method, Response};

use super::{strip_hop_by_hop, Refusal};
use crate::auth::{self, Access, Verdict};
use crate::body;
use crate::copy;
use crate::route_table::RouteTable;
use crate::slo;
use crate::state::{Active, State};
use crate::swift_path::SwiftPath;

/// Reading `end` with the sidecar's own credentials needs the local cluster to allow the
/// client to read its account.
pub(super) async fn authorize_target(
    state: &State,
    active: &Active,
    client_headers: &HeaderMap,
    end: &copy::End,
) -> Result<(), Refusal> {
    let uses_credentials = end
        .cluster
        .as_ref()
        .and_then(|c| active.clusters.get(c))
        .is_some_and(|c| c.tokens.is_some());
    if uses_credentials {
        authorize_locally(state, client_headers, &end.account, &Method::GET).await?;
    }
    Ok(())
}

/// Whether the local cluster treats the client as the account's owner (cached like the other
/// checks). Any doubt counts as "not an owner".
pub(super) async fn is_owner(state: &State, client_headers: &HeaderMap, account: &str) -> bool {
    matches!(
        state
            .authorizer
            .check(&state.local, client_headers, account, Access::Owner)
            .await,
        Verdict::Allowed
    )
}

/// The client-side account and container of the object a target followed a symlink to
/// (`Content-Location`).
pub(super) fn followed_object(
    headers: &HeaderMap,
    routes: &RouteTable,
    cluster: &str,
) -> Option<(String, String)> {
    let location = headers.get(header::CONTENT_LOCATION)?.to_str().ok()?;
    let path = SwiftPath::parse(location)?;
    let container = path.container.as_deref()?;
    Some(
        routes
            .client_names(cluster, &path.account, container)
            .unwrap_or_else(|| (path.account.clone(), container.to_string())),
    )
}

/// Whether a write asks the target to reach other objects later with the sidecar's rights:
/// a large object manifest or a symlink. Swift checks those with the client's own rights;
/// the sidecar, for a client allowed by a container ACL only, cannot.
pub(super) fn acl_only_reaches_beyond(
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
) -> bool {
    let manifest_put = *method == Method::PUT && slo::is_manifest(query, "put");
    manifest_put
        || [
            "x-object-manifest",
            "x-symlink-target",
            "x-symlink-target-account",
        ]
        .iter()
        .any(|h| headers.contains_key(*h))
}

/// Whether an answer is a large object whose segments the target read (or will read) outside
/// `own` container: any SLO (its segments are not listed in the answer), a DLO elsewhere.
pub(super) fn reads_segments_elsewhere(
    headers: &HeaderMap,
    query: Option<&str>,
    own: Option<&str>,
) -> bool {
    if slo::is_manifest(query, "get") {
        return false;
    }
    let slo = headers
        .get("x-static-large-object")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let dlo_elsewhere = headers
        .get("x-object-manifest")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let container = v.split('/').next().unwrap_or_default();
            crate::swift_path::decode(container).as_deref() != own
        });
    slo || dlo_elsewhere
}

/// Every account the request touches must be authorized locally: its own (read or write by
/// method) and those named in headers (a copy's source is read, a COPY's destination written).
pub(super) async fn authorize_locally(
    state: &State,
    client_headers: &HeaderMap,
    account: &str,
    method: &Method,
) -> Result<(), Refusal> {
    authorize_locally_in(state, client_headers, account, None, method)
        .await
        .map(|_| ())
}

/// `authorize_locally`, where the request's own account may also be granted by the ACLs of
/// `own` (its container, and whether it names an object), as mirrored locally (`acl_shadow`).
/// Accounts named in headers are checked at account level only. `Ok(true)`: the request's own
/// access was granted by the container's ACL only.
pub(super) async fn authorize_locally_in(
    state: &State,
    client_headers: &HeaderMap,
    account: &str,
    own: Option<(&str, bool)>,
    method: &Method,
) -> Result<bool, Refusal> {
    let mut acl_only = false;
    for (i, (account, access)) in auth::required_checks(method, client_headers, account)
        .into_iter()
        .enumerate()
    {
        let mut verdict = state
            .authorizer
            .check(&state.local, client_headers, &account, access)
            .await;
        // The first check is the request's own (COPY: a read of its own object).
        let container_access = own.and_then(|(container, has_object)| {
            let method = if i == 0 && access == Access::Read {
                &Method::GET
            } else {
                method
            };
            Some(container).zip(auth::ContainerAccess::of(method, has_object))
        });
        if let (0, Verdict::Denied { .. }, Some((container, wanted))) =
            (i, &verdict, container_access)
        {
            match state
                .authorizer
                .check_container(&state.local, client_headers, &account, container, wanted)
                .await
            {
                // Any doubt about the container keeps the account-level denial.
                Verdict::Unavailable(reason) => {
                    tracing::warn!(%reason, "container-level authorization check failed");
                }
                other => {
                    acl_only = matches!(other, Verdict::Allowed);
                    verdict = other;
                }
            }
        }
        let result = match &verdict {
            Verdict::Allowed => "allowed",
            Verdict::Denied { .. } => "denied",
            Verdict::Unavailable(_) => "unavailable",
        };
        state
            .metrics
            .authz_checks
            .get_or_create(&crate::metrics::ResultLabels {
                result: result.into(),
            })
            .inc();
        match verdict {
            Verdict::Allowed => {}
            Verdict::Denied {
                status,
                headers,
                body,
            } => {
                let mut r = Response::new(body::full(body));
                *r.status_mut() = status;
                *r.headers_mut() = headers;
                strip_hop_by_hop(r.headers_mut());
                return Err(Refusal::Denied(r));
            }
            Verdict::Unavailable(reason) => return Err(Refusal::Unavailable(reason)),
        }
    }
    Ok(acl_only)
}
