//! Account listings that include routed containers (DESIGN.md step 5): `GET`/`HEAD /v1/<a>` on
//! an account some of whose containers live in other clusters.
//!
//! Every source (the account's home — local, or its account-wide route's target — and each
//! container route's target) is listed as JSON, its names mapped back to the client's, and kept
//! only if a request for that name would go there (Migrate routes also keep the home's copy).
//! The sources are merged in name order (reverse when asked), with Swift's `marker`,
//! `end_marker`, `prefix`, `delimiter` and `limit` applied to the merged set, and rendered as
//! Swift's listing filter does (JSON, plain text, XML). Counts in the headers add, for each
//! routed container, its own `HEAD` on its cluster to the home account's numbers.
//! `params` reads the request, `render` writes the answer, `totals` counts.

mod params;
mod render;
mod totals;

use std::collections::VecDeque;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use swiftfed_crds::routing::{ContainerMatch, RouteMode};

use crate::body::{self, ProxyBody};
use crate::pyformat::Object as Record;
use crate::route_table::{Route, RouteTable};
use crate::state::{Active, State};
use crate::subrequest::{self, Answer, SubrequestError};
use crate::swift_path::encode_segment;

pub(crate) use params::{pick_format, Format, Params};
use render::{render, Listing};
use totals::{routed_totals, shadowed_totals};

/// The format a client's listing is answered in, as Swift picks it (`None`: Swift answers
/// itself, as for a bad parameter or an unacceptable `Accept`).
pub(crate) fn format_of(query: Option<&str>, headers: &HeaderMap) -> Option<Format> {
    pick_format(&Params::parse(query)?, headers)
}

/// A container's listing in `format`, as Swift's listing filter renders it from JSON.
pub(crate) fn render_container(format: Format, container: &str, records: &[Record]) -> Vec<u8> {
    render(format, Listing::Container(container), records)
}

/// Swift's `CONTAINER_LISTING_LIMIT` (also the account listing maximum).
const MAX_LIMIT: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    #[error(transparent)]
    Subrequest(#[from] SubrequestError),
    #[error("listing from {0} is not JSON: {1}")]
    Parse(String, String),
    #[error("cluster {0:?} named by a route is not configured")]
    UnknownCluster(String),
    #[error("{0}")]
    Token(String),
}

