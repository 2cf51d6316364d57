//! The chart's RBAC is exactly what the operator's code uses: no missing permission, no extra.
//!
//! Why recording rather than a declared list: the operator's real flows (the kube Controller with
//! its watches, reconcile with finalizer/status/events, leader election, the webhook certificate
//! and caBundle, pod listing, snapshot and admin-token Secrets) all run against the in-memory API
//! of `swiftfed_operator::testing`, which records every request as the RBAC permission it needs
//! (verb, API group, resource/subresource, namespace, name). The rendered Role/ClusterRole are
//! then compared with that record, so a new API call in the code without a chart rule, or a rule
//! nothing uses any more, fails here. Only `swiftfed-operator status` (a CLI run with the user's
//! own credentials, not the operator's ServiceAccount) is left out.

#[path = "support/helm.rs"]
mod helm;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::events::Reporter;
use serde_json::{json, Value};
use swiftfed_operator::controller::{self, Context};
use swiftfed_operator::leader::LeaderElector;
use swiftfed_operator::metrics::Metrics;
use swiftfed_operator::push::Pusher;
use swiftfed_operator::sync::Syncer;
use swiftfed_operator::testing::{serve, Access, FakeApi};
use swiftfed_operator::webhook::CertManager;

const FED_NS: &str = "swift";
const FEDS: &str = "/apis/swiftfed.io/v1alpha1/namespaces/swift/clusterfederations";
const WEBHOOK_CONFIGURATION: &str = "swiftfed-sidecar-injector";
const MWC: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/swiftfed-sidecar-injector";

fn federation(name: &str, clusters: Value, finalizers: Value, deleting: bool) -> Value {
    let mut metadata = json!({"name": name, "namespace": FED_NS, "uid": format!("uid-{name}"),
        "generation": 1, "resourceVersion": "5", "creationTimestamp": "2026-11-01T00:00:00Z",
        "finalizers": finalizers});
    if deleting {
        metadata["deletionTimestamp"] = json!("2026-11-25T00:00:00Z");
    }
    json!({"apiVersion": "swiftfed.io/v1alpha1", "kind": "ClusterFederation", "metadata": metadata,
        "spec": {"proxySelector": {"matchLabels": {"app": "swift-proxy"}},
                 "clusters": clusters,
                 "routes": [{"match": {"account": format!("AUTH_{name}")}, "target": {"cluster": "dr"}}]}})
}

fn cluster(name: &str, auth: Value) -> Value {
    json!({"name": name, "endpoints": ["http://127.0.0.1:1"], "auth": auth})
}

fn credentials(secret: &str) -> Value {
    json!({"mode": "Credentials", "credentialsSecretRef": {"name": secret}})
}

