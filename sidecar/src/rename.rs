//! Headers that carry account/container names (DESIGN.md step 4): renamed on the way to the
//! target and back in responses. A header naming a container that lives in another cluster than
//! the one the request goes to is refused: those operations need the cross-cluster support.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::route_table::RouteTable;
use crate::swift_path::{decode, encode_segment};

/// (header with `container[/rest]`, header with its account if any, value is only a container)
const REQUEST_NAMES: [(&str, Option<&str>, bool); 6] = [
    ("x-copy-from", Some("x-copy-from-account"), false),
    ("destination", Some("destination-account"), false),
    ("x-symlink-target", Some("x-symlink-target-account"), false),
    ("x-object-manifest", None, false),
    ("x-versions-location", None, true),
    ("x-history-location", None, true),
];

const RESPONSE_NAMES: [(&str, Option<&str>, bool); 5] = [
    ("x-copied-from", Some("x-copied-from-account"), false),
    ("x-symlink-target", Some("x-symlink-target-account"), false),
    ("x-object-manifest", None, false),
    ("x-versions-location", None, true),
    ("x-history-location", None, true),
];

/// Where a request goes: the cluster (`None` = local proxy) and the account name there.
pub struct Placement<'a> {
    pub cluster: Option<&'a str>,
    pub account: &'a str,
}

struct NameRef<'v> {
    leading_slash: bool,
    container: String,
    rest_raw: &'v str,
}

fn split_value(raw: &str, container_only: bool) -> Option<NameRef<'_>> {
    let leading_slash = raw.starts_with('/');
    let body = raw.trim_start_matches('/');
    let (container_raw, rest_raw) = if container_only {
        (body, "")
    } else {
        match body.find('/') {
            Some(i) => (&body[..i], &body[i..]),
            None => (body, ""),
        }
    };
    let container = decode(container_raw)?;
    if container.is_empty() {
        return None;
    }
    Some(NameRef {
        leading_slash,
        container,
        rest_raw,
    })
}

