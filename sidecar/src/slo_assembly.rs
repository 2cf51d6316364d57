//! Static Large Objects with segments in other clusters than the manifest. Swift's SLO
//! middleware checks and reads segments only in its own cluster, so the sidecar does what it
//! does for such a manifest: on `PUT ?multipart-manifest=put` it HEADs every segment where it
//! lives and checks it as Swift does (existence, `etag`, `size_bytes`, `range`, at least one
//! byte but for the last), answers Swift's 400 listing of problem segments, and stores the
//! manifest as Swift would store it (JSON of `name`/`bytes`/`hash`/`content_type`/
//! `last_modified`/`range`/`sub_slo`, client names) in a plain object carrying the SLO's size
//! and ETag in the sidecar's metadata header [`MARKER`] (clients cannot set
//! `X-Static-Large-Object` themselves). `GET`/`HEAD` of it answer the assembled object with
//! Swift's SLO headers (`segments` streams it), `?multipart-manifest=get` (and `&format=raw`)
//! the manifest as Swift shows it, `?multipart-manifest=delete` deletes the segments in every
//! cluster they live in and the manifest (`bulk`). The marker never reaches a client.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use md5::{Digest, Md5};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::body::ProxyBody;
use crate::listing::{self, ListingError};
use crate::pyformat::{dumps, xml_escape, Object};
use crate::route_table::RouteTable;
use crate::segments::{self, plain, Segment};
use crate::state::{Active, State};
use crate::swift_path::encode_segment;

/// Where a cross-cluster SLO keeps `<size> <SLO etag>`; its presence makes the object one.
pub const MARKER: &str = "x-object-meta-swiftfed-slo";
/// Swift's default `max_manifest_segments`.
const MAX_SEGMENTS: usize = 1000;
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

fn split(path: &str) -> Option<(&str, &str)> {
    path.trim_start_matches('/')
        .split_once('/')
        .filter(|(c, o)| !c.is_empty() && !o.is_empty())
}

fn cluster_of<'a>(routes: &'a RouteTable, account: &str, container: &str) -> Option<&'a str> {
    routes
        .lookup(account, Some(container))
        .map(|r| r.cluster.as_str())
}

/// Whether a manifest `PUT` body names a segment living outside `dest_cluster` (`None`:
/// local); bodies that are not a JSON list stay Swift's to refuse.
pub fn crosses(
    body: &[u8],
    routes: &RouteTable,
    account: &str,
    dest_cluster: Option<&str>,
) -> bool {
    let Ok(segments) = serde_json::from_slice::<Vec<serde_json::Value>>(body) else {
        return false;
    };
    segments.iter().any(|s| {
        s.get("path")
            .and_then(|p| p.as_str())
            .and_then(split)
            .is_some_and(|(c, _)| cluster_of(routes, account, c) != dest_cluster)
    })
}

/// Where a client-named object lives: its cluster and its target path (encoded).
fn locate(routes: &RouteTable, account: &str, container: &str, object: &str) -> Segment {
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
        bytes: 0,
        first: None,
    }
}

/// A manifest ready to store: its body, and the marker and ETag the answer carries.
pub struct Stored {
    pub body: Vec<u8>,
    pub marker: String,
    pub slo_etag: String,
}

