//! Bounds what hyper queues of a response for a slow client, independently of its buffer size.
//!
//! hyper's server polls a response body whenever its write queue holds less than `max_buf_size`
//! (= `--max-head-bytes`), which is also the request-head limit and the size in which request
//! bodies are read. A large value makes uploads cheap (fewer, larger frames) but lets every slow
//! download queue that much. So the client connection's socket is wrapped to count the bytes the
//! kernel took ([`Counted`]), and a response body ([`Paced`]) yields its next frame only while
//! less than [`MAX_UNSENT_BYTES`] of what it yielded is still in hyper's hands. Before each
//! frame it also sets how much the upstream connection reads next (`read_size`), from what the
//! client acknowledged and what waits for it in the kernel.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::read_size::{ReadLimit, ReadPacer};

/// Response bytes a client connection may have queued in the sidecar beyond its socket (plus the
/// frame that crosses it). 256 slow streams with 64 KiB frames: 48 MiB peak RSS with 16 KiB
/// here, 64 MiB with 64 KiB.
pub const MAX_UNSENT_BYTES: u64 = 16 * 1024;

/// Bytes written to one client connection's socket, and the body waiting for more to be.
#[derive(Debug, Default)]
pub struct WriteProgress {
    written: AtomicU64,
    waiting: AtomicWaker,
    /// The connection's TCP socket, for its kernel send queue.
    socket: Option<std::os::fd::RawFd>,
}

