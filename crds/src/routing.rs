//! The routing wire format: what the operator renders and pushes, and what the sidecar loads from
//! `--config` or receives on `PUT /v1/config`. Read from YAML or JSON; field names are camelCase.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::validate::{self, ValidationErrors};

/// A complete routing table. A sidecar never goes back to a lower `revision`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutingTable {
    #[serde(default)]
    pub revision: u64,
    #[serde(default)]
    pub clusters: Vec<ClusterSpec>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
}

/// A target Swift cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    pub name: String,
    /// Base URLs (`http://host:port` or `https://host:port`), tried in order: the first that accepts
    /// a connection serves the request.
    pub endpoints: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    #[serde(default)]
    pub auth: AuthSpec,
    #[serde(default)]
    pub timeouts: TimeoutsSpec,
}

/// TLS toward a target cluster's `https://` endpoints (and an `https://` auth URL). TLS 1.2 and
/// 1.3 only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM bundle of the CAs to trust, instead of the system roots; system roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Name to send as SNI and to verify the certificate against; the endpoint's host when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Client certificate chain (PEM, leaf first) presented when the target asks for one (mTLS).
    /// Requires `clientKeyPem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_pem: Option<String>,
    /// Private key of `clientCertPem` (PEM: PKCS#8, PKCS#1 or SEC1, unencrypted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_pem: Option<Secret>,
    /// Accept any certificate (no verification at all). Only for tests; logged as a warning
    /// whenever a table containing it is applied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// How the sidecar authenticates on a target cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", deny_unknown_fields)]
pub enum AuthSpec {
    /// The client's `X-Auth-Token` goes to the target unchanged (clusters sharing an identity
    /// service).
    #[default]
    Passthrough,
    /// The sidecar's own credentials on the target, used only after the local cluster authorized
    /// the client for the operation.
    Credentials { credentials: CredentialsSpec },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum CredentialsSpec {
    /// Swift tempauth (auth v1): `GET <authUrl>` with `X-Auth-User` / `X-Auth-Key`.
    #[serde(rename_all = "camelCase")]
    Tempauth {
        auth_url: String,
        user: String,
        key: Secret,
    },
    /// Keystone v3: `POST <authUrl>/auth/tokens` with a password or an application credential.
    Keystone(Box<KeystoneCredentials>),
}

/// The sidecar's Keystone v3 identity on a target cluster. Names follow `clouds.yaml` / `OS_*`.
/// Exactly one method: `password` (a user, by id or by name + domain, and the project to scope
/// the token to, by id or by name + domain) or `applicationCredentialSecret` (the credential by
/// id, or by name + its user; it carries its own project). The token's project must own the
/// route's target accounts (`AUTH_<project_id>`, operator role) unless the user is a reseller
/// admin there.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeystoneCredentials {
    /// Keystone's Identity v3 URL, e.g. `https://keystone.example.com:5000/v3`.
    pub auth_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_domain_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_domain_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_domain_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_domain_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_credential_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_credential_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_credential_secret: Option<Secret>,
    /// TLS toward an `https://` authUrl. Keystone usually lives elsewhere than the target's
    /// Swift, so the cluster's `tls` (its CA, `serverName`, client certificate) is not used for
    /// it; system roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// A secret string: serialized as is (the wire format must carry it) but never shown by `Debug`
/// or `Display`, and replaced by [`Secret::REDACTED`] in [`RoutingTable::redacted`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub const REDACTED: &'static str = "<redacted>";

    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::REDACTED)
    }
}

/// Timeouts toward a target cluster, as durations like `500ms`, `2s`, `1m`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutsSpec {
    /// Establishing a connection to one endpoint: the TCP connect, then (`https://`) the TLS
    /// handshake, each within this time.
    #[serde(default = "defaults::connect")]
    pub connect: String,
    /// From the end of the request body to the response headers.
    #[serde(default = "defaults::first_byte")]
    pub first_byte: String,
    /// Longest pause in either body stream.
    #[serde(default = "defaults::idle")]
    pub idle: String,
}

mod defaults {
    pub fn connect() -> String {
        "2s".into()
    }
    pub fn first_byte() -> String {
        "30s".into()
    }
    pub fn idle() -> String {
        "60s".into()
    }
}

impl Default for TimeoutsSpec {
    fn default() -> Self {
        TimeoutsSpec {
            connect: defaults::connect(),
            first_byte: defaults::first_byte(),
            idle: defaults::idle(),
        }
    }
}

/// Timeouts parsed; valid once the table passed validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
}

