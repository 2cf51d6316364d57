//! Route lookup: the most specific match wins (exact container > longest prefix > account-wide).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use swiftfed_crds::routing::{ContainerMatch, RouteMode, RoutingTable};

use crate::metrics::{Metrics, RouteCounters};

#[derive(Clone, Debug)]
pub struct Route {
    pub account: String,
    pub matcher: Option<ContainerMatch>,
    pub cluster: String,
    pub target_account: Option<String>,
    pub target_container: Option<String>,
    pub mode: RouteMode,
    /// Containers `<c><suffix>` follow the route of `<c>` (segment containers).
    pub segment_suffixes: Vec<String>,
    /// Stable, human-readable id for logs and metric labels.
    pub label: String,
    /// Its metric series, resolved on first use (see `counters`).
    counters: OnceLock<Arc<RouteCounters>>,
}

/// Where a request's names end up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target<'r> {
    pub cluster: &'r str,
    pub account: String,
    pub container: Option<String>,
}

impl Route {
    /// Names on the target for `account`/`container` matched by this route.
    pub fn target<'r>(&'r self, account: &str, container: Option<&str>) -> Target<'r> {
        let account = self
            .target_account
            .clone()
            .unwrap_or_else(|| account.to_string());
        let container = container.map(|c| match (&self.matcher, &self.target_container) {
            // A segment container that follows this route keeps its suffix after the new name.
            (Some(ContainerMatch::Exact(e)), Some(new)) => {
                format!("{new}{}", c.strip_prefix(e.as_str()).unwrap_or(""))
            }
            (Some(ContainerMatch::Prefix(p)), Some(new)) => {
                format!("{new}{}", c.strip_prefix(p.as_str()).unwrap_or(c))
            }
            _ => c.to_string(),
        });
        Target {
            cluster: &self.cluster,
            account,
            container,
        }
    }

    /// The metric series of requests this route sends to its cluster.
    pub fn counters(&self, metrics: &Metrics) -> &Arc<RouteCounters> {
        self.counters
            .get_or_init(|| metrics.route_counters(&self.label, &self.cluster))
    }

    /// Whether the route renames anything (then headers naming its containers need rewriting).
    pub fn renames(&self) -> bool {
        self.target_account.is_some() || self.target_container.is_some()
    }

    /// The client's container for a container name seen on the target, if this route produced
    /// it (used to rewrite names in responses back).
    pub fn client_container(&self, target_container: &str) -> Option<String> {
        match (&self.matcher, &self.target_container) {
            (Some(ContainerMatch::Exact(c)), Some(new)) => target_container
                .strip_prefix(new.as_str())
                .filter(|rest| rest.is_empty() || self.segment_suffixes.iter().any(|s| s == rest))
                .map(|rest| format!("{c}{rest}")),
            (Some(ContainerMatch::Prefix(p)), Some(new)) => target_container
                .strip_prefix(new.as_str())
                .map(|rest| format!("{p}{rest}")),
            (Some(ContainerMatch::Exact(c)), None) => target_container
                .strip_prefix(c.as_str())
                .filter(|rest| rest.is_empty() || self.segment_suffixes.iter().any(|s| s == rest))
                .map(|_| target_container.to_string()),
            (Some(ContainerMatch::Prefix(p)), None) => target_container
                .starts_with(p.as_str())
                .then(|| target_container.to_string()),
            (None, _) => Some(target_container.to_string()),
        }
    }
}

#[derive(Default, Debug)]
struct AccountRoutes {
    exact: HashMap<String, usize>,
    /// Prefix routes grouped by prefix length in bytes, longest first. A container can match
    /// only one prefix of a given length (its own first bytes), so a lookup costs one hash
    /// probe per distinct length instead of a scan of every prefix.
    prefixes: Vec<(usize, HashMap<String, usize>)>,
    account_wide: Option<usize>,
    /// Every segment suffix some route of the account declares.
    suffixes: Vec<String>,
}

impl AccountRoutes {
    /// The first route (in table order) among those with the longest prefix of `container`,
    /// with that prefix's length.
    fn longest_prefix(&self, container: &str) -> Option<(usize, usize)> {
        self.prefixes.iter().find_map(|(len, by_prefix)| {
            // Not a char boundary: no prefix of this length can match (prefixes are whole
            // UTF-8 strings).
            let head = container.get(..*len)?;
            by_prefix.get(head).map(|idx| (*len, *idx))
        })
    }
}

#[derive(Default, Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    accounts: HashMap<String, AccountRoutes>,
}

