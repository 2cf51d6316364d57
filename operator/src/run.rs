//! `swiftfed-operator run`: health and metrics endpoints, leader election, the controller, and a
//! graceful stop on SIGTERM.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kube::runtime::events::Reporter;
use kube::Client;

use crate::controller::{self, Context};
use crate::leader::LeaderElector;
use crate::metrics::Metrics;
use crate::push::Pusher;
use crate::sync::Syncer;

pub struct WebhookOptions {
    pub listen: SocketAddr,
    pub certificate: WebhookCertificate,
    pub injector: crate::inject::InjectorConfig,
}

pub enum WebhookCertificate {
    /// cert-manager: files from a mounted Secret.
    Files {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
    },
    /// Issued by the operator into `secret` (in `namespace`), trusted through `configuration`.
    Managed {
        namespace: String,
        secret: String,
        service: String,
        configuration: String,
    },
}

pub struct RunOptions {
    pub webhook: Option<WebhookOptions>,
    pub metrics_listen: SocketAddr,
    pub lease_namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub default_admin_port: u16,
    pub push_concurrency: usize,
    pub resync: Duration,
}

pub async fn run(options: RunOptions) -> Result<(), String> {
    let client = Client::try_default()
        .await
        .map_err(|e| format!("no Kubernetes client configuration: {e}"))?;
    let metrics = Arc::new(Metrics::default());
    let leading = Arc::new(AtomicBool::new(false));
    // Without a webhook there is nothing to wait for; with one, not ready until its certificate
    // is loaded (the Service then sends the API server only to replicas that can answer).
    let (loaded_tx, loaded_rx) = tokio::sync::watch::channel(options.webhook.is_none());
    serve_health(
        options.metrics_listen,
        metrics.clone(),
        leading.clone(),
        loaded_rx,
    )
    .await?;

    // Every replica serves the webhook (the Service spreads over them); only the leader issues.
    let mut issuer = None;
    if let Some(webhook) = &options.webhook {
        let source = Arc::new(match &webhook.certificate {
            WebhookCertificate::Files { cert, key } => crate::webhook::CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            WebhookCertificate::Managed {
                namespace,
                secret,
                service,
                configuration,
            } => crate::webhook::CertSource::Managed(Arc::new(crate::webhook::CertManager {
                client: client.clone(),
                namespace: namespace.clone(),
                secret: secret.clone(),
                service: service.clone(),
                webhook_configuration: configuration.clone(),
                validity: Duration::from_secs(365 * 24 * 3600),
                rotate_before: Duration::from_secs(30 * 24 * 3600),
            })),
        });
        let tls = Arc::new(std::sync::RwLock::new(
            crate::webhook::placeholder_config().map_err(|e| e.to_string())?,
        ));
        tokio::spawn(crate::webhook::keep_loaded(
            source.clone(),
            tls.clone(),
            Duration::from_secs(30),
            loaded_tx,
        ));
        crate::webhook::serve(webhook.listen, tls, Arc::new(webhook.injector.clone()))
            .await
            .map_err(|e| e.to_string())?;
        if let crate::webhook::CertSource::Managed(manager) = source.as_ref() {
            issuer = Some(manager.clone());
        }
    }

    let elector = LeaderElector::new(
        client.clone(),
        &options.lease_namespace,
        &options.lease_name,
        &options.identity,
        options.lease_duration,
    );
    tokio::select! {
        _ = elector.acquire() => {}
        _ = terminated() => return Ok(()),
    }
    leading.store(true, Ordering::Release);
    if let Some(manager) = issuer {
        tokio::spawn(crate::webhook::keep_issued(
            manager,
            Duration::from_secs(3600),
        ));
    }

    let mut pusher = Pusher::default();
    pusher.concurrency = options.push_concurrency;
    let ctx = Arc::new(Context {
        client: client.clone(),
        syncer: Syncer::new(client, pusher, options.default_admin_port),
        reporter: Reporter {
            controller: "swiftfed-operator".into(),
            instance: Some(options.identity.clone()),
        },
        metrics,
        resync: options.resync,
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller::run(ctx, async move {
        let _ = stop_rx.await;
    }));
    let lost = tokio::select! {
        _ = elector.hold() => true,
        _ = terminated() => false,
    };
    let _ = stop_tx.send(());
    let _ = controller.await;
    if lost {
        // Another replica leads now; restart as a standby.
        return Err("lost leadership".into());
    }
    elector.release().await;
    Ok(())
}

async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
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

/// `/healthz` (process alive), `/readyz` and `/metrics`. Ready once `webhook_loaded` says the
/// webhook serves a real certificate: every replica serves the webhook, so a replica that would
/// fail the API server's TLS handshake stays out of the Service. Leadership plays no part
/// (standby replicas are ready too, so a rollout proceeds).
pub async fn serve_health(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    leading: Arc<AtomicBool>,
    webhook_loaded: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            let leading = leading.clone();
            let webhook_loaded = webhook_loaded.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let metrics = metrics.clone();
                let leading = leading.clone();
                let loaded = *webhook_loaded.borrow();
                async move {
                    let (status, body) = match req.uri().path() {
                        "/readyz" if !loaded => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: webhook certificate not loaded yet\n".to_string(),
                        ),
                        "/healthz" | "/readyz" => (
                            StatusCode::OK,
                            format!(
                                "ok ({})\n",
                                if leading.load(Ordering::Acquire) {
                                    "leader"
                                } else {
                                    "standby"
                                }
                            ),
                        ),
                        "/metrics" => (StatusCode::OK, metrics.encode()),
                        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
                    };
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}
