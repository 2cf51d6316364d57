//! Prometheus metrics served on the admin listener. Labels never carry names a client chose
//! beyond the route label, and never a token.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub cluster: String,
    pub method: String,
    pub status_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub cluster: String,
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub bytes: Family<BytesLabels, Counter>,
    pub upstream_latency: Family<ClusterLabels, Histogram>,
    pub active_streams: Gauge,
    pub config_revision: Gauge,
    pub reload_failures: Counter,
    pub token_fetches: Family<ClusterLabels, Counter>,
    pub authz_checks: Family<ResultLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("swiftfed_sidecar");
        let requests = Family::<RequestLabels, Counter>::default();
        let bytes = Family::<BytesLabels, Counter>::default();
        let upstream_latency = Family::<ClusterLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let active_streams = Gauge::default();
        let config_revision = Gauge::default();
        let reload_failures = Counter::default();
        let token_fetches = Family::<ClusterLabels, Counter>::default();
        let authz_checks = Family::<ResultLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route (\"local\" when unrouted), cluster, method and status class",
            requests.clone(),
        );
        registry.register(
            "bytes",
            "Body bytes, by cluster and direction (in = from clients, out = to clients)",
            bytes.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time from sending a request upstream to its response headers",
            upstream_latency.clone(),
        );
        registry.register(
            "active_streams",
            "Requests in flight (including their bodies)",
            active_streams.clone(),
        );
        registry.register(
            "config_revision",
            "Revision of the routing table in force",
            config_revision.clone(),
        );
        registry.register(
            "config_reload_failures",
            "Routing tables refused (file or admin push)",
            reload_failures.clone(),
        );
        registry.register(
            "auth_token_fetches",
            "Tokens fetched for the sidecar's own credentials, by target cluster",
            token_fetches.clone(),
        );
        registry.register(
            "authz_checks",
            "Local authorization checks for Credentials routes, by result",
            authz_checks.clone(),
        );
        Metrics {
            registry,
            requests,
            bytes,
            upstream_latency,
            active_streams,
            config_revision,
            reload_failures,
            token_fetches,
            authz_checks,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub fn method_label(method: &http::Method) -> String {
    match method.as_str() {
        m @ ("GET" | "HEAD" | "PUT" | "POST" | "DELETE" | "COPY" | "OPTIONS") => m.to_string(),
        _ => "OTHER".to_string(),
    }
}

pub fn status_class(status: u16) -> String {
    format!("{}xx", status / 100)
}