impl ListingError {
    pub fn status(&self) -> StatusCode {
        match self {
            ListingError::Subrequest(e) => e.status(),
            ListingError::Parse(..) => StatusCode::BAD_GATEWAY,
            ListingError::UnknownCluster(_) | ListingError::Token(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

/// Where a listing comes from and which of its names belong to the merged listing.
struct Source<'a> {
    /// `None`: the local proxy.
    cluster: Option<&'a str>,
    account: String,
    /// The route whose containers these are; `None` for the home source.
    route: Option<&'a Route>,
    /// Name prefix on the source that covers every container of the route.
    source_prefix: Option<String>,
    /// `Some(container)`: the object listing of that container (names kept as they are).
    objects: Option<String>,
    buffer: VecDeque<(String, Record)>,
    next_marker: Option<String>,
    done: bool,
}

/// Whether the account GET/HEAD needs merging: the account has container routes.
pub fn applies(routes: &RouteTable, account: &str, method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD) && !routes.container_routes(account).is_empty()
}

/// The merged answer, or `None` when the request is one Swift should answer itself unchanged
/// (parameters Swift refuses, a format it does not offer).
pub async fn account(
    state: &State,
    active: &Active,
    method: &Method,
    account: &str,
    query: Option<&str>,
    client_headers: &HeaderMap,
) -> Result<Option<Response<ProxyBody>>, ListingError> {
    let Some(params) = Params::parse(query) else {
        return Ok(None);
    };
    let Some(format) = pick_format(&params, client_headers) else {
        return Ok(None);
    };
    let routes = &active.routes;
    let home_route = routes.lookup(account, None);
    let mut sources = Vec::new();
    for route in routes.container_routes(account) {
        let target = route.target(account, None);
        let prefix = match &route.matcher {
            Some(ContainerMatch::Exact(e)) | Some(ContainerMatch::Prefix(e)) => Some(
                route
                    .target(account, Some(e))
                    .container
                    .unwrap_or_else(|| e.clone()),
            ),
            None => None,
        };
        sources.push(Source {
            cluster: Some(route.cluster.as_str()),
            account: target.account,
            route: Some(route),
            source_prefix: prefix,
            objects: None,
            buffer: VecDeque::new(),
            next_marker: None,
            done: false,
        });
    }
    // Home last: on equal names the routed (target) record wins.
    sources.push(Source {
        cluster: home_route.map(|r| r.cluster.as_str()),
        account: home_route
            .map(|r| r.target(account, None).account)
            .unwrap_or_else(|| account.to_string()),
        route: None,
        source_prefix: None,
        objects: None,
        buffer: VecDeque::new(),
        next_marker: None,
        done: false,
    });
    let home = sources.len() - 1;

    // The home answers first, with the client's own credentials toward the local cluster: an
    // error there (401, 403, 404) is the answer.
    let ctx = Ctx {
        state,
        active,
        client_headers,
        account,
    };
    let first = fetch_page(&ctx, &mut sources[home], &params).await?;
    if !first.status.is_success() {
        return Ok(Some(plain_answer(first)));
    }
    let home_headers = first.headers;

    let mut out: Vec<Record> = Vec::new();
    if *method == Method::GET {
        match merge(&ctx, &mut sources, &params).await? {
            Merged::Records(records) => out = records,
            Merged::Failed(answer) => return Ok(Some(plain_answer(answer))),
        }
    }

    let totals = routed_totals(state, active, client_headers, account, &sources[..home]).await?;
    let hidden = shadowed_totals(state, active, client_headers, account, &sources).await?;
    let mut headers = home_headers;
    for (name, add, sub) in [
        (
            "x-account-container-count",
            totals.containers,
            hidden.containers,
        ),
        ("x-account-object-count", totals.objects, hidden.objects),
        ("x-account-bytes-used", totals.bytes, hidden.bytes),
    ] {
        let base: u64 = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        headers.insert(name, HeaderValue::from((base + add).saturating_sub(sub)));
    }
    Ok(Some(listing_response(
        method,
        format,
        Listing::Account(account),
        headers,
        &out,
    )))
}

/// What a listing request needs to reach its sources.
pub struct Ctx<'a> {
    pub state: &'a State,
    pub active: &'a Active,
    pub client_headers: &'a HeaderMap,
    pub account: &'a str,
}

pub(crate) enum Merged {
    Records(Vec<Record>),
    /// A source failed with something other than 404: its answer is the answer.
    Failed(Answer),
}

/// The merged listing, at most `params.limit` records.
async fn merge(
    ctx: &Ctx<'_>,
    sources: &mut [Source<'_>],
    params: &Params,
) -> Result<Merged, ListingError> {
    let mut out = Vec::new();
    let limit = params.limit;
    let failed = walk(ctx, sources, params, &mut |mut r| {
        if out.len() < limit {
            // A stand-in as what it stands for (counted as stored, as Swift counts an SLO).
            crate::standin::listing_record(&mut r, ctx.account);
            out.push(r);
        }
        out.len() < limit
    })
    .await?;
    Ok(match failed {
        Some(answer) => Merged::Failed(answer),
        None => Merged::Records(out),
    })
}

/// Walks the sources in listing order (reverse when asked) with `params` applied to the merged
/// set (window, delimiter roll-up), handing each record to `emit` until it returns false. On
/// equal names the earlier source's record wins. `Some(answer)`: a source failed with
/// something other than 404, and its answer is the answer.
async fn walk(
    ctx: &Ctx<'_>,
    sources: &mut [Source<'_>],
    params: &Params,
    emit: &mut (dyn FnMut(Record) -> bool + Send),
) -> Result<Option<Answer>, ListingError> {
    if params.limit == 0 {
        return Ok(None);
    }
    let mut last: Option<String> = None;
    let mut last_subdir: Option<String> = None;
    loop {
        for source in sources.iter_mut() {
            // A page may hold only names outside the window: keep paging.
            while source.buffer.is_empty() && !source.done {
                let page = fetch_page(ctx, source, params).await?;
                if !page.status.is_success() && page.status != StatusCode::NOT_FOUND {
                    return Ok(Some(page));
                }
            }
        }
        let mut pick: Option<usize> = None;
        for (i, s) in sources.iter().enumerate() {
            let Some((name, _)) = s.buffer.front() else {
                continue;
            };
            let better = match pick.and_then(|p| sources[p].buffer.front()) {
                None => true,
                Some((best, _)) => {
                    if params.reverse {
                        name > best
                    } else {
                        name < best
                    }
                }
            };
            if better {
                pick = Some(i);
            }
        }
        let Some(i) = pick else { break };
        let Some((name, record)) = sources[i].buffer.pop_front() else {
            break;
        };
        if last.as_deref() == Some(name.as_str()) {
            continue;
        }
        let rolled = params.delimiter.and_then(|d| {
            let rest = &name[params.prefix.len()..];
            rest.find(d)
                .map(|at| format!("{}{}", params.prefix, &rest[..at + d.len_utf8()]))
        });
        let more = match rolled {
            Some(dir) => {
                if last_subdir.as_deref() == Some(dir.as_str())
                    || params.marker.as_deref() == Some(dir.as_str())
                {
                    true
                } else {
                    last_subdir = Some(dir.clone());
                    emit(Record::new_subdir(dir))
                }
            }
            None => emit(record),
        };
        last = Some(name);
        if !more {
            return Ok(None);
        }
    }
    Ok(None)
}

/// Where a container lives on its target cluster.
pub struct TargetContainer<'a> {
    pub cluster: &'a str,
    pub account: &'a str,
    pub container: &'a str,
}

/// A container being migrated (`Migrate` route): its `GET`/`HEAD` merge the target's objects
/// with the local cluster's, the target's record winning on equal names, and count the merged
/// set (both listings are walked whole for the counts). `None`: Swift should answer itself.
pub async fn migrating_container(
    ctx: &Ctx<'_>,
    method: &Method,
    container: &str,
    target: &TargetContainer<'_>,
    query: Option<&str>,
) -> Result<Option<Response<ProxyBody>>, ListingError> {
    let Some(params) = Params::parse(query) else {
        return Ok(None);
    };
    let Some(format) = pick_format(&params, ctx.client_headers) else {
        return Ok(None);
    };
    let sources = || {
        [
            object_source(Some(target.cluster), target.account, target.container),
            object_source(None, ctx.account, container),
        ]
    };
    let mut listed = sources();
    let first_target = fetch_page(ctx, &mut listed[0], &params).await?;
    let first_local = fetch_page(ctx, &mut listed[1], &params).await?;
    for answer in [&first_target, &first_local] {
        if !answer.status.is_success() && answer.status != StatusCode::NOT_FOUND {
            return Ok(Some(plain_answer(answer.clone())));
        }
    }
    let mut headers = match (
        first_target.status.is_success(),
        first_local.status.is_success(),
    ) {
        (true, _) => first_target.headers,
        (false, true) => first_local.headers,
        (false, false) => return Ok(Some(plain_answer(first_target))),
    };

    let mut out = Vec::new();
    if *method == Method::GET {
        match merge(ctx, &mut listed, &params).await? {
            Merged::Records(records) => out = records,
            Merged::Failed(answer) => return Ok(Some(plain_answer(answer))),
        }
    }
    let mut counted = sources();
    let everything = Params {
        limit: usize::MAX,
        ..Params::default()
    };
    let (mut objects, mut bytes) = (0u64, 0u64);
    let failed = walk(ctx, &mut counted, &everything, &mut |r| {
        objects += 1;
        bytes += r.number("bytes");
        true
    })
    .await?;
    if let Some(answer) = failed {
        return Ok(Some(plain_answer(answer)));
    }
    headers.insert("x-container-object-count", HeaderValue::from(objects));
    headers.insert("x-container-bytes-used", HeaderValue::from(bytes));
    Ok(Some(listing_response(
        method,
        format,
        Listing::Container(container),
        headers,
        &out,
    )))
}

fn object_source<'a>(cluster: Option<&'a str>, account: &str, container: &str) -> Source<'a> {
    Source {
        cluster,
        account: account.to_string(),
        route: None,
        source_prefix: None,
        objects: Some(container.to_string()),
        buffer: VecDeque::new(),
        next_marker: None,
        done: false,
    }
}

