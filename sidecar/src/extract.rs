//! Extract-archive across clusters: `PUT /v1/<account>[/<container>[/<prefix>]]?extract-archive=
//! tar|tar.gz|tar.bz2` whose entries land in containers living in other clusters (an account
//! with container routes), or in a renamed container (Swift's own answer would show the
//! target's names). The sidecar does what Swift's bulk middleware does, across clusters: reads
//! the archive as a stream (decompressed and parsed on a blocking thread), creates each entry's
//! container where that container lives (HEAD, then PUT on 404), streams each regular file into
//! a PUT there (memory bounded by a few chunks), and answers once as Swift does: `200` with the
//! outcome in the body (plain text, JSON or XML by `Accept`), with Swift's whitespace
//! heartbeat while a long extraction runs. Swift's limits are the local cluster's (`/info`).

use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use percent_encoding::percent_encode;
use tokio::sync::{mpsc, oneshot};

use crate::body::{self, BodySlot, BoxError, Progress, ProxyBody};
use crate::bulk::{render_body, PATH};
use crate::dlo::ChannelBody;
use crate::listing::{self, pick_format, Format, Params};
use crate::state::{Active, State};
use crate::subrequest;
use crate::swift_path::{decode, encode_segment, SwiftPath};
use crate::upstream::{Outgoing, Upstream};

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

/// What the archive reader reports, in archive order.
enum Event {
    /// A regular file; its `size` bytes follow as `Data`.
    File {
        name: Vec<u8>,
        size: u64,
        /// Headers from its pax xattrs (`user.mime_type`, `user.meta.*`).
        meta: Vec<(HeaderName, HeaderValue)>,
    },
    Data(Bytes),
    /// The archive cannot be read further: Swift's `Invalid Tar File: ...` reason.
    Failed(String),
    End,
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

struct Extraction {
    state: Arc<State>,
    active: Arc<Active>,
    account: String,
    client_headers: HeaderMap,
    limits: Limits,
    forbidden_remote: bool,
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

impl Extraction {
    /// Swift's `handle_extract_iter`, entry by entry.
    async fn consume(
        &self,
        base: &str,
        mut events: mpsc::Receiver<Event>,
        client_failed: &AtomicBool,
    ) -> Outcome {
        let mut out = Outcome {
            status: "201 Created".into(),
            body: String::new(),
            created: 0,
            errors: Vec::new(),
        };
        let mut failed_type = "400 Bad Request";
        let mut accessed: HashSet<String> = HashSet::new();
        let mut containers_created = 0u64;
        let quoted = |path: &[u8]| {
            let cut = &path[..path.len().min(self.limits.max_path)];
            percent_encode(cut, PATH).to_string()
        };
        loop {
            let event = events.recv().await;
            if out.errors.len() >= self.limits.max_failed {
                break;
            }
            let (name, size, meta) = match event {
                Some(Event::File { name, size, meta }) => (name, size, meta),
                Some(Event::End) => break,
                other @ (Some(Event::Failed(_)) | Some(Event::Data(_)) | None) => {
                    return ended(out, other, client_failed);
                }
            };
            let mut obj_path: &[u8] = &name;
            if let Some(rest) = obj_path.strip_prefix(b"./") {
                obj_path = rest;
            }
            while let Some(rest) = obj_path.strip_prefix(b"/") {
                obj_path = rest;
            }
            let obj_path: Vec<u8> = if base.is_empty() {
                obj_path.to_vec()
            } else {
                [base.as_bytes(), b"/", obj_path].concat()
            };
            if !obj_path.contains(&b'/') {
                // A file at the top of an account-level archive: no container, ignored.
                if let Err(end) = drain(&mut events, size).await {
                    return ended(out, end, client_failed);
                }
                continue;
            }
            let Some(path) = std::str::from_utf8(&obj_path)
                .ok()
                .filter(|p| !p.contains('\0'))
            else {
                out.errors
                    .push((quoted(&obj_path), "412 Precondition Failed".into()));
                if let Err(end) = drain(&mut events, size).await {
                    return ended(out, end, client_failed);
                }
                continue;
            };
            if size > self.limits.max_file_size {
                out.errors
                    .push((quoted(&obj_path), "413 Request Entity Too Large".into()));
                if let Err(end) = drain(&mut events, size).await {
                    return ended(out, end, client_failed);
                }
                continue;
            }
            let (container, object) = path.split_once('/').unwrap_or((path, ""));
            let place = self.place(container);
            let mut container_failure = None;
            if !accessed.contains(container) {
                match self.ensure_container(&place).await {
                    Ok(true) => {
                        containers_created += 1;
                        if containers_created > self.limits.max_containers {
                            out.status = "400 Bad Request".into();
                            out.body = format!(
                                "More than {} containers to create from tar.",
                                self.limits.max_containers
                            );
                            return out;
                        }
                    }
                    Ok(false) => {}
                    Err((code, status)) => {
                        // The object PUT may still succeed (ACLs).
                        let cont_path = format!("/v1/{}/{container}", self.account);
                        container_failure = Some((quoted(cont_path.as_bytes()), status));
                        if code == StatusCode::UNAUTHORIZED {
                            out.status = "401 Unauthorized".into();
                            return out;
                        }
                    }
                }
            }
            let answer = self
                .put_object(&place, object, size, meta, &mut events)
                .await;
            accessed.insert(container.to_string());
            let (code, status) = match answer {
                Ok(answer) => answer,
                Err((status, end)) => {
                    // Swift's PUT of an entry cut short fails; reading on fails the archive.
                    out.errors.extend(container_failure);
                    out.errors.push((quoted(&obj_path), status));
                    return ended(out, end, client_failed);
                }
            };
            if code.is_success() {
                out.created += 1;
                continue;
            }
            if let Some(failure) = container_failure {
                out.errors.push(failure);
            }
            if code == StatusCode::UNAUTHORIZED {
                out.errors.push((quoted(&obj_path), status));
                out.status = "401 Unauthorized".into();
                return out;
            }
            if code.is_server_error() {
                failed_type = "502 Bad Gateway";
            }
            out.errors.push((quoted(&obj_path), status));
        }
        if !out.errors.is_empty() {
            out.status = failed_type.into();
        } else if out.created == 0 {
            out.status = "400 Bad Request".into();
            out.body = "Invalid Tar File: No Valid Files".into();
        }
        out
    }