impl WriteProgress {
    /// Progress of a connection over this TCP socket (it must outlive the progress' users: the
    /// connection's requests and responses).
    pub fn for_socket(socket: std::os::fd::RawFd) -> WriteProgress {
        WriteProgress {
            socket: Some(socket),
            ..WriteProgress::default()
        }
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Bytes in the socket's kernel send queue: not yet sent, or sent and not acknowledged.
    pub fn kernel_queue(&self) -> Option<u64> {
        let fd = self.socket?;
        socket_send_queue(fd)
    }

    fn advance(&self, n: usize) {
        if n > 0 {
            self.written.fetch_add(n as u64, Ordering::AcqRel);
            self.waiting.wake();
        }
    }
}

#[cfg(target_os = "linux")]
fn socket_send_queue(fd: std::os::fd::RawFd) -> Option<u64> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one int to the pointer; on a closed or reused fd it
    // fails or reports another socket's queue, which only mis-sizes a read.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
    (rc == 0).then(|| u64::try_from(queued).unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
fn socket_send_queue(_fd: std::os::fd::RawFd) -> Option<u64> {
    None
}

/// A client connection's stream that counts the bytes written to it.
pub struct Counted<T> {
    inner: T,
    progress: Arc<WriteProgress>,
}

impl<T> Counted<T> {
    pub fn new(inner: T, progress: Arc<WriteProgress>) -> Counted<T> {
        Counted { inner, progress }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.progress.advance(n);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result {
            self.progress.advance(n);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that waits, before each frame, until at most [`MAX_UNSENT_BYTES`] of the
/// frames it already yielded are not yet written to the client's socket. Without a connection
/// to watch (`progress` absent) it is the inner body.
pub struct Paced<B> {
    inner: B,
    progress: Option<Arc<WriteProgress>>,
    /// Sizes the upstream connection's reads before each frame.
    reads: Option<ReadPacer>,
    /// The connection's count when the body started.
    start: u64,
    /// The connection's count when the body started, plus the body bytes yielded since: what
    /// the count reaches once all of them are written (the response head only adds to the
    /// count, so this errs on the side of letting frames through).
    target: u64,
}

impl<B> Paced<B> {
    pub fn new(inner: B, progress: Option<Arc<WriteProgress>>) -> Paced<B> {
        let target = progress.as_ref().map_or(0, |p| p.written());
        Paced {
            inner,
            progress,
            reads: None,
            start: target,
            target,
        }
    }

    /// Also sizes the reads of the upstream connection the body comes from (`read_size`).
    pub fn sizing(mut self, reads: Option<ReadLimit>) -> Paced<B> {
        self.reads = reads.map(|r| ReadPacer::new(r, std::time::Instant::now()));
        self
    }

    fn unsent(&self, progress: &WriteProgress) -> u64 {
        self.target.saturating_sub(progress.written())
    }
}

impl<B> Body for Paced<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(progress) = self.progress.clone() {
            if self.unsent(&progress) >= MAX_UNSENT_BYTES {
                progress.waiting.register(cx.waker());
                // Written meanwhile: no wake-up would come for it.
                if self.unsent(&progress) >= MAX_UNSENT_BYTES {
                    return Poll::Pending;
                }
            }
            let start = self.start;
            if let Some(reads) = &mut self.reads {
                let written = progress.written().saturating_sub(start);
                // No socket to ask: what was written counts as acknowledged.
                let queued = progress.kernel_queue().unwrap_or(0);
                reads.update(written.saturating_sub(queued), std::time::Instant::now());
            }
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.target += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::future::Future;

    fn frames(n: usize, size: usize) -> impl Body<Data = Bytes, Error = std::io::Error> + Unpin {
        let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = (0..n)
            .map(|_| Ok(Frame::data(Bytes::from(vec![7u8; size]))))
            .collect();
        StreamBody::new(futures::stream::iter(chunks))
    }

    #[tokio::test]
    async fn frames_wait_for_the_socket_to_take_what_came_before() {
        const MAX: usize = MAX_UNSENT_BYTES as usize;
        let progress = Arc::new(WriteProgress::default());
        progress.advance(500); // an earlier response on the same connection
        let mut body = Paced::new(frames(4, MAX * 5 / 8), Some(progress.clone()));
        // 5/8 of the allowance unsent: the second frame comes at once.
        assert!(body.frame().await.is_some());
        assert!(body.frame().await.is_some());
        // 10/8 unsent: the third waits until the socket took enough.
        let mut third = Box::pin(async move {
            let f = body.frame().await;
            (f, body)
        });
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(third.as_mut().poll(&mut cx).is_pending());
        progress.advance(MAX / 8);
        assert!(
            third.as_mut().poll(&mut cx).is_pending(),
            "9/8 still unsent"
        );
        progress.advance(MAX / 4);
        let (frame, mut body) = match third.as_mut().poll(&mut cx) {
            Poll::Ready(r) => r,
            Poll::Pending => panic!("7/8 unsent: the next frame must come"),
        };
        assert!(frame.is_some());
        progress.advance(2 * MAX);
        assert!(body.frame().await.is_some());
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_write_wakes_the_waiting_body() {
        let progress = Arc::new(WriteProgress::default());
        let size = MAX_UNSENT_BYTES as usize;
        let mut body = Paced::new(frames(3, size), Some(progress.clone()));
        assert!(body.frame().await.is_some());
        let writer = tokio::spawn(async move {
            tokio::task::yield_now().await;
            progress.advance(size);
        });
        // Pending until the spawned write: only its wake-up can end this await.
        assert!(body.frame().await.is_some());
        writer.await.expect("writer");
    }

    #[tokio::test]
    async fn without_a_connection_nothing_waits() {
        let mut body = Paced::new(frames(3, 64 * 1024), None);
        let mut n = 0;
        while body.frame().await.is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[tokio::test]
    async fn counted_streams_count_what_the_socket_took() {
        use tokio::io::AsyncWriteExt;
        let progress = Arc::new(WriteProgress::default());
        let (a, mut b) = tokio::io::duplex(1024);
        let mut counted = Counted::new(a, progress.clone());
        counted.write_all(&[1u8; 700]).await.expect("write");
        let slices = [IoSlice::new(&[2u8; 100]), IoSlice::new(&[3u8; 100])];
        let n = counted.write_vectored(&slices).await.expect("write");
        assert_eq!(progress.written(), 700 + n as u64);
        let mut got = vec![0u8; 700 + n];
        tokio::io::AsyncReadExt::read_exact(&mut b, &mut got)
            .await
            .expect("read");
    }

    /// A client on a real loopback socket, so that the kernel's send queue is real.
    async fn socket_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (server, client)
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_keeps_upstream_reads_small() {
        use std::os::fd::AsRawFd;
        let (server, _client) = socket_pair().await;
        let progress = Arc::new(WriteProgress::for_socket(server.as_raw_fd()));
        let limit = ReadLimit::new(512 * 1024);
        let mut body =
            Paced::new(frames(4, 1024), Some(progress.clone())).sizing(Some(limit.clone()));
        // Fill the socket until the kernel takes no more: all of it waits for the client.
        let mut counted = Counted::new(server, progress.clone());
        let chunk = vec![1u8; 64 * 1024];
        loop {
            let wrote = std::future::poll_fn(|cx| {
                Poll::Ready(match Pin::new(&mut counted).poll_write(cx, &chunk) {
                    Poll::Ready(r) => Some(r.expect("write")),
                    Poll::Pending => None,
                })
            })
            .await;
            if wrote.is_none() {
                break;
            }
        }
        assert!(progress.written() > 256 * 1024, "{}", progress.written());
        assert!(progress.kernel_queue().unwrap_or(0) > 0);
        body.frame().await.expect("frame").expect("ok");
        assert_eq!(limit.get(), crate::read_size::MIN_READ_BYTES);
    }

    #[tokio::test]
    async fn a_client_that_keeps_up_gets_the_largest_reads() {
        use std::os::fd::AsRawFd;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (server, mut client) = socket_pair().await;
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 1 << 20];
            while client.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
        });
        let progress = Arc::new(WriteProgress::for_socket(server.as_raw_fd()));
        let limit = ReadLimit::new(512 * 1024);
        let mut body =
            Paced::new(frames(1 << 20, 1024), Some(progress.clone())).sizing(Some(limit.clone()));
        let mut counted = Counted::new(server, progress.clone());
        let chunk = vec![1u8; 256 * 1024];
        let start = std::time::Instant::now();
        // Over several measuring windows, and at least 16 MiB.
        while start.elapsed() < 4 * crate::read_size::WINDOW || progress.written() < 16 << 20 {
            counted.write_all(&chunk).await.expect("write");
            body.frame().await.expect("frame").expect("ok");
        }
        assert_eq!(limit.get(), 512 * 1024);
        drop(counted);
        reader.await.expect("reader");
    }
}
