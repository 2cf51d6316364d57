//! Symlinks whose target lives in another cluster than the link (DESIGN.md step 5). Swift's
//! symlink middleware follows links only inside its own cluster, so such a link is stored as a
//! plain empty object with its target in metadata headers of the sidecar's, and the sidecar
//! follows it on `GET`/`HEAD` as Swift does: the target's answer (streamed) with a
//! `Content-Location` naming it, a static link's `X-Symlink-Target-Etag` checked (409 on a
//! mismatch, at creation and when followed), `?symlink=get` showing the link itself. Links
//! whose target is in their own cluster stay Swift's.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::body::{BodySlot, ProxyBody};
use crate::copy::{self, CopyError, End};
use crate::pyformat::Object;
use crate::route_table::RouteTable;
use crate::state::{Active, State};
use crate::swift_path::decode;
use crate::upstream::Outgoing;

const TARGET: &str = "x-object-meta-swiftfed-symlink-target";
const TARGET_ACCOUNT: &str = "x-object-meta-swiftfed-symlink-target-account";
const TARGET_ETAG: &str = "x-object-meta-swiftfed-symlink-target-etag";
/// Swift's default `symloop_max`: links followed in a row.
const MAX_HOPS: usize = 2;
/// Python's `quote` (safe `/`), as Swift writes `Content-Location`.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// A name quoted as Swift quotes it in link paths.
pub fn quote(name: &str) -> String {
    utf8_percent_encode(name, PATH).to_string()
}

fn value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The target a link's headers name (`X-Symlink-Target[-Account]` on a request, or the
/// sidecar's markers on a stored link), resolved to its cluster.
fn target(
    routes: &RouteTable,
    account: &str,
    target: &str,
    target_account: Option<&str>,
) -> Option<End> {
    let (container, object) = copy::split_reference(&decode(target)?)?;
    let account = match target_account {
        Some(a) => decode(a)?,
        None => account.to_string(),
    };
    let cluster = routes
        .lookup(&account, Some(&container))
        .map(|r| r.cluster.clone());
    Some(End {
        account,
        container,
        object,
        cluster,
    })
}

/// On an object `PUT` going to `dest_cluster` (`None`: local): a link to a target in another
/// cluster becomes a plain object carrying the target in the sidecar's headers; returns the
/// target and a static link's ETag, to be checked before the link is stored. Markers a client
/// sends itself are dropped.
pub fn mark_request(
    headers: &mut HeaderMap,
    routes: &RouteTable,
    account: &str,
    dest_cluster: Option<&str>,
) -> Option<(End, Option<String>)> {
    for h in [TARGET, TARGET_ACCOUNT, TARGET_ETAG] {
        headers.remove(h);
    }
    let raw = value(headers, "x-symlink-target")?;
    let raw_account = value(headers, "x-symlink-target-account");
    let end = target(routes, account, &raw, raw_account.as_deref())?;
    if end.cluster.as_deref() == dest_cluster {
        return None;
    }
    let moves = [
        ("x-symlink-target", TARGET),
        ("x-symlink-target-account", TARGET_ACCOUNT),
        ("x-symlink-target-etag", TARGET_ETAG),
    ];
    for (from, to) in moves {
        if let Some(v) = headers.remove(from) {
            headers.insert(HeaderName::from_static(to), v);
        }
    }
    let etag = value(headers, TARGET_ETAG).map(|e| e.trim_matches('"').to_string());
    Some((end, etag))
}