impl RouteTable {
    /// Compiles the routes this sidecar uses: those without a proxy selector and those whose
    /// selector matches `pod_labels`. Without pod labels (outside Kubernetes) every route applies.
    pub fn new(table: &RoutingTable, pod_labels: Option<&BTreeMap<String, String>>) -> RouteTable {
        let mut out = RouteTable::default();
        for (i, spec) in table.routes.iter().enumerate() {
            if let (Some(selector), Some(labels)) = (&spec.proxy_selector, pod_labels) {
                if !selector.matches(labels) {
                    continue;
                }
            }
            let label = spec
                .source
                .clone()
                .unwrap_or_else(|| format!("routes[{i}]"));
            let idx = out.routes.len();
            out.routes.push(Route {
                account: spec.matcher.account.clone(),
                matcher: spec.matcher.container.clone(),
                cluster: spec.target.cluster.clone(),
                target_account: spec.target.account.clone(),
                target_container: spec.target.container.clone(),
                mode: spec.mode,
                segment_suffixes: spec.effective_segment_suffixes(),
                label,
                counters: OnceLock::new(),
            });
            let entry = out
                .accounts
                .entry(spec.matcher.account.clone())
                .or_default();
            for suffix in spec.effective_segment_suffixes() {
                if !suffix.is_empty() && !entry.suffixes.contains(&suffix) {
                    entry.suffixes.push(suffix);
                }
            }
            match &spec.matcher.container {
                Some(ContainerMatch::Exact(c)) => {
                    entry.exact.entry(c.clone()).or_insert(idx);
                }
                Some(ContainerMatch::Prefix(p)) => {
                    let group = match entry.prefixes.iter_mut().find(|(l, _)| *l == p.len()) {
                        Some(group) => group,
                        None => {
                            entry.prefixes.push((p.len(), HashMap::new()));
                            entry.prefixes.last_mut().expect("just pushed")
                        }
                    };
                    // The same prefix twice: the first route keeps it, as with exact names.
                    group.1.entry(p.clone()).or_insert(idx);
                }
                None => {
                    entry.account_wide.get_or_insert(idx);
                }
            }
        }
        for entry in out.accounts.values_mut() {
            entry
                .prefixes
                .sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        }
        out
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for a request on `account` (and `container`, for container and object requests).
    /// Account requests only follow account-wide routes. A segment container (`<c><suffix>`)
    /// goes where `<c>` goes when that route lists the suffix, unless a route names the segment
    /// container itself: an exact match, or a prefix longer than `<c>` (shorter prefixes match
    /// `<c>` too and are already weighed by `<c>`'s own lookup).
    pub fn lookup(&self, account: &str, container: Option<&str>) -> Option<&Route> {
        let entry = self.accounts.get(account)?;
        let Some(c) = container else {
            return entry.account_wide.and_then(|i| self.routes.get(i));
        };
        if let Some(i) = entry.exact.get(c) {
            return self.routes.get(*i);
        }
        let prefix = entry.longest_prefix(c);
        for suffix in &entry.suffixes {
            let Some(parent) = c.strip_suffix(suffix.as_str()) else {
                continue;
            };
            if parent.is_empty() || prefix.is_some_and(|(len, _)| len > parent.len()) {
                continue;
            }
            if let Some(route) = self.lookup(account, Some(parent)) {
                if route.segment_suffixes.contains(suffix) {
                    return Some(route);
                }
            }
        }
        let idx = prefix.map(|(_, i)| i).or(entry.account_wide)?;
        self.routes.get(idx)
    }

    /// The routes of `account` that match containers (exact or prefix), in table order.
    pub fn container_routes(&self, account: &str) -> Vec<&Route> {
        let Some(entry) = self.accounts.get(account) else {
            return vec![];
        };
        let mut idx: Vec<usize> = entry.exact.values().copied().collect();
        idx.extend(
            entry
                .prefixes
                .iter()
                .flat_map(|(_, by_prefix)| by_prefix.values().copied()),
        );
        idx.sort_unstable();
        idx.iter().filter_map(|i| self.routes.get(*i)).collect()
    }

    /// The client-side (account, container) for names seen in a response from `cluster`, when
    /// some route maps them there; `None` when no route renames into them.
    pub fn client_names(
        &self,
        cluster: &str,
        target_account: &str,
        target_container: &str,
    ) -> Option<(String, String)> {
        self.routes
            .iter()
            .filter(|r| r.cluster == cluster && r.renames())
            .filter(|r| r.target_account.as_deref().unwrap_or(&r.account) == target_account)
            .find_map(|r| {
                let container = r.client_container(target_container)?;
                // Only if the forward direction maps back to the same place.
                let back = self.lookup(&r.account, Some(&container))?;
                (std::ptr::eq(back, r)).then(|| (r.account.clone(), container))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> RouteTable {
        let t = RoutingTable::from_slice(yaml.as_bytes()).expect("valid table");
        RouteTable::new(&t, None)
    }

    const YAML: &str = r#"
clusters: [{name: b, endpoints: ["http://127.0.0.1:1"]}, {name: c, endpoints: ["http://127.0.0.1:2"]}]
routes:
- match: {account: A}
  target: {cluster: b}
- match: {account: A, container: {prefix: "arch"}}
  target: {cluster: c}
- match: {account: A, container: {prefix: "archive-"}}
  target: {cluster: b, container: "old-"}
- match: {account: A, container: {exact: "archive-2020"}}
  target: {cluster: c, account: X, container: "y2020"}
"#;

    #[test]
    fn most_specific_wins() {
        let t = table(YAML);
        let at = |c: Option<&str>| t.lookup("A", c).map(|r| r.target("A", c));
        assert_eq!(
            at(Some("archive-2020")).map(|t| (t.cluster.to_string(), t.account, t.container)),
            Some(("c".into(), "X".into(), Some("y2020".into())))
        );
        assert_eq!(
            at(Some("archive-2021")).map(|t| (t.cluster.to_string(), t.container)),
            Some(("b".into(), Some("old-2021".into())))
        );
        assert_eq!(
            at(Some("archx")).map(|t| t.cluster.to_string()),
            Some("c".into())
        );
        assert_eq!(
            at(Some("other")).map(|t| t.cluster.to_string()),
            Some("b".into())
        );
        assert_eq!(at(None).map(|t| t.cluster.to_string()), Some("b".into()));
        assert!(t.lookup("B", Some("archive-1")).is_none());
    }

    #[test]
    fn account_requests_need_an_account_wide_route() {
        let t = table(
            r#"
clusters: [{name: b, endpoints: ["http://127.0.0.1:1"]}]
routes: [{match: {account: A, container: {exact: c}}, target: {cluster: b}}]
"#,
        );
        assert!(t.lookup("A", None).is_none());
        assert!(t.lookup("A", Some("c")).is_some());
    }

    #[test]
    fn response_names_map_back() {
        let t = table(YAML);
        assert_eq!(
            t.client_names("b", "A", "old-2021"),
            Some(("A".into(), "archive-2021".into()))
        );
        assert_eq!(
            t.client_names("c", "X", "y2020"),
            Some(("A".into(), "archive-2020".into()))
        );
        assert_eq!(t.client_names("c", "X", "other"), None);
    }

    #[test]
    fn selectors_pick_routes_for_this_pod() {
        let t = RoutingTable::from_slice(
            br#"
clusters: [{name: b, endpoints: ["http://127.0.0.1:1"]}]
routes:
- {match: {account: A}, target: {cluster: b}, proxySelector: {matchLabels: {zone: one}}}
- {match: {account: B}, target: {cluster: b}, proxySelector: {matchLabels: {zone: two}}}
- {match: {account: C}, target: {cluster: b}}
"#,
        )
        .expect("valid");
        let labels: BTreeMap<String, String> = [("zone".to_string(), "one".to_string())].into();
        let rt = RouteTable::new(&t, Some(&labels));
        assert!(rt.lookup("A", Some("x")).is_some());
        assert!(rt.lookup("B", Some("x")).is_none());
        assert!(rt.lookup("C", Some("x")).is_some());
        assert_eq!(RouteTable::new(&t, None).len(), 3);
    }

    #[test]
    fn segment_containers_follow_their_parent() {
        let t = table(
            r#"
clusters: [{name: b, endpoints: ["http://127.0.0.1:1"]}, {name: c, endpoints: ["http://127.0.0.1:2"]}]
routes:
- {match: {account: A, container: {exact: docs}}, target: {cluster: b, container: docs-b}}
- {match: {account: A, container: {prefix: "fed-"}}, target: {cluster: b}}
- {match: {account: A, container: {exact: "fed-x"}}, target: {cluster: c}, segmentSuffixes: ["_segments", "+segments"]}
- {match: {account: A, container: {prefix: "fed-y_seg"}}, target: {cluster: c}}
- {match: {account: A, container: {exact: plain}}, target: {cluster: c}, segmentSuffixes: []}
"#,
        );
        let at = |c: &str| {
            t.lookup("A", Some(c))
                .map(|r| (r.cluster.clone(), r.target("A", Some(c)).container))
        };
        let some = |cluster: &str, c: &str| Some((cluster.to_string(), Some(c.to_string())));
        // Renamed with the parent, suffix kept; and back.
        assert_eq!(at("docs_segments"), some("b", "docs-b_segments"));
        assert_eq!(
            t.client_names("b", "A", "docs-b_segments"),
            Some(("A".into(), "docs_segments".into()))
        );
        // A prefix route would send fed-x_segments to b; it follows fed-x to c instead.
        assert_eq!(at("fed-x_segments"), some("c", "fed-x_segments"));
        assert_eq!(at("fed-x+segments"), some("c", "fed-x+segments"));
        // A suffix this route does not list: the prefix route decides.
        assert_eq!(at("fed-z+segments"), some("b", "fed-z+segments"));
        // A longer prefix names the segment container itself.
        assert_eq!(at("fed-y_segments"), some("c", "fed-y_segments"));
        // Off for this route; local parents keep local segments.
        assert_eq!(at("plain_segments"), None);
        assert_eq!(at("local_segments"), None);
        assert_eq!(at("_segments"), None);
    }

    /// The lookup before the length index: exact, else the first of the prefixes sorted longest
    /// first (stable, so table order breaks ties), else account-wide.
    fn reference(yaml_routes: &[(Option<&str>, Option<&str>)], container: &str) -> Option<usize> {
        let exact = yaml_routes.iter().position(|(e, _)| *e == Some(container));
        let mut prefixes: Vec<(usize, &str)> = yaml_routes
            .iter()
            .enumerate()
            .filter_map(|(i, (_, p))| p.map(|p| (i, p)))
            .collect();
        prefixes.sort_by_key(|(_, p)| std::cmp::Reverse(p.len()));
        exact
            .or_else(|| {
                prefixes
                    .iter()
                    .find(|(_, p)| container.starts_with(p))
                    .map(|(i, _)| *i)
            })
            .or_else(|| {
                yaml_routes
                    .iter()
                    .position(|(e, p)| e.is_none() && p.is_none())
            })
    }

    fn table_of(routes: &[(Option<&str>, Option<&str>)]) -> RouteTable {
        let mut yaml =
            String::from("clusters: [{name: b, endpoints: [\"http://127.0.0.1:1\"]}]\nroutes:\n");
        for (i, (exact, prefix)) in routes.iter().enumerate() {
            let container = match (exact, prefix) {
                (Some(e), _) => format!(", container: {{exact: {e:?}}}"),
                (None, Some(p)) => format!(", container: {{prefix: {p:?}}}"),
                (None, None) => String::new(),
            };
            yaml.push_str(&format!(
                // A selector per route, so that repeated matches are valid (and all apply, as
                // no pod labels are given).
                "- {{match: {{account: A{container}}}, target: {{cluster: b}}, source: \"r{i}\", \
                 proxySelector: {{matchLabels: {{n: \"{i}\"}}}}}}\n"
            ));
        }
        table(&yaml)
    }

    #[test]
    fn prefix_index_picks_the_longest_then_the_first() {
        let routes = [
            (None, Some("a")),
            (None, Some("ab")),
            (None, Some("abc")),
            (None, Some("ab")), // same prefix again: the first one keeps it
            (None, Some("x")),
            (None, Some("xyz")),
            (None, Some("é")),  // two bytes
            (None, Some("éa")), // three bytes
            (Some("abc"), None),
            (None, None),
        ];
        let t = table_of(&routes);
        let label = |c: &str| t.lookup("A", Some(c)).map(|r| r.label.clone());
        assert_eq!(label("abcd").as_deref(), Some("r2"));
        assert_eq!(label("abc").as_deref(), Some("r8"), "exact beats prefixes");
        assert_eq!(label("abx").as_deref(), Some("r1"));
        assert_eq!(label("ax").as_deref(), Some("r0"));
        assert_eq!(label("xy").as_deref(), Some("r4"));
        assert_eq!(label("xyz0").as_deref(), Some("r5"));
        assert_eq!(label("éab").as_deref(), Some("r7"));
        assert_eq!(label("éb").as_deref(), Some("r6"));
        // Shorter than every prefix, and a length that falls inside a multi-byte character.
        assert_eq!(label("").as_deref(), Some("r9"));
        assert_eq!(label("ébc").as_deref(), Some("r6"));
        assert_eq!(label("q").as_deref(), Some("r9"));
    }

    #[test]
    fn prefix_index_matches_the_linear_scan() {
        // Deterministic pseudo-random prefixes and containers over a small alphabet, so that
        // many prefixes share their first bytes and lengths.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let alphabet = ['a', 'b', 'é', '-'];
        let mut word = |max: u64| -> String {
            let len = next(max) + 1;
            (0..len).map(|_| alphabet[next(4) as usize]).collect()
        };
        let words: Vec<String> = (0..300).map(|_| word(6)).collect();
        let containers: Vec<String> = (0..2000).map(|_| word(8)).collect();
        let mut routes: Vec<(Option<&str>, Option<&str>)> = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i % 5 == 0 {
                    (Some(w.as_str()), None)
                } else {
                    (None, Some(w.as_str()))
                }
            })
            .collect();
        routes.push((None, None));
        let t = table_of(&routes);
        for c in &containers {
            let got = t.lookup("A", Some(c)).map(|r| r.label.clone());
            let want = reference(&routes, c).map(|i| format!("r{i}"));
            assert_eq!(got, want, "container {c:?}");
        }
    }
}
