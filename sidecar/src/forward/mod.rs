//! The request path: parse → route → rewrite → auth → send → response back, streamed.
//! Requests for routed names go through `routed`; those the sidecar answers from several
//! clusters through `spanning`; answers it completes itself through `large_objects`; the local
//! cluster's say over requests sent with the sidecar's credentials through `authorize`.

mod authorize;
mod large_objects;
mod listed;
mod routed;
mod spanning;

use large_objects::{
    keep_slo_marker, large_object, link_elsewhere, manifest_delete, manifest_put, relabel_guessed,
    stored_manifest_answer,
};
use spanning::{bulk_delete, cross_cluster_copy, extract_archive, merged_listing, stand_in_copy};

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::access_log::{self, Entry};
use crate::body::{self, BodySlot, IdleLimited, ProxyBody};
use crate::bulk;
use crate::copy;
use crate::dlo;
use crate::extract;
use crate::listing;
use crate::metrics::RouteCounters;
use crate::on_end::OnEnd;
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

/// One client request as the handlers below see it.
struct Req<'a> {
    state: &'a Arc<State>,
    active: &'a Arc<Active>,
    method: &'a Method,
    path: &'a SwiftPath<'a>,
    raw_path: &'a str,
    query: Option<&'a str>,
    body: &'a BodySlot,
}

impl Req<'_> {
    fn with_query(&self, path: String) -> String {
        path_with(self.query, path)
    }
}

fn path_with(query: Option<&str>, path: String) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
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
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    let expect_continue = headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let Some(path) = SwiftPath::parse(raw_path) else {
        // Not a Swift API path (info, auth, healthcheck): the local proxy's business.
        let out = Outgoing {
            method: parts.method,
            path_and_query: match &query {
                Some(q) => format!("{raw_path}?{q}"),
                None => raw_path.to_string(),
            },
            headers,
            endpoint_host: false,
            expect_continue,
        };
        return send_timed(&state.local, &out, body, &record.counters).await;
    };
    let req = Req {
        state,
        active,
        method: &parts.method,
        path: &path,
        raw_path,
        query: query.as_deref(),
        body,
    };
    let plan = match copy::plan(&active.routes, req.method, &path, raw_path, &headers) {
        Some(plan) => Some(plan),
        None => {
            stand_in_copy(
                state, active, req.method, &path, raw_path, &headers, req.query,
            )
            .await?
        }
    };
    if let Some(plan) = plan {
        let dest = plan.dest.cluster.as_deref().unwrap_or("local");
        record.counters = state.metrics.route_counters("cross-cluster-copy", dest);
        let copy = cross_cluster_copy(state, active, req.method, &path, &plan, &headers);
        return copy.run(req.query, body).await;
    }
    if let Some(compression) = extract::applies(active, req.method, &path, req.query) {
        let base = extract::base_of(&path, raw_path);
        let extracted =
            extract_archive(state, active, &path, base, compression, &headers, body).await?;
        if let Some(response) = extracted {
            record.counters = state.metrics.route_counters("extract-archive", "local");
            return Ok(ProxyResponse::Local(response));
        }
    }
    if path.container.is_none() {
        if let Some(response) = account_level(&req, &headers, record).await? {
            return Ok(ProxyResponse::Local(response));
        }
    }
    match active
        .routes
        .lookup(&path.account, path.routing_container())
    {
        Some(route) => routed::send_routed(&req, route, headers, expect_continue, record).await,
        None => send_local(&req, headers, expect_continue, record).await,
    }
}

/// Account requests the sidecar answers from several clusters; `None`: the account's own
/// cluster answers alone.
async fn account_level(
    req: &Req<'_>,
    headers: &HeaderMap,
    record: &mut Record,
) -> Result<Option<Response<ProxyBody>>, Refusal> {
    let Req {
        state,
        active,
        method,
        path,
        query,
        body,
        ..
    } = *req;
    if bulk::applies(&active.routes, &path.account, method, query) {
        if let Some(response) = bulk_delete(state, active, method, path, headers, body).await? {
            record.counters = state.metrics.route_counters("bulk-delete", "local");
            return Ok(Some(response));
        }
    }
    if listing::applies(&active.routes, &path.account, method) {
        if let Some(response) = merged_listing(state, active, method, path, query, headers).await? {
            record.counters = state.metrics.route_counters("account-listing", "local");
            return Ok(Some(response));
        }
    }
    Ok(None)
}

