//! One namespace's sync: render its federations, snapshot the table into the `swiftfed-routing`
//! Secret (so a pod that starts while the operator is down still routes correctly), and push it
//! to every ready sidecar. Serialized per namespace, so revisions only go up.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use swiftfed_crds::federation::ClusterFederation;
use tokio::sync::Mutex;

use crate::push::{Outcome, Pusher, Target};
use crate::render::{self, Rendered, SecretData};
use crate::Error;

pub const ROUTING_SECRET: &str = "swiftfed-routing";
pub const ROUTING_KEY: &str = "routing.json";
pub const ADMIN_TOKEN_SECRET: &str = "swiftfed-admin-token";
pub const ADMIN_TOKEN_KEY: &str = "token";
pub const REVISION_ANNOTATION: &str = "swiftfed.io/revision";
pub const HASH_ANNOTATION: &str = "swiftfed.io/config-hash";
/// Pod annotation naming the sidecar's admin port.
pub const ADMIN_PORT_ANNOTATION: &str = "swiftfed.io/admin-port";
pub const SIDECAR_CONTAINER: &str = "swiftfed-sidecar";
pub const FIELD_MANAGER: &str = "swiftfed-operator";

/// What a namespace sync found and did.
#[derive(Clone, Debug)]
pub struct NamespaceSync {
    pub revision: u64,
    pub rendered: Rendered,
    pub pods: Vec<PodView>,
    pub pushes: HashMap<String, Outcome>,
    pub push_duration: std::time::Duration,
}

/// What the operator needs of a pod.
#[derive(Clone, Debug)]
pub struct PodView {
    /// `namespace/name`
    pub key: String,
    pub labels: BTreeMap<String, String>,
    pub has_sidecar: bool,
    /// Admin API address when the pod can take a push (running, ready, has an IP).
    pub admin: Option<String>,
}

