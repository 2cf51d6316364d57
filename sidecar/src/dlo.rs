//! Dynamic Large Objects whose segment container lives in another cluster than the manifest
//! (DESIGN.md step 5). Swift's own DLO middleware can only read segments from its own cluster,
//! so such a manifest is stored with its `X-Object-Manifest` value in a metadata header of the
//! sidecar's ([`MARKER`]) instead, and the sidecar serves `GET`/`HEAD` of it as Swift's DLO
//! would: segments listed in name order from wherever their container lives, concatenated
//! (streamed, never buffered), with Swift's DLO ETag (MD5 of the segments' ETags, quoted) and
//! single `Range`s (several ranges get the whole object with 200, as from Swift's DLO).
//! `?multipart-manifest=get` shows the manifest as Swift shows one. Manifests
//! whose segments live with them stay Swift's own.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use md5::{Digest, Md5};
use tokio::sync::mpsc;

use crate::body::{BodySlot, BoxError, ProxyBody};
use crate::listing::{self, ListingError};
use crate::pyformat::Object;
use crate::route_table::RouteTable;
use crate::state::{Active, State};
use crate::swift_path::{decode, encode_segment};
use crate::upstream::Outgoing;

/// Where a cross-cluster DLO manifest keeps its `X-Object-Manifest` value.
pub const MARKER: &str = "x-object-meta-swiftfed-object-manifest";
const MANIFEST: &str = "x-object-manifest";

