//! Propagation benchmark: from the moment the controller acts on a changed federation (one
//! namespace sync: render, snapshot, push) until N real sidecars have acknowledged the new
//! revision, for N = 10, 100, 500 sidecar processes on loopback. The API server is the
//! in-memory one from the operator's tests; the sidecars are real `swiftfed-sidecar` processes.
//!
//!     cargo build --release -p swiftfed-sidecar
//!     cargo run --release -p swiftfed-operator --example propagation -- target/release/swiftfed-sidecar [10,100,500] [rounds]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use swiftfed_operator::push::{Outcome, Pusher};
use swiftfed_operator::sync::Syncer;
use swiftfed_operator::testing::{serve, FakeApi};

const TOKEN: &str = "propagation-bench-token";
const NS: &str = "/api/v1/namespaces/bench";
const FEDS: &str = "/apis/swiftfed.io/v1alpha1/namespaces/bench/clusterfederations";

struct Sidecars(Vec<Child>);

impl Drop for Sidecars {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start_sidecars(bin: &Path, n: usize, dir: &Path) -> (Sidecars, Vec<u16>) {
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).expect("token file");
    let mut children = Sidecars(Vec::new());
    let mut ports = Vec::new();
    for _ in 0..n {
        let (port, admin) = (free_port(), free_port());
        let child = Command::new(bin)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", "127.0.0.1:9"])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .arg("--admin-token-file")
            .arg(&token)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sidecar");
        children.0.push(child);
        ports.push(admin);
    }
    // Ready: every admin port answers.
    let deadline = Instant::now() + Duration::from_secs(120);
    for port in &ports {
        while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
            assert!(Instant::now() < deadline, "sidecars did not start in time");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    (children, ports)
}

fn cpu_seconds() -> f64 {
    // utime and stime of this process, in clock ticks (fields 14 and 15 of /proc/self/stat).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = PathBuf::from(
        args.get(1)
            .expect("usage: propagation <swiftfed-sidecar> [10,100,500] [rounds]"),
    );
    let sizes: Vec<usize> = args
        .get(2)
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100, 500]);
    let rounds: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(20);
    let dir = std::env::temp_dir().join(format!("swiftfed-propagation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work dir");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.trim()
    );
    println!(
        "\n| sidecars | rounds | p50 | p99 | max | operator CPU per round | operator peak RSS |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for n in sizes {
        let (_children, ports) = start_sidecars(&bin, n, &dir);
        let api = Arc::new(Mutex::new(FakeApi::default()));
        {
            let mut api = api.lock().expect("api");
            for (i, port) in ports.iter().enumerate() {
                api.objects.insert(format!("{NS}/pods/proxy-{i}"), json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("proxy-{i}"), "namespace": "bench", "labels": {"app": "swift-proxy"},
                                 "annotations": {"swiftfed.io/admin-port": port.to_string()}},
                    "spec": {"containers": [{"name": "swiftfed-sidecar", "image": "x"}]},
                    "status": {"phase": "Running", "podIP": "127.0.0.1",
                               "containerStatuses": [{"name": "swiftfed-sidecar", "ready": true, "restartCount": 0, "image": "x", "imageID": "x"}]}}));
            }
            api.objects.insert(format!("{NS}/secrets/swiftfed-admin-token"), json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "swiftfed-admin-token", "namespace": "bench"}, "stringData": {"token": TOKEN}}));
        }
        let client = serve(api.clone());
        let syncer = Syncer::new(client, Pusher::default(), 9901);
        let mut times = Vec::new();
        let cpu_start = cpu_seconds();
        for round in 0..=rounds {
            // A change: a new route prefix, so the content hash and the revision change.
            api.lock().expect("api").objects.insert(format!("{FEDS}/f"), json!({"apiVersion": "swiftfed.io/v1alpha1", "kind": "ClusterFederation",
                "metadata": {"name": "f", "namespace": "bench", "uid": "u", "creationTimestamp": "2026-11-01T00:00:00Z"},
                "spec": {"proxySelector": {"matchLabels": {"app": "swift-proxy"}},
                         "clusters": [{"name": "b", "endpoints": ["http://127.0.0.1:1"]}],
                         "routes": [{"match": {"account": "AUTH_a", "container": {"prefix": format!("r{round}-")}}, "target": {"cluster": "b"}}]}}));
            let started = Instant::now();
            let sync = syncer.sync("bench").await.expect("sync");
            let elapsed = started.elapsed();
            let acked = sync
                .pushes
                .values()
                .filter(|o| matches!(o, Outcome::Ack(r) if *r == sync.revision))
                .count();
            assert_eq!(
                acked, n,
                "every sidecar must ACK revision {}",
                sync.revision
            );
            if round > 0 {
                times.push(elapsed); // round 0 warms connections up
            }
        }
        let cpu = (cpu_seconds() - cpu_start) / (rounds + 1) as f64;
        times.sort();
        println!(
            "| {n} | {rounds} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} MiB |",
            percentile(&times, 0.5).as_secs_f64() * 1000.0,
            percentile(&times, 0.99).as_secs_f64() * 1000.0,
            times.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
            cpu * 1000.0,
            peak_rss_mib()
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nload at end {}", load.trim());
    let _ = std::fs::remove_dir_all(&dir);
}
