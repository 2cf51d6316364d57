//! Server-side copy between clusters (DESIGN.md step 5): `COPY` + `Destination[-Account]` or
//! `PUT` + `X-Copy-From[-Account]` whose source and destination live in different clusters.
//! The sidecar does what Swift's copy middleware does, across the two: GET the source, stream its
//! body into a PUT at the destination (never buffered), with the same header rules, and answer
//! with the PUT's answer plus the `X-Copied-From*` headers. Same-cluster copies get here only when
//! their source is one of the sidecar's stand-ins (`stands_in`); Swift does the others.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::auth;
use crate::body::{BodySlot, ProxyBody};
use crate::dlo;
use crate::route_table::RouteTable;
use crate::slo_assembly;
use crate::state::{Active, State};
use crate::swift_path::{decode, encode_segment, SwiftPath};
use crate::symlink;
use crate::upstream::{Outgoing, Upstream, UpstreamError};

/// Python's `quote(path)` (safe `/`), as Swift sends `X-Copied-From`.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Source response headers that are not carried to the destination: Swift's own exclusions
/// (manifests, ETag and content type are handled on their own), and what only describes the
/// response or the hop.
const NOT_CARRIED: [&str; 17] = [
    "x-static-large-object",
    "x-object-manifest",
    "etag",
    "content-type",
    "x-timestamp",
    "x-backend-timestamp",
    "content-length",
    "content-range",
    "content-location",
    "last-modified",
    "date",
    "accept-ranges",
    "x-trans-id",
    "x-openstack-request-id",
    "transfer-encoding",
    "connection",
    "x-put-timestamp",
];

/// Request headers that describe the copy itself, not the new object.
const COPY_HEADERS: [&str; 4] = [
    "x-copy-from",
    "x-copy-from-account",
    "destination",
    "destination-account",
];

/// One end of a copy, in the client's names and where it lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    pub account: String,
    pub container: String,
    pub object: String,
    /// `None`: the local cluster.
    pub cluster: Option<String>,
}

pub struct Plan {
    pub source: End,
    pub dest: End,
}

/// The two ends of a copy request and where they live; `None` for every other request
/// (including malformed copy headers, which Swift answers itself).
pub fn plan(
    routes: &RouteTable,
    method: &Method,
    path: &SwiftPath<'_>,
    raw_path: &str,
    headers: &HeaderMap,
) -> Option<Plan> {
    ends(routes, method, path, raw_path, headers).filter(|p| p.source.cluster != p.dest.cluster)
}

