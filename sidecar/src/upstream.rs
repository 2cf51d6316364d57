//! One upstream = the local Swift proxy or one target cluster: its endpoints, a connection pool
//! per endpoint (hyper-util's pool is keyed by endpoint), timeouts, and failover.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{HeaderValue, HOST};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use swiftfed_crds::routing::Timeouts;
use tokio::time::Instant;

use crate::body::{BodySlot, ContinueGate, ProxyBody};
use crate::read_size::{SizedConnector, MIN_READ_BYTES};
use crate::tls::{ClientTls, Connector};

/// How long a body waits for `100 Continue` before it is sent anyway (curl waits 1 s).
const CONTINUE_FALLBACK: Duration = Duration::from_secs(2);
/// Header count limit in both directions, above what Swift itself sends or accepts (90
/// metadata items plus about 20 of its own headers). hyper initialises a header array of this
/// size on every parse: 512 cost 7% of a small request's instructions.
pub const MAX_HEADERS: usize = 160;
/// Default for `Buffers::read_bytes`: the largest piece of a response read at once. A response
/// grows its reads to this only while its client keeps up (`read_size`), so a slow download
/// holds small pieces whatever this is.
pub const DEFAULT_READ_BUFFER_BYTES: usize = 512 * 1024;

/// hyper's read buffer also holds a response head: 90 metadata items of Swift's limits fit.
const MIN_HEAD_BUFFER_BYTES: usize = 64 * 1024;

/// Buffer sizes of upstream connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffers {
    /// Largest read from an upstream connection, so the largest response frame (reads are
    /// sized between 16 KiB and this by `read_size`, from the client's socket). A stream holds about three frames (read
    /// buffer, body channel, one in the client connection's queue) plus
    /// `pacing::MAX_UNSENT_BYTES`. 0: hyper's adaptive buffer alone, uncapped reads (grows to
    /// ~400 KiB on a fast upstream, whatever the client's pace).
    pub read_bytes: usize,
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers {
            read_bytes: DEFAULT_READ_BUFFER_BYTES,
        }
    }
}

/// How long an endpoint that refused a connection is tried only after the healthy ones.
const DOWN_FOR: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no endpoint of {upstream} accepted a connection ({})", describe(.attempts))]
    Unavailable {
        upstream: String,
        attempts: Vec<(String, String)>,
    },
    #[error("{upstream} endpoint {endpoint} did not answer within {timeout:?}")]
    Timeout {
        upstream: String,
        endpoint: String,
        timeout: Duration,
    },
    #[error("{upstream} endpoint {endpoint} failed: {error}")]
    Failed {
        upstream: String,
        endpoint: String,
        error: String,
    },
    #[error("bad request for {upstream}: {0}", upstream = .1)]
    Build(String, String),
}

