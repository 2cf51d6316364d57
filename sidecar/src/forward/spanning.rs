//! Requests the sidecar answers by talking to several clusters: copies whose ends live in
//! different clusters (`copy`), bulk deletes split by route (`bulk`), merged account listings
//! (`listing`).

use std::sync::Arc;

use http::header::HeaderMap;
use http::{Method, Response};

use super::authorize::authorize_locally;
use super::{swift_error, ProxyResponse, Refusal};
use crate::body::{BodySlot, ProxyBody};
use crate::bulk;
use crate::copy;
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
    if uses_credentials {
        authorize_locally(state, headers, &path.account, &Method::DELETE).await?;
    }
    bulk::run(state, active, method, &path.account, headers, body)
        .await
        .map_err(|e| Refusal::Denied(swift_error(e.status(), &e.to_string())))
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
