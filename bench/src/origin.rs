//! The origin every candidate forwards to: a small hyper 1.x server, fast enough that it is
//! never what limits a proxy. The object size is the last path segment (`/v1/AUTH_bench/c/4096`).
//!
//! - `GET` answers `200` with that many bytes of [`pattern`], sent as 1 MiB `Bytes` slices of
//!   one shared buffer (no copy, no allocation per frame), with `Content-Length`.
//! - `HEAD` answers the same head without a body.
//! - `PUT` reads the body (sized or chunked), discards it, and answers `201` with
//!   `X-Bytes-Received: N`, which the load client checks against what it sent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Size of the generated buffer the origin serves from (and the client checks against).
pub const PATTERN_LEN: usize = 1 << 20;

/// Deterministic bytes (splitmix64): `pattern()[i % PATTERN_LEN]` is byte `i` of every object.
pub fn pattern() -> Vec<u8> {
    let mut state: u64 = 0x5eed_5eed_5eed_5eed;
    let mut out = Vec::with_capacity(PATTERN_LEN);
    while out.len() < PATTERN_LEN {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// `size` bytes of the pattern as frames of at most one pattern length.
struct Generated {
    data: Bytes,
    left: u64,
    offset: usize,
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = (self.data.len() - self.offset).min(self.left as usize);
        let frame = self.data.slice(self.offset..self.offset + n);
        self.left -= n as u64;
        self.offset = (self.offset + n) % self.data.len();
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

type OriginBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

fn size_of(path: &str) -> Option<u64> {
    path.rsplit('/').next()?.parse().ok()
}

fn plain(status: StatusCode, text: &'static str) -> Response<OriginBody> {
    let mut r = Response::new(
        http_body_util::Full::new(Bytes::from_static(text.as_bytes())).boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

async fn handle(data: Bytes, req: Request<Incoming>) -> Response<OriginBody> {
    let size = size_of(req.uri().path());
    match (req.method().clone(), size) {
        (Method::GET | Method::HEAD, Some(size)) => {
            let body = if req.method() == Method::HEAD {
                http_body_util::Empty::new().boxed_unsync()
            } else {
                Generated {
                    data,
                    left: size,
                    offset: 0,
                }
                .boxed_unsync()
            };
            let mut r = Response::new(body);
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, size.to_string().parse().unwrap());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        (Method::PUT, _) => {
            let mut body = req.into_body();
            let mut received: u64 = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            received += d.len() as u64;
                        }
                    }
                    Err(_) => return plain(StatusCode::BAD_REQUEST, "body broken\n"),
                }
            }
            let mut r = Response::new(http_body_util::Empty::new().boxed_unsync());
            *r.status_mut() = StatusCode::CREATED;
            r.headers_mut()
                .insert("x-bytes-received", received.to_string().parse().unwrap());
            r
        }
        (Method::GET | Method::HEAD, None) => plain(StatusCode::NOT_FOUND, "no size\n"),
        _ => plain(StatusCode::METHOD_NOT_ALLOWED, "GET, HEAD or PUT\n"),
    }
}

/// Serves until the process is stopped.
pub async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let data = Bytes::from(pattern());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let data = data.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let data = data.clone();
                async move { Ok::<_, Infallible>(handle(data, req).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_come_from_the_last_segment() {
        assert_eq!(super::size_of("/v1/AUTH_bench/c/4096"), Some(4096));
        assert_eq!(super::size_of("/v1/AUTH_bench/c/x"), None);
    }

    #[test]
    fn pattern_is_stable() {
        let p = super::pattern();
        assert_eq!(p.len(), super::PATTERN_LEN);
        assert_eq!(p, super::pattern());
    }
}
