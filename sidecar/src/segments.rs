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
/// is used (an SLO segment's `range`); or `data` held in the manifest (an SLO's inline
/// segment).
#[derive(Default)]
pub struct Segment {
    pub cluster: Option<String>,
    pub path: String,
    pub bytes: u64,
    pub first: Option<u64>,
    pub data: Option<Bytes>,
}

/// Which of Swift's middlewares the assembled object answers like: they differ on several
/// ranges (DLO ignores them, SLO answers `multipart/byteranges`) and on the 416 (DLO's bare
/// page, SLO's with the object's headers).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Dlo,
    Slo,
}

/// What the client's `Range` asks of the assembled object, as swob reads it.
#[derive(Debug, PartialEq)]
enum Wanted {
    Whole,
    /// Inclusive byte ranges, at least one.
    Parts(Vec<(u64, u64)>),
    Unsatisfiable,
}

/// swob's limits on egregious range sets (RFC 7233 section 6.1), past which it answers 416.
const MAX_RANGES: usize = 50;
const MAX_RANGE_OVERLAPS: usize = 2;
const MAX_NONASCENDING_RANGES: usize = 8;

fn wanted(range: Option<&str>, total: u64, flavour: Flavour) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    // swob's `Range`: any malformed part makes the whole header ignored.
    let mut specs = Vec::new();
    for part in spec.split(',') {
        let Some((a, b)) = part.trim().split_once('-') else {
            return Wanted::Whole;
        };
        let number = |t: &str| match t.trim() {
            "" => Ok(None),
            t => t.parse::<u64>().map(Some),
        };
        match (number(a), number(b)) {
            (Ok(None), Ok(None)) | (Err(_), _) | (_, Err(_)) => return Wanted::Whole,
            (Ok(Some(x)), Ok(Some(y))) if x > y => return Wanted::Whole,
            (Ok(x), Ok(y)) => specs.push((x, y)),
        }
    }
    if flavour == Flavour::Dlo && specs.len() > 1 {
        // dlo.py honours a single range only and drops the header otherwise.
        return Wanted::Whole;
    }
    // `ranges_for_length`, half-open.
    let mut all: Vec<(u64, u64)> = Vec::new();
    for spec in specs {
        match spec {
            (None, Some(0)) => {}
            (None, Some(n)) => all.push((total.saturating_sub(n), total)),
            (Some(b), None) if b < total => all.push((b, total)),
            (Some(b), Some(e)) if b < total => all.push((b, (e + 1).min(total))),
            _ => {}
        }
    }
    let overlaps = all
        .iter()
        .enumerate()
        .flat_map(|(i, x)| all[i + 1..].iter().map(move |y| (x, y)))
        .filter(|((s1, e1), (s2, e2))| {
            (s1 < s2 && s2 < e1)
                || (s1 < e2 && e2 < e1)
                || (s2 < s1 && s1 < e2)
                || (s2 < e1 && e1 < e2)
        })
        .count();
    let ascending = all.windows(2).all(|w| w[0] <= w[1]);
    if all.is_empty()
        || all.len() > MAX_RANGES
        || overlaps > MAX_RANGE_OVERLAPS
        || (!ascending && all.len() >= MAX_NONASCENDING_RANGES)
    {
        return Wanted::Unsatisfiable;
    }
    Wanted::Parts(all.into_iter().map(|(s, e)| (s, e - 1)).collect())
}

/// A body of known length fed through a channel (by the task that reads the segments);
/// ending short is an error.
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

/// What the body is made of: text of the sidecar's own (multipart framing) and byte ranges
/// `[start, end]` of the concatenated segments.
enum Piece {
    Text(Bytes),
    Range(u64, u64),
}

/// Streams the pieces into `tx`; an error (a segment failing or short, the client gone) ends
/// the body there.
async fn pump(
    state: Arc<State>,
    active: Arc<Active>,
    client_headers: HeaderMap,
    segments: Vec<Segment>,
    pieces: Vec<Piece>,
    tx: mpsc::Sender<Result<Bytes, BoxError>>,
) {
    for piece in pieces {
        let result = match piece {
            Piece::Text(text) => tx.send(Ok(text)).await.map_err(boxed),
            Piece::Range(start, end) => {
                let ctx = (&*state, &*active, &client_headers);
                pump_range(ctx, &segments, start, end, &tx).await
            }
        };
        if let Err(e) = result {
            let _ = tx.send(Err(e)).await;
            return;
        }
    }
}

