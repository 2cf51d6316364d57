//! Extract-archive across clusters: `PUT /v1/<account>[/<container>[/<prefix>]]?extract-archive=
//! tar|tar.gz|tar.bz2` whose entries land in containers living in other clusters (an account
//! with container routes), or in a renamed container (Swift's own answer would show the
//! target's names). The sidecar does what Swift's bulk middleware does, across clusters: reads
//! the archive as a stream (decompressed and parsed on a blocking thread), creates each entry's
//! container where that container lives (HEAD, then PUT on 404), streams each regular file into
//! a PUT there (memory bounded by a few chunks), and answers once as Swift does: `200` with the
//! outcome in the body (plain text, JSON or XML by `Accept`), with Swift's whitespace
//! heartbeat while a long extraction runs. Swift's limits are the local cluster's (`/info`).
//! `archive` reads the archive (blocking thread); `entries` puts its entries where they live.

mod archive;
mod entries;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::{mpsc, oneshot};

use crate::body::{self, BodySlot, BoxError, Progress, ProxyBody};
use crate::bulk::render_body;
use crate::listing::{pick_format, Format, Params};
use crate::state::{Active, State};
use crate::subrequest;
use crate::swift_path::{decode, SwiftPath};

use archive::{read_archive, ChannelReader, Event};
use entries::Extraction;

/// Bytes read from an entry at a time (and the most one event carries).
const CHUNK: usize = 64 * 1024;
/// Swift's `yield_frequency` default.
const HEARTBEAT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Plain,
    Gzip,
    Bzip2,
}

/// The archive format a `?extract-archive=` asks for, read as Swift reads it (last value,
/// case-insensitive, dots around it ignored); `None` also for formats Swift refuses itself.
fn compression(query: Option<&str>) -> Option<Compression> {
    let value = query?.split('&').rev().find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (k == "extract-archive").then_some(v)
    })?;
    match decode(value)?.to_lowercase().trim_matches('.') {
        "tar" => Some(Compression::Plain),
        "tar.gz" => Some(Compression::Gzip),
        "tar.bz2" => Some(Compression::Bzip2),
        _ => None,
    }
}

/// Whether the sidecar must extract the archive itself: at account level when some container
/// of the account lives elsewhere (or the account's own route renames it or uses the sidecar's
/// credentials), at container level when the container's route renames it. Otherwise the
/// cluster the request goes to extracts it, as plain Swift.
pub fn applies(
    active: &Active,
    method: &Method,
    path: &SwiftPath<'_>,
    query: Option<&str>,
) -> Option<Compression> {
    if *method != Method::PUT {
        return None;
    }
    let compression = compression(query)?;
    let routes = &active.routes;
    let spans = match path.container.as_deref() {
        None => {
            !routes.container_routes(&path.account).is_empty()
                || routes.lookup(&path.account, None).is_some_and(|r| {
                    r.renames()
                        || active
                            .clusters
                            .get(&r.cluster)
                            .is_some_and(|c| c.tokens.is_some())
                })
        }
        Some(c) => routes
            .lookup(&path.account, Some(c))
            .is_some_and(|r| r.renames()),
    };
    spans.then_some(compression)
}

/// Where an extraction writes: the decoded `<container>[/<prefix>]` of the URL, trailing `/`
/// dropped (Swift's `extract_base`); `""` at account level.
pub fn base_of(path: &SwiftPath<'_>, raw_path: &str) -> String {
    if path.container.is_none() {
        return String::new();
    }
    let rest = raw_path.splitn(4, '/').nth(3).unwrap_or("");
    decode(rest)
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string()
}

/// Swift's bulk and constraint limits, as the local cluster publishes them.
struct Limits {
    max_containers: u64,
    max_failed: usize,
    max_file_size: u64,
    max_path: usize,
}

