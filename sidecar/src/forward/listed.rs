//! JSON answers rewritten for the client: a `?multipart-manifest=get` or a container listing
//! with the client's names, and container listings showing the sidecar's stand-ins as Swift
//! shows the real things (`standin`). Only in accounts where routes can make either happen:
//! other listings stream through untouched.

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use super::{swift_error, ProxyResponse, Refusal};
use crate::body;
use crate::listing::{self, Format};
use crate::pyformat::Object;
use crate::route_table::RouteTable;
use crate::slo;
use crate::slo_assembly;
use crate::standin;
use crate::swift_path::SwiftPath;

/// A client's container `GET` whose records the sidecar rewrites.
pub(super) struct ContainerListing {
    format: Format,
    account: String,
    container: String,
}

impl ContainerListing {
    /// `None`: a listing the sidecar leaves alone (not a container `GET`, plain text, which
    /// shows names only, or an account where neither renamed links nor stand-ins can be).
    pub(super) fn of(
        routes: &RouteTable,
        method: &Method,
        path: &SwiftPath<'_>,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> Option<ContainerListing> {
        if *method != Method::GET || path.has_object {
            return None;
        }
        let container = path.container.as_deref()?;
        let possible = slo::renames(routes, &path.account)
            || !routes.container_routes(&path.account).is_empty();
        if !possible {
            return None;
        }
        let format = listing::format_of(query, headers).filter(|f| *f != Format::Plain)?;
        Some(ContainerListing {
            format,
            account: path.account.clone(),
            container: container.to_string(),
        })
    }

    /// The query sent on: an XML listing is read as JSON (Swift's listing filter renders its
    /// XML from JSON too) and rendered by the sidecar.
    pub(super) fn query(&self, query: Option<&str>) -> Option<String> {
        if self.format == Format::Json {
            return query.map(str::to_string);
        }
        let mut pairs: Vec<&str> = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty() && p.split('=').next() != Some("format"))
            .collect();
        pairs.push("format=json");
        Some(pairs.join("&"))
    }

    /// The cluster's JSON answer with each record as `also` leaves it and stand-ins shown as
    /// Swift shows the real things, in the client's format.
    pub(super) async fn back(
        &self,
        response: ProxyResponse,
        mut also: impl FnMut(&mut Object) -> bool,
    ) -> Result<ProxyResponse, Refusal> {
        let rewrite = |b: &[u8]| {
            let mut records = serde_json::from_slice::<Vec<Object>>(b).ok()?;
            let mut changed = false;
            for record in &mut records {
                changed |= also(record);
                changed |= standin::listing_record(record, &self.account);
            }
            match self.format {
                Format::Json => changed.then(|| crate::pyformat::dumps(&records)),
                _ => Some(listing::render_container(
                    self.format,
                    &self.container,
                    &records,
                )),
            }
        };
        let content_type = (self.format != Format::Json).then(|| self.format.content_type());
        json_back(response, rewrite, content_type).await
    }
}

/// A JSON answer (`?multipart-manifest=get`, a container listing) with the client's names, as
/// `rename` gives them (`None`: unchanged), and the ETag of what the client then reads, as one
/// cluster holding those names would send.
pub(super) async fn json_names_back(
    response: ProxyResponse,
    rename: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
) -> Result<ProxyResponse, Refusal> {
    json_back(response, rename, None).await
}

/// A JSON answer rewritten (`None`: unchanged), then in `content_type` when given.
async fn json_back(
    response: ProxyResponse,
    rewrite: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    content_type: Option<&'static str>,
) -> Result<ProxyResponse, Refusal> {
    let ProxyResponse::Upstream { response, idle } = response else {
        return Ok(response);
    };
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // The sidecar's stored manifests already hold the client's names.
    let stored = slo_assembly::marker(response.headers()).is_some();
    if response.status() != StatusCode::OK || !json || stored {
        return Ok(ProxyResponse::Upstream { response, idle });
    }
    let (mut parts, incoming) = response.into_parts();
    let bytes = body::read_to_end(incoming, crate::subrequest::MAX_BODY)
        .await
        .map_err(|e| Refusal::Denied(swift_error(StatusCode::BAD_GATEWAY, &e)))?
        .ok_or_else(|| Refusal::Denied(swift_error(StatusCode::BAD_GATEWAY, "answer too large")))?;
    let bytes = match rewrite(&bytes) {
        Some(rewritten) => {
            if let Some(v) = content_type {
                parts
                    .headers
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            }
            rewritten
        }
        None => bytes,
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    if parts.headers.contains_key(header::ETAG) {
        use md5::Digest;
        let digest: String = md5::Md5::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if let Ok(v) = HeaderValue::from_str(&digest) {
            parts.headers.insert(header::ETAG, v);
        }
    }
    parts.headers.remove(header::TRANSFER_ENCODING);
    Ok(ProxyResponse::Local(Response::from_parts(
        parts,
        body::full(bytes),
    )))
}
