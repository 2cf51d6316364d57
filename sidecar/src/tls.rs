//! TLS toward target clusters, with rustls and its `ring` provider only (the one kube uses; a
//! second provider would make rustls refuse to pick one). Trust is the cluster's `caPem` bundle
//! when given, else the system roots; `serverName` replaces the endpoint's host for SNI and
//! verification; a client certificate is presented when the target asks for one. TLS 1.2+.
//!
//! Settings come from the routing table: a table whose `tls` changed builds a new [`ClientTls`]
//! (and so new connections); clusters whose spec did not change keep theirs (see `state`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use swiftfed_crds::routing::TlsSpec;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// TLS 1.3 and 1.2: the versions rustls implements, named so that no future default widens it.
pub static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The one crypto provider, passed explicitly to every config rather than installed as the
/// process default, so nothing depends on which crate initialised rustls first.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A TLS setting that cannot be used; `field` is relative to the cluster (`tls.caPem`).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct TlsSettingError {
    pub field: String,
    pub reason: String,
}

fn setting(field: &str, reason: impl Into<String>) -> TlsSettingError {
    TlsSettingError {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// The system's CA certificates (`SSL_CERT_FILE`/`SSL_CERT_DIR` or the distribution's store),
/// read once: they change with the image, not with the routing table.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "while loading the system CA certificates");
            }
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no system CA certificates found (install ca-certificates, set \
                            SSL_CERT_FILE, or give tls.caPem)"
                        .into(),
                );
            }
            tracing::info!(certificates = added, "system CA certificates loaded");
            Ok(Arc::new(roots))
        })
        .clone()
}

fn parse_certs(pem: &str, field: &str) -> Result<Vec<CertificateDer<'static>>, TlsSettingError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| setting(field, format!("not readable as PEM: {e}")))?;
    if certs.is_empty() {
        return Err(setting(field, "contains no PEM certificate"));
    }
    Ok(certs)
}

/// Client settings for one cluster.
pub struct ClientTls {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Builds from the cluster's `tls` (defaults when absent: system roots, endpoint host).
    pub fn new(spec: Option<&TlsSpec>) -> Result<ClientTls, TlsSettingError> {
        let default = TlsSpec::default();
        let spec = spec.unwrap_or(&default);
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| setting("tls", e.to_string()))?;
        let builder = if spec.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
        } else {
            let roots = match &spec.ca_pem {
                Some(pem) => {
                    let mut roots = RootCertStore::empty();
                    for (i, cert) in parse_certs(pem, "tls.caPem")?.into_iter().enumerate() {
                        roots.add(cert).map_err(|e| {
                            setting(
                                "tls.caPem",
                                format!("certificate {} is not usable as a CA: {e}", i + 1),
                            )
                        })?;
                    }
                    Arc::new(roots)
                }
                None => system_roots().map_err(|reason| setting("tls.caPem", reason))?,
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match (&spec.client_cert_pem, &spec.client_key_pem) {
            (Some(cert), Some(key)) => {
                let chain = parse_certs(cert, "tls.clientCertPem")?;
                // The reason never quotes the key.
                let key = PrivateKeyDer::from_pem_slice(key.expose().as_bytes()).map_err(|_| {
                    setting(
                        "tls.clientKeyPem",
                        "no readable PEM private key (PKCS#8, PKCS#1 or SEC1)",
                    )
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    setting(
                        "tls.clientKeyPem",
                        format!("cannot be used with tls.clientCertPem: {e}"),
                    )
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(setting("tls.clientKeyPem", "required with clientCertPem"))
            }
            (None, Some(_)) => {
                return Err(setting("tls.clientCertPem", "required with clientKeyPem"))
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = spec
            .server_name
            .as_deref()
            .map(|name| {
                ServerName::try_from(name.to_string())
                    .map_err(|e| setting("tls.serverName", format!("{name:?}: {e}")))
            })
            .transpose()?;
        Ok(ClientTls {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The name to send and verify: the override, else the URL's host (IPs verify against the
    /// certificate's IP addresses).
    fn server_name_for(&self, host: &str) -> Result<ServerName<'static>, String> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_string()).map_err(|e| {
            format!("{host:?} is not usable as a TLS server name ({e}); set tls.serverName")
        })
    }
}

/// `insecureSkipVerify`: any certificate is accepted, but the handshake signatures are still
/// checked (rustls needs them to be consistent to finish the handshake).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a connection could not be set up: TCP (hyper-util's own error, kept as the source) or
/// the TLS handshake, described for the operator reading a 503.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Tcp(Box<dyn std::error::Error + Send + Sync>),
    #[error("TLS handshake with {server_name} failed: {reason}")]
    Handshake { server_name: String, reason: String },
    #[error("TLS handshake with {server_name} did not finish within {timeout:?}")]
    HandshakeTimeout {
        server_name: String,
        timeout: Duration,
    },
    #[error("{0}")]
    Setup(String),
}

/// Connects `http://` and `https://` URIs: TCP through hyper-util's connector, then the
/// handshake within the connect timeout, so a peer that accepts TCP but never answers TLS fails
/// over like a refused connection instead of hanging until the idle timeout.
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    tls: Option<Arc<ClientTls>>,
    handshake_timeout: Duration,
}

impl Connector {
    pub fn new(connect_timeout: Duration, tls: Option<Arc<ClientTls>>) -> Connector {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        // The scheme is ours to handle.
        http.enforce_http(false);
        Connector {
            http,
            tls,
            handshake_timeout: connect_timeout,
        }
    }
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<Stream, ConnectError>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = ConnectError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.http, cx)
            .map_err(|e| ConnectError::Tcp(Box::new(e)))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().unwrap_or_default().to_string();
        let tls = self.tls.clone();
        let timeout = self.handshake_timeout;
        let tcp = tower_service::Service::<Uri>::call(&mut self.http, uri);
        Box::pin(async move {
            let tcp = tcp.await.map_err(|e| ConnectError::Tcp(Box::new(e)))?;
            if !https {
                return Ok(Stream::Plain(tcp));
            }
            let tls = tls.ok_or_else(|| {
                ConnectError::Setup("https endpoint but no TLS settings were built".into())
            })?;
            let name = tls.server_name_for(&host).map_err(ConnectError::Setup)?;
            let shown = name.to_str().into_owned();
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            match tokio::time::timeout(timeout, connector.connect(name, tcp.into_inner())).await {
                Ok(Ok(stream)) => Ok(Stream::Tls(Box::new(TokioIo::new(stream)))),
                Ok(Err(e)) => Err(ConnectError::Handshake {
                    server_name: shown,
                    reason: describe_handshake_error(&e),
                }),
                Err(_) => Err(ConnectError::HandshakeTimeout {
                    server_name: shown,
                    timeout,
                }),
            }
        })
    }
}

