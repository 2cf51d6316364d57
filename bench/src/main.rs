//! swiftfed-bench: the sidecar against direct access, nginx and haproxy, on the same workloads,
//! in one run. See the README ("Measured numbers") for the command and how to read the table.
//!
//! Everything runs on 127.0.0.1 on free ports: the origin (a subprocess of this binary), the
//! sidecar (release binary next to this one), nginx and haproxy (from Debian), and, for the end
//! to end rows, a real Swift cluster from the test harness. Every process is stopped by its PID
//! when the run ends, however it ends.

mod candidates;
mod client;
mod machine;
mod origin;
mod phases;
mod procs;
mod report;
mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Sizes like `1GiB`, `64MiB`, `4096`.
fn size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("bad size {text:?}"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        u => return Err(format!("unknown unit {u:?} (use B, KiB, MiB, GiB)")),
    };
    Ok(n * mult)
}

fn duration(text: &str) -> Result<Duration, String> {
    swiftfed_crds::routing::parse_duration(text)
}

#[derive(Parser, Debug)]
#[command(name = "swiftfed-bench", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The origin server alone (the benchmark starts it as a subprocess).
    Origin {
        #[arg(long)]
        listen: SocketAddr,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Renders a report again from its raw JSON (e.g. bench/results/latest.json) to stdout;
    /// with --out, also rewrites latest.json and latest.md there.
    Report {
        #[arg(long, default_value = "bench/results/latest.json")]
        json: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Load against one address, for profiling a proxy by hand (e.g. a sidecar under
    /// `valgrind --tool=callgrind` in front of `swiftfed-bench origin`).
    Load {
        /// `127.0.0.1:port` to send requests to.
        #[arg(long)]
        addr: String,
        /// `head`, `get` (4 KiB, keep-alive), `large-get`, `large-put`, `large-put-chunked`, or `slow` (slow readers
        /// of a huge object; prints nothing, holds them for --duration).
        #[arg(long, default_value = "get")]
        mode: String,
        /// Container in the path (`routed` takes the sidecar's route).
        #[arg(long, default_value = "c")]
        container: String,
        #[arg(long, default_value_t = 64)]
        conns: usize,
        #[arg(long, default_value = "5s", value_parser = duration)]
        duration: Duration,
        /// Object size for the large modes.
        #[arg(long, default_value = "1GiB", value_parser = size)]
        size: u64,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Interleaved repetitions: each round runs every workload on every candidate.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Object size of the single-stream large GET/PUT.
    #[arg(long, default_value = "1GiB", value_parser = size)]
    pub large_size: u64,
    /// Object size of each of the 16 concurrent large GET/PUT streams.
    #[arg(long, default_value = "128MiB", value_parser = size)]
    pub large_size_16: u64,
    /// Length of each closed-loop small-request measurement (fixed-rate ones take twice this).
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub small_duration: Duration,
    /// Request rate (req/s over 64 connections) of the fixed-rate latency runs.
    #[arg(long, default_value_t = 2000.0)]
    pub latency_rate: f64,
    /// Concurrent slow streams for the peak-RSS measurement.
    #[arg(long, default_value_t = 256)]
    pub slow_streams: usize,
    /// How long the slow streams are held open before the peak RSS is read.
    #[arg(long, default_value = "3s", value_parser = duration)]
    pub slow_hold: Duration,
    /// Routes in the routing-table rows.
    #[arg(long, default_value_t = 10_000)]
    pub routes: usize,
    /// Object size of the end-to-end rows against real Swift.
    #[arg(long, default_value = "256MiB", value_parser = size)]
    pub swift_size: u64,
    /// Skip the end-to-end rows against real Swift (they need scripts/install-test-deps).
    #[arg(long)]
    pub skip_swift: bool,
    /// The sidecar binary (default: swiftfed-sidecar next to this binary).
    #[arg(long)]
    pub sidecar_bin: Option<PathBuf>,
    /// Another sidecar build to measure beside the default one (pass-through, origin rows), as
    /// `LABEL=PATH[,ARG...]`; an ARG of the form `NAME=VALUE` is set in its environment. For
    /// before/after rows of a patch, e.g.
    /// `--also-sidecar "sidecar patched=/tmp/swiftfed-sidecar,--max-head-bytes,65536"`.
    #[arg(long)]
    pub also_sidecar: Vec<String>,
    /// Where latest.json and latest.md go.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Keep the run dir (configs, logs) instead of removing it.
    #[arg(long)]
    pub keep: bool,
    /// A short smoke run: 1 round, small sizes, short durations (numbers not meaningful).
    #[arg(long)]
    pub quick: bool,
}

impl RunArgs {
    fn apply_quick(&mut self) {
        if self.quick {
            self.rounds = 1;
            self.large_size = 64 << 20;
            self.large_size_16 = 8 << 20;
            self.small_duration = Duration::from_millis(500);
            self.slow_streams = 64;
            self.slow_hold = Duration::from_secs(1);
            self.swift_size = 16 << 20;
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Origin { listen, threads }) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .enable_all()
                .build()
                .expect("runtime");
            match rt.block_on(origin::serve(listen)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("origin: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Report { json, out }) => {
            let rendered = std::fs::read_to_string(&json)
                .map_err(|e| format!("{}: {e}", json.display()))
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
                .and_then(|v| report::Report::from_json(&v))
                .and_then(|r| match &out {
                    Some(dir) => r.write(dir),
                    None => Ok(r.markdown()),
                });
            match rendered {
                Ok(md) => {
                    println!("{md}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("swiftfed-bench report: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Load {
            addr,
            mode,
            container,
            conns,
            duration,
            size,
        }) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime");
            match rt.block_on(phases::load(
                &addr, &mode, &container, conns, duration, size,
            )) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("swiftfed-bench load: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            let mut args = cli.run;
            args.apply_quick();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime");
            // The run future is polled on this (main) thread, which also spawns every child:
            // PR_SET_PDEATHSIG follows the spawning thread.
            let result = rt.block_on(async {
                tokio::select! {
                    r = phases::run(args) => r,
                    _ = stop_signal() => Err("interrupted: stopping everything".to_string()),
                }
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("swiftfed-bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut i), Ok(mut t)) => {
            tokio::select! {
                _ = i.recv() => {}
                _ = t.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse() {
        assert_eq!(super::size("1GiB"), Ok(1 << 30));
        assert_eq!(super::size("64MiB"), Ok(64 << 20));
        assert_eq!(super::size("4096"), Ok(4096));
        assert!(super::size("1TB").is_err());
    }
}