fn build_value(name: &NameRef<'_>, container: &str) -> Option<HeaderValue> {
    let slash = if name.leading_slash { "/" } else { "" };
    HeaderValue::from_str(&format!(
        "{slash}{}{}",
        encode_segment(container),
        name.rest_raw
    ))
    .ok()
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Renames names in request headers for `dest`. `Err` carries a message for the client.
pub fn rewrite_request(
    headers: &mut HeaderMap,
    table: &RouteTable,
    client_account: &str,
    dest: &Placement<'_>,
) -> Result<(), String> {
    for (header, account_header, container_only) in REQUEST_NAMES {
        let Some(raw) = header_str(headers, header).map(str::to_string) else {
            continue;
        };
        // Values Swift cannot decode are left for Swift to refuse.
        let Some(name) = split_value(&raw, container_only) else {
            continue;
        };
        let account = match account_header.and_then(|h| header_str(headers, h)) {
            Some(a) => match decode(a) {
                Some(a) => a,
                None => continue,
            },
            None => client_account.to_string(),
        };
        let (cluster, target_account, target_container) =
            match table.lookup(&account, Some(&name.container)) {
                Some(route) => {
                    let t = route.target(&account, Some(&name.container));
                    (Some(route.cluster.as_str()), t.account, t.container)
                }
                None => (None, account.clone(), Some(name.container.clone())),
            };
        if cluster != dest.cluster {
            return Err(format!(
                "{header} names container {:?} of account {account:?}, which lives in {}, \
                 while this request goes to {}; operations spanning clusters are not supported yet",
                name.container,
                place(cluster),
                place(dest.cluster),
            ));
        }
        let target_container = target_container.unwrap_or_else(|| name.container.clone());
        if target_container != name.container {
            if let Some(v) = build_value(&name, &target_container) {
                headers.insert(HeaderName::from_static(header), v);
            }
        }
        let account_header_present = account_header.is_some_and(|h| headers.contains_key(h));
        match account_header {
            Some(h) if account_header_present || target_account != dest.account => {
                if let Ok(v) = HeaderValue::from_str(&encode_segment(&target_account)) {
                    headers.insert(HeaderName::from_static(h), v);
                }
            }
            None if target_account != dest.account => {
                return Err(format!(
                    "{header} names container {:?}, which a route moves to account \
                     {target_account:?}, while this request goes to account {:?}",
                    name.container, dest.account
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn place(cluster: Option<&str>) -> String {
    match cluster {
        Some(c) => format!("cluster {c:?}"),
        None => "the local cluster".to_string(),
    }
}

/// Renames names in response headers from `cluster` back to the client's names.
pub fn rewrite_response(
    headers: &mut HeaderMap,
    table: &RouteTable,
    cluster: &str,
    target_account: &str,
    client_account: &str,
) {
    for (header, account_header, container_only) in RESPONSE_NAMES {
        let Some(raw) = header_str(headers, header).map(str::to_string) else {
            continue;
        };
        let Some(name) = split_value(&raw, container_only) else {
            continue;
        };
        let account = account_header
            .and_then(|h| header_str(headers, h))
            .and_then(decode)
            .unwrap_or_else(|| target_account.to_string());
        let Some((back_account, back_container)) =
            table.client_names(cluster, &account, &name.container)
        else {
            continue;
        };
        if back_container != name.container {
            if let Some(v) = build_value(&name, &back_container) {
                headers.insert(HeaderName::from_static(header), v);
            }
        }
        if let Some(h) = account_header {
            if headers.contains_key(h) || back_account != client_account {
                if let Ok(v) = HeaderValue::from_str(&encode_segment(&back_account)) {
                    headers.insert(HeaderName::from_static(h), v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swiftfed_crds::RoutingTable;

    fn table() -> RouteTable {
        let t = RoutingTable::from_slice(
            br#"
clusters: [{name: b, endpoints: ["http://127.0.0.1:1"]}]
routes:
- {match: {account: A, container: {exact: "docs"}}, target: {cluster: b, account: B, container: "docs-b"}}
- {match: {account: A, container: {prefix: "fed-"}}, target: {cluster: b, account: B}}
"#,
        )
        .expect("valid");
        RouteTable::new(&t, None)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    const TO_B: Placement<'static> = Placement {
        cluster: Some("b"),
        account: "B",
    };

    #[test]
    fn copy_within_the_target_is_renamed() {
        let mut h = headers(&[("x-copy-from", "/docs/a%20b/c")]);
        rewrite_request(&mut h, &table(), "A", &TO_B).expect("same cluster");
        assert_eq!(h["x-copy-from"], "/docs-b/a%20b/c");
        let mut h = headers(&[("destination", "fed-x/o"), ("destination-account", "A")]);
        rewrite_request(&mut h, &table(), "A", &TO_B).expect("same cluster");
        assert_eq!(h["destination"], "fed-x/o");
        assert_eq!(h["destination-account"], "B");
    }

    #[test]
    fn cross_cluster_references_are_refused() {
        let mut h = headers(&[("x-copy-from", "local-only/o")]);
        let err = rewrite_request(&mut h, &table(), "A", &TO_B).expect_err("cross-cluster");
        assert!(err.contains("local cluster"), "{err}");
        let mut h = headers(&[("x-object-manifest", "fed-segments/prefix")]);
        let local = Placement {
            cluster: None,
            account: "A",
        };
        assert!(rewrite_request(&mut h, &table(), "A", &local).is_err());
        let mut h = headers(&[("x-versions-location", "other")]);
        assert!(rewrite_request(&mut h, &table(), "A", &local).is_ok());
    }

    #[test]
    fn responses_get_client_names_back() {
        let mut h = headers(&[
            ("x-copied-from", "docs-b/o"),
            ("x-copied-from-account", "B"),
        ]);
        rewrite_response(&mut h, &table(), "b", "B", "A");
        assert_eq!(h["x-copied-from"], "docs/o");
        assert_eq!(h["x-copied-from-account"], "A");
        let mut h = headers(&[("x-object-manifest", "fed-seg/p")]);
        rewrite_response(&mut h, &table(), "b", "B", "A");
        assert_eq!(h["x-object-manifest"], "fed-seg/p");
    }
}