    /// Where `container` (a client name) lives, and its names there.
    fn place(&self, container: &str) -> Place {
        match self.active.routes.lookup(&self.account, Some(container)) {
            Some(route) => {
                let t = route.target(&self.account, Some(container));
                Place {
                    cluster: Some(route.cluster.clone()),
                    account: t.account,
                    container: t.container.unwrap_or_else(|| container.to_string()),
                }
            }
            None => Place {
                cluster: None,
                account: self.account.clone(),
                container: container.to_string(),
            },
        }
    }

    /// The credentials a subrequest to `place` carries (Swift's bulk sends only the token).
    async fn headers_for(&self, place: &Place) -> Result<(HeaderMap, bool), String> {
        if place.cluster.is_none() {
            let mut headers = HeaderMap::new();
            for name in ["x-auth-token", "host", "x-trans-id-extra"] {
                if let Some(v) = self.client_headers.get(name) {
                    headers.insert(name, v.clone());
                }
            }
            return Ok((headers, false));
        }
        listing::source_headers(&self.active, &self.client_headers, place.cluster.as_deref())
            .await
            .map_err(|e| e.to_string())
    }

    fn upstream(&self, place: &Place) -> Result<&Upstream, String> {
        listing::upstream_of(&self.state, &self.active, place.cluster.as_deref())
            .map_err(|e| e.to_string())
    }

    /// Whether requests to `place` are refused without asking (see `Request::forbidden_remote`).
    fn forbidden(&self, place: &Place) -> Option<(StatusCode, String)> {
        (self.forbidden_remote && self.tokens_of(place).is_some()).then(|| {
            let s = StatusCode::FORBIDDEN;
            (s, status_line(s, None))
        })
    }

