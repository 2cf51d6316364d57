//! Pushes a routing table to sidecar admin APIs (`PUT /v1/config`), concurrently with a bound,
//! retrying unreachable sidecars with exponential backoff within one push round.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// One sidecar to push to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `namespace/pod`, for status and events.
    pub pod: String,
    /// `ip:port` of the sidecar's admin API.
    pub admin: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The sidecar runs this revision.
    Ack(u64),
    /// The sidecar refused the table (its reason, as it gave it).
    Nack(String),
    /// The sidecar already runs a newer revision than the one pushed.
    Newer(u64),
    /// No answer after the retries (connection refused, timeout, 5xx).
    Unreachable(String),
}

pub struct Pusher {
    client: Client<HttpConnector, Full<Bytes>>,
    pub concurrency: usize,
    pub timeout: Duration,
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl Default for Pusher {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_nodelay(true);
        Pusher {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            concurrency: 64,
            timeout: Duration::from_secs(5),
            attempts: 3,
            first_backoff: Duration::from_millis(200),
        }
    }
}

impl Pusher {
    /// Pushes `table` (JSON) to every target; results come back in the targets' order.
    pub async fn push_all(
        &self,
        targets: &[Target],
        table: Bytes,
        token: &str,
    ) -> Vec<(Target, Outcome)> {
        let mut results: Vec<(usize, Target, Outcome)> =
            futures::stream::iter(targets.iter().cloned().enumerate())
                .map(|(i, target)| {
                    let table = table.clone();
                    async move {
                        let outcome = self.push_one(&target, table, token).await;
                        (i, target, outcome)
                    }
                })
                .buffer_unordered(self.concurrency.max(1))
                .collect()
                .await;
        results.sort_by_key(|(i, _, _)| *i);
        results.into_iter().map(|(_, t, o)| (t, o)).collect()
    }

    async fn push_one(&self, target: &Target, table: Bytes, token: &str) -> Outcome {
        let mut backoff = self.first_backoff;
        let mut last = String::new();
        for attempt in 0..self.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            match self.try_push(target, table.clone(), token).await {
                Ok(outcome) => return outcome,
                Err(e) => last = e,
            }
        }
        Outcome::Unreachable(last)
    }

    /// `Err` for what is worth retrying.
    async fn try_push(
        &self,
        target: &Target,
        table: Bytes,
        token: &str,
    ) -> Result<Outcome, String> {
        let request = Request::builder()
            .method(Method::PUT)
            .uri(format!("http://{}/v1/config", target.admin))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(table))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
            .map_err(|e| format!("{e}"))?;
        let status = response.status();
        let body = tokio::time::timeout(self.timeout, response.into_body().collect())
            .await
            .map_err(|_| "answer body timed out".to_string())?
            .map_err(|e| e.to_string())?
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        match status {
            StatusCode::OK => json["revision"]
                .as_u64()
                .map(Outcome::Ack)
                .ok_or_else(|| "answer without revision".to_string()),
            StatusCode::CONFLICT => Ok(Outcome::Newer(
                json["currentRevision"].as_u64().unwrap_or_default(),
            )),
            s if s.is_server_error() => Err(format!("sidecar answered {s}")),
            s => {
                let mut reason = json["error"].as_str().unwrap_or("").to_string();
                if let Some(errors) = json["errors"].as_array() {
                    for e in errors {
                        reason.push_str(&format!(
                            "; {}: {}",
                            e["field"].as_str().unwrap_or("?"),
                            e["reason"].as_str().unwrap_or("?")
                        ));
                    }
                }
                if reason.is_empty() {
                    reason = format!("sidecar answered {s}");
                }
                Ok(Outcome::Nack(format!("{s}: {reason}")))
            }
        }
    }
}