#[derive(Debug, thiserror::Error)]
pub enum DloError {
    #[error(transparent)]
    Listing(#[from] ListingError),
    #[error("segment listing from {0} is not JSON: {1}")]
    Parse(String, String),
}

impl DloError {
    pub fn status(&self) -> StatusCode {
        match self {
            DloError::Listing(e) => e.status(),
            DloError::Parse(..) => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The segment container and prefix an `X-Object-Manifest` value names (percent-decoded).
fn split_manifest(value: &str) -> Option<(String, String)> {
    let decoded = decode(value.trim_start_matches('/'))?;
    let (container, prefix) = decoded.split_once('/').unwrap_or((decoded.as_str(), ""));
    (!container.is_empty()).then(|| (container.to_string(), prefix.to_string()))
}

/// On a `PUT`/`POST` of an object going to `dest_cluster` (`None`: local): an
/// `X-Object-Manifest` naming a container in another cluster is moved to [`MARKER`]. A client
/// setting the marker itself is ignored (it would make the sidecar read where it says).
pub fn mark_request(
    headers: &mut HeaderMap,
    routes: &RouteTable,
    account: &str,
    dest_cluster: Option<&str>,
) {
    headers.remove(MARKER);
    let Some(value) = headers.get(MANIFEST).cloned() else {
        return;
    };
    let Some((container, _)) = value.to_str().ok().and_then(split_manifest) else {
        return;
    };
    let lives = routes
        .lookup(account, Some(&container))
        .map(|r| r.cluster.as_str());
    if lives != dest_cluster {
        headers.remove(MANIFEST);
        headers.insert(HeaderName::from_static(MARKER), value);
    }
}

/// The manifest value of a cross-cluster DLO, from a response's headers.
pub fn marker(headers: &HeaderMap) -> Option<String> {
    headers
        .get(MARKER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `?multipart-manifest=get` (or any answer that is the manifest itself): shown as Swift shows
/// a DLO manifest.
pub fn show_manifest(headers: &mut HeaderMap) {
    if let Some(v) = headers.remove(MARKER) {
        headers.insert(HeaderName::from_static(MANIFEST), v);
    }
}

struct Segment {
    cluster: Option<String>,
    path: String,
    bytes: u64,
}

/// Lists the segments (every page), in name order.
async fn segments(
    state: &State,
    active: &Active,
    client_headers: &HeaderMap,
    account: &str,
    container: &str,
    prefix: &str,
) -> Result<(Vec<Segment>, String), DloError> {
    let route = active.routes.lookup(account, Some(container));
    let (cluster, target_account, target_container) = match route {
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
    let base = format!(
        "/v1/{}/{}",
        encode_segment(&target_account),
        encode_segment(&target_container)
    );
    let mut out = Vec::new();
    let mut etags = Md5::new();
    let mut marker: Option<String> = None;
    loop {
        let mut query = format!("format=json&prefix={}", encode_segment(prefix));
        if let Some(m) = &marker {
            query.push_str(&format!("&marker={}", encode_segment(m)));
        }
        let page = listing::send(
            state,
            active,
            client_headers,
            cluster.as_deref(),
            Method::GET,
            format!("{base}?{query}"),
        )
        .await?;
        if !page.status.is_success() || page.body.is_empty() {
            break;
        }
        let records: Vec<Object> = serde_json::from_slice(&page.body).map_err(|e| {
            DloError::Parse(cluster.clone().unwrap_or("local".into()), e.to_string())
        })?;
        for r in &records {
            let Some(name) = r.name() else { continue };
            marker = Some(name.to_string());
            if let Some(hash) = r.get("hash").and_then(|h| h.as_str()) {
                etags.update(hash.trim_matches('"').as_bytes());
            }
            out.push(Segment {
                cluster: cluster.clone(),
                path: format!(
                    "{base}/{}",
                    percent_encoding::utf8_percent_encode(name, OBJECT)
                ),
                bytes: r.number("bytes"),
            });
        }
        if records.is_empty() {
            break;
        }
    }
    let etag: String = etags
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((out, etag))
}

/// Object names in paths: like a segment, `/` kept.
const OBJECT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// One `Range` the assembled object can serve, Swift-style; `None` = the whole object.
enum Wanted {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

fn wanted(range: Option<&str>, total: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        // Several ranges: Swift's DLO ignores the Range and sends the whole object.
        return Wanted::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(start), Some(end)) if start <= end => Some((start, end.min(total.saturating_sub(1)))),
        (Some(_), Some(_)) => return Wanted::Whole,
        (Some(start), None) if b.is_empty() => Some((start, total.saturating_sub(1))),
        (None, Some(n)) if a.is_empty() => {
            if n == 0 {
                return Wanted::Unsatisfiable;
            }
            Some((total.saturating_sub(n), total.saturating_sub(1)))
        }
        _ => return Wanted::Whole,
    };
    match parsed {
        Some((start, end)) if start < total && total > 0 => Wanted::Part(start, end),
        _ => Wanted::Unsatisfiable,
    }
}

/// A body of known length fed through a channel (by the task that reads the segments, or by
/// an archive being extracted); ending short is an error.
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
    remaining: u64,
}

impl ChannelBody {
    pub(crate) fn new(rx: mpsc::Receiver<Result<Bytes, BoxError>>, length: u64) -> ChannelBody {
        ChannelBody {
            rx,
            remaining: length,
        }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(data))) => {
                self.remaining = self.remaining.saturating_sub(data.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) if self.remaining > 0 => {
                Poll::Ready(Some(Err("stream ended early".into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 && self.rx.is_closed()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Streams the byte range `[start, end]` of the concatenated segments into `tx`.
async fn pump(
    state: Arc<State>,
    active: Arc<Active>,
    client_headers: HeaderMap,
    segments: Vec<Segment>,
    start: u64,
    end: u64,
    tx: mpsc::Sender<Result<Bytes, BoxError>>,
) {
    let mut offset = 0u64;
    for segment in segments {
        let (seg_start, seg_end) = (offset, offset + segment.bytes);
        offset = seg_end;
        if segment.bytes == 0 || seg_end <= start || seg_start > end {
            continue;
        }
        let from = start.saturating_sub(seg_start);
        let to = (end - seg_start).min(segment.bytes - 1);
        let result = async {
            let (mut headers, endpoint_host) =
                listing::source_headers(&active, &client_headers, segment.cluster.as_deref())
                    .await
                    .map_err(|e| -> BoxError { e.to_string().into() })?;
            // The client's Range (copied with its other headers toward the local cluster) is
            // for the assembled object, never for a segment.
            headers.remove(header::RANGE);
            if from > 0 || to < segment.bytes - 1 {
                let range = HeaderValue::from_str(&format!("bytes={from}-{to}"))
                    .map_err(|e| -> BoxError { e.to_string().into() })?;
                headers.insert(header::RANGE, range);
            }
            let upstream = listing::upstream_of(&state, &active, segment.cluster.as_deref())
                .map_err(|e| -> BoxError { e.to_string().into() })?;
            let out = Outgoing {
                method: Method::GET,
                path_and_query: segment.path.clone(),
                headers,
                endpoint_host,
                expect_continue: false,
            };
            let (response, _) = upstream
                .send(&out, &BodySlot::new(None))
                .await
                .map_err(|e| -> BoxError { e.to_string().into() })?;
            if !response.status().is_success() {
                return Err::<(), BoxError>(
                    format!("segment {} answered {}", segment.path, response.status()).into(),
                );
            }
            let mut body = response.into_body();
            let mut sent = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| -> BoxError { e.to_string().into() })?;
                if let Ok(data) = frame.into_data() {
                    sent += data.len() as u64;
                    if tx.send(Ok(data)).await.is_err() {
                        return Ok(()); // the client went away
                    }
                }
            }
            // A segment shorter than listed would shift everything after it.
            if sent != to - from + 1 {
                return Err(format!("segment {} gave {sent} bytes", segment.path).into());
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = tx.send(Err(e)).await;
            return;
        }
    }
}

/// The assembled object for a `GET`/`HEAD` whose answer (`manifest`) is a cross-cluster DLO
/// manifest with value `value`.
#[allow(clippy::too_many_arguments)]
pub async fn assemble(
    state: &Arc<State>,
    active: &Arc<Active>,
    client_headers: &HeaderMap,
    account: &str,
    method: &Method,
    manifest_headers: &HeaderMap,
    value: &str,
) -> Result<Response<ProxyBody>, DloError> {
    let (container, prefix) = split_manifest(value).unwrap_or_default();
    let (segments, etag) =
        segments(state, active, client_headers, account, &container, &prefix).await?;
    let total: u64 = segments.iter().map(|s| s.bytes).sum();
    let mut headers = manifest_headers.clone();
    for h in [
        "content-length",
        "etag",
        "content-range",
        "transfer-encoding",
        "connection",
    ] {
        headers.remove(h);
    }
    show_manifest(&mut headers);
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{etag}\"")).unwrap_or(HeaderValue::from_static("")),
    );
    let range = client_headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (status, start, end) = match wanted(range, total) {
        Wanted::Whole => (StatusCode::OK, 0, total.saturating_sub(1)),
        Wanted::Part(a, b) => {
            let content_range = format!("bytes {a}-{b}/{total}");
            if let Ok(v) = HeaderValue::from_str(&content_range) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, a, b)
        }
        Wanted::Unsatisfiable => {
            // Swift's own 416 page.
            let mut r = Response::new(crate::body::full(
                "<html><h1>Requested Range Not Satisfiable</h1>\
                 <p>The Range requested is not available.</p></html>",
            ));
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=UTF-8"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let length = if total == 0 { 0 } else { end - start + 1 };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let body = if *method == Method::HEAD || length == 0 {
        crate::body::empty()
    } else {
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(pump(
            state.clone(),
            active.clone(),
            client_headers.clone(),
            segments,
            start,
            end,
            tx,
        ));
        ChannelBody {
            rx,
            remaining: length,
        }
        .boxed_unsync()
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_like_swift() {
        let part = |r: &str| match wanted(Some(r), 100) {
            Wanted::Part(a, b) => Some((a, b)),
            Wanted::Whole => None,
            Wanted::Unsatisfiable => Some((u64::MAX, u64::MAX)),
        };
        assert_eq!(part("bytes=0-9"), Some((0, 9)));
        assert_eq!(part("bytes=90-200"), Some((90, 99)));
        assert_eq!(part("bytes=-10"), Some((90, 99)));
        assert_eq!(part("bytes=95-"), Some((95, 99)));
        assert_eq!(part("bytes=100-"), Some((u64::MAX, u64::MAX)));
        assert_eq!(part("bytes=0-1,5-6"), None);
        assert_eq!(part("lines=1-2"), None);
    }

    #[test]
    fn manifest_values_split() {
        assert_eq!(
            split_manifest("segs%20x/a/b"),
            Some(("segs x".into(), "a/b".into()))
        );
        assert_eq!(split_manifest("segs"), Some(("segs".into(), String::new())));
        assert_eq!(split_manifest("/"), None);
    }
}