impl TimeoutsSpec {
    pub fn parse(&self) -> Result<Timeouts, String> {
        Ok(Timeouts {
            connect: parse_duration(&self.connect).map_err(|e| format!("connect: {e}"))?,
            first_byte: parse_duration(&self.first_byte).map_err(|e| format!("firstByte: {e}"))?,
            idle: parse_duration(&self.idle).map_err(|e| format!("idle: {e}"))?,
        })
    }
}

/// A route: requests matching `match` go to `target`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    pub target: TargetSpec,
    #[serde(default)]
    pub mode: RouteMode,
    /// Containers named `<container><suffix>` follow the route of `<container>` unless a route
    /// names them itself (an exact match, or a prefix longer than `<container>`). Absent:
    /// [`DEFAULT_SEGMENT_SUFFIXES`] (python-swiftclient's and rclone's `_segments`); empty: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_suffixes: Option<Vec<String>>,
    /// Only sidecars whose pod carries all these labels use the route; every sidecar when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_selector: Option<LabelSelector>,
    /// Who asked for this route (e.g. `namespace/federation`), for metrics and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Segment containers that follow their parent's route when a route does not say otherwise.
pub const DEFAULT_SEGMENT_SUFFIXES: [&str; 1] = ["_segments"];

impl RouteSpec {
    /// The suffixes whose containers follow this route (see `segment_suffixes`).
    pub fn effective_segment_suffixes(&self) -> Vec<String> {
        match &self.segment_suffixes {
            Some(list) => list.clone(),
            None => DEFAULT_SEGMENT_SUFFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchSpec {
    pub account: String,
    /// Absent: every container of the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerMatch>,
}

/// Exactly one of `exact` or `prefix` on the wire (a struct rather than an enum, so that YAML and
/// the CRD's structural schema read naturally: `container: {prefix: archive-}`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ContainerMatchWire", into = "ContainerMatchWire")]
pub enum ContainerMatch {
    Exact(String),
    Prefix(String),
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerMatchWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
}

impl TryFrom<ContainerMatchWire> for ContainerMatch {
    type Error = String;
    fn try_from(wire: ContainerMatchWire) -> Result<Self, String> {
        match (wire.exact, wire.prefix) {
            (Some(name), None) => Ok(ContainerMatch::Exact(name)),
            (None, Some(prefix)) => Ok(ContainerMatch::Prefix(prefix)),
            _ => Err("container match needs exactly one of `exact` or `prefix`".into()),
        }
    }
}

impl From<ContainerMatch> for ContainerMatchWire {
    fn from(m: ContainerMatch) -> Self {
        match m {
            ContainerMatch::Exact(name) => ContainerMatchWire {
                exact: Some(name),
                prefix: None,
            },
            ContainerMatch::Prefix(prefix) => ContainerMatchWire {
                exact: None,
                prefix: Some(prefix),
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetSpec {
    pub cluster: String,
    /// Account name on the target; the client's account when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Container name on the target (exact match) or the prefix replacing the matched prefix
    /// (prefix match); the client's container when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub enum RouteMode {
    /// Everything goes to the target.
    #[default]
    Forward,
    /// Writes go to the target; object reads try the target, then the local cluster on 404.
    Migrate,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// Why a routing document could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a routing table: {0}")]
    Syntax(String),
    #[error("invalid routing table: {0}")]
    Invalid(#[from] ValidationErrors),
}

impl RoutingTable {
    /// Parses YAML or JSON (JSON is YAML) and validates.
    pub fn from_slice(bytes: &[u8]) -> Result<RoutingTable, LoadError> {
        let table: RoutingTable =
            serde_yaml::from_slice(bytes).map_err(|e| LoadError::Syntax(e.to_string()))?;
        table.validate()?;
        Ok(table)
    }

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        validate::routing_table(self)
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterSpec> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The same table with every secret replaced, for display.
    pub fn redacted(&self) -> RoutingTable {
        let mut table = self.clone();
        for cluster in &mut table.clusters {
            if let Some(key) = cluster.tls.as_mut().and_then(|t| t.client_key_pem.as_mut()) {
                *key = Secret::new(Secret::REDACTED);
            }
            let AuthSpec::Credentials { credentials } = &mut cluster.auth else {
                continue;
            };
            match credentials {
                CredentialsSpec::Tempauth { key, .. } => *key = Secret::new(Secret::REDACTED),
                CredentialsSpec::Keystone(keystone) => {
                    let key = keystone
                        .tls
                        .as_mut()
                        .and_then(|t| t.client_key_pem.as_mut());
                    for secret in [
                        keystone.password.as_mut(),
                        keystone.application_credential_secret.as_mut(),
                        key,
                    ]
                    .into_iter()
                    .flatten()
                    {
                        *secret = Secret::new(Secret::REDACTED);
                    }
                }
            }
        }
        table
    }
}

/// Parses `250ms`, `2s`, `1m`, `1h` (one number, one unit). Zero is refused: a timeout of zero
/// would fail every request.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (use ms, s, m or h)"))?;
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(value),
        "s" => Duration::from_secs(value),
        "m" => Duration::from_secs(value.saturating_mul(60)),
        "h" => Duration::from_secs(value.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "{text:?} has unknown unit {unit:?} (use ms, s, m or h)"
            ))
        }
    };
    if duration.is_zero() {
        return Err(format!("{text:?} must be greater than zero"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3 days").is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_and_redacted_view() {
        let yaml = r#"
revision: 3
clusters:
- name: b
  endpoints: [http://127.0.0.1:8080]
  auth: {mode: Credentials, credentials: {type: tempauth, authUrl: "http://127.0.0.1:8080/auth/v1.0", user: "test:sidecar", key: hunter2-key}}
routes:
- match: {account: AUTH_test, container: {prefix: fed-}}
  target: {cluster: b}
"#;
        let table = RoutingTable::from_slice(yaml.as_bytes()).expect("valid");
        assert!(!format!("{table:?}").contains("hunter2-key"));
        let shown = serde_json::to_string(&table.redacted()).expect("serializes");
        assert!(!shown.contains("hunter2-key"));
        assert!(shown.contains(Secret::REDACTED));
        // The wire form keeps the key: the sidecar needs it.
        let wire = serde_json::to_string(&table).expect("serializes");
        assert!(wire.contains("hunter2-key"));
        assert_eq!(
            RoutingTable::from_slice(wire.as_bytes()).expect("valid"),
            table
        );
    }

    #[test]
    fn keystone_secrets_stay_out_of_debug_and_redacted_view() {
        let yaml = r#"
clusters:
- name: b
  endpoints: [http://127.0.0.1:8080]
  auth:
    mode: Credentials
    credentials:
      type: keystone
      authUrl: "http://127.0.0.1:5000/v3"
      userId: u1
      password: pass-word-1
      projectId: p1
      tls: {clientCertPem: cert, clientKeyPem: key-pem-3}
- name: c
  endpoints: [http://127.0.0.1:8080]
  auth:
    mode: Credentials
    credentials: {type: keystone, authUrl: "http://127.0.0.1:5000/v3", applicationCredentialId: a, applicationCredentialSecret: app-secret-2}
"#;
        let table: RoutingTable = serde_yaml::from_str(yaml).expect("parses");
        let shown = format!(
            "{table:?}{}",
            serde_json::to_string(&table.redacted()).expect("json")
        );
        for secret in ["pass-word-1", "app-secret-2", "key-pem-3"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let wire = serde_json::to_string(&table).expect("serializes");
        assert!(wire.contains("pass-word-1") && wire.contains("app-secret-2"));
        let back: RoutingTable = serde_json::from_str(&wire).expect("round trip");
        assert_eq!(back, table);
    }

    #[test]
    fn client_key_stays_out_of_debug_and_redacted_view() {
        let table = RoutingTable {
            clusters: vec![ClusterSpec {
                name: "b".into(),
                endpoints: vec!["https://127.0.0.1:8443".into()],
                tls: Some(TlsSpec {
                    client_cert_pem: Some("cert".into()),
                    client_key_pem: Some(Secret::new("very-private-key-bytes")),
                    ..TlsSpec::default()
                }),
                auth: AuthSpec::default(),
                timeouts: TimeoutsSpec::default(),
            }],
            ..RoutingTable::default()
        };
        assert!(!format!("{table:?}").contains("very-private-key-bytes"));
        let shown = serde_json::to_string(&table.redacted()).expect("serializes");
        assert!(!shown.contains("very-private-key-bytes"), "{shown}");
        assert!(shown.contains("\"clientKeyPem\":\"<redacted>\""), "{shown}");
        let wire = serde_json::to_string(&table).expect("serializes");
        assert!(wire.contains("very-private-key-bytes"));
    }

    #[test]
    fn syntax_errors_name_the_problem() {
        let err = RoutingTable::from_slice(b"routes: [{match: {account: A}, target: {}}]")
            .expect_err("missing cluster");
        assert!(err.to_string().contains("cluster"), "{err}");
        let err = RoutingTable::from_slice(b"revison: 3").expect_err("typo");
        assert!(err.to_string().contains("revison"), "{err}");
    }
}
