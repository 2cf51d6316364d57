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
use crate::metrics::RouteCounters;
use crate::pacing::{Paced, WriteProgress};
use crate::rename::{self, Placement};
use crate::state::{Active, State};
use crate::swift_path::SwiftPath;
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
    state: &State,
    active: &Active,
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
            rename::rewrite_request(&mut headers, &active.routes, &path.account, &dest)
                .map_err(Refusal::BadRequest)?;
        }
        let out = Outgoing {
            method: parts.method,
            path_and_query: with_query(raw_path.to_string()),
            headers,
            endpoint_host: false,
            expect_continue,
        };
        return send_timed(&state.local, &out, body, &record.counters).await;
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
    if credentials.is_some() {
        authorize_locally(state, &client_headers, &path.account, &parts.method).await?;
    }
    rename::rewrite_request(&mut headers, &active.routes, &path.account, &dest)
        .map_err(Refusal::BadRequest)?;

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

    let out = Outgoing {
        method: parts.method.clone(),
        path_and_query: with_query(target_path),
        headers,
        endpoint_host: true,
        expect_continue: upstream_expect,
    };
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

    if credentials.is_some() {
        if let ProxyResponse::Upstream { response, .. } = &mut response {
            // A symlink the target followed into another account: the client must be allowed
            // to read there, locally, before it sees a byte.
            if let Some(account) =
                followed_account(response.headers(), &active.routes, &route.cluster)
            {
                if account != path.account {
                    authorize_locally(state, &client_headers, &account, &Method::GET).await?;
                }
            }
            if auth::has_owner_headers(response.headers())
                && !is_owner(state, &client_headers, &path.account).await
            {
                auth::strip_owner_headers(response.headers_mut());
            }
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
    Ok(response)
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

/// The client-side account of the object a target followed a symlink to (`Content-Location`).
fn followed_account(
    headers: &HeaderMap,
    routes: &crate::route_table::RouteTable,
    cluster: &str,
) -> Option<String> {
    let location = headers.get(header::CONTENT_LOCATION)?.to_str().ok()?;
    let path = SwiftPath::parse(location)?;
    let container = path.container.as_deref()?;
    Some(
        routes
            .client_names(cluster, &path.account, container)
            .map(|(account, _)| account)
            .unwrap_or(path.account),
    )
}

/// Every account the request touches must be authorized locally: its own (read or write by
/// method) and those named in headers (a copy's source is read, a COPY's destination written).
async fn authorize_locally(
    state: &State,
    client_headers: &HeaderMap,
    account: &str,
    method: &Method,
) -> Result<(), Refusal> {
    for (account, access) in auth::required_checks(method, client_headers, account) {
        let verdict = state
            .authorizer
            .check(&state.local, client_headers, &account, access)
            .await;
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
    Ok(())
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
    Response::from_parts(parts, Paced::new(body, progress).boxed_unsync())
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
