//! Streaming bodies. Nothing here buffers more than one frame: hyper polls a body only when the
//! other side can take bytes, which is the backpressure, and memory per stream stays bounded.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> ProxyBody {
    full(Bytes::new())
}

/// Progress of a request body toward an upstream, read by the response timeout logic.
#[derive(Debug)]
pub struct Progress {
    start: Instant,
    last_ms: AtomicU64,
    done_ms: AtomicU64,
    done: AtomicBool,
    pub bytes: AtomicU64,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            done_ms: AtomicU64::new(0),
            done: AtomicBool::new(false),
            bytes: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn touch(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    pub fn finish(&self) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.done_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// When waiting for the response head must give up: `first_byte` after the request body
    /// ended, or `idle` after the last request-body progress while it is still being sent.
    pub fn head_deadline(&self, first_byte: Duration, idle: Duration) -> Instant {
        if self.done.load(Ordering::Acquire) {
            self.start + Duration::from_millis(self.done_ms.load(Ordering::Relaxed)) + first_byte
        } else {
            self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle
        }
    }
}

/// Opens when the upstream answers `100 Continue`, or after a fallback delay (as curl does) so a
/// server that never sends 100 still gets the body.
#[derive(Debug, Default)]
pub struct ContinueGate {
    open: AtomicBool,
    abandoned: AtomicBool,
    notify: Notify,
}

impl ContinueGate {
    pub fn open(&self) {
        self.open.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// The upstream gave its final answer without asking for the body: the body is never sent
    /// (the client never sees `100 Continue`). No effect once the gate is open.
    pub fn abandon(&self) {
        if !self.is_open() {
            self.abandoned.store(true, Ordering::Release);
            self.open();
        }
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

/// The client's request body, shared between attempts on successive endpoints. An attempt that
/// fails before polling it leaves it intact for the next one; once polled, it is spent and the
/// request must not be re-sent (`touched`).
#[derive(Clone)]
pub struct BodySlot {
    inner: Arc<Mutex<SlotState>>,
}

struct SlotState {
    body: Option<SlotBody>,
    touched: bool,
    bytes: u64,
}

/// A client's streamed body, or one the sidecar made for a request of its own (bulk deletes
/// split by cluster): an enum rather than a boxed body, to keep the client path direct.
enum SlotBody {
    Incoming(Incoming),
    Made(http_body_util::Full<Bytes>),
    /// A stream the sidecar assembles (a cross-cluster DLO being copied).
    Assembled(ProxyBody),
}

impl SlotBody {
    fn size_hint(&self) -> SizeHint {
        match self {
            SlotBody::Incoming(b) => b.size_hint(),
            SlotBody::Made(b) => b.size_hint(),
            SlotBody::Assembled(b) => b.size_hint(),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SlotBody::Incoming(b) => b.is_end_stream(),
            SlotBody::Made(b) => b.is_end_stream(),
            SlotBody::Assembled(b) => b.is_end_stream(),
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            SlotBody::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            SlotBody::Made(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
            SlotBody::Assembled(b) => Pin::new(b).poll_frame(cx),
        }
    }
}

impl BodySlot {
    pub fn new(body: Option<Incoming>) -> BodySlot {
        BodySlot::with(body.map(SlotBody::Incoming))
    }

    /// A body the sidecar made itself.
    pub fn from_bytes(bytes: Bytes) -> BodySlot {
        BodySlot::with(Some(SlotBody::Made(http_body_util::Full::new(bytes))))
    }

    /// A stream the sidecar assembles, as a request body.
    pub fn from_body(body: ProxyBody) -> BodySlot {
        BodySlot::with(Some(SlotBody::Assembled(body)))
    }

    fn with(body: Option<SlotBody>) -> BodySlot {
        BodySlot {
            inner: Arc::new(Mutex::new(SlotState {
                body,
                touched: false,
                bytes: 0,
            })),
        }
    }

    pub fn touched(&self) -> bool {
        self.inner.lock().map(|s| s.touched).unwrap_or(true)
    }

    /// Request body bytes taken from the client so far.
    pub fn bytes_read(&self) -> u64 {
        self.inner.lock().map(|s| s.bytes).unwrap_or(0)
    }

    pub fn is_end_stream(&self) -> bool {
        self.inner
            .lock()
            .map(|s| s.body.as_ref().is_none_or(|b| b.is_end_stream()))
            .unwrap_or(true)
    }

    /// A body for one upstream attempt.
    pub fn attempt(
        &self,
        progress: Arc<Progress>,
        gate: Option<Arc<ContinueGate>>,
        gate_fallback: Duration,
    ) -> ProxyBody {
        use http_body_util::BodyExt;
        let size_hint = self
            .inner
            .lock()
            .ok()
            .and_then(|s| s.body.as_ref().map(|b| b.size_hint()))
            .unwrap_or_else(|| SizeHint::with_exact(0));
        if size_hint.exact() == Some(0) {
            progress.finish();
        }
        AttemptBody {
            slot: self.clone(),
            progress,
            gate,
            gate_wait: None,
            gate_fallback,
            size_hint,
        }
        .boxed_unsync()
    }
}

struct AttemptBody {
    slot: BodySlot,
    progress: Arc<Progress>,
    gate: Option<Arc<ContinueGate>>,
    gate_wait: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    gate_fallback: Duration,
    size_hint: SizeHint,
}

impl AttemptBody {
    /// Pending until the gate opens (or its fallback fires); the client sees `100 Continue` only
    /// when hyper's server first polls its body, which happens after this.
    fn poll_gate(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(gate) = self.gate.clone() else {
            return Poll::Ready(());
        };
        if gate.is_open() {
            if gate.abandoned.load(Ordering::Acquire) {
                return Poll::Pending;
            }
            self.gate = None;
            return Poll::Ready(());
        }
        let fallback = self.gate_fallback;
        let wait = self.gate_wait.get_or_insert_with(|| {
            Box::pin(async move {
                let notified = gate.notify.notified();
                if gate.is_open() {
                    return;
                }
                let _ = tokio::time::timeout(fallback, notified).await;
            })
        });
        match wait.as_mut().poll(cx) {
            Poll::Ready(()) if gate_abandoned(&self.gate) => Poll::Pending,
            Poll::Ready(()) => {
                self.gate = None;
                self.gate_wait = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

fn gate_abandoned(gate: &Option<Arc<ContinueGate>>) -> bool {
    gate.as_ref()
        .is_some_and(|g| g.abandoned.load(Ordering::Acquire))
}

impl Body for AttemptBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.poll_gate(cx).is_pending() {
            return Poll::Pending;
        }
        let this = &mut *self;
        let mut state = match this.slot.inner.lock() {
            Ok(s) => s,
            Err(_) => return Poll::Ready(Some(Err("request body lock poisoned".into()))),
        };
        state.touched = true;
        let Some(body) = state.body.as_mut() else {
            this.progress.finish();
            return Poll::Ready(None);
        };
        match body.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.progress.touch(data.len());
                    state.bytes += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => {
                this.progress.finish();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.size_hint.exact() == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        self.size_hint
    }
}

/// A response body from upstream that fails when no frame arrives for `idle` (counting and
/// reporting its end is `on_end::OnEnd`'s job).
pub struct IdleLimited {
    inner: Option<Incoming>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// Set while a frame is awaited: the idle clock runs only then, so a slow client (which
    /// stops hyper polling us) is not mistaken for an idle upstream.
    waiting: bool,
}

impl IdleLimited {
    pub fn new(inner: Option<Incoming>, idle: Duration) -> Self {
        IdleLimited {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            waiting: false,
        }
    }
}

impl Body for IdleLimited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if !this.waiting {
            this.waiting = true;
            let deadline = Instant::now() + this.idle;
            this.timer.as_mut().reset(deadline);
        }
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                    "upstream response body idle for more than {:?}",
                    this.idle
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

/// Reads a small body whole (bulk-delete lists, SLO manifests); `Ok(None)` when it is longer
/// than `max`.
pub async fn read_to_end<B>(mut body: B, max: usize) -> Result<Option<Vec<u8>>, String>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    use http_body_util::BodyExt;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > max {
                return Ok(None);
            }
            out.extend_from_slice(data);
        }
    }
    Ok(Some(out))
}

/// The client's body from its slot, read whole (see [`read_to_end`]).
pub async fn read_slot(slot: &BodySlot, max: usize) -> Result<Option<Vec<u8>>, String> {
    read_to_end(slot.attempt(Progress::new(), None, Duration::ZERO), max).await
}
