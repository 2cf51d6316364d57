//! Sidecar injection: what the mutating admission webhook does to a Swift proxy pod.
//!
//! The pod is changed as a typed object and the JSON patch is the diff between before and
//! after, so the patch is exactly the change and a pod that already has the sidecar gets an
//! empty patch (re-invocation is safe).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, DownwardAPIProjection, DownwardAPIVolumeFile, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, Pod, Probe, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, SecretProjection, SecurityContext, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;

use crate::sync::{
    ADMIN_PORT_ANNOTATION, ADMIN_TOKEN_KEY, ADMIN_TOKEN_SECRET, ROUTING_KEY, ROUTING_SECRET,
    SIDECAR_CONTAINER,
};

pub const INJECT_LABEL: &str = "swiftfed.io/inject";
pub const PROXY_PORT_ANNOTATION: &str = "swiftfed.io/proxy-port";
pub const INJECTED_ANNOTATION: &str = "swiftfed.io/injected";
const VOLUME: &str = "swiftfed";
const MOUNT: &str = "/etc/swiftfed";

/// Injection settings (from the Helm values).
#[derive(Clone, Debug)]
pub struct InjectorConfig {
    pub image: String,
    pub image_pull_policy: String,
    /// Port the sidecar takes Swift traffic on (the Service's targetPort).
    pub listen_port: u16,
    pub admin_port: u16,
    /// The Swift proxy's port when the pod has no `swiftfed.io/proxy-port` annotation.
    pub default_proxy_port: u16,
    /// Kubernetes >= 1.29: an init container with `restartPolicy: Always`, started before and
    /// stopped after the proxy. Otherwise a regular container.
    pub native_sidecar: bool,
    pub resources: ResourceRequirements,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Inject,
    Skip(&'static str),
}

pub fn decide(pod: &Pod, namespace: &str) -> Decision {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    if labels.get(INJECT_LABEL).map(String::as_str) == Some("disabled") {
        return Decision::Skip("pod opted out (swiftfed.io/inject: disabled)");
    }
    if namespace == "kube-system" || namespace == "kube-public" {
        return Decision::Skip("never injected into kube-system or kube-public");
    }
    let Some(spec) = &pod.spec else {
        return Decision::Skip("pod without spec");
    };
    if spec.host_network == Some(true) {
        return Decision::Skip("hostNetwork pods are never injected");
    }
    let present = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.name == SIDECAR_CONTAINER);
    if present {
        return Decision::Skip("sidecar already present");
    }
    Decision::Inject
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http_probe(path: &str, port: u16, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port.into()),
            ..Default::default()
        }),
        period_seconds: Some(5),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}

