//! The request path: parse → route → rewrite → auth → send → response back, streamed.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use swiftfed_crds::routing::RouteMode;
use tokio::time::Instant;

use crate::access_log::{self, Entry};
use crate::auth::{self, Access, Verdict};
use crate::body::{self, BodySlot, ProxyBody, ResponseBody};
use crate::bulk;
use crate::copy;
use crate::dlo;
use crate::listing;
use crate::metrics::RouteCounters;
use crate::pacing::{Paced, WriteProgress};
use crate::rename::{self, Placement};
use crate::slo;
use crate::state::{Active, State};
use crate::swift_path::SwiftPath;
use crate::symlink;
use crate::upstream::{Outgoing, Upstream, UpstreamError};

/// Built once: removing by a `&str` name parses and hashes it on every call.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];
const X_TRANS_ID: HeaderName = HeaderName::from_static("x-trans-id");

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the Connection header names are hop-by-hop too (rare: no allocation without it).
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// What the access log and metrics record of one request. Cheap to build: the method and URI
/// share the request's bytes, the counters are the route's.
struct Record {
    method: Method,
    uri: http::Uri,
    counters: Arc<RouteCounters>,
    trans_id: Option<HeaderValue>,
    start: Instant,
    /// The client connection's write progress, for pacing the response.
    progress: Option<Arc<WriteProgress>>,
}

pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<ProxyBody> {
    let active = state.active();
    state.metrics.active_streams.inc();
    let (parts, incoming) = req.into_parts();
    let query = parts.uri.query().map(str::to_string);
    let mut record = Record {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        counters: state.metrics.local_counters().clone(),
        trans_id: None,
        start: Instant::now(),
        progress: parts.extensions.get::<Arc<WriteProgress>>().cloned(),
    };
    let uri = record.uri.clone();
    let raw_path = uri.path();
    let body = BodySlot::new(Some(incoming));
    let result = route_and_send(&state, &active, parts, raw_path, query, &body, &mut record).await;
    let response = match result {
        Ok(r) => r,
        Err(e) => ProxyResponse::Local(e.into_response()),
    };
    finish(state, record, body, response)
}

/// Either an upstream response (streamed back) or one the sidecar made itself.
enum ProxyResponse {
    Upstream {
        response: Response<Incoming>,
        idle: Duration,
    },
    Local(Response<ProxyBody>),
}

/// Failures the sidecar answers itself, Swift-style.
enum Refusal {
    Upstream(UpstreamError),
    BadRequest(String),
    Forbidden(String),
    Unavailable(String),
    Denied(Response<ProxyBody>),
}

impl Refusal {
    fn into_response(self) -> Response<ProxyBody> {
        let (status, detail) = match self {
            Refusal::Denied(r) => return r,
            Refusal::Upstream(e) => (e.status(), e.to_string()),
            Refusal::BadRequest(d) => (StatusCode::BAD_REQUEST, d),
            Refusal::Forbidden(d) => (StatusCode::FORBIDDEN, d),
            Refusal::Unavailable(d) => (StatusCode::SERVICE_UNAVAILABLE, d),
        };
        swift_error(status, &detail)
    }
}

/// An error page shaped like Swift's (HTML title line), with the reason in plain words.
pub fn swift_error(status: StatusCode, detail: &str) -> Response<ProxyBody> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let escaped = detail
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let text = format!("<html><h1>{reason}</h1><p>swiftfed: {escaped}</p></html>");
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    response
}

