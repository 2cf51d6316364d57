//! Renders a namespace's ClusterFederations into one routing table (the sidecar wire format).
//!
//! Pure: Secrets come in as a lookup, so the same code serves the controller and the offline
//! `render` command. A federation whose spec cannot be rendered (missing Secret, a route the
//! table validation refuses) is left out whole and reported; a match claimed by two
//! federations stays with the older one and the newer is reported in conflict.

use std::collections::{BTreeMap, HashMap};

use swiftfed_crds::federation::{AuthMode, ClusterFederation, ContainerMatch};
use swiftfed_crds::routing::{
    self, AuthSpec, ClusterSpec, CredentialsSpec, MatchSpec, RouteSpec, RoutingTable, Secret,
    TargetSpec, TimeoutsSpec, TlsSpec,
};

/// The data of the namespace's Secrets, by name.
pub type SecretData = HashMap<String, BTreeMap<String, Vec<u8>>>;

/// Keys of a `Credentials` Secret.
pub const CREDENTIAL_KEYS: [&str; 3] = ["authUrl", "user", "key"];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Reasons the federation was left out (InvalidSpec).
    pub invalid: Vec<String>,
    /// Matches another (older) federation keeps (Conflict).
    pub conflicts: Vec<String>,
    /// Secrets the federation references (to watch them).
    pub secrets: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Rendered {
    /// Revision 0: the caller assigns the revision.
    pub table: RoutingTable,
    /// SHA-256 of the table's canonical JSON without its revision.
    pub hash: String,
    /// By federation name.
    pub outcomes: BTreeMap<String, Outcome>,
}

/// Cluster names are namespaced by federation in the table: two federations may both call a
/// cluster `dr`.
pub fn table_cluster_name(federation: &str, cluster: &str) -> String {
    format!("{federation}/{cluster}")
}

pub fn render(
    namespace: &str,
    federations: &[ClusterFederation],
    secrets: &SecretData,
) -> Rendered {
    let mut ordered: Vec<&ClusterFederation> = federations
        .iter()
        .filter(|f| f.metadata.deletion_timestamp.is_none())
        .collect();
    // Older first: the older federation keeps a contested match.
    ordered.sort_by(|a, b| {
        (
            a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            a.metadata.name.as_deref(),
        )
            .cmp(&(
                b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                b.metadata.name.as_deref(),
            ))
    });
    let mut table = RoutingTable::default();
    let mut outcomes = BTreeMap::new();
    let mut claimed: HashMap<(String, Option<routing::ContainerMatch>, String), String> =
        HashMap::new();
    for federation in ordered {
        let name = federation.metadata.name.clone().unwrap_or_default();
        let mut outcome = Outcome::default();
        let part = render_one(namespace, &name, federation, secrets, &mut outcome);
        if let Some(part) = part {
            if let Err(errors) = part.validate() {
                outcome.invalid.push(errors.to_string());
            } else {
                let RoutingTable {
                    clusters, routes, ..
                } = part;
                table.clusters.extend(clusters);
                for route in routes {
                    let selector = route
                        .proxy_selector
                        .as_ref()
                        .map(|s| format!("{:?}", s.match_labels))
                        .unwrap_or_default();
                    let key = (
                        route.matcher.account.clone(),
                        route.matcher.container.clone(),
                        selector,
                    );
                    match claimed.get(&key) {
                        Some(owner) => outcome.conflicts.push(format!(
                            "{} is routed by the older federation {owner}",
                            describe_match(&route.matcher)
                        )),
                        None => {
                            claimed.insert(key, name.clone());
                            table.routes.push(route);
                        }
                    }
                }
            }
        }
        outcomes.insert(name, outcome);
    }
    // Clusters no route uses any more stay out of the table.
    table
        .clusters
        .retain(|c| table.routes.iter().any(|r| r.target.cluster == c.name));
    let hash = content_hash(&table);
    Rendered {
        table,
        hash,
        outcomes,
    }
}

fn describe_match(m: &MatchSpec) -> String {
    match &m.container {
        None => format!("account {}", m.account),
        Some(routing::ContainerMatch::Exact(c)) => format!("container {}/{c}", m.account),
        Some(routing::ContainerMatch::Prefix(p)) => format!("prefix {}/{p}*", m.account),
    }
}

