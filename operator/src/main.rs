use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// swiftfed operator: reconciles ClusterFederation resources into routing tables and pushes them
/// to the swiftfed sidecars beside Swift proxies.
#[derive(Parser, Debug)]
#[command(name = "swiftfed-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller (in a cluster, or against the current kubeconfig context).
    Run {
        /// Address for /healthz, /readyz and /metrics.
        #[arg(long, env = "SWIFTFED_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
        metrics_listen: std::net::SocketAddr,
        /// Namespace of the leader-election Lease (the operator's own).
        #[arg(long, env = "POD_NAMESPACE", default_value = "swiftfed-system")]
        lease_namespace: String,
        /// Name of the leader-election Lease.
        #[arg(long, env = "SWIFTFED_LEASE_NAME", default_value = "swiftfed-operator")]
        lease_name: String,
        /// This replica's identity in the Lease (the pod name).
        #[arg(long, env = "POD_NAME", default_value = "swiftfed-operator")]
        identity: String,
        /// How long a leader may go without renewing before another replica takes over.
        #[arg(long, env = "SWIFTFED_LEASE_DURATION", default_value = "15s", value_parser = duration)]
        lease_duration: std::time::Duration,
        /// Sidecar admin port when a pod has no `swiftfed.io/admin-port` annotation.
        #[arg(long, env = "SWIFTFED_SIDECAR_ADMIN_PORT", default_value_t = 9901)]
        sidecar_admin_port: u16,
        /// Sidecars pushed to at the same time.
        #[arg(long, env = "SWIFTFED_PUSH_CONCURRENCY", default_value_t = 64)]
        push_concurrency: usize,
        /// How often an in-sync federation is checked again (cluster probes, drift).
        #[arg(long, env = "SWIFTFED_RESYNC", default_value = "5m", value_parser = duration)]
        resync: std::time::Duration,
        #[command(flatten)]
        webhook: Box<WebhookArgs>,
    },
    /// Print the ClusterFederation CustomResourceDefinition (YAML).
    Crdgen,
    /// Per federation and pod: the revision each sidecar runs, ACK/NACK and the last error.
    Status {
        /// Only this namespace (all namespaces when absent).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Render the routing table for federations in a file, offline (for the sidecar's --config).
    Render {
        /// YAML file with ClusterFederation documents (`---` separated); Secret documents in it
        /// are used for credentials too.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Directory with one sub-directory per Secret, one file per key (like a mounted Secret).
        #[arg(long)]
        secret_dir: Option<PathBuf>,
        /// Namespace the federations are rendered for, when they do not name one.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Revision of the rendered table.
        #[arg(long, default_value_t = 1)]
        revision: u64,
    },
}

/// The sidecar-injection webhook (HTTPS) and what it injects.
#[derive(clap::Args, Debug)]
struct WebhookArgs {
    /// Address of the injection webhook (HTTPS, path /mutate). Disabled when absent.
    #[arg(long, env = "SWIFTFED_WEBHOOK_LISTEN")]
    webhook_listen: Option<std::net::SocketAddr>,
    /// Serve the certificate in these files (cert-manager) instead of issuing one.
    #[arg(
        long,
        env = "SWIFTFED_WEBHOOK_CERT_FILE",
        requires = "webhook_key_file"
    )]
    webhook_cert_file: Option<PathBuf>,
    #[arg(
        long,
        env = "SWIFTFED_WEBHOOK_KEY_FILE",
        requires = "webhook_cert_file"
    )]
    webhook_key_file: Option<PathBuf>,
    /// Secret the issued certificate is kept in (in the lease namespace).
    #[arg(
        long,
        env = "SWIFTFED_WEBHOOK_SECRET",
        default_value = "swiftfed-webhook-tls"
    )]
    webhook_secret: String,
    /// The webhook's Service name (the certificate carries its DNS names).
    #[arg(
        long,
        env = "SWIFTFED_WEBHOOK_SERVICE",
        default_value = "swiftfed-webhook"
    )]
    webhook_service: String,
    /// The MutatingWebhookConfiguration whose caBundle the operator keeps current.
    #[arg(
        long,
        env = "SWIFTFED_WEBHOOK_CONFIGURATION",
        default_value = "swiftfed-sidecar-injector"
    )]
    webhook_configuration: String,
    /// Sidecar image injected into proxy pods.
    #[arg(
        long,
        env = "SWIFTFED_SIDECAR_IMAGE",
        default_value = "swiftfed-sidecar:latest"
    )]
    sidecar_image: String,
    #[arg(
        long,
        env = "SWIFTFED_SIDECAR_IMAGE_PULL_POLICY",
        default_value = "IfNotPresent"
    )]
    sidecar_image_pull_policy: String,
    /// Port the injected sidecar takes Swift traffic on (point the Service's targetPort here).
    #[arg(long, env = "SWIFTFED_SIDECAR_LISTEN_PORT", default_value_t = 8090)]
    sidecar_listen_port: u16,
    /// The Swift proxy's port when a pod has no swiftfed.io/proxy-port annotation.
    #[arg(long, env = "SWIFTFED_DEFAULT_PROXY_PORT", default_value_t = 8080)]
    default_proxy_port: u16,
    /// Inject a native sidecar (init container with restartPolicy Always; Kubernetes >= 1.29).
    #[arg(long, env = "SWIFTFED_NATIVE_SIDECAR", default_value_t = true, action = clap::ArgAction::Set)]
    native_sidecar: bool,
    /// Sidecar resources as JSON (a ResourceRequirements object).
    #[arg(
        long,
        env = "SWIFTFED_SIDECAR_RESOURCES",
        default_value = r#"{"requests":{"cpu":"50m","memory":"32Mi"},"limits":{"memory":"128Mi"}}"#
    )]
    sidecar_resources: String,
}

