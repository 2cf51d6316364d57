//! Routing tables of 10 000 routes: what a lookup costs (in-process, through the sidecar's own
//! `SwiftPath::parse` + `RouteTable::lookup`), and how long a sidecar takes to swap one in
//! (admin `PUT /v1/config` until its `200`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use swiftfed_crds::RoutingTable;
use swiftfed_sidecar::route_table::RouteTable;
use swiftfed_sidecar::swift_path::SwiftPath;

/// Shapes of a 10 000-route table.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// 1 000 accounts × (6 exact containers, 3 prefixes, 1 account-wide route).
    Spread,
    /// One account with 10 000 exact container routes.
    OneAccountExact,
    /// One account with 10 000 prefix routes (the lookup tries prefixes longest first, in turn).
    OneAccountPrefixes,
}

impl Shape {
    pub const ALL: [Shape; 3] = [
        Shape::Spread,
        Shape::OneAccountExact,
        Shape::OneAccountPrefixes,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Shape::Spread => "1 000 accounts × 10 routes (exact, prefix, account-wide)",
            Shape::OneAccountExact => "1 account × 10 000 exact containers",
            Shape::OneAccountPrefixes => "1 account × 10 000 container prefixes",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Shape::Spread => "spread",
            Shape::OneAccountExact => "one-account-exact",
            Shape::OneAccountPrefixes => "one-account-prefixes",
        }
    }
}

/// A routing table (wire format, JSON) of `routes` routes of `shape`, over 10 clusters at
/// `endpoint`.
pub fn table_json(shape: Shape, routes: usize, revision: u64, endpoint: &str) -> Value {
    let clusters: Vec<Value> = (0..10)
        .map(|i| {
            json!({"name": format!("c{i}"), "endpoints": [format!("http://{endpoint}")],
                   "auth": {"mode": "Passthrough"}})
        })
        .collect();
    let mut list = Vec::with_capacity(routes);
    for i in 0..routes {
        let cluster = format!("c{}", i % 10);
        let (account, container) = match shape {
            Shape::Spread => {
                let account = format!("AUTH_acct{:04}", i / 10);
                let container = match i % 10 {
                    0..=5 => Some(json!({"exact": format!("cont-{i}")})),
                    6..=8 => Some(json!({"prefix": format!("pre{i}-")})),
                    _ => None,
                };
                (account, container)
            }
            Shape::OneAccountExact => (
                "AUTH_big".into(),
                Some(json!({"exact": format!("cont-{i}")})),
            ),
            Shape::OneAccountPrefixes => (
                "AUTH_big".into(),
                Some(json!({"prefix": format!("pre{i:05}-")})),
            ),
        };
        let mut matcher = json!({"account": account});
        if let Some(c) = container {
            matcher["container"] = c;
        }
        list.push(json!({"match": matcher, "target": {"cluster": cluster}}));
    }
    json!({"revision": revision, "clusters": clusters, "routes": list})
}

/// Request paths that hit every kind of route of `shape`, and miss.
fn paths(shape: Shape, routes: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rng: u64 = 7;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    for k in 0..4096 {
        let i = next(routes);
        let p = match (shape, k % 4) {
            (Shape::Spread, 0) => format!("/v1/AUTH_acct{:04}/cont-{}/obj", i / 10, i / 10 * 10),
            (Shape::Spread, 1) => {
                format!("/v1/AUTH_acct{:04}/pre{}-x/obj", i / 10, i / 10 * 10 + 7)
            }
            (Shape::Spread, 2) => format!("/v1/AUTH_acct{:04}/other/obj", i / 10),
            (Shape::OneAccountExact, 0..=2) => format!("/v1/AUTH_big/cont-{i}/obj"),
            (Shape::OneAccountPrefixes, 0..=2) => format!("/v1/AUTH_big/pre{i:05}-x/obj"),
            // no route: unknown account (or, one account, unknown container)
            (Shape::Spread, _) => format!("/v1/AUTH_none{i}/c/obj"),
            (_, _) => format!("/v1/AUTH_big/zzz{i}/obj"),
        };
        out.push(p);
    }
    out
}

pub struct LookupResult {
    pub ns_per_lookup: f64,
    pub build_ms: f64,
    pub hits: usize,
    pub queries: usize,
}

/// Median of 3 timed passes of parse + lookup over the query set, each at least `budget / 3`.
pub fn lookup_bench(shape: Shape, routes: usize, budget: Duration) -> Result<LookupResult, String> {
    let text = table_json(shape, routes, 1, "127.0.0.1:1").to_string();
    let table = RoutingTable::from_slice(text.as_bytes()).map_err(|e| format!("{e:?}"))?;
    let t0 = Instant::now();
    let rt = RouteTable::new(&table, None);
    let build_ms = t0.elapsed().as_secs_f64() * 1e3;
    if rt.len() != routes {
        return Err(format!("{} routes compiled, expected {routes}", rt.len()));
    }
    let queries = paths(shape, routes);
    let route_of = |p: &str| {
        SwiftPath::parse(p).and_then(|sp| {
            rt.lookup(&sp.account, sp.routing_container())
                .map(|r| r.cluster.len())
        })
    };
    let hits = queries.iter().filter(|p| route_of(p).is_some()).count();
    // Every shape's hit paths must really route (3 of 4 queries, spread: 3 of 4 too, the
    // "other" container falling to the account-wide route).
    if hits != queries.len() / 4 * 3 {
        return Err(format!(
            "{}: {hits} of {} queries routed, expected {}",
            shape.key(),
            queries.len(),
            queries.len() / 4 * 3
        ));
    }
    let mut passes = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < budget / 3 {
            for p in &queries {
                black_box(route_of(black_box(p)));
            }
            n += queries.len() as u64;
        }
        passes.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    passes.sort_by(f64::total_cmp);
    Ok(LookupResult {
        ns_per_lookup: passes[1],
        build_ms,
        hits,
        queries: queries.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_valid_and_lookups_route() {
        for shape in Shape::ALL {
            let r = lookup_bench(shape, 1000, Duration::from_millis(3)).expect("bench");
            assert!(r.ns_per_lookup > 0.0);
        }
    }
}