/// On a marked link `PUT` (`end` its target; `target`: a static link's target's headers): the
/// Content-Type Swift gives the link (the client's; else a static link's target's, else
/// `application/symlink`), carrying what a listing shows of it (Swift's `symlink_path`, and
/// `symlink_etag`/`symlink_bytes` of a static link) for `standin`.
pub fn listing_content_type(headers: &mut HeaderMap, end: &End, target: Option<&HeaderMap>) {
    use crate::standin;
    // Swift drops a parameter value's `/` and what follows: quoted (and so free of `%2F`
    // otherwise), `/` is written `%2F` there.
    let path = format!("{}/{}", quote(&end.container), quote(&end.object));
    let mut facts = vec![(standin::LINK_TARGET, path.replace('/', "%2F"))];
    if headers.contains_key(TARGET_ACCOUNT) {
        facts.push((standin::LINK_ACCOUNT, quote(&end.account)));
    }
    let mut content_type = value(headers, "content-type").filter(|v| !v.is_empty());
    if let (Some(target), Some(etag)) = (target, value(headers, TARGET_ETAG)) {
        // A target that is itself the sidecar's SLO: its size, not its stored form's.
        let bytes = crate::slo_assembly::marker(target)
            .map(|(size, _)| size.to_string())
            .or_else(|| value(target, "content-length"))
            .unwrap_or_default();
        facts.push((standin::LINK_ETAG, etag.trim_matches('"').to_string()));
        facts.push((standin::LINK_BYTES, bytes));
        // A link to an SLO is listed with the SLO's `slo_etag` too, as Swift lists it.
        let slo_etag = crate::slo_assembly::marker(target)
            .map(|(_, e)| e)
            .or_else(|| {
                value(target, "x-static-large-object")
                    .filter(|v| v.eq_ignore_ascii_case("true"))
                    .and(value(target, "etag"))
                    .map(|e| e.trim_matches('"').to_string())
            });
        if let Some(slo_etag) = slo_etag {
            facts.push((standin::SLO_ETAG, slo_etag));
        }
        content_type =
            content_type.or_else(|| value(target, "content-type").map(|t| standin::clean(&t).0));
    }
    let content_type = content_type.unwrap_or_else(|| "application/symlink".into());
    if let Ok(v) = HeaderValue::from_str(&standin::with(&content_type, &facts)) {
        headers.insert(header::CONTENT_TYPE, v);
    }
}

/// Whether a response is a cross-cluster link (the sidecar's markers).
pub fn is_link(headers: &HeaderMap) -> bool {
    headers.contains_key(TARGET)
}

/// `?symlink=get` (or any answer that is the link itself): shown as Swift shows a link.
pub fn show_link(headers: &mut HeaderMap) {
    crate::standin::strip_headers(headers);
    let moves = [
        (TARGET, "x-symlink-target"),
        (TARGET_ACCOUNT, "x-symlink-target-account"),
        (TARGET_ETAG, "x-symlink-target-etag"),
    ];
    for (from, to) in moves {
        if let Some(v) = headers.remove(from) {
            headers.insert(HeaderName::from_static(to), v);
        }
    }
}

/// The target a stored link's answer names.
pub fn stored_target(routes: &RouteTable, account: &str, headers: &HeaderMap) -> Option<End> {
    let raw = value(headers, TARGET)?;
    target(
        routes,
        account,
        &raw,
        value(headers, TARGET_ACCOUNT).as_deref(),
    )
}

fn conflict(detail: &str) -> Response<ProxyBody> {
    let mut r = Response::new(crate::body::full(format!(
        "<html><h1>Conflict</h1><p>{detail}</p></html>"
    )));
    *r.status_mut() = StatusCode::CONFLICT;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    r
}

async fn send(
    state: &State,
    active: &Active,
    end: &End,
    method: Method,
    client_headers: &HeaderMap,
) -> Result<(Response<Incoming>, Duration), CopyError> {
    let hop = copy::hop(state, active, end)?;
    let mut headers = HeaderMap::new();
    for (k, v) in client_headers {
        let name = k.as_str();
        if name.starts_with("if-")
            || name == "range"
            || name == "x-auth-token"
            || name == "x-storage-token"
            || (name == "host" && !hop.remote)
        {
            headers.append(k.clone(), v.clone());
        }
    }
    copy::authenticate(&hop, &mut headers).await?;
    let out = Outgoing {
        method,
        path_and_query: hop.path.clone(),
        headers,
        endpoint_host: hop.remote,
        expect_continue: false,
    };
    let (response, _) = hop.upstream.send(&out, &BodySlot::new(None)).await?;
    Ok((response, hop.upstream.timeouts.idle))
}

