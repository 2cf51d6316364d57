//! Static Large Objects with segments in other clusters than the manifest. Swift's SLO
//! middleware reads segments only in its own cluster, so such a manifest is checked and stored
//! by the sidecar (`slo_put`): a plain object holding the JSON Swift would store (client
//! names, resolved through the routes when read) with the SLO's size and ETag in the sidecar's
//! metadata header [`MARKER`] (clients cannot set `X-Static-Large-Object`). Here it is read:
//! `GET`/`HEAD` answer the assembled object with Swift's SLO headers and conditions
//! (`segments` streams it), `?multipart-manifest=get` (and `&format=raw`) the manifest as
//! Swift shows it, and `?multipart-manifest=delete` gets the names to delete in every cluster
//! (`forward::large_objects` with `bulk`). The marker never reaches a client.

use std::collections::VecDeque;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use md5::{Digest, Md5};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::body::ProxyBody;
use crate::listing::{self, ListingError};
use crate::pyformat::{dumps, Object};
use crate::route_table::RouteTable;
use crate::segments::{self, plain, Segment};
use crate::state::{Active, State};
use crate::swift_path::encode_segment;

/// Where a cross-cluster SLO keeps `<size> <SLO etag>`; its presence makes the object one.
pub const MARKER: &str = "x-object-meta-swiftfed-slo";
/// Swift's bound on the segments waiting to be deleted (ten manifests' worth).
const MAX_BUFFERED: usize = 10_000;
/// Python's `quote` (safe `/`), as Swift names problem segments.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

