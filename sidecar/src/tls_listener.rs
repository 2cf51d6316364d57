//! TLS on the sidecar's own listeners (Swift traffic, admin API): certificate and key from
//! files, re-read when they change, so a rotated certificate (cert-manager, a renewed Secret)
//! is served to new connections without a restart. Connections already open keep theirs.
//!
//! The admin listener may also take a client-CA file: a client certificate signed by that CA
//! then stands in for the bearer token. A certificate from any other CA fails the handshake;
//! no certificate at all is allowed (the token is then required).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::tls::{provider, VERSIONS};

/// The files behind one listener's TLS, named by the flags that gave them.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: (&'static str, PathBuf),
    pub key: (&'static str, PathBuf),
    pub client_ca: Option<(&'static str, PathBuf)>,
}

impl TlsFiles {
    fn paths(&self) -> Vec<&(&'static str, PathBuf)> {
        let mut all = vec![&self.cert, &self.key];
        all.extend(&self.client_ca);
        all
    }
}

pub struct ListenerTls {
    pub listener: &'static str,
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// File contents last looked at (loaded or refused), so a refused pair is reported once.
    seen: Mutex<Vec<Vec<u8>>>,
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

fn build(files: &TlsFiles, contents: &[Vec<u8>]) -> Result<ServerConfig, String> {
    let (cert_flag, cert_path) = &files.cert;
    let (key_flag, key_path) = &files.key;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&contents[0])
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "{cert_flag} {}: not readable as PEM: {e}",
                cert_path.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "{cert_flag} {}: contains no PEM certificate",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&contents[1]).map_err(|e| {
        format!(
            "{key_flag} {}: no readable PEM private key: {e}",
            key_path.display()
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?;
    let builder = match &files.client_ca {
        Some((ca_flag, ca_path)) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&contents[2]) {
                let cert = cert.map_err(|e| {
                    format!("{ca_flag} {}: not readable as PEM: {e}", ca_path.display())
                })?;
                roots.add(cert).map_err(|e| {
                    format!("{ca_flag} {}: not usable as a CA: {e}", ca_path.display())
                })?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "{ca_flag} {}: contains no PEM certificate",
                    ca_path.display()
                ));
            }
            // Without a certificate the bearer token is still accepted; with one, it must
            // chain to this CA or the handshake fails.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("{ca_flag} {}: {e}", ca_path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "{key_flag} {} does not go with {cert_flag} {}: {e}",
            key_path.display(),
            cert_path.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl ListenerTls {
    /// Loads the files; an error here stops the sidecar at start, naming flag and file.
    pub fn load(listener: &'static str, files: TlsFiles) -> Result<Arc<ListenerTls>, String> {
        let contents = files
            .paths()
            .iter()
            .map(|(flag, path)| read(flag, path))
            .collect::<Result<Vec<_>, _>>()?;
        let config = build(&files, &contents)?;
        Ok(Arc::new(ListenerTls {
            listener,
            files,
            current: RwLock::new(Arc::new(config)),
            seen: Mutex::new(contents),
        }))
    }

    /// For one new connection: the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        TlsAcceptor::from(config)
    }

    /// Re-reads the files; swaps the configuration when they changed and still make a valid
    /// one. A half-replaced pair (new certificate, old key) is refused and retried on the next
    /// look, when the key has followed.
    pub fn reload(&self) {
        let contents = match self
            .files
            .paths()
            .iter()
            .map(|(flag, path)| read(flag, path))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(listener = self.listener, error = %e, "cannot read TLS files; keeping the certificate in use");
                return;
            }
        };
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if *seen == contents {
            return;
        }
        match build(&self.files, &contents) {
            Ok(config) => {
                match self.current.write() {
                    Ok(mut c) => *c = Arc::new(config),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(config),
                }
                tracing::info!(
                    listener = self.listener,
                    "TLS certificate reloaded; new connections use it"
                );
            }
            Err(e) => {
                tracing::error!(listener = self.listener, error = %e, "TLS files changed but are not usable; keeping the certificate in use");
            }
        }
        *seen = contents;
    }

    /// Looks at the files every `poll` and on SIGHUP. Polled rather than watched: Kubernetes
    /// updates mounted Secrets by swapping a symlink, which file watches miss.
    pub fn spawn_reloader(self: Arc<Self>, poll: Duration) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP");
                None
            }
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                match &mut hup {
                    Some(hup) => {
                        tokio::select! {
                            _ = tick.tick() => {}
                            _ = hup.recv() => {}
                        }
                    }
                    None => {
                        tick.tick().await;
                    }
                }
                // File reads are small but blocking: keep them off the reactor threads.
                let this = self.clone();
                let _ = tokio::task::spawn_blocking(move || this.reload()).await;
            }
        });
    }
}