fn secret_value(
    secrets: &SecretData,
    namespace: &str,
    name: &str,
    key: &str,
    outcome: &mut Outcome,
) -> Option<String> {
    if !outcome.secrets.iter().any(|s| s == name) {
        outcome.secrets.push(name.to_string());
    }
    let Some(data) = secrets.get(name) else {
        let problem = format!("Secret {namespace}/{name} not found");
        if !outcome.invalid.contains(&problem) {
            outcome.invalid.push(problem);
        }
        return None;
    };
    let Some(value) = data.get(key) else {
        outcome
            .invalid
            .push(format!("Secret {namespace}/{name} has no key {key:?}"));
        return None;
    };
    match String::from_utf8(value.clone()) {
        Ok(v) => Some(v.trim_end_matches(['\r', '\n']).to_string()),
        Err(_) => {
            outcome.invalid.push(format!(
                "Secret {namespace}/{name} key {key:?} is not UTF-8 text"
            ));
            None
        }
    }
}

/// A `Credentials` Secret with `type: keystone`: `authUrl` and the optional keys named like the
/// routing table's fields (`userName`, `password`, `applicationCredentialSecret`, ...), plus
/// `caPem` for an https authUrl. The table's validation names what is missing or contradictory.
fn keystone_credentials(
    secrets: &SecretData,
    namespace: &str,
    name: &str,
    outcome: &mut Outcome,
) -> CredentialsSpec {
    let auth_url = secret_value(secrets, namespace, name, "authUrl", outcome).unwrap_or_default();
    let get = |key: &str| {
        secrets.get(name).and_then(|data| data.get(key)).map(|v| {
            String::from_utf8_lossy(v)
                .trim_end_matches(['\r', '\n'])
                .to_string()
        })
    };
    CredentialsSpec::Keystone(Box::new(routing::KeystoneCredentials {
        auth_url,
        user_id: get("userId"),
        user_name: get("userName"),
        user_domain_id: get("userDomainId"),
        user_domain_name: get("userDomainName"),
        password: get("password").map(Secret::new),
        project_id: get("projectId"),
        project_name: get("projectName"),
        project_domain_id: get("projectDomainId"),
        project_domain_name: get("projectDomainName"),
        application_credential_id: get("applicationCredentialId"),
        application_credential_name: get("applicationCredentialName"),
        application_credential_secret: get("applicationCredentialSecret").map(Secret::new),
        tls: get("caPem").map(|ca| TlsSpec {
            ca_pem: Some(ca),
            ..TlsSpec::default()
        }),
    }))
}

