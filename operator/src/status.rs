//! A federation's status from a namespace sync: sidecar counts and conditions a person can act
//! on.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use swiftfed_crds::federation::{ClusterFederation, ClusterFederationStatus, PodSync, SidecarSync};

use crate::push::Outcome;
use crate::sync::NamespaceSync;

/// Selected pods that run no sidecar, and pods whose sidecar refused the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub missing: Vec<String>,
    pub rejected: Vec<(String, String)>,
    pub unreachable: Vec<(String, String)>,
}

pub fn compute(
    federation: &ClusterFederation,
    sync: &NamespaceSync,
    now: Time,
) -> (ClusterFederationStatus, Findings) {
    let name = federation.metadata.name.clone().unwrap_or_default();
    let selector = &federation.spec.proxy_selector.match_labels;
    let mut findings = Findings::default();
    let mut counts = SidecarSync::default();
    for pod in &sync.pods {
        // An empty selector means "every proxy of the namespace": a pod is one when it runs the
        // sidecar or asked for it by label (created while the webhook was unavailable, with
        // failurePolicy Ignore). Namespace-label injection is not visible here: the operator
        // does not read Namespaces.
        let selected = if selector.is_empty() {
            pod.has_sidecar
                || pod
                    .labels
                    .get(crate::inject::INJECT_LABEL)
                    .map(String::as_str)
                    == Some("enabled")
        } else {
            pod.selected_by(selector)
        };
        if !selected {
            continue;
        }
        counts.selected += 1;
        let row = |state: &str, revision: Option<u64>, error: Option<&str>| PodSync {
            name: pod.key.clone(),
            state: state.into(),
            revision: revision.map(|r| r as i64),
            last_error: error.map(str::to_string),
        };
        if !pod.has_sidecar {
            counts.missing += 1;
            findings.missing.push(pod.key.clone());
            counts
                .pods
                .push(row("Missing", None, Some("no swiftfed sidecar in the pod")));
            continue;
        }
        let pod_row = match sync.pushes.get(&pod.key) {
            Some(Outcome::Ack(r) | Outcome::Newer(r)) if *r >= sync.revision => {
                counts.in_sync += 1;
                row("InSync", Some(*r), None)
            }
            Some(Outcome::Ack(r) | Outcome::Newer(r)) => row("Behind", Some(*r), None),
            Some(Outcome::Nack(reason)) => {
                counts.rejected += 1;
                findings.rejected.push((pod.key.clone(), reason.clone()));
                row("Rejected", None, Some(reason))
            }
            Some(Outcome::Unreachable(e)) => {
                findings.unreachable.push((pod.key.clone(), e.clone()));
                row("Unreachable", None, Some(e))
            }
            None => {
                findings
                    .unreachable
                    .push((pod.key.clone(), "sidecar not ready".into()));
                row("Unreachable", None, Some("sidecar not ready"))
            }
        };
        counts.pods.push(pod_row);
    }
    counts.pods.sort_by(|a, b| a.name.cmp(&b.name));
    counts.pods.truncate(100);
    counts.summary = format!("{}/{}", counts.in_sync, counts.selected);

    let outcome = sync
        .rendered
        .outcomes
        .get(&name)
        .cloned()
        .unwrap_or_default();
    let previous = federation
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let generation = federation.metadata.generation;
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let since = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time: since,
            observed_generation: generation,
        }
    };
    let invalid = !outcome.invalid.is_empty();
    let in_sync_all = counts.in_sync == counts.selected - counts.missing;
    let mut conditions = vec![
        if invalid {
            condition(
                "InvalidSpec",
                true,
                "RenderFailed",
                format!("not routed: {}", outcome.invalid.join("; ")),
            )
        } else {
            condition("InvalidSpec", false, "Valid", "spec renders".into())
        },
        if outcome.conflicts.is_empty() {
            condition(
                "Conflict",
                false,
                "NoConflict",
                "no match claimed twice".into(),
            )
        } else {
            condition(
                "Conflict",
                true,
                "MatchClaimed",
                outcome.conflicts.join("; "),
            )
        },
        condition(
            "Synced",
            in_sync_all,
            if in_sync_all {
                "AllSidecarsInSync"
            } else {
                "SidecarsBehind"
            },
            format!(
                "{} of {} sidecars run revision {}{}{}",
                counts.in_sync,
                counts.selected - counts.missing,
                sync.revision,
                list(" rejected by ", &findings.rejected),
                list(" unreachable: ", &findings.unreachable),
            ),
        ),
    ];
    let degraded = counts.rejected > 0 || counts.missing > 0 || !findings.unreachable.is_empty();
    conditions.push(condition(
        "Degraded",
        degraded,
        if counts.missing > 0 {
            "SidecarMissing"
        } else if counts.rejected > 0 {
            "PushRejected"
        } else if degraded {
            "SidecarUnreachable"
        } else {
            "Healthy"
        },
        if counts.missing > 0 {
            format!(
                "selected pods without the sidecar (recreate them so the webhook injects it): {}",
                findings.missing.join(", ")
            )
        } else if degraded {
            "see Synced".into()
        } else {
            "all selected pods run an accepting sidecar".into()
        },
    ));
    let ready = !invalid && in_sync_all;
    conditions.push(condition(
        "Ready",
        ready,
        if invalid {
            "InvalidSpec"
        } else if ready {
            "Routed"
        } else {
            "Syncing"
        },
        if ready {
            format!("routes in force at revision {}", sync.revision)
        } else if invalid {
            "fix the spec (see InvalidSpec)".into()
        } else {
            "waiting for sidecars (see Synced)".into()
        },
    ));

    let status = ClusterFederationStatus {
        observed_generation: generation,
        revision: Some(sync.revision as i64),
        config_hash: Some(sync.rendered.hash.clone()),
        sidecars: counts,
        clusters: federation
            .status
            .as_ref()
            .map(|s| s.clusters.clone())
            .unwrap_or_default(),
        conditions,
    };
    (status, findings)
}