async fn route_and_send(
    state: &Arc<State>,
    active: &Arc<Active>,
    parts: http::request::Parts,
    raw_path: &str,
    query: Option<String>,
    body: &BodySlot,
    record: &mut Record,
) -> Result<ProxyResponse, Refusal> {
    let swift_path = SwiftPath::parse(raw_path);
    let route = swift_path
        .as_ref()
        .and_then(|p| active.routes.lookup(&p.account, p.routing_container()));
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    let expect_continue = headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if let Some(path) = &swift_path {
        if let Some(plan) = copy::plan(&active.routes, &parts.method, path, raw_path, &headers) {
            let dest = plan.dest.cluster.as_deref().unwrap_or("local");
            record.counters = state.metrics.route_counters("cross-cluster-copy", dest);
            let copy = cross_cluster_copy(state, active, &parts.method, path, &plan, &headers);
            return copy.run(query.as_deref(), body).await;
        }
    }
    if let Some(path) = swift_path.as_ref().filter(|p| p.container.is_none()) {
        if bulk::applies(
            &active.routes,
            &path.account,
            &parts.method,
            query.as_deref(),
        ) {
            if let Some(response) =
                bulk_delete(state, active, &parts.method, path, &headers, body).await?
            {
                record.counters = state.metrics.route_counters("bulk-delete", "local");
                return Ok(ProxyResponse::Local(response));
            }
        }
        if listing::applies(&active.routes, &path.account, &parts.method) {
            let merged = merged_listing(
                state,
                active,
                &parts.method,
                path,
                query.as_deref(),
                &headers,
            );
            if let Some(response) = merged.await? {
                record.counters = state.metrics.route_counters("account-listing", "local");
                return Ok(ProxyResponse::Local(response));
            }
        }
    }
    let with_query = |path: String| match &query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };

    let (Some(path), Some(route)) = (swift_path.as_ref(), route) else {
        // Local: only the names in headers need checking (they may point at routed containers).
        if let Some(path) = &swift_path {
            let dest = Placement {
                cluster: None,
                account: &path.account,
            };
            if path.has_object && matches!(parts.method, Method::PUT | Method::POST) {
                dlo::mark_request(&mut headers, &active.routes, &path.account, None);
                if let Some(refusal) =
                    link_elsewhere(state, active, &parts.method, path, None, &mut headers).await?
                {
                    return Ok(ProxyResponse::Local(refusal));
                }
            }
            rename::rewrite_request(&mut headers, &active.routes, &path.account, &dest)
                .map_err(Refusal::BadRequest)?;
        }
        let out = Outgoing {
            method: parts.method.clone(),
            path_and_query: with_query(raw_path.to_string()),
            headers,
            endpoint_host: false,
            expect_continue,
        };
        let response = send_timed(&state.local, &out, body, &record.counters).await?;
        return match &swift_path {
            Some(path) => {
                // The headers as sent: on the GET/HEAD this concerns, the client's own.
                large_object(
                    state,
                    active,
                    &parts.method,
                    path,
                    query.as_deref(),
                    &out.headers,
                    response,
                )
                .await
            }
            None => Ok(response),
        };
    };

    record.counters = route.counters(&state.metrics).clone();
    let cluster = active.clusters.get(&route.cluster).ok_or_else(|| {
        Refusal::Unavailable(format!("route names unknown cluster {:?}", route.cluster))
    })?;
    let target = route.target(&path.account, path.routing_container());
    let new_account = (target.account != path.account).then_some(target.account.as_str());
    let new_container = target
        .container
        .as_deref()
        .filter(|c| Some(*c) != path.routing_container());
    let target_path = path.rewrite(new_account, new_container);
    let dest = Placement {
        cluster: Some(&route.cluster),
        account: &target.account,
    };
    let client_headers = headers.clone();
    let credentials = cluster.tokens.as_ref();
    // With the sidecar's own credentials, nothing about the request is acted on (not even an
    // error naming routes) before the local cluster has authorized the client.
    // Granted by a container ACL only: the target must not act on anything else on the
    // client's behalf with the sidecar's owner-level token (see `acl_only_reaches_beyond`).
    let mut acl_only = false;
    if credentials.is_some() {
        let own = path.container.as_deref().map(|c| (c, path.has_object));
        acl_only =
            authorize_locally_in(state, &client_headers, &path.account, own, &parts.method).await?;
        if acl_only && acl_only_reaches_beyond(&parts.method, query.as_deref(), &headers) {
            return Err(Refusal::Forbidden(
                "large object manifests and symlinks are not forwarded for a client allowed by \
                 a container ACL only"
                    .into(),
            ));
        }
    }
    if path.has_object && matches!(parts.method, Method::PUT | Method::POST) {
        dlo::mark_request(
            &mut headers,
            &active.routes,
            &path.account,
            Some(&route.cluster),
        );
        let here = Some(route.cluster.as_str());
        if let Some(refusal) =
            link_elsewhere(state, active, &parts.method, path, here, &mut headers).await?
        {
            return Ok(ProxyResponse::Local(refusal));
        }
    }
    rename::rewrite_request(&mut headers, &active.routes, &path.account, &dest)
        .map_err(Refusal::BadRequest)?;
    // An SLO manifest into a renaming route: its segment paths are renamed too (`slo`).
    let manifest_body;
    let body = if parts.method == Method::PUT
        && path.has_object
        && slo::is_manifest(query.as_deref(), "put")
        && slo::renames(&active.routes, &path.account)
    {
        manifest_body =
            renamed_manifest(body, &active.routes, &path.account, &dest, &mut headers).await?;
        &manifest_body
    } else {
        body
    };

    let mut sidecar_token = None;
    let mut upstream_expect = expect_continue;
    if let Some(tokens) = credentials {
        if path.container.is_none() && Access::of(&parts.method) == Access::Write {
            return Err(Refusal::Forbidden(format!(
                "account-level {} on a federated account is not forwarded with Credentials auth",
                parts.method
            )));
        }
        if auth::has_owner_headers(&headers)
            && !is_owner(state, &client_headers, &path.account).await
        {
            // Swift ignores these from non-owners; so must the owner-level sidecar token.
            auth::strip_owner_headers(&mut headers);
        }
        auth::strip_client_auth(&mut headers);
        let token = tokens
            .token()
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        headers.insert("x-auth-token", token.clone());
        sidecar_token = Some(token);
        // Hold the body until the target accepts the token, so a refused token can be renewed
        // and the request retried with the body intact.
        if !body.is_end_stream() && !upstream_expect {
            headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
            upstream_expect = true;
        }
    }

    if route.mode == RouteMode::Migrate
        && !path.has_object
        && matches!(parts.method, Method::GET | Method::HEAD)
        && path.container.as_deref() == path.routing_container()
    {
        if let (Some(container), Some(target_container)) = (&path.container, &target.container) {
            let ctx = listing::Ctx {
                state,
                active,
                client_headers: &client_headers,
                account: &path.account,
            };
            let there = listing::TargetContainer {
                cluster: &route.cluster,
                account: &target.account,
                container: target_container,
            };
            let merged = listing::migrating_container(
                &ctx,
                &parts.method,
                container,
                &there,
                query.as_deref(),
            );
            if let Some(r) = merged
                .await
                .map_err(|e| Refusal::Denied(swift_error(e.status(), &e.to_string())))?
            {
                return Ok(ProxyResponse::Local(r));
            }
        }
    }

    let out = Outgoing {
        method: parts.method.clone(),
        path_and_query: with_query(target_path),
        headers,
        endpoint_host: true,
        expect_continue: upstream_expect,
    };
    // Container ACLs as the target will have them, mirrored locally once it accepts them.
    let shadow_update = credentials.and_then(|_| {
        crate::acl_shadow::update(
            &parts.method,
            path,
            &out.headers,
            route.mode == RouteMode::Migrate,
        )
    });
    let mut response = send_timed(&cluster.upstream, &out, body, &record.counters).await?;

    // A refused sidecar token (expired early, or the target restarted): fetch a new one and try
    // again, only when nothing of the body was sent.
    if let (Some(token), Some(tokens)) = (&sidecar_token, credentials) {
        if response_status(&response) == Some(StatusCode::UNAUTHORIZED) && !body.touched() {
            tokens.invalidate(token);
            let fresh = tokens
                .token()
                .await
                .map_err(|e| Refusal::Unavailable(e.to_string()))?;
            let mut out = out;
            out.headers.insert("x-auth-token", fresh);
            response = send_timed(&cluster.upstream, &out, body, &record.counters).await?;
        }
    }

    if let (Some(update), Some(container)) = (shadow_update, path.container.as_deref()) {
        if let Some(status) = response_status(&response).filter(|s| s.is_success()) {
            crate::acl_shadow::apply(
                &state.local,
                &client_headers,
                &path.account,
                container,
                update,
                status,
            )
            .await;
        }
    }

    if credentials.is_some() {
        if let ProxyResponse::Upstream { response, .. } = &mut response {
            // A symlink the target followed into another account: the client must be allowed
            // to read there, locally, before it sees a byte.
            if let Some((account, container)) =
                followed_object(response.headers(), &active.routes, &route.cluster)
            {
                if account != path.account
                    || (acl_only && Some(container.as_str()) != path.container.as_deref())
                {
                    let own = Some((container.as_str(), true));
                    authorize_locally_in(state, &client_headers, &account, own, &Method::GET)
                        .await?;
                }
            }
            // A manifest's segments are read by the target with the sidecar's token: a client
            // allowed by a container ACL only gets them only from its own container.
            if acl_only
                && reads_segments_elsewhere(
                    response.headers(),
                    query.as_deref(),
                    path.container.as_deref(),
                )
            {
                return Err(Refusal::Forbidden(
                    "large objects are not read for a client allowed by a container ACL only, \
                     unless their segments are in the same container"
                        .into(),
                ));
            }
            if auth::has_owner_headers(response.headers())
                && !is_owner(state, &client_headers, &path.account).await
            {
                auth::strip_owner_headers(response.headers_mut());
            }
        }
    }

    // Migrate: an object is deleted from both clusters; found in either, it is gone.
    if route.mode == RouteMode::Migrate && path.has_object && parts.method == Method::DELETE {
        let out = Outgoing {
            method: Method::DELETE,
            path_and_query: with_query(raw_path.to_string()),
            headers: client_headers.clone(),
            endpoint_host: false,
            expect_continue: false,
        };
        let local_counters = state.metrics.route_counters(&route.label, "local");
        let local = send_timed(&state.local, &out, body, &local_counters).await?;
        let target_status = response_status(&response);
        let local_status = response_status(&local);
        if target_status == Some(StatusCode::NOT_FOUND)
            && local_status.is_some_and(|s| s.is_success())
        {
            record.counters = local_counters;
            return Ok(local);
        }
    }

    // Migrate: objects not yet on the target are still read from the local cluster.
    if route.mode == RouteMode::Migrate
        && path.has_object
        && matches!(parts.method, Method::GET | Method::HEAD)
        && response_status(&response) == Some(StatusCode::NOT_FOUND)
    {
        let out = Outgoing {
            method: parts.method,
            path_and_query: with_query(raw_path.to_string()),
            headers: client_headers,
            endpoint_host: false,
            expect_continue: false,
        };
        record.counters = state.metrics.route_counters(&route.label, "local");
        return send_timed(&state.local, &out, body, &record.counters).await;
    }

    if let ProxyResponse::Upstream { response, .. } = &mut response {
        rename::rewrite_response(
            response.headers_mut(),
            &active.routes,
            &route.cluster,
            &target.account,
            &path.account,
        );
    }
    if parts.method == Method::GET
        && path.has_object
        && slo::is_manifest(query.as_deref(), "get")
        && slo::renames(&active.routes, &path.account)
    {
        response =
            manifest_names_back(response, &active.routes, &route.cluster, &target.account).await?;
    }
    large_object(
        state,
        active,
        &parts.method,
        path,
        query.as_deref(),
        &client_headers,
        response,
    )
    .await
}

