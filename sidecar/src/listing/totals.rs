//! An account's object and byte counts including its routed containers.

use std::collections::VecDeque;

use http::header::HeaderMap;
use http::Method;
use swiftfed_crds::routing::ContainerMatch;

use crate::pyformat::Object as Record;
use crate::state::{Active, State};
use crate::swift_path::encode_segment;

use super::{fetch_page, send, to_source, Ctx, ListingError, Params, Source, MAX_LIMIT};

#[derive(Default)]
pub(super) struct Totals {
    pub(super) containers: u64,
    pub(super) objects: u64,
    pub(super) bytes: u64,
}

/// Routed containers whose own `HEAD` gives their numbers; beyond that many, the targets'
/// account-listing numbers are used (one request per page instead of one per container).
pub(super) const HEAD_LIMIT: usize = 100;

/// Every routed container of the account (all pages, no client filters), counted with its own
/// container `HEAD` on its cluster (up to [`HEAD_LIMIT`] containers), else with its target's
/// account-listing numbers.
pub(super) async fn routed_totals(
    state: &State,
    active: &Active,
    client_headers: &HeaderMap,
    account: &str,
    sources: &[Source<'_>],
) -> Result<Totals, ListingError> {
    let all = Params {
        limit: MAX_LIMIT,
        ..Params::default()
    };
    let ctx = Ctx {
        state,
        active,
        client_headers,
        account,
    };
    // (cluster, account on it, container on it, listed objects, listed bytes)
    let mut routed = Vec::new();
    for template in sources {
        let mut source = Source {
            cluster: template.cluster,
            account: template.account.clone(),
            route: template.route,
            source_prefix: template.source_prefix.clone(),
            objects: template.objects.clone(),
            buffer: VecDeque::new(),
            next_marker: None,
            done: false,
        };
        while !source.done {
            fetch_page(&ctx, &mut source, &all).await?;
            while let Some((client, record)) = source.buffer.pop_front() {
                if let Some(name) = to_source(&source, account, &client) {
                    routed.push((
                        source.cluster,
                        source.account.clone(),
                        name,
                        record.number("count"),
                        record.number("bytes"),
                    ));
                }
            }
        }
    }
    let mut totals = Totals::default();
    let each_head = routed.len() <= HEAD_LIMIT;
    for (cluster, target_account, name, listed_objects, listed_bytes) in routed {
        if !each_head {
            totals.containers += 1;
            totals.objects += listed_objects;
            totals.bytes += listed_bytes;
            continue;
        }
        let path = format!(
            "/v1/{}/{}",
            encode_segment(&target_account),
            encode_segment(&name)
        );
        let head = send(state, active, client_headers, cluster, Method::HEAD, path).await?;
        if !head.status.is_success() {
            continue;
        }
        let number = |h: &str| -> u64 {
            head.headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        totals.containers += 1;
        totals.objects += number("x-container-object-count");
        totals.bytes += number("x-container-bytes-used");
    }
    Ok(totals)
}

/// Home containers a route sends elsewhere (left behind, or the local half of a migration):
/// not listed, so not counted either. Only the routes' own name ranges are listed on the home,
/// with the home's own account-listing numbers for them.
pub(super) async fn shadowed_totals(
    state: &State,
    active: &Active,
    client_headers: &HeaderMap,
    account: &str,
    sources: &[Source<'_>],
) -> Result<Totals, ListingError> {
    let Some(home) = sources.last() else {
        return Ok(Totals::default());
    };
    let home_route = active.routes.lookup(account, None);
    let mut totals = Totals::default();
    for route in sources.iter().filter_map(|s| s.route) {
        let prefix = match &route.matcher {
            Some(ContainerMatch::Exact(e)) | Some(ContainerMatch::Prefix(e)) => e,
            None => continue,
        };
        let mut marker: Option<String> = None;
        loop {
            let mut query = format!(
                "format=json&limit={MAX_LIMIT}&prefix={}",
                encode_segment(prefix)
            );
            if let Some(m) = &marker {
                query.push_str(&format!("&marker={}", encode_segment(m)));
            }
            let path = format!("/v1/{}?{query}", encode_segment(&home.account));
            let page = send(
                state,
                active,
                client_headers,
                home.cluster,
                Method::GET,
                path,
            )
            .await?;
            if !page.status.is_success() || page.body.is_empty() {
                break;
            }
            let records: Vec<Record> = serde_json::from_slice(&page.body)
                .map_err(|e| ListingError::Parse("home".into(), e.to_string()))?;
            for r in &records {
                let Some(name) = r.name() else {
                    continue;
                };
                marker = Some(name.to_string());
                let goes = active.routes.lookup(account, Some(name));
                let elsewhere = match (goes, home_route) {
                    (Some(g), Some(h)) => !std::ptr::eq(g, h),
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                // Counted once per route range: only where this route is the one it goes to.
                if elsewhere && goes.is_some_and(|g| std::ptr::eq(g, route)) {
                    totals.containers += 1;
                    totals.objects += r.number("count");
                    totals.bytes += r.number("bytes");
                }
            }
            if records.len() < MAX_LIMIT {
                break;
            }
        }
    }
    Ok(totals)
}