    /// Swift's `create_container`: `Ok(true)` when created, `Ok(false)` when it existed.
    async fn ensure_container(&self, place: &Place) -> Result<bool, (StatusCode, String)> {
        if let Some(refused) = self.forbidden(place) {
            return Err(refused);
        }
        let unavailable = |e: String| {
            tracing::warn!(error = %e, "extract-archive: container check failed");
            let s = StatusCode::SERVICE_UNAVAILABLE;
            (s, status_line(s, None))
        };
        let upstream = self.upstream(place).map_err(unavailable)?;
        let path = format!(
            "/v1/{}/{}",
            encode_segment(&place.account),
            encode_segment(&place.container)
        );
        let mut last = None;
        let mut renewed = false;
        let mut methods = vec![Method::PUT, Method::HEAD];
        while let Some(method) = methods.pop() {
            let (headers, endpoint_host) = self.headers_for(place).await.map_err(unavailable)?;
            let got = subrequest::fetch(
                upstream,
                method.clone(),
                path.clone(),
                headers.clone(),
                endpoint_host,
            )
            .await;
            let code = match got {
                Ok(answer) => answer.status,
                Err(e) => e.status(),
            };
            // The sidecar's own token refused (expired early, the target restarted): once,
            // a fresh one.
            if code == StatusCode::UNAUTHORIZED && !renewed {
                if let (Some(tokens), Some(token)) =
                    (self.tokens_of(place), headers.get("x-auth-token"))
                {
                    tokens.invalidate(token);
                    renewed = true;
                    methods.push(method);
                    continue;
                }
            }
            let status = status_line(code, None);
            match (method, code) {
                (Method::HEAD, c) if c.is_success() => return Ok(false),
                (Method::HEAD, StatusCode::NOT_FOUND) => continue,
                (Method::PUT, c) if c.is_success() => return Ok(true),
                _ => {
                    last = Some((code, status));
                    break;
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            let s = StatusCode::INTERNAL_SERVER_ERROR;
            (s, status_line(s, None))
        }))
    }

    /// The sidecar's own tokens for `place`'s cluster, if it uses them there.
    fn tokens_of(&self, place: &Place) -> Option<&crate::auth::TokenSource> {
        let cluster = place.cluster.as_ref()?;
        self.active.clusters.get(cluster)?.tokens.as_deref()
    }

    /// PUTs one entry at `place`, its `size` bytes streamed from `events` as they come. `Err`
    /// when the archive could not be read to the entry's end (the PUT is then cut short, so
    /// no object is made of a partial entry), with the entry's status and what ended it.
    async fn put_object(
        &self,
        place: &Place,
        object: &str,
        size: u64,
        meta: Vec<(HeaderName, HeaderValue)>,
        events: &mut mpsc::Receiver<Event>,
    ) -> Result<(StatusCode, String), (String, Option<Event>)> {
        if let Some((code, status)) = self.forbidden(place) {
            // Swift refuses such a PUT before reading its body.
            return match drain(events, size).await {
                Ok(()) => Ok((code, status)),
                Err(end) => Err((status, end)),
            };
        }
        let prepared = async {
            let upstream = self.upstream(place)?;
            let (mut headers, endpoint_host) = self.headers_for(place).await?;
            for (k, v) in &self.client_headers {
                let name = k.as_str();
                if name == "x-delete-at"
                    || name == "x-delete-after"
                    || name.starts_with("x-object-meta-")
                {
                    headers.append(k.clone(), v.clone());
                }
            }
            for (k, v) in meta {
                headers.insert(k, v);
            }
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            // A refusal (no such container, quota) comes before any byte is sent.
            if size > 0 {
                headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
            }
            let out = Outgoing {
                method: Method::PUT,
                path_and_query: format!(
                    "/v1/{}/{}/{}",
                    encode_segment(&place.account),
                    encode_segment(&place.container),
                    percent_encode(object.as_bytes(), PATH)
                ),
                headers,
                endpoint_host,
                expect_continue: size > 0,
            };
            Ok::<_, String>((upstream, out))
        };
        let (upstream, out) = match prepared.await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "extract-archive: object PUT not sent");
                let s = StatusCode::SERVICE_UNAVAILABLE;
                if let Err(end) = drain(events, size).await {
                    return Err((status_line(s, None), end));
                }
                return Ok((s, status_line(s, None)));
            }
        };
        let (tx, rx) = mpsc::channel::<Result<Bytes, BoxError>>(2);
        let slot = BodySlot::from_body(ChannelBody::new(rx, size).boxed_unsync());
        let send = upstream.send(&out, &slot);
        tokio::pin!(send);
        let mut tx = Some(tx);
        let mut answer = None;
        let mut left = size;
        while left > 0 {
            let event = tokio::select! {
                got = &mut send, if answer.is_none() => {
                    // Answered before the whole entry was sent: the rest is only read past.
                    answer = Some(got);
                    tx = None;
                    continue;
                }
                event = events.recv() => event,
            };
            let Some(Event::Data(data)) = event else {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Err("archive ended inside an entry".into())).await;
                }
                // Swift's proxy answers a PUT whose body breaks off with 500.
                let status = match answer {
                    Some(Ok((response, _))) => status_line(response.status(), None),
                    _ => "500 Internal Error".to_string(),
                };
                return Err((status, event));
            };
            left = left.saturating_sub(data.len() as u64);
            if let Some(sender) = &tx {
                tokio::select! {
                    sent = sender.send(Ok(data)) => if sent.is_err() { tx = None },
                    got = &mut send, if answer.is_none() => {
                        answer = Some(got);
                        tx = None;
                    }
                }
            }
        }
        drop(tx);
        let got = match answer {
            Some(got) => got,
            None => send.await,
        };
        Ok(match got {
            Ok((response, _)) => {
                let code = response.status();
                let status = status_line(code, response.extensions().get());
                // Read the short answer so the connection can be reused.
                let idle = upstream.timeouts.idle;
                let _ =
                    tokio::time::timeout(idle, body::read_to_end(response.into_body(), 64 * 1024))
                        .await;
                (code, status)
            }
            Err(e) => {
                let s = e.status();
                (s, status_line(s, None))
            }
        })
    }
}

