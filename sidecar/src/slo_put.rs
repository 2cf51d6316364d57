//! The `PUT ?multipart-manifest=put` side of SLOs with segments in other clusters than the
//! manifest (`slo_assembly` reads them): every segment `HEAD`ed where it lives and checked as
//! Swift's SLO checks it (existence, `etag`, `size_bytes`, `range`, at least one byte but for
//! the last, the client's `ETag` against the SLO's), Swift's refusals, and the stored form: the
//! JSON Swift would store, in a plain object carrying the sidecar's marker.

use std::collections::HashMap;

use base64::Engine;

use futures::StreamExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use md5::{Digest, Md5};

use crate::body::ProxyBody;
use crate::listing::{self, Format, ListingError, Params};
use crate::pyformat::{dumps, xml_escape, Object};
use crate::route_table::RouteTable;
use crate::segments::plain;
use crate::slo_assembly::{hex, inline, locate, quote, segment_range, split, SloError, MARKER};
use crate::state::{Active, State};

/// Segment `HEAD`s in flight at once while checking a manifest.
const HEADS_AT_ONCE: usize = 4;
/// Swift's default `max_manifest_segments`.
const MAX_SEGMENTS: usize = 1000;

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

/// A manifest ready to store: its body, and the marker and ETag the answer carries.
pub struct Stored {
    pub body: Vec<u8>,
    pub marker: String,
    pub answer: Answer,
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

/// The format of a manifest `PUT`'s report, as Swift's SLO picks it from `Accept`.
fn report_format(client_headers: &HeaderMap) -> Format {
    listing::pick_format(&Params::default(), client_headers).unwrap_or(Format::Plain)
}

/// Whether the client asked for `heartbeat=on` (Swift's `config_true_value`).
fn heartbeat(query: Option<&str>) -> bool {
    query.unwrap_or("").split('&').any(|p| {
        p.strip_prefix("heartbeat=").is_some_and(|v| {
            ["true", "1", "yes", "on", "t", "y"].contains(&v.to_ascii_lowercase().as_str())
        })
    })
}

/// Swift's `get_heartbeat_response_body`: `dict` in insertion order (JSON) or sorted (XML,
/// plain text), then the problem segments; with its content type.
fn report(
    format: Format,
    dict: Vec<(&str, String)>,
    problems: &[(String, String)],
) -> (&'static str, Vec<u8>) {
    match format {
        Format::Json => {
            let errors: Vec<serde_json::Value> = problems
                .iter()
                .map(|(n, s)| serde_json::json!([n, s]))
                .collect();
            let mut pairs: Vec<(String, serde_json::Value)> = dict
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect();
            pairs.push(("Errors".into(), errors.into()));
            ("application/json", dumps(&Object::from_pairs(pairs)))
        }
        Format::Xml(t) => {
            let mut dict = dict;
            dict.sort();
            let mut out = String::from("<upload>\n");
            for (k, v) in dict {
                let tag = k.replace(' ', "_").to_lowercase();
                out.push_str(&format!("<{tag}>{}</{tag}>\n", xml_escape(&v, false)));
            }
            out.push_str("<errors>\n");
            for (n, s) in problems {
                out.push_str(&format!(
                    "<object><name>{}</name><status>{}</status></object>\n",
                    xml_escape(n, false),
                    xml_escape(s, false)
                ));
            }
            out.push_str("</errors>\n</upload>\n");
            (t.split(';').next().unwrap_or(t), out.into_bytes())
        }
        Format::Plain => {
            let mut dict = dict;
            dict.sort();
            let mut out = String::new();
            for (k, v) in dict {
                out.push_str(&format!("{k}: {v}\n"));
            }
            out.push_str("Errors:\n");
            for (n, s) in problems {
                out.push_str(&format!("{n}, {s}\n"));
            }
            ("text/plain", out.into_bytes())
        }
    }
}

fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<ProxyBody> {
    let mut r = Response::new(crate::body::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// With `heartbeat=on` Swift answers 202 at once (a space, then more while it works) and
/// reports the outcome in the body; the sidecar sends the same bytes when it is done.
fn heartbeat_answer(
    format: Format,
    dict: Vec<(&str, String)>,
    problems: &[(String, String)],
) -> Response<ProxyBody> {
    let (content_type, text) = report(format, dict, problems);
    let mut body = b" \r\n\r\n".to_vec();
    body.extend_from_slice(&text);
    text_response(StatusCode::ACCEPTED, content_type, body)
}

/// A status and, for an empty error body, Swift's reason texts (`RESPONSE_REASONS`).
fn outcome(status: StatusCode, body: String) -> Vec<(&'static str, String)> {
    let body = match status {
        _ if !body.is_empty() => body,
        StatusCode::BAD_REQUEST => "Bad Request\nThe server could not comply with the request \
                                    since it is either malformed or otherwise incorrect."
            .into(),
        StatusCode::UNPROCESSABLE_ENTITY => {
            "Unprocessable Entity\nUnable to process the contained instructions".into()
        }
        _ => body,
    };
    let reason = status.canonical_reason().unwrap_or("");
    vec![
        ("Response Status", format!("{} {reason}", status.as_u16())),
        ("Response Body", body),
    ]
}

/// Swift's refusal of a manifest `PUT` whose segments do not check out.
fn refusal(
    client_headers: &HeaderMap,
    heartbeat: bool,
    problems: &[(String, String)],
) -> Response<ProxyBody> {
    let format = report_format(client_headers);
    if heartbeat {
        let dict = outcome(StatusCode::BAD_REQUEST, String::new());
        return heartbeat_answer(format, dict, problems);
    }
    let (content_type, text) = report(format, vec![], problems);
    text_response(StatusCode::BAD_REQUEST, content_type, text)
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
    query: Option<&str>,
) -> Result<Result<Stored, Response<ProxyBody>>, SloError> {
    let heartbeat = heartbeat(query);
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
        if let Some(data) = s.get("data") {
            match data.as_str().and_then(inline) {
                None => errors.push_str(&format!("Index {i}: data must be valid base64\n")),
                Some(raw) if raw.is_empty() => errors.push_str(&format!(
                    "Index {i}: too small; each segment must be at least 1 byte.\n"
                )),
                Some(_) => {}
            }
            continue;
        }
        let Some(path) = s.get("path").and_then(|p| p.as_str()) else {
            errors.push_str(&format!(
                "Index {i}: expected keys to include one of 'path' or 'data'\n"
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
    if !parsed.is_empty() && parsed.iter().all(|s| s.get("data").is_some()) {
        errors.push_str("Inline data segments require at least one object-backed segment.\n");
    }
    if !errors.is_empty() {
        return Ok(Err(bad_request(errors)));
    }

    // Each distinct segment HEADed once, a few at a time (Swift's SLO uses a pile of 2).
    let mut paths: Vec<&str> = Vec::new();
    for s in &parsed {
        let Some(path) = s.get("path").and_then(|p| p.as_str()) else {
            continue;
        };
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    let plain = plain(client_headers);
    let pending: Vec<_> = paths
        .iter()
        .map(|path| head_segment(state, active, &plain, account, path))
        .collect();
    let heads: Vec<_> = futures::stream::iter(pending)
        .buffered(HEADS_AT_ONCE)
        .collect()
        .await;
    let mut answers = HashMap::new();
    for (path, head) in paths.iter().zip(heads) {
        answers.insert(*path, head?);
    }

    let mut problems = Vec::new();
    let mut stored = Vec::with_capacity(parsed.len());
    let mut total = 0u64;
    let mut slo_etag = Md5::new();
    for (i, s) in parsed.iter().enumerate() {
        if let Some(raw) = s.get("data").and_then(|d| d.as_str()).and_then(inline) {
            // Stored re-encoded (padding normalised); in the ETag as the MD5 of its bytes.
            slo_etag.update(hex(&Md5::digest(&raw)).as_bytes());
            total += raw.len() as u64;
            let data = base64::engine::general_purpose::STANDARD.encode(&raw);
            stored.push(Object::from_pairs(vec![("data".into(), data.into())]));
            continue;
        }
        let path = s.get("path").and_then(|p| p.as_str()).unwrap_or_default();
        let quoted = quote(path);
        let Some(head) = answers.get(path) else {
            continue;
        };
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
            // swob's `content_type`: without parameters.
            (
                "content_type".into(),
                got("content-type").split(';').next().unwrap_or("").into(),
            ),
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
        return Ok(Err(refusal(client_headers, heartbeat, &problems)));
    }
    let slo_etag = hex(&slo_etag.finalize());
    let client_etag = client_headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|e| e.trim().trim_matches('"').to_string());
    if client_etag.is_some_and(|e| !e.is_empty() && e != slo_etag) {
        if heartbeat {
            let dict = outcome(StatusCode::UNPROCESSABLE_ENTITY, String::new());
            return Ok(Err(heartbeat_answer(
                report_format(client_headers),
                dict,
                &[],
            )));
        }
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
        answer: Answer {
            slo_etag,
            heartbeat: heartbeat.then(|| report_format(client_headers)),
        },
    }))
}

/// A segment's `HEAD`, where it lives.
async fn head_segment(
    state: &State,
    active: &Active,
    headers: &HeaderMap,
    account: &str,
    path: &str,
) -> Result<crate::subrequest::Answer, ListingError> {
    let (container, object) = split(path).unwrap_or_default();
    let at = locate(&active.routes, account, container, object);
    let cluster = at.cluster.as_deref();
    listing::send(state, active, headers, cluster, Method::HEAD, at.path).await
}

fn size_of(s: &Object) -> Result<Option<u64>, ()> {
    match s.get("size_bytes") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n.as_u64().map(Some).ok_or(()),
        Some(serde_json::Value::String(t)) => t.trim().parse().map(Some).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

/// The request headers that store a validated manifest in place of the client's body (at
/// `path`, as the client sent it). `false`: Swift will guess the Content-Type from the name, so
/// what the listing must show is added once the guess is known ([`relabelled`]).
pub fn storing(headers: &mut HeaderMap, stored: &Stored, path: &str) -> bool {
    headers.remove(header::ETAG);
    headers.remove(header::EXPECT);
    headers.remove("x-static-large-object");
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(stored.body.len()));
    if let Ok(v) = HeaderValue::from_str(&stored.marker) {
        headers.insert(HeaderName::from_static(MARKER), v);
    }
    // What the listing must show, in the Content-Type (`standin`).
    match stored_content_type(headers, path) {
        Some(content_type) => {
            relabel(headers, &content_type, &stored.marker);
            true
        }
        None => false,
    }
}

/// `headers` with `content_type` carrying what the listing must show of the stored manifest
/// whose marker is `marker` (`standin`).
fn relabel(headers: &mut HeaderMap, content_type: &str, marker: &str) {
    let (total, etag) = marker.split_once(' ').unwrap_or_default();
    let with = crate::standin::with_slo(content_type, total.parse().unwrap_or(0), etag);
    if let Ok(v) = HeaderValue::from_str(&with) {
        headers.insert(header::CONTENT_TYPE, v);
        headers.remove("x-detect-content-type");
    }
}

/// The headers of a second `PUT` of a stored manifest, once Swift guessed its Content-Type from
/// the name (`guessed`, read back with a `HEAD`): the same request, with that type carrying
/// what the listing must show. Python's `mimetypes` guess cannot be made here, so the manifest
/// is written twice when a client sends no type for a name with an extension (what
/// `swift upload --use-slo` does).
pub fn relabelled(sent: &HeaderMap, guessed: &str, marker: &str) -> HeaderMap {
    let mut headers = sent.clone();
    relabel(&mut headers, guessed, marker);
    headers
}

/// The Content-Type Swift gives the manifest: the client's, else guessed from the name. Only
/// the guess for a name without an extension (`application/octet-stream`) is known here; a
/// name with one keeps Swift's own guess (`None`: the listing shows the stored object).
fn stored_content_type(headers: &HeaderMap, path: &str) -> Option<String> {
    let detect = headers
        .get("x-detect-content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "true" | "1" | "yes" | "on" | "t" | "y"
            )
        });
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    match given {
        Some(v) if !detect => Some(v.to_string()),
        _ => {
            let last = path.rsplit('/').next().unwrap_or("");
            (!last.contains('.')).then(|| "application/octet-stream".to_string())
        }
    }
}

/// How the answer to a stored manifest `PUT` is given back.
pub struct Answer {
    slo_etag: String,
    /// `heartbeat=on`: Swift's 202 report, in this format.
    heartbeat: Option<Format>,
}

impl Answer {
    /// Whether the cluster's answer body is needed (for the report).
    pub fn reports(&self) -> bool {
        self.heartbeat.is_some()
    }

    /// On the cluster's answer to the stored `PUT`: Swift's SLO gives the SLO's ETag, quoted.
    pub fn etag(&self, status: StatusCode, headers: &mut HeaderMap) {
        if status.is_success() {
            if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", self.slo_etag)) {
                headers.insert(header::ETAG, v);
            }
        }
    }

    /// With `heartbeat=on`: the report of the cluster's answer (`status`, `headers` as given
    /// back by [`Answer::etag`], `body`).
    pub fn report(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<Response<ProxyBody>> {
        let format = self.heartbeat?;
        let mut dict = outcome(status, String::from_utf8_lossy(body).into_owned());
        if status.is_success() {
            let value = |h: header::HeaderName| {
                headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            // Swift's order: status, ETag, Last Modified, body.
            dict.insert(1, ("Etag", value(header::ETAG)));
            dict.insert(2, ("Last Modified", value(header::LAST_MODIFIED)));
        }
        Some(heartbeat_answer(format, dict, &[]))
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

#[cfg(test)]
mod tests {
    use super::*;

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
