//! A request for a routed account or container: renamed, authorized (with the sidecar's own
//! credentials, locally first), sent to the route's cluster, and its answer renamed back.
//! `Migrate` routes also read and delete in the local cluster.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use swiftfed_crds::routing::RouteMode;

use super::authorize::{
    acl_only_reaches_beyond, authorize_locally_in, followed_object, is_owner,
    reads_segments_elsewhere,
};
use super::large_objects::{
    keep_slo_marker, large_object, link_elsewhere, manifest_delete, manifest_put, relabel_guessed,
    stored_manifest_answer,
};
use super::listed::{json_names_back, ContainerListing};
use super::{
    path_with, response_status, send_timed, swift_error, ProxyResponse, Record, Refusal, Req,
};
use crate::auth::{self, Access};
use crate::dlo;
use crate::listing;
use crate::rename::{self, Placement};
use crate::route_table::Route;
use crate::slo;
use crate::symlink;
use crate::upstream::Outgoing;

pub(super) async fn send_routed(
    req: &Req<'_>,
    route: &Route,
    mut headers: HeaderMap,
    expect_continue: bool,
    record: &mut Record,
) -> Result<ProxyResponse, Refusal> {
    let Req {
        state,
        active,
        method,
        path,
        raw_path,
        query,
        body,
    } = *req;
    record.counters = route.counters(&state.metrics).clone();
    let cluster = active.clusters.get(&route.cluster).ok_or_else(|| {
        Refusal::Unavailable(format!("route names unknown cluster {:?}", route.cluster))
    })?;
    let target = route.target(&path.account, path.routing_container());
    let new_account = (target.account != path.account).then_some(target.account.as_str());
    let new_container = target
        .container
        .as_deref()
        .filter(|c| Some(*c) != path.routing_container());
    let target_path = path.rewrite(new_account, new_container);
    let dest = Placement {
        cluster: Some(&route.cluster),
        account: &target.account,
    };
    let client_headers = headers.clone();
    let credentials = cluster.tokens.as_ref();
    // With the sidecar's own credentials, nothing about the request is acted on (not even an
    // error naming routes) before the local cluster has authorized the client.
    // Granted by a container ACL only: the target must not act on anything else on the
    // client's behalf with the sidecar's owner-level token (see `acl_only_reaches_beyond`).
    let mut acl_only = false;
    if credentials.is_some() {
        let own = path.container.as_deref().map(|c| (c, path.has_object));
        acl_only = authorize_locally_in(state, &client_headers, &path.account, own, method).await?;
        if acl_only && acl_only_reaches_beyond(method, query, &headers) {
            return Err(Refusal::Forbidden(
                "large object manifests and symlinks are not forwarded for a client allowed by \
                 a container ACL only"
                    .into(),
            ));
        }
    }
    if path.has_object && matches!(*method, Method::PUT | Method::POST) {
        dlo::mark_request(
            &mut headers,
            &active.routes,
            &path.account,
            Some(&route.cluster),
        );
        let here = Some(route.cluster.as_str());
        if let Some(refusal) =
            link_elsewhere(state, active, method, path, here, &mut headers).await?
        {
            return Ok(ProxyResponse::Local(refusal));
        }
        let at = (Some(route.cluster.as_str()), target_path.as_str());
        keep_slo_marker(state, active, method, path, &mut headers, at).await?;
    }
    let here = (Some(route.cluster.as_str()), target_path.as_str());
    if let Some(r) =
        manifest_delete(state, active, method, path, query, &client_headers, here).await?
    {
        return Ok(ProxyResponse::Local(r));
    }
    rename::rewrite_request(&mut headers, &active.routes, &path.account, &dest)
        .map_err(Refusal::BadRequest)?;
    // An SLO manifest: with segments elsewhere, checked and stored by the sidecar
    // (`slo_assembly`); into a renaming route, its segment paths renamed (`slo`).
    let mut manifest = None;
    if *method == Method::PUT
        && path.has_object
        && slo::is_manifest(query, "put")
        && (slo::renames(&active.routes, &path.account)
            || !active.routes.container_routes(&path.account).is_empty())
    {
        let here = Some(route.cluster.as_str());
        let renamed = |bytes: Vec<u8>| {
            slo::rename_put(&bytes, &active.routes, &path.account, &dest).unwrap_or(bytes)
        };
        match manifest_put(req, here, &client_headers, &mut headers, renamed).await? {
            Err(refusal) => return Ok(ProxyResponse::Local(refusal)),
            Ok(put) => manifest = Some(put),
        }
    }
    let mut sent_query = match &manifest {
        Some(put) => put.sent_query.clone(),
        None => query.map(str::to_string),
    };
    let body = manifest.as_ref().map_or(body, |put| &put.body);

    let mut sidecar_token = None;
    let mut upstream_expect = expect_continue;
    if let Some(tokens) = credentials {
        if path.container.is_none() && Access::of(method) == Access::Write {
            return Err(Refusal::Forbidden(format!(
                "account-level {} on a federated account is not forwarded with Credentials auth",
                *method
            )));
        }
        if auth::has_owner_headers(&headers)
            && !is_owner(state, &client_headers, &path.account).await
        {
            // Swift ignores these from non-owners; so must the owner-level sidecar token.
            auth::strip_owner_headers(&mut headers);
        }
        auth::strip_client_auth(&mut headers);
        let token = tokens
            .token()
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        headers.insert("x-auth-token", token.clone());
        sidecar_token = Some(token);
        // Hold the body until the target accepts the token, so a refused token can be renewed
        // and the request retried with the body intact.
        if !body.is_end_stream() && !upstream_expect {
            headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
            upstream_expect = true;
        }
    }

    if route.mode == RouteMode::Migrate
        && !path.has_object
        && matches!(*method, Method::GET | Method::HEAD)
        && path.container.as_deref() == path.routing_container()
    {
        if let (Some(container), Some(target_container)) = (&path.container, &target.container) {
            let ctx = listing::Ctx {
                state,
                active,
                client_headers: &client_headers,
                account: &path.account,
            };
            let there = listing::TargetContainer {
                cluster: &route.cluster,
                account: &target.account,
                container: target_container,
            };
            let merged = listing::migrating_container(&ctx, method, container, &there, query);
            if let Some(r) = merged
                .await
                .map_err(|e| Refusal::Denied(swift_error(e.status(), &e.to_string())))?
            {
                return Ok(ProxyResponse::Local(r));
            }
        }
    }

    let listed = ContainerListing::of(&active.routes, method, path, query, &client_headers);
    if let Some(listed) = &listed {
        sent_query = listed.query(sent_query.as_deref());
    }
    let out = Outgoing {
        method: method.clone(),
        path_and_query: path_with(sent_query.as_deref(), target_path.clone()),
        headers,
        endpoint_host: true,
        expect_continue: upstream_expect,
    };
    let relabel_sent = manifest
        .as_ref()
        .and_then(|put| put.relabel.as_ref())
        .map(|_| out.clone());
    // Container ACLs as the target will have them, mirrored locally once it accepts them.
    let shadow_update = credentials.and_then(|_| {
        crate::acl_shadow::update(method, path, &out.headers, route.mode == RouteMode::Migrate)
    });
    let mut response = send_timed(&cluster.upstream, &out, body, &record.counters).await?;

    // A refused sidecar token (expired early, or the target restarted): fetch a new one and try
    // again, only when nothing of the body was sent.
    if let (Some(token), Some(tokens)) = (&sidecar_token, credentials) {
        if response_status(&response) == Some(StatusCode::UNAUTHORIZED) && !body.touched() {
            tokens.invalidate(token);
            let fresh = tokens
                .token()
                .await
                .map_err(|e| Refusal::Unavailable(e.to_string()))?;
            let mut out = out;
            out.headers.insert("x-auth-token", fresh);
            response = send_timed(&cluster.upstream, &out, body, &record.counters).await?;
        }
    }

    if let (Some(update), Some(container)) = (shadow_update, path.container.as_deref()) {
        if let Some(status) = response_status(&response).filter(|s| s.is_success()) {
            crate::acl_shadow::apply(
                &state.local,
                &client_headers,
                &path.account,
                container,
                update,
                status,
            )
            .await;
        }
    }

    if credentials.is_some() {
        if let ProxyResponse::Upstream { response, .. } = &mut response {
            // A symlink the target followed into another account: the client must be allowed
            // to read there, locally, before it sees a byte.
            if let Some((account, container)) =
                followed_object(response.headers(), &active.routes, &route.cluster)
            {
                if account != path.account
                    || (acl_only && Some(container.as_str()) != path.container.as_deref())
                {
                    let own = Some((container.as_str(), true));
                    authorize_locally_in(state, &client_headers, &account, own, &Method::GET)
                        .await?;
                }
            }
            // A manifest's segments are read by the target with the sidecar's token: a client
            // allowed by a container ACL only gets them only from its own container.
            if acl_only
                && reads_segments_elsewhere(response.headers(), query, path.container.as_deref())
            {
                return Err(Refusal::Forbidden(
                    "large objects are not read for a client allowed by a container ACL only, \
                     unless their segments are in the same container"
                        .into(),
                ));
            }
            if auth::has_owner_headers(response.headers())
                && !is_owner(state, &client_headers, &path.account).await
            {
                auth::strip_owner_headers(response.headers_mut());
            }
        }
    }

    // Migrate: an object is deleted from both clusters; found in either, it is gone.
    if route.mode == RouteMode::Migrate && path.has_object && *method == Method::DELETE {
        let out = Outgoing {
            method: Method::DELETE,
            path_and_query: req.with_query(raw_path.to_string()),
            headers: client_headers.clone(),
            endpoint_host: false,
            expect_continue: false,
        };
        let local_counters = state.metrics.route_counters(&route.label, "local");
        let local = send_timed(&state.local, &out, body, &local_counters).await?;
        let target_status = response_status(&response);
        let local_status = response_status(&local);
        if target_status == Some(StatusCode::NOT_FOUND)
            && local_status.is_some_and(|s| s.is_success())
        {
            record.counters = local_counters;
            return Ok(local);
        }
    }

    // Migrate: objects not yet on the target are still read from the local cluster.
    if route.mode == RouteMode::Migrate
        && path.has_object
        && matches!(*method, Method::GET | Method::HEAD)
        && response_status(&response) == Some(StatusCode::NOT_FOUND)
    {
        let out = Outgoing {
            method: method.clone(),
            path_and_query: req.with_query(raw_path.to_string()),
            headers: client_headers,
            endpoint_host: false,
            expect_continue: false,
        };
        record.counters = state.metrics.route_counters(&route.label, "local");
        return send_timed(&state.local, &out, body, &record.counters).await;
    }

    if let Some(put) = manifest {
        if let (Some((marker, stored)), Some(sent)) = (put.relabel, &relabel_sent) {
            let upstream = &cluster.upstream;
            let counters = &record.counters;
            response =
                relabel_guessed(upstream, sent, stored.into(), &marker, response, counters).await?;
        }
        if let Some(answer) = &put.answer {
            response = stored_manifest_answer(response, answer).await?;
        }
    }
    if let ProxyResponse::Upstream { response, .. } = &mut response {
        rename::rewrite_response(
            response.headers_mut(),
            &active.routes,
            &route.cluster,
            &target.account,
            &path.account,
        );
    }
    if *method == Method::GET
        && path.has_object
        && slo::is_manifest(query, "get")
        && slo::renames(&active.routes, &path.account)
    {
        let rename = |b: &[u8]| slo::rename_get(b, &active.routes, &route.cluster, &target.account);
        response = json_names_back(response, rename).await?;
    }
    // Links inside the target are listed with the target's names (`symlink_path`), and
    // stand-ins as what they stand for.
    if let Some(listed) = &listed {
        let renames = slo::renames(&active.routes, &path.account);
        let rename = |r: &mut crate::pyformat::Object| {
            renames && symlink::listing_path_back(r, &active.routes, &route.cluster)
        };
        response = listed.back(response, rename).await?;
    }
    large_object(
        state,
        active,
        method,
        path,
        query,
        &client_headers,
        response,
        (Some(route.cluster.as_str()), &target_path),
    )
    .await
}
