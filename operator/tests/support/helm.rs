//! Renders deploy/helm/swiftfed with the real Helm engine (PyPI helm-python-sdk, installed into
//! the test venv by scripts/install-test-deps) and parses what it rendered.
// Included by two test binaries (chart.rs, rbac.rs); each uses only part of it.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;

pub const RELEASE: &str = "swiftfed";
pub const NAMESPACE: &str = "swiftfed-system";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn chart_dir() -> PathBuf {
    root().join("deploy/helm/swiftfed")
}

/// What one `helm install` would create (templates), and the chart's CRDs.
pub struct Rendered {
    pub objects: Vec<Value>,
    pub notes: String,
    pub crds: Vec<(String, String)>,
}

impl Rendered {
    pub fn find(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }
}

#[derive(Deserialize)]
struct Output {
    ok: bool,
    #[serde(default)]
    error: String,
    #[serde(default)]
    manifests: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    crds: Vec<Crd>,
}

#[derive(Deserialize)]
struct Crd {
    name: String,
    data: String,
}

/// Runs render_chart.py with `values` on stdin; its JSON answer.
fn run_helm(values: &Value, extra: &[&str]) -> Vec<u8> {
    let python = swiftfed_tests::venv_bin("python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/render_chart.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(chart_dir())
        .arg(RELEASE)
        .arg(NAMESPACE)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (scripts/install-test-deps installs it)",
                python.display()
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(values.to_string().as_bytes())
        .expect("values to the renderer");
    let out = child.wait_with_output().expect("renderer");
    assert!(
        out.status.success(),
        "render_chart.py failed (is helm-python-sdk installed? scripts/install-test-deps): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `helm lint --strict` (Kubernetes 1.29): Helm's report (`messages` with `severity`, `errors`).
pub fn lint(values: &Value) -> Value {
    serde_json::from_slice(&run_helm(values, &["--lint"])).expect("lint JSON")
}

/// Renders with `values` (merged over values.yaml). `Err` carries Helm's own message, e.g. a
/// values.schema.json violation.
pub fn render(values: &Value) -> Result<Rendered, String> {
    let stdout = run_helm(values, &[]);
    let output: Output = serde_json::from_slice(&stdout).expect("renderer JSON");
    if !output.ok {
        return Err(output.error);
    }
    let mut objects = Vec::new();
    let mut notes = String::new();
    for (template, text) in &output.manifests {
        if template.ends_with("NOTES.txt") {
            notes = text.clone();
            continue;
        }
        for document in serde_yaml::Deserializer::from_str(text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{template} is not YAML: {e}\n{text}"));
            if !value.is_null() {
                objects.push(value);
            }
        }
    }
    Ok(Rendered {
        objects,
        notes,
        crds: output.crds.into_iter().map(|c| (c.name, c.data)).collect(),
    })
}

pub fn render_ok(values: &Value) -> Rendered {
    render(values).unwrap_or_else(|e| panic!("chart does not render with {values}: {e}"))
}