/// The answer to a listing request: Swift's status, content type and length.
fn listing_response(
    method: &Method,
    format: Format,
    listing: Listing<'_>,
    mut headers: HeaderMap,
    records: &[Record],
) -> Response<ProxyBody> {
    for h in ["transfer-encoding", "connection", "content-length"] {
        headers.remove(h);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    let body = if *method == Method::GET {
        render(format, listing, records)
    } else {
        Vec::new()
    };
    // Swift answers a HEAD, and a listing with an empty body, with 204.
    let status = if body.is_empty() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::OK
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn plain_answer(answer: Answer) -> Response<ProxyBody> {
    let mut headers = answer.headers;
    for h in ["transfer-encoding", "connection"] {
        headers.remove(h);
    }
    let mut response = Response::new(body::full(answer.body));
    *response.status_mut() = answer.status;
    *response.headers_mut() = headers;
    response
}

/// Client name of a source name, if the route (or the home) really serves it.
fn client_name(
    routes: &RouteTable,
    account: &str,
    source: &Source<'_>,
    source_name: &str,
) -> Option<String> {
    match source.route {
        Some(route) => {
            let client = route.client_container(source_name)?;
            let back = routes.lookup(account, Some(&client))?;
            (std::ptr::eq(back, route)
                && route.target(account, Some(&client)).container.as_deref() == Some(source_name))
            .then_some(client)
        }
        None => {
            let home = routes.lookup(account, None);
            match routes.lookup(account, Some(source_name)) {
                Some(r) if home.is_some_and(|h| std::ptr::eq(h, r)) => {
                    Some(source_name.to_string())
                }
                // A container being migrated is still listed from where it came from.
                Some(r) if r.mode == RouteMode::Migrate && home.is_none() => {
                    Some(source_name.to_string())
                }
                None if home.is_none() => Some(source_name.to_string()),
                _ => None,
            }
        }
    }
}

/// Request headers toward a source: the client's toward the local proxy, the client's token
/// (Passthrough) or the sidecar's (Credentials) toward a target.
pub(crate) async fn source_headers(
    active: &Active,
    client_headers: &HeaderMap,
    cluster: Option<&str>,
) -> Result<(HeaderMap, bool), ListingError> {
    let mut headers = HeaderMap::new();
    let Some(cluster) = cluster else {
        for (k, v) in client_headers {
            if k != header::ACCEPT && k != header::CONTENT_LENGTH {
                headers.append(k, v.clone());
            }
        }
        return Ok((headers, false));
    };
    let runtime = active
        .clusters
        .get(cluster)
        .ok_or_else(|| ListingError::UnknownCluster(cluster.to_string()))?;
    match &runtime.tokens {
        Some(tokens) => {
            let token = tokens
                .token()
                .await
                .map_err(|e| ListingError::Token(e.to_string()))?;
            headers.insert("x-auth-token", token);
        }
        None => {
            if let Some(t) = client_headers.get("x-auth-token") {
                headers.insert("x-auth-token", t.clone());
            }
        }
    }
    if let Some(t) = client_headers.get("x-trans-id-extra") {
        headers.insert("x-trans-id-extra", t.clone());
    }
    Ok((headers, true))
}

pub(crate) async fn send(
    state: &State,
    active: &Active,
    client_headers: &HeaderMap,
    cluster: Option<&str>,
    method: Method,
    path_and_query: String,
) -> Result<Answer, ListingError> {
    let (headers, endpoint_host) = source_headers(active, client_headers, cluster).await?;
    let upstream = upstream_of(state, active, cluster)?;
    Ok(subrequest::fetch(upstream, method, path_and_query, headers, endpoint_host).await?)
}

/// The upstream of a cluster (`None`: the local proxy).
pub(crate) fn upstream_of<'a>(
    state: &'a State,
    active: &'a Active,
    cluster: Option<&str>,
) -> Result<&'a crate::upstream::Upstream, ListingError> {
    match cluster {
        None => Ok(&state.local),
        Some(c) => Ok(&active
            .clusters
            .get(c)
            .ok_or_else(|| ListingError::UnknownCluster(c.to_string()))?
            .upstream),
    }
}