fn render_one(
    namespace: &str,
    name: &str,
    federation: &ClusterFederation,
    secrets: &SecretData,
    outcome: &mut Outcome,
) -> Option<RoutingTable> {
    let spec = &federation.spec;
    let mut table = RoutingTable::default();
    for cluster in &spec.clusters {
        let auth = match cluster.auth.mode {
            AuthMode::Passthrough => AuthSpec::Passthrough,
            AuthMode::Credentials => match &cluster.auth.credentials_secret_ref {
                None => {
                    outcome.invalid.push(format!(
                        "clusters[{}] uses Credentials but has no credentialsSecretRef",
                        cluster.name
                    ));
                    AuthSpec::Passthrough
                }
                Some(r) => {
                    let kind = secrets
                        .get(&r.name)
                        .and_then(|data| data.get("type"))
                        .map(|v| String::from_utf8_lossy(v).trim().to_string());
                    let credentials = if kind.as_deref() == Some("keystone") {
                        keystone_credentials(secrets, namespace, &r.name, outcome)
                    } else {
                        let mut get =
                            |key: &str| secret_value(secrets, namespace, &r.name, key, outcome);
                        let (auth_url, user, key) = (get("authUrl"), get("user"), get("key"));
                        CredentialsSpec::Tempauth {
                            auth_url: auth_url.unwrap_or_default(),
                            user: user.unwrap_or_default(),
                            key: Secret::new(key.unwrap_or_default()),
                        }
                    };
                    AuthSpec::Credentials { credentials }
                }
            },
        };
        let tls = cluster.tls.as_ref().map(|t| TlsSpec {
            ca_pem: t
                .ca_secret_ref
                .as_ref()
                .and_then(|r| secret_value(secrets, namespace, &r.name, &r.key, outcome)),
            server_name: t.server_name.clone(),
            insecure_skip_verify: t.insecure_skip_verify,
            ..TlsSpec::default()
        });
        let mut timeouts = TimeoutsSpec::default();
        if let Some(t) = &cluster.timeouts {
            if let Some(d) = &t.connect {
                timeouts.connect = d.0.clone();
            }
            if let Some(d) = &t.first_byte {
                timeouts.first_byte = d.0.clone();
            }
            if let Some(d) = &t.idle {
                timeouts.idle = d.0.clone();
            }
        }
        table.clusters.push(ClusterSpec {
            name: table_cluster_name(name, &cluster.name),
            endpoints: cluster.endpoints.iter().map(|e| e.0.clone()).collect(),
            tls,
            auth,
            timeouts,
        });
    }
    let selector = (!spec.proxy_selector.match_labels.is_empty()).then(|| routing::LabelSelector {
        match_labels: spec.proxy_selector.match_labels.clone(),
    });
    for route in &spec.routes {
        let container = route.matcher.container.as_ref().and_then(|c| match c {
            ContainerMatch {
                exact: Some(e),
                prefix: None,
            } => Some(routing::ContainerMatch::Exact(e.clone())),
            ContainerMatch {
                exact: None,
                prefix: Some(p),
            } => Some(routing::ContainerMatch::Prefix(p.clone())),
            _ => None,
        });
        if route.matcher.container.is_some() && container.is_none() {
            outcome.invalid.push(format!(
                "a route for account {} must set exactly one of container.exact or container.prefix",
                route.matcher.account
            ));
            continue;
        }
        table.routes.push(RouteSpec {
            matcher: MatchSpec {
                account: route.matcher.account.clone(),
                container,
            },
            target: TargetSpec {
                cluster: table_cluster_name(name, &route.target.cluster),
                account: route.target.account.clone(),
                container: route.target.container.clone(),
            },
            mode: route.mode,
            segment_suffixes: route
                .segment_suffixes
                .as_ref()
                .map(|list| list.iter().map(|s| s.0.clone()).collect()),
            proxy_selector: selector.clone(),
            source: Some(format!("{namespace}/{name}")),
        });
    }
    outcome.invalid.is_empty().then_some(table)
}

