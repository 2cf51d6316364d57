//! The routing state in force, swapped atomically: a request takes an `Arc` of the active state
//! when it starts and keeps it to the end, so a swap never changes or drops a request in flight.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use swiftfed_crds::routing::{AuthSpec, ClusterSpec, CredentialsSpec, RoutingTable};
use swiftfed_crds::validate::ValidationErrors;

use crate::auth::{LocalAuthorizer, TokenSource};
use crate::metrics::{ClusterLabels, Metrics};
use crate::route_table::RouteTable;
use crate::tls::ClientTls;
use crate::upstream::Upstream;

pub struct ClusterRuntime {
    pub spec: ClusterSpec,
    pub upstream: Upstream,
    /// Present for `Credentials` auth.
    pub tokens: Option<Arc<TokenSource>>,
}

pub struct Active {
    /// The table as received (None: no table configured; everything goes to the local proxy).
    pub table: Option<RoutingTable>,
    pub routes: RouteTable,
    pub clusters: HashMap<String, Arc<ClusterRuntime>>,
}

impl Active {
    pub fn revision(&self) -> u64 {
        self.table.as_ref().map_or(0, |t| t.revision)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("revision {offered} is not newer than revision {current} in force")]
    Stale { current: u64, offered: u64 },
    #[error("{0}")]
    Invalid(#[from] ValidationErrors),
    /// A cluster this sidecar cannot set up (e.g. a TLS certificate rustls cannot use).
    #[error("{field}: {reason}")]
    Unsupported { field: String, reason: String },
}

pub struct State {
    active: RwLock<Arc<Active>>,
    apply_lock: Mutex<()>,
    pub local: Upstream,
    pub authorizer: LocalAuthorizer,
    pub metrics: Metrics,
    pod_labels: Option<BTreeMap<String, String>>,
    ready: AtomicBool,
}

impl State {
    /// `ready`: false when a routing table is configured but not loaded yet.
    pub fn new(
        local: Upstream,
        authorizer: LocalAuthorizer,
        pod_labels: Option<BTreeMap<String, String>>,
        ready: bool,
    ) -> State {
        State {
            active: RwLock::new(Arc::new(Active {
                table: None,
                routes: RouteTable::default(),
                clusters: HashMap::new(),
            })),
            apply_lock: Mutex::new(()),
            local,
            authorizer,
            metrics: Metrics::new(),
            pod_labels,
            ready: AtomicBool::new(ready),
        }
    }

    pub fn active(&self) -> Arc<Active> {
        match self.active.read() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Validates and swaps in `table` if its revision is newer than the one in force. The same
    /// revision with the same content is accepted as a no-op (a repeated push).
    pub fn apply(&self, table: RoutingTable) -> Result<u64, ApplyError> {
        let _serialized = self.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.active();
        if let Some(in_force) = &current.table {
            if table.revision <= in_force.revision {
                if *in_force == table {
                    return Ok(table.revision);
                }
                return Err(ApplyError::Stale {
                    current: in_force.revision,
                    offered: table.revision,
                });
            }
        }
        table.validate()?;
        let mut clusters = HashMap::new();
        for (i, spec) in table.clusters.iter().enumerate() {
            // Unchanged clusters keep their connection pools and tokens.
            if let Some(existing) = current.clusters.get(&spec.name) {
                if existing.spec == *spec {
                    clusters.insert(spec.name.clone(), existing.clone());
                    continue;
                }
            }
            clusters.insert(spec.name.clone(), Arc::new(self.cluster_runtime(i, spec)?));
        }
        let routes = RouteTable::new(&table, self.pod_labels.as_ref());
        let revision = table.revision;
        let unverified: Vec<&str> = table
            .clusters
            .iter()
            .filter(|c| c.tls.as_ref().is_some_and(|t| t.insecure_skip_verify))
            .map(|c| c.name.as_str())
            .collect();
        for cluster in unverified {
            // Loud on every table that has it, so it cannot go unnoticed in the logs.
            tracing::warn!(
                cluster,
                revision,
                "TLS certificate verification is OFF for this cluster (tls.insecureSkipVerify): \
                 anyone on the network path can read and change its traffic"
            );
        }
        let next = Arc::new(Active {
            table: Some(table),
            routes,
            clusters,
        });
        match self.active.write() {
            Ok(mut a) => *a = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        self.metrics.config_revision.set(revision as i64);
        self.ready.store(true, Ordering::Release);
        Ok(revision)
    }

    fn cluster_runtime(
        &self,
        index: usize,
        spec: &ClusterSpec,
    ) -> Result<ClusterRuntime, ApplyError> {
        let unsupported = |field: &str, reason: String| ApplyError::Unsupported {
            field: format!("clusters[{index}].{field}"),
            reason: format!("cluster {:?}: {reason}", spec.name),
        };
        let timeouts = spec
            .timeouts
            .parse()
            .map_err(|e| unsupported("timeouts", e))?;
        // tempauth is served by the target's proxy: its auth URL uses the cluster's TLS.
        let tempauth_url = match &spec.auth {
            AuthSpec::Credentials {
                credentials: CredentialsSpec::Tempauth { auth_url, .. },
            } => Some(auth_url.as_str()),
            _ => None,
        };
        // Built only when used: without caPem it loads the system roots, which may be absent.
        let tls = if spec.tls.is_some()
            || spec.endpoints.iter().map(String::as_str).any(is_https)
            || tempauth_url.is_some_and(is_https)
        {
            let tls =
                ClientTls::new(spec.tls.as_ref()).map_err(|e| unsupported(&e.field, e.reason))?;
            Some(Arc::new(tls))
        } else {
            None
        };
        let buffers = self.local.buffers();
        let upstream =
            Upstream::with_buffers(&spec.name, &spec.endpoints, timeouts, tls.clone(), buffers)
                .map_err(|e| unsupported("endpoints", e))?;
        let tokens = match &spec.auth {
            AuthSpec::Passthrough => None,
            AuthSpec::Credentials {
                credentials:
                    CredentialsSpec::Tempauth {
                        auth_url,
                        user,
                        key,
                    },
            } => Some(TokenSource::tempauth(&spec.name, auth_url, user, key, tls)),
            AuthSpec::Credentials {
                credentials: CredentialsSpec::Keystone(keystone),
            } => {
                // Keystone lives elsewhere than the target's Swift: its own TLS settings
                // (system roots when absent), never the cluster's CA, serverName or client
                // certificate.
                let tls = if keystone.tls.is_some() || is_https(&keystone.auth_url) {
                    let tls = ClientTls::new(keystone.tls.as_ref()).map_err(|e| {
                        unsupported(&format!("auth.credentials.{}", e.field), e.reason)
                    })?;
                    Some(Arc::new(tls))
                } else {
                    None
                };
                Some(TokenSource::keystone(&spec.name, keystone, tls))
            }
        }
        .map(|mut source| {
            source.fetches = self
                .metrics
                .token_fetches
                .get_or_create(&ClusterLabels {
                    cluster: spec.name.clone(),
                })
                .clone();
            Arc::new(source)
        });
        Ok(ClusterRuntime {
            spec: spec.clone(),
            upstream,
            tokens,
        })
    }
}

fn is_https(url: &str) -> bool {
    url.parse::<http::Uri>()
        .is_ok_and(|u| u.scheme() == Some(&http::uri::Scheme::HTTPS))
}