/// The client's SLO manifest, read whole (Swift bounds its size) and renamed for the target.
async fn renamed_manifest(
    body: &BodySlot,
    routes: &crate::route_table::RouteTable,
    account: &str,
    dest: &Placement<'_>,
    headers: &mut HeaderMap,
) -> Result<BodySlot, Refusal> {
    let bytes = body::read_slot(body, slo::MAX_MANIFEST)
        .await
        .map_err(Refusal::BadRequest)?
        .ok_or_else(|| {
            Refusal::Denied(swift_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "manifest too large",
            ))
        })?;
    let bytes = slo::rename_put(&bytes, routes, account, dest)
        .map_err(Refusal::BadRequest)?
        .unwrap_or(bytes);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    headers.remove(header::EXPECT);
    Ok(BodySlot::from_bytes(bytes.into()))
}

/// A `?multipart-manifest=get` answer with the client's names (and the ETag of what the
/// client then reads, as one cluster holding those names would send).
async fn manifest_names_back(
    response: ProxyResponse,
    routes: &crate::route_table::RouteTable,
    cluster: &str,
    target_account: &str,
) -> Result<ProxyResponse, Refusal> {
    let ProxyResponse::Upstream { response, idle } = response else {
        return Ok(response);
    };
    if response.status() != StatusCode::OK {
        return Ok(ProxyResponse::Upstream { response, idle });
    }
    let (mut parts, incoming) = response.into_parts();
    let bytes = body::read_to_end(incoming, crate::subrequest::MAX_BODY)
        .await
        .map_err(|e| Refusal::Denied(swift_error(StatusCode::BAD_GATEWAY, &e)))?
        .ok_or_else(|| {
            Refusal::Denied(swift_error(StatusCode::BAD_GATEWAY, "manifest too large"))
        })?;
    let bytes = slo::rename_get(&bytes, routes, cluster, target_account).unwrap_or(bytes);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    if parts.headers.contains_key(header::ETAG) {
        use md5::Digest;
        let digest: String = md5::Md5::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if let Ok(v) = HeaderValue::from_str(&digest) {
            parts.headers.insert(header::ETAG, v);
        }
    }
    parts.headers.remove(header::TRANSFER_ENCODING);
    Ok(ProxyResponse::Local(Response::from_parts(
        parts,
        body::full(bytes),
    )))
}