/// Reads past `size` bytes of an entry; `Err` with what ended the archive first.
async fn drain(events: &mut mpsc::Receiver<Event>, size: u64) -> Result<(), Option<Event>> {
    let mut left = size;
    while left > 0 {
        match events.recv().await {
            Some(Event::Data(data)) => left = left.saturating_sub(data.len() as u64),
            other => return Err(other),
        }
    }
    Ok(())
}

/// The answer when the archive could not be read on (`end`: what the reader said): Swift's
/// `Invalid Tar File` with Python's reason, or 500 when the client's body failed.
fn ended(mut out: Outcome, end: Option<Event>, client_failed: &AtomicBool) -> Outcome {
    match end {
        Some(Event::Failed(reason)) if !client_failed.load(Ordering::Acquire) => {
            out.status = "400 Bad Request".into();
            out.body = format!("Invalid Tar File: {reason}");
        }
        _ => out.status = "500 Internal Server Error".into(),
    }
    out
}

/// The client's body as a blocking `Read`, for the decompressors and the tar parser.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(data)) => self.current = data,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// The decompressed stream, counting what it gave. A compressed stream cut short reads as its
/// end (as Python's `tarfile` reads it: what follows decides whether that is an error); a
/// corrupt one or a failed client body is an error, remembered as the decompressor's.
struct Tapped<R> {
    inner: R,
    bytes: u64,
    failed: bool,
    /// The decompressor refused the stream's header.
    bad_header: bool,
}

impl<R: Read> Read for Tapped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && self.bytes > 0 => Ok(0),
            Err(e) => {
                self.failed = true;
                // No gzip header: none at all, or flate2's words for one that is not.
                self.bad_header = self.bytes == 0
                    && (e.kind() == std::io::ErrorKind::UnexpectedEof
                        || e.to_string().contains("gzip header"));
                Err(e)
            }
        }
    }
}

/// Where the archive reader stopped, for Python's `tarfile` reasons.
#[derive(Default)]
struct Position {
    /// A member header was read.
    seen: bool,
    /// Where the last member's data and padding end.
    expected_end: u64,
    /// Inside a member's data.
    in_data: bool,
}

