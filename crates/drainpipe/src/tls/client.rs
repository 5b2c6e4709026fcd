//! TLS to upstreams and in the client library: which roots verify the
//! server, an optional client certificate, the name sent as SNI and checked
//! against the certificate.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::error::ConfigError;
use super::pem;
use super::settings::{provider, ALPN_HTTP11};
use super::stream::Ciphertext;
use crate::transport::Transport;

/// How a client speaks TLS to an origin: a rustls client configuration and,
/// optionally, the name to send as SNI and verify the certificate against
/// (by default the origin's host).
///
/// Two origins share pooled connections only when their `ClientTls` are
/// equal: the same configuration (the same `Arc`) and the same server name.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    /// Verification against the system's trusted roots (read once per
    /// process with `rustls-native-certs`), no client certificate, the
    /// origin's host as the server name. Every call returns the same
    /// configuration, so origins using it share their pools.
    pub fn system() -> ClientTls {
        static SYSTEM: OnceLock<ClientTls> = OnceLock::new();
        SYSTEM
            .get_or_init(|| {
                ClientTls::builder()
                    .build()
                    .expect("a client configuration with the system roots")
            })
            .clone()
    }

    /// A configuration to build: roots, client certificate, verification.
    pub fn builder() -> ClientTlsBuilder {
        ClientTlsBuilder::default()
    }

    /// A configuration built by the caller. Its `alpn_protocols` should be
    /// `http/1.1` (or empty).
    pub fn from_config(config: Arc<rustls::ClientConfig>) -> ClientTls {
        ClientTls {
            config,
            server_name: None,
        }
    }

    /// The name sent as SNI and verified instead of the origin's host (a
    /// DNS name or an IP address); an error names the bad value.
    pub fn with_server_name(mut self, name: &str) -> Result<ClientTls, ConfigError> {
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| ConfigError::new(format!("{name}: not a server name ({e})")))?;
        self.server_name = Some(name);
        Ok(self)
    }

    /// This configuration with `host` as its server name unless one is set
    /// (or `host` is not a valid name): for an origin named by host whose
    /// addresses are connected to one by one.
    pub fn named(&self, host: &str) -> ClientTls {
        let mut tls = self.clone();
        if tls.server_name.is_none() {
            tls.server_name = ServerName::try_from(host.to_string()).ok();
        }
        tls
    }

    /// The server name override, if any.
    pub fn server_name(&self) -> Option<&ServerName<'static>> {
        self.server_name.as_ref()
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<rustls::ClientConfig> {
        &self.config
    }

    /// Runs the handshake over `stream` with `host` as the server name
    /// unless one was set.
    pub async fn connect<T: Transport>(
        &self,
        host: &str,
        stream: T,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<Ciphertext<T>>> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_string())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        };
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, Ciphertext::new(stream))
            .await
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config) && self.server_name == other.server_name
    }
}

impl Eq for ClientTls {}

impl std::hash::Hash for ClientTls {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.config).hash(state);
        self.server_name.hash(state);
    }
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("config", &Arc::as_ptr(&self.config))
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// Builds a [`ClientTls`]: the system's roots unless CA files are given,
/// verification on unless [`insecure`](ClientTlsBuilder::insecure).
#[derive(Default)]
pub struct ClientTlsBuilder {
    roots: Option<RootCertStore>,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    insecure: bool,
    no_resumption: bool,
    error: Option<ConfigError>,
}

impl ClientTlsBuilder {
    /// Trusts the certificates in the PEM file `path` instead of the
    /// system's roots (call again to add more).
    pub fn ca_file(mut self, path: &Path) -> Self {
        match pem::certs(path) {
            Ok(certs) => {
                let roots = self.roots.get_or_insert_with(RootCertStore::empty);
                for cert in certs {
                    if let Err(e) = roots.add(cert) {
                        self.error.get_or_insert(ConfigError::file(path, e));
                    }
                }
            }
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Trusts `roots` instead of the system's.
    pub fn roots(mut self, roots: RootCertStore) -> Self {
        self.roots = Some(roots);
        self
    }

    /// Presents the certificate chain in `cert` with the key in `key` (PEM
    /// files) when the server asks for one.
    pub fn client_auth_files(mut self, cert: &Path, key: &Path) -> Self {
        match pem::certs(cert).and_then(|c| Ok((c, pem::key(key)?))) {
            Ok(pair) => self.client_auth = Some(pair),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Presents `chain` with `key` when the server asks for a certificate.
    pub fn client_auth(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.client_auth = Some((chain, key));
        self
    }

    /// Accepts any server certificate (no verification at all): for
    /// benchmarks and tests only.
    pub fn insecure(mut self, on: bool) -> Self {
        self.insecure = on;
        self
    }

    /// Whether sessions are resumed (on by default): off makes every
    /// connection a full handshake.
    pub fn resumption(mut self, on: bool) -> Self {
        self.no_resumption = !on;
        self
    }

    /// The configuration; an error names the file at fault.
    pub fn build(self) -> Result<ClientTls, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ConfigError::new(e.to_string()))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
        } else {
            let roots = match self.roots {
                Some(roots) => roots,
                None => system_roots(),
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match self.client_auth {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ConfigError::new(format!("client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        if self.no_resumption {
            config.resumption = rustls::client::Resumption::disabled();
        }
        Ok(ClientTls::from_config(Arc::new(config)))
    }
}

/// The system's trusted roots; unreadable ones are skipped with a warning.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "cannot read a system root certificate");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system root certificates loaded");
    roots
}

/// Accepts any certificate (signatures are still checked, so the handshake
/// is real): [`ClientTlsBuilder::insecure`].
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
