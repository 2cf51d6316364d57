//! Prometheus metrics served on the admin listener. Labels never carry names a client chose
//! beyond the route label, and never a token.

use std::sync::{Arc, OnceLock};

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
    local: OnceLock<Arc<RouteCounters>>,
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
            local: OnceLock::new(),
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

/// The methods with a label of their own; everything else counts as `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "PUT", "POST", "DELETE", "COPY", "OPTIONS", "OTHER",
];
/// `1xx` … `5xx`, then a slot for any other (600–999, which hyper allows).
const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

fn method_index(method: &http::Method) -> usize {
    METHODS[..7]
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(7)
}

fn status_index(status: u16) -> usize {
    match status / 100 {
        c @ 1..=5 => c as usize - 1,
        _ => 5,
    }
}

pub fn method_label(method: &http::Method) -> String {
    METHODS[method_index(method)].to_string()
}

pub fn status_class(status: u16) -> String {
    format!("{}xx", status / 100)
}

/// The series one (route, cluster) pair writes to, resolved once: the hot path then increments
/// atomics instead of building label sets (four `String`s) and hashing them per request. Each
/// series is created in the families on first use, so `/metrics` shows the same series as when
/// they were looked up per request.
pub struct RouteCounters {
    pub route: String,
    pub cluster: String,
    requests: Family<RequestLabels, Counter>,
    by_method_status: [[OnceLock<Counter>; STATUS_CLASSES.len()]; METHODS.len()],
    bytes_in: Counter,
    bytes_out: Counter,
    upstream_latency: Family<ClusterLabels, Histogram>,
    latency: OnceLock<Histogram>,
}

impl std::fmt::Debug for RouteCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteCounters")
            .field("route", &self.route)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl RouteCounters {
    /// One answered request.
    pub fn request(&self, method: &http::Method, status: u16) {
        let (m, s) = (method_index(method), status_index(status));
        let labels = || RequestLabels {
            route: self.route.clone(),
            cluster: self.cluster.clone(),
            method: METHODS[m].to_string(),
            status_class: status_class(status),
        };
        if s == STATUS_CLASSES.len() - 1 {
            // Not a standard class: too rare to cache, and one slot would not fit all of them.
            self.requests.get_or_create(&labels()).inc();
            return;
        }
        self.by_method_status[m][s]
            .get_or_init(|| self.requests.get_or_create(&labels()).clone())
            .inc();
    }

    pub fn bytes(&self, bytes_in: u64, bytes_out: u64) {
        self.bytes_out.inc_by(bytes_out);
        self.bytes_in.inc_by(bytes_in);
    }

    /// Time from sending a request upstream to its response head.
    pub fn observe_latency(&self, seconds: f64) {
        self.latency
            .get_or_init(|| {
                self.upstream_latency
                    .get_or_create(&ClusterLabels {
                        cluster: self.cluster.clone(),
                    })
                    .clone()
            })
            .observe(seconds);
    }
}

impl Metrics {
    /// The series of `route` (`"local"` when unrouted) on `cluster`. Allocates: callers keep the
    /// result (per route in the route table, once for local traffic).
    pub fn route_counters(&self, route: &str, cluster: &str) -> Arc<RouteCounters> {
        let bytes = |direction: &str| {
            self.bytes
                .get_or_create(&BytesLabels {
                    cluster: cluster.to_string(),
                    direction: direction.to_string(),
                })
                .clone()
        };
        Arc::new(RouteCounters {
            route: route.to_string(),
            cluster: cluster.to_string(),
            requests: self.requests.clone(),
            by_method_status: Default::default(),
            bytes_in: bytes("in"),
            bytes_out: bytes("out"),
            upstream_latency: self.upstream_latency.clone(),
            latency: OnceLock::new(),
        })
    }

    /// The series of unrouted requests (route and cluster `local`).
    pub fn local_counters(&self) -> &Arc<RouteCounters> {
        self.local
            .get_or_init(|| self.route_counters("local", "local"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_series_are_the_families_series() {
        let m = Metrics::new();
        let c = m.route_counters("r1", "b");
        c.request(&http::Method::GET, 200);
        c.request(&http::Method::GET, 204);
        c.request(&http::Method::from_bytes(b"PROPFIND").expect("method"), 404);
        c.bytes(3, 5);
        c.observe_latency(0.002);
        let text = m.encode();
        for line in [
            "swiftfed_sidecar_requests_total{route=\"r1\",cluster=\"b\",method=\"GET\",status_class=\"2xx\"} 2",
            "swiftfed_sidecar_requests_total{route=\"r1\",cluster=\"b\",method=\"OTHER\",status_class=\"4xx\"} 1",
            "swiftfed_sidecar_bytes_total{cluster=\"b\",direction=\"in\"} 3",
            "swiftfed_sidecar_bytes_total{cluster=\"b\",direction=\"out\"} 5",
            "swiftfed_sidecar_upstream_latency_seconds_count{cluster=\"b\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        // Series another route on the same cluster shares, and no series for unused methods.
        m.route_counters("r2", "b").bytes(1, 0);
        assert!(m
            .encode()
            .contains("swiftfed_sidecar_bytes_total{cluster=\"b\",direction=\"in\"} 4"));
        assert!(!m.encode().contains("method=\"PUT\""));
    }
}
