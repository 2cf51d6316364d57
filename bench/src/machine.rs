//! Facts about the machine and the software under test, printed at the top of every report.

use std::process::Command;

use serde_json::{json, Value};

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub fn facts() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    let dirty = !first_line("git", &["status", "--porcelain", "--", "sidecar", "crds"]).is_empty();
    json!({
        "cores": cores(),
        "cpu": model,
        "memory_gib": (mem_kib as f64 / (1 << 20) as f64 * 10.0).round() / 10.0,
        "kernel": first_line("uname", &["-r"]),
        "os": std::fs::read_to_string("/etc/os-release").ok().and_then(|s| s.lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string()))
            .unwrap_or_default(),
        "nginx": first_line("nginx", &["-v"]),
        "haproxy": first_line("haproxy", &["-v"]),
        "rustc": first_line("rustc", &["--version"]),
        "commit": first_line("git", &["rev-parse", "--short", "HEAD"]),
        "sidecar_tree_dirty": dirty,
    })
}