fn list(prefix: &str, items: &[(String, String)]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = items
        .iter()
        .take(5)
        .map(|(pod, why)| format!("{pod} ({why})"))
        .collect();
    let more = items.len().saturating_sub(5);
    let suffix = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(";{prefix}{}{suffix}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render;
    use crate::sync::PodView;
    use std::collections::{BTreeMap, HashMap};

    fn federation(name: &str, age: i64) -> ClusterFederation {
        let mut f: ClusterFederation = serde_json::from_value(serde_json::json!({
            "apiVersion": "swiftfed.io/v1alpha1", "kind": "ClusterFederation",
            "metadata": {"name": name, "namespace": "ns", "generation": 3},
            "spec": {"proxySelector": {"matchLabels": {"app": "p"}},
                     "clusters": [{"name": "b", "endpoints": ["http://b:1"]}],
                     "routes": [{"match": {"account": "A"}, "target": {"cluster": "b"}}]}
        }))
        .expect("federation");
        f.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 - age).expect("time"),
        ));
        f
    }

    fn pod(name: &str, has_sidecar: bool) -> PodView {
        PodView {
            key: format!("ns/{name}"),
            labels: BTreeMap::from([("app".to_string(), "p".to_string())]),
            has_sidecar,
            admin: has_sidecar.then(|| "127.0.0.1:1".to_string()),
        }
    }

    #[test]
    fn without_a_selector_pods_that_asked_for_injection_count_as_missing() {
        let mut fed = federation("f", 1);
        fed.spec.proxy_selector.match_labels.clear();
        let rendered = render::render("ns", std::slice::from_ref(&fed), &render::SecretData::new());
        let mut asked = pod("asked", false);
        asked.labels.insert(
            crate::inject::INJECT_LABEL.to_string(),
            "enabled".to_string(),
        );
        let mut opted_out = pod("opted-out", false);
        opted_out.labels.insert(
            crate::inject::INJECT_LABEL.to_string(),
            "disabled".to_string(),
        );
        let sync = NamespaceSync {
            revision: 1,
            rendered,
            pods: vec![pod("injected", true), asked, opted_out, pod("other", false)],
            pushes: HashMap::from([("ns/injected".to_string(), Outcome::Ack(1))]),
            push_duration: std::time::Duration::ZERO,
        };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let (status, findings) = compute(&fed, &sync, now);
        assert_eq!(
            (
                status.sidecars.selected,
                status.sidecars.in_sync,
                status.sidecars.missing
            ),
            (2, 1, 1)
        );
        assert_eq!(findings.missing, vec!["ns/asked".to_string()]);
    }

    #[test]
    fn the_newer_claimant_is_in_conflict_and_counts_are_per_pod() {
        let (old, new) = (federation("old", 100), federation("new", 1));
        let rendered = render::render(
            "ns",
            &[old.clone(), new.clone()],
            &render::SecretData::new(),
        );
        let sync = NamespaceSync {
            revision: 4,
            rendered,
            pods: vec![
                pod("a", true),
                pod("b", true),
                pod("c", true),
                pod("d", false),
            ],
            pushes: HashMap::from([
                ("ns/a".to_string(), Outcome::Ack(4)),
                ("ns/b".to_string(), Outcome::Nack("422: bad".into())),
                ("ns/c".to_string(), Outcome::Unreachable("refused".into())),
            ]),
            push_duration: std::time::Duration::ZERO,
        };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let (status, findings) = compute(&new, &sync, now.clone());
        let get = |t: &str| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == t)
                .expect("condition")
        };
        assert_eq!(get("Conflict").status, "True");
        assert!(get("Conflict").message.contains("older federation old"));
        assert_eq!(
            (
                status.sidecars.selected,
                status.sidecars.in_sync,
                status.sidecars.rejected,
                status.sidecars.missing
            ),
            (4, 1, 1, 1)
        );
        assert_eq!(status.sidecars.summary, "1/4");
        assert_eq!(findings.missing, vec!["ns/d".to_string()]);
        assert_eq!(get("Ready").status, "False");
        assert_eq!(get("Degraded").reason, "SidecarMissing");
        assert_eq!(status.observed_generation, Some(3));
        let (old_status, _) = compute(&old, &sync, now);
        assert_eq!(
            old_status
                .conditions
                .iter()
                .find(|c| c.type_ == "Conflict")
                .map(|c| c.status.as_str()),
            Some("False")
        );
    }
}