/// The API as a cluster would hold it: the webhook configuration the chart installs, a new
/// federation (finalizer to add, snapshot and admin token to create), one whose two missing
/// Secrets give two events of one reason (kube's Recorder patches the repeat into a series), one
/// being deleted, and a selected proxy pod without a sidecar.
fn seeded_api() -> FakeApi {
    let mut api = FakeApi::default();
    let mut put = |path: String, object: Value| {
        api.objects.insert(path, object);
    };
    put(
        MWC.to_string(),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": WEBHOOK_CONFIGURATION},
            "webhooks": [
                {"name": "namespaces.swiftfed.io", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                 "clientConfig": {"service": {"name": "swiftfed-webhook", "namespace": helm::NAMESPACE}}},
                {"name": "pods.swiftfed.io", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                 "clientConfig": {"service": {"name": "swiftfed-webhook", "namespace": helm::NAMESPACE}}}]}),
    );
    put(
        format!("{FEDS}/new"),
        federation(
            "new",
            json!([cluster("dr", json!({"mode": "Passthrough"}))]),
            json!([]),
            false,
        ),
    );
    put(
        format!("{FEDS}/broken"),
        federation(
            "broken",
            json!([
                cluster("dr", credentials("creds-dr")),
                cluster("dr2", credentials("creds-dr2"))
            ]),
            json!(["swiftfed.io/routes"]),
            false,
        ),
    );
    put(
        format!("{FEDS}/leaving"),
        federation(
            "leaving",
            json!([cluster("dr", json!({"mode": "Passthrough"}))]),
            json!(["swiftfed.io/routes"]),
            true,
        ),
    );
    put(
        format!("/api/v1/namespaces/{FED_NS}/pods/proxy-0"),
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "proxy-0", "namespace": FED_NS, "labels": {"app": "swift-proxy"}},
            "spec": {"containers": [{"name": "swift-proxy", "image": "swift"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5"}}),
    );
    api
}

fn accesses(api: &Arc<Mutex<FakeApi>>) -> BTreeSet<Access> {
    api.lock().expect("api").accesses.clone()
}

/// Runs every flow of `swiftfed-operator run`; returns what the webhook certificate issuing
/// needed apart (cert-manager replaces it) and everything else.
async fn record_operator_flows() -> (BTreeSet<Access>, BTreeSet<Access>) {
    let api = Arc::new(Mutex::new(seeded_api()));
    let client = serve(api.clone());

    // Leader election: create the Lease, renew it, release it on shutdown.
    let elector = LeaderElector::new(
        client.clone(),
        helm::NAMESPACE,
        "swiftfed-operator",
        "replica-a",
        Duration::from_secs(15),
    );
    assert!(elector.try_acquire_or_renew().await.expect("acquire"));
    assert!(elector.try_acquire_or_renew().await.expect("renew"));
    elector.release().await;

    // The controller: watches, reconciles (finalizers, snapshot, token, pods, status, events).
    let ctx = Arc::new(Context {
        client: client.clone(),
        syncer: Syncer::new(client.clone(), Pusher::default(), 9901),
        reporter: Reporter {
            controller: "swiftfed-operator".into(),
            instance: Some("replica-a".into()),
        },
        metrics: Arc::new(Metrics::default()),
        resync: Duration::from_secs(300),
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run(ctx, async move {
        let _ = stop_rx.await;
    }));
    let done = |api: &FakeApi| {
        let object = |name: &str| &api.objects[&format!("{FEDS}/{name}")];
        let has_status = |name: &str| object(name)["status"]["revision"].is_number();
        has_status("new")
            && has_status("broken")
            && object("new")["metadata"]["finalizers"] == json!(["swiftfed.io/routes"])
            && object("leaving")["metadata"]["finalizers"] == json!([])
            && api.accesses.iter().any(|a| a.resource == "events" && a.verb == "patch")
            // The informers got past their first list.
            && ["clusterfederations", "secrets", "pods"].iter().all(|r| {
                api.accesses
                    .iter()
                    .any(|a| a.verb == "watch" && a.resource == *r)
            })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&api.lock().expect("api")) {
        assert!(
            Instant::now() < deadline,
            "the controller did not reconcile every federation; requests so far: {:#?}",
            accesses(&api)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(());
    running.await.expect("controller");
    let without_issuing = accesses(&api);

    // The webhook certificate: issued into its Secret, CA published in the configuration.
    let manager = CertManager {
        client,
        namespace: helm::NAMESPACE.into(),
        secret: "swiftfed-webhook-tls".into(),
        service: "swiftfed-webhook".into(),
        webhook_configuration: WEBHOOK_CONFIGURATION.into(),
        validity: Duration::from_secs(365 * 24 * 3600),
        rotate_before: Duration::from_secs(30 * 24 * 3600),
    };
    manager
        .ensure()
        .await
        .expect("issue the webhook certificate");
    assert!(
        api.lock().expect("api").objects[MWC]["webhooks"][1]["clientConfig"]["caBundle"]
            .is_string(),
        "caBundle published"
    );
    let all = accesses(&api);
    (without_issuing, all)
}

/// One permission a rendered rule grants: `namespace` None for the ClusterRole.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    namespace: Option<String>,
    group: String,
    resource: String,
    verb: String,
    name: Option<String>,
}

impl Grant {
    fn allows(&self, a: &Access) -> bool {
        self.group == a.group
            && self.resource == a.resource
            && self.verb == a.verb
            && (self.namespace.is_none() || self.namespace == a.namespace)
            && (self.name.is_none() || self.name == a.name)
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The permissions the chart gives the operator's ServiceAccount, checking that each Role is
/// bound to it.
fn granted(rendered: &helm::Rendered) -> Vec<Grant> {
    let sa = rendered.of_kind("ServiceAccount")[0]["metadata"]["name"].clone();
    let mut out = Vec::new();
    for (role_kind, binding_kind) in [
        ("ClusterRole", "ClusterRoleBinding"),
        ("Role", "RoleBinding"),
    ] {
        for role in rendered.of_kind(role_kind) {
            let name = &role["metadata"]["name"];
            let bound = rendered.of_kind(binding_kind).iter().any(|b| {
                b["roleRef"]["kind"] == role_kind
                    && &b["roleRef"]["name"] == name
                    && b["subjects"].as_array().is_some_and(|s| {
                        s.iter().any(|s| {
                            s["kind"] == "ServiceAccount"
                                && s["name"] == sa
                                && s["namespace"] == helm::NAMESPACE
                        })
                    })
            });
            assert!(
                bound,
                "{role_kind} {name} is not bound to the operator's ServiceAccount"
            );
            let namespace = (role_kind == "Role").then(|| {
                role["metadata"]["namespace"]
                    .as_str()
                    .expect("Role namespace")
                    .to_string()
            });
            for rule in role["rules"].as_array().expect("rules") {
                let names = strings(&rule["resourceNames"]);
                for group in strings(&rule["apiGroups"]) {
                    for resource in strings(&rule["resources"]) {
                        for verb in strings(&rule["verbs"]) {
                            assert!(
                                verb != "*" && resource != "*" && group != "*",
                                "wildcard rule {rule}"
                            );
                            let grant = |name: Option<String>| Grant {
                                namespace: namespace.clone(),
                                group: group.clone(),
                                resource: resource.clone(),
                                verb: verb.clone(),
                                name,
                            };
                            if names.is_empty() {
                                out.push(grant(None));
                            } else {
                                out.extend(names.iter().map(|n| grant(Some(n.clone()))));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Missing: a request no rule allows. Extra: a rule (per verb and name) no request used, or a
/// ClusterRole rule on a namespaced resource used only in the operator's own namespace (a Role
/// there would do).
fn compare(grants: &[Grant], used: &BTreeSet<Access>) -> (Vec<String>, Vec<String>) {
    let missing: Vec<String> = used
        .iter()
        .filter(|a| !grants.iter().any(|g| g.allows(a)))
        .map(|a| format!("{a:?}"))
        .collect();
    let mut extra = Vec::new();
    for g in grants {
        let users: Vec<&Access> = used.iter().filter(|a| g.allows(a)).collect();
        if users.is_empty() {
            extra.push(format!("{g:?}: nothing uses it"));
        } else if g.namespace.is_none()
            && users
                .iter()
                .all(|a| a.namespace.as_deref() == Some(helm::NAMESPACE))
        {
            extra.push(format!(
                "{g:?}: cluster-wide, but used only in {}",
                helm::NAMESPACE
            ));
        }
    }
    (missing, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_rbac_is_exactly_what_the_operator_uses() {
    let (without_issuing, all) = record_operator_flows().await;
    // The record must hold the flows it claims to: a sanity floor, not the comparison itself.
    for (verb, resource) in [
        ("watch", "clusterfederations"),
        ("patch", "clusterfederations/status"),
        ("create", "secrets"),
        ("list", "pods"),
        ("create", "events"),
        ("update", "leases"),
    ] {
        assert!(
            without_issuing
                .iter()
                .any(|a| a.verb == verb && a.resource == resource),
            "the flows never did {verb} {resource}: {without_issuing:#?}"
        );
    }
    assert!(all
        .iter()
        .any(|a| a.verb == "patch" && a.resource == "mutatingwebhookconfigurations"));

    // Operator-issued certificate (default) needs the caBundle patch; cert-manager does not.
    for (values, used) in [
        (json!({}), &all),
        (json!({"certManager": {"enabled": true}}), &without_issuing),
    ] {
        let rendered = helm::render_ok(&values);
        let (missing, extra) = compare(&granted(&rendered), used);
        assert!(
            missing.is_empty() && extra.is_empty(),
            "values {values}: chart RBAC differs from what the operator uses\nmissing: {missing:#?}\nextra: {extra:#?}"
        );
    }
}
