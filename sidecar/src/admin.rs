//! The admin API: `PUT`/`GET /v1/config` (bearer token, or a client certificate from
//! `--admin-client-ca`), `/ready`, `/live`, `/metrics`.

use std::path::PathBuf;
use std::sync::Arc;

use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use swiftfed_crds::routing::LoadError;
use swiftfed_crds::RoutingTable;

use crate::body::{self, ProxyBody};
use crate::server::Peer;
use crate::state::{ApplyError, State};

/// A routing table larger than this is refused (10 000 routes take well under 4 MiB).
const MAX_CONFIG_BYTES: usize = 16 << 20;

pub struct Admin {
    pub state: Arc<State>,
    /// Read on every authenticated request, so a rotated Secret takes effect without restart.
    pub token_file: Option<PathBuf>,
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(body::full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn text(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(body::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Admin {
    /// A client certificate verified against `--admin-client-ca` (the TLS handshake refuses any
    /// other), or the bearer token.
    fn authorize(
        &self,
        req: &Request<Incoming>,
        peer: &Peer,
    ) -> Result<(), Box<Response<ProxyBody>>> {
        if peer.client_cert {
            return Ok(());
        }
        let Some(path) = &self.token_file else {
            return Err(Box::new(json_response(
                StatusCode::FORBIDDEN,
                json!({"error": "no admin token configured (--admin-token-file) and no client certificate presented"}),
            )));
        };
        let expected = std::fs::read_to_string(path).map_err(|e| {
            tracing::error!(file = %path.display(), error = %e, "cannot read admin token file");
            Box::new(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "admin token file unreadable"}),
            ))
        })?;
        let expected = expected.trim();
        let offered = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match offered {
            Some(t)
                if !expected.is_empty() && constant_time_eq(t.as_bytes(), expected.as_bytes()) =>
            {
                Ok(())
            }
            _ => {
                let mut r = json_response(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "missing or wrong bearer token"}),
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                Err(Box::new(r))
            }
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, peer: Peer) -> Response<ProxyBody> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/live") => text(StatusCode::OK, "live\n"),
            (&Method::GET, "/ready") => {
                if self.state.is_ready() {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: routing table not loaded yet\n",
                    )
                }
            }
            (&Method::GET, "/metrics") => {
                let mut r = text(StatusCode::OK, self.state.metrics.encode());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                r
            }
            (&Method::GET, "/v1/config") => {
                if let Err(r) = self.authorize(&req, &peer) {
                    return *r;
                }
                let active = self.state.active();
                let table = active.table.as_ref().map(RoutingTable::redacted);
                json_response(
                    StatusCode::OK,
                    json!({"revision": active.revision(), "table": table, "routesInUse": active.routes.len()}),
                )
            }
            (&Method::PUT, "/v1/config") => {
                if let Err(r) = self.authorize(&req, &peer) {
                    return *r;
                }
                self.put_config(req).await
            }
            (_, "/v1/config") => text(StatusCode::METHOD_NOT_ALLOWED, "use GET or PUT\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    async fn put_config(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let bytes = match Limited::new(req.into_body(), MAX_CONFIG_BYTES)
            .collect()
            .await
        {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                return json_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"error": format!("cannot read body (limit {MAX_CONFIG_BYTES} bytes): {e}")}),
                )
            }
        };
        let table = match RoutingTable::from_slice(&bytes) {
            Ok(t) => t,
            Err(LoadError::Syntax(e)) => {
                self.state.metrics.reload_failures.inc();
                return json_response(StatusCode::BAD_REQUEST, json!({"error": e, "errors": []}));
            }
            Err(LoadError::Invalid(errors)) => {
                self.state.metrics.reload_failures.inc();
                tracing::warn!(source = "admin", %errors, "routing table refused");
                return json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"error": "invalid routing table", "errors": errors}),
                );
            }
        };
        match self.state.apply(table) {
            Ok(revision) => {
                tracing::info!(source = "admin", revision, "routing table applied");
                json_response(StatusCode::OK, json!({"revision": revision}))
            }
            Err(ApplyError::Stale { current, offered }) => json_response(
                StatusCode::CONFLICT,
                json!({"error": format!("revision {offered} is not newer than {current}"), "currentRevision": current}),
            ),
            Err(e) => {
                self.state.metrics.reload_failures.inc();
                tracing::warn!(source = "admin", error = %e, "routing table refused");
                let errors = match &e {
                    ApplyError::Invalid(errors) => json!(errors),
                    ApplyError::Unsupported { field, reason } => {
                        json!([{"field": field, "reason": reason}])
                    }
                    ApplyError::Stale { .. } => json!([]),
                };
                json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"error": e.to_string(), "errors": errors}),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }
}
