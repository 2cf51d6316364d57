use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use swiftfed_crds::routing::{parse_duration, Timeouts};
use swiftfed_sidecar::admin::Admin;
use swiftfed_sidecar::auth::LocalAuthorizer;
use swiftfed_sidecar::config_source::ConfigFile;
use swiftfed_sidecar::server::{self, Limits};
use swiftfed_sidecar::state::State;
use swiftfed_sidecar::tls_listener::{ListenerTls, TlsFiles};
use swiftfed_sidecar::upstream::{self, Buffers, Upstream};
use swiftfed_sidecar::{access_log, forward, labels};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// swiftfed forwarder sidecar: the Swift proxy's front door. Requests for federated accounts and
/// containers are streamed to their target Swift cluster; everything else goes to the local
/// Swift proxy. Every flag can also be set through the environment variable shown.
#[derive(Parser, Debug)]
#[command(name = "swiftfed-sidecar", version, about, long_about = None)]
struct Args {
    /// Address for Swift API traffic.
    #[arg(long, env = "SWIFTFED_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// The local Swift proxy (host:port), reached for every unrouted request.
    #[arg(long, env = "SWIFTFED_UPSTREAM")]
    upstream: String,

    /// Routing table file (YAML or JSON). Reloaded when it changes and on SIGHUP. Without it,
    /// or while the file does not exist, everything goes to the local proxy.
    #[arg(long, env = "SWIFTFED_CONFIG")]
    config: Option<PathBuf>,

    /// How often the routing file, and the TLS certificate files, are checked for changes.
    #[arg(long, env = "SWIFTFED_CONFIG_POLL", default_value = "1s", value_parser = duration)]
    config_poll: Duration,

    /// Serve Swift traffic over TLS with this certificate chain (PEM, leaf first). Re-read when
    /// it changes (see --config-poll) and on SIGHUP; new connections get the new certificate.
    #[arg(
        long,
        env = "SWIFTFED_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert, re-read with it.
    #[arg(
        long,
        env = "SWIFTFED_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,

    /// Address of the admin API (PUT/GET /v1/config, /ready, /live, /metrics). Disabled when
    /// absent.
    #[arg(long, env = "SWIFTFED_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,

    /// File holding the bearer token that PUT/GET /v1/config require. Re-read on each request.
    #[arg(long, env = "SWIFTFED_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,

