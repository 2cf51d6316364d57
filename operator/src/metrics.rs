//! Operator metrics on `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::push::Outcome;
use crate::sync::NamespaceSync;

pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    failures: Counter,
    reconcile_seconds: Histogram,
    sidecars_in_sync: Gauge,
    sidecars_pushed: Gauge,
    pushes_rejected: Counter,
    push_seconds: Histogram,
}

pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: std::time::Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .reconcile_seconds
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("swiftfed_operator");
        let m = Metrics {
            reconciles: Counter::default(),
            failures: Counter::default(),
            reconcile_seconds: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            sidecars_in_sync: Gauge::default(),
            sidecars_pushed: Gauge::default(),
            pushes_rejected: Counter::default(),
            push_seconds: Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            registry: Registry::default(),
        };
        registry.register("reconciles", "Reconciles started", m.reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed",
            m.failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration, render + snapshot + push included (push latency)",
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "sidecars_in_sync",
            "Sidecars that acknowledged the latest revision in the last sync",
            m.sidecars_in_sync.clone(),
        );
        registry.register(
            "sidecars_pushed",
            "Sidecars pushed to in the last sync",
            m.sidecars_pushed.clone(),
        );
        registry.register(
            "pushes_rejected",
            "Pushes a sidecar refused (NACK)",
            m.pushes_rejected.clone(),
        );
        registry.register(
            "push_duration_seconds",
            "Time to push a table to all of a namespace's sidecars (ACKs and NACKs in)",
            m.push_seconds.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            metrics: self,
            start: std::time::Instant::now(),
        }
    }

    pub fn reconcile_failed(&self) {
        self.failures.inc();
    }

    pub fn observe_sync(&self, sync: &NamespaceSync) {
        let in_sync = sync
            .pushes
            .values()
            .filter(|o| matches!(o, Outcome::Ack(r) if *r >= sync.revision))
            .count();
        let rejected = sync
            .pushes
            .values()
            .filter(|o| matches!(o, Outcome::Nack(_)))
            .count();
        self.sidecars_in_sync.set(in_sync as i64);
        self.sidecars_pushed.set(sync.pushes.len() as i64);
        self.pushes_rejected.inc_by(rejected as u64);
        self.push_seconds.observe(sync.push_duration.as_secs_f64());
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
