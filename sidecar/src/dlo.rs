//! Dynamic Large Objects whose segment container lives in another cluster than the manifest
//! (DESIGN.md step 5). Swift's own DLO middleware can only read segments from its own cluster,
//! so such a manifest is stored with its `X-Object-Manifest` value in a metadata header of the
//! sidecar's ([`MARKER`]) instead, and the sidecar serves `GET`/`HEAD` of it as Swift's DLO
//! would: segments listed in name order from wherever their container lives, concatenated
//! (streamed by `segments`), with Swift's DLO ETag (MD5 of the segments' ETags, quoted) and
//! single `Range`s (several ranges get the whole object with 200, as from Swift's DLO).
//! `?multipart-manifest=get` shows the manifest as Swift shows one. Manifests
//! whose segments live with them stay Swift's own.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use md5::{Digest, Md5};

use crate::body::ProxyBody;
use crate::listing::{self, ListingError};
use crate::pyformat::Object;
use crate::route_table::RouteTable;
use crate::segments::{self, Segment};
use crate::state::{Active, State};
use crate::swift_path::{decode, encode_segment};

/// Where a cross-cluster DLO manifest keeps its `X-Object-Manifest` value.
pub const MARKER: &str = "x-object-meta-swiftfed-object-manifest";
const MANIFEST: &str = "x-object-manifest";

#[derive(Debug, thiserror::Error)]
pub enum DloError {
    #[error(transparent)]
    Listing(#[from] ListingError),
    #[error("segment listing from {0} is not JSON: {1}")]
    Parse(String, String),
}

impl DloError {
    pub fn status(&self) -> StatusCode {
        match self {
            DloError::Listing(e) => e.status(),
            DloError::Parse(..) => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The segment container and prefix an `X-Object-Manifest` value names (percent-decoded).
fn split_manifest(value: &str) -> Option<(String, String)> {
    let decoded = decode(value.trim_start_matches('/'))?;
    let (container, prefix) = decoded.split_once('/').unwrap_or((decoded.as_str(), ""));
    (!container.is_empty()).then(|| (container.to_string(), prefix.to_string()))
}

/// On a `PUT`/`POST` of an object going to `dest_cluster` (`None`: local): an
/// `X-Object-Manifest` naming a container in another cluster is moved to [`MARKER`]. A client
/// setting the marker itself is ignored (it would make the sidecar read where it says).
pub fn mark_request(
    headers: &mut HeaderMap,
    routes: &RouteTable,
    account: &str,
    dest_cluster: Option<&str>,
) {
    headers.remove(MARKER);
    let Some(value) = headers.get(MANIFEST).cloned() else {
        return;
    };
    let Some((container, _)) = value.to_str().ok().and_then(split_manifest) else {
        return;
    };
    let lives = routes
        .lookup(account, Some(&container))
        .map(|r| r.cluster.as_str());
    if lives != dest_cluster {
        headers.remove(MANIFEST);
        headers.insert(HeaderName::from_static(MARKER), value);
    }
}

/// The manifest value of a cross-cluster DLO, from a response's headers.
pub fn marker(headers: &HeaderMap) -> Option<String> {
    headers
        .get(MARKER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `?multipart-manifest=get` (or any answer that is the manifest itself): shown as Swift shows
/// a DLO manifest.
pub fn show_manifest(headers: &mut HeaderMap) {
    if let Some(v) = headers.remove(MARKER) {
        headers.insert(HeaderName::from_static(MANIFEST), v);
    }
}

/// Lists the segments (every page), in name order.
async fn segments(
    state: &State,
    active: &Active,
    client_headers: &HeaderMap,
    account: &str,
    container: &str,
    prefix: &str,
) -> Result<(Vec<Segment>, String), DloError> {
    let route = active.routes.lookup(account, Some(container));
    let (cluster, target_account, target_container) = match route {
        Some(r) => {
            let t = r.target(account, Some(container));
            (
                Some(r.cluster.clone()),
                t.account,
                t.container.unwrap_or_else(|| container.to_string()),
            )
        }
        None => (None, account.to_string(), container.to_string()),
    };
    let base = format!(
        "/v1/{}/{}",
        encode_segment(&target_account),
        encode_segment(&target_container)
    );
    let mut out = Vec::new();
    let mut etags = Md5::new();
    let mut marker: Option<String> = None;
    loop {
        let mut query = format!("format=json&prefix={}", encode_segment(prefix));
        if let Some(m) = &marker {
            query.push_str(&format!("&marker={}", encode_segment(m)));
        }
        let page = listing::send(
            state,
            active,
            client_headers,
            cluster.as_deref(),
            Method::GET,
            format!("{base}?{query}"),
        )
        .await?;
        if !page.status.is_success() || page.body.is_empty() {
            break;
        }
        let records: Vec<Object> = serde_json::from_slice(&page.body).map_err(|e| {
            DloError::Parse(cluster.clone().unwrap_or("local".into()), e.to_string())
        })?;
        for r in &records {
            let Some(name) = r.name() else { continue };
            marker = Some(name.to_string());
            if let Some(hash) = r.get("hash").and_then(|h| h.as_str()) {
                etags.update(hash.trim_matches('"').as_bytes());
            }
            out.push(Segment {
                cluster: cluster.clone(),
                path: format!(
                    "{base}/{}",
                    percent_encoding::utf8_percent_encode(name, OBJECT)
                ),
                bytes: r.number("bytes"),
                ..Segment::default()
            });
        }
        if records.is_empty() {
            break;
        }
    }
    let etag: String = etags
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((out, etag))
}

/// Object names in paths: like a segment, `/` kept.
const OBJECT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// The assembled object for a `GET`/`HEAD` whose answer (`manifest`) is a cross-cluster DLO
/// manifest with value `value`.
#[allow(clippy::too_many_arguments)]
pub async fn assemble(
    state: &Arc<State>,
    active: &Arc<Active>,
    client_headers: &HeaderMap,
    account: &str,
    method: &Method,
    manifest_headers: &HeaderMap,
    value: &str,
) -> Result<Response<ProxyBody>, DloError> {
    let (container, prefix) = split_manifest(value).unwrap_or_default();
    let (segments, etag) =
        segments(state, active, client_headers, account, &container, &prefix).await?;
    let mut headers = manifest_headers.clone();
    show_manifest(&mut headers);
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{etag}\"")).unwrap_or(HeaderValue::from_static("")),
    );
    Ok(segments::respond(
        state,
        active,
        client_headers,
        method,
        headers,
        segments,
        segments::Flavour::Dlo,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_values_split() {
        assert_eq!(
            split_manifest("segs%20x/a/b"),
            Some(("segs x".into(), "a/b".into()))
        );
        assert_eq!(split_manifest("segs"), Some(("segs".into(), String::new())));
        assert_eq!(split_manifest("/"), None);
    }
}
