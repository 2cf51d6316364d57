//! Answers the sidecar completes itself after the cluster's: its cross-cluster DLO and SLO
//! manifests assembled (`dlo`, `slo_assembly`), its cross-cluster symlinks followed
//! (`symlink`); and the requests it prepares before the cluster sees them: the check of a
//! symlink `PUT` whose target lives elsewhere, an SLO manifest `PUT` with segments elsewhere,
//! and `?multipart-manifest=delete` of such a manifest.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;

use super::authorize::{authorize_locally, authorize_target};
use super::spanning::bulk_delete;
use super::{response_status, send_timed, swift_error, ProxyResponse, Refusal, Req};
use crate::body::{self, BodySlot, ProxyBody};
use crate::dlo;
use crate::metrics::RouteCounters;
use crate::slo;
use crate::slo_assembly::{self, SloError};
use crate::slo_put::{self, Stored};
use crate::state::{Active, State};
use crate::swift_path::SwiftPath;
use crate::symlink;
use crate::upstream::{Outgoing, Upstream};

/// Where the object a request names is stored: its cluster (`None`: local) and target path.
pub(super) type At<'a> = (Option<&'a str>, &'a str);

fn failed(e: SloError) -> Refusal {
    Refusal::Denied(swift_error(e.status(), &e.to_string()))
}

