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
        // An empty selector means "every sidecar of the namespace": pods without one are not
        // proxies then, so they cannot be missing one.
        let selected = if selector.is_empty() {
            pod.has_sidecar
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