/// The two ends of a copy inside one cluster, in an account with routed containers, unless
/// the manifest or link itself is asked for: its source may be one of the sidecar's
/// stand-ins (see [`stands_in`]), which Swift would copy as it is.
pub fn same_cluster(
    routes: &RouteTable,
    method: &Method,
    path: &SwiftPath<'_>,
    raw_path: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Option<Plan> {
    let itself = query_params(query)
        .iter()
        .any(|(k, v)| v == "get" && (k == "multipart-manifest" || k == "symlink"));
    if itself || routes.container_routes(&path.account).is_empty() {
        return None;
    }
    ends(routes, method, path, raw_path, headers).filter(|p| p.source.cluster == p.dest.cluster)
}

/// Whether a copy's source is one of the sidecar's stand-ins (a manifest of a DLO or SLO with
/// segments in another cluster, a link to one): Swift copies those as they are, the sidecar
/// copies what they stand for, as Swift copies its own large objects and links.
pub async fn stands_in(
    state: &State,
    active: &Active,
    plan: &Plan,
    headers: &HeaderMap,
) -> Result<bool, CopyError> {
    let source = hop(state, active, &plan.source)?;
    let mut head_headers = crate::segments::plain(headers);
    for h in COPY_HEADERS.iter().chain(["content-length"].iter()) {
        head_headers.remove(*h);
    }
    authenticate(&source, &mut head_headers).await?;
    let out = Outgoing {
        method: Method::HEAD,
        path_and_query: source.path.clone(),
        headers: head_headers,
        endpoint_host: source.remote,
        expect_continue: false,
    };
    let (head, _) = source.upstream.send(&out, &BodySlot::new(None)).await?;
    let h = head.headers();
    Ok(head.status().is_success()
        && (dlo::marker(h).is_some() || slo_assembly::marker(h).is_some() || symlink::is_link(h)))
}

/// The two ends of any copy request, wherever they live.
fn ends(
    routes: &RouteTable,
    method: &Method,
    path: &SwiftPath<'_>,
    raw_path: &str,
    headers: &HeaderMap,
) -> Option<Plan> {
    // Cheap checks first: this runs on every request.
    let is_copy = method.as_str() == "COPY"
        || (*method == Method::PUT && headers.contains_key("x-copy-from"));
    if !path.has_object || !is_copy {
        return None;
    }
    let container = path.container.clone()?;
    let object = object_of(raw_path)?;
    let here = |account: String, container: String, object: String| {
        let cluster = routes
            .lookup(&account, Some(&container))
            .map(|r| r.cluster.clone());
        End {
            account,
            container,
            object,
            cluster,
        }
    };
    let named = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .and_then(decode)
    };
    let (source, dest) = if method.as_str() == "COPY" {
        let (c, o) = split_reference(&named("destination")?)?;
        let account = named("destination-account").unwrap_or_else(|| path.account.clone());
        (
            here(path.account.clone(), container, object),
            here(account, c, o),
        )
    } else if *method == Method::PUT {
        let (c, o) = split_reference(&named("x-copy-from")?)?;
        let account = named("x-copy-from-account").unwrap_or_else(|| path.account.clone());
        (
            here(account, c, o),
            here(path.account.clone(), container, object),
        )
    } else {
        return None;
    };
    Some(Plan { source, dest })
}

/// `container/object` (leading `/` optional, object may hold `/`), as Swift's `split_path(2, 2,
/// True)` reads a copy header.
pub(crate) fn split_reference(value: &str) -> Option<(String, String)> {
    let value = value.strip_prefix('/').unwrap_or(value);
    let (c, o) = value.split_once('/')?;
    (!c.is_empty() && !o.is_empty()).then(|| (c.to_string(), o.to_string()))
}

/// The decoded object name of a request path.
fn object_of(raw_path: &str) -> Option<String> {
    let rest = raw_path.strip_prefix('/')?;
    let mut parts = rest.splitn(4, '/');
    let (_v, _a, _c) = (parts.next()?, parts.next()?, parts.next()?);
    decode(parts.next()?)
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("cluster {0:?} named by a route is not configured")]
    UnknownCluster(String),
    #[error("{0}")]
    Token(String),
    #[error("{1}")]
    Source(StatusCode, String),
}

impl CopyError {
    pub fn status(&self) -> StatusCode {
        match self {
            CopyError::Upstream(e) => e.status(),
            CopyError::UnknownCluster(_) | CopyError::Token(_) => StatusCode::SERVICE_UNAVAILABLE,
            CopyError::Source(status, _) => *status,
        }
    }
}

pub enum Outcome {
    /// A Swift answer, streamed back (with headers possibly added).
    Upstream(Response<Incoming>, Duration),
    /// An answer the sidecar made.
    Local(Response<ProxyBody>),
}

/// Where an end is sent and how.
pub(crate) struct Hop<'a> {
    pub upstream: &'a Upstream,
    pub path: String,
    pub remote: bool,
    tokens: Option<&'a auth::TokenSource>,
}