/// Swift's `Range` on a segment, for a known length: `(first, last)` or `None` unsatisfiable.
fn segment_range(spec: &str, length: u64) -> Result<Option<(u64, u64)>, ()> {
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

/// `Wed, 25 Nov 2026 22:05:30 GMT` as Swift writes a segment's `last_modified`.
fn swift_time(http_date: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = http_date.split_whitespace().collect();
    if let [_, day, month, year, time, ..] = parts.as_slice() {
        if let Some(m) = MONTHS.iter().position(|x| x == month) {
            return format!("{year}-{:02}-{day:0>2}T{time}.000000", m + 1);
        }
    }
    String::new()
}

/// Swift's 400 (or 422) answer to a manifest `PUT`, in the format the client accepts.
fn refusal(
    client_headers: &HeaderMap,
    status: StatusCode,
    problems: &[(String, String)],
) -> Response<ProxyBody> {
    let accept = client_headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (content_type, text) = if accept.contains("application/json") {
        let errors: Vec<serde_json::Value> = problems
            .iter()
            .map(|(n, s)| serde_json::json!([n, s]))
            .collect();
        let object = Object::from_pairs(vec![("Errors".into(), errors.into())]);
        ("application/json", dumps(&object))
    } else if accept.contains("/xml") {
        let mut out = String::from("<upload>\n<errors>\n");
        for (n, s) in problems {
            out.push_str(&format!(
                "<object><name>{}</name><status>{}</status></object>\n",
                xml_escape(n, false),
                xml_escape(s, false)
            ));
        }
        out.push_str("</errors>\n</upload>\n");
        ("application/xml", out.into_bytes())
    } else {
        let mut out = String::from("Errors:\n");
        for (n, s) in problems {
            out.push_str(&format!("{n}, {s}\n"));
        }
        ("text/plain", out.into_bytes())
    };
    let mut r = Response::new(crate::body::full(text));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn bad_request(text: String) -> Response<ProxyBody> {
    let mut r = Response::new(crate::body::full(text));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Checks a manifest `PUT` (`manifest`: the client's path `/container/object`) as Swift's SLO
/// does, segments HEADed where they live; `Err`: Swift's refusal.
pub async fn validate(
    state: &State,
    active: &Active,
    client_headers: &HeaderMap,
    account: &str,
    manifest: &str,
    body: &[u8],
) -> Result<Result<Stored, Response<ProxyBody>>, SloError> {
    let Ok(parsed) = serde_json::from_slice::<Vec<Object>>(body) else {
        return Ok(Err(bad_request("Manifest must be a list.\n".into())));
    };
    if parsed.len() > MAX_SEGMENTS {
        let mut r = bad_request(format!(
            "Number of object-backed segments must be <= {MAX_SEGMENTS}"
        ));
        *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        return Ok(Err(r));
    }
    // Swift's input checks, the ones a well-formed client may still trip.
    let mut errors = String::new();
    let last = parsed.len().saturating_sub(1);
    for (i, s) in parsed.iter().enumerate() {
        let Some(path) = s.get("path").and_then(|p| p.as_str()) else {
            errors.push_str(&format!(
                "Index {i}: only object-backed segments (\"path\") are supported when \
                 segments live in another cluster\n"
            ));
            continue;
        };
        if split(path).is_none() {
            errors.push_str(&format!(
                "Index {i}: path does not refer to an object. Path must be of the form \
                 /container/object.\n"
            ));
        } else if path.trim_start_matches('/') == manifest.trim_start_matches('/') {
            errors.push_str(&format!(
                "Index {i}: manifest must not include itself as a segment\n"
            ));
        } else if size_of(s).is_err() {
            errors.push_str(&format!("Index {i}: invalid size_bytes\n"));
        } else if size_of(s) == Ok(Some(0)) && i != last {
            errors.push_str(&format!(
                "Index {i}: too small; each segment must be at least 1 byte.\n"
            ));
        } else if let Some(r) = s.get("range").and_then(|r| r.as_str()) {
            if r.contains(',') || segment_range(r, u64::MAX).is_err() {
                errors.push_str(&format!("Index {i}: invalid range\n"));
            }
        }
    }
    if !errors.is_empty() {
        return Ok(Err(bad_request(errors)));
    }

    let mut problems = Vec::new();
    let mut stored = Vec::with_capacity(parsed.len());
    let mut total = 0u64;
    let mut slo_etag = Md5::new();
    for (i, s) in parsed.iter().enumerate() {
        let path = s.get("path").and_then(|p| p.as_str()).unwrap_or_default();
        let (container, object) = split(path).unwrap_or_default();
        let quoted = utf8_percent_encode(path, PATH).to_string();
        let at = locate(&active.routes, account, container, object);
        let head = listing::send(
            state,
            active,
            &plain(client_headers),
            at.cluster.as_deref(),
            Method::HEAD,
            at.path.clone(),
        )
        .await?;
        if !head.status.is_success() {
            let reason = head.status.canonical_reason().unwrap_or("");
            problems.push((quoted, format!("{} {reason}", head.status.as_u16())));
            continue;
        }
        let got = |h: &str| {
            head.headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        if head.headers.contains_key(MARKER) {
            problems.push((
                quoted,
                "Manifests with segments in other clusters cannot be nested".into(),
            ));
            continue;
        }
        let length: u64 = got("content-length").parse().unwrap_or(0);
        let etag = got("etag").trim_matches('"').to_string();
        let mut used = length;
        let mut range = None;
        if let Some(spec) = s.get("range").and_then(|r| r.as_str()) {
            match segment_range(spec, length) {
                Ok(Some((a, b))) if a == 0 && b + 1 == length => {}
                Ok(Some((a, b))) => {
                    range = Some(format!("{a}-{b}"));
                    used = b - a + 1;
                }
                _ => problems.push((quoted.clone(), "Unsatisfiable Range".into())),
            }
        }
        if used < 1 && i != last {
            problems.push((
                quoted.clone(),
                "Too small; each segment must be at least 1 byte.".into(),
            ));
        }
        if size_of(s).ok().flatten().is_some_and(|n| n != length) {
            problems.push((quoted.clone(), "Size Mismatch".into()));
        }
        if let Some(want) = s.get("etag").and_then(|e| e.as_str()) {
            if want != etag {
                problems.push((quoted.clone(), "Etag Mismatch".into()));
            }
        }
        let mut record = Object::from_pairs(vec![
            (
                "name".into(),
                format!("/{}", path.trim_start_matches('/')).into(),
            ),
            ("bytes".into(), length.into()),
            ("hash".into(), etag.clone().into()),
            ("content_type".into(), got("content-type").into()),
            (
                "last_modified".into(),
                swift_time(&got("last-modified")).into(),
            ),
        ]);
        match &range {
            Some(r) => {
                slo_etag.update(format!("{etag}:{r};").as_bytes());
                record.set("range", r.clone());
            }
            None => slo_etag.update(etag.as_bytes()),
        }
        if got("x-static-large-object").eq_ignore_ascii_case("true") {
            record.set("sub_slo", true);
        }
        total += used;
        stored.push(record);
    }
    if !problems.is_empty() {
        return Ok(Err(refusal(
            client_headers,
            StatusCode::BAD_REQUEST,
            &problems,
        )));
    }
    let slo_etag = hex(&slo_etag.finalize());
    let client_etag = client_headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|e| e.trim().trim_matches('"').to_string());
    if client_etag.is_some_and(|e| !e.is_empty() && e != slo_etag) {
        let mut r = Response::new(crate::body::full(
            "<html><h1>Unprocessable Entity</h1><p>Unable to process the contained \
             instructions</p></html>",
        ));
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(Err(r));
    }
    Ok(Ok(Stored {
        body: dumps(&stored),
        marker: format!("{total} {slo_etag}"),
        slo_etag,
    }))
}

fn size_of(s: &Object) -> Result<Option<u64>, ()> {
    match s.get("size_bytes") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n.as_u64().map(Some).ok_or(()),
        Some(serde_json::Value::String(t)) => t.trim().parse().map(Some).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

/// A name as Swift quotes it in answers and bulk requests.
pub fn quote(name: &str) -> String {
    utf8_percent_encode(name, PATH).to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The request headers that store a validated manifest in place of the client's body.
pub fn storing(headers: &mut HeaderMap, stored: &Stored) {
    headers.remove(header::ETAG);
    headers.remove(header::EXPECT);
    headers.remove("x-static-large-object");
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(stored.body.len()));
    if let Ok(v) = HeaderValue::from_str(&stored.marker) {
        headers.insert(HeaderName::from_static(MARKER), v);
    }
}

/// The answer to a stored manifest `PUT`: Swift's SLO gives the SLO's ETag, quoted.
pub fn stored_answer(headers: &mut HeaderMap, slo_etag: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{slo_etag}\"")) {
        headers.insert(header::ETAG, v);
    }
}

/// The query without `multipart-manifest=put`: the stored form is a plain object.
pub fn without_manifest_put(query: Option<&str>) -> Option<String> {
    let rest: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && *p != "multipart-manifest=put")
        .collect();
    (!rest.is_empty()).then(|| rest.join("&"))
}

/// The stored manifest's segments, where each lives.
fn parse_stored(routes: &RouteTable, account: &str, body: &[u8]) -> Result<Vec<Segment>, SloError> {
    let records: Vec<Object> =
        serde_json::from_slice(body).map_err(|e| SloError::Stored(e.to_string()))?;
    records
        .iter()
        .map(|r| {
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

/// The client names of the objects a stored manifest lists (for `multipart-manifest=delete`).
pub fn segment_names(body: &[u8]) -> Result<Vec<String>, SloError> {
    let records: Vec<Object> =
        serde_json::from_slice(body).map_err(|e| SloError::Stored(e.to_string()))?;
    Ok(records
        .iter()
        .filter_map(|r| r.name().map(str::to_string))
        .collect())
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
            cluster: None,
            path: String::new(),
            bytes: size,
            first: None,
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
        segments::Unsatisfiable::WithObjectHeaders,
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
    headers.remove(header::CONTENT_RANGE);
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert("x-static-large-object", HeaderValue::from_static("True"));
    let body = if raw {
        let records: Vec<Object> =
            serde_json::from_slice(body).map_err(|e| SloError::Stored(e.to_string()))?;
        let put: Vec<Object> = records
            .iter()
            .map(|r| {
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

    #[test]
    fn times_as_swift_writes_them() {
        assert_eq!(
            swift_time("Wed, 05 Nov 2026 22:05:30 GMT"),
            "2026-11-05T22:05:30.000000"
        );
    }

    #[test]
    fn put_query_loses_only_the_manifest_flag() {
        assert_eq!(without_manifest_put(Some("multipart-manifest=put")), None);
        assert_eq!(
            without_manifest_put(Some("multipart-manifest=put&heartbeat=off")).as_deref(),
            Some("heartbeat=off")
        );
    }
}