/// What ends the archive, in Python's `tarfile` terms: after the first member, a header that
/// is missing, cut or invalid just ends it, data or padding cut short is `unexpected end of
/// data`; the first header's failures and corrupt compressed data are errors of their own.
/// `parsed`: the tar reader ended without an error (end blocks, or no more input).
fn ending(
    compression: Compression,
    tapped: &Tapped<Box<dyn Read>>,
    at: &Position,
    parsed: bool,
) -> Event {
    let reason = if tapped.failed {
        match compression {
            Compression::Gzip if tapped.bad_header => "not a gzip file",
            Compression::Bzip2 if tapped.bytes == 0 => "empty file",
            _ if at.in_data => "unexpected end of data",
            _ => "invalid compressed data",
        }
    } else if at.in_data || (at.seen && tapped.bytes < at.expected_end) {
        "unexpected end of data"
    } else if at.seen || (parsed && tapped.bytes > 0) {
        return Event::End;
    } else if tapped.bytes == 0 {
        match compression {
            Compression::Gzip => "not a gzip file",
            _ => "empty file",
        }
    } else if tapped.bytes < 512 {
        "truncated header"
    } else {
        "invalid header"
    };
    Event::Failed(reason.into())
}

/// The blocking side: parses the (decompressed) archive and reports its regular files with
/// their bytes. Stops quietly when the extraction stops listening.
fn read_archive(input: ChannelReader, compression: Compression, events: &mpsc::Sender<Event>) {
    let decoded: Box<dyn Read> = match compression {
        Compression::Plain => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(input)),
        Compression::Bzip2 => Box::new(bzip2::read::BzDecoder::new(input)),
    };
    let mut archive = tar::Archive::new(Tapped {
        inner: decoded,
        bytes: 0,
        failed: false,
        bad_header: false,
    });
    let mut at = Position::default();
    let mut buf = vec![0u8; CHUNK];
    // `Ok(false)`: the extraction stopped listening.
    let result = (|| -> Result<bool, std::io::Error> {
        for entry in archive.entries()? {
            let mut entry = entry?;
            let header = entry.header();
            at.seen = true;
            let stored = header.entry_size().unwrap_or(0);
            at.expected_end = entry.raw_file_position() + stored.div_ceil(512) * 512;
            let kind = header.entry_type();
            let name = entry.path_bytes().into_owned();
            // Python's tarfile: an old-style regular file named with a trailing `/` is a
            // directory.
            let old_style_dir = header.as_bytes()[156] == 0 && name.ends_with(b"/");
            let regular = matches!(
                kind,
                tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse
            );
            if !regular || old_style_dir {
                continue;
            }
            let size = entry.size();
            let meta = pax_meta(&mut entry);
            if events
                .blocking_send(Event::File { name, size, meta })
                .is_err()
            {
                return Ok(false);
            }
            at.in_data = true;
            let mut left = size;
            while left > 0 {
                let want = buf.len().min(left as usize);
                let n = entry.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "entry ended early",
                    ));
                }
                left -= n as u64;
                if events
                    .blocking_send(Event::Data(Bytes::copy_from_slice(&buf[..n])))
                    .is_err()
                {
                    return Ok(false);
                }
            }
            at.in_data = false;
        }
        Ok(true)
    })();
    if matches!(result, Ok(false)) {
        return;
    }
    let tapped = archive.into_inner();
    let _ = events.blocking_send(ending(compression, &tapped, &at, result.is_ok()));
}

/// Swift's `pax_key_to_swift_header`: GNU and BSD tar xattrs `user.mime_type` and
/// `user.meta.*` become `Content-Type` and `X-Object-Meta-*`.
fn pax_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let Ok(Some(extensions)) = entry.pax_extensions() else {
        return out;
    };
    for ext in extensions.flatten() {
        let Ok(key) = ext.key() else { continue };
        let name =
            if key == "SCHILY.xattr.user.mime_type" || key == "LIBARCHIVE.xattr.user.mime_type" {
                "content-type".to_string()
            } else if let Some(rest) = key
                .strip_prefix("SCHILY.xattr.user.meta.")
                .or_else(|| key.strip_prefix("LIBARCHIVE.xattr.user.meta."))
            {
                format!("x-object-meta-{rest}")
            } else {
                continue;
            };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(ext.value_bytes()),
        ) {
            out.push((n, v));
        }
    }
    out
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
