//! Requests the sidecar makes on its own behalf (listing pages, container HEADs) whose answers
//! it reads whole: small bodies only, bounded.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::body::BodySlot;
use crate::upstream::{Outgoing, Upstream, UpstreamError};

/// Larger than any listing page Swift sends (10 000 names of at most 256 bytes, with counts).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SubrequestError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("{0}: answer body unreadable or too large: {1}")]
    Body(String, String),
    #[error("{0}: no answer body within {1:?}")]
    Timeout(String, std::time::Duration),
}

impl SubrequestError {
    pub fn status(&self) -> StatusCode {
        match self {
            SubrequestError::Upstream(e) => e.status(),
            SubrequestError::Body(..) => StatusCode::BAD_GATEWAY,
            SubrequestError::Timeout(..) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends a bodiless request and reads the whole answer (within the upstream's idle timeout).
pub async fn fetch(
    upstream: &Upstream,
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    endpoint_host: bool,
) -> Result<Answer, SubrequestError> {
    let out = Outgoing {
        method,
        path_and_query,
        headers,
        endpoint_host,
        expect_continue: false,
    };
    exchange(upstream, &out, &BodySlot::new(None)).await
}

/// Sends a request with a small body of the sidecar's own and reads the whole answer.
pub async fn fetch_with_body(
    upstream: &Upstream,
    mut out: Outgoing,
    body: Bytes,
) -> Result<Answer, SubrequestError> {
    out.headers
        .insert(http::header::CONTENT_LENGTH, body.len().into());
    exchange(upstream, &out, &BodySlot::from_bytes(body)).await
}

async fn exchange(
    upstream: &Upstream,
    out: &Outgoing,
    body: &BodySlot,
) -> Result<Answer, SubrequestError> {
    let (response, _) = upstream.send(out, body).await?;
    let (parts, incoming) = response.into_parts();
    let idle = upstream.timeouts.idle;
    let collected = tokio::time::timeout(idle, Limited::new(incoming, MAX_BODY).collect())
        .await
        .map_err(|_| SubrequestError::Timeout(upstream.name.clone(), idle))?
        .map_err(|e| SubrequestError::Body(upstream.name.clone(), e.to_string()))?;
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
    })
}
