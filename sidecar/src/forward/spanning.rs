//! Requests the sidecar answers by talking to several clusters: copies whose ends live in
//! different clusters (`copy`), bulk deletes split by route (`bulk`), archives extracted into
//! containers of several clusters (`extract`), merged account listings (`listing`).

use std::sync::Arc;

use http::header::HeaderMap;
use http::{Method, Response, StatusCode};

use super::authorize::authorize_locally;
use super::{swift_error, ProxyResponse, Refusal};
use crate::body::{BodySlot, ProxyBody};
use crate::bulk;
use crate::copy;
use crate::extract;
use crate::listing;
use crate::state::{Active, State};
use crate::swift_path::SwiftPath;

/// A bulk delete split across clusters (`bulk`). With the sidecar's own credentials on a
/// target, the local cluster must first allow the client to write in the account.
pub(super) async fn bulk_delete(
    state: &State,
    active: &Active,
    method: &Method,
    path: &SwiftPath<'_>,
    headers: &HeaderMap,
    body: &BodySlot,
) -> Result<Option<Response<ProxyBody>>, Refusal> {
    let uses_credentials = active
        .routes
        .container_routes(&path.account)
        .iter()
        .any(|r| {
            active
                .clusters
                .get(&r.cluster)
                .is_some_and(|c| c.tokens.is_some())
        });
    let mut refused_remote = None;
    if uses_credentials {
        if let Err(refusal) =
            authorize_locally(state, headers, &path.account, &Method::DELETE).await
        {
            // Swift's bulk middleware tells a refused client in its answer, name by name.
            refused_remote = match &refusal {
                Refusal::Denied(r) if r.status() == StatusCode::UNAUTHORIZED => {
                    Some("401 Unauthorized")
                }
                Refusal::Denied(r) if r.status() == StatusCode::FORBIDDEN => Some("403 Forbidden"),
                _ => return Err(refusal),
            };
        }
    }
    bulk::run(
        state,
        active,
        method,
        &path.account,
        headers,
        body,
        refused_remote,
    )
    .await
    .map_err(|e| Refusal::Denied(swift_error(e.status(), &e.to_string())))
}

/// An archive extracted by the sidecar into the clusters its containers live in (`extract`).
/// With the sidecar's own credentials on any cluster the account's containers may live in,
/// the local cluster must first allow the client to write in the account (containers may have
/// to be created): a client it does not allow gets Swift's answer for it, with 403 for every
/// entry in those clusters (an ACL-only writer included: the safe side) and the local
/// cluster's own verdicts for its containers.
pub(super) async fn extract_archive(
    state: &Arc<State>,
    active: &Arc<Active>,
    path: &SwiftPath<'_>,
    base: String,
    compression: extract::Compression,
    headers: &HeaderMap,
    body: &BodySlot,
) -> Result<Option<Response<ProxyBody>>, Refusal> {
    let routes = &active.routes;
    let mut clusters: Vec<&str> = routes
        .container_routes(&path.account)
        .iter()
        .map(|r| r.cluster.as_str())
        .collect();
    if let Some(r) = routes.lookup(&path.account, path.container.as_deref()) {
        clusters.push(&r.cluster);
    }
    let uses_credentials = clusters
        .iter()
        .any(|c| active.clusters.get(*c).is_some_and(|c| c.tokens.is_some()));
    let mut forbidden_remote = false;
    if uses_credentials {
        if let Err(refusal) = authorize_locally(state, headers, &path.account, &Method::PUT).await {
            // Swift's bulk middleware tells a refused client in its answer: an unknown one
            // at once, a known one without rights entry by entry.
            match &refusal {
                Refusal::Denied(r) if r.status() == http::StatusCode::UNAUTHORIZED => {
                    if let Some(answer) = extract::unauthorized(headers) {
                        return Ok(Some(answer));
                    }
                    return Err(refusal);
                }
                Refusal::Denied(r) if r.status() == http::StatusCode::FORBIDDEN => {
                    forbidden_remote = true;
                }
                _ => return Err(refusal),
            }
        }
    }
    Ok(extract::run(extract::Request {
        state: state.clone(),
        active: active.clone(),
        account: path.account.clone(),
        base,
        compression,
        headers: headers.clone(),
        body: body.clone(),
        forbidden_remote,
    })
    .await)
}

