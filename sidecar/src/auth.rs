//! Auth toward target clusters.
//!
//! `Passthrough`: the client's token is forwarded unchanged.
//!
//! `Credentials`: the sidecar's own token for the target (tempauth, or Keystone v3 through
//! `keystone`) replaces the client's, and
//! only after the local cluster has said this client may read (GET/HEAD) or write (any other
//! method) in this account. The local check is a request that Swift authorizes and then
//! necessarily answers 404 without touching anything: it names a container longer than Swift's
//! 256-byte limit, which therefore cannot exist. Swift runs `swift.authorize` before it looks for
//! the container, so a 404 means "authorized", and 401/403 is the client's own denial, which the
//! client gets back unchanged. Anything else (a 5xx, a timeout) denies with 503. What the check
//! grants is account-level: account owners (tempauth `.admin`, keystoneauth operator roles on
//! the account's project), reseller admins, tempauth account ACLs (`read-only` for reads;
//! `read-write`/`admin` for writes), keystoneauth `project_reader_roles` and
//! `system_reader_roles` (reads only).
//!
//! Container ACLs live on the routed container, in the other cluster; the sidecar mirrors them
//! (`acl_shadow`) onto a local container of the same name, which clients never reach (the route
//! sends its requests to the target), so the local Swift evaluates them itself:
//! `check_container` asks it with a container-level request on that shadow when the
//! account-level check refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use swiftfed_crds::routing::Secret;
use tokio::time::Instant;

use crate::body::{self, BodySlot};
use crate::swift_path::encode_segment;
use crate::upstream::{Outgoing, Upstream};

/// Metadata header for the owner check: a name of over 1 000 bytes, which Swift refuses.
fn owner_probe_header() -> String {
    format!("x-account-meta-swiftfed-owner-probe-{}", "x".repeat(1000))
}

/// Headers Swift shows and accepts only for the account's owner (`swift_owner_headers` in
/// Swift's proxy): a client that is not an owner locally must neither set nor see them through
/// the sidecar's owner-level credentials.
pub const OWNER_HEADERS: [&str; 9] = [
    "x-container-read",
    "x-container-write",
    "x-container-sync-key",
    "x-container-sync-to",
    "x-account-meta-temp-url-key",
    "x-account-meta-temp-url-key-2",
    "x-container-meta-temp-url-key",
    "x-container-meta-temp-url-key-2",
    "x-account-access-control",
];

/// `X-Remove-<name>` is Swift's way to clear `X-<name>`: it counts as the header itself.
fn is_owner_header(name: &str) -> bool {
    let plain = match name.strip_prefix("x-remove-") {
        Some(rest) => format!("x-{rest}"),
        None => name.to_string(),
    };
    OWNER_HEADERS.contains(&plain.as_str())
}

pub fn has_owner_headers(headers: &http::HeaderMap) -> bool {
    headers.keys().any(|k| is_owner_header(k.as_str()))
}

pub fn strip_owner_headers(headers: &mut http::HeaderMap) {
    let owned: Vec<http::HeaderName> = headers
        .keys()
        .filter(|k| is_owner_header(k.as_str()))
        .cloned()
        .collect();
    for name in owned {
        headers.remove(name);
    }
}

/// Container name for the local check: far over Swift's maximum container name length (256 by
/// default; raised limits stay well below this), so it can never exist.
fn probe_container() -> String {
    format!("swiftfed-authz-probe-{}", "x".repeat(1100))
}

/// What a container-level check asks of the container's ACLs (Swift: `X-Container-Read` for
/// the first two, `X-Container-Write` for the last; a referrer grants listings only with
/// `.rlistings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerAccess {
    /// `GET`/`HEAD` of the container itself.
    List,
    /// `GET`/`HEAD` of an object in it.
    ReadObject,
    /// `PUT`/`POST`/`DELETE` of an object in it.
    WriteObject,
}

