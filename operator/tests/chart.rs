//! The Helm chart (deploy/helm/swiftfed), rendered by the real Helm engine with several value
//! sets: every object validates against the Kubernetes schemas, the values schema refuses bad
//! values with a readable message, the operator binary accepts the flags the Deployment passes,
//! the objects are wired together, the chart's CRD is the generated one, and the Grafana
//! dashboard queries only metrics the code exports.

#[path = "support/helm.rs"]
mod helm;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use helm::{render, render_ok, Rendered, NAMESPACE};

/// Kinds whose schemas come from other projects' CRDs (cert-manager, prometheus-operator), which
/// kubernetes-validate does not have. They are checked here instead: an allow-list of kinds, their
/// spec fields against the fields those CRDs define for what the chart uses, and their wiring to
/// the chart's own objects (`check_wiring`).
const FOREIGN_KINDS: [(&str, &str, &[&str]); 4] = [
    ("cert-manager.io/v1", "Issuer", &["selfSigned"]),
    (
        "cert-manager.io/v1",
        "Certificate",
        &[
            "secretName",
            "dnsNames",
            "duration",
            "renewBefore",
            "privateKey",
            "issuerRef",
        ],
    ),
    (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        &["selector", "namespaceSelector", "endpoints"],
    ),
    (
        "monitoring.coreos.com/v1",
        "PodMonitor",
        &["selector", "namespaceSelector", "podMetricsEndpoints"],
    ),
];

/// Value sets the chart must render for; each is checked the same way.
fn value_sets() -> Vec<(&'static str, Value)> {
    let example: Value = serde_yaml::from_str(
        &std::fs::read_to_string(helm::root().join("deploy/examples/values-swift-proxy.yaml"))
            .expect("example values"),
    )
    .expect("example values are YAML");
    vec![
        ("defaults", json!({})),
        ("cert-manager", json!({"certManager": {"enabled": true}})),
        (
            "cert-manager with a ClusterIssuer",
            json!({"certManager": {"enabled": true, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}),
        ),
        (
            "monitors",
            json!({"serviceMonitor": {"enabled": true}, "sidecarPodMonitor": {"enabled": true}}),
        ),
        ("regular sidecar", json!({"sidecar": {"native": false}})),
        (
            "failurePolicy Ignore",
            json!({"webhook": {"failurePolicy": "Ignore"}}),
        ),
        ("deploy/examples/values-swift-proxy.yaml", example),
    ]
}

/// `values` merged over values.yaml, for assertions about what the chart should do.
fn effective(values: &Value) -> Value {
    let mut merged: Value = serde_yaml::from_str(
        &std::fs::read_to_string(helm::chart_dir().join("values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml is YAML");
    fn merge(into: &mut Value, over: &Value) {
        match (into, over) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            (slot, v) => *slot = v.clone(),
        }
    }
    merge(&mut merged, values);
    merged
}

fn kubernetes_validate(label: &str, rendered: &Rendered) {
    let dir = scratch();
    let file = dir.join("rendered.yaml");
    let mut text = String::new();
    let mut core = 0;
    for object in &rendered.objects {
        let foreign = FOREIGN_KINDS
            .iter()
            .any(|(api, kind, _)| object["apiVersion"] == *api && object["kind"] == *kind);
        if !foreign {
            core += 1;
        }
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(object).expect("to YAML"));
    }
    for (_, crd) in &rendered.crds {
        core += 1;
        text.push_str("---\n");
        text.push_str(crd);
    }
    std::fs::write(&file, text).expect("write rendered objects");
    let bin = swiftfed_tests::venv_bin("kubernetes-validate");
    // 1.29: the oldest Kubernetes with native sidecars; the tool's default is the newest it knows.
    for version in [Some("1.29"), None] {
        let mut command = std::process::Command::new(&bin);
        command.arg("--strict");
        if let Some(v) = version {
            command.args(["-k", v]);
        }
        let out = command.arg(&file).output().unwrap_or_else(|e| {
            panic!(
                "{}: {e} (scripts/install-test-deps installs it)",
                bin.display()
            )
        });
        let report = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        let passed = report
            .lines()
            .filter(|l| l.starts_with("INFO") && l.contains(" passed "))
            .count();
        let unknown: Vec<&str> = report
            .lines()
            .filter(|l| l.contains("Couldn't find schema"))
            .collect();
        assert!(
            out.status.success() && passed == core,
            "{label} (Kubernetes {version:?}): {passed} of {core} objects passed\n{report}"
        );
        // Only the foreign kinds may go unvalidated, each one checked below instead.
        for line in &unknown {
            assert!(
                FOREIGN_KINDS
                    .iter()
                    .any(|(api, kind, _)| line
                        .contains(&format!("kind {kind} with api version {api} "))),
                "{label}: unexpected kind without schema: {line}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    for object in &rendered.objects {
        if let Some((_, _, fields)) = FOREIGN_KINDS
            .iter()
            .find(|(api, kind, _)| object["apiVersion"] == *api && object["kind"] == *kind)
        {
            let spec = object["spec"].as_object().expect("spec");
            for key in spec.keys() {
                assert!(
                    fields.contains(&key.as_str()),
                    "{label}: {} has unexpected spec.{key}",
                    object["kind"]
                );
            }
            let top: BTreeSet<&str> = object
                .as_object()
                .expect("object")
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                top,
                BTreeSet::from(["apiVersion", "kind", "metadata", "spec"]),
                "{label}"
            );
        }
    }
}

/// A directory of this test's own (tests run in parallel within the process).
fn scratch() -> std::path::PathBuf {
    let dir = swiftfed_tests::scratch_dir()
        .expect("scratch dir")
        .join(swiftfed_tests::unique_name("chart"));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
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

fn arg<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("{flag}=")))
}