/// A `GET`/`HEAD` answered with a cross-cluster DLO manifest is answered with the object it
/// stands for (`dlo`), or with the manifest as Swift shows one for `?multipart-manifest=get`.
async fn large_object(
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
async fn link_elsewhere(
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

/// Reading `end` with the sidecar's own credentials needs the local cluster to allow the
/// client to read its account.
async fn authorize_target(
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

/// A `GET`/`HEAD` answered with the sidecar's link is answered with its target, followed
/// across clusters; `?symlink=get` and other requests see the link as Swift shows one.
#[allow(clippy::too_many_arguments)]
async fn follow_link(
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

/// A bulk delete split across clusters (`bulk`). With the sidecar's own credentials on a
/// target, the local cluster must first allow the client to write in the account.
async fn bulk_delete(
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

/// A copy whose ends live in different clusters (`copy`).
struct CrossClusterCopy<'r> {
    state: &'r Arc<State>,
    active: &'r Arc<Active>,
    method: &'r Method,
    path: &'r SwiftPath<'r>,
    plan: &'r copy::Plan,
    headers: &'r HeaderMap,
}

fn cross_cluster_copy<'r>(
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
    async fn run(self, query: Option<&str>, body: &BodySlot) -> Result<ProxyResponse, Refusal> {
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
async fn merged_listing(
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

/// Whether the local cluster treats the client as the account's owner (cached like the other
/// checks). Any doubt counts as "not an owner".
async fn is_owner(state: &State, client_headers: &HeaderMap, account: &str) -> bool {
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
fn followed_object(
    headers: &HeaderMap,
    routes: &crate::route_table::RouteTable,
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
fn acl_only_reaches_beyond(method: &Method, query: Option<&str>, headers: &HeaderMap) -> bool {
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
fn reads_segments_elsewhere(headers: &HeaderMap, query: Option<&str>, own: Option<&str>) -> bool {
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
async fn authorize_locally(
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
async fn authorize_locally_in(
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

fn response_status(r: &ProxyResponse) -> Option<StatusCode> {
    match r {
        ProxyResponse::Upstream { response, .. } => Some(response.status()),
        ProxyResponse::Local(_) => None,
    }
}

async fn send_timed(
    upstream: &Upstream,
    out: &Outgoing,
    body: &BodySlot,
    counters: &RouteCounters,
) -> Result<ProxyResponse, Refusal> {
    let start = Instant::now();
    let (response, _endpoint) = upstream.send(out, body).await.map_err(Refusal::Upstream)?;
    counters.observe_latency(start.elapsed().as_secs_f64());
    Ok(ProxyResponse::Upstream {
        response,
        idle: upstream.timeouts.idle,
    })
}

fn finish(
    state: Arc<State>,
    record: Record,
    body_in: BodySlot,
    response: ProxyResponse,
) -> Response<ProxyBody> {
    let (mut parts, inner, idle) = match response {
        ProxyResponse::Upstream { response, idle } => {
            let (parts, incoming) = response.into_parts();
            (parts, Some(incoming), idle)
        }
        ProxyResponse::Local(r) => {
            let (parts, body) = r.into_parts();
            let status = parts.status.as_u16();
            let bytes = http_body::Body::size_hint(&body).exact().unwrap_or(0);
            log_and_count(&state, &record, status, body_in.bytes_read(), bytes, true);
            return Response::from_parts(parts, body);
        }
    };
    strip_hop_by_hop(&mut parts.headers);
    let status = parts.status.as_u16();
    let trans_id = parts.headers.get(&X_TRANS_ID).cloned();
    let progress = record.progress.clone();
    let reads = parts.extensions.remove::<crate::read_size::ReadLimit>();
    let body = ResponseBody::new(inner, idle, move |bytes_out, complete| {
        let mut record = record;
        record.trans_id = trans_id;
        log_and_count(
            &state,
            &record,
            status,
            body_in.bytes_read(),
            bytes_out,
            complete,
        );
    });
    Response::from_parts(
        parts,
        Paced::new(body, progress).sizing(reads).boxed_unsync(),
    )
}

fn log_and_count(
    state: &State,
    record: &Record,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    complete: bool,
) {
    // The last request in flight: nothing else will fill the log buffer soon, write it now.
    let idle = state.metrics.active_streams.dec() <= 1;
    let counters = &record.counters;
    counters.request(&record.method, status);
    counters.bytes(bytes_in, bytes_out);
    let entry = Entry {
        method: &record.method,
        uri: &record.uri,
        status,
        bytes_in,
        bytes_out,
        duration_ms: record.start.elapsed().as_millis() as u64,
        route: &counters.route,
        cluster: &counters.cluster,
        trans_id: record
            .trans_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        complete,
    };
    access_log::global().log(&entry, idle);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-trans-id", HeaderValue::from_static("tx1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-trans-id"));
    }
}