    /// Serve the admin API over TLS with this certificate chain (PEM, leaf first); re-read like
    /// --tls-cert.
    #[arg(long, env = "SWIFTFED_ADMIN_TLS_CERT", value_name = "FILE", requires_all = ["admin_tls_key", "admin_listen"])]
    admin_tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --admin-tls-cert, re-read with it.
    #[arg(
        long,
        env = "SWIFTFED_ADMIN_TLS_KEY",
        value_name = "FILE",
        requires = "admin_tls_cert"
    )]
    admin_tls_key: Option<PathBuf>,

    /// CA certificates (PEM) whose client certificates may use PUT/GET /v1/config instead of
    /// the bearer token (admin TLS only). A certificate from another CA fails the handshake.
    /// Re-read like --tls-cert.
    #[arg(
        long,
        env = "SWIFTFED_ADMIN_CLIENT_CA",
        value_name = "FILE",
        requires = "admin_tls_cert"
    )]
    admin_client_ca: Option<PathBuf>,

    /// This pod's labels in the Kubernetes downward API format (`key="value"` lines): only
    /// routes whose proxySelector matches them are used. Without it every route is used.
    #[arg(long, env = "SWIFTFED_POD_LABELS_FILE")]
    pod_labels_file: Option<PathBuf>,

    /// How long a successful local authorization check (Credentials auth) is remembered.
    #[arg(long, env = "SWIFTFED_AUTHZ_CACHE_TTL", default_value = "10s", value_parser = duration)]
    authz_cache_ttl: Duration,

    /// Connect timeout toward the local proxy.
    #[arg(long, env = "SWIFTFED_LOCAL_CONNECT_TIMEOUT", default_value = "2s", value_parser = duration)]
    local_connect_timeout: Duration,

    /// Time the local proxy may take to answer after the request body was sent.
    #[arg(long, env = "SWIFTFED_LOCAL_FIRST_BYTE_TIMEOUT", default_value = "60s", value_parser = duration)]
    local_first_byte_timeout: Duration,

    /// Longest pause in a body stream to or from the local proxy.
    #[arg(long, env = "SWIFTFED_LOCAL_IDLE_TIMEOUT", default_value = "60s", value_parser = duration)]
    local_idle_timeout: Duration,

    /// Time a client has to send a complete request head.
    #[arg(long, env = "SWIFTFED_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = duration)]
    header_read_timeout: Duration,

    /// Largest request head (request line and headers) in bytes, above Swift's own limits (8 KiB
    /// per header line, 126 headers, 4 KiB of metadata). Also hyper's read buffer per client
    /// connection: the largest piece of a request body read at once.
    #[arg(long, env = "SWIFTFED_MAX_HEAD_BYTES", default_value_t = 256 * 1024)]
    max_head_bytes: usize,

    /// Largest piece of a response read from an upstream at once, in bytes. Each response's
    /// reads are sized from what its client acknowledges (about 20 ms of its rate, slow start,
    /// at least 16 KiB), so a slow client holds small pieces. 0: hyper's adaptive buffer alone
    /// (grows to ~400 KiB on a fast upstream, whatever the client's pace).
    #[arg(long, env = "SWIFTFED_READ_BUFFER_BYTES", default_value_t = upstream::DEFAULT_READ_BUFFER_BYTES)]
    read_buffer_bytes: usize,

    /// On SIGTERM/SIGINT, how long requests in flight may take to finish.
    #[arg(long, env = "SWIFTFED_DRAIN_TIMEOUT", default_value = "30s", value_parser = duration)]
    drain_timeout: Duration,

    /// Log format: `text` or `json`. Verbosity comes from RUST_LOG (default `info`).
    #[arg(long, env = "SWIFTFED_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    access_log::init(match format {
        LogFormat::Text => access_log::Format::Text,
        LogFormat::Json => access_log::Format::Json,
    });
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("swiftfed-sidecar: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args));
    // Requests answered during the drain are still in the access log's buffer.
    access_log::global().flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("swiftfed-sidecar: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    // hyper's minimum buffer is 8 KiB; below that it would panic.
    let buffers = Buffers {
        read_bytes: match args.read_buffer_bytes {
            0 => 0,
            n => n.max(8192),
        },
    };
    let local = Upstream::with_buffers(
        "local",
        &[format!("http://{}", args.upstream)],
        Timeouts {
            connect: args.local_connect_timeout,
            first_byte: args.local_first_byte_timeout,
            idle: args.local_idle_timeout,
        },
        None,
        buffers,
    )
    .map_err(|e| format!("--upstream: {e}"))?;
    let pod_labels: Option<BTreeMap<String, String>> = match &args.pod_labels_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("--pod-labels-file {}: {e}", path.display()))
                .and_then(|text| {
                    labels::parse_downward_api(&text)
                        .map_err(|e| format!("--pod-labels-file {}: {e}", path.display()))
                })?,
        ),
        None => None,
    };
    let config_file = args.config.clone().map(|path| ConfigFile {
        path,
        poll: args.config_poll,
    });
    // Ready at once unless a routing file exists and has not loaded yet.
    let state = Arc::new(State::new(
        local,
        LocalAuthorizer::new(args.authz_cache_ttl),
        pod_labels,
        true,
    ));
    if let Some(file) = config_file {
        let mut last = None;
        if file.path.exists() {
            if !file.load(&state, &mut last, "start") {
                state.set_ready(false);
            }
        } else {
            tracing::info!(file = %file.path.display(), "routing file absent: passing everything to the local proxy until it appears");
        }
        file.spawn(state.clone(), last);
    }

    // Certificates are loaded before binding, so a bad file stops the start with its name.
    let swift_tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(ListenerTls::load(
            "swift",
            TlsFiles {
                cert: ("--tls-cert", cert.clone()),
                key: ("--tls-key", key.clone()),
                client_ca: None,
            },
        )?),
        _ => None,
    };
    let admin_tls = match (&args.admin_tls_cert, &args.admin_tls_key) {
        (Some(cert), Some(key)) => Some(ListenerTls::load(
            "admin",
            TlsFiles {
                cert: ("--admin-tls-cert", cert.clone()),
                key: ("--admin-tls-key", key.clone()),
                client_ca: args
                    .admin_client_ca
                    .clone()
                    .map(|ca| ("--admin-client-ca", ca)),
            },
        )?),
        _ => None,
    };
    for tls in swift_tls.iter().chain(&admin_tls) {
        tls.clone().spawn_reloader(args.config_poll);
    }

    tokio::spawn(access_log::flush_periodically());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let limits = Limits {
        header_read_timeout: args.header_read_timeout,
        max_head_bytes: args.max_head_bytes.max(8192),
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    tracing::info!(listen = %args.listen, upstream = %args.upstream, tls = swift_tls.is_some(), "serving Swift traffic");
    let proxy_state = state.clone();
    let proxy = tokio::spawn(server::serve(
        "swift",
        listener,
        swift_tls,
        limits,
        move |req, _peer| forward::handle(proxy_state.clone(), req),
        shutdown_rx.clone(),
        args.drain_timeout,
    ));
    let admin_task = match args.admin_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| format!("--admin-listen {addr}: {e}"))?;
            tracing::info!(
                listen = %addr,
                tls = admin_tls.is_some(),
                client_certificates = args.admin_client_ca.is_some(),
                "serving admin API"
            );
            let admin = Arc::new(Admin {
                state: state.clone(),
                token_file: args.admin_token_file.clone(),
            });
            Some(tokio::spawn(server::serve(
                "admin",
                listener,
                admin_tls,
                limits,
                move |req, peer| {
                    let admin = admin.clone();
                    async move { admin.handle(req, peer).await }
                },
                shutdown_rx.clone(),
                Duration::from_secs(5),
            )))
        }
        None => None,
    };

    wait_for_shutdown().await;
    tracing::info!("shutting down: draining requests in flight");
    let _ = shutdown_tx.send(true);
    let _ = proxy.await;
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    Ok(())
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