/// SHA-256 over the table's JSON with revision 0, so equal content gives an equal hash.
pub fn content_hash(table: &RoutingTable) -> String {
    let mut unrevisioned = table.clone();
    unrevisioned.revision = 0;
    let json = serde_json::to_vec(&unrevisioned).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &json);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn federation(name: &str, age_secs: i64, spec: &str) -> ClusterFederation {
        let mut f: ClusterFederation = serde_yaml::from_str(&format!(
            "apiVersion: swiftfed.io/v1alpha1\nkind: ClusterFederation\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n{spec}"
        ))
        .expect("federation YAML");
        let created =
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 - age_secs).expect("timestamp");
        f.metadata.creation_timestamp = Some(Time(created));
        f
    }

    const ROUTE_TO_B: &str = "  clusters: [{name: b, endpoints: [\"http://b:8080\"]}]\n  routes: [{match: {account: AUTH_a, container: {prefix: x-}}, target: {cluster: b}}]\n";

    #[test]
    fn older_federation_keeps_a_contested_match() {
        let old = federation("old", 100, ROUTE_TO_B);
        let new = federation("new", 10, ROUTE_TO_B);
        let rendered = render("ns", &[new, old], &SecretData::new());
        assert_eq!(rendered.table.routes.len(), 1);
        assert_eq!(rendered.table.routes[0].target.cluster, "old/b");
        assert_eq!(rendered.table.routes[0].source.as_deref(), Some("ns/old"));
        assert!(rendered.outcomes["old"].conflicts.is_empty());
        assert_eq!(
            rendered.outcomes["new"].conflicts,
            vec!["prefix AUTH_a/x-* is routed by the older federation old".to_string()]
        );
        // The loser's unused cluster is not pushed.
        assert_eq!(rendered.table.clusters.len(), 1);
        rendered.table.validate().expect("valid table");
    }

    const CREDENTIALS: &str = "  clusters: [{name: b, endpoints: [\"http://b:8080\"], auth: {mode: Credentials, credentialsSecretRef: {name: creds}}}]\n  routes: [{match: {account: AUTH_a}, target: {cluster: b}}]\n";

    #[test]
    fn credentials_come_from_the_secret_and_problems_name_it() {
        let f = federation("f", 1, CREDENTIALS);
        let missing = render("ns", std::slice::from_ref(&f), &SecretData::new());
        assert!(
            missing.table.routes.is_empty(),
            "an invalid federation is left out whole"
        );
        assert_eq!(
            missing.outcomes["f"].invalid,
            vec!["Secret ns/creds not found".to_string()]
        );
        assert_eq!(missing.outcomes["f"].secrets, vec!["creds".to_string()]);

        let mut secrets = SecretData::new();
        let mut data = BTreeMap::new();
        data.insert("authUrl".to_string(), b"http://b:8080/auth/v1.0".to_vec());
        data.insert("user".to_string(), b"fed:sidecar\n".to_vec());
        secrets.insert("creds".to_string(), data.clone());
        let no_key = render("ns", std::slice::from_ref(&f), &secrets);
        assert_eq!(
            no_key.outcomes["f"].invalid,
            vec!["Secret ns/creds has no key \"key\"".to_string()]
        );

        data.insert("key".to_string(), b"s3cret".to_vec());
        secrets.insert("creds".to_string(), data);
        let ok = render("ns", &[f], &secrets);
        assert!(ok.outcomes["f"].invalid.is_empty());
        match &ok.table.clusters[0].auth {
            AuthSpec::Credentials {
                credentials: CredentialsSpec::Tempauth { user, key, .. },
            } => {
                assert_eq!(
                    user, "fed:sidecar",
                    "trailing newline of a Secret file is dropped"
                );
                assert_eq!(key.expose(), "s3cret");
            }
            other => panic!("expected Credentials, got {other:?}"),
        }
    }

    #[test]
    fn keystone_credentials_come_from_a_secret_of_type_keystone() {
        let f = federation("f", 1, CREDENTIALS);
        let mut data = BTreeMap::new();
        for (k, v) in [
            ("type", "keystone\n"),
            ("authUrl", "http://keystone:5000/v3"),
            ("applicationCredentialId", "ac1"),
            ("applicationCredentialSecret", "s3cret\n"),
        ] {
            data.insert(k.to_string(), v.as_bytes().to_vec());
        }
        let mut secrets = SecretData::new();
        secrets.insert("creds".to_string(), data.clone());
        let ok = render("ns", std::slice::from_ref(&f), &secrets);
        assert!(ok.outcomes["f"].invalid.is_empty(), "{:?}", ok.outcomes);
        match &ok.table.clusters[0].auth {
            AuthSpec::Credentials {
                credentials: CredentialsSpec::Keystone(k),
            } => {
                assert_eq!(k.application_credential_id.as_deref(), Some("ac1"));
                assert_eq!(
                    k.application_credential_secret.as_ref().map(Secret::expose),
                    Some("s3cret")
                );
            }
            other => panic!("expected Keystone credentials, got {other:?}"),
        }
        // Incomplete: the table's validation names the missing field.
        data.remove("applicationCredentialId");
        secrets.insert("creds".to_string(), data);
        let bad = render("ns", &[f], &secrets);
        assert!(
            bad.outcomes["f"]
                .invalid
                .iter()
                .any(|e| e.contains("applicationCredentialId")),
            "{:?}",
            bad.outcomes
        );
    }

    #[test]
    fn hash_follows_content_not_revision_or_order_of_input() {
        let a = federation("a", 20, ROUTE_TO_B);
        let b = federation("b", 10, "  clusters: [{name: c, endpoints: [\"http://c:8080\"]}]\n  routes: [{match: {account: AUTH_b}, target: {cluster: c}}]\n");
        let one = render("ns", &[a.clone(), b.clone()], &SecretData::new());
        let two = render("ns", &[b.clone(), a.clone()], &SecretData::new());
        assert_eq!(one.hash, two.hash);
        let mut bumped = one.table.clone();
        bumped.revision = 9;
        assert_eq!(content_hash(&bumped), one.hash);
        let only_a = render("ns", &[a], &SecretData::new());
        assert_ne!(only_a.hash, one.hash);
    }

    #[test]
    fn deleted_federations_are_left_out() {
        let mut f = federation("f", 1, ROUTE_TO_B);
        f.metadata.deletion_timestamp = f.metadata.creation_timestamp.clone();
        let rendered = render("ns", &[f], &SecretData::new());
        assert!(rendered.table.routes.is_empty() && rendered.table.clusters.is_empty());
    }
}