pub(crate) fn hop<'a>(
    state: &'a State,
    active: &'a Active,
    end: &End,
) -> Result<Hop<'a>, CopyError> {
    let object = utf8_percent_encode(&end.object, PATH).to_string();
    let Some(cluster) = &end.cluster else {
        return Ok(Hop {
            upstream: &state.local,
            path: format!(
                "/v1/{}/{}/{object}",
                encode_segment(&end.account),
                encode_segment(&end.container)
            ),
            remote: false,
            tokens: None,
        });
    };
    let runtime = active
        .clusters
        .get(cluster)
        .ok_or_else(|| CopyError::UnknownCluster(cluster.clone()))?;
    let target = active
        .routes
        .lookup(&end.account, Some(&end.container))
        .map(|r| r.target(&end.account, Some(&end.container)));
    let (account, container) = match target {
        Some(t) => (
            t.account,
            t.container.unwrap_or_else(|| end.container.clone()),
        ),
        None => (end.account.clone(), end.container.clone()),
    };
    Ok(Hop {
        upstream: &runtime.upstream,
        path: format!(
            "/v1/{}/{}/{object}",
            encode_segment(&account),
            encode_segment(&container)
        ),
        remote: true,
        tokens: runtime.tokens.as_deref(),
    })
}

/// Puts the right credentials on a request to `hop`: the client's toward the local cluster and
/// in Passthrough, the sidecar's own in Credentials mode.
pub(crate) async fn authenticate(hop: &Hop<'_>, headers: &mut HeaderMap) -> Result<(), CopyError> {
    if let Some(tokens) = hop.tokens {
        auth::strip_client_auth(headers);
        let token = tokens
            .token()
            .await
            .map_err(|e| CopyError::Token(e.to_string()))?;
        headers.insert("x-auth-token", token);
    }
    Ok(())
}

fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn join_query(path: String, params: &[(String, String)]) -> String {
    if params.is_empty() {
        return path;
    }
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    format!("{path}?{}", q.join("&"))
}

fn is_true(value: Option<&HeaderValue>) -> bool {
    value.and_then(|v| v.to_str().ok()).is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on" | "t" | "y"
        )
    })
}

/// Headers Swift copies from the sink request into the copy's answer.
fn is_meta(name: &str) -> bool {
    name.starts_with("x-object-meta-")
        || name.starts_with("x-object-sysmeta-")
        || name.starts_with("x-object-transient-sysmeta-")
        || name == "x-delete-at"
}

/// The client's headers as the copy middleware reads the source with them.
fn source_headers(client: &HeaderMap) -> HeaderMap {
    let mut headers = client.clone();
    for h in COPY_HEADERS.iter().chain(
        [
            "content-length",
            "content-type",
            "x-fresh-metadata",
            "expect",
        ]
        .iter(),
    ) {
        headers.remove(*h);
    }
    headers.insert("x-newest", HeaderValue::from_static("true"));
    headers
}