/// A copy inside one cluster whose source is one of the sidecar's stand-ins, done as a copy
/// across clusters is (`copy::stands_in`); `None`: Swift's to do. With the sidecar's own
/// credentials on the source's cluster, the local cluster must first let the client read it.
pub(super) async fn stand_in_copy(
    state: &State,
    active: &Active,
    method: &Method,
    path: &SwiftPath<'_>,
    raw_path: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<copy::Plan>, Refusal> {
    let Some(plan) = copy::same_cluster(&active.routes, method, path, raw_path, headers, query)
    else {
        return Ok(None);
    };
    let uses_credentials = plan
        .source
        .cluster
        .as_ref()
        .and_then(|c| active.clusters.get(c))
        .is_some_and(|c| c.tokens.is_some());
    if uses_credentials {
        authorize_locally(state, headers, &plan.source.account, &Method::GET).await?;
    }
    let stands_in = copy::stands_in(state, active, &plan, headers)
        .await
        .map_err(|e| Refusal::Denied(swift_error(e.status(), &e.to_string())))?;
    Ok(stands_in.then_some(plan))
}

/// A copy whose ends live in different clusters (`copy`).
pub(super) struct CrossClusterCopy<'r> {
    state: &'r Arc<State>,
    active: &'r Arc<Active>,
    method: &'r Method,
    path: &'r SwiftPath<'r>,
    plan: &'r copy::Plan,
    headers: &'r HeaderMap,
}

pub(super) fn cross_cluster_copy<'r>(
    state: &'r Arc<State>,
    active: &'r Arc<Active>,
    method: &'r Method,
    path: &'r SwiftPath<'r>,
    plan: &'r copy::Plan,
    headers: &'r HeaderMap,
) -> CrossClusterCopy<'r> {
    CrossClusterCopy {
        state,
        active,
        method,
        path,
        plan,
        headers,
    }
}

impl CrossClusterCopy<'_> {
    /// With the sidecar's own credentials on either end, the local cluster must first allow
    /// the client to read the source's account and write the destination's.
    pub(super) async fn run(
        self,
        query: Option<&str>,
        body: &BodySlot,
    ) -> Result<ProxyResponse, Refusal> {
        let uses_credentials = [&self.plan.source.cluster, &self.plan.dest.cluster]
            .into_iter()
            .flatten()
            .any(|c| {
                self.active
                    .clusters
                    .get(c)
                    .is_some_and(|c| c.tokens.is_some())
            });
        if uses_credentials {
            authorize_locally(self.state, self.headers, &self.path.account, self.method).await?;
        }
        match copy::run(
            self.state,
            self.active,
            self.plan,
            self.headers,
            query,
            body,
        )
        .await
        {
            Ok(copy::Outcome::Upstream(response, idle)) => {
                Ok(ProxyResponse::Upstream { response, idle })
            }
            Ok(copy::Outcome::Local(response)) => Ok(ProxyResponse::Local(response)),
            Err(e) => Err(Refusal::Denied(swift_error(e.status(), &e.to_string()))),
        }
    }
}

/// An account listing merged across clusters (`listing`); `None` when Swift should answer the
/// request itself. With the sidecar's own credentials on a target, the local cluster must
/// first allow the client to read the account.
pub(super) async fn merged_listing(
    state: &State,
    active: &Active,
    method: &Method,
    path: &SwiftPath<'_>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Option<Response<ProxyBody>>, Refusal> {
    let home = active.routes.lookup(&path.account, None);
    let home_uses_credentials = home
        .and_then(|r| active.clusters.get(&r.cluster))
        .is_some_and(|c| c.tokens.is_some());
    if home_uses_credentials {
        authorize_locally(state, headers, &path.account, &Method::GET).await?;
    }
    listing::account(state, active, method, &path.account, query, headers)
        .await
        .map_err(|e| Refusal::Denied(swift_error(e.status(), &e.to_string())))
}
