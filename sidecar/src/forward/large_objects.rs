//! Answers the sidecar completes itself after the cluster's: its cross-cluster DLO manifests
//! assembled (`dlo`), its cross-cluster symlinks followed (`symlink`), and the check of a
//! symlink `PUT` whose target lives elsewhere.

use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderMap;
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;

use super::authorize::authorize_target;
use super::{swift_error, ProxyResponse, Refusal};
use crate::body::ProxyBody;
use crate::dlo;
use crate::state::{Active, State};
use crate::swift_path::SwiftPath;
use crate::symlink;

/// A `GET`/`HEAD` answered with a cross-cluster DLO manifest is answered with the object it
/// stands for (`dlo`), or with the manifest as Swift shows one for `?multipart-manifest=get`.
pub(super) async fn large_object(
    state: &Arc<State>,
    active: &Arc<Active>,
    method: &Method,
    path: &SwiftPath<'_>,
    query: Option<&str>,
    client_headers: &HeaderMap,
    response: ProxyResponse,
) -> Result<ProxyResponse, Refusal> {
    let ProxyResponse::Upstream { mut response, idle } = response else {
        return Ok(response);
    };
    if symlink::is_link(response.headers()) {
        return follow_link(
            state,
            active,
            method,
            path,
            query,
            client_headers,
            response,
            idle,
        )
        .await;
    }
    let Some(value) = dlo::marker(response.headers()) else {
        return Ok(ProxyResponse::Upstream { response, idle });
    };
    let manifest_get = query
        .unwrap_or("")
        .split('&')
        .any(|p| p == "multipart-manifest=get");
    if !path.has_object
        || !matches!(*method, Method::GET | Method::HEAD)
        || manifest_get
        // The manifest is empty: a Range is for the assembled object, not Swift's 416 on it.
        || !(response.status().is_success()
            || response.status() == StatusCode::RANGE_NOT_SATISFIABLE)
    {
        dlo::show_manifest(response.headers_mut());
        return Ok(ProxyResponse::Upstream { response, idle });
    }
    let assembled = dlo::assemble(
        state,
        active,
        client_headers,
        &path.account,
        method,
        response.headers(),
        &value,
    )
    .await
    .map_err(|e| Refusal::Denied(swift_error(e.status(), &e.to_string())))?;
    Ok(ProxyResponse::Local(assembled))
}

/// A symlink `PUT` whose target lives in another cluster than `dest_cluster` is stored as the
/// sidecar's link (`symlink`); a static link's target is checked first (with the client's
/// right to read it, when the sidecar's own credentials read it). `Some`: Swift's refusal.
pub(super) async fn link_elsewhere(
    state: &State,
    active: &Active,
    method: &Method,
    path: &SwiftPath<'_>,
    dest_cluster: Option<&str>,
    headers: &mut HeaderMap,
) -> Result<Option<Response<ProxyBody>>, Refusal> {
    if *method != Method::PUT {
        return Ok(None);
    }
    let Some((end, etag)) =
        symlink::mark_request(headers, &active.routes, &path.account, dest_cluster)
    else {
        return Ok(None);
    };
    let Some(etag) = etag else { return Ok(None) };
    authorize_target(state, active, headers, &end).await?;
    symlink::check_static(state, active, &end, &etag, headers)
        .await
        .map_err(|e| Refusal::Denied(swift_error(e.status(), &e.to_string())))
}

/// A `GET`/`HEAD` answered with the sidecar's link is answered with its target, followed
/// across clusters; `?symlink=get` and other requests see the link as Swift shows one.
#[allow(clippy::too_many_arguments)]
pub(super) async fn follow_link(
    state: &State,
    active: &Active,
    method: &Method,
    path: &SwiftPath<'_>,
    query: Option<&str>,
    client_headers: &HeaderMap,
    mut response: Response<Incoming>,
    idle: Duration,
) -> Result<ProxyResponse, Refusal> {
    let link_get = query.unwrap_or("").split('&').any(|p| p == "symlink=get");
    // The link is empty: a Range is for its target, not Swift's 416 on the link.
    let followable =
        response.status().is_success() || response.status() == StatusCode::RANGE_NOT_SATISFIABLE;
    if link_get || !matches!(*method, Method::GET | Method::HEAD) || !followable {
        symlink::show_link(response.headers_mut());
        return Ok(ProxyResponse::Upstream { response, idle });
    }
    if let Some(end) = symlink::stored_target(&active.routes, &path.account, response.headers()) {
        authorize_target(state, active, client_headers, &end).await?;
    }
    let followed = symlink::follow(
        state,
        active,
        &path.account,
        method,
        response.headers(),
        client_headers,
    )
    .await
    .map_err(|e| Refusal::Denied(swift_error(e.status(), &e.to_string())))?;
    Ok(match followed {
        symlink::Followed::Upstream(response, idle) => ProxyResponse::Upstream { response, idle },
        symlink::Followed::Local(response) => ProxyResponse::Local(response),
    })
}