/// Maps a client-side name to the source's names for markers and prefixes; `None` when the
/// route's containers do not share it (the source is then listed from its own prefix and the
/// merged filter does the rest).
fn to_source(source: &Source<'_>, account: &str, client: &str) -> Option<String> {
    let route = match source.route {
        _ if source.objects.is_some() => return Some(client.to_string()),
        None => return Some(client.to_string()),
        Some(r) => r,
    };
    let matched = match &route.matcher {
        Some(ContainerMatch::Exact(e)) | Some(ContainerMatch::Prefix(e)) => e,
        None => return Some(client.to_string()),
    };
    client.strip_prefix(matched.as_str())?;
    route.target(account, Some(client)).container
}

/// Fetches the next page of a source into its buffer (client names, filtered).
async fn fetch_page(
    ctx: &Ctx<'_>,
    source: &mut Source<'_>,
    params: &Params,
) -> Result<Answer, ListingError> {
    let (state, active, client_headers, account) =
        (ctx.state, ctx.active, ctx.client_headers, ctx.account);
    let mut query = vec![("format", "json".to_string())];
    query.push(("limit", MAX_LIMIT.to_string()));
    let mut prefix = source.source_prefix.clone().unwrap_or_default();
    if params.prefix.len() > prefix.len() {
        if let Some(p) = to_source(source, account, &params.prefix) {
            prefix = p;
        }
    }
    if !prefix.is_empty() {
        query.push(("prefix", prefix));
    }
    let marker = source.next_marker.clone().or_else(|| {
        params
            .marker
            .as_deref()
            .and_then(|m| to_source(source, account, m))
    });
    if let Some(m) = marker {
        query.push(("marker", m));
    }
    if let Some(e) = params
        .end_marker
        .as_deref()
        .and_then(|m| to_source(source, account, m))
    {
        query.push(("end_marker", e));
    }
    if params.reverse {
        query.push(("reverse", "true".into()));
    }
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_segment(v)))
        .collect();
    let path = match &source.objects {
        Some(c) => format!(
            "/v1/{}/{}?{}",
            encode_segment(&source.account),
            encode_segment(c),
            q.join("&")
        ),
        None => format!("/v1/{}?{}", encode_segment(&source.account), q.join("&")),
    };
    let answer = send(
        state,
        active,
        client_headers,
        source.cluster,
        Method::GET,
        path,
    )
    .await?;
    if !answer.status.is_success() {
        source.done = true;
        return Ok(answer);
    }
    let records: Vec<Record> = if answer.status == StatusCode::NO_CONTENT || answer.body.is_empty()
    {
        vec![]
    } else {
        serde_json::from_slice(&answer.body).map_err(|e| {
            ListingError::Parse(source.cluster.unwrap_or("local").to_string(), e.to_string())
        })?
    };
    if records.len() < MAX_LIMIT {
        source.done = true;
    }
    for mut record in records {
        let Some(name) = record.name().map(str::to_string) else {
            continue;
        };
        source.next_marker = Some(name.clone());
        let client = match source.objects {
            Some(_) => Some(name),
            None => client_name(&active.routes, account, source, &name),
        };
        let Some(client) = client else {
            continue;
        };
        if params.admits(&client) {
            record.set_name(client.clone());
            if let Some(cluster) = source.cluster {
                crate::symlink::listing_path_back(&mut record, &active.routes, cluster);
            }
            source.buffer.push_back((client, record));
        }
    }
    Ok(answer)
}
