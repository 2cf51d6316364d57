//! The injection webhook on AdmissionReview fixtures of realistic Swift proxy pods: the patch
//! applied to the pod gives exactly the expected pod, and a second pass is a no-op.

use base64::Engine;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{json, Value};
use swiftfed_operator::inject::{review, InjectorConfig};

fn config(native: bool) -> InjectorConfig {
    InjectorConfig {
        image: "registry.example/swiftfed-sidecar:0.1.0".into(),
        image_pull_policy: "IfNotPresent".into(),
        listen_port: 8090,
        admin_port: 9901,
        default_proxy_port: 8080,
        native_sidecar: native,
        resources: ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_string(), Quantity("50m".into())),
                    ("memory".to_string(), Quantity("32Mi".into())),
                ]
                .into(),
            ),
            limits: Some([("memory".to_string(), Quantity("128Mi".into()))].into()),
            ..Default::default()
        },
    }
}

fn admission(pod: &Value, namespace: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod, "oldObject": null, "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    }))
    .expect("review JSON")
}

/// (allowed, the pod after the patch, denial message)
fn run(pod: &Value, namespace: &str, cfg: &InjectorConfig) -> (bool, Value, String) {
    let answer =
        serde_json::to_value(review(&admission(pod, namespace), cfg)).expect("response JSON");
    let response = &answer["response"];
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    let mut patched = pod.clone();
    // kube encodes the patch bytes as a JSON array of numbers (Go's []byte decoder accepts it);
    // the API docs show base64: take either.
    let bytes: Option<Vec<u8>> = match &response["patch"] {
        Value::String(b64) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64 patch"),
        ),
        Value::Array(numbers) => Some(
            numbers
                .iter()
                .map(|n| n.as_u64().expect("byte") as u8)
                .collect(),
        ),
        _ => None,
    };
    if let Some(bytes) = bytes {
        assert_eq!(response["patchType"], "JSONPatch");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("JSON patch");
        json_patch::patch(&mut patched, &patch).expect("patch applies");
    }
    (
        response["allowed"].as_bool().unwrap_or(false),
        patched,
        response["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// A Deployment's Swift proxy pod as the ReplicaSet controller submits it.
fn deployment_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "swift-proxy-7d9c6b5f4-", "namespace": "swift",
            "labels": {"app": "swift-proxy", "pod-template-hash": "7d9c6b5f4", "swiftfed.io/inject": "enabled"},
            "annotations": {"swiftfed.io/proxy-port": "8080"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "swift-proxy-7d9c6b5f4", "uid": "u1", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {
            "containers": [{"name": "swift-proxy", "image": "swift:2.38", "ports": [{"containerPort": 8080, "name": "swift", "protocol": "TCP"}],
                "volumeMounts": [{"name": "swift-conf", "mountPath": "/etc/swift"}]}],
            "volumes": [{"name": "swift-conf", "configMap": {"name": "swift-proxy-conf"}}],
            "restartPolicy": "Always", "serviceAccountName": "swift-proxy"
        }
    })
}

/// The sidecar as it must look (independent of the code under test).
fn expected_sidecar(proxy_port: u16, native: bool) -> Value {
    let probe = |path: &str, failures: i64| json!({"httpGet": {"path": path, "port": 9901}, "periodSeconds": 5, "failureThreshold": failures});
    let mut c = json!({
        "name": "swiftfed-sidecar", "image": "registry.example/swiftfed-sidecar:0.1.0", "imagePullPolicy": "IfNotPresent",
        "args": ["--listen=0.0.0.0:8090", format!("--upstream=127.0.0.1:{proxy_port}"), "--admin-listen=0.0.0.0:9901",
                 "--admin-token-file=/etc/swiftfed/admin/token", "--config=/etc/swiftfed/routing/routing.json",
                 "--pod-labels-file=/etc/swiftfed/podinfo/labels", "--log-format=json"],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "swiftfed", "containerPort": 8090, "protocol": "TCP"},
                  {"name": "swiftfed-admin", "containerPort": 9901, "protocol": "TCP"}],
        "volumeMounts": [{"name": "swiftfed", "mountPath": "/etc/swiftfed", "readOnly": true}],
        "startupProbe": probe("/ready", 60), "readinessProbe": probe("/ready", 3), "livenessProbe": probe("/live", 3),
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    });
    if native {
        c["restartPolicy"] = json!("Always");
    }
    c
}