impl ContainerAccess {
    /// The container-level access a request needs, or `None` when Swift grants no container ACL
    /// user that request (container `PUT`/`POST`/`DELETE` are the owner's).
    pub fn of(method: &Method, has_object: bool) -> Option<ContainerAccess> {
        match (Access::of(method), has_object) {
            (Access::Read, false) => Some(ContainerAccess::List),
            (Access::Read, true) => Some(ContainerAccess::ReadObject),
            (_, true) => Some(ContainerAccess::WriteObject),
            _ => None,
        }
    }
}

/// An object name over Swift's 1 024-byte limit: it can never exist, and a `PUT` of it is
/// refused (400) after authorization and before anything is written.
fn probe_object() -> String {
    format!("swiftfed-authz-probe-{}", "x".repeat(1100))
}

/// What a cached grant was for. A referrer-based grant depends on the `Referer` header, which
/// is therefore part of a container-level key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Grant {
    Account(String, Access),
    Container {
        account: String,
        container: String,
        access: ContainerAccess,
        referer: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
    /// Swift's `swift_owner`: may see and set owner-only headers (ACLs, temp URL keys, sync).
    Owner,
}

impl Access {
    pub fn of(method: &Method) -> Access {
        match *method {
            Method::GET | Method::HEAD => Access::Read,
            _ => Access::Write,
        }
    }
}

/// The (account, access) pairs the local cluster must authorize before a request is forwarded
/// with the sidecar's own credentials: the request's account by method, plus every account a
/// header makes it read from or write to. Names that do not decode are left to Swift to refuse.
pub fn required_checks(
    method: &Method,
    headers: &http::HeaderMap,
    account: &str,
) -> Vec<(String, Access)> {
    let named = |header: &str| {
        headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::swift_path::decode)
    };
    let mut checks = vec![(account.to_string(), Access::of(method))];
    if method.as_str() == "COPY" {
        // COPY reads the request's object and writes the destination.
        checks[0].1 = Access::Read;
        let dest = named("destination-account").unwrap_or_else(|| account.to_string());
        checks.push((dest, Access::Write));
    }
    if let Some(target) = named("x-symlink-target-account") {
        // A symlink into another account is followed later with the sidecar's rights: whoever
        // creates it must be able to read there.
        checks.push((target, Access::Read));
    }
    if headers.contains_key("x-copy-from") {
        let source = named("x-copy-from-account").unwrap_or_else(|| account.to_string());
        checks.push((source, Access::Read));
    }
    let mut unique = Vec::new();
    for check in checks {
        if !unique.contains(&check) {
            unique.push(check);
        }
    }
    unique
}

/// Outcome of the local authorization check.
#[derive(Debug)]
pub enum Verdict {
    Allowed,
    /// The local cluster's own answer (401/403), to pass back to the client.
    Denied {
        status: StatusCode,
        headers: http::HeaderMap,
        body: bytes::Bytes,
    },
    Unavailable(String),
}

/// Remembers successful checks for a short time, keyed by the client's token (kept in memory
/// only, like any proxy that forwards it).
pub struct LocalAuthorizer {
    ttl: Duration,
    cache: Mutex<HashMap<(String, Grant), Instant>>,
}

const CACHE_MAX: usize = 10_000;