async fn limits(state: &State) -> Limits {
    let mut limits = Limits {
        max_containers: 10_000,
        max_failed: 1_000,
        max_file_size: 5 * 1024 * 1024 * 1024 + 2,
        max_path: 1024 + 256 + 2,
    };
    let Ok(answer) = subrequest::fetch(
        &state.local,
        Method::GET,
        "/info".into(),
        HeaderMap::new(),
        false,
    )
    .await
    else {
        return limits;
    };
    let Ok(info) = serde_json::from_slice::<serde_json::Value>(&answer.body) else {
        return limits;
    };
    let number = |section: &str, key: &str| info.get(section)?.get(key)?.as_u64();
    if let Some(n) = number("bulk_upload", "max_containers_per_extraction") {
        limits.max_containers = n;
    }
    if let Some(n) = number("bulk_upload", "max_failed_extractions") {
        limits.max_failed = n as usize;
    }
    if let Some(n) = number("swift", "max_file_size") {
        limits.max_file_size = n;
    }
    if let (Some(o), Some(c)) = (
        number("swift", "max_object_name_length"),
        number("swift", "max_container_name_length"),
    ) {
        limits.max_path = (o + c + 2) as usize;
    }
    limits
}

/// The extraction's outcome so far, rendered as Swift's `extract` answer.
struct Outcome {
    status: String,
    body: String,
    created: u64,
    errors: Vec<(String, String)>,
}

impl Outcome {
    fn failed(status: &str) -> Outcome {
        Outcome {
            status: status.into(),
            body: String::new(),
            created: 0,
            errors: Vec::new(),
        }
    }

    /// Content type and body of Swift's `extract` answer.
    fn render(self, format: Format) -> (&'static str, Vec<u8>) {
        let fields = vec![
            ("Response Status", self.status.into()),
            ("Response Body", self.body.into()),
            ("Number Files Created", self.created.into()),
        ];
        render_body(format, "extract", fields, &self.errors)
    }
}

/// Swift's `Response Status` of a subrequest's answer (its own reason phrase when it sent one).
fn status_line(status: StatusCode, reason: Option<&hyper::ext::ReasonPhrase>) -> String {
    let reason = reason
        .and_then(|r| std::str::from_utf8(r.as_bytes()).ok())
        .map(str::to_string)
        .unwrap_or_else(|| match status.as_u16() {
            413 => "Request Entity Too Large".into(),
            416 => "Requested Range Not Satisfiable".into(),
            _ => status.canonical_reason().unwrap_or("Unknown").into(),
        });
    format!("{} {reason}", status.as_u16())
}

/// Where one container lives: cluster (`None`: local) and its names there.
struct Place {
    cluster: Option<String>,
    account: String,
    container: String,
}

/// One extraction request, owned: the extraction may outlive the handler that answered (see
/// [`run`]).
pub struct Request {
    pub state: Arc<State>,
    pub active: Arc<Active>,
    pub account: String,
    /// Swift's `extract_base` ([`base_of`]).
    pub base: String,
    pub compression: Compression,
    pub headers: HeaderMap,
    pub body: BodySlot,
    /// The local cluster forbade the client to write in the account: clusters reached with the
    /// sidecar's own credentials are not asked, each request there is the 403 Swift would give
    /// such a client (the local cluster still answers for its own containers).
    pub forbidden_remote: bool,
}

