//! The ClusterFederation controller: finalizer, namespace sync, status, events.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use swiftfed_crds::federation::{ClusterFederation, ClusterStatus, FINALIZER};

use crate::metrics::Metrics;
use crate::probe;
use crate::status;
use crate::sync::{referenced_secrets, Syncer};
use crate::Error;

pub struct Context {
    pub client: Client,
    pub syncer: Syncer,
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    /// How often a fully synced federation is looked at again (cluster probes, drift).
    pub resync: Duration,
}

pub async fn reconcile(
    federation: Arc<ClusterFederation>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = federation
        .namespace()
        .ok_or_else(|| Error::Invalid("ClusterFederation without namespace".into()))?;
    let name = federation.name_any();
    let api: Api<ClusterFederation> = Api::namespaced(ctx.client.clone(), &namespace);
    let _timer = ctx.metrics.reconcile_started();
    let has_finalizer = federation.finalizers().iter().any(|f| f == FINALIZER);

    if federation.metadata.deletion_timestamp.is_some() {
        if has_finalizer {
            // Routes leave every sidecar before the federation disappears: the sync renders
            // without it (it is being deleted) and pushes.
            let sync = ctx.syncer.sync(&namespace).await?;
            ctx.metrics.observe_sync(&sync);
            let remaining: Vec<&String> = federation
                .finalizers()
                .iter()
                .filter(|f| *f != FINALIZER)
                .collect();
            let patch = json!({"metadata": {"finalizers": remaining, "resourceVersion": federation.resource_version()}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            tracing::info!(%namespace, %name, revision = sync.revision, "routes removed; finalizer released");
        }
        return Ok(Action::await_change());
    }

    if !has_finalizer {
        let mut finalizers = federation.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": federation.resource_version()}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }

    let sync = ctx.syncer.sync(&namespace).await?;
    ctx.metrics.observe_sync(&sync);
    let (mut status, findings) = status::compute(
        &federation,
        &sync,
        Time(k8s_openapi::jiff::Timestamp::now()),
    );
    status.clusters = probe_clusters(&federation).await;

    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    let reference = federation.object_ref(&());
    for (pod, reason) in &findings.rejected {
        publish(
            &recorder,
            &reference,
            EventType::Warning,
            "PushRejected",
            format!(
                "sidecar of {pod} refused revision {}: {reason}",
                sync.revision
            ),
        )
        .await;
    }
    if !findings.missing.is_empty() {
        publish(&recorder, &reference, EventType::Warning, "SidecarMissing", format!("selected pods run no swiftfed sidecar (created while the webhook was unavailable?): {}", findings.missing.join(", "))).await;
    }
    if let Some(outcome) = sync.rendered.outcomes.get(&name) {
        for problem in &outcome.invalid {
            publish(
                &recorder,
                &reference,
                EventType::Warning,
                "InvalidSpec",
                problem.clone(),
            )
            .await;
        }
        for conflict in &outcome.conflicts {
            publish(
                &recorder,
                &reference,
                EventType::Warning,
                "Conflict",
                conflict.clone(),
            )
            .await;
        }
    }

    let in_sync = status.sidecars.in_sync == status.sidecars.selected - status.sidecars.missing;
    let patch = json!({"apiVersion": "swiftfed.io/v1alpha1", "kind": "ClusterFederation", "status": status});
    api.patch_status(
        &name,
        &PatchParams::apply(crate::sync::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(if in_sync {
        Action::requeue(ctx.resync)
    } else {
        // Sidecars behind (not ready yet, unreachable): try again soon.
        Action::requeue(Duration::from_secs(5))
    })
}

async fn publish(
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let mut note = note;
    note.truncate(1000);
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Sync".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, reason, "cannot publish event");
    }
}

async fn probe_clusters(federation: &ClusterFederation) -> Vec<ClusterStatus> {
    let mut out = Vec::new();
    for cluster in &federation.spec.clusters {
        let endpoints: Vec<String> = cluster.endpoints.iter().map(|e| e.0.clone()).collect();
        let result = probe::any_reachable(&endpoints, Duration::from_secs(2)).await;
        out.push(ClusterStatus {
            name: cluster.name.clone(),
            reachable: result.is_ok(),
            last_error: result.err(),
        });
    }
    out
}

pub fn error_policy(
    _federation: Arc<ClusterFederation>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.reconcile_failed();
    tracing::warn!(%error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let federations: Api<ClusterFederation> = Api::all(client.clone());
    // Bursts (a rollout's pod events, several Secrets edited at once) coalesce into one
    // reconcile per federation.
    let controller = Controller::new(federations, watcher::Config::default()).with_config(
        kube::runtime::controller::Config::default().debounce(Duration::from_millis(500)),
    );
    let store = controller.store();
    let secret_store = store.clone();
    let pod_store = store.clone();
    controller
        .graceful_shutdown_on(shutdown)
        // A referenced Secret changed: its federations re-render.
        .watches(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default(),
            move |secret: Secret| {
                let namespace = secret.namespace().unwrap_or_default();
                let name = secret.name_any();
                secret_store
                    .state()
                    .into_iter()
                    .filter(|f| f.namespace().as_deref() == Some(namespace.as_str()))
                    .filter(|f| {
                        referenced_secrets(std::slice::from_ref(f.as_ref())).contains(&name)
                    })
                    .map(|f| ObjectRef::from_obj(f.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        // A pod came, went or became ready: its namespace's federations push and count again.
        .watches(
            Api::<Pod>::all(client),
            watcher::Config::default(),
            move |pod: Pod| {
                let namespace = pod.namespace().unwrap_or_default();
                pod_store
                    .state()
                    .into_iter()
                    .filter(|f| f.namespace().as_deref() == Some(namespace.as_str()))
                    .map(|f| ObjectRef::from_obj(f.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}