fn describe(attempts: &[(String, String)]) -> String {
    attempts
        .iter()
        .map(|(e, why)| format!("{e}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl UpstreamError {
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Build(..) => StatusCode::BAD_REQUEST,
            UpstreamError::Failed { .. } => StatusCode::BAD_GATEWAY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Debug)]
struct Endpoint {
    /// Parsed once, for building each request's URI without formatting and re-parsing it.
    scheme: http::uri::Scheme,
    uri_authority: http::uri::Authority,
    authority: String,
    host_header: HeaderValue,
    down_until: Mutex<Option<Instant>>,
}

impl Endpoint {
    fn is_down(&self) -> bool {
        self.down_until
            .lock()
            .map(|d| d.is_some_and(|t| t > Instant::now()))
            .unwrap_or(false)
    }

    fn mark(&self, down: bool) {
        if let Ok(mut d) = self.down_until.lock() {
            *d = down.then(|| Instant::now() + DOWN_FOR);
        }
    }
}

enum Attempt {
    Answered(Response<Incoming>),
    Failed(hyper_util::client::legacy::Error),
    /// No response head within the first-byte (or idle) timeout.
    TimedOut,
}

/// What to send, minus the body.
#[derive(Clone)]
pub struct Outgoing {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    /// Set `Host` to the endpoint's (target clusters) instead of keeping the client's (local
    /// proxy: tempauth builds storage URLs from it).
    pub endpoint_host: bool,
    pub expect_continue: bool,
}

pub struct Upstream {
    pub name: String,
    endpoints: Vec<Endpoint>,
    client: Client<SizedConnector<Connector>, ProxyBody>,
    pub timeouts: Timeouts,
    buffers: Buffers,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

impl Upstream {
    /// `endpoints` are validated base URLs (`http://host:port` or `https://host:port`); `tls`
    /// is required for `https` ones.
    pub fn new(
        name: &str,
        endpoints: &[String],
        timeouts: Timeouts,
        tls: Option<Arc<ClientTls>>,
    ) -> Result<Upstream, String> {
        Upstream::with_buffers(name, endpoints, timeouts, tls, Buffers::default())
    }

    /// `new` with the given buffer sizes.
    pub fn with_buffers(
        name: &str,
        endpoints: &[String],
        timeouts: Timeouts,
        tls: Option<Arc<ClientTls>>,
        buffers: Buffers,
    ) -> Result<Upstream, String> {
        let mut parsed = Vec::new();
        for e in endpoints {
            let uri: http::Uri = e.parse().map_err(|err| format!("{e}: {err}"))?;
            let scheme = uri.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP);
            match scheme.as_str() {
                "http" => {}
                "https" if tls.is_some() => {}
                "https" => return Err(format!("{e}: https endpoint without TLS settings")),
                other => return Err(format!("{e}: unsupported scheme {other:?}")),
            }
            let uri_authority = uri
                .authority()
                .ok_or_else(|| format!("{e}: no host"))?
                .clone();
            let authority = uri_authority.to_string();
            let host_header =
                HeaderValue::from_str(&authority).map_err(|err| format!("{e}: {err}"))?;
            parsed.push(Endpoint {
                scheme,
                uri_authority,
                authority,
                host_header,
                down_until: Mutex::new(None),
            });
        }
        let connector = SizedConnector::new(
            Connector::new(timeouts.connect, tls),
            (buffers.read_bytes > 0).then_some(buffers.read_bytes.max(MIN_READ_BYTES)),
        );
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .http1_preserve_header_case(true)
            // Swift allows 90 metadata items plus its own headers: above hyper's default of 100.
            .http1_max_headers(MAX_HEADERS);
        if buffers.read_bytes > 0 {
            // hyper's adaptive buffer follows the sizes `read_size` lets through; capped so
            // that it never reserves much more than one read can fill, but not below what a
            // large response head needs (the same buffer holds it). Also caps what hyper
            // queues of a request body (400 KiB by default).
            builder.http1_max_buf_size(buffers.read_bytes.max(MIN_HEAD_BUFFER_BYTES));
        }
        let client = builder.build(connector);
        Ok(Upstream {
            name: name.to_string(),
            endpoints: parsed,
            client,
            timeouts,
            buffers,
        })
    }

    /// The buffer sizes this upstream was built with (target clusters copy the local one's).
    pub fn buffers(&self) -> Buffers {
        self.buffers
    }

    /// Healthy endpoints in configured order, then the ones recently down (last resort). Taken
    /// once per request, so an endpoint that fails during it is not tried again.
    fn order(&self) -> Vec<&Endpoint> {
        let (up, down): (Vec<&Endpoint>, Vec<&Endpoint>) =
            self.endpoints.iter().partition(|e| !e.is_down());
        up.into_iter().chain(down).collect()
    }

    /// Sends the request to the first endpoint that accepts a connection. A request whose body
    /// was already (partly) sent is never re-sent. A GET/HEAD/OPTIONS that failed on a pooled
    /// connection the server had just closed is sent once more on a fresh one.
    pub async fn send(
        &self,
        out: &Outgoing,
        body: &BodySlot,
    ) -> Result<(Response<Incoming>, String), UpstreamError> {
        let mut attempts = Vec::new();
        let idempotent = matches!(out.method, Method::GET | Method::HEAD | Method::OPTIONS);
        for endpoint in self.order() {
            let mut retried = false;
            loop {
                match self.attempt(endpoint, out, body).await? {
                    Attempt::Answered(resp) => {
                        endpoint.mark(false);
                        return Ok((resp, endpoint.authority.clone()));
                    }
                    Attempt::Failed(e) if e.is_connect() && !body.touched() => {
                        endpoint.mark(true);
                        attempts.push((endpoint.authority.clone(), error_chain(&e)));
                        break;
                    }
                    Attempt::Failed(e) if idempotent && !retried && !body.touched() => {
                        tracing::debug!(endpoint = %endpoint.authority, error = %error_chain(&e), "retrying on a fresh connection");
                        retried = true;
                    }
                    Attempt::Failed(e) => {
                        return Err(UpstreamError::Failed {
                            upstream: self.name.clone(),
                            endpoint: endpoint.authority.clone(),
                            error: error_chain(&e),
                        })
                    }
                    Attempt::TimedOut => {
                        return Err(UpstreamError::Timeout {
                            upstream: self.name.clone(),
                            endpoint: endpoint.authority.clone(),
                            timeout: self.timeouts.first_byte,
                        })
                    }
                }
            }
        }
        Err(UpstreamError::Unavailable {
            upstream: self.name.clone(),
            attempts,
        })
    }

    /// One try on one endpoint.
    async fn attempt(
        &self,
        endpoint: &Endpoint,
        out: &Outgoing,
        body: &BodySlot,
    ) -> Result<Attempt, UpstreamError> {
        let progress = crate::body::Progress::new();
        let gate = out
            .expect_continue
            .then(|| Arc::new(ContinueGate::default()));
        let uri = http::Uri::builder()
            .scheme(endpoint.scheme.clone())
            .authority(endpoint.uri_authority.clone())
            .path_and_query(out.path_and_query.as_str())
            .build()
            .map_err(|e| UpstreamError::Build(e.to_string(), self.name.clone()))?;
        let mut req = Request::builder()
            .method(out.method.clone())
            .uri(uri)
            .body(body.attempt(progress.clone(), gate.clone(), CONTINUE_FALLBACK))
            .map_err(|e| UpstreamError::Build(e.to_string(), self.name.clone()))?;
        *req.headers_mut() = out.headers.clone();
        if out.endpoint_host {
            req.headers_mut().insert(HOST, endpoint.host_header.clone());
        }
        if let Some(gate) = gate.clone() {
            hyper::ext::on_informational(&mut req, move |res| {
                if res.status() == StatusCode::CONTINUE {
                    gate.open();
                }
            });
        }
        let mut response = std::pin::pin!(self.client.request(req));
        let result = loop {
            let deadline = progress.head_deadline(self.timeouts.first_byte, self.timeouts.idle);
            tokio::select! {
                r = &mut response => break Ok(r),
                _ = tokio::time::sleep_until(deadline) => {
                    if progress.head_deadline(self.timeouts.first_byte, self.timeouts.idle) <= Instant::now() {
                        break Err(());
                    }
                }
            }
        };
        if let Some(gate) = gate {
            // A final answer without 100 Continue: the body is not wanted.
            gate.abandon();
        }
        Ok(match result {
            Ok(Ok(resp)) => Attempt::Answered(resp),
            Ok(Err(e)) => Attempt::Failed(e),
            Err(()) => Attempt::TimedOut,
        })
    }
}

/// An error and its sources in one line (hyper's own message alone says only "Connect").
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    if let Some(hint) = crate::tls::alert_hint(e) {
        out.push_str(&format!(" ({hint})"));
    }
    out
}