fn port_of(container: &Value, name: &str) -> i64 {
    container["ports"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no container port {name}"))
}

fn matches(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .expect("matchLabels")
        .iter()
        .all(|(k, v)| &labels[k] == v)
}

/// How the objects refer to each other, and that they say what the values say.
fn check_wiring(label: &str, values: &Value, r: &Rendered) {
    let v = effective(values);
    let cert_manager = v["certManager"]["enabled"] == true;
    let deployment = r.find("Deployment", "swiftfed-operator");
    assert_eq!(deployment["spec"]["replicas"], v["replicaCount"], "{label}");
    let pod = &deployment["spec"]["template"];
    let pod_labels = &pod["metadata"]["labels"];
    assert!(
        matches(&deployment["spec"]["selector"]["matchLabels"], pod_labels),
        "{label}"
    );
    let container = &pod["spec"]["containers"][0];
    let args = strings(&container["args"]);
    assert_eq!(args[0], "run", "{label}");

    // Hardened pod and container.
    let sc = &container["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{label}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{label}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{label}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{label}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{label}");
    assert_eq!(
        pod["spec"]["securityContext"]["runAsNonRoot"], true,
        "{label}"
    );

    // Health and metrics: the operator serves /healthz, /readyz and /metrics on --metrics-listen.
    let metrics_port = port_of(container, "metrics");
    assert_eq!(
        arg(&args, "--metrics-listen"),
        Some(format!("0.0.0.0:{metrics_port}").as_str()),
        "{label}"
    );
    assert_eq!(metrics_port, v["metrics"]["port"], "{label}");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "metrics");

    // Leader election in the release namespace (POD_NAMESPACE), identity = pod name.
    let env = container["env"].as_array().expect("env");
    let field = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone())
    };
    assert_eq!(field("POD_NAMESPACE"), Some(json!("metadata.namespace")));
    assert_eq!(field("POD_NAME"), Some(json!("metadata.name")));
    assert_eq!(
        arg(&args, "--lease-name"),
        v["leaderElection"]["leaseName"].as_str()
    );

    // What the webhook injects follows the values.
    assert_eq!(
        arg(&args, "--native-sidecar"),
        Some(if v["sidecar"]["native"] == true {
            "true"
        } else {
            "false"
        }),
        "{label}"
    );
    let resources: Value =
        serde_json::from_str(arg(&args, "--sidecar-resources").expect("--sidecar-resources"))
            .expect("--sidecar-resources is JSON");
    assert_eq!(resources, v["sidecar"]["resources"], "{label}");
    assert_eq!(
        arg(&args, "--sidecar-image"),
        Some(
            format!(
                "{}:{}",
                v["sidecar"]["image"]["repository"]
                    .as_str()
                    .expect("repository"),
                v["sidecar"]["image"]["tag"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .unwrap_or("0.1.0")
            )
            .as_str()
        ),
        "{label}"
    );
    for (flag, key) in [
        ("--sidecar-listen-port", "listenPort"),
        ("--sidecar-admin-port", "adminPort"),
        ("--default-proxy-port", "defaultProxyPort"),
    ] {
        assert_eq!(
            arg(&args, flag).map(str::to_string),
            Some(v["sidecar"][key].to_string()),
            "{label}: {flag}"
        );
    }

    // The webhook Service reaches the container's webhook port, which the operator listens on.
    let webhook_port = port_of(container, "webhook");
    assert_eq!(
        arg(&args, "--webhook-listen"),
        Some(format!("0.0.0.0:{webhook_port}").as_str())
    );
    let service = r.find("Service", "swiftfed-webhook");
    assert!(matches(&service["spec"]["selector"], pod_labels), "{label}");
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "webhook");

    // The webhook configuration.
    let mwc = r.find("MutatingWebhookConfiguration", "swiftfed-sidecar-injector");
    let webhooks = mwc["webhooks"].as_array().expect("webhooks");
    assert_eq!(webhooks.len(), 2, "{label}");
    for w in webhooks {
        let name = &w["name"];
        assert_eq!(
            w["failurePolicy"], v["webhook"]["failurePolicy"],
            "{label} {name}"
        );
        assert_eq!(w["sideEffects"], "None");
        assert_eq!(w["admissionReviewVersions"], json!(["v1"]));
        assert_eq!(w["rules"][0]["resources"], json!(["pods"]));
        assert_eq!(w["rules"][0]["operations"], json!(["CREATE"]));
        assert_eq!(w["clientConfig"]["service"]["name"], "swiftfed-webhook");
        assert_eq!(w["clientConfig"]["service"]["namespace"], NAMESPACE);
        assert_eq!(w["clientConfig"]["service"]["path"], "/mutate");
        assert!(
            w["clientConfig"]["caBundle"].is_null(),
            "caBundle is filled at run time"
        );
        // Never kube-system, nor the operator's own namespace (it must start without itself).
        let excluded = w["namespaceSelector"]["matchExpressions"]
            .as_array()
            .expect("namespaceSelector")
            .iter()
            .find(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
            .map(|e| strings(&e["values"]))
            .unwrap_or_default();
        for ns in ["kube-system", NAMESPACE] {
            assert!(
                excluded.iter().any(|e| e == ns),
                "{label} {name} matches {ns}"
            );
        }
    }
    // Scoped to what asked for injection: a labelled namespace, or a labelled pod.
    let by_namespace = webhooks
        .iter()
        .find(|w| w["name"] == "namespaces.swiftfed.io")
        .expect("namespace webhook");
    assert!(by_namespace["namespaceSelector"]["matchExpressions"]
        .as_array()
        .expect("expressions")
        .iter()
        .any(|e| e["key"] == "swiftfed.io/inject"
            && e["operator"] == "In"
            && e["values"] == json!(["enabled"])));
    let by_pod = webhooks
        .iter()
        .find(|w| w["name"] == "pods.swiftfed.io")
        .expect("pod webhook");
    assert_eq!(
        by_pod["objectSelector"]["matchLabels"]["swiftfed.io/inject"],
        "enabled"
    );

    // Certificates: issued by the operator (Secret + caBundle patch) or by cert-manager.
    let certificates = r.of_kind("Certificate");
    if cert_manager {
        assert_eq!(certificates.len(), 1, "{label}");
        let certificate = certificates[0];
        assert_eq!(
            mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            format!(
                "{NAMESPACE}/{}",
                certificate["metadata"]["name"].as_str().expect("name")
            ),
        );
        let dns = strings(&certificate["spec"]["dnsNames"]);
        assert!(
            dns.contains(&format!("swiftfed-webhook.{NAMESPACE}.svc")),
            "{dns:?}"
        );
        let secret = &certificate["spec"]["secretName"];
        let volume = pod["spec"]["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| &v["secret"]["secretName"] == secret))
            .expect("the certificate's Secret is mounted");
        let mount = container["volumeMounts"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == volume["name"]))
            .and_then(|m| m["mountPath"].as_str())
            .expect("mounted");
        assert_eq!(
            arg(&args, "--webhook-cert-file"),
            Some(format!("{mount}/tls.crt").as_str())
        );
        assert_eq!(
            arg(&args, "--webhook-key-file"),
            Some(format!("{mount}/tls.key").as_str())
        );
        let issuer = &certificate["spec"]["issuerRef"];
        match v["certManager"]["issuerRef"]["name"].as_str() {
            Some(name) => {
                assert_eq!(issuer["name"], name);
                assert!(r.of_kind("Issuer").is_empty(), "{label}");
            }
            None => {
                assert_eq!(issuer["kind"], "Issuer");
                let own = r.of_kind("Issuer");
                assert_eq!(own.len(), 1);
                assert_eq!(own[0]["metadata"]["name"], issuer["name"]);
            }
        }
        assert_eq!(arg(&args, "--webhook-secret"), None);
    } else {
        assert!(
            certificates.is_empty() && r.of_kind("Issuer").is_empty(),
            "{label}"
        );
        assert!(mwc["metadata"]["annotations"].is_null(), "{label}");
        assert_eq!(
            arg(&args, "--webhook-configuration"),
            Some("swiftfed-sidecar-injector")
        );
        assert_eq!(arg(&args, "--webhook-service"), Some("swiftfed-webhook"));
        assert_eq!(
            arg(&args, "--webhook-secret"),
            v["webhook"]["secretName"].as_str()
        );
        assert_eq!(arg(&args, "--webhook-cert-file"), None);
    }

    // The PodDisruptionBudget keeps one replica (the webhook) through drains.
    let pdb = r.find("PodDisruptionBudget", "swiftfed-operator");
    assert_eq!(pdb["spec"]["minAvailable"], 1, "{label}");
    assert!(matches(&pdb["spec"]["selector"]["matchLabels"], pod_labels));

    // Monitoring objects select what exists.
    let metrics_service = r.find("Service", "swiftfed-operator-metrics");
    assert!(matches(&metrics_service["spec"]["selector"], pod_labels));
    let monitors = r.of_kind("ServiceMonitor");
    assert_eq!(
        monitors.len(),
        usize::from(v["serviceMonitor"]["enabled"] == true),
        "{label}"
    );
    for monitor in monitors {
        assert!(matches(
            &monitor["spec"]["selector"]["matchLabels"],
            &metrics_service["metadata"]["labels"]
        ));
        assert_eq!(
            monitor["spec"]["endpoints"][0]["port"],
            metrics_service["spec"]["ports"][0]["name"]
        );
        assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    }
    let pod_monitors = r.of_kind("PodMonitor");
    assert_eq!(
        pod_monitors.len(),
        usize::from(v["sidecarPodMonitor"]["enabled"] == true),
        "{label}"
    );
    for monitor in pod_monitors {
        // The port name the webhook gives the injected sidecar's admin port.
        let cfg = swiftfed_operator::inject::InjectorConfig {
            image: String::new(),
            image_pull_policy: String::new(),
            listen_port: 8090,
            admin_port: 9901,
            default_proxy_port: 8080,
            native_sidecar: true,
            resources: Default::default(),
        };
        let sidecar =
            serde_json::to_value(swiftfed_operator::inject::sidecar_container(&cfg, 8080))
                .expect("sidecar JSON");
        let admin_name = sidecar["ports"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["containerPort"] == 9901))
            .map(|p| p["name"].clone())
            .expect("admin port");
        assert_eq!(
            monitor["spec"]["podMetricsEndpoints"][0]["port"],
            admin_name
        );
    }
}