/// Streams the byte range `[start, end]` of the concatenated segments into `tx`.
async fn pump_range(
    (state, active, client_headers): (&State, &Active, &HeaderMap),
    segments: &[Segment],
    start: u64,
    end: u64,
    tx: &mpsc::Sender<Result<Bytes, BoxError>>,
) -> Result<(), BoxError> {
    let mut offset = 0u64;
    for segment in segments {
        let (seg_start, seg_end) = (offset, offset + segment.bytes);
        offset = seg_end;
        if segment.bytes == 0 || seg_end <= start || seg_start > end {
            continue;
        }
        let from = start.saturating_sub(seg_start);
        let to = (end - seg_start).min(segment.bytes - 1);
        if let Some(data) = &segment.data {
            let part = data.slice(from as usize..=to as usize);
            tx.send(Ok(part)).await.map_err(boxed)?;
            continue;
        }
        let result = async {
            let (mut headers, endpoint_host) =
                listing::source_headers(active, client_headers, segment.cluster.as_deref())
                    .await
                    .map_err(boxed)?;
            let first = segment.first.unwrap_or(0);
            if segment.first.is_some() || from > 0 || to < segment.bytes - 1 {
                let range = format!("bytes={}-{}", first + from, first + to);
                headers.insert(header::RANGE, HeaderValue::from_str(&range).map_err(boxed)?);
            }
            let upstream =
                listing::upstream_of(state, active, segment.cluster.as_deref()).map_err(boxed)?;
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
                        return Err("the client went away".into());
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
        result?;
    }
    Ok(())
}

/// A `multipart/byteranges` boundary as swob makes one: 32 hex digits, unpredictable enough
/// not to occur in the data (no randomness crate: a digest of the time and a counter).
fn boundary() -> String {
    use md5::{Digest, Md5};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Md5::digest(format!("{now}/{n}/{}", std::process::id()))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The answer to a `GET`/`HEAD` of the object `segments` make up: `headers` (the object's,
/// ETag included, without length or range) with the length, status and `Content-Range` (or
/// `multipart/byteranges` framing) of what the client's `Range` asks for, and the bytes
/// streamed by a task of their own.
pub fn respond(
    state: &Arc<State>,
    active: &Arc<Active>,
    client_headers: &HeaderMap,
    method: &Method,
    mut headers: HeaderMap,
    segments: Vec<Segment>,
    flavour: Flavour,
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
    // Swift's SLO answers a HEAD whole, whatever its Range (RFC 9110: ignored on HEAD).
    let range = client_headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| !(flavour == Flavour::Slo && *method == Method::HEAD));
    let (status, pieces) = match wanted(range, total, flavour) {
        Wanted::Whole if total == 0 => (StatusCode::OK, vec![]),
        Wanted::Whole => (StatusCode::OK, vec![Piece::Range(0, total - 1)]),
        Wanted::Parts(parts) if parts.len() == 1 => {
            let (a, b) = parts[0];
            let content_range = format!("bytes {a}-{b}/{total}");
            if let Ok(v) = HeaderValue::from_str(&content_range) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, vec![Piece::Range(a, b)])
        }
        Wanted::Parts(parts) => {
            let boundary = boundary();
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream")
                .to_string();
            let mut pieces = Vec::new();
            for (a, b) in parts {
                let head = format!(
                    "--{boundary}\r\nContent-Type: {content_type}\r\n\
                     Content-Range: bytes {a}-{b}/{total}\r\n\r\n"
                );
                pieces.push(Piece::Text(Bytes::from(head)));
                pieces.push(Piece::Range(a, b));
                pieces.push(Piece::Text(Bytes::from_static(b"\r\n")));
            }
            pieces.push(Piece::Text(Bytes::from(format!("--{boundary}--"))));
            let multipart = format!("multipart/byteranges;boundary={boundary}");
            if let Ok(v) = HeaderValue::from_str(&multipart) {
                headers.insert(header::CONTENT_TYPE, v);
            }
            (StatusCode::PARTIAL_CONTENT, pieces)
        }
        Wanted::Unsatisfiable => {
            // Swift's own 416 page.
            let page: &'static str = "<html><h1>Requested Range Not Satisfiable</h1>\
                 <p>The Range requested is not available.</p></html>";
            let mut r = Response::new(crate::body::full(page));
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            if flavour == Flavour::Slo {
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
    let length: u64 = pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.len() as u64,
            Piece::Range(a, b) => b - a + 1,
        })
        .sum();
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
            pieces,
            tx,
        ));
        ChannelBody::new(rx, length).boxed_unsync()
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
        let w = |r: &str, f| wanted(Some(r), 100, f);
        let one = |a, b| Wanted::Parts(vec![(a, b)]);
        assert_eq!(w("bytes=0-9", Flavour::Slo), one(0, 9));
        assert_eq!(w("bytes=90-200", Flavour::Slo), one(90, 99));
        assert_eq!(w("bytes=-10", Flavour::Slo), one(90, 99));
        assert_eq!(w("bytes=-1000", Flavour::Slo), one(0, 99));
        assert_eq!(w("bytes=95-", Flavour::Slo), one(95, 99));
        assert_eq!(w("bytes=100-", Flavour::Slo), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=-0", Flavour::Slo), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=5-3", Flavour::Slo), Wanted::Whole);
        assert_eq!(w("lines=1-2", Flavour::Slo), Wanted::Whole);
        assert_eq!(
            w("bytes=0-1,5-6", Flavour::Slo),
            Wanted::Parts(vec![(0, 1), (5, 6)])
        );
        assert_eq!(w("bytes=0-1,500-", Flavour::Slo), one(0, 1));
        assert_eq!(w("bytes=0-1,5-6", Flavour::Dlo), Wanted::Whole);
        assert_eq!(
            w("bytes=0-50,10-60,20-70,30-80", Flavour::Slo),
            Wanted::Unsatisfiable
        );
    }
}