/// rustls' own words, plus what to change for the usual mistakes.
fn describe_handshake_error(e: &std::io::Error) -> String {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return e.to_string();
    };
    use rustls::CertificateError as C;
    let hint = match tls {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            " (the certificate is not signed by a CA in tls.caPem, or by a system root when \
             caPem is absent)"
        }
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            " (the certificate does not name this server; fix the endpoint or set tls.serverName)"
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            " (the target's certificate has expired)"
        }
        _ => "",
    };
    format!("{tls}{hint}")
}

/// What a TLS alert from a target means, found anywhere in an error's chain. With TLS 1.3 a
/// refused client certificate arrives as an alert after the client's side of the handshake,
/// so it shows up on the request rather than on the connect.
pub fn alert_hint(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    use rustls::AlertDescription as A;
    let mut current = Some(e);
    while let Some(err) = current {
        // io::Error hides its inner error from `source()`: look inside explicitly.
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::AlertReceived(alert)) = tls {
            return match alert {
                A::CertificateRequired => Some(
                    "the target requires a client certificate: set tls.clientCertPem and \
                     tls.clientKeyPem",
                ),
                A::BadCertificate
                | A::UnknownCA
                | A::CertificateUnknown
                | A::CertificateExpired
                | A::CertificateRevoked
                | A::UnsupportedCertificate
                | A::AccessDenied => {
                    Some("the target refused the client certificate in tls.clientCertPem")
                }
                _ => None,
            };
        }
        current = err.source();
    }
    None
}

/// A connection to an upstream, plain or TLS.
pub enum Stream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(s) => s.connected(),
            Stream::Tls(s) => s.inner().get_ref().0.connected(),
        }
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tcp_errors_keep_their_cause() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let mut connector = Connector::new(Duration::from_secs(1), None);
        let uri: Uri = format!("http://127.0.0.1:{port}/").parse().expect("uri");
        let err = match tower_service::Service::call(&mut connector, uri).await {
            Ok(_) => panic!("nothing listens there"),
            Err(e) => e,
        };
        let text = crate::upstream::error_chain(&err);
        assert!(text.contains("refused"), "{text}");
    }

    #[test]
    fn settings_errors_name_the_field() {
        let bad_ca = TlsSpec {
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()),
            ..TlsSpec::default()
        };
        let err = ClientTls::new(Some(&bad_ca)).expect_err("not a certificate");
        assert_eq!(err.field, "tls.caPem", "{err}");

        let bad_key = TlsSpec {
            insecure_skip_verify: true,
            client_cert_pem: Some(
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
            ),
            client_key_pem: Some(swiftfed_crds::routing::Secret::new("secret-key-text")),
            ..TlsSpec::default()
        };
        let err = ClientTls::new(Some(&bad_key)).expect_err("no key");
        assert_eq!(err.field, "tls.clientKeyPem", "{err}");
        assert!(!err.reason.contains("secret-key-text"));
    }
}