/// The Deployment's arguments go through the operator binary's own parser and checks: it gets as
/// far as looking for a Kubernetes client configuration (none here), so clap and the webhook
/// option checks (e.g. --sidecar-resources) accepted them.
fn binary_accepts(label: &str, r: &Rendered) {
    let deployment = r.find("Deployment", "swiftfed-operator");
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    let scratch = scratch();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_swiftfed-operator"))
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &scratch)
        .env("KUBECONFIG", scratch.join("no-kubeconfig"))
        .env("POD_NAMESPACE", NAMESPACE)
        .env("POD_NAME", "swiftfed-operator-0")
        .output()
        .expect("run swiftfed-operator");
    let _ = std::fs::remove_dir_all(&scratch);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("no Kubernetes client configuration"),
        "{label}: swiftfed-operator {args:?} did not get past argument parsing:\n{stderr}"
    );
}

#[test]
fn every_value_set_renders_validates_and_is_wired() {
    for (label, values) in value_sets() {
        let rendered = render_ok(&values);
        kubernetes_validate(label, &rendered);
        check_wiring(label, &values, &rendered);
        binary_accepts(label, &rendered);
    }
}

/// Kubernetes' label selector semantics (matchLabels and matchExpressions; `NotIn` and
/// `DoesNotExist` match a missing label), as the API server applies the webhook's selectors.
fn selects(selector: &Value, labels: &serde_json::Map<String, Value>) -> bool {
    let by_labels = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let by_expressions = selector["matchExpressions"].as_array().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let key = e["key"].as_str().expect("key");
            let values = strings(&e["values"]);
            let value = labels.get(key).and_then(Value::as_str);
            match e["operator"].as_str().expect("operator") {
                "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
                "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                other => panic!("unknown operator {other}"),
            }
        })
    });
    by_labels && by_expressions
}