/// A request for the local cluster: only the names in its headers need checking (they may
/// point at routed containers).
async fn send_local(
    req: &Req<'_>,
    mut headers: HeaderMap,
    expect_continue: bool,
    record: &mut Record,
) -> Result<ProxyResponse, Refusal> {
    let Req {
        state,
        active,
        method,
        path,
        raw_path,
        query,
        body,
    } = *req;
    let dest = Placement {
        cluster: None,
        account: &path.account,
    };
    if path.has_object && matches!(*method, Method::PUT | Method::POST) {
        dlo::mark_request(&mut headers, &active.routes, &path.account, None);
        if let Some(refusal) =
            link_elsewhere(state, active, method, path, None, &mut headers).await?
        {
            return Ok(ProxyResponse::Local(refusal));
        }
        let at = (None, raw_path);
        keep_slo_marker(state, active, method, path, &mut headers, at).await?;
    }
    let here = (None, raw_path);
    if let Some(r) = manifest_delete(state, active, method, path, query, &headers, here).await? {
        return Ok(ProxyResponse::Local(r));
    }
    rename::rewrite_request(&mut headers, &active.routes, &path.account, &dest)
        .map_err(Refusal::BadRequest)?;
    // An SLO manifest naming segments in routed containers: checked and stored by the sidecar.
    let mut expect_continue = expect_continue;
    let mut manifest = None;
    if *method == Method::PUT
        && path.has_object
        && crate::slo::is_manifest(query, "put")
        && !active.routes.container_routes(&path.account).is_empty()
    {
        let client_headers = headers.clone();
        match manifest_put(req, None, &client_headers, &mut headers, |b| b).await? {
            Err(refusal) => return Ok(ProxyResponse::Local(refusal)),
            Ok(put) => {
                expect_continue = false;
                manifest = Some(put);
            }
        }
    }
    let mut sent_query = match &manifest {
        Some(put) => put.sent_query.clone(),
        None => query.map(str::to_string),
    };
    let body = manifest.as_ref().map_or(body, |put| &put.body);
    let listed = listed::ContainerListing::of(&active.routes, method, path, query, &headers);
    if let Some(listed) = &listed {
        sent_query = listed.query(sent_query.as_deref());
    }
    let out = Outgoing {
        method: method.clone(),
        path_and_query: path_with(sent_query.as_deref(), raw_path.to_string()),
        headers,
        endpoint_host: false,
        expect_continue,
    };
    let mut response = send_timed(&state.local, &out, body, &record.counters).await?;
    if let Some(put) = manifest {
        if let Some((marker, stored)) = put.relabel {
            let counters = &record.counters;
            let local = &state.local;
            response =
                relabel_guessed(local, &out, stored.into(), &marker, response, counters).await?;
        }
        if let Some(answer) = &put.answer {
            response = stored_manifest_answer(response, answer).await?;
        }
    }
    if let Some(listed) = &listed {
        response = listed.back(response, |_| false).await?;
    }
    // The headers as sent: on the GET/HEAD this concerns, the client's own.
    let at = (None, raw_path);
    large_object(
        state,
        active,
        method,
        path,
        query,
        &out.headers,
        response,
        at,
    )
    .await
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
            let body = OnEnd::new(body, move |bytes_out, complete| {
                log_and_count(
                    &state,
                    &record,
                    status,
                    body_in.bytes_read(),
                    bytes_out,
                    complete,
                );
            });
            return Response::from_parts(parts, body.boxed_unsync());
        }
    };
    strip_hop_by_hop(&mut parts.headers);
    let status = parts.status.as_u16();
    let trans_id = parts.headers.get(&X_TRANS_ID).cloned();
    let progress = record.progress.clone();
    let reads = parts.extensions.remove::<crate::read_size::ReadLimit>();
    let body = OnEnd::new(IdleLimited::new(inner, idle), move |bytes_out, complete| {
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
