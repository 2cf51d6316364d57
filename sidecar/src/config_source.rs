//! The routing file: loaded at start, reloaded when its content changes (polled, which also
//! sees Kubernetes' symlink swaps of mounted Secrets that inotify watches miss) and on SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swiftfed_crds::RoutingTable;
use tokio::sync::mpsc;

use crate::state::{ApplyError, State};

pub struct ConfigFile {
    pub path: PathBuf,
    pub poll: Duration,
}

impl ConfigFile {
    /// Tries once; `true` when the file's table is in force afterwards.
    pub fn load(&self, state: &State, last: &mut Option<Vec<u8>>, reason: &str) -> bool {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) => {
                if last.is_some() || reason != "poll" {
                    tracing::warn!(file = %self.path.display(), error = %e, "cannot read routing file");
                }
                return false;
            }
        };
        if last.as_ref() == Some(&bytes) && reason == "poll" {
            return true;
        }
        *last = Some(bytes.clone());
        let result = RoutingTable::from_slice(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|t| state.apply(t).map_err(|e| describe(&e)));
        match result {
            Ok(revision) => {
                tracing::info!(file = %self.path.display(), revision, reason, "routing table in force");
                true
            }
            Err(e) => {
                state.metrics.reload_failures.inc();
                tracing::error!(file = %self.path.display(), reason, error = %e, "routing file refused; previous table kept");
                false
            }
        }
    }

    /// Reloads on change and on SIGHUP until the process ends.
    pub fn spawn(self, state: Arc<State>, mut last: Option<Vec<u8>>) {
        let (hup_tx, mut hup_rx) = mpsc::channel::<()>(1);
        // Registered before returning, so a SIGHUP right after start reloads rather than kills.
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        let _ = hup_tx.try_send(());
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP"),
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let reason = tokio::select! {
                    _ = tick.tick() => "poll",
                    _ = hup_rx.recv() => "SIGHUP",
                };
                self.load(&state, &mut last, reason);
            }
        });
    }
}

fn describe(e: &ApplyError) -> String {
    match e {
        ApplyError::Stale { .. } => format!("{e} (bump `revision` in the file)"),
        _ => e.to_string(),
    }
}