fn expected_volume() -> Value {
    json!({"name": "swiftfed", "projected": {"sources": [
        {"secret": {"name": "swiftfed-routing", "optional": true, "items": [{"key": "routing.json", "path": "routing/routing.json"}]}},
        {"secret": {"name": "swiftfed-admin-token", "optional": true, "items": [{"key": "token", "path": "admin/token"}]}},
        {"downwardAPI": {"items": [{"path": "podinfo/labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
    ]}})
}

fn expected_injection(mut pod: Value, proxy_port: u16, native: bool) -> Value {
    pod["metadata"]["annotations"]["swiftfed.io/admin-port"] = json!("9901");
    pod["metadata"]["annotations"]["swiftfed.io/injected"] = json!("true");
    if native {
        let mut init = vec![expected_sidecar(proxy_port, true)];
        init.extend(
            pod["spec"]["initContainers"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        pod["spec"]["initContainers"] = json!(init);
    } else {
        pod["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
            .push(expected_sidecar(proxy_port, false));
    }
    let mut volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    volumes.push(expected_volume());
    pod["spec"]["volumes"] = json!(volumes);
    pod
}

#[test]
fn a_deployment_pod_gets_a_native_sidecar_and_a_second_pass_changes_nothing() {
    let cfg = config(true);
    let pod = deployment_pod();
    let (allowed, patched, _) = run(&pod, "swift", &cfg);
    assert!(allowed);
    assert_eq!(patched, expected_injection(pod, 8080, true));
    let (allowed, again, _) = run(&patched, "swift", &cfg);
    assert!(allowed);
    assert_eq!(again, patched, "re-invocation is a no-op");
}

#[test]
fn a_statefulset_pod_with_an_init_container_keeps_it_after_the_sidecar() {
    let cfg = config(true);
    let mut pod = deployment_pod();
    pod["metadata"] = json!({"name": "swift-proxy-0", "namespace": "swift",
        "labels": {"app": "swift-proxy", "statefulset.kubernetes.io/pod-name": "swift-proxy-0"},
        "annotations": {"swiftfed.io/proxy-port": "8081"}});
    pod["spec"]["initContainers"] = json!([{"name": "ring-fetch", "image": "busybox", "command": ["sh", "-c", "cp /rings/* /etc/swift/"]}]);
    pod["spec"]["hostname"] = json!("swift-proxy-0");
    pod["spec"]["subdomain"] = json!("swift-proxy");
    let (allowed, patched, _) = run(&pod, "swift", &cfg);
    assert!(allowed);
    assert_eq!(patched, expected_injection(pod, 8081, true));
    assert_eq!(patched["spec"]["initContainers"][1]["name"], "ring-fetch");
}

#[test]
fn older_clusters_get_a_regular_container() {
    let cfg = config(false);
    let pod = deployment_pod();
    let (_, patched, _) = run(&pod, "swift", &cfg);
    assert_eq!(patched, expected_injection(pod, 8080, false));
    let (_, again, _) = run(&patched, "swift", &cfg);
    assert_eq!(again, patched);
}

#[test]
fn opted_out_system_and_host_network_pods_are_left_alone() {
    let cfg = config(true);
    let mut opted_out = deployment_pod();
    opted_out["metadata"]["labels"]["swiftfed.io/inject"] = json!("disabled");
    let mut host_network = deployment_pod();
    host_network["spec"]["hostNetwork"] = json!(true);
    for (pod, namespace) in [
        (opted_out, "swift"),
        (deployment_pod(), "kube-system"),
        (host_network, "swift"),
    ] {
        let (allowed, patched, _) = run(&pod, namespace, &cfg);
        assert!(allowed, "never blocks a pod it leaves alone");
        assert_eq!(patched, pod);
    }
}

#[test]
fn bad_input_gets_a_clear_answer() {
    let cfg = config(true);
    let answer = serde_json::to_value(review(b"{not json", &cfg)).expect("json");
    assert_eq!(answer["response"]["allowed"], false);
    assert!(
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot decode AdmissionReview"),
        "{answer}"
    );

    let mut pod = deployment_pod();
    pod["metadata"]["annotations"]["swiftfed.io/proxy-port"] = json!("http");
    let (allowed, _, message) = run(&pod, "swift", &cfg);
    assert!(!allowed);
    assert!(
        message.contains("swiftfed.io/proxy-port") && message.contains("http"),
        "{message}"
    );

    pod["metadata"]["annotations"]["swiftfed.io/proxy-port"] = json!("8090");
    let (allowed, _, message) = run(&pod, "swift", &cfg);
    assert!(!allowed);
    assert!(message.contains("collides"), "{message}");
}