fn duration(text: &str) -> Result<std::time::Duration, String> {
    swiftfed_crds::routing::parse_duration(text)
}

fn webhook_options(
    args: WebhookArgs,
    namespace: &str,
    admin_port: u16,
) -> Result<Option<swiftfed_operator::run::WebhookOptions>, String> {
    use swiftfed_operator::run::WebhookCertificate;
    let Some(listen) = args.webhook_listen else {
        return Ok(None);
    };
    let resources = serde_json::from_str(&args.sidecar_resources)
        .map_err(|e| format!("--sidecar-resources is not a ResourceRequirements object: {e}"))?;
    let injector = swiftfed_operator::inject::InjectorConfig {
        image: args.sidecar_image,
        image_pull_policy: args.sidecar_image_pull_policy,
        listen_port: args.sidecar_listen_port,
        admin_port,
        default_proxy_port: args.default_proxy_port,
        native_sidecar: args.native_sidecar,
        resources,
    };
    let certificate = match (args.webhook_cert_file, args.webhook_key_file) {
        (Some(cert), Some(key)) => WebhookCertificate::Files { cert, key },
        _ => WebhookCertificate::Managed {
            namespace: namespace.to_string(),
            secret: args.webhook_secret,
            service: args.webhook_service,
            configuration: args.webhook_configuration,
        },
    };
    Ok(Some(swiftfed_operator::run::WebhookOptions {
        listen,
        certificate,
        injector,
    }))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .json()
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            metrics_listen,
            lease_namespace,
            lease_name,
            identity,
            lease_duration,
            sidecar_admin_port,
            push_concurrency,
            resync,
            webhook,
        } => {
            init_logging();
            let webhook = match webhook_options(*webhook, &lease_namespace, sidecar_admin_port) {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("swiftfed-operator: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let options = swiftfed_operator::run::RunOptions {
                webhook,
                metrics_listen,
                lease_namespace,
                lease_name,
                identity,
                lease_duration,
                default_admin_port: sidecar_admin_port,
                push_concurrency,
                resync,
            };
            match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime
                    .block_on(swiftfed_operator::run::run(options))
                    .map(|()| String::new()),
                Err(e) => Err(format!("cannot start the runtime: {e}")),
            }
        }
        Command::Crdgen => swiftfed_operator::cli::crdgen(),
        Command::Status { namespace } => {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => {
                    runtime.block_on(swiftfed_operator::cli::status(namespace.as_deref()))
                }
                Err(e) => Err(format!("cannot start the runtime: {e}")),
            }
        }
        Command::Render {
            file,
            secret_dir,
            namespace,
            revision,
        } => swiftfed_operator::cli::render(&file, secret_dir.as_deref(), &namespace, revision),
    };
    match result {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("swiftfed-operator: {e}");
            ExitCode::FAILURE
        }
    }
}
