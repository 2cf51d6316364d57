//! The cluster side of an extraction: each entry's container made where it lives and the
//! entry streamed into a PUT there, with Swift's limits and per-entry errors.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use percent_encoding::percent_encode;
use tokio::sync::mpsc;

use crate::body::{self, BodySlot, BoxError};
use crate::bulk::PATH;
use crate::listing;
use crate::segments::ChannelBody;
use crate::state::{Active, State};
use crate::subrequest;
use crate::swift_path::encode_segment;
use crate::upstream::{Outgoing, Upstream};

use super::archive::Event;
use super::{status_line, Limits, Outcome, Place};

pub(super) struct Extraction {
    pub(super) state: Arc<State>,
    pub(super) active: Arc<Active>,
    pub(super) account: String,
    pub(super) client_headers: HeaderMap,
    pub(super) limits: Limits,
    pub(super) forbidden_remote: bool,
}

impl Extraction {
    /// Swift's `handle_extract_iter`, entry by entry.
    pub(super) async fn consume(
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
pub(super) async fn drain(
    events: &mut mpsc::Receiver<Event>,
    size: u64,
) -> Result<(), Option<Event>> {
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
pub(super) fn ended(mut out: Outcome, end: Option<Event>, client_failed: &AtomicBool) -> Outcome {
    match end {
        Some(Event::Failed(reason)) if !client_failed.load(Ordering::Acquire) => {
            out.status = "400 Bad Request".into();
            out.body = format!("Invalid Tar File: {reason}");
        }
        _ => out.status = "500 Internal Server Error".into(),
    }
    out
}
