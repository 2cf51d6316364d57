//! Against a real API server (the current kubeconfig context; the kind e2e runs these):
//! what mocks cannot prove — the API server enforcing the CRD's schema and CEL rules, the status
//! subresource, server-side apply, watches driving the controller, and the finalizer.
//!
//!     cargo test -p swiftfed-operator --test cluster -- --ignored

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResourceExt};
use serde_json::json;
use swiftfed_crds::federation::ClusterFederation;
use swiftfed_operator::controller::{self, Context};
use swiftfed_operator::metrics::Metrics;
use swiftfed_operator::push::Pusher;
use swiftfed_operator::sync::{Syncer, REVISION_ANNOTATION, ROUTING_SECRET};

/// `test` names the namespace: the tests run in parallel, and one test's teardown (a namespace
/// stays Terminating for a while) must not pull the namespace from under another.
async fn setup(test: &str) -> (Client, String, DeleteOnDrop) {
    let client = Client::try_default().await.expect("kubeconfig");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "clusterfederations.swiftfed.io",
        &PatchParams::apply("swiftfed-test").force(),
        &Patch::Apply(&ClusterFederation::crd()),
    )
    .await
    .expect("apply CRD");
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(
            crds,
            "clusterfederations.swiftfed.io",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("CRD established in time")
    .expect("watch CRD");
    let namespace = format!("swiftfed-test-{test}-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}})).expect("ns"),
        )
        .await
        .expect("create the test namespace");
    let cleanup = DeleteOnDrop(namespace.clone());
    (client, namespace, cleanup)
}

/// Deletes the test's namespace when the test ends, also when it fails: a panicking test
/// unwinds through its runtime, so the delete runs on a thread with a runtime and client of its
/// own.
struct DeleteOnDrop(String);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let name = self.0.clone();
        let deleting = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(client) = Client::try_default().await {
                    let namespaces: Api<Namespace> = Api::all(client);
                    let _ = namespaces.delete(&name, &DeleteParams::default()).await;
                }
            });
        });
        let _ = deleting.join();
    }
}

fn federation(namespace: &str, name: &str, spec: serde_json::Value) -> ClusterFederation {
    serde_json::from_value(json!({
        "apiVersion": "swiftfed.io/v1alpha1", "kind": "ClusterFederation",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec,
    }))
    .expect("federation")
}

#[tokio::test]
#[ignore = "needs a cluster"]
async fn the_api_server_enforces_the_schema_and_cel_rules() {
    let (client, namespace, _cleanup) = setup("schema").await;
    let api: Api<ClusterFederation> = Api::namespaced(client.clone(), &namespace);
    let cluster = json!({"name": "b", "endpoints": ["http://swift-b:8080"]});
    let bad = [
        (
            json!({"clusters": [cluster.clone(), cluster.clone()], "routes": []}),
            "cluster names must be unique",
        ),
        (
            json!({"clusters": [cluster.clone()], "routes": [{"match": {"account": "A"}, "target": {"cluster": "c"}}]}),
            "target.cluster",
        ),
        (
            json!({"clusters": [{"name": "b", "endpoints": ["ftp://x"]}], "routes": []}),
            "endpoints",
        ),
        (
            json!({"clusters": [{"name": "b", "endpoints": ["http://x"], "timeouts": {"connect": "2 s"}}], "routes": []}),
            "connect",
        ),
    ];
    for (i, (spec, expected)) in bad.into_iter().enumerate() {
        let err = api
            .create(
                &PostParams::default(),
                &federation(&namespace, &format!("bad-{i}"), spec.clone()),
            )
            .await
            .expect_err("the API server must refuse it");
        assert!(err.to_string().contains(expected), "{spec}: {err}");
    }
    api.create(
        &PostParams::default(),
        &federation(&namespace, "good", json!({"clusters": [cluster], "routes": [{"match": {"account": "A"}, "target": {"cluster": "b"}}]})),
    )
    .await
    .expect("a valid federation is accepted");
}

#[tokio::test]
#[ignore = "needs a cluster"]
async fn the_controller_watches_writes_status_and_finalizes() {
    let (client, namespace, _cleanup) = setup("controller").await;
    let ctx = Arc::new(Context {
        client: client.clone(),
        syncer: Syncer::new(client.clone(), Pusher::default(), 9901),
        reporter: Reporter {
            controller: "swiftfed-operator-test".into(),
            instance: None,
        },
        metrics: Arc::new(Metrics::default()),
        resync: Duration::from_secs(300),
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller::run(ctx, async move {
        let _ = stop_rx.await;
    }));

    let api: Api<ClusterFederation> = Api::namespaced(client.clone(), &namespace);
    let spec = json!({"clusters": [{"name": "b", "endpoints": ["http://127.0.0.1:1"]}],
                      "routes": [{"match": {"account": "AUTH_a"}, "target": {"cluster": "b"}}]});
    api.create(&PostParams::default(), &federation(&namespace, "f", spec))
        .await
        .expect("create");

    // The watch brings it to the controller; status comes back through the subresource.
    let reconciled = tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(api.clone(), "f", |f: Option<&ClusterFederation>| {
            f.and_then(|f| f.status.as_ref())
                .is_some_and(|s| s.revision.is_some() && !s.conditions.is_empty())
        }),
    )
    .await
    .expect("status written in time")
    .expect("watch")
    .expect("federation");
    let uid = reconciled.metadata.uid.clone().expect("uid");
    assert!(reconciled
        .metadata
        .finalizers
        .unwrap_or_default()
        .iter()
        .any(|f| f == "swiftfed.io/routes"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let snapshot = secrets.get(ROUTING_SECRET).await.expect("routing snapshot");
    assert!(snapshot
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key(REVISION_ANNOTATION));

    // Deleting waits for the finalizer, which the controller releases after removing routes.
    api.delete("f", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(api.clone(), "f", conditions::is_deleted(&uid)),
    )
    .await
    .expect("deleted in time")
    .expect("watch");
    let _ = stop_tx.send(());
    let _ = controller.await;
}
