//! Serving a large object the sidecar assembles itself (cross-cluster DLOs in `dlo`, SLOs in
//! `slo_assembly`): the segments' bytes read one after another from wherever each lives and
//! streamed to the client (bounded memory: a channel of two chunks), a single `Range` served
//! Swift-style, and a segment that fails or comes up short ending the body with an error so
//! that the client never takes a truncated object for a complete one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::body::{BodySlot, BoxError, ProxyBody};
use crate::listing;
use crate::state::{Active, State};
use crate::upstream::Outgoing;

/// One piece of the assembled object: `bytes` bytes of the object at `path` (target names,
/// encoded) in `cluster` (`None`: local), starting at `first` within it when only part of it
/// is used (an SLO segment's `range`).
pub struct Segment {
    pub cluster: Option<String>,
    pub path: String,
    pub bytes: u64,
    pub first: Option<u64>,
}

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
        // Several ranges: the whole object (HTTP allows ignoring Range).
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

/// A response body fed by the task that reads the segments.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
    remaining: u64,
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
                Poll::Ready(Some(Err("segment stream ended early".into())))
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

/// The client's headers without what would change the answer to a plain read (`Range`,
/// conditions): the sidecar's own reads of manifests and segments.
pub fn plain(client_headers: &HeaderMap) -> HeaderMap {
    let mut h = client_headers.clone();
    for name in [
        header::RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
        header::ETAG,
        header::CONTENT_TYPE,
        header::EXPECT,
    ] {
        h.remove(name);
    }
    h
}

fn boxed(e: impl std::fmt::Display) -> BoxError {
    e.to_string().into()
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
                    .map_err(boxed)?;
            let first = segment.first.unwrap_or(0);
            if segment.first.is_some() || from > 0 || to < segment.bytes - 1 {
                let range = format!("bytes={}-{}", first + from, first + to);
                headers.insert(header::RANGE, HeaderValue::from_str(&range).map_err(boxed)?);
            }
            let upstream =
                listing::upstream_of(&state, &active, segment.cluster.as_deref()).map_err(boxed)?;
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
                .map_err(boxed)?;
            if !response.status().is_success() {
                return Err::<(), BoxError>(
                    format!("segment {} answered {}", segment.path, response.status()).into(),
                );
            }
            let mut body = response.into_body();
            let mut sent = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(boxed)?;
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

/// How Swift's middleware answers a `Range` beyond the object: DLO with its bare 416 page, SLO
/// with the object's headers on it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unsatisfiable {
    Bare,
    WithObjectHeaders,
}

/// The answer to a `GET`/`HEAD` of the object `segments` make up: `headers` (the object's,
/// ETag included, without length or range) with the length, status and `Content-Range` of
/// what the client's `Range` asks for, and the bytes streamed by a task of their own.
pub fn respond(
    state: &Arc<State>,
    active: &Arc<Active>,
    client_headers: &HeaderMap,
    method: &Method,
    mut headers: HeaderMap,
    segments: Vec<Segment>,
    unsatisfiable: Unsatisfiable,
) -> Response<ProxyBody> {
    let total: u64 = segments.iter().map(|s| s.bytes).sum();
    for h in [
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
    ] {
        headers.remove(h);
    }
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
            let page: &'static str = "<html><h1>Requested Range Not Satisfiable</h1>\
                 <p>The Range requested is not available.</p></html>";
            let mut r = Response::new(crate::body::full(page));
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            if unsatisfiable == Unsatisfiable::WithObjectHeaders {
                *r.headers_mut() = headers;
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(page.len()));
            } else {
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=UTF-8"),
                );
            }
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
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
            plain(client_headers),
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
    response
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
}
