//! The run: start everything, measure every workload on every candidate in interleaved rounds,
//! then write the report. Each phase appends raw samples; the report takes medians.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use swiftfed_tests::free_port;

use crate::candidates::{self, Candidate};
use crate::client::{self, Conn, LargeOp};
use crate::procs::{self, Procs};
use crate::report::{Report, Sample};
use crate::routes::{self, Shape};
use crate::RunArgs;

const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;
const SMALL_SIZE: u64 = 4096;
const SMALL_CONNS: usize = 64;
/// Swift here is one eventlet proxy process: few connections, so p99 is mostly service time.
const SWIFT_CONNS: usize = 4;

/// Candidates in a different order each round, so no one always goes first or last.
fn rotated(list: &[Candidate], round: usize) -> Vec<Candidate> {
    let mut v = list.to_vec();
    let n = v.len();
    v.rotate_left(round % n);
    v
}

fn object_path(c: &Candidate, size: u64) -> String {
    format!("/v1/AUTH_bench/{}/{size}", c.container)
}

fn size_label(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.trailing_zeros() >= 30 {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

fn log(msg: impl AsRef<str>) {
    eprintln!("bench: {}", msg.as_ref());
}

pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64
}

struct Bench {
    args: RunArgs,
    procs: Procs,
    run_dir: PathBuf,
    sidecar_bin: PathBuf,
    pattern: Arc<Vec<u8>>,
    report: Report,
    origin_pid: u32,
}

pub async fn run(args: RunArgs) -> Result<(), String> {
    let started = Instant::now();
    let run_dir = std::env::temp_dir().join(format!("swiftfed-bench-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let result = run_in(args.clone(), &run_dir, started).await;
    if args.keep {
        log(format!("run dir kept: {}", run_dir.display()));
    } else {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    result
}

async fn run_in(args: RunArgs, run_dir: &Path, started: Instant) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let sidecar_bin = args
        .sidecar_bin
        .clone()
        .unwrap_or_else(|| exe.with_file_name("swiftfed-sidecar"));
    if !sidecar_bin.is_file() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p swiftfed-sidecar` (bench/run does)",
            sidecar_bin.display()
        ));
    }
    let mut report = Report::new(&args);
    report.settings["sidecar_bin"] = json!(sidecar_bin.display().to_string());
    report.settings["sidecar_bin_given"] = json!(args.sidecar_bin.is_some());
    report.settings["also_sidecar"] = json!(args.also_sidecar);
    log(format!(
        "machine: {} cores, load average {}",
        crate::machine::cores(),
        report.load_start
    ));

    let mut procs = Procs::default();
    let origin_port = free_port();
    let origin_addr = format!("127.0.0.1:{origin_port}");
    let mut cmd = Command::new(&exe);
    cmd.args([
        "origin",
        "--listen",
        &origin_addr,
        "--threads",
        &crate::machine::cores().to_string(),
    ]);
    let origin_pid = procs.spawn("origin", cmd, &run_dir.join("origin.log"))?;
    candidates::wait_ready(
        &mut procs,
        Some(origin_pid),
        &origin_addr,
        "HEAD",
        "/v1/AUTH_bench/c/0",
    )
    .await?;
    report.settings["origin"] = json!(origin_addr);

    let mut bench = Bench {
        args,
        procs,
        run_dir: run_dir.to_path_buf(),
        sidecar_bin,
        pattern: Arc::new(crate::origin::pattern()),
        report,
        origin_pid,
    };
    let started_set = candidates::start_proxies(
        &mut bench.procs,
        run_dir,
        &bench.sidecar_bin.clone(),
        &origin_addr,
        "origin",
        true,
        &bench.args.also_sidecar.clone(),
        ("HEAD", "/v1/AUTH_bench/{container}/0"),
    )
    .await?;
    let cands = started_set.candidates;
    for c in &cands {
        log(format!(
            "candidate {:<15} {} pid {:?}",
            c.name, c.addr, c.pid
        ));
    }

    let t = Instant::now();
    bench.large_phase(&cands).await?;
    bench.report.phase_seconds("large", t.elapsed());
    let t = Instant::now();
    bench.small_phase(&cands).await?;
    bench.report.phase_seconds("small", t.elapsed());
    let t = Instant::now();
    bench.slow_phase(&cands).await?;
    bench.report.phase_seconds("slow", t.elapsed());
    let t = Instant::now();
    bench.routes_phase(&origin_addr).await?;
    bench.report.phase_seconds("routes", t.elapsed());
    if bench.args.skip_swift {
        log("skipping the end-to-end rows against real Swift (--skip-swift)");
    } else {
        let t = Instant::now();
        bench.swift_phase().await?;
        bench.report.phase_seconds("swift", t.elapsed());
    }

    bench.report.finish(started.elapsed());
    let out = bench.args.out.clone();
    let md = bench.report.write(&out)?;
    println!("{md}");
    log(format!(
        "wrote {} and {}",
        out.join("latest.json").display(),
        out.join("latest.md").display()
    ));
    Ok(())
}

impl Bench {
    fn sample(
        &mut self,
        section: &str,
        workload: &str,
        candidate: &str,
        round: usize,
    ) -> &mut Sample {
        self.report.samples.push(Sample {
            section: section.into(),
            workload: workload.into(),
            candidate: candidate.into(),
            round,
            metrics: Default::default(),
        });
        self.report.samples.last_mut().expect("just pushed")
    }

    async fn large_phase(&mut self, cands: &[Candidate]) -> Result<(), String> {
        let a = &self.args;
        let work = [
            (LargeOp::Get, 1, a.large_size),
            (LargeOp::Get, 16, a.large_size_16),
            (LargeOp::PutSized, 1, a.large_size),
            (LargeOp::PutSized, 16, a.large_size_16),
            (LargeOp::PutChunked, 1, a.large_size),
            (LargeOp::PutChunked, 16, a.large_size_16),
        ];
        for round in 0..self.args.rounds {
            for (op, streams, size) in work {
                let workload = format!("{} {streams}×{}", op.label(), size_label(size));
                for c in rotated(cands, round) {
                    let pids = c.pids();
                    let cpu0 = procs::cpu_split_all(&pids);
                    let ocpu0 = procs::cpu_seconds(self.origin_pid);
                    let m0 = procs::machine_ticks();
                    let (bytes, elapsed) = client::large(
                        &c.addr,
                        &object_path(&c, size),
                        op,
                        streams,
                        size,
                        &[],
                        &self.pattern,
                    )
                    .await
                    .map_err(|e| format!("{workload} via {}: {e}", c.name))?;
                    let cpu1 = procs::cpu_split_all(&pids);
                    let (user, sys) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
                    let cpu = user + sys;
                    let ocpu = procs::cpu_seconds(self.origin_pid) - ocpu0;
                    let m1 = procs::machine_ticks();
                    let gib = bytes as f64 / GIB;
                    let s = self.sample("large", &workload, c.name, round);
                    s.set("gib_per_s", gib / elapsed.as_secs_f64());
                    s.set("seconds", elapsed.as_secs_f64());
                    if c.is_proxy() {
                        s.set("proxy_cpu_s_per_gib", cpu / gib);
                        s.set("proxy_sys_share", sys / cpu.max(1e-9));
                    }
                    s.set("origin_cpu_s_per_gib", ocpu / gib);
                    s.set("machine_busy", busy(m0, m1));
                    log(format!(
                        "round {} {workload:<22} {:<15} {:6.2} GiB/s  proxy CPU {:5.2} s/GiB",
                        round + 1,
                        c.name,
                        gib / elapsed.as_secs_f64(),
                        cpu / gib
                    ));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Ok(())
    }

    async fn small_phase(&mut self, cands: &[Candidate]) -> Result<(), String> {
        let dur = self.args.small_duration;
        let rate = self.args.latency_rate;
        for round in 0..self.args.rounds {
            for method in ["HEAD", "GET"] {
                for paced in [false, true] {
                    let workload = format!(
                        "{} {}",
                        if method == "HEAD" {
                            "HEAD"
                        } else {
                            "GET 4 KiB"
                        },
                        if paced { "paced" } else { "max" }
                    );
                    for c in rotated(cands, round) {
                        let pids = c.pids();
                        let cpu0 = procs::cpu_split_all(&pids);
                        let run = client::small(
                            &c.addr,
                            method,
                            &object_path(&c, SMALL_SIZE),
                            SMALL_SIZE,
                            SMALL_CONNS,
                            // paced runs have fewer requests per second: twice as long, for
                            // enough samples behind p99.9
                            if paced { dur * 2 } else { dur },
                            paced.then_some(rate),
                            &[],
                        )
                        .await
                        .map_err(|e| format!("{workload} via {}: {e}", c.name))?;
                        let cpu1 = procs::cpu_split_all(&pids);
                        let (user, sys) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
                        let mut lat = run.latencies_us;
                        lat.sort_unstable();
                        let rps = run.requests as f64 / run.elapsed.as_secs_f64();
                        let s = self.sample("small", &workload, c.name, round);
                        s.set("requests_per_s", rps);
                        s.set("p50_us", percentile(&lat, 50.0));
                        s.set("p99_us", percentile(&lat, 99.0));
                        s.set("p999_us", percentile(&lat, 99.9));
                        if paced {
                            s.set(
                                "late_fraction",
                                run.late as f64 / run.requests.max(1) as f64,
                            );
                        }
                        if c.is_proxy() {
                            let n = run.requests.max(1) as f64;
                            s.set("proxy_cpu_us_per_request", (user + sys) * 1e6 / n);
                            s.set("proxy_user_us_per_request", user * 1e6 / n);
                            s.set("proxy_sys_us_per_request", sys * 1e6 / n);
                        }
                        log(format!(
                            "round {} {workload:<18} {:<15} {:8.0} req/s  p50 {:6.0} µs  p99 {:6.0} µs  p99.9 {:6.0} µs",
                            round + 1,
                            c.name,
                            rps,
                            percentile(&lat, 50.0),
                            percentile(&lat, 99.0),
                            percentile(&lat, 99.9)
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    async fn slow_phase(&mut self, cands: &[Candidate]) -> Result<(), String> {
        let n = self.args.slow_streams;
        let workload = format!("{n} slow GET streams");
        for round in 0..self.args.rounds {
            for c in rotated(cands, round) {
                if !c.is_proxy() {
                    continue;
                }
                let pids = c.pids();
                let before: u64 = pids.iter().map(|p| procs::rss_kib(*p)).sum();
                for p in &pids {
                    if !procs::reset_peak_rss(*p) {
                        return Err(format!(
                            "cannot reset VmHWM of pid {p} (/proc/PID/clear_refs)"
                        ));
                    }
                }
                // 16 KiB every 100 ms per stream (160 KiB/s): far slower than the origin, so
                // every proxy holds whatever it buffers per stream for the whole hold time.
                let streams = client::slow_streams(
                    &c.addr,
                    &object_path(&c, 1 << 40),
                    n,
                    16 * 1024,
                    Duration::from_millis(100),
                )
                .await
                .map_err(|e| format!("{workload} via {}: {e}", c.name))?;
                tokio::time::sleep(self.args.slow_hold).await;
                let peak: u64 = pids.iter().map(|p| procs::peak_rss_kib(*p)).sum();
                streams.end().await;
                let s = self.sample("slow", &workload, c.name, round);
                s.set("peak_rss_mib", peak as f64 / 1024.0);
                s.set("rss_before_mib", before as f64 / 1024.0);
                log(format!(
                    "round {} {workload} {:<15} peak RSS {:6.1} MiB (before {:5.1} MiB)",
                    round + 1,
                    c.name,
                    peak as f64 / 1024.0,
                    before as f64 / 1024.0
                ));
                // let the proxies close their upstream connections before the next one
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Ok(())
    }

    async fn routes_phase(&mut self, origin: &str) -> Result<(), String> {
        let routes = self.args.routes;
        for shape in Shape::ALL {
            let r = routes::lookup_bench(shape, routes, Duration::from_millis(900))?;
            let s = self.sample("routes", shape.label(), "sidecar", 0);
            s.set("ns_per_lookup", r.ns_per_lookup);
            s.set("build_ms", r.build_ms);
            s.set("queries", r.queries as f64);
            s.set("hits", r.hits as f64);
            log(format!(
                "routes {:<55} parse+lookup {:7.1} ns  build {:6.1} ms",
                shape.label(),
                r.ns_per_lookup,
                r.build_ms
            ));
        }

        // Table swap through the admin API of a fresh sidecar.
        let token = "bench-admin-token";
        let token_file = self.run_dir.join("admin-token");
        std::fs::write(&token_file, token).map_err(|e| e.to_string())?;
        let port = free_port();
        let admin_port = free_port();
        let admin = format!("127.0.0.1:{admin_port}");
        let mut cmd = Command::new(&self.sidecar_bin);
        cmd.args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            origin,
            "--admin-listen",
            &admin,
        ])
        .arg("--admin-token-file")
        .arg(&token_file)
        .env("RUST_LOG", "info");
        let pid = self.procs.spawn(
            "sidecar (swap)",
            cmd,
            &self.run_dir.join("swap-sidecar.log"),
        )?;
        candidates::wait_ready(&mut self.procs, Some(pid), &admin, "GET", "/ready").await?;
        let reps = 5.max(self.args.rounds);
        let auth = format!("Authorization: Bearer {token}");
        for rev in 1..=reps as u64 {
            let shape = Shape::Spread;
            let body = routes::table_json(shape, routes, rev, origin).to_string();
            let t0 = Instant::now();
            let (status, text) =
                admin_request(&admin, "PUT", "/v1/config", &auth, body.as_bytes()).await?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if status != 200 {
                return Err(format!("PUT /v1/config ({routes} routes): {status} {text}"));
            }
            let s = self.sample(
                "swap",
                &format!("{routes} routes"),
                "sidecar",
                rev as usize - 1,
            );
            s.set("swap_ms", ms);
            s.set("table_bytes", body.len() as f64);
            log(format!(
                "routes swap of {routes} routes ({:.1} MiB JSON), revision {rev}: {ms:.1} ms",
                body.len() as f64 / MIB
            ));
        }
        let (status, text) = admin_request(&admin, "GET", "/v1/config", &auth, b"").await?;
        let in_use = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["routesInUse"].as_u64());
        if status != 200 || in_use != Some(routes as u64) {
            return Err(format!(
                "after the swaps the sidecar reports {in_use:?} routes in use (status {status})"
            ));
        }
        self.procs.stop(pid);
        Ok(())
    }

    async fn swift_phase(&mut self) -> Result<(), String> {
        log("starting a real Swift cluster (test harness)");
        let cluster = swiftfed_tests::SwiftCluster::start("bench")
            .map_err(|e| format!("Swift cluster: {e} (run scripts/install-test-deps)"))?;
        let swift = format!("127.0.0.1:{}", cluster.proxy_port());
        let (_url, token) = cluster
            .auth("test:tester", "testing")
            .map_err(|e| e.to_string())?;
        let auth = vec![format!("X-Auth-Token: {token}")];
        // container and the small object, directly
        let mut conn = Conn::connect(&swift, 64 * 1024).await?;
        conn.send(&client::request_head(
            "PUT",
            "/v1/AUTH_test/bench",
            &swift,
            &[auth[0].clone(), "Content-Length: 0".into()],
        ))
        .await?;
        let head = conn.read_head().await?;
        conn.read_body(&head, false, |_| {}).await?;
        if !(200..300).contains(&head.status) {
            return Err(format!("PUT container on Swift: {}", head.status));
        }
        client::put_checked(
            &mut conn,
            &swift,
            "/v1/AUTH_test/bench/small",
            SMALL_SIZE,
            false,
            &auth,
            &self.pattern,
            201,
        )
        .await?;
        drop(conn);

        let set = candidates::start_proxies(
            &mut self.procs,
            &self.run_dir.clone(),
            &self.sidecar_bin.clone(),
            &swift,
            "swift",
            false,
            &[],
            ("GET", "/healthcheck"),
        )
        .await?;
        let cands = set.candidates;
        let size = self.args.swift_size;
        let put_w = format!("PUT {}", size_label(size));
        let get_w = format!("GET {}", size_label(size));
        for round in 0..self.args.rounds {
            for c in rotated(&cands, round) {
                let path = format!("/v1/AUTH_test/bench/big-{}", c.name);
                let pids = c.pids();
                for (op, workload) in [(LargeOp::PutSized, &put_w), (LargeOp::Get, &get_w)] {
                    let cpu0 = procs::cpu_seconds_all(&pids);
                    let t0 = Instant::now();
                    let mut conn = Conn::connect(&c.addr, 256 * 1024).await?;
                    let bytes = match op {
                        LargeOp::Get => {
                            client::get_checked(
                                &mut conn,
                                &c.addr,
                                &path,
                                size,
                                &auth,
                                &self.pattern,
                            )
                            .await
                        }
                        _ => {
                            client::put_checked(
                                &mut conn,
                                &c.addr,
                                &path,
                                size,
                                false,
                                &auth,
                                &self.pattern,
                                201,
                            )
                            .await
                        }
                    }
                    .map_err(|e| format!("Swift {workload} via {}: {e}", c.name))?;
                    let secs = t0.elapsed().as_secs_f64();
                    let cpu = procs::cpu_seconds_all(&pids) - cpu0;
                    let s = self.sample("swift", workload, c.name, round);
                    s.set("mib_per_s", bytes as f64 / MIB / secs);
                    if c.is_proxy() {
                        s.set("proxy_cpu_s_per_gib", cpu / (bytes as f64 / GIB));
                    }
                    log(format!(
                        "round {} Swift {workload:<12} {:<8} {:7.1} MiB/s",
                        round + 1,
                        c.name,
                        bytes as f64 / MIB / secs
                    ));
                }
                for method in ["HEAD", "GET"] {
                    let workload = format!(
                        "{} {SWIFT_CONNS} conns",
                        if method == "HEAD" {
                            "HEAD"
                        } else {
                            "GET 4 KiB"
                        }
                    );
                    let run = client::small(
                        &c.addr,
                        method,
                        "/v1/AUTH_test/bench/small",
                        SMALL_SIZE,
                        SWIFT_CONNS,
                        self.args.small_duration,
                        None,
                        &auth,
                    )
                    .await
                    .map_err(|e| format!("Swift {workload} via {}: {e}", c.name))?;
                    let mut lat = run.latencies_us;
                    lat.sort_unstable();
                    let rps = run.requests as f64 / run.elapsed.as_secs_f64();
                    let s = self.sample("swift", &workload, c.name, round);
                    s.set("requests_per_s", rps);
                    s.set("p50_us", percentile(&lat, 50.0));
                    s.set("p99_us", percentile(&lat, 99.0));
                    log(format!(
                        "round {} Swift {workload:<16} {:<8} {:6.0} req/s  p99 {:6.0} µs",
                        round + 1,
                        c.name,
                        rps,
                        percentile(&lat, 99.0)
                    ));
                }
            }
        }
        for c in &cands {
            if let Some(pid) = c.pid {
                self.procs.stop(pid);
            }
        }
        drop(cluster);
        Ok(())
    }
}

/// `swiftfed-bench load`: one workload against one address, for profiling by hand.
pub async fn load(
    addr: &str,
    mode: &str,
    container: &str,
    conns: usize,
    duration: Duration,
    size: u64,
) -> Result<String, String> {
    let pattern = Arc::new(crate::origin::pattern());
    match mode {
        "head" | "get" => {
            let method = if mode == "head" { "HEAD" } else { "GET" };
            let path = format!("/v1/AUTH_bench/{container}/{SMALL_SIZE}");
            let run =
                client::small(addr, method, &path, SMALL_SIZE, conns, duration, None, &[]).await?;
            let mut lat = run.latencies_us;
            lat.sort_unstable();
            Ok(format!(
                "{} requests, {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs",
                run.requests,
                run.requests as f64 / run.elapsed.as_secs_f64(),
                percentile(&lat, 50.0),
                percentile(&lat, 99.0)
            ))
        }
        "large-get" | "large-put" | "large-put-chunked" => {
            let op = match mode {
                "large-get" => LargeOp::Get,
                "large-put" => LargeOp::PutSized,
                _ => LargeOp::PutChunked,
            };
            let path = format!("/v1/AUTH_bench/{container}/{size}");
            let (bytes, el) = client::large(addr, &path, op, conns, size, &[], &pattern).await?;
            Ok(format!(
                "{bytes} bytes in {:.2} s: {:.2} GiB/s",
                el.as_secs_f64(),
                bytes as f64 / GIB / el.as_secs_f64()
            ))
        }
        "slow" => {
            let path = format!("/v1/AUTH_bench/{container}/{}", 1u64 << 40);
            let streams =
                client::slow_streams(addr, &path, conns, 16 * 1024, Duration::from_millis(100))
                    .await?;
            tokio::time::sleep(duration).await;
            streams.end().await;
            Ok(format!("{conns} slow streams held for {duration:?}"))
        }
        other => Err(format!("unknown mode {other:?}")),
    }
}

fn busy(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1);
    if total == 0 {
        return 0.0;
    }
    b.0.saturating_sub(a.0) as f64 / total as f64
}

/// One request with a body to the admin API; (status, body text).
async fn admin_request(
    addr: &str,
    method: &str,
    path: &str,
    auth: &str,
    body: &[u8],
) -> Result<(u16, String), String> {
    let mut conn = Conn::connect(addr, 64 * 1024).await?;
    let mut head = client::request_head(
        method,
        path,
        addr,
        &[
            auth.to_string(),
            format!("Content-Length: {}", body.len()),
            "Content-Type: application/json".into(),
        ],
    );
    head.extend_from_slice(body);
    conn.send(&head).await?;
    let h = conn.read_head().await?;
    let mut text = Vec::new();
    conn.read_body(&h, method == "HEAD", |d| text.extend_from_slice(d))
        .await?;
    Ok((h.status, String::from_utf8_lossy(&text).into()))
}