/// Which webhook entries the API server would call for a pod, given its namespace's labels (with
/// the kubernetes.io/metadata.name label the API server sets) and the pod's labels.
fn called(
    r: &Rendered,
    namespace: &str,
    ns_inject: Option<&str>,
    pod_inject: Option<&str>,
) -> Vec<String> {
    let mut ns_labels = serde_json::Map::new();
    ns_labels.insert("kubernetes.io/metadata.name".into(), json!(namespace));
    if let Some(v) = ns_inject {
        ns_labels.insert("swiftfed.io/inject".into(), json!(v));
    }
    let mut pod_labels = serde_json::Map::new();
    pod_labels.insert("app".into(), json!("swift-proxy"));
    if let Some(v) = pod_inject {
        pod_labels.insert("swiftfed.io/inject".into(), json!(v));
    }
    let mwc = r.find("MutatingWebhookConfiguration", "swiftfed-sidecar-injector");
    mwc["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .filter(|w| selects(&w["namespaceSelector"], &ns_labels))
        .filter(|w| selects(&w["objectSelector"], &pod_labels))
        .map(|w| w["name"].as_str().expect("name").to_string())
        .collect()
}

#[test]
fn webhook_is_called_only_for_pods_that_asked_for_injection() {
    let r = render_ok(&json!({}));
    let once = |hooks: Vec<String>, which: &str| hooks == vec![which.to_string()];
    // Asked for: exactly one entry answers (never two patches for one pod).
    assert!(once(
        called(&r, "swift", Some("enabled"), None),
        "namespaces.swiftfed.io"
    ));
    assert!(once(
        called(&r, "swift", Some("enabled"), Some("enabled")),
        "namespaces.swiftfed.io"
    ));
    assert!(once(
        called(&r, "swift", None, Some("enabled")),
        "pods.swiftfed.io"
    ));
    // Not asked for, or opted out: no call, so failurePolicy Fail cannot block these pods.
    assert!(called(&r, "swift", None, None).is_empty());
    assert!(called(&r, "swift", Some("enabled"), Some("disabled")).is_empty());
    assert!(called(&r, "swift", Some("disabled"), None).is_empty());
    // System namespaces and the operator's own: never, whatever their labels say.
    for ns in ["kube-system", "kube-public", NAMESPACE] {
        for (ns_inject, pod_inject) in [
            (Some("enabled"), None),
            (None, Some("enabled")),
            (Some("enabled"), Some("enabled")),
        ] {
            assert!(
                called(&r, ns, ns_inject, pod_inject).is_empty(),
                "{ns} {ns_inject:?} {pod_inject:?}"
            );
        }
    }
}

#[test]
fn chart_passes_helm_lint_strict() {
    for (label, values) in value_sets() {
        let report = helm::lint(&values);
        // Severity 1 is information ("icon is recommended"); 2 and up are warnings and errors.
        let problems: Vec<&Value> = report["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
            .collect();
        assert!(
            problems.is_empty() && report["errors"].as_array().is_none_or(Vec::is_empty),
            "{label}: helm lint --strict: {report}"
        );
    }
}

#[test]
fn values_schema_refuses_bad_values_readably() {
    let cases = [
        (
            json!({"replicaCount": "two"}),
            "at '/replicaCount': got string, want integer",
        ),
        (
            json!({"webhook": {"failurePolicy": "Sometimes"}}),
            "at '/webhook/failurePolicy': value must be one of 'Fail', 'Ignore'",
        ),
        (
            json!({"sidecar": {"nativ": false}}),
            "at '/sidecar': additional properties 'nativ' not allowed",
        ),
        (
            json!({"sidecar": {"native": "yes"}}),
            "at '/sidecar/native': got string, want boolean",
        ),
        (json!({"resync": "5 minutes"}), "at '/resync'"),
        (json!({"webhook": {"port": 70000}}), "at '/webhook/port'"),
    ];
    for (values, message) in cases {
        match render(&values) {
            Ok(_) => panic!("{values} was accepted"),
            Err(e) => assert!(
                e.contains(message),
                "{values}: expected {message:?} in:\n{e}"
            ),
        }
    }
}

#[test]
fn chart_crd_is_the_generated_crd() {
    let committed =
        std::fs::read(helm::root().join("deploy/crds/clusterfederations.swiftfed.io.yaml"))
            .expect("deploy/crds");
    let in_chart =
        std::fs::read(helm::chart_dir().join("crds/clusterfederations.swiftfed.io.yaml"))
            .expect("chart crds/");
    assert!(
        committed == in_chart,
        "the chart's CRD differs from deploy/crds: run `SWIFTFED_BLESS=1 cargo test -p swiftfed-operator --test crd`"
    );
    let generated = swiftfed_operator::cli::crdgen().expect("crdgen");
    assert!(
        in_chart == generated.as_bytes(),
        "the chart's CRD is stale: run `SWIFTFED_BLESS=1 cargo test -p swiftfed-operator --test crd`"
    );
    // Helm itself loads it from crds/ (installed before the templates, never templated).
    let rendered = render_ok(&json!({}));
    assert_eq!(rendered.crds.len(), 1);
    assert_eq!(rendered.crds[0].1.as_bytes(), generated.as_bytes());
}

#[test]
fn notes_tell_the_next_step() {
    let notes = render_ok(&json!({})).notes;
    for needle in [
        "kubectl label namespace SWIFT_NAMESPACE swiftfed.io/inject=enabled",
        "swiftfed.io/inject: enabled",
        "kubectl -n SWIFT_NAMESPACE apply -f",
        "kubectl -n SWIFT_NAMESPACE get clusterfederations",
        "rollout status deployment/swiftfed-operator",
    ] {
        assert!(
            notes.contains(needle),
            "NOTES.txt lacks {needle:?}:\n{notes}"
        );
    }
    let ignore = render_ok(&json!({"webhook": {"failurePolicy": "Ignore"}})).notes;
    assert!(ignore.contains("SidecarMissing"), "{ignore}");
}

/// Sample names a Prometheus text exposition can carry, from its `# TYPE` lines (families
/// without samples yet still declare their type).
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "summary" => &["", "_sum", "_count", "_created"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    names
}

fn queries(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

fn metric_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("swiftfed_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn dashboard_queries_only_metrics_the_code_exports() {
    let path = helm::root().join("deploy/grafana/swiftfed-dashboard.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");
    let mut exported = exported_names(&swiftfed_operator::metrics::Metrics::default().encode());
    let operator_count = exported.len();
    exported.extend(exported_names(
        &swiftfed_sidecar::metrics::Metrics::new().encode(),
    ));
    assert!(
        operator_count > 0 && exported.len() > operator_count,
        "no metric families found: {exported:?}"
    );
    let mut all = Vec::new();
    queries(&dashboard, &mut all);
    let used: BTreeSet<String> = all.iter().flat_map(|q| metric_names(q)).collect();
    let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "{} queries metrics the code does not export: {unknown:?}\nexported: {exported:?}",
        path.display()
    );
    assert!(used.iter().any(|n| n.starts_with("swiftfed_operator_")));
    assert!(used.iter().any(|n| n.starts_with("swiftfed_sidecar_")));
}