/// Runs a cross-cluster copy. `headers` are the client's (hop-by-hop already removed).
pub async fn run(
    state: &Arc<State>,
    active: &Arc<Active>,
    plan: &Plan,
    headers: &HeaderMap,
    query: Option<&str>,
    client_body: &BodySlot,
) -> Result<Outcome, CopyError> {
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
        || !client_body.is_end_stream()
    {
        let mut r = Response::new(crate::body::full("Copy requests require a zero byte body"));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=UTF-8"),
        );
        return Ok(Outcome::Local(r));
    }
    let params = query_params(query);
    let manifest_get = params
        .iter()
        .any(|(k, v)| k == "multipart-manifest" && v == "get");

    // 1. The source, read as the copy middleware reads it.
    let source_hop = hop(state, active, &plan.source)?;
    let mut source_headers = source_headers(headers);
    authenticate(&source_hop, &mut source_headers).await?;
    let mut source_params = params.clone();
    if manifest_get {
        source_params.push(("format".into(), "raw".into()));
    }
    let source_out = Outgoing {
        method: Method::GET,
        path_and_query: join_query(source_hop.path.clone(), &source_params),
        headers: source_headers,
        endpoint_host: source_hop.remote,
        expect_continue: false,
    };
    let (source, _) = source_hop
        .upstream
        .send(&source_out, &BodySlot::new(None))
        .await?;
    if source.status().as_u16() >= 300 {
        return Ok(Outcome::Upstream(source, source_hop.upstream.timeouts.idle));
    }
    // A source that is one of the sidecar's stand-ins (a link to, or a DLO or SLO with
    // segments in, another cluster) is copied as Swift copies what it stands for: the target's or the
    // assembled content, unless the link or manifest itself is asked for.
    let link_get = params.iter().any(|(k, v)| k == "symlink" && v == "get");
    let source = if symlink::is_link(source.headers()) && !link_get {
        let account = &plan.source.account;
        match symlink::follow(
            state,
            active,
            account,
            &Method::GET,
            source.headers(),
            headers,
        )
        .await?
        {
            symlink::Followed::Upstream(followed, idle) if followed.status().as_u16() >= 300 => {
                return Ok(Outcome::Upstream(followed, idle));
            }
            symlink::Followed::Upstream(followed, _) => {
                let (parts, body) = followed.into_parts();
                (parts, BodySlot::new(Some(body)))
            }
            symlink::Followed::Local(answer) => return Ok(Outcome::Local(answer)),
        }
    } else if let Some(value) = dlo::marker(source.headers()).filter(|_| !manifest_get) {
        let assembled = dlo::assemble(
            state,
            active,
            headers,
            &plan.source.account,
            &Method::GET,
            source.headers(),
            &value,
        )
        .await
        .map_err(|e| CopyError::Source(e.status(), e.to_string()))?;
        if assembled.status().as_u16() >= 300 {
            return Ok(Outcome::Local(assembled));
        }
        let (parts, body) = assembled.into_parts();
        (parts, BodySlot::from_body(body))
    } else if slo_assembly::marker(source.headers()).is_some() && !manifest_get {
        // The stored manifest (small, Swift bounds it) says where the segments are.
        let (parts, incoming) = source.into_parts();
        let manifest = crate::body::read_to_end(incoming, crate::subrequest::MAX_BODY)
            .await
            .map_err(|e| CopyError::Source(StatusCode::BAD_GATEWAY, e))?
            .ok_or_else(|| {
                CopyError::Source(StatusCode::BAD_GATEWAY, "manifest too large".into())
            })?;
        let at = (plan.source.cluster.as_deref(), source_hop.path.as_str());
        let assembled = slo_assembly::assemble(
            state,
            active,
            headers,
            &plan.source.account,
            &Method::GET,
            &parts.headers,
            Some(manifest.into()),
            at,
        )
        .await
        .map_err(|e| CopyError::Source(e.status(), e.to_string()))?;
        if assembled.status().as_u16() >= 300 {
            return Ok(Outcome::Local(assembled));
        }
        let (parts, body) = assembled.into_parts();
        (parts, BodySlot::from_body(body))
    } else {
        let (parts, body) = source.into_parts();
        (parts, BodySlot::new(Some(body)))
    };
    let (source_parts, body) = source;
    let source_length = source_parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(source_length) = source_length else {
        // A chunked source (a large object with more segments than one listing): Swift refuses.
        return Ok(Outcome::Local(crate::forward::swift_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the copy source has no length",
        )));
    };

    // 2. The sink request's headers, by Swift's rules.
    let sh = &source_parts.headers;
    let mut sink = HeaderMap::new();
    if !is_true(headers.get("x-fresh-metadata")) {
        for (k, v) in sh {
            let name = k.as_str();
            if !NOT_CARRIED.contains(&name) && !name.starts_with("x-backend-") {
                sink.append(k.clone(), v.clone());
            }
        }
    }
    // The request's own headers override the source's.
    let mut overridden: Vec<HeaderName> = Vec::new();
    for (k, v) in headers {
        if COPY_HEADERS.contains(&k.as_str()) || k == header::CONTENT_LENGTH || k == "expect" {
            continue;
        }
        if !overridden.contains(k) {
            sink.remove(k);
            overridden.push(k.clone());
        }
        sink.append(k.clone(), v.clone());
    }
    let mut sink_params: Vec<(String, String)> = params
        .into_iter()
        .filter(|(k, _)| k != "version-id")
        .collect();
    if manifest_get {
        if sh.contains_key("x-static-large-object") {
            for p in sink_params.iter_mut() {
                if p.0 == "multipart-manifest" {
                    p.1 = "put".into();
                }
            }
        }
        if let Some(m) = sh.get("x-object-manifest") {
            sink_params.retain(|(k, _)| k != "multipart-manifest");
            sink.insert("x-object-manifest", m.clone());
        }
    }
    sink.insert(header::CONTENT_LENGTH, HeaderValue::from(source_length));
    let verifiable = source_parts.status == StatusCode::OK
        && !sh.contains_key("x-static-large-object")
        && (!sh.contains_key("x-object-manifest") || manifest_get);
    if verifiable {
        if let Some(etag) = sh.get(header::ETAG) {
            let bare = etag.to_str().unwrap_or("").trim_matches('"').to_string();
            if let Ok(v) = HeaderValue::from_str(&bare) {
                sink.insert(header::ETAG, v);
            }
        }
    }
    if !headers.contains_key(header::CONTENT_TYPE) {
        if let Some(ct) = sh.get(header::CONTENT_TYPE) {
            sink.insert(header::CONTENT_TYPE, ct.clone());
        }
    }
    // A DLO manifest names its segment container: renamed for the destination, refused if it
    // lives elsewhere (the destination cluster could not find the segments).
    let dest_hop = hop(state, active, &plan.dest)?;
    let dest_target_account = active
        .routes
        .lookup(&plan.dest.account, Some(&plan.dest.container))
        .map(|r| r.target(&plan.dest.account, None).account)
        .unwrap_or_else(|| plan.dest.account.clone());
    let placement = crate::rename::Placement {
        cluster: plan.dest.cluster.as_deref(),
        account: &dest_target_account,
    };
    if let Err(reason) =
        crate::rename::rewrite_request(&mut sink, &active.routes, &plan.dest.account, &placement)
    {
        return Ok(Outcome::Local(crate::forward::swift_error(
            StatusCode::BAD_REQUEST,
            &reason,
        )));
    }

    // 3. The answer's extra headers, computed before the sink headers go.
    let mut extra = HeaderMap::new();
    let quote = |s: &str| HeaderValue::from_str(&utf8_percent_encode(s, PATH).to_string()).ok();
    if let Some(v) = quote(&plan.source.account) {
        extra.insert("x-copied-from-account", v);
    }
    if let Some(v) = quote(&format!("{}/{}", plan.source.container, plan.source.object)) {
        extra.insert("x-copied-from", v);
    }
    if let Some(v) = sh.get(header::LAST_MODIFIED) {
        extra.insert("x-copied-from-last-modified", v.clone());
    }
    if let Some(v) = sh.get("x-object-version-id") {
        extra.insert("x-copied-from-version-id", v.clone());
    }
    for (k, v) in &sink {
        if is_meta(k.as_str()) {
            extra.append(k.clone(), v.clone());
        }
    }

    // 4. The PUT, its body the source's, streamed.
    authenticate(&dest_hop, &mut sink).await?;
    if source_length > 0 {
        // Without the header the destination never answers 100 and the body waits for the
        // gate's fallback delay.
        sink.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
    }
    let sink_out = Outgoing {
        method: Method::PUT,
        path_and_query: join_query(dest_hop.path.clone(), &sink_params),
        headers: sink,
        endpoint_host: dest_hop.remote,
        // Nothing is read from the source until the destination accepts the request.
        expect_continue: source_length > 0,
    };
    let (mut answer, _) = dest_hop.upstream.send(&sink_out, &body).await?;
    if answer.status().is_success() {
        for (k, v) in &extra {
            answer.headers_mut().append(k.clone(), v.clone());
        }
    }
    Ok(Outcome::Upstream(answer, dest_hop.upstream.timeouts.idle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_like_swift() {
        assert_eq!(split_reference("/c/o/x"), Some(("c".into(), "o/x".into())));
        assert_eq!(split_reference("c/o"), Some(("c".into(), "o".into())));
        assert_eq!(split_reference("c/"), None);
        assert_eq!(split_reference("/c"), None);
        assert_eq!(object_of("/v1/a/c/o%20x/y"), Some("o x/y".into()));
    }
}
