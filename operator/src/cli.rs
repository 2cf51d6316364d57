//! Offline subcommands: `crdgen` and `render`.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use kube::CustomResourceExt;
use serde::Deserialize;
use swiftfed_crds::federation::ClusterFederation;

use crate::render::{self, SecretData};

pub fn crdgen() -> Result<String, String> {
    serde_yaml::to_string(&ClusterFederation::crd()).map_err(|e| e.to_string())
}

/// ClusterFederations and Secrets from a multi-document YAML file (other kinds are ignored).
pub fn read_manifests(file: &Path) -> Result<(Vec<ClusterFederation>, SecretData), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut federations = Vec::new();
    let mut secrets = SecretData::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let at = |e: &dyn std::fmt::Display| format!("{} document {}: {e}", file.display(), i + 1);
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| at(&e))?;
        match value.get("kind").and_then(|k| k.as_str()) {
            Some("ClusterFederation") => {
                federations.push(serde_yaml::from_value(value).map_err(|e| at(&e))?)
            }
            Some("Secret") => {
                let secret: Secret = serde_yaml::from_value(value).map_err(|e| at(&e))?;
                let name = secret.metadata.name.clone().unwrap_or_default();
                let mut data: BTreeMap<String, Vec<u8>> = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                for (k, v) in secret.string_data.unwrap_or_default() {
                    data.insert(k, v.into_bytes());
                }
                secrets.insert(name, data);
            }
            _ => {}
        }
    }
    if federations.is_empty() {
        return Err(format!("{}: no ClusterFederation found", file.display()));
    }
    Ok((federations, secrets))
}

/// `<dir>/<secret name>/<key>` files, as Kubernetes mounts Secrets.
pub fn read_secret_dir(dir: &Path) -> Result<SecretData, String> {
    let mut secrets = SecretData::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut data = BTreeMap::new();
        for file in std::fs::read_dir(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .flatten()
        {
            if file.path().is_file() {
                let key = file.file_name().to_string_lossy().into_owned();
                let bytes = std::fs::read(file.path())
                    .map_err(|e| format!("{}: {e}", file.path().display()))?;
                data.insert(key, bytes);
            }
        }
        secrets.insert(name, data);
    }
    Ok(secrets)
}

pub fn render(
    file: &Path,
    secret_dir: Option<&Path>,
    namespace: &str,
    revision: u64,
) -> Result<String, String> {
    let (federations, mut secrets) = read_manifests(file)?;
    // The federations' own namespace wins over the flag; one table is one namespace.
    let mut namespaces: Vec<&str> = federations
        .iter()
        .filter_map(|f| f.metadata.namespace.as_deref())
        .collect();
    namespaces.dedup();
    let namespace = match namespaces.as_slice() {
        [] => namespace,
        [one] => one,
        many => {
            return Err(format!(
                "{}: federations from several namespaces ({}); a routing table is per namespace",
                file.display(),
                many.join(", ")
            ))
        }
    };
    if let Some(dir) = secret_dir {
        secrets.extend(read_secret_dir(dir)?);
    }
    let mut rendered = render::render(namespace, &federations, &secrets);
    let mut problems = Vec::new();
    for (name, outcome) in &rendered.outcomes {
        for reason in &outcome.invalid {
            problems.push(format!("{name}: left out: {reason}"));
        }
        for conflict in &outcome.conflicts {
            problems.push(format!("{name}: conflict: {conflict}"));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    rendered.table.revision = revision;
    serde_yaml::to_string(&rendered.table).map_err(|e| e.to_string())
}

/// `status`: per federation, its conditions; per pod, the revision it runs and the last error.
pub async fn status(namespace: Option<&str>) -> Result<String, String> {
    use kube::api::{Api, ListParams};
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("no Kubernetes client configuration: {e}"))?;
    let api: Api<ClusterFederation> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("cannot list ClusterFederations: {e}"))?;
    Ok(format_status(&list.items))
}

pub fn format_status(federations: &[ClusterFederation]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for f in federations {
        let status = f.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| format!("{} ({}: {})", c.status, c.reason, c.message))
            .unwrap_or_else(|| "unknown (not reconciled yet)".into());
        let _ = writeln!(
            out,
            "{}/{}  revision {}  synced {}  ready {}",
            f.metadata.namespace.as_deref().unwrap_or("-"),
            f.metadata.name.as_deref().unwrap_or("-"),
            status.revision.map_or("-".to_string(), |r| r.to_string()),
            if status.sidecars.summary.is_empty() {
                "-"
            } else {
                &status.sidecars.summary
            },
            ready
        );
        for c in status
            .conditions
            .iter()
            .filter(|c| c.type_ != "Ready" && (c.status == "True") != (c.type_ == "Synced"))
        {
            let _ = writeln!(out, "  {}: {} ({})", c.type_, c.message, c.reason);
        }
        let _ = writeln!(
            out,
            "  {:<50} {:<12} {:>8}  LAST ERROR",
            "POD", "STATE", "REVISION"
        );
        for p in &status.sidecars.pods {
            let _ = writeln!(
                out,
                "  {:<50} {:<12} {:>8}  {}",
                p.name,
                p.state,
                p.revision.map_or("-".to_string(), |r| r.to_string()),
                p.last_error.as_deref().unwrap_or("")
            );
        }
    }
    if federations.is_empty() {
        out.push_str("no ClusterFederations\n");
    }
    out
}
