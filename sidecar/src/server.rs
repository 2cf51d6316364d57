//! HTTP/1.1 listeners with limits, optional TLS, and graceful drain: on shutdown a listener
//! stops accepting, lets requests in flight finish (bodies included), and closes idle keep-alive
//! connections.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::ProxyBody;
use crate::pacing::{Counted, WriteProgress};
use crate::tls_listener::ListenerTls;
use crate::upstream::MAX_HEADERS;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_read_timeout: Duration,
    /// Read buffer, which bounds the request head (request line and headers) and the pieces a
    /// request body is read in. (What a response may queue is bounded by `pacing` instead.)
    pub max_head_bytes: usize,
}

/// Who is on the other end of a connection.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    /// A client certificate was presented and verified against the listener's client CA (the
    /// handshake fails for any other certificate).
    pub client_cert: bool,
}

/// Serves `handler` on `listener` (behind TLS when `tls` is set) until `shutdown` turns true,
/// then drains for at most `drain`.
pub async fn serve<H, F>(
    name: &'static str,
    listener: TcpListener,
    tls: Option<Arc<ListenerTls>>,
    limits: Limits,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) where
    H: Fn(Request<Incoming>, Peer) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let handler = Arc::new(handler);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off rather than spin.
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                // Counts what the client's socket took, for response pacing (see `pacing`);
                // each request carries it in its extensions.
                let progress = Arc::new(WriteProgress::for_socket(
                    std::os::fd::AsRawFd::as_raw_fd(&stream),
                ));
                let service = {
                    let progress = progress.clone();
                    move |peer: Peer| {
                        service_fn(move |mut req: Request<Incoming>| {
                            req.extensions_mut().insert(progress.clone());
                            let handler = handler.clone();
                            async move { Ok::<_, Infallible>(handler(req, peer).await) }
                        })
                    }
                };
                let mut builder = http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_read_timeout)
                    .max_buf_size(limits.max_head_bytes)
                    .max_headers(MAX_HEADERS)
                    .preserve_header_case(true)
                    .keep_alive(true);
                // Taken now, so a connection still in its handshake is waited for on drain.
                let watcher = graceful.watcher();
                let acceptor = tls.as_ref().map(|t| t.acceptor());
                tokio::spawn(async move {
                    let result = match acceptor {
                        None => {
                            let peer = Peer { addr, client_cert: false };
                            let stream = Counted::new(stream, progress);
                            let conn = builder.serve_connection(TokioIo::new(stream), service(peer));
                            watcher.watch(conn).await
                        }
                        Some(acceptor) => {
                            // The handshake counts against the header read timeout: a client
                            // that opens a connection and says nothing is dropped either way.
                            let stream = match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    if name == "admin" {
                                        tracing::info!(listener = name, peer = %addr, error = %e, "TLS handshake refused");
                                    } else {
                                        tracing::debug!(listener = name, peer = %addr, error = %e, "TLS handshake failed");
                                    }
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(listener = name, peer = %addr, "TLS handshake timed out");
                                    return;
                                }
                            };
                            let client_cert = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .is_some_and(|c| !c.is_empty());
                            let peer = Peer { addr, client_cert };
                            let stream = Counted::new(stream, progress);
                            let conn = builder.serve_connection(TokioIo::new(stream), service(peer));
                            watcher.watch(conn).await
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(listener = name, peer = %addr, error = %e, "connection ended with an error");
                    }
                });
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(listener = name, open, "draining connections");
    match tokio::time::timeout(drain, graceful.shutdown()).await {
        Ok(()) => tracing::info!(listener = name, "drained"),
        Err(_) => tracing::warn!(listener = name, ?drain, "drain timed out; closing"),
    }
}
