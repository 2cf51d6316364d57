//! The committed CRD is what the types generate, the schema's CEL rules hold, and every example
//! under deploy/examples validates against the schema and renders.

use std::path::{Path, PathBuf};

use kube::core::cel::Validator;
use kube::CustomResourceExt;
use serde_json::{json, Value};
use swiftfed_crds::federation::ClusterFederation;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schema() -> Value {
    let crd = ClusterFederation::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("openAPIV3Schema");
    serde_json::to_value(schema).expect("schema to JSON")
}

fn cel_errors(object: &Value) -> Vec<String> {
    match Validator::new().validate(&schema(), object, None) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

/// The CRD is committed twice, byte for byte: for `kubectl apply` and in the Helm chart's
/// `crds/` folder. `SWIFTFED_BLESS=1 cargo test -p swiftfed-operator --test crd` rewrites both
/// from the types.
const CRD_COPIES: [&str; 2] = [
    "deploy/crds/clusterfederations.swiftfed.io.yaml",
    "deploy/helm/swiftfed/crds/clusterfederations.swiftfed.io.yaml",
];

#[test]
fn committed_crd_matches_the_types() {
    let generated = swiftfed_operator::cli::crdgen().expect("crdgen");
    let bless = std::env::var_os("SWIFTFED_BLESS").is_some_and(|v| v == "1");
    for copy in CRD_COPIES {
        let path = root().join(copy);
        if bless {
            std::fs::write(&path, &generated).expect("write the CRD");
        }
        let committed = std::fs::read_to_string(&path).expect("committed CRD");
        assert!(
            committed == generated,
            "{} is stale: run `SWIFTFED_BLESS=1 cargo test -p swiftfed-operator --test crd` \
             (writes every copy of the CRD)",
            path.display(),
        );
    }
}

#[test]
fn examples_validate_and_render() {
    let dir = root().join("deploy/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples dir").flatten() {
        let path = entry.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !name.starts_with("federation-") {
            continue;
        }
        seen += 1;
        // Typed parse: unknown or mistyped fields fail (deny_unknown_fields).
        let (federations, _) =
            swiftfed_operator::cli::read_manifests(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        for federation in &federations {
            let object = serde_json::to_value(federation).expect("to JSON");
            assert_eq!(cel_errors(&object), Vec::<String>::new(), "{name}");
        }
        swiftfed_operator::cli::render(&path, None, "default", 1)
            .unwrap_or_else(|e| panic!("{name} does not render: {e}"));
    }
    assert!(
        seen >= 2,
        "expected federation examples in {}",
        dir.display()
    );
}

fn federation(spec: Value) -> Value {
    json!({
        "apiVersion": "swiftfed.io/v1alpha1",
        "kind": "ClusterFederation",
        "metadata": {"name": "f", "namespace": "ns"},
        "spec": spec,
    })
}

#[test]
fn cel_rules_refuse_what_the_schema_can_check() {
    let cluster = |name: &str| json!({"name": name, "endpoints": ["http://swift:8080"]});
    let route =
        |cluster: &str| json!({"match": {"account": "AUTH_a"}, "target": {"cluster": cluster}});
    let good = federation(json!({"clusters": [cluster("b")], "routes": [route("b")]}));
    assert_eq!(cel_errors(&good), Vec::<String>::new());

    let cases = [
        (
            json!({"clusters": [cluster("b"), cluster("b")], "routes": []}),
            "cluster names must be unique",
        ),
        (
            json!({"clusters": [cluster("b")], "routes": [route("c")]}),
            "every route's target.cluster must name one of spec.clusters",
        ),
        (
            json!({"clusters": [cluster("b")], "routes": [{"match": {"account": "A", "container": {"exact": "x", "prefix": "y"}}, "target": {"cluster": "b"}}]}),
            "set exactly one of exact or prefix",
        ),
        (
            json!({"clusters": [{"name": "b", "endpoints": ["http://s"], "auth": {"mode": "Credentials"}}], "routes": []}),
            "mode Credentials needs credentialsSecretRef",
        ),
    ];
    for (spec, message) in cases {
        let errors = cel_errors(&federation(spec.clone()));
        assert!(
            errors.iter().any(|e| e.contains(message)),
            "{spec}: expected {message:?}, got {errors:?}"
        );
    }
}

#[test]
fn crd_passes_kubernetes_validate_strict() {
    let path = root().join("deploy/crds/clusterfederations.swiftfed.io.yaml");
    let bin = swiftfed_tests::venv_bin("kubernetes-validate");
    let out = std::process::Command::new(&bin)
        .arg("--strict")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (scripts/install-test-deps installs it)",
                bin.display()
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("passed"), "{text}");
}

/// Kubernetes' structural schema rules, the part that matters here: every node has a type, and
/// nothing lets unknown fields through.
#[test]
fn crd_schema_is_structural_without_holes() {
    fn walk(node: &Value, at: &str, problems: &mut Vec<String>) {
        let Some(map) = node.as_object() else {
            problems.push(format!("{at}: not a schema object"));
            return;
        };
        if map.contains_key("x-kubernetes-preserve-unknown-fields") {
            problems.push(format!("{at}: preserves unknown fields"));
        }
        for forbidden in ["$ref", "anyOf", "oneOf", "allOf", "not"] {
            if map.contains_key(forbidden) {
                problems.push(format!("{at}: uses {forbidden}"));
            }
        }
        if !map.contains_key("type") && !map.contains_key("x-kubernetes-int-or-string") {
            problems.push(format!("{at}: no type"));
        }
        if map.get("type") == Some(&json!("object"))
            && !map.contains_key("properties")
            && !map.contains_key("additionalProperties")
        {
            problems.push(format!("{at}: object without properties"));
        }
        if let Some(props) = map.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                walk(child, &format!("{at}.{name}"), problems);
            }
        }
        if let Some(items) = map.get("items") {
            walk(items, &format!("{at}[]"), problems);
        }
        if let Some(extra) = map.get("additionalProperties").filter(|v| v.is_object()) {
            walk(extra, &format!("{at}{{}}"), problems);
        }
    }
    let mut problems = Vec::new();
    walk(&schema(), "", &mut problems);
    assert_eq!(problems, Vec::<String>::new());
}