/// The ETag a static link names: Swift checks it below its SLO middleware, so for an SLO it is
/// the manifest's (`X-Manifest-Etag`; a stand-in's own ETag is its stored manifest's too).
fn checked_etag(headers: &HeaderMap) -> Option<String> {
    let slo =
        value(headers, "x-static-large-object").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let etag = if slo {
        value(headers, "x-manifest-etag")
    } else {
        value(headers, "etag")
    };
    etag.map(|e| e.trim_matches('"').to_string())
}

/// A static link is stored only if its target exists with that ETag (Swift answers 409);
/// `Ok`: the target's headers, when it answered.
pub async fn check_static(
    state: &State,
    active: &Active,
    end: &End,
    etag: &str,
    client_headers: &HeaderMap,
) -> Result<Result<Option<HeaderMap>, Response<ProxyBody>>, CopyError> {
    let (head, _) = send(state, active, end, Method::HEAD, client_headers).await?;
    if head.status() == StatusCode::NOT_FOUND {
        return Ok(Err(conflict("X-Symlink-Target does not exist")));
    }
    let actual = checked_etag(head.headers());
    if head.status().is_success() && actual.as_deref() != Some(etag) {
        return Ok(Err(conflict(
            "Object Etag does not match X-Symlink-Target-Etag header",
        )));
    }
    Ok(Ok(head
        .status()
        .is_success()
        .then(|| head.headers().clone())))
}

pub enum Followed {
    Upstream(Response<Incoming>, Duration),
    Local(Response<ProxyBody>),
}

/// Follows a stored link (`link` its answer's headers) for a `GET`/`HEAD`, through up to
/// Swift's number of links in a row.
pub async fn follow(
    state: &State,
    active: &Active,
    account: &str,
    method: &Method,
    link: &HeaderMap,
    client_headers: &HeaderMap,
) -> Result<Followed, CopyError> {
    let mut headers = link.clone();
    for _ in 0..MAX_HOPS {
        let Some(end) = stored_target(&active.routes, account, &headers) else {
            break;
        };
        let expected = value(&headers, TARGET_ETAG).map(|e| e.trim_matches('"').to_string());
        let (mut response, idle) =
            send(state, active, &end, method.clone(), client_headers).await?;
        if let Some(expected) = expected {
            let actual = checked_etag(response.headers());
            if response.status().is_success() && actual.as_deref() != Some(expected.as_str()) {
                return Ok(Followed::Local(conflict(
                    "Object Etag does not match X-Symlink-Target-Etag header",
                )));
            }
        }
        if is_link(response.headers()) && response.status().is_success() {
            headers = response.headers().clone();
            continue;
        }
        let location = format!(
            "/v1/{}/{}/{}",
            utf8_percent_encode(&end.account, PATH),
            utf8_percent_encode(&end.container, PATH),
            utf8_percent_encode(&end.object, PATH)
        );
        if let Ok(v) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::CONTENT_LOCATION, v);
        }
        return Ok(Followed::Upstream(response, idle));
    }
    let mut r = Response::new(crate::body::full(
        "<html><h1>Conflict</h1><p>Too many levels of symbolic links</p></html>",
    ));
    *r.status_mut() = StatusCode::CONFLICT;
    Ok(Followed::Local(r))
}

/// A JSON container listing's `symlink_path` (`/v1/<account>/<container>/<object>`, quoted, as
/// Swift writes it for links inside its cluster) named as the client names it, for a record listed by
/// `cluster`. `false` when the record needed no change.
pub fn listing_path_back(record: &mut Object, routes: &RouteTable, cluster: &str) -> bool {
    let Some(path) = record.get("symlink_path").and_then(|v| v.as_str()) else {
        return false;
    };
    let mut parts = path.splitn(5, '/');
    let (Some(""), Some(version), Some(account), Some(container), Some(object)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    // Swift quotes the path's names; routes name them unquoted.
    let (Some(account), Some(container)) = (decode(account), decode(container)) else {
        return false;
    };
    let Some((account, container)) = routes.client_names(cluster, &account, &container) else {
        return false;
    };
    let renamed = format!(
        "/{version}/{}/{}/{object}",
        utf8_percent_encode(&account, PATH),
        utf8_percent_encode(&container, PATH)
    );
    record.set("symlink_path", renamed);
    true
}