pub fn sidecar_container(cfg: &InjectorConfig, proxy_port: u16) -> Container {
    Container {
        name: SIDECAR_CONTAINER.into(),
        image: Some(cfg.image.clone()),
        image_pull_policy: Some(cfg.image_pull_policy.clone()),
        args: Some(vec![
            format!("--listen=0.0.0.0:{}", cfg.listen_port),
            format!("--upstream=127.0.0.1:{proxy_port}"),
            format!("--admin-listen=0.0.0.0:{}", cfg.admin_port),
            format!("--admin-token-file={MOUNT}/admin/{ADMIN_TOKEN_KEY}"),
            format!("--config={MOUNT}/routing/{ROUTING_KEY}"),
            format!("--pod-labels-file={MOUNT}/podinfo/labels"),
            "--log-format=json".into(),
        ]),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_IP", "status.podIP"),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("swiftfed".into()),
                container_port: cfg.listen_port.into(),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("swiftfed-admin".into()),
                container_port: cfg.admin_port.into(),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        volume_mounts: Some(vec![VolumeMount {
            name: VOLUME.into(),
            mount_path: MOUNT.into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        // The proxy starts only once the sidecar is up (native sidecars gate on this).
        startup_probe: Some(http_probe("/ready", cfg.admin_port, 60)),
        readiness_probe: Some(http_probe("/ready", cfg.admin_port, 3)),
        liveness_probe: Some(http_probe("/live", cfg.admin_port, 3)),
        resources: Some(cfg.resources.clone()),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        restart_policy: cfg.native_sidecar.then(|| "Always".to_string()),
        ..Default::default()
    }
}

/// One projected volume: the routing snapshot and the admin token (both optional, so a pod
/// starts before any federation exists) and the pod's labels.
fn sidecar_volume() -> Volume {
    let secret = |name: &str, key: &str, path: &str| VolumeProjection {
        secret: Some(SecretProjection {
            name: name.into(),
            optional: Some(true),
            items: Some(vec![k8s_openapi::api::core::v1::KeyToPath {
                key: key.into(),
                path: path.into(),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    };
    Volume {
        name: VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                secret(
                    ROUTING_SECRET,
                    ROUTING_KEY,
                    &format!("routing/{ROUTING_KEY}"),
                ),
                secret(
                    ADMIN_TOKEN_SECRET,
                    ADMIN_TOKEN_KEY,
                    &format!("admin/{ADMIN_TOKEN_KEY}"),
                ),
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "podinfo/labels".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.labels".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod with the sidecar (call only after `decide` said `Inject`).
pub fn inject(pod: &Pod, cfg: &InjectorConfig) -> Result<Pod, String> {
    let mut pod = pod.clone();
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let proxy_port = match annotations.get(PROXY_PORT_ANNOTATION) {
        Some(p) => p.parse::<u16>().map_err(|_| {
            format!("annotation {PROXY_PORT_ANNOTATION}={p:?} is not a port number")
        })?,
        None => cfg.default_proxy_port,
    };
    if proxy_port == cfg.listen_port || proxy_port == cfg.admin_port {
        return Err(format!(
            "the Swift proxy port {proxy_port} collides with the sidecar's ports ({} and {})",
            cfg.listen_port, cfg.admin_port
        ));
    }
    annotations.insert(ADMIN_PORT_ANNOTATION.into(), cfg.admin_port.to_string());
    annotations.insert(INJECTED_ANNOTATION.into(), "true".into());
    let spec = pod.spec.as_mut().ok_or("pod without spec")?;
    let container = sidecar_container(cfg, proxy_port);
    if cfg.native_sidecar {
        // First, so it is up before other init containers and the proxy start.
        spec.init_containers
            .get_or_insert_with(Vec::new)
            .insert(0, container);
    } else {
        spec.containers.push(container);
    }
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if volumes.iter().any(|v| v.name == VOLUME) {
        return Err(format!("the pod already has a volume named {VOLUME:?}"));
    }
    volumes.push(sidecar_volume());
    Ok(pod)
}

/// Answers one AdmissionReview (the body of the webhook's POST). A review that cannot be
/// decoded gets an error response naming why; the API server then applies `failurePolicy`.
pub fn review(body: &[u8], cfg: &InjectorConfig) -> AdmissionReview<DynamicObject> {
    let review: AdmissionReview<Pod> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return AdmissionResponse::invalid(format!("cannot decode AdmissionReview: {e}"))
                .into_review()
        }
    };
    let request: AdmissionRequest<Pod> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            return AdmissionResponse::invalid(format!("AdmissionReview without request: {e}"))
                .into_review()
        }
    };
    let response = AdmissionResponse::from(&request);
    let Some(pod) = &request.object else {
        return response.into_review();
    };
    let namespace = request
        .namespace
        .clone()
        .or_else(|| pod.metadata.namespace.clone())
        .unwrap_or_default();
    if let Decision::Skip(reason) = decide(pod, &namespace) {
        tracing::debug!(namespace, reason, "not injecting");
        return response.into_review();
    }
    let patched = match inject(pod, cfg) {
        Ok(p) => p,
        Err(reason) => return response.deny(reason).into_review(),
    };
    let (Ok(before), Ok(after)) = (serde_json::to_value(pod), serde_json::to_value(&patched))
    else {
        return response.deny("cannot encode the pod").into_review();
    };
    let patch = json_patch::diff(&before, &after);
    match response.clone().with_patch(patch) {
        Ok(r) => r.into_review(),
        Err(e) => response
            .deny(format!("cannot encode the patch: {e}"))
            .into_review(),
    }
}