#[derive(Debug, thiserror::Error)]
pub enum SloError {
    #[error(transparent)]
    Listing(#[from] ListingError),
    #[error("the stored manifest is not readable: {0}")]
    Stored(String),
}

impl SloError {
    pub fn status(&self) -> StatusCode {
        match self {
            SloError::Listing(e) => e.status(),
            SloError::Stored(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The SLO's size and ETag when `headers` are those of a stored cross-cluster manifest.
pub fn marker(headers: &HeaderMap) -> Option<(u64, String)> {
    let value = headers.get(MARKER)?.to_str().ok()?;
    let (size, etag) = value.split_once(' ')?;
    Some((size.parse().ok()?, etag.to_string()))
}

/// A client's own marker is dropped (it would make the sidecar read where it says).
pub fn strip_request(headers: &mut HeaderMap) {
    headers.remove(MARKER);
}

pub(crate) fn split(path: &str) -> Option<(&str, &str)> {
    path.trim_start_matches('/')
        .split_once('/')
        .filter(|(c, o)| !c.is_empty() && !o.is_empty())
}

/// Where a client-named object lives: its cluster and its target path (encoded).
pub(crate) fn locate(routes: &RouteTable, account: &str, container: &str, object: &str) -> Segment {
    let (cluster, target_account, target_container) = match routes.lookup(account, Some(container))
    {
        Some(r) => {
            let t = r.target(account, Some(container));
            (
                Some(r.cluster.clone()),
                t.account,
                t.container.unwrap_or_else(|| container.to_string()),
            )
        }
        None => (None, account.to_string(), container.to_string()),
    };
    Segment {
        cluster,
        path: format!(
            "/v1/{}/{}/{}",
            encode_segment(&target_account),
            encode_segment(&target_container),
            utf8_percent_encode(object, PATH)
        ),
        ..Segment::default()
    }
}

/// Swift's `Range` on a segment, for a known length: `(first, last)` or `None` unsatisfiable.
pub(crate) fn segment_range(spec: &str, length: u64) -> Result<Option<(u64, u64)>, ()> {
    let (a, b) = spec.trim().split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(s), Some(e)) if s <= e => (s, e.min(length.saturating_sub(1))),
        (Some(s), None) if b.is_empty() => (s, length.saturating_sub(1)),
        (None, Some(n)) if a.is_empty() && n > 0 => {
            (length.saturating_sub(n), length.saturating_sub(1))
        }
        _ => return Err(()),
    };
    Ok((parsed.0 < length && length > 0).then_some(parsed))
}

/// A name as Swift quotes it in answers and bulk requests.
pub fn quote(name: &str) -> String {
    utf8_percent_encode(name, PATH).to_string()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored manifest's segments, where each lives.
fn parse_stored(routes: &RouteTable, account: &str, body: &[u8]) -> Result<Vec<Segment>, SloError> {
    let records: Vec<Object> =
        serde_json::from_slice(body).map_err(|e| SloError::Stored(e.to_string()))?;
    records
        .iter()
        .map(|r| {
            if let Some(data) = r.get("data").and_then(|d| d.as_str()) {
                let data = inline(data).ok_or_else(|| SloError::Stored("inline data".into()))?;
                return Ok(Segment {
                    bytes: data.len() as u64,
                    data: Some(data.into()),
                    ..Segment::default()
                });
            }
            let name = r.name().unwrap_or_default();
            let (container, object) =
                split(name).ok_or_else(|| SloError::Stored(format!("segment name {name:?}")))?;
            let mut segment = locate(routes, account, container, object);
            segment.bytes = r.number("bytes");
            if let Some(spec) = r.get("range").and_then(|v| v.as_str()) {
                if let Ok(Some((a, b))) = segment_range(spec, segment.bytes) {
                    segment.first = Some(a);
                    segment.bytes = b - a + 1;
                }
            }
            Ok(segment)
        })
        .collect()
}

/// An inline segment's bytes (base64 with its padding, as Swift's `strict_b64decode`).
pub(crate) fn inline(data: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(data).ok()
}

/// The `name`s of a manifest's segments, each with whether it is itself a Swift SLO.
fn entries(body: &[u8]) -> Result<Vec<(String, bool)>, SloError> {
    let records: Vec<Object> =
        serde_json::from_slice(body).map_err(|e| SloError::Stored(e.to_string()))?;
    Ok(records
        .iter()
        .filter_map(|r| {
            let sub = r.get("sub_slo").and_then(|v| v.as_bool()) == Some(true);
            r.name().map(|n| (n.to_string(), sub))
        })
        .collect())
}

/// The segments of the Swift SLO `name` (client names), read where it lives; `None` when it
/// cannot be read (it is then deleted as it is).
async fn sub_entries(
    state: &State,
    active: &Active,
    client_headers: &HeaderMap,
    account: &str,
    name: &str,
) -> Option<Vec<(String, bool)>> {
    let (container, object) = split(name)?;
    let at = locate(&active.routes, account, container, object);
    let path = format!("{}?multipart-manifest=get", at.path);
    let cluster = at.cluster.as_deref();
    let got = listing::send(state, active, client_headers, cluster, Method::GET, path).await;
    let got = got.ok().filter(|a| a.status.is_success())?;
    let body = match (cluster, active.routes.lookup(account, Some(container))) {
        (Some(cluster), Some(route)) => {
            let target = route.target(account, Some(container)).account;
            crate::slo::rename_get(&got.body, &active.routes, cluster, &target)
        }
        _ => None,
    };
    entries(body.as_deref().unwrap_or(&got.body)).ok()
}

/// Everything `?multipart-manifest=delete` of the stored manifest `manifest` (its `body`)
/// deletes, in Swift's order: its segments, itself, then the segments of the Swift SLOs among
/// them, each such SLO after its own segments.
pub async fn names_to_delete(
    state: &State,
    active: &Active,
    client_headers: &HeaderMap,
    account: &str,
    manifest: String,
    body: &[u8],
) -> Result<Vec<String>, SloError> {
    let mut pending: VecDeque<(String, bool)> = entries(body)?.into();
    pending.push_back((manifest, false));
    let mut out = Vec::new();
    while let Some((name, sub)) = pending.pop_front() {
        if sub && pending.len() < MAX_BUFFERED {
            let found = sub_entries(state, active, client_headers, account, &name).await;
            pending.extend(found.unwrap_or_default());
            pending.push_back((name, false));
            continue;
        }
        out.push(name);
    }
    Ok(out)
}

/// Reads a stored manifest (in `cluster` at target `path`) with a plain `GET` or `HEAD`.
pub async fn read_stored(
    state: &State,
    active: &Active,
    client_headers: &HeaderMap,
    (cluster, path): (Option<&str>, &str),
    method: Method,
) -> Result<crate::subrequest::Answer, SloError> {
    let answer = listing::send(
        state,
        active,
        &plain(client_headers),
        cluster,
        method,
        path.to_string(),
    )
    .await?;
    if !answer.status.is_success() {
        return Err(SloError::Stored(format!("answered {}", answer.status)));
    }
    Ok(answer)
}

/// Swift's headers for an SLO: size and ETag from the marker, the stored object's own ETag as
/// `X-Manifest-Etag`.
fn slo_headers(stored: &HeaderMap, size: u64, etag: &str) -> HeaderMap {
    let mut headers = stored.clone();
    headers.remove(MARKER);
    crate::standin::strip_headers(&mut headers);
    let manifest_etag = headers
        .remove(header::ETAG)
        .and_then(|v| v.to_str().ok().map(|e| e.trim_matches('"').to_string()))
        .unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(&manifest_etag) {
        headers.insert("x-manifest-etag", v);
    }
    headers.insert("x-static-large-object", HeaderValue::from_static("True"));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers
}

/// Whether an `If-Match`/`If-None-Match` list names `etag` (or is `*`).
fn names(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(|e| e.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|e| e == "*" || e == etag)
}

/// The assembled object for a `GET`/`HEAD` answered with a stored manifest (`stored`: the
/// answer's headers; `at`: where to read its body when the answer does not hold it whole).
#[allow(clippy::too_many_arguments)]
pub async fn assemble(
    state: &Arc<State>,
    active: &Arc<Active>,
    client_headers: &HeaderMap,
    account: &str,
    method: &Method,
    stored: &HeaderMap,
    body: Option<bytes::Bytes>,
    at: (Option<&str>, &str),
) -> Result<Response<ProxyBody>, SloError> {
    let (size, etag) = marker(stored).unwrap_or_default();
    let mut headers = slo_headers(stored, size, &etag);
    let condition = |h: header::HeaderName| {
        client_headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let failed = match (
        condition(header::IF_MATCH),
        condition(header::IF_NONE_MATCH),
    ) {
        (Some(m), _) if !names(&m, &etag) => Some(StatusCode::PRECONDITION_FAILED),
        (_, Some(n)) if names(&n, &etag) => Some(StatusCode::NOT_MODIFIED),
        _ => None,
    };
    if let Some(status) = failed {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        if status == StatusCode::PRECONDITION_FAILED {
            // Swift's 412 page is typed, though empty.
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=UTF-8"),
            );
        }
        let mut r = Response::new(crate::body::empty());
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        return Ok(r);
    }
    let segments = if *method == Method::HEAD {
        // HEAD reads no segment: one piece of the SLO's size stands for them.
        vec![Segment {
            bytes: size,
            ..Segment::default()
        }]
    } else {
        let body = match body {
            Some(b) => b,
            None => {
                read_stored(state, active, client_headers, at, Method::GET)
                    .await?
                    .body
            }
        };
        parse_stored(&active.routes, account, &body)?
    };
    Ok(segments::respond(
        state,
        active,
        client_headers,
        method,
        headers,
        segments,
        segments::Flavour::Slo,
    ))
}

/// `?multipart-manifest=get` of a stored manifest: Swift's stored JSON (as it is) or, with
/// `format=raw`, the form it was put in.
pub fn show_manifest(
    stored: &HeaderMap,
    body: &[u8],
    raw: bool,
) -> Result<Response<ProxyBody>, SloError> {
    let mut headers = stored.clone();
    headers.remove(MARKER);
    crate::standin::strip_headers(&mut headers);
    headers.remove(header::CONTENT_RANGE);
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert("x-static-large-object", HeaderValue::from_static("True"));
    let body = if raw {
        let records: Vec<Object> =
            serde_json::from_slice(body).map_err(|e| SloError::Stored(e.to_string()))?;
        let put: Vec<Object> = records
            .iter()
            .map(|r| {
                if r.get("data").is_some() {
                    return r.clone();
                }
                // json.dumps(sort_keys=True): etag, path, range, size_bytes.
                let mut pairs = vec![
                    (
                        "etag".to_string(),
                        r.get("hash").cloned().unwrap_or_default(),
                    ),
                    (
                        "path".to_string(),
                        r.get("name").cloned().unwrap_or_default(),
                    ),
                ];
                if let Some(range) = r.get("range") {
                    pairs.push(("range".into(), range.clone()));
                }
                pairs.push((
                    "size_bytes".into(),
                    r.get("bytes").cloned().unwrap_or_default(),
                ));
                Object::from_pairs(pairs)
            })
            .collect();
        let json = dumps(&put);
        if let Ok(v) = HeaderValue::from_str(&hex(&Md5::digest(&json))) {
            headers.insert(header::ETAG, v);
        }
        json
    } else {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        body.to_vec()
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let mut r = Response::new(crate::body::full(body));
    *r.headers_mut() = headers;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_ranges_like_swift() {
        assert_eq!(segment_range("1-2", 10), Ok(Some((1, 2))));
        assert_eq!(segment_range("5-", 10), Ok(Some((5, 9))));
        assert_eq!(segment_range("-3", 10), Ok(Some((7, 9))));
        assert_eq!(segment_range("4-100", 10), Ok(Some((4, 9))));
        assert_eq!(segment_range("10-", 10), Ok(None));
        assert!(segment_range("x", 10).is_err());
        assert!(segment_range("3-1", 10).is_err());
    }
}