impl LocalAuthorizer {
    pub fn new(ttl: Duration) -> LocalAuthorizer {
        LocalAuthorizer {
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub async fn check(
        &self,
        local: &Upstream,
        client_headers: &http::HeaderMap,
        account: &str,
        access: Access,
    ) -> Verdict {
        let account_path = format!("/v1/{}", encode_segment(account));
        let mut headers = http::HeaderMap::new();
        let (method, path) = match access {
            Access::Read => (
                Method::HEAD,
                format!("{account_path}/{}", probe_container()),
            ),
            Access::Write => (
                Method::DELETE,
                format!("{account_path}/{}/swiftfed-authz-probe", probe_container()),
            ),
            // Account POST is authorized for owners only; the metadata name is far over
            // Swift's 128-byte limit, so an owner's POST is refused with 400 before any write.
            Access::Owner => {
                if let Ok(name) = http::HeaderName::from_bytes(owner_probe_header().as_bytes()) {
                    headers.insert(name, HeaderValue::from_static("1"));
                }
                (Method::POST, account_path)
            }
        };
        let authorized = match access {
            Access::Read | Access::Write => StatusCode::NOT_FOUND,
            Access::Owner => StatusCode::BAD_REQUEST,
        };
        let grant = Grant::Account(account.to_string(), access);
        self.probe(local, client_headers, grant, method, path, headers, |s| {
            s == authorized
        })
        .await
    }

    /// Whether the container's ACLs, as mirrored on the local shadow container, grant the
    /// client `access`. Swift authorizes these requests with the container's ACL before doing
    /// anything else: `HEAD` of the container (listing rule, `.rlistings` included: 2xx),
    /// `HEAD` of an object that cannot exist (read ACL: 404), `PUT` of an object whose name is
    /// too long (write ACL: 400, nothing written). Without a shadow the ACL is empty: 401/403.
    pub async fn check_container(
        &self,
        local: &Upstream,
        client_headers: &http::HeaderMap,
        account: &str,
        container: &str,
        access: ContainerAccess,
    ) -> Verdict {
        let container_path = format!(
            "/v1/{}/{}",
            encode_segment(account),
            encode_segment(container)
        );
        let mut headers = http::HeaderMap::new();
        if let Some(referer) = client_headers.get(http::header::REFERER) {
            headers.insert(http::header::REFERER, referer.clone());
        }
        let (method, path, authorized): (_, _, fn(StatusCode) -> bool) = match access {
            ContainerAccess::List => (Method::HEAD, container_path, |s| s.is_success()),
            ContainerAccess::ReadObject => (
                Method::HEAD,
                format!("{container_path}/{}", probe_object()),
                |s| s == StatusCode::NOT_FOUND,
            ),
            ContainerAccess::WriteObject => {
                headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                (
                    Method::PUT,
                    format!("{container_path}/{}", probe_object()),
                    |s| s == StatusCode::BAD_REQUEST,
                )
            }
        };
        let grant = Grant::Container {
            account: account.to_string(),
            container: container.to_string(),
            access,
            referer: client_headers
                .get(http::header::REFERER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        self.probe(
            local,
            client_headers,
            grant,
            method,
            path,
            headers,
            authorized,
        )
        .await
    }

    /// Sends one probe with the client's credentials (cached grants are not asked again).
    #[allow(clippy::too_many_arguments)]
    async fn probe(
        &self,
        local: &Upstream,
        client_headers: &http::HeaderMap,
        grant: Grant,
        method: Method,
        path: String,
        mut headers: http::HeaderMap,
        authorized: impl Fn(StatusCode) -> bool,
    ) -> Verdict {
        let key = client_token(client_headers).map(|t| (t, grant));
        if let Some(key) = &key {
            if let Ok(cache) = self.cache.lock() {
                if cache.get(key).is_some_and(|until| *until > Instant::now()) {
                    return Verdict::Allowed;
                }
            }
        }
        // X-Service-Token: keystoneauth with `service_roles` grants only with it.
        for name in [
            "x-auth-token",
            "x-storage-token",
            "x-service-token",
            "host",
            "x-trans-id-extra",
        ] {
            if let Some(v) = client_headers.get(name) {
                headers.insert(name, v.clone());
            }
        }
        let out = Outgoing {
            method,
            path_and_query: path,
            headers,
            endpoint_host: false,
            expect_continue: false,
        };
        let result = local.send(&out, &BodySlot::new(None)).await;
        let response = match result {
            Ok((r, _)) => r,
            Err(e) => return Verdict::Unavailable(format!("local authorization check: {e}")),
        };
        let status = response.status();
        match status {
            _ if authorized(status) => {
                if let Some(key) = key {
                    if let Ok(mut cache) = self.cache.lock() {
                        if cache.len() >= CACHE_MAX {
                            let now = Instant::now();
                            cache.retain(|_, until| *until > now);
                            if cache.len() >= CACHE_MAX {
                                cache.clear();
                            }
                        }
                        cache.insert(key, Instant::now() + self.ttl);
                    }
                }
                Verdict::Allowed
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let (parts, incoming) = response.into_parts();
                let body = tokio::time::timeout(Duration::from_secs(5), incoming.collect())
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                Verdict::Denied {
                    status,
                    headers: parts.headers,
                    body,
                }
            }
            other => Verdict::Unavailable(format!(
                "local authorization check answered {other}, expected a grant, 401 or 403"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn every_account_a_request_touches_is_checked() {
        let get = required_checks(&Method::GET, &headers(&[]), "A");
        assert_eq!(get, vec![("A".to_string(), Access::Read)]);
        let copy = required_checks(
            &Method::from_bytes(b"COPY").expect("method"),
            &headers(&[("destination", "c/o"), ("destination-account", "B")]),
            "A",
        );
        assert_eq!(
            copy,
            vec![
                ("A".to_string(), Access::Read),
                ("B".to_string(), Access::Write)
            ]
        );
        let put = required_checks(
            &Method::PUT,
            &headers(&[("x-copy-from", "c/o"), ("x-copy-from-account", "C%20D")]),
            "A",
        );
        assert_eq!(
            put,
            vec![
                ("A".to_string(), Access::Write),
                ("C D".to_string(), Access::Read)
            ]
        );
        let same = required_checks(&Method::PUT, &headers(&[("x-copy-from", "c/o")]), "A");
        assert_eq!(
            same,
            vec![
                ("A".to_string(), Access::Write),
                ("A".to_string(), Access::Read)
            ]
        );
    }
}

pub fn client_token(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("x-auth-token")
        .or_else(|| headers.get("x-storage-token"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// How the sidecar logs in on a target cluster.
enum Login {
    /// tempauth v1: `GET <auth_url>` with `X-Auth-User` / `X-Auth-Key`.
    Tempauth { user: String, key: Secret },
    /// Keystone v3: `POST /v3/auth/tokens`.
    Keystone(crate::keystone::KeystoneLogin),
}

/// The sidecar's own token for one target cluster (tempauth or Keystone): fetched on first use,
/// refreshed once 80% of its life has passed, and by a single request however many wait for it.
pub struct TokenSource {
    pub cluster: String,
    /// Where tokens come from (for error messages).
    auth_url: String,
    login: Login,
    current: Mutex<Option<(HeaderValue, Instant)>>,
    refresh: tokio::sync::Mutex<()>,
    client: hyper_util::client::legacy::Client<crate::tls::Connector, body::ProxyBody>,
    pub fetches: prometheus_client::metrics::counter::Counter,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot get a token for cluster {cluster} from {auth_url}: {reason}")]
pub struct TokenError {
    cluster: String,
    auth_url: String,
    reason: String,
}

/// Largest token answer read (Keystone's without catalog is about 1 KiB).
const MAX_TOKEN_ANSWER: usize = 1 << 20;

impl TokenSource {
    /// tempauth; `tls`: the cluster's TLS settings, used for an `https://` auth URL (tempauth is
    /// served by the target's own proxy).
    pub fn tempauth(
        cluster: &str,
        auth_url: &str,
        user: &str,
        key: &Secret,
        tls: Option<Arc<crate::tls::ClientTls>>,
    ) -> TokenSource {
        let login = Login::Tempauth {
            user: user.to_string(),
            key: key.clone(),
        };
        TokenSource::new(cluster, auth_url, login, tls)
    }

    /// Keystone v3; `tls`: the credentials' own TLS settings for an `https://` authUrl.
    pub fn keystone(
        cluster: &str,
        credentials: &swiftfed_crds::routing::KeystoneCredentials,
        tls: Option<Arc<crate::tls::ClientTls>>,
    ) -> TokenSource {
        let login = crate::keystone::KeystoneLogin::new(credentials);
        TokenSource::new(cluster, &credentials.auth_url, Login::Keystone(login), tls)
    }

    fn new(
        cluster: &str,
        auth_url: &str,
        login: Login,
        tls: Option<Arc<crate::tls::ClientTls>>,
    ) -> TokenSource {
        let connector = crate::tls::Connector::new(Duration::from_secs(5), tls);
        TokenSource {
            cluster: cluster.to_string(),
            auth_url: auth_url.to_string(),
            login,
            current: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build(connector),
            fetches: Default::default(),
        }
    }

    fn valid(&self) -> Option<HeaderValue> {
        let current = self.current.lock().ok()?;
        current
            .as_ref()
            .filter(|(_, refresh_at)| *refresh_at > Instant::now())
            .map(|(t, _)| t.clone())
    }

    pub async fn token(&self) -> Result<HeaderValue, TokenError> {
        if let Some(t) = self.valid() {
            return Ok(t);
        }
        let _guard = self.refresh.lock().await;
        if let Some(t) = self.valid() {
            return Ok(t);
        }
        let previous = self
            .current
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|(t, _)| t.clone()));
        let (token, life) = self.fetch().await?;
        // tempauth hands out the same token until it expires: asking again early only helps
        // for a new token, so a repeated one is kept to its end (a 401 then renews it).
        let refresh_in = if previous.as_ref() == Some(&token) {
            life
        } else {
            life.mul_f64(0.8)
        };
        if let Ok(mut current) = self.current.lock() {
            *current = Some((token.clone(), Instant::now() + refresh_in));
        }
        Ok(token)
    }

    /// Forget a token the target refused (401): the next request fetches a new one.
    pub fn invalidate(&self, token: &HeaderValue) {
        if let Ok(mut current) = self.current.lock() {
            if current.as_ref().is_some_and(|(t, _)| t == token) {
                *current = None;
            }
        }
    }

    fn error(&self, reason: String) -> TokenError {
        TokenError {
            cluster: self.cluster.clone(),
            auth_url: self.auth_url.clone(),
            reason,
        }
    }

    async fn fetch(&self) -> Result<(HeaderValue, Duration), TokenError> {
        self.fetches.inc();
        let err = |reason: String| self.error(reason);
        let req = match &self.login {
            Login::Tempauth { user, key } => http::Request::get(&self.auth_url)
                .header("x-auth-user", user)
                .header(
                    "x-auth-key",
                    HeaderValue::from_str(key.expose())
                        .map_err(|_| err("the key is not a valid header value".into()))?,
                )
                .body(body::empty()),
            Login::Keystone(login) => http::Request::post(&login.token_url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body::full(login.body())),
        }
        .map_err(|e| err(e.to_string()))?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .map_err(|_| err("timed out".into()))?
            .map_err(|e| err(crate::upstream::error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(err(format!("auth answered {}", resp.status())));
        }
        match &self.login {
            Login::Tempauth { .. } => tempauth_token(resp.headers()).map_err(err),
            Login::Keystone(_) => {
                let (parts, incoming) = resp.into_parts();
                let limited = http_body_util::Limited::new(incoming, MAX_TOKEN_ANSWER);
                let bytes = tokio::time::timeout(Duration::from_secs(30), limited.collect())
                    .await
                    .map_err(|_| err("timed out reading the answer".into()))?
                    .map_err(|e| err(format!("reading the answer: {e}")))?
                    .to_bytes();
                crate::keystone::token_from_answer(&parts.headers, &bytes).map_err(err)
            }
        }
    }
}

/// tempauth's token and its lifetime (`X-Auth-Token-Expires`, seconds).
fn tempauth_token(headers: &http::HeaderMap) -> Result<(HeaderValue, Duration), String> {
    let token = headers
        .get("x-auth-token")
        .or_else(|| headers.get("x-storage-token"))
        .cloned()
        .ok_or("no X-Auth-Token in the answer")?;
    let life = headers
        .get("x-auth-token-expires")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                // Unparsable or zero: already expired; use it once, renew on next request.
                .map_or(Duration::ZERO, Duration::from_secs_f64)
        })
        // No expiry announced: renew every five minutes.
        .unwrap_or(Duration::from_secs(300));
    Ok((token, life))
}

/// Keeps the client's auth headers out of requests sent with the sidecar's own credentials.
pub fn strip_client_auth(headers: &mut http::HeaderMap) {
    headers.remove("x-auth-token");
    headers.remove("x-storage-token");
    headers.remove("x-service-token");
}

pub type SharedTokenSource = Arc<TokenSource>;
