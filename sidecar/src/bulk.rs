//! Bulk delete across clusters: `DELETE` or `POST /v1/<account>?bulk-delete` whose body lists
//! `/container[/object]` paths of an account some of whose containers live in other clusters.
//! The list is split by where each container lives (local, or each route's cluster and
//! account, names renamed), each part goes to its cluster's own bulk middleware, and the
//! answers are merged into one, rendered as Swift's bulk middleware renders it (plain text,
//! JSON or XML by `Accept`).

use std::collections::HashMap;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use crate::body::{self, BodySlot, ProxyBody};
use crate::listing::{pick_format, Format, Params};
use crate::pyformat::{dumps, xml_escape, Object};
use crate::route_table::RouteTable;
use crate::state::{Active, State};
use crate::subrequest::{self, SubrequestError};
use crate::swift_path::{decode, encode_segment};
use crate::upstream::Outgoing;

/// Swift's `max_deletes_per_request` default.
const MAX_DELETES: usize = 10_000;
/// Longest body accepted: every line at Swift's longest path (object 1024 + container 256 + 2).
const MAX_BODY: usize = MAX_DELETES * 1282 * 2;
/// Python's `quote(name)` (safe `/`), as Swift names failed paths.
pub(crate) const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error(transparent)]
    Subrequest(#[from] SubrequestError),
    #[error("cluster {0:?} named by a route is not configured")]
    UnknownCluster(String),
    #[error("{0}")]
    Token(String),
    #[error("reading the request body: {0}")]
    Body(String),
}

impl BulkError {
    pub fn status(&self) -> StatusCode {
        match self {
            BulkError::Subrequest(e) => e.status(),
            BulkError::Body(_) => StatusCode::BAD_REQUEST,
            BulkError::UnknownCluster(_) | BulkError::Token(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Whether an account request is a bulk delete that may span clusters.
pub fn applies(routes: &RouteTable, account: &str, method: &Method, query: Option<&str>) -> bool {
    matches!(*method, Method::DELETE | Method::POST)
        && query
            .unwrap_or("")
            .split('&')
            .any(|p| p.split('=').next() == Some("bulk-delete"))
        && !routes.container_routes(account).is_empty()
}

/// One cluster's share: where it goes and its lines (target names), each with the client's
/// name for the answer.
struct Part<'a> {
    cluster: Option<&'a str>,
    account: String,
    lines: Vec<String>,
    client_names: HashMap<String, String>,
}

/// A cluster's bulk answer (requested as JSON).
#[derive(Deserialize)]
struct PartAnswer {
    #[serde(rename = "Number Deleted", default)]
    deleted: u64,
    #[serde(rename = "Number Not Found", default)]
    not_found: u64,
    #[serde(rename = "Response Status", default)]
    status: String,
    #[serde(rename = "Response Body", default)]
    body: String,
    #[serde(rename = "Errors", default)]
    errors: Vec<(String, String)>,
}

/// The merged answer; `None` when Swift should answer the request itself (an `Accept` or a
/// body type it refuses).
pub async fn run(
    state: &State,
    active: &Active,
    method: &Method,
    account: &str,
    headers: &HeaderMap,
    client_body: &BodySlot,
    refused_remote: Option<&str>,
) -> Result<Option<Response<ProxyBody>>, BulkError> {
    let Some(format) = pick_format(&Params::default(), headers) else {
        return Ok(None);
    };
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| !t.starts_with("text/plain"))
    {
        return Ok(None);
    }
    let idle = state.local.timeouts.idle;
    let text = match tokio::time::timeout(idle, body::read_slot(client_body, MAX_BODY)).await {
        Ok(Ok(Some(text))) => text,
        Ok(Ok(None)) => {
            return Ok(Some(answer(
                format,
                Summary::failed(
                    "413 Request Entity Too Large",
                    "Maximum Bulk Deletes: 10000 per request",
                ),
            )))
        }
        Ok(Err(e)) => return Err(BulkError::Body(e)),
        Err(_) => return Err(BulkError::Body(format!("no data for {idle:?}"))),
    };
    let mut names = Vec::new();
    for raw in text.split(|b| *b == b'\n') {
        let line = String::from_utf8_lossy(raw);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match decode(line) {
            Some(name) if !name.is_empty() => names.push(name),
            _ => {}
        }
    }
    if names.len() > MAX_DELETES {
        return Ok(Some(answer(
            format,
            Summary::failed(
                "413 Request Entity Too Large",
                "Maximum Bulk Deletes: 10000 per request",
            ),
        )));
    }

    let parts = split(&active.routes, account, &names);
    let mut summary = Summary::default();
    let mut any_bad_gateway = false;
    for part in &parts {
        let uses_credentials = part
            .cluster
            .and_then(|c| active.clusters.get(c))
            .is_some_and(|c| c.tokens.is_some());
        let got = match refused_remote.filter(|_| uses_credentials) {
            // The local cluster refused the client: its own credentials are not used for it.
            Some(status) => Some(PartAnswer::all_failed(part, status)),
            None => send_part(state, active, method, headers, part).await?,
        };
        let Some(got) = got else { continue };
        summary.deleted += got.deleted;
        summary.not_found += got.not_found;
        any_bad_gateway |= got.status.starts_with("502");
        if !got.errors.is_empty() && got.body != "Invalid bulk delete." && !got.body.is_empty() {
            summary.body = got.body.clone();
        }
        for (name, status) in got.errors {
            let target = decode(&name).unwrap_or_else(|| name.clone());
            let client = part.client_names.get(&target).cloned().unwrap_or(target);
            summary
                .errors
                .push((utf8_percent_encode(&client, PATH).to_string(), status));
        }
    }
    summary.status = if !summary.errors.is_empty() {
        if any_bad_gateway {
            "502 Bad Gateway".into()
        } else {
            "400 Bad Request".into()
        }
    } else if summary.deleted + summary.not_found == 0 {
        summary.body = "Invalid bulk delete.".into();
        "400 Bad Request".into()
    } else {
        "200 OK".into()
    };
    Ok(Some(answer(format, summary)))
}

/// Groups the names by where their container lives, renamed for there.
fn split<'a>(routes: &'a RouteTable, account: &str, names: &[String]) -> Vec<Part<'a>> {
    let mut parts: Vec<Part<'a>> = Vec::new();
    for name in names {
        let path = name.trim_start_matches('/');
        let (container, rest) = match path.split_once('/') {
            Some((c, r)) => (c, Some(r)),
            None => (path, None),
        };
        let (cluster, target_account, target_container) =
            match routes.lookup(account, Some(container)) {
                Some(route) => {
                    let t = route.target(account, Some(container));
                    (
                        Some(route.cluster.as_str()),
                        t.account,
                        t.container.unwrap_or_else(|| container.to_string()),
                    )
                }
                None => (None, account.to_string(), container.to_string()),
            };
        let target_name = match rest {
            Some(r) => format!("/{target_container}/{r}"),
            None => format!("/{target_container}"),
        };
        let i = match parts
            .iter()
            .position(|p| p.cluster == cluster && p.account == target_account)
        {
            Some(i) => i,
            None => {
                parts.push(Part {
                    cluster,
                    account: target_account,
                    lines: Vec::new(),
                    client_names: HashMap::new(),
                });
                parts.len() - 1
            }
        };
        parts[i]
            .lines
            .push(utf8_percent_encode(&target_name, PATH).to_string());
        parts[i].client_names.insert(target_name, name.clone());
    }
    parts
}