impl PodView {
    pub fn from_pod(pod: &Pod, default_admin_port: u16) -> Option<PodView> {
        if pod.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let spec = pod.spec.as_ref()?;
        let has_sidecar = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == SIDECAR_CONTAINER);
        let status = pod.status.as_ref();
        let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
        let sidecar_ready = status
            .into_iter()
            .flat_map(|s| {
                s.container_statuses
                    .iter()
                    .flatten()
                    .chain(s.init_container_statuses.iter().flatten())
            })
            .any(|c| c.name == SIDECAR_CONTAINER && c.ready);
        let port = pod
            .annotations()
            .get(ADMIN_PORT_ANNOTATION)
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(default_admin_port);
        let admin = status
            .and_then(|s| s.pod_ip.as_deref())
            .filter(|_| has_sidecar && running && sidecar_ready)
            .map(|ip| {
                if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                }
            });
        Some(PodView {
            key: format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()),
            labels: pod.labels().clone(),
            has_sidecar,
            admin,
        })
    }

    pub fn selected_by(&self, match_labels: &BTreeMap<String, String>) -> bool {
        match_labels
            .iter()
            .all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

#[derive(Default)]
struct NamespaceState {
    /// Highest revision any sidecar reported: revisions never go back, even if the snapshot
    /// Secret was deleted.
    max_seen: u64,
}

pub struct Syncer {
    pub client: Client,
    pub pusher: Pusher,
    pub default_admin_port: u16,
    namespaces: std::sync::Mutex<HashMap<String, Arc<Mutex<NamespaceState>>>>,
}

impl Syncer {
    pub fn new(client: Client, pusher: Pusher, default_admin_port: u16) -> Syncer {
        Syncer {
            client,
            pusher,
            default_admin_port,
            namespaces: Default::default(),
        }
    }

    fn state(&self, namespace: &str) -> Arc<Mutex<NamespaceState>> {
        let mut map = self.namespaces.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(namespace.to_string()).or_default().clone()
    }

    pub async fn sync(&self, namespace: &str) -> Result<NamespaceSync, Error> {
        let state = self.state(namespace);
        let mut state = state.lock().await;
        let federations: Api<ClusterFederation> = Api::namespaced(self.client.clone(), namespace);
        let federations = federations.list(&ListParams::default()).await?.items;
        let secrets_api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);

        let mut wanted: Vec<String> = referenced_secrets(&federations);
        wanted.sort();
        wanted.dedup();
        let mut secrets = SecretData::new();
        for name in &wanted {
            if let Some(secret) = secrets_api.get_opt(name).await? {
                secrets.insert(name.clone(), secret_data(&secret));
            }
        }
        let mut rendered = render::render(namespace, &federations, &secrets);

        let snapshot = secrets_api.get_opt(ROUTING_SECRET).await?;
        let annotation = |key: &str| {
            snapshot
                .as_ref()
                .and_then(|s| s.metadata.annotations.as_ref())
                .and_then(|a| a.get(key))
                .cloned()
        };
        let current_revision: u64 = annotation(REVISION_ANNOTATION)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let unchanged = snapshot.is_some()
            && annotation(HASH_ANNOTATION).as_deref() == Some(rendered.hash.as_str())
            && current_revision >= state.max_seen;
        let revision = if unchanged {
            current_revision
        } else {
            current_revision.max(state.max_seen) + 1
        };
        rendered.table.revision = revision;
        let table_json = serde_json::to_vec(&rendered.table)?;
        if !unchanged {
            let owners: Vec<OwnerReference> = federations
                .iter()
                .filter_map(|f| f.controller_owner_ref(&()))
                .map(|mut r| {
                    // Owned by every federation; none of them is "the" controller.
                    r.controller = Some(false);
                    r
                })
                .collect();
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(ROUTING_SECRET.into()),
                    namespace: Some(namespace.into()),
                    annotations: Some(BTreeMap::from([
                        (REVISION_ANNOTATION.to_string(), revision.to_string()),
                        (HASH_ANNOTATION.to_string(), rendered.hash.clone()),
                    ])),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/managed-by".to_string(),
                        FIELD_MANAGER.to_string(),
                    )])),
                    owner_references: (!owners.is_empty()).then_some(owners),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([(
                    ROUTING_KEY.to_string(),
                    ByteString(table_json.clone()),
                )])),
                type_: Some("Opaque".into()),
                ..Default::default()
            };
            secrets_api
                .patch(
                    ROUTING_SECRET,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&secret),
                )
                .await?;
            tracing::info!(namespace, revision, hash = %rendered.hash, "routing snapshot written");
        }

        let token = self.admin_token(&secrets_api, namespace).await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pods: Vec<PodView> = pods
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter_map(|p| PodView::from_pod(p, self.default_admin_port))
            .collect();
        let targets: Vec<Target> = pods
            .iter()
            .filter_map(|p| {
                p.admin.clone().map(|admin| Target {
                    pod: p.key.clone(),
                    admin,
                })
            })
            .collect();
        let push_started = std::time::Instant::now();
        let results = self
            .pusher
            .push_all(&targets, Bytes::from(table_json), &token)
            .await;
        let push_duration = push_started.elapsed();
        let mut pushes = HashMap::new();
        for (target, outcome) in results {
            if let Outcome::Newer(seen) = outcome {
                state.max_seen = state.max_seen.max(seen);
            }
            pushes.insert(target.pod, outcome);
        }
        Ok(NamespaceSync {
            revision,
            rendered,
            pods,
            pushes,
            push_duration,
        })
    }

    /// The sidecars' admin token for the namespace, created on first use.
    async fn admin_token(&self, secrets: &Api<Secret>, namespace: &str) -> Result<String, Error> {
        if let Some(existing) = secrets.get_opt(ADMIN_TOKEN_SECRET).await? {
            if let Some(token) = secret_data(&existing).get(ADMIN_TOKEN_KEY) {
                return String::from_utf8(token.clone())
                    .map(|t| t.trim().to_string())
                    .map_err(|_| {
                        Error::Invalid(format!(
                            "{namespace}/{ADMIN_TOKEN_SECRET}: token is not text"
                        ))
                    });
            }
        }
        let token = random_token()?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(ADMIN_TOKEN_SECRET.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            string_data: Some(BTreeMap::from([(
                ADMIN_TOKEN_KEY.to_string(),
                token.clone(),
            )])),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(token),
            // Created meanwhile (another replica): use theirs.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = secrets.get(ADMIN_TOKEN_SECRET).await?;
                secret_data(&existing)
                    .get(ADMIN_TOKEN_KEY)
                    .and_then(|t| String::from_utf8(t.clone()).ok())
                    .map(|t| t.trim().to_string())
                    .ok_or_else(|| {
                        Error::Invalid(format!("{namespace}/{ADMIN_TOKEN_SECRET} has no token"))
                    })
            }
            Err(e) => Err(e.into()),
        }
    }
}

pub fn referenced_secrets(federations: &[ClusterFederation]) -> Vec<String> {
    federations
        .iter()
        .flat_map(|f| f.spec.clusters.iter())
        .flat_map(|c| {
            c.auth
                .credentials_secret_ref
                .iter()
                .map(|r| r.name.clone())
                .chain(
                    c.tls
                        .iter()
                        .flat_map(|t| t.ca_secret_ref.iter().map(|r| r.name.clone())),
                )
        })
        .collect()
}

pub fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.clone().unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    data
}

fn random_token() -> Result<String, Error> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Invalid("no system randomness for the admin token".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