/// A `GET`/`HEAD` answered with a cross-cluster DLO manifest is answered with the object it
/// stands for (`dlo`), or with the manifest as Swift shows one for `?multipart-manifest=get`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn large_object(
    state: &Arc<State>,
    active: &Arc<Active>,
    method: &Method,
    path: &SwiftPath<'_>,
    query: Option<&str>,
    client_headers: &HeaderMap,
    response: ProxyResponse,
    at: At<'_>,
) -> Result<ProxyResponse, Refusal> {
    let ProxyResponse::Upstream { mut response, idle } = response else {
        return Ok(response);
    };
    if slo_assembly::marker(response.headers()).is_some() {
        let req = (method, path, query, client_headers);
        return stored_slo(state, active, req, response, idle, at).await;
    }
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
    // First of the object PUT/POST steps: a client's own listing facts are not taken (they
    // would list as an SLO or a link).
    crate::standin::strip_headers(headers);
    if *method != Method::PUT {
        return Ok(None);
    }
    let Some((end, etag)) =
        symlink::mark_request(headers, &active.routes, &path.account, dest_cluster)
    else {
        return Ok(None);
    };
    let Some(etag) = etag else {
        symlink::listing_content_type(headers, &end, None);
        return Ok(None);
    };
    authorize_target(state, active, headers, &end).await?;
    let checked = symlink::check_static(state, active, &end, &etag, headers)
        .await
        .map_err(|e| Refusal::Denied(swift_error(e.status(), &e.to_string())))?;
    match checked {
        Err(refusal) => Ok(Some(refusal)),
        Ok(target) => {
            symlink::listing_content_type(headers, &end, target.as_ref());
            Ok(None)
        }
    }
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

/// Reading segments elsewhere with the sidecar's own credentials needs the local cluster to
/// let the client read its account.
async fn authorize_segments(
    state: &State,
    active: &Active,
    client_headers: &HeaderMap,
    account: &str,
) -> Result<(), Refusal> {
    let uses_credentials = active.routes.container_routes(account).iter().any(|r| {
        active
            .clusters
            .get(&r.cluster)
            .is_some_and(|c| c.tokens.is_some())
    });
    if uses_credentials {
        authorize_locally(state, client_headers, account, &Method::GET).await?;
    }
    Ok(())
}

/// A `GET`/`HEAD` answered with a stored cross-cluster SLO manifest: the assembled object, or
/// the manifest as Swift shows one (`?multipart-manifest=get`); other answers lose the marker.
async fn stored_slo(
    state: &Arc<State>,
    active: &Arc<Active>,
    (method, path, query, client_headers): (&Method, &SwiftPath<'_>, Option<&str>, &HeaderMap),
    mut response: Response<Incoming>,
    idle: Duration,
    at: At<'_>,
) -> Result<ProxyResponse, Refusal> {
    let status = response.status();
    // A Range or condition the cluster applied to the stored form is the SLO's, not its.
    let readable = [
        StatusCode::OK,
        StatusCode::PARTIAL_CONTENT,
        StatusCode::NOT_MODIFIED,
        StatusCode::PRECONDITION_FAILED,
        StatusCode::RANGE_NOT_SATISFIABLE,
    ]
    .contains(&status);
    if !path.has_object || !matches!(*method, Method::GET | Method::HEAD) || !readable {
        response.headers_mut().remove(slo_assembly::MARKER);
        return Ok(ProxyResponse::Upstream { response, idle });
    }
    authorize_segments(state, active, client_headers, &path.account).await?;
    let whole = status == StatusCode::OK
        && *method == Method::GET
        && !client_headers.contains_key(http::header::RANGE);
    let (parts, incoming) = response.into_parts();
    let (headers, body) = if whole {
        let read = body::read_to_end(incoming, crate::subrequest::MAX_BODY)
            .await
            .map_err(|e| Refusal::Denied(swift_error(StatusCode::BAD_GATEWAY, &e)))?;
        (parts.headers, read.map(bytes::Bytes::from))
    } else if status == StatusCode::OK {
        (parts.headers, None)
    } else {
        // A 206/304/412/416 of the stored form carries its own framing's headers (a
        // multipart content type, a page's), not the object's.
        let plain = slo_assembly::read_stored(state, active, client_headers, at, method.clone())
            .await
            .map_err(failed)?;
        let body = (*method == Method::GET).then_some(plain.body);
        (plain.headers, body)
    };
    if slo::is_manifest(query, "get") {
        let body = match body {
            Some(b) => b,
            None => {
                slo_assembly::read_stored(state, active, client_headers, at, Method::GET)
                    .await
                    .map_err(failed)?
                    .body
            }
        };
        let raw = query.unwrap_or("").split('&').any(|p| p == "format=raw");
        let mut shown = slo_assembly::show_manifest(&headers, &body, raw).map_err(failed)?;
        if *method == Method::HEAD {
            *shown.body_mut() = body::empty();
        }
        return Ok(ProxyResponse::Local(shown));
    }
    let assembled = slo_assembly::assemble(
        state,
        active,
        client_headers,
        &path.account,
        method,
        &headers,
        body,
        at,
    )
    .await
    .map_err(failed)?;
    Ok(ProxyResponse::Local(assembled))
}

/// A manifest `PUT` body (read whole, Swift bounds its size) naming a segment outside
/// `dest_cluster`: checked as Swift's SLO checks it, `Ok(Err)` its refusal; `None`: every
/// segment lives with the manifest (Swift's own SLO then).
pub(super) async fn manifest_elsewhere(
    state: &State,
    active: &Active,
    (path, query): (&SwiftPath<'_>, Option<&str>),
    dest_cluster: Option<&str>,
    client_headers: &HeaderMap,
    manifest: &[u8],
) -> Result<Option<Result<Stored, Response<ProxyBody>>>, Refusal> {
    if !slo_put::crosses(manifest, &active.routes, &path.account, dest_cluster) {
        return Ok(None);
    }
    authorize_segments(state, active, client_headers, &path.account).await?;
    let name = path.object_name().unwrap_or_default();
    let checked = slo_put::validate(
        state,
        active,
        client_headers,
        &path.account,
        &name,
        manifest,
        query,
    );
    Ok(Some(checked.await.map_err(failed)?))
}

/// The client's manifest `PUT` body, read whole (Swift bounds its size).
pub(super) async fn read_manifest(body: &BodySlot) -> Result<Vec<u8>, Refusal> {
    body::read_slot(body, slo::MAX_MANIFEST)
        .await
        .map_err(Refusal::BadRequest)?
        .ok_or_else(|| {
            Refusal::Denied(swift_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "manifest too large",
            ))
        })
}

/// `DELETE ?multipart-manifest=delete` of a stored cross-cluster manifest (`at`): its
/// segments deleted wherever they live, then the manifest, answered as Swift's bulk answers.
/// `None`: not such a manifest (Swift's own SLO answers).
pub(super) async fn manifest_delete(
    state: &State,
    active: &Active,
    method: &Method,
    path: &SwiftPath<'_>,
    query: Option<&str>,
    client_headers: &HeaderMap,
    at: At<'_>,
) -> Result<Option<Response<ProxyBody>>, Refusal> {
    if *method != Method::DELETE
        || !path.has_object
        || !slo::is_manifest(query, "delete")
        || active.routes.container_routes(&path.account).is_empty()
    {
        return Ok(None);
    }
    let plain = crate::segments::plain(client_headers);
    let head = crate::listing::send(state, active, &plain, at.0, Method::HEAD, at.1.to_string())
        .await
        .map_err(|e| Refusal::Denied(swift_error(e.status(), &e.to_string())))?;
    if slo_assembly::marker(&head.headers).is_none() {
        return Ok(None);
    }
    let stored = slo_assembly::read_stored(state, active, client_headers, at, Method::GET)
        .await
        .map_err(failed)?;
    let plain_get = crate::segments::plain(client_headers);
    let manifest = path.object_name().unwrap_or_default();
    let names = slo_assembly::names_to_delete(
        state,
        active,
        &plain_get,
        &path.account,
        manifest,
        &stored.body,
    )
    .await
    .map_err(failed)?;
    let mut lines = String::new();
    for name in &names {
        lines.push_str(&slo_assembly::quote(name));
        lines.push('\n');
    }
    let mut headers = plain;
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    headers.insert(http::header::CONTENT_LENGTH, lines.len().into());
    let body = BodySlot::from_bytes(lines.into());
    bulk_delete(state, active, &Method::DELETE, path, &headers, &body).await
}

/// On an object `PUT`/`POST`: a client's own SLO marker is dropped; a metadata `POST` to a
/// stored cross-cluster manifest carries its marker over, as Swift keeps an SLO's system
/// metadata through a `POST` that replaces the user metadata the marker lives in.
pub(super) async fn keep_slo_marker(
    state: &State,
    active: &Active,
    method: &Method,
    path: &SwiftPath<'_>,
    headers: &mut HeaderMap,
    at: At<'_>,
) -> Result<(), Refusal> {
    slo_assembly::strip_request(headers);
    if *method != Method::POST || active.routes.container_routes(&path.account).is_empty() {
        return Ok(());
    }
    let plain = crate::segments::plain(headers);
    let head = crate::listing::send(state, active, &plain, at.0, Method::HEAD, at.1.to_string())
        .await
        .map_err(|e| Refusal::Denied(swift_error(e.status(), &e.to_string())))?;
    if let Some(marker) = head.headers.get(slo_assembly::MARKER) {
        headers.insert(slo_assembly::MARKER, marker.clone());
    }
    // A new Content-Type keeps what the listing shows of a stand-in, as Swift keeps
    // `swift_bytes` and a link's listing fields.
    let content_type = |h: &HeaderMap| {
        h.get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if let (Some(given), Some(stored)) = (content_type(headers), content_type(&head.headers)) {
        let (_, facts) = crate::standin::clean(&stored);
        let facts: Vec<(&str, String)> =
            facts.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        if !facts.is_empty() {
            let with = crate::standin::with(&given, &facts);
            if let Ok(v) = http::HeaderValue::from_str(&with) {
                headers.insert(http::header::CONTENT_TYPE, v);
            }
        }
    }
    Ok(())
}

/// The cluster's answer to a stored manifest `PUT`, given back as Swift's SLO gives its own.
pub(super) async fn stored_manifest_answer(
    response: ProxyResponse,
    answer: &slo_put::Answer,
) -> Result<ProxyResponse, Refusal> {
    let ProxyResponse::Upstream { mut response, idle } = response else {
        return Ok(response);
    };
    let status = response.status();
    answer.etag(status, response.headers_mut());
    if !answer.reports() {
        return Ok(ProxyResponse::Upstream { response, idle });
    }
    let (parts, incoming) = response.into_parts();
    let body = body::read_to_end(incoming, crate::subrequest::MAX_BODY)
        .await
        .map_err(|e| Refusal::Denied(swift_error(StatusCode::BAD_GATEWAY, &e)))?
        .unwrap_or_default();
    match answer.report(status, &parts.headers, &body) {
        Some(report) => Ok(ProxyResponse::Local(report)),
        None => Ok(ProxyResponse::Local(Response::from_parts(
            parts,
            body::full(body),
        ))),
    }
}

/// A stored manifest whose Content-Type Swift guessed from its name (`slo_put::relabelled`):
/// the guess read back with a `HEAD`, then the same manifest put again with that type carrying
/// what the listing must show. Any failure keeps the first answer (the manifest is stored; only
/// its listing shows the stored object).
pub(super) async fn relabel_guessed(
    upstream: &Upstream,
    sent: &Outgoing,
    body: Bytes,
    marker: &str,
    response: ProxyResponse,
    counters: &RouteCounters,
) -> Result<ProxyResponse, Refusal> {
    if !response_status(&response).is_some_and(|s| s.is_success()) {
        return Ok(response);
    }
    let mut head_headers = sent.headers.clone();
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::ETAG,
        header::EXPECT,
        header::TRANSFER_ENCODING,
    ] {
        head_headers.remove(name);
    }
    let head = Outgoing {
        method: Method::HEAD,
        path_and_query: sent
            .path_and_query
            .split('?')
            .next()
            .unwrap_or_default()
            .to_string(),
        headers: head_headers,
        endpoint_host: sent.endpoint_host,
        expect_continue: false,
    };
    let Ok((head, _)) = upstream.send(&head, &BodySlot::new(None)).await else {
        return Ok(response);
    };
    let guessed = head
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| head.status().is_success())
        .map(|v| crate::standin::clean(v).0);
    let Some(guessed) = guessed else {
        return Ok(response);
    };
    let again = Outgoing {
        method: Method::PUT,
        path_and_query: sent.path_and_query.clone(),
        headers: slo_put::relabelled(&sent.headers, &guessed, marker),
        endpoint_host: sent.endpoint_host,
        expect_continue: false,
    };
    let relabelled = send_timed(upstream, &again, &BodySlot::from_bytes(body), counters).await?;
    Ok(match response_status(&relabelled) {
        Some(s) if s.is_success() => relabelled,
        _ => response,
    })
}

/// What an SLO manifest `PUT` sends in place of the client's: the manifest read whole, checked
/// and stored by the sidecar when its segments live elsewhere (`slo_put`), else as `otherwise`
/// makes it (names renamed for the target, or as it came).
pub(super) struct ManifestPut {
    pub body: BodySlot,
    /// The query sent (`multipart-manifest=put` dropped for a stored manifest).
    pub sent_query: Option<String>,
    /// How the answer to a stored manifest is given back.
    pub answer: Option<slo_put::Answer>,
    /// A stored manifest whose Content-Type Swift will guess: (marker, body) to label it after
    /// (`relabel_guessed`).
    pub relabel: Option<(String, Vec<u8>)>,
}

/// `Ok(Err(_))`: Swift's refusal of the manifest.
pub(super) async fn manifest_put(
    req: &Req<'_>,
    dest_cluster: Option<&str>,
    client_headers: &HeaderMap,
    headers: &mut HeaderMap,
    otherwise: impl FnOnce(Vec<u8>) -> Vec<u8>,
) -> Result<Result<ManifestPut, Response<ProxyBody>>, Refusal> {
    let (state, active, path, query) = (req.state, req.active, req.path, req.query);
    let bytes = read_manifest(req.body).await?;
    let mut put = ManifestPut {
        body: BodySlot::new(None),
        sent_query: query.map(str::to_string),
        answer: None,
        relabel: None,
    };
    let elsewhere = manifest_elsewhere(
        state,
        active,
        (path, query),
        dest_cluster,
        client_headers,
        &bytes,
    );
    let bytes = match elsewhere.await? {
        Some(Err(refusal)) => return Ok(Err(refusal)),
        Some(Ok(stored)) => {
            if !slo_put::storing(headers, &stored, req.raw_path) {
                put.relabel = Some((stored.marker.clone(), stored.body.clone()));
            }
            put.sent_query = slo_put::without_manifest_put(query);
            put.answer = Some(stored.answer);
            stored.body
        }
        None => otherwise(bytes),
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    headers.remove(header::EXPECT);
    put.body = BodySlot::from_bytes(bytes.into());
    Ok(Ok(put))
}