/// One cluster's bulk delete, its answer read as JSON; `None` when it had nothing to say.
async fn send_part(
    state: &State,
    active: &Active,
    method: &Method,
    client_headers: &HeaderMap,
    part: &Part<'_>,
) -> Result<Option<PartAnswer>, BulkError> {
    let mut headers = HeaderMap::new();
    let (upstream, endpoint_host) = match part.cluster {
        None => {
            for (k, v) in client_headers {
                if k != header::CONTENT_LENGTH && k != header::ACCEPT && k != header::EXPECT {
                    headers.append(k, v.clone());
                }
            }
            (&state.local, false)
        }
        Some(c) => {
            let runtime = active
                .clusters
                .get(c)
                .ok_or_else(|| BulkError::UnknownCluster(c.to_string()))?;
            match &runtime.tokens {
                Some(tokens) => {
                    let token = tokens
                        .token()
                        .await
                        .map_err(|e| BulkError::Token(e.to_string()))?;
                    headers.insert("x-auth-token", token);
                }
                None => {
                    if let Some(t) = client_headers.get("x-auth-token") {
                        headers.insert("x-auth-token", t.clone());
                    }
                }
            }
            (&runtime.upstream, true)
        }
    };
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    let out = Outgoing {
        method: method.clone(),
        path_and_query: format!("/v1/{}?bulk-delete", encode_segment(&part.account)),
        headers,
        endpoint_host,
        expect_continue: false,
    };
    let body = Bytes::from(part.lines.join("\n"));
    let got = subrequest::fetch_with_body(upstream, out, body).await?;
    if !got.status.is_success() {
        // Refused as a whole (e.g. a 401 from the local cluster): every name failed with it.
        let status = format!(
            "{} {}",
            got.status.as_u16(),
            got.status.canonical_reason().unwrap_or("")
        );
        return Ok(Some(PartAnswer::all_failed(part, &status)));
    }
    let text = String::from_utf8_lossy(&got.body);
    match serde_json::from_str::<PartAnswer>(text.trim()) {
        Ok(answer) => Ok(Some(answer)),
        Err(_) => Ok(None),
    }
}

