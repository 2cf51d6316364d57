//! The `ClusterFederation` custom resource (`swiftfed.io/v1alpha1`, namespaced).
//!
//! The schema rejects what it can (types, sizes, patterns, CEL rules); the operator reports the
//! rest (missing Secrets, conflicts) in status. List and string bounds exist so the API server
//! can estimate the cost of the CEL rules.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::routing::RouteMode;

pub const GROUP: &str = "swiftfed.io";
pub const FINALIZER: &str = "swiftfed.io/routes";

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "swiftfed.io",
    version = "v1alpha1",
    kind = "ClusterFederation",
    namespaced,
    status = "ClusterFederationStatus",
    shortname = "cfed",
    category = "swiftfed",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.sidecars.summary"}"#,
    printcolumn = r#"{"name":"Revision","type":"integer","jsonPath":".status.revision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self.clusters.all(c, self.clusters.exists_one(d, d.name == c.name))").message("cluster names must be unique"),
    validation = Rule::new("self.routes.all(r, self.clusters.exists(c, c.name == r.target.cluster))").message("every route's target.cluster must name one of spec.clusters")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterFederationSpec {
    /// Which Swift proxy pods (sidecars) use these routes; all selected by the namespace's
    /// sidecars when empty.
    #[serde(default)]
    pub proxy_selector: ProxySelector,
    /// Target Swift clusters.
    #[schemars(length(min = 1, max = 32))]
    pub clusters: Vec<FederatedCluster>,
    /// Routes: the most specific match wins (exact container > longest prefix > account-wide).
    #[schemars(length(max = 512))]
    pub routes: Vec<FederationRoute>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxySelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FederatedCluster {
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Base URLs (`http(s)://host[:port]`), tried in order.
    #[schemars(length(min = 1, max = 16))]
    pub endpoints: Vec<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClusterTls>,
    #[serde(default)]
    pub auth: ClusterAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<ClusterTimeouts>,
}

/// An endpoint URL. A newtype so its schema carries the URL pattern.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(transparent)]
pub struct Endpoint(
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^/?#\s]+/?$"))]
    pub String,
);

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterTls {
    /// CA bundle to trust (system roots when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Name for SNI and certificate verification (the endpoint's host when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub server_name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.mode != 'Credentials' || has(self.credentialsSecretRef)").message("mode Credentials needs credentialsSecretRef"))]
pub struct ClusterAuth {
    #[serde(default)]
    pub mode: AuthMode,
    /// Secret with keys `authUrl`, `user`, `key` (tempauth v1), or with `type: keystone`,
    /// `authUrl` (Identity v3) and the routing table's Keystone fields as keys (`userName`,
    /// `userDomainId`, `password`, `projectId`, ... or `applicationCredentialId` +
    /// `applicationCredentialSecret`; `caPem`). Only read in `Credentials` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    #[default]
    Passthrough,
    Credentials,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterTimeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<Duration>,
}

/// A duration like `500ms`, `2s`, `1m`, `1h`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(transparent)]
pub struct Duration(
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]*[1-9][0-9]*(ms|s|m|h)$"))] pub String,
);

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FederationRoute {
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    pub target: RouteTarget,
    #[serde(default)]
    pub mode: RouteMode,
    /// Containers named `<container><suffix>` (segment containers) follow this route unless a
    /// route names them itself. Absent: `["_segments"]` (python-swiftclient, rclone); `[]`: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub segment_suffixes: Option<Vec<SegmentSuffix>>,
}

/// A container-name suffix such as `_segments`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(transparent)]
pub struct SegmentSuffix(
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[^/]+$"))] pub String,
);

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMatch {
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[^/]+$"))]
    pub account: String,
    /// Absent: the whole account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerMatch>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.exact) != has(self.prefix)").message("set exactly one of exact or prefix"))]
pub struct ContainerMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[^/]+$"))]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[^/]+$"))]
    pub prefix: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteTarget {
    #[schemars(length(min = 1, max = 63))]
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[^/]+$"))]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[^/]+$"))]
    pub container: Option<String>,
}

/// What the operator observed and did.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterFederationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Revision of the namespace's routing table that includes this generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    #[serde(default)]
    pub sidecars: SidecarSync,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<ClusterStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSync {
    pub selected: i32,
    pub in_sync: i32,
    pub rejected: i32,
    pub missing: i32,
    /// `inSync/selected`, for `kubectl get`.
    #[serde(default)]
    pub summary: String,
    /// Per selected pod (the first 100 by name), for `swiftfed-operator status`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodSync>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSync {
    pub name: String,
    /// `InSync`, `Rejected`, `Unreachable`, `Behind` or `Missing` (no sidecar).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub name: String,
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
