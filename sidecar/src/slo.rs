//! Names inside Static Large Object manifests (issue item 8): a manifest `PUT`
//! (`?multipart-manifest=put`) into a route that renames containers has its segments' paths
//! renamed for the target, and `?multipart-manifest=get` answers have them renamed back, so
//! that python-swiftclient's `swift upload` (SLO by default) works into renamed containers and
//! a client never sees the target's names. Manifests with segments in another cluster than
//! theirs are the sidecar's (`slo_assembly`).

use crate::pyformat::{dumps, Object};
use crate::rename::Placement;
use crate::route_table::RouteTable;

/// Swift's default `max_manifest_size` is 8 MiB; anything larger Swift refuses anyway.
pub const MAX_MANIFEST: usize = 8 * 1024 * 1024;

/// Whether a query asks for `multipart-manifest=<what>`.
pub fn is_manifest(query: Option<&str>, what: &str) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .any(|p| p == format!("multipart-manifest={what}"))
}

/// Whether names in this account's manifests may need renaming.
pub fn renames(routes: &RouteTable, account: &str) -> bool {
    routes
        .lookup(account, None)
        .into_iter()
        .chain(routes.container_routes(account))
        .any(|r| r.renames())
}

fn split(path: &str) -> Option<(&str, &str)> {
    path.strip_prefix('/').unwrap_or(path).split_once('/')
}

/// The manifest body for the target (every segment in `dest`'s cluster, see
/// `slo_put::crosses`); `None` when nothing changes. Bodies that are not a JSON list are
/// left for Swift to refuse.
pub fn rename_put(
    body: &[u8],
    routes: &RouteTable,
    account: &str,
    dest: &Placement<'_>,
) -> Option<Vec<u8>> {
    let mut segments = serde_json::from_slice::<Vec<Object>>(body).ok()?;
    let mut changed = false;
    for segment in &mut segments {
        let Some(path) = segment
            .get("path")
            .and_then(|p| p.as_str())
            .map(str::to_string)
        else {
            continue;
        };
        let Some((container, object)) = split(&path) else {
            continue;
        };
        let target = match routes.lookup(account, Some(container)) {
            Some(r) if Some(r.cluster.as_str()) == dest.cluster => {
                r.target(account, Some(container)).container
            }
            _ => None,
        };
        if let Some(target) = target.filter(|t| t != container) {
            segment.set("path", format!("/{target}/{object}"));
            changed = true;
        }
    }
    changed.then(|| dumps(&segments))
}

/// A `?multipart-manifest=get` answer from `cluster` with the client's names back (`name` in
/// Swift's listing form, `path` in `format=raw`); `None` when nothing needs changing.
pub fn rename_get(
    body: &[u8],
    routes: &RouteTable,
    cluster: &str,
    target_account: &str,
) -> Option<Vec<u8>> {
    let mut segments = serde_json::from_slice::<Vec<Object>>(body).ok()?;
    let mut changed = false;
    for segment in &mut segments {
        for key in ["name", "path"] {
            let Some(path) = segment
                .get(key)
                .and_then(|p| p.as_str())
                .map(str::to_string)
            else {
                continue;
            };
            let Some((container, object)) = split(&path) else {
                continue;
            };
            if let Some((_, client)) = routes.client_names(cluster, target_account, container) {
                if client != container {
                    segment.set(key, format!("/{client}/{object}"));
                    changed = true;
                }
            }
        }
    }
    changed.then(|| dumps(&segments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use swiftfed_crds::RoutingTable;

    #[test]
    fn manifest_paths_are_renamed_both_ways() {
        let t = RoutingTable::from_slice(
            br#"
clusters: [{name: b, endpoints: ["http://127.0.0.1:1"]}]
routes:
- {match: {account: A, container: {exact: docs}}, target: {cluster: b, container: docs-b}}
"#,
        )
        .expect("valid");
        let routes = RouteTable::new(&t, None);
        let dest = Placement {
            cluster: Some("b"),
            account: "A",
        };
        let put =
            br#"[{"path": "/docs_segments/o/1", "etag": "x", "size_bytes": 1}, {"data": "eA=="}]"#;
        let out = rename_put(put, &routes, "A", &dest).expect("renamed");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#"[{"path": "/docs-b_segments/o/1", "etag": "x", "size_bytes": 1}, {"data": "eA=="}]"#
        );
        let back = rename_get(
            br#"[{"name": "/docs-b_segments/o/1", "bytes": 1}]"#,
            &routes,
            "b",
            "A",
        )
        .expect("renamed");
        assert_eq!(
            String::from_utf8(back).expect("utf8"),
            r#"[{"name": "/docs_segments/o/1", "bytes": 1}]"#
        );
        let elsewhere = br#"[{"path": "/local/o"}]"#;
        assert!(rename_put(elsewhere, &routes, "A", &dest).is_none());
    }
}