impl PartAnswer {
    /// Every name of `part` failed with `status`, as Swift lists each refused delete.
    fn all_failed(part: &Part<'_>, status: &str) -> PartAnswer {
        PartAnswer {
            deleted: 0,
            not_found: 0,
            status: status.into(),
            body: String::new(),
            errors: part
                .client_names
                .keys()
                .map(|target| (target.clone(), status.into()))
                .collect(),
        }
    }
}

#[derive(Default)]
struct Summary {
    status: String,
    body: String,
    deleted: u64,
    not_found: u64,
    errors: Vec<(String, String)>,
}

impl Summary {
    fn failed(status: &str, body: &str) -> Summary {
        Summary {
            status: status.into(),
            body: body.into(),
            ..Summary::default()
        }
    }
}

/// Swift's bulk delete answer: always 200, the outcome in the body.
fn answer(format: Format, s: Summary) -> Response<ProxyBody> {
    let fields = vec![
        ("Response Status", s.status.into()),
        ("Response Body", s.body.into()),
        ("Number Deleted", s.deleted.into()),
        ("Number Not Found", s.not_found.into()),
    ];
    render(format, "delete", fields, &s.errors)
}

/// A bulk middleware answer (`get_heartbeat_response_body`): `fields` in the order Swift's dict
/// has them (JSON keeps it, plain text and XML sort by key), `errors` as (quoted name, status).
pub(crate) fn render(
    format: Format,
    root_tag: &str,
    fields: Vec<(&str, serde_json::Value)>,
    errors: &[(String, String)],
) -> Response<ProxyBody> {
    let (content_type, text) = render_body(format, root_tag, fields, errors);
    let mut response = Response::new(body::full(text));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The content type and body of a bulk answer (see [`render`]).
pub(crate) fn render_body(
    format: Format,
    root_tag: &str,
    mut fields: Vec<(&str, serde_json::Value)>,
    errors: &[(String, String)],
) -> (&'static str, Vec<u8>) {
    let text_of = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match format {
        Format::Json => {
            let errors: Vec<serde_json::Value> = errors
                .iter()
                .map(|(n, st)| serde_json::json!([n, st]))
                .collect();
            let mut pairs: Vec<(String, serde_json::Value)> = fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            pairs.push(("Errors".into(), serde_json::Value::Array(errors)));
            ("application/json", dumps(&Object::from_pairs(pairs)))
        }
        Format::Xml(t) => {
            fields.sort_by(|a, b| a.0.cmp(b.0));
            let mut out = format!("<{root_tag}>\n");
            for (key, value) in &fields {
                let tag = key.replace(' ', "_").to_lowercase();
                out.push_str(&format!(
                    "<{tag}>{}</{tag}>\n",
                    xml_escape(&text_of(value), false)
                ));
            }
            out.push_str("<errors>\n");
            for (name, status) in errors {
                out.push_str(&format!(
                    "<object><name>{}</name><status>{}</status></object>\n",
                    xml_escape(name, false),
                    xml_escape(status, false)
                ));
            }
            out.push_str(&format!("</errors>\n</{root_tag}>\n"));
            (
                t.split(';').next().unwrap_or("application/xml"),
                out.into_bytes(),
            )
        }
        Format::Plain => {
            fields.sort_by(|a, b| a.0.cmp(b.0));
            let mut out = String::new();
            for (key, value) in &fields {
                out.push_str(&format!("{key}: {}\n", text_of(value)));
            }
            out.push_str("Errors:\n");
            for (name, status) in errors {
                out.push_str(&format!("{name}, {status}\n"));
            }
            ("text/plain", out.into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swiftfed_crds::RoutingTable;

    #[test]
    fn names_split_by_cluster_and_renamed() {
        let t = RoutingTable::from_slice(
            br#"
clusters: [{name: b, endpoints: ["http://127.0.0.1:1"]}]
routes:
- {match: {account: A, container: {exact: docs}}, target: {cluster: b, container: docs-b}}
"#,
        )
        .expect("valid");
        let routes = RouteTable::new(&t, None);
        let names: Vec<String> = ["/docs/a b", "/local/x", "docs_segments/s/1", "/docs"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let parts = split(&routes, "A", &names);
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0].lines,
            vec!["/docs-b/a%20b", "/docs-b_segments/s/1", "/docs-b"]
        );
        assert_eq!(parts[0].client_names["/docs-b/a b"], "/docs/a b");
        assert_eq!(parts[1].lines, vec!["/local/x"]);
    }
}
