//! Raw samples → medians → a markdown report (ratios to direct and to the best peer) and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::RunArgs;

/// Column order; extra sidecar builds (`--also-sidecar`) come after these sidecars.
const CANDIDATES: [&str; 5] = ["direct", "sidecar", "sidecar routed", "nginx", "haproxy"];
const PEERS: [&str; 2] = ["nginx", "haproxy"];

#[derive(Debug, Clone)]
pub struct Sample {
    pub section: String,
    pub workload: String,
    pub candidate: String,
    pub round: usize,
    pub metrics: BTreeMap<String, f64>,
}

impl Sample {
    pub fn set(&mut self, metric: &str, value: f64) {
        self.metrics.insert(metric.to_string(), value);
    }
}

pub struct Report {
    pub machine: Value,
    pub settings: Value,
    pub load_start: String,
    pub load_end: String,
    pub date: String,
    pub command: String,
    pub samples: Vec<Sample>,
    pub elapsed: Duration,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

impl Report {
    pub fn new(args: &RunArgs) -> Report {
        let command = std::env::var("SWIFTFED_BENCH_COMMAND").unwrap_or_else(|_| {
            let mut a: Vec<String> = std::env::args().collect();
            if let Some(first) = a.first_mut() {
                *first = "swiftfed-bench".into();
            }
            a.join(" ")
        });
        Report {
            machine: crate::machine::facts(),
            settings: json!({
                "rounds": args.rounds,
                "large_size": args.large_size,
                "large_size_16": args.large_size_16,
                "small_duration_s": args.small_duration.as_secs_f64(),
                "small_connections": 64,
                "latency_rate": args.latency_rate,
                "slow_streams": args.slow_streams,
                "slow_hold_s": args.slow_hold.as_secs_f64(),
                "routes": args.routes,
                "swift_size": args.swift_size,
                "quick": args.quick,
            }),
            load_start: crate::machine::load_average(),
            load_end: String::new(),
            date: now_utc(),
            command,
            samples: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    pub fn phase_seconds(&mut self, phase: &str, took: Duration) {
        eprintln!("bench: phase {phase} took {:.0} s", took.as_secs_f64());
        self.settings["phase_seconds"][phase] = json!((took.as_secs_f64() * 10.0).round() / 10.0);
    }

    pub fn finish(&mut self, elapsed: Duration) {
        self.load_end = crate::machine::load_average();
        self.elapsed = elapsed;
    }

    fn workloads(&self, section: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.samples {
            if s.section == section && !out.contains(&s.workload) {
                out.push(s.workload.clone());
            }
        }
        out
    }

    pub fn med(&self, section: &str, workload: &str, cand: &str, metric: &str) -> Option<f64> {
        median(
            self.samples
                .iter()
                .filter(|s| s.section == section && s.workload == workload && s.candidate == cand)
                .filter_map(|s| s.metrics.get(metric).copied())
                .collect(),
        )
    }

    fn medians_json(&self) -> Value {
        let mut keys: Vec<(String, String, String, String)> = Vec::new();
        for s in &self.samples {
            for m in s.metrics.keys() {
                let k = (
                    s.section.clone(),
                    s.workload.clone(),
                    s.candidate.clone(),
                    m.clone(),
                );
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        Value::Array(
            keys.into_iter()
                .map(|(section, workload, cand, metric)| {
                    let v = self.med(&section, &workload, &cand, &metric);
                    json!({"section": section, "workload": workload, "candidate": cand,
                           "metric": metric, "median": v})
                })
                .collect(),
        )
    }

    /// The best peer's value: highest, or lowest when `lower_is_better`.
    fn best_peer(&self, section: &str, w: &str, metric: &str, lower: bool) -> Option<(f64, &str)> {
        PEERS
            .iter()
            .filter_map(|p| self.med(section, w, p, metric).map(|v| (v, *p)))
            .reduce(|a, b| {
                if (lower && b.0 < a.0) || (!lower && b.0 > a.0) {
                    b
                } else {
                    a
                }
            })
    }

    /// Every candidate, in column order: direct, the sidecars, the peers.
    fn all_candidates(&self) -> Vec<String> {
        let mut out: Vec<String> = CANDIDATES[..3].iter().map(|c| c.to_string()).collect();
        for s in &self.samples {
            if !out.contains(&s.candidate) && !CANDIDATES.contains(&s.candidate.as_str()) {
                out.push(s.candidate.clone());
            }
        }
        out.extend(CANDIDATES[3..].iter().map(|c| c.to_string()));
        out
    }

    fn sidecars(&self) -> Vec<String> {
        self.all_candidates()
            .into_iter()
            .filter(|c| c != "direct" && !PEERS.contains(&c.as_str()))
            .collect()
    }

    fn present(&self, section: &str) -> Vec<String> {
        self.all_candidates()
            .into_iter()
            .filter(|c| {
                self.samples
                    .iter()
                    .any(|s| s.section == section && s.candidate == *c)
            })
            .collect()
    }

    /// A table: one row per workload, one column per candidate (value and × direct), then each
    /// sidecar ÷ the best peer.
    fn ratio_table(
        &self,
        out: &mut String,
        section: &str,
        metric: &str,
        digits: usize,
        lower: bool,
        with_direct_ratio: bool,
    ) {
        let cands: Vec<String> = self
            .present(section)
            .into_iter()
            .filter(|c| {
                self.workloads(section)
                    .iter()
                    .any(|w| self.med(section, w, c, metric).is_some())
            })
            .collect();
        let sidecars: Vec<String> = self
            .sidecars()
            .into_iter()
            .filter(|s| cands.contains(s))
            .collect();
        let _ = write!(out, "| workload |");
        for c in &cands {
            let _ = write!(out, " {c} |");
        }
        for s in &sidecars {
            let _ = write!(out, " {s} ÷ best peer |");
        }
        out.push('\n');
        out.push_str("| --- |");
        for _ in 0..cands.len() + sidecars.len() {
            out.push_str(" ---: |");
        }
        out.push('\n');
        for w in self.workloads(section) {
            let direct = self.med(section, &w, "direct", metric);
            let _ = write!(out, "| {w} |");
            for c in &cands {
                match self.med(section, &w, c, metric) {
                    Some(v) => {
                        let _ = write!(out, " {v:.digits$}");
                        if with_direct_ratio && *c != "direct" {
                            if let Some(d) = direct {
                                let _ = write!(out, " ({:.2}×)", v / d);
                            }
                        }
                        out.push_str(" |");
                    }
                    None => out.push_str(" — |"),
                }
            }
            for s in &sidecars {
                match (
                    self.med(section, &w, s, metric),
                    self.best_peer(section, &w, metric, lower),
                ) {
                    (Some(v), Some((b, peer))) => {
                        let _ = write!(out, " {:.2} ({peer}) |", v / b);
                    }
                    _ => out.push_str(" — |"),
                }
            }
            out.push('\n');
        }
    }

    /// Per-round values of one metric, by round.
    fn by_round(&self, section: &str, w: &str, cand: &str, metric: &str) -> BTreeMap<usize, f64> {
        self.samples
            .iter()
            .filter(|s| s.section == section && s.workload == w && s.candidate == cand)
            .filter_map(|s| s.metrics.get(metric).map(|v| (s.round, *v)))
            .collect()
    }

    /// Rounds on which `a` met its target against `b` (`ok(a, b)`), out of rounds with both.
    fn rounds_met(
        &self,
        section: &str,
        w: &str,
        (a, b): (&str, &str),
        metric: &str,
        ok: impl Fn(f64, f64) -> bool,
    ) -> (usize, usize) {
        let ra = self.by_round(section, w, a, metric);
        let rb = self.by_round(section, w, b, metric);
        let pairs: Vec<(f64, f64)> = ra
            .iter()
            .filter_map(|(r, x)| rb.get(r).map(|y| (*x, *y)))
            .collect();
        (
            pairs.iter().filter(|(x, y)| ok(*x, *y)).count(),
            pairs.len(),
        )
    }

    /// Each target with what was measured and a verdict: `yes`, `no`, or `within noise` when
    /// the interleaved rounds disagree (some rounds meet it, some do not).
    fn targets(&self) -> Vec<(String, String, &'static str)> {
        fn verdict(median_ok: bool, (met, n): (usize, usize)) -> &'static str {
            if n > 1 && met > 0 && met < n {
                "within noise"
            } else if median_ok {
                "yes"
            } else {
                "no"
            }
        }
        let mut t = Vec::new();
        let large = self.workloads("large");
        for s in self.sidecars() {
            let s = s.as_str();
            // throughput ≥ 0.9× direct
            let mut rows: Vec<(String, f64, &'static str)> = Vec::new();
            for w in &large {
                let (Some(v), Some(d)) = (
                    self.med("large", w, s, "gib_per_s"),
                    self.med("large", w, "direct", "gib_per_s"),
                ) else {
                    continue;
                };
                let rounds =
                    self.rounds_met("large", w, (s, "direct"), "gib_per_s", |a, b| a >= 0.9 * b);
                rows.push((w.clone(), v / d, verdict(v / d >= 0.9, rounds)));
            }
            if let Some((w, min, _)) = rows
                .iter()
                .cloned()
                .reduce(|a, b| if b.1 < a.1 { b } else { a })
            {
                let all = rows.iter().all(|r| r.2 == "yes");
                t.push((
                    format!("{s}: large-object throughput ≥ 0.9× direct"),
                    format!("lowest {min:.2}× ({w})"),
                    if all { "yes" } else { "no" },
                ));
            }
            for (metric, what, lower) in [
                (
                    "gib_per_s",
                    "large-object throughput ≥ nginx and haproxy",
                    false,
                ),
                (
                    "proxy_cpu_s_per_gib",
                    "CPU per GiB ≤ nginx and haproxy",
                    true,
                ),
            ] {
                let (mut yes, mut noise, mut n) = (0, 0, 0);
                let mut worst: Option<(String, f64)> = None;
                for w in &large {
                    let (Some(v), Some((b, peer))) = (
                        self.med("large", w, s, metric),
                        self.best_peer("large", w, metric, lower),
                    ) else {
                        continue;
                    };
                    n += 1;
                    let r = v / b;
                    let ok = |x: f64, y: f64| if lower { x <= y } else { x >= y };
                    match verdict(ok(v, b), self.rounds_met("large", w, (s, peer), metric, ok)) {
                        "yes" => yes += 1,
                        "within noise" => noise += 1,
                        _ => {}
                    }
                    let worse = worst
                        .as_ref()
                        .is_none_or(|(_, x)| if lower { r > *x } else { r < *x });
                    if worse {
                        worst = Some((w.clone(), r));
                    }
                }
                if let Some((w, r)) = worst {
                    t.push((
                        format!("{s}: {what}"),
                        format!(
                            "met in {yes} of {n} workloads, within noise in {noise}; worst {r:.2}× best peer ({w})"
                        ),
                        if yes == n { "yes" } else if yes + noise == n { "within noise" } else { "no" },
                    ));
                }
            }
            // added p99 latency ≤ the best peer's (fixed-rate runs); direct is the same for
            // both, so compare the candidates' p99 directly, round by round
            for w in self
                .workloads("small")
                .iter()
                .filter(|w| w.ends_with("paced"))
            {
                let (Some(d), Some(v)) = (
                    self.med("small", w, "direct", "p99_us"),
                    self.med("small", w, s, "p99_us"),
                ) else {
                    continue;
                };
                let Some((b, peer)) = self.best_peer("small", w, "p99_us", true) else {
                    continue;
                };
                let rounds = self.rounds_met("small", w, (s, peer), "p99_us", |a, b| a <= b);
                t.push((
                    format!("{s}: added p99 latency ≤ nginx's and haproxy's ({w})"),
                    format!(
                        "{:+.0} µs vs {:+.0} µs ({peer}); p50 {:+.0} µs vs {:+.0} µs",
                        v - d,
                        b - d,
                        self.med("small", w, s, "p50_us").unwrap_or(f64::NAN)
                            - self.med("small", w, "direct", "p50_us").unwrap_or(f64::NAN),
                        self.med("small", w, peer, "p50_us").unwrap_or(f64::NAN)
                            - self.med("small", w, "direct", "p50_us").unwrap_or(f64::NAN),
                    ),
                    verdict(v <= b, rounds),
                ));
            }
            for w in self.workloads("slow") {
                if let Some(v) = self.med("slow", &w, s, "peak_rss_mib") {
                    t.push((
                        format!("{s}: peak RSS with {w} ≤ 64 MiB"),
                        format!("{v:.1} MiB"),
                        if v <= 64.0 { "yes" } else { "no" },
                    ));
                }
            }
        }
        for w in self.workloads("swift") {
            if w.contains("conns") {
                continue;
            }
            if let (Some(v), Some(d)) = (
                self.med("swift", &w, "sidecar", "mib_per_s"),
                self.med("swift", &w, "direct", "mib_per_s"),
            ) {
                let ratios: Vec<f64> = {
                    let a = self.by_round("swift", &w, "sidecar", "mib_per_s");
                    let b = self.by_round("swift", &w, "direct", "mib_per_s");
                    a.iter()
                        .filter_map(|(r, x)| b.get(r).map(|y| x / y))
                        .collect()
                };
                let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                t.push((
                    format!("sidecar: end to end vs real Swift ≥ 0.97× direct ({w})"),
                    format!("{:.2}× (rounds {lo:.2}–{hi:.2}×)", v / d),
                    verdict(
                        v / d >= 0.97,
                        self.rounds_met("swift", &w, ("sidecar", "direct"), "mib_per_s", |a, b| {
                            a >= 0.97 * b
                        }),
                    ),
                ));
            }
        }
        t
    }

    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "### swiftfed-bench, {}\n", self.date);
        let build = if self.settings["sidecar_bin_given"].as_bool() == Some(true) {
            format!(
                "; sidecar binary {}",
                self.settings["sidecar_bin"].as_str().unwrap_or("?")
            )
        } else if m["sidecar_tree_dirty"].as_bool() == Some(true) {
            ", sidecar/crds with uncommitted changes".to_string()
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "Command: `{}` (commit {}{build}), {} round(s) interleaved, medians; run time {:.0} s{}.  ",
            self.command,
            m["commit"].as_str().unwrap_or("?"),
            self.settings["rounds"],
            self.elapsed.as_secs_f64(),
            match self.settings["phase_seconds"].as_object() {
                Some(p) => format!(
                    " ({})",
                    p.iter()
                        .map(|(k, v)| format!("{k} {:.0} s", v.as_f64().unwrap_or(0.0)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => String::new(),
            }
        );
        let _ = writeln!(
            out,
            "Machine: {} cores ({}), {} GiB, kernel {}, {}; {}, {}, {}.  ",
            m["cores"],
            m["cpu"].as_str().unwrap_or(""),
            m["memory_gib"],
            m["kernel"].as_str().unwrap_or(""),
            m["os"].as_str().unwrap_or(""),
            m["nginx"].as_str().unwrap_or(""),
            m["haproxy"]
                .as_str()
                .unwrap_or("")
                .split(" - ")
                .next()
                .unwrap_or(""),
            m["rustc"].as_str().unwrap_or("")
        );
        let _ = writeln!(
            out,
            "Load average (1/5/15 min): {} at start, {} at end.\n",
            self.load_start, self.load_end
        );

        if !self.workloads("large").is_empty() {
            out.push_str(
                "**Large objects: throughput, GiB/s** (× direct; peer ratio > 1 is better)\n\n",
            );
            self.ratio_table(&mut out, "large", "gib_per_s", 2, false, true);
            out.push_str("\n**Large objects: proxy CPU-seconds per GiB** (utime+stime of the proxy's processes; peer ratio < 1 is better)\n\n");
            self.ratio_table(&mut out, "large", "proxy_cpu_s_per_gib", 2, true, false);
            out.push('\n');
        }
        let small = self.workloads("small");
        if !small.is_empty() {
            out.push_str("**Small requests, 64 keep-alive connections, closed loop: requests/s** (× direct)\n\n");
            let mut sub = self.clone_section("small", |w| w.ends_with("max"));
            sub.samples.iter_mut().for_each(|s| {
                s.workload = s.workload.trim_end_matches(" max").to_string();
            });
            sub.ratio_table(&mut out, "small", "requests_per_s", 0, false, true);
            out.push_str("\n**Small requests, closed loop: proxy CPU µs per request** (user + sys, user in parentheses; peer ratio < 1 is better)\n\n");
            let mut cpu = String::new();
            sub.ratio_table(
                &mut cpu,
                "small",
                "proxy_cpu_us_per_request",
                0,
                true,
                false,
            );
            // add the user share to each proxy's cell
            for line in cpu.lines() {
                let Some(w) = line
                    .strip_prefix("| ")
                    .and_then(|l| l.split(" |").next())
                    .filter(|w| sub.workloads("small").iter().any(|x| x == w))
                else {
                    out.push_str(line);
                    out.push('\n');
                    continue;
                };
                let cands: Vec<String> = sub
                    .present("small")
                    .into_iter()
                    .filter(|c| sub.med("small", w, c, "proxy_cpu_us_per_request").is_some())
                    .collect();
                let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
                let mut row = format!("|{}|", cells[0]);
                for (i, cell) in cells[1..].iter().enumerate() {
                    match cands.get(i) {
                        Some(c) => {
                            let user = sub.med("small", w, c, "proxy_user_us_per_request");
                            let _ = write!(
                                row,
                                "{} ({:.0}) |",
                                cell.trim_end(),
                                user.unwrap_or(f64::NAN)
                            );
                        }
                        None => {
                            let _ = write!(row, "{cell}|");
                        }
                    }
                }
                out.push_str(&row);
                out.push('\n');
            }
            let rate = self.settings["latency_rate"].as_f64().unwrap_or(0.0);
            let _ = writeln!(
                out,
                "\n**Small requests at a fixed {rate:.0} req/s over 64 connections: latency, µs, and added over direct** (p50 / p99 / p99.9)\n"
            );
            out.push_str("| workload | candidate | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 |\n");
            out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
            for w in small.iter().filter(|w| w.ends_with("paced")) {
                let name = w.trim_end_matches(" paced");
                for c in self.present("small") {
                    let c = c.as_str();
                    let get = |metric| self.med("small", w, c, metric);
                    let (Some(p50), Some(p99), Some(p999)) =
                        (get("p50_us"), get("p99_us"), get("p999_us"))
                    else {
                        continue;
                    };
                    let _ = write!(out, "| {name} | {c} | {p50:.0} | {p99:.0} | {p999:.0} |");
                    if c == "direct" {
                        out.push_str(" | | |\n");
                    } else {
                        let d = |metric| self.med("small", w, "direct", metric).unwrap_or(f64::NAN);
                        let _ = writeln!(
                            out,
                            " {:+.0} | {:+.0} | {:+.0} |",
                            p50 - d("p50_us"),
                            p99 - d("p99_us"),
                            p999 - d("p999_us")
                        );
                    }
                }
            }
            out.push('\n');
        }
        if !self.workloads("slow").is_empty() {
            out.push_str("**Peak RSS of the proxy, MiB** (VmHWM, reset before the streams open; nginx: master + workers)\n\n");
            self.ratio_table(&mut out, "slow", "peak_rss_mib", 1, true, false);
            out.push('\n');
        }
        let routes = self.workloads("routes");
        if !routes.is_empty() {
            let n = self.settings["routes"].as_u64().unwrap_or(0);
            let _ = writeln!(out, "**Routing table of {n} routes** (in-process: `SwiftPath::parse` + `RouteTable::lookup`; 3 of 4 queries hit a route)\n");
            out.push_str(
                "| table | parse + lookup per request | compile |\n| --- | ---: | ---: |\n",
            );
            for w in &routes {
                let _ = writeln!(
                    out,
                    "| {w} | {:.0} ns | {:.1} ms |",
                    self.med("routes", w, "sidecar", "ns_per_lookup")
                        .unwrap_or(f64::NAN),
                    self.med("routes", w, "sidecar", "build_ms")
                        .unwrap_or(f64::NAN)
                );
            }
            for w in self.workloads("swap") {
                let _ = writeln!(
                    out,
                    "\nTable swap, admin `PUT /v1/config` of {w} ({:.1} MiB JSON) until `200`: median {:.0} ms.",
                    self.med("swap", &w, "sidecar", "table_bytes").unwrap_or(0.0) / (1 << 20) as f64,
                    self.med("swap", &w, "sidecar", "swap_ms").unwrap_or(f64::NAN)
                );
            }
            out.push('\n');
        }
        if !self.workloads("swift").is_empty() {
            out.push_str("**End to end, real Swift 2.38 (one proxy process, tempauth, tmpfs): MiB/s, one stream** (× direct)\n\n");
            let sub = self.clone_section("swift", |w| !w.contains("conns"));
            sub.ratio_table(&mut out, "swift", "mib_per_s", 1, false, true);
            out.push_str("\n**End to end, real Swift: p99 latency, µs, 4 keep-alive connections, closed loop** (× direct)\n\n");
            let sub = self.clone_section("swift", |w| w.contains("conns"));
            sub.ratio_table(&mut out, "swift", "p99_us", 0, true, true);
            out.push('\n');
        }
        let targets = self.targets();
        if !targets.is_empty() {
            out.push_str(
                "**Targets (issue 6)**\n\n| target | measured | met |\n| --- | --- | --- |\n",
            );
            for (what, measured, verdict) in targets {
                let _ = writeln!(
                    out,
                    "| {what} | {measured} | {} |",
                    if verdict == "no" { "**no**" } else { verdict }
                );
            }
        }
        out
    }

    fn clone_section(&self, section: &str, keep: impl Fn(&str) -> bool) -> Report {
        Report {
            machine: Value::Null,
            settings: Value::Null,
            load_start: String::new(),
            load_end: String::new(),
            date: String::new(),
            command: String::new(),
            samples: self
                .samples
                .iter()
                .filter(|s| s.section == section && keep(&s.workload))
                .cloned()
                .collect(),
            elapsed: Duration::ZERO,
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "date": self.date,
            "command": self.command,
            "machine": self.machine,
            "load_average_start": self.load_start,
            "load_average_end": self.load_end,
            "run_seconds": self.elapsed.as_secs_f64(),
            "settings": self.settings,
            "medians": self.medians_json(),
            "targets": self.targets().into_iter().map(|(w, m, v)| json!({"target": w, "measured": m, "verdict": v})).collect::<Vec<_>>(),
            "samples": self.samples.iter().map(|s| json!({
                "section": s.section, "workload": s.workload, "candidate": s.candidate,
                "round": s.round, "metrics": s.metrics,
            })).collect::<Vec<_>>(),
        })
    }

    /// A report read back from its JSON (`swiftfed-bench report`), to render it again.
    pub fn from_json(v: &Value) -> Result<Report, String> {
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let samples = v["samples"]
            .as_array()
            .ok_or("no samples in the JSON")?
            .iter()
            .map(|s| Sample {
                section: s["section"].as_str().unwrap_or_default().into(),
                workload: s["workload"].as_str().unwrap_or_default().into(),
                candidate: s["candidate"].as_str().unwrap_or_default().into(),
                round: s["round"].as_u64().unwrap_or(0) as usize,
                metrics: s["metrics"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, x)| Some((k.clone(), x.as_f64()?)))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        Ok(Report {
            machine: v["machine"].clone(),
            settings: v["settings"].clone(),
            load_start: text("load_average_start"),
            load_end: text("load_average_end"),
            date: text("date"),
            command: text("command"),
            samples,
            elapsed: Duration::from_secs_f64(v["run_seconds"].as_f64().unwrap_or(0.0)),
        })
    }

    /// Writes `latest.json` and `latest.md` to `dir`; returns the markdown.
    pub fn write(&self, dir: &Path) -> Result<String, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let md = self.markdown();
        let json = serde_json::to_string_pretty(&self.json()).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("latest.json"), json + "\n").map_err(|e| e.to_string())?;
        std::fs::write(dir.join("latest.md"), &md).map_err(|e| e.to_string())?;
        Ok(md)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(w: &str, c: &str, v: f64) -> Sample {
        let mut s = Sample {
            section: "large".into(),
            workload: w.into(),
            candidate: c.into(),
            round: 0,
            metrics: BTreeMap::new(),
        };
        s.set("gib_per_s", v);
        s
    }

    #[test]
    fn medians_and_peer_ratios() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
        let mut r = Report {
            machine: Value::Null,
            settings: Value::Null,
            load_start: String::new(),
            load_end: String::new(),
            date: String::new(),
            command: String::new(),
            samples: vec![],
            elapsed: Duration::ZERO,
        };
        for (c, v) in [
            ("direct", 4.0),
            ("sidecar", 2.0),
            ("nginx", 1.0),
            ("haproxy", 2.5),
        ] {
            r.samples.push(sample("GET", c, v));
        }
        assert_eq!(
            r.best_peer("large", "GET", "gib_per_s", false),
            Some((2.5, "haproxy"))
        );
        let mut md = String::new();
        r.ratio_table(&mut md, "large", "gib_per_s", 2, false, true);
        assert!(
            md.contains(
                "| GET | 4.00 | 2.00 (0.50×) | 1.00 (0.25×) | 2.50 (0.62×) | 0.80 (haproxy) |"
            ),
            "{md}"
        );
    }
}