/// Runs an extraction; `None` when Swift should answer the request itself (an `Accept` it
/// refuses, a body without length). As Swift's bulk middleware, the answer comes when the
/// extraction is done, or after [`HEARTBEAT`] with whitespace every [`HEARTBEAT`] until the
/// outcome follows (so that clients and proxies do not time out a long extraction).
pub async fn run(request: Request) -> Option<Response<ProxyBody>> {
    let format = pick_format(&Params::default(), &request.headers)?;
    if !request.headers.contains_key(header::CONTENT_LENGTH) && request.body.is_end_stream() {
        return None;
    }
    let (done_tx, mut done_rx) = oneshot::channel::<Outcome>();
    tokio::spawn(async move {
        let _ = done_tx.send(extract(request).await);
    });
    let render = move |outcome: Result<Outcome, oneshot::error::RecvError>| {
        outcome
            .unwrap_or_else(|_| Outcome::failed("500 Internal Server Error"))
            .render(format)
    };
    if let Ok(outcome) = tokio::time::timeout(HEARTBEAT, &mut done_rx).await {
        let (content_type, text) = render(outcome);
        return Some(answer(content_type, body::full(text)));
    }
    // The answer's type now, its outcome later.
    let (content_type, _) = Outcome::failed("").render(format);
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        // Swift's first heartbeat: the XML declaration for XML, else a space.
        let first = match format {
            Format::Xml(_) => Bytes::from_static(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            _ => Bytes::from_static(b" "),
        };
        if tx.send(first).await.is_err() {
            return;
        }
        loop {
            match tokio::time::timeout(HEARTBEAT, &mut done_rx).await {
                Ok(outcome) => {
                    let (_, text) = render(outcome);
                    let _ = tx.send([&b"\r\n\r\n"[..], &text].concat().into()).await;
                    return;
                }
                Err(_) => {
                    if tx.send(Bytes::from_static(b" ")).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let data = rx.recv().await?;
        Some((Ok::<_, BoxError>(Frame::data(data)), rx))
    });
    Some(answer(content_type, StreamBody::new(stream).boxed_unsync()))
}

fn answer(content_type: &'static str, body: ProxyBody) -> Response<ProxyBody> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Swift's answer to a client the cluster does not know (its first container check got 401):
/// `401 Unauthorized` in the body; `None` for an `Accept` Swift refuses.
pub fn unauthorized(headers: &HeaderMap) -> Option<Response<ProxyBody>> {
    let format = pick_format(&Params::default(), headers)?;
    let (content_type, text) = Outcome::failed("401 Unauthorized").render(format);
    Some(answer(content_type, body::full(text)))
}

/// The extraction proper: the archive read on a blocking thread, fed from the client's body,
/// its entries put where their containers live.
async fn extract(request: Request) -> Outcome {
    let Request {
        state,
        active,
        account,
        base,
        compression,
        headers,
        body,
        forbidden_remote,
    } = request;
    let limits = limits(&state).await;
    let idle = state.local.timeouts.idle;
    let extraction = Extraction {
        state,
        active,
        account,
        client_headers: headers,
        limits,
        forbidden_remote,
    };
    let (chunk_tx, chunk_rx) = mpsc::channel::<Result<Bytes, String>>(4);
    let (event_tx, event_rx) = mpsc::channel::<Event>(4);
    let client_failed = AtomicBool::new(false);
    tokio::task::spawn_blocking(move || {
        read_archive(
            ChannelReader {
                rx: chunk_rx,
                current: Bytes::new(),
            },
            compression,
            &event_tx,
        )
    });
    let pumping = async {
        pump(&body, chunk_tx, idle, &client_failed).await;
        std::future::pending::<std::convert::Infallible>().await
    };
    // The extraction decides when to stop; reading the client stops with it.
    tokio::select! {
        outcome = extraction.consume(&base, event_rx, &client_failed) => outcome,
        never = pumping => match never {},
    }
}

/// Feeds the client's body to the archive reader, until it ends, fails, goes idle, or the
/// reader stops.
async fn pump(
    client_body: &BodySlot,
    tx: mpsc::Sender<Result<Bytes, String>>,
    idle: Duration,
    client_failed: &AtomicBool,
) {
    let mut stream = client_body.attempt(Progress::new(), None, Duration::ZERO);
    loop {
        let failure = match tokio::time::timeout(idle, stream.frame()).await {
            Ok(None) => return,
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if tx.send(Ok(data)).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            Ok(Some(Err(e))) => format!("reading the request body: {e}"),
            Err(_) => format!("no request body data for {idle:?}"),
        };
        client_failed.store(true, Ordering::Release);
        let _ = tx.send(Err(failure)).await;
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_like_swift() {
        assert_eq!(
            compression(Some("extract-archive=tar")),
            Some(Compression::Plain)
        );
        assert_eq!(
            compression(Some("a=1&extract-archive=.TAR.GZ.")),
            Some(Compression::Gzip)
        );
        assert_eq!(
            compression(Some("extract-archive=tar.bz2")),
            Some(Compression::Bzip2)
        );
        assert_eq!(compression(Some("extract-archive=zip")), None);
        assert_eq!(compression(Some("bulk-delete")), None);
    }

    #[test]
    fn bases_are_decoded_without_trailing_slash() {
        let raw = "/v1/AUTH_a/c%20x/pre/";
        let path = SwiftPath::parse(raw).expect("path");
        assert_eq!(base_of(&path, raw), "c x/pre");
        let raw = "/v1/AUTH_a";
        let path = SwiftPath::parse(raw).expect("path");
        assert_eq!(base_of(&path, raw), "");
    }
}
