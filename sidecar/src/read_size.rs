//! How much of a response is read from an upstream connection at once: large while the client
//! keeps up, small while it stalls.
//!
//! Every response piece costs a `read`, a `writev` and, on a busy machine, a thread parked and
//! woken: measured, one context switch and ~30 µs of CPU per piece on this 2-core VM, so 64 KiB
//! pieces cost ~1.2 CPU-s per GiB and hyper's ~400 KiB ones ~0.85. But a download to a slow
//! client holds about three pieces (the one being written, one in the body channel, the read
//! buffer): with 256 KiB pieces, 256 slow clients hold ~200 MiB. And how fast the sidecar's
//! reads are taken says nothing for the first megabytes: the kernel takes them into a slow
//! client's socket buffers within milliseconds (measured: 110–150 MiB for 256 slow streams
//! with caps grown from read timing).
//!
//! So the cap comes from the client's socket: [`SizedReads`] wraps an upstream connection and
//! caps each read at its [`ReadLimit`], which the response body sets before each piece it takes
//! (`pacing::Paced`, through a [`ReadPacer`]) from the bytes the client has acknowledged (sent
//! minus the kernel's send queue, `SIOCOUTQ`): about [`HOLD`] worth of the rate at which the
//! client acknowledges, measured over [`WINDOW`]s, and never more than an eighth of what it
//! acknowledged so far (slow start). A client that takes megabytes per second gets the maximum;
//! the benchmark's slow clients (160 KiB/s) stay at [`MIN_READ_BYTES`]. A response nobody paces
//! (the sidecar's own subrequests) reads [`UNPACED_READ_BYTES`] pieces. hyper's adaptive read
//! buffer follows the sizes actually read, so its allocations shrink with the reads (it halves
//! after two smaller reads: a pooled connection that last served a fast client allocates large
//! buffers for a few more pieces).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::Uri;
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};

/// Smallest read cap.
pub const MIN_READ_BYTES: usize = 16 * 1024;
/// The cap of a response until its body is paced, and of responses that are not.
pub const UNPACED_READ_BYTES: usize = 64 * 1024;
/// A read cap holds about this much of the client's rate.
pub const HOLD: Duration = Duration::from_millis(20);
/// Shortest time over which the client's rate is measured.
pub const WINDOW: Duration = Duration::from_millis(50);
/// Slow start: the cap is at most this fraction of what the client acknowledged.
const SLOW_START_DIVISOR: u64 = 8;

/// The cap for `rate` (bytes per second the client acknowledges; `None`: not measured yet),
/// `acked` bytes acknowledged so far, `max` the largest read: a power of two, so that hyper's
/// buffer (which doubles and halves) settles on it.
pub fn limit_for(rate: Option<f64>, acked: u64, max: usize) -> usize {
    let mut allowed = acked / SLOW_START_DIVISOR;
    if let Some(rate) = rate {
        allowed = allowed.min((rate * HOLD.as_secs_f64()) as u64);
    }
    let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
    let pow2 = match allowed.checked_next_power_of_two() {
        Some(p) if p == allowed => p,
        Some(p) => p / 2,
        None => usize::MAX / 2 + 1,
    };
    pow2.clamp(MIN_READ_BYTES, max.max(MIN_READ_BYTES))
}

/// Sizes the reads of one response from what its client acknowledged.
#[derive(Debug)]
pub struct ReadPacer {
    limit: ReadLimit,
    /// Start of the current window, and what was acknowledged then.
    window: (Instant, u64),
    rate: Option<f64>,
}

impl ReadPacer {
    pub fn new(limit: ReadLimit, now: Instant) -> ReadPacer {
        ReadPacer {
            limit,
            window: (now, 0),
            rate: None,
        }
    }

    /// The client has acknowledged `acked` bytes of the response at `now`.
    pub fn update(&mut self, acked: u64, now: Instant) {
        let (start, at_start) = self.window;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= WINDOW {
            self.rate = Some(acked.saturating_sub(at_start) as f64 / elapsed.as_secs_f64());
            self.window = (now, acked);
        }
        self.limit.set(limit_for(self.rate, acked, self.limit.max));
    }
}

/// The read cap of one upstream connection, shared with the body of its current response
/// (it reaches it as an extension of every response: `Connected::extra`).
#[derive(Clone, Debug)]
pub struct ReadLimit {
    cap: Arc<AtomicUsize>,
    max: usize,
}

impl ReadLimit {
    pub(crate) fn new(max: usize) -> ReadLimit {
        ReadLimit {
            cap: Arc::new(AtomicUsize::new(UNPACED_READ_BYTES.min(max))),
            max,
        }
    }

    fn set(&self, bytes: usize) {
        self.cap.store(bytes, Ordering::Relaxed);
    }

    pub fn get(&self) -> usize {
        self.cap.load(Ordering::Relaxed)
    }
}

/// An upstream connection whose reads are capped by its [`ReadLimit`] (`None`: uncapped).
pub struct SizedReads<T> {
    inner: T,
    limit: Option<ReadLimit>,
}

impl<T> SizedReads<T> {
    /// `max`: the largest read (`None`: uncapped).
    pub fn new(inner: T, max: Option<usize>) -> SizedReads<T> {
        SizedReads {
            inner,
            limit: max.map(ReadLimit::new),
        }
    }

