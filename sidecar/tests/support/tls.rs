//! Certificates made in the test (rcgen) and `Front`, a small TLS terminator (tokio-rustls) in
//! front of a plain-HTTP server: what an https Swift cluster or Keystone looks like.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pub pem: String,
}

/// A leaf certificate and its private key, PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let pem = cert.pem();
        Ca { cert, key, pem }
    }

    pub fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A server certificate for these names (IP addresses become IP SANs).
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    pub fn client(&self, name: &str) -> Leaf {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

pub fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

pub fn private_key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("PEM key")
}

pub fn roots(pem: &str) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs(pem) {
        roots.add(cert).expect("root");
    }
    Arc::new(roots)
}

/// A server configuration; with `client_ca`, a client certificate from it is required.
pub fn server_config(leaf: &Leaf, client_ca: Option<&Ca>) -> Arc<ServerConfig> {
    server_config_with(leaf, client_ca, rustls::DEFAULT_VERSIONS)
}

pub fn server_config_with(
    leaf: &Leaf,
    client_ca: Option<&Ca>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("versions");
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots(&ca.pem), provider())
                .build()
                .expect("client verifier"),
        ),
        None => builder.with_no_client_auth(),
    };
    Arc::new(
        builder
            .with_single_cert(certs(&leaf.cert), private_key(&leaf.key))
            .expect("server config"),
    )
}

// ---------------------------------------------------------------------------------------------
// The TLS front: what an https Swift cluster looks like
// ---------------------------------------------------------------------------------------------

/// Terminates TLS and forwards the bytes to a real Swift proxy. Its configuration (certificate,
/// client-certificate requirement) can be swapped; a swap closes the connections opened before
/// it, so that the next request needs a new handshake.
pub struct Front {
    port: u16,
    config: Arc<RwLock<Arc<ServerConfig>>>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
    /// Handshakes completed, and those where the client presented a certificate.
    handshakes: Arc<AtomicUsize>,
    client_certs: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    refused: Arc<Mutex<Vec<String>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Decrements a count when a connection task ends, however it ends.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Front {
    pub fn start(backend_port: u16, config: Arc<ServerConfig>) -> Front {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind front");
        let port = listener.local_addr().expect("front address").port();
        let config = Arc::new(RwLock::new(config));
        let generation = Arc::new(tokio::sync::watch::channel(0u64).0);
        let handshakes: Arc<AtomicUsize> = Arc::default();
        let client_certs: Arc<AtomicUsize> = Arc::default();
        let open: Arc<AtomicUsize> = Arc::default();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let front = (
            config.clone(),
            generation.clone(),
            handshakes.clone(),
            client_certs.clone(),
            open.clone(),
            refused.clone(),
        );
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let current = config.read().expect("front config").clone();
                let acceptor = tokio_rustls::TlsAcceptor::from(current);
                let mut cut = generation.subscribe();
                let (handshakes, client_certs, refused) =
                    (handshakes.clone(), client_certs.clone(), refused.clone());
                open.fetch_add(1, Ordering::SeqCst);
                let guard = OpenGuard(open.clone());
                tokio::spawn(async move {
                    let _guard = guard;
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(s) => s,
                        Err(e) => {
                            refused.lock().expect("refused").push(e.to_string());
                            return;
                        }
                    };
                    handshakes.fetch_add(1, Ordering::SeqCst);
                    if tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .is_some_and(|c| !c.is_empty())
                    {
                        client_certs.fetch_add(1, Ordering::SeqCst);
                    }
                    let Ok(mut backend) =
                        tokio::net::TcpStream::connect(("127.0.0.1", backend_port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        biased;
                        _ = cut.changed() => {}
                        _ = tokio::io::copy_bidirectional(&mut tls, &mut backend) => {}
                    }
                });
            }
        });
        Front {
            port,
            config: front.0,
            generation: front.1,
            handshakes: front.2,
            client_certs: front.3,
            open: front.4,
            refused: front.5,
            runtime: Some(runtime),
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// New connections get `config`; the ones already open are closed, and this returns once
    /// they are.
    pub fn swap(&self, config: Arc<ServerConfig>) {
        *self.config.write().expect("front config") = config;
        self.generation.send_modify(|g| *g += 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.open.load(Ordering::SeqCst) != 0 {
            assert!(Instant::now() < deadline, "front connections not closed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    pub fn client_certs(&self) -> usize {
        self.client_certs.load(Ordering::SeqCst)
    }

    pub fn refusals(&self) -> Vec<String> {
        self.refused.lock().expect("refused").clone()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