    /// A request goes out: its response starts at the unpaced size.
    fn restart(&self) {
        if let Some(limit) = &self.limit {
            limit.set(UNPACED_READ_BYTES.min(limit.max));
        }
    }
}

impl<T: Read + Unpin> Read for SizedReads<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let Some(limit) = &this.limit else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        let cap = limit.get().min(buf.remaining());
        // SAFETY: the slice is handed to a `ReadBuf`, which only ever writes initialised bytes
        // into it, and `advance` below counts exactly the bytes it reports filled.
        let mut capped = ReadBuf::uninit(unsafe { &mut buf.as_mut()[..cap] });
        match Pin::new(&mut this.inner).poll_read(cx, capped.unfilled()) {
            Poll::Ready(Ok(())) => {
                let n = capped.filled().len();
                // SAFETY: the inner reader initialised these `n` bytes (see above).
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: Write + Unpin> Write for SizedReads<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.restart();
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.restart();
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }
}

impl<T: Connection> Connection for SizedReads<T> {
    fn connected(&self) -> Connected {
        let connected = self.inner.connected();
        match &self.limit {
            Some(limit) => connected.extra(limit.clone()),
            None => connected,
        }
    }
}

/// Wraps every connection of a connector in [`SizedReads`].
#[derive(Clone)]
pub struct SizedConnector<C> {
    inner: C,
    max: Option<usize>,
}

impl<C> SizedConnector<C> {
    /// `max`: the largest read; `None`: reads are not capped (hyper's buffer alone decides).
    pub fn new(inner: C, max: Option<usize>) -> SizedConnector<C> {
        SizedConnector { inner, max }
    }
}

impl<C> tower_service::Service<Uri> for SizedConnector<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
{
    type Response = SizedReads<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let max = self.max;
        Box::pin(async move { Ok(SizedReads::new(connecting.await?, max)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 256 * 1024;

    #[test]
    fn reads_start_small_and_grow_with_what_the_client_acknowledged() {
        assert_eq!(limit_for(None, 0, MAX), MIN_READ_BYTES);
        assert_eq!(limit_for(None, 256 * 1024, MAX), 32 * 1024);
        assert_eq!(limit_for(None, 300 * 1024, MAX), 32 * 1024);
        assert_eq!(limit_for(None, 2 << 20, MAX), MAX);
        assert_eq!(limit_for(Some(1e9), 1 << 30, MAX), MAX);
    }

    #[test]
    fn reads_hold_about_twenty_milliseconds_of_the_clients_rate() {
        // 160 KiB/s, the benchmark's slow clients: the minimum, whatever was acknowledged.
        assert_eq!(
            limit_for(Some(160.0 * 1024.0), 1 << 30, MAX),
            MIN_READ_BYTES
        );
        // 4 MiB/s: 82 KiB → 64 KiB.
        assert_eq!(limit_for(Some(4.0 * 1048576.0), 1 << 30, MAX), 64 * 1024);
    }

    #[test]
    fn a_maximum_below_the_minimum_is_the_minimum() {
        assert_eq!(limit_for(None, 1 << 30, 8192), MIN_READ_BYTES);
    }

    #[test]
    fn a_client_that_stalls_after_a_fast_start_gets_small_reads_at_its_next_frame() {
        let limit = ReadLimit::new(MAX);
        let t = Instant::now();
        let mut pacer = ReadPacer::new(limit.clone(), t);
        // 100 MiB acknowledged in the first 100 ms.
        pacer.update(50 << 20, t + Duration::from_millis(50));
        pacer.update(100 << 20, t + Duration::from_millis(100));
        assert_eq!(limit.get(), MAX);
        // Then 16 KiB in 2 s.
        pacer.update((100 << 20) + 16 * 1024, t + Duration::from_millis(2100));
        assert_eq!(limit.get(), MIN_READ_BYTES);
    }

    #[tokio::test]
    async fn reads_are_capped_at_the_limit_and_every_request_resets_it() {
        use hyper_util::rt::TokioIo;
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut io = SizedReads::new(TokioIo::new(a), Some(MAX));
        let limit = io.limit.clone().expect("capped");
        tokio::io::AsyncWriteExt::write_all(&mut b, &[5u8; 200 * 1024])
            .await
            .expect("write");
        let mut sizes = Vec::new();
        for cap in [UNPACED_READ_BYTES, MIN_READ_BYTES, 128 * 1024] {
            limit.set(cap);
            let mut raw = vec![0u8; 512 * 1024];
            let mut buf = ReadBuf::new(&mut raw);
            std::future::poll_fn(|cx| Pin::new(&mut io).poll_read(cx, buf.unfilled()))
                .await
                .expect("read");
            sizes.push(buf.filled().len());
        }
        assert_eq!(sizes, vec![64 * 1024, 16 * 1024, 120 * 1024]);
        limit.set(MIN_READ_BYTES);
        std::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, b"GET / HTTP/1.1\r\n\r\n"))
            .await
            .expect("write");
        assert_eq!(limit.get(), UNPACED_READ_BYTES);
    }
}
