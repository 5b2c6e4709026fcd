//! TLS listeners: the server configuration (certificates chosen by SNI, ALPN
//! `http/1.1`, TLS 1.2 and 1.3, resumption) and the listener wrapper that
//! yields [`ServerStream`]s.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;

use super::error::ConfigError;
use super::pem;
use super::settings::{provider, ALPN_HTTP11};
use super::stream::{Ciphertext, ServerStream};
use crate::server::{Accept, Listen};

/// Sessions a listener remembers for resumption by session id (TLS 1.2);
/// TLS 1.3 resumes with stateless tickets.
const SESSION_CACHE: usize = 4096;

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKey {
    /// The chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 RSA or SEC1 EC; RSA, ECDSA or
    /// Ed25519).
    pub key: PathBuf,
}

/// A TLS listener's configuration, shared by its connections.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

impl ServerTls {
    /// Reads every certificate and key: the first pair is the default (for a
    /// client that sends no SNI, or a name no certificate covers), the others
    /// are chosen by the names their certificates are valid for. ALPN
    /// `http/1.1` only (a client offering only `h2` fails the handshake),
    /// TLS 1.2 and 1.3, resumption on (a session cache and stateless
    /// tickets). An error names the file at fault.
    pub fn from_files(pairs: &[CertKey]) -> Result<ServerTls, ConfigError> {
        if pairs.is_empty() {
            return Err(ConfigError::new("no certificate given"));
        }
        let provider = provider();
        let mut resolver = BySni::default();
        for pair in pairs {
            let chain = pem::certs(&pair.cert)?;
            let key = pem::key(&pair.key)?;
            let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
                ConfigError::file(
                    &pair.key,
                    format!("does not fit {} ({e})", pair.cert.display()),
                )
            })?;
            resolver
                .add(certified)
                .map_err(|e| ConfigError::file(&pair.cert, e))?;
        }
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ConfigError::new(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| ConfigError::new(format!("cannot make a ticket key: {e}")))?;
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    /// A listener configuration built by the caller (client authentication,
    /// other protocol versions...). Set its `alpn_protocols` to `http/1.1`.
    pub fn from_config(config: Arc<rustls::ServerConfig>) -> ServerTls {
        ServerTls { config }
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<rustls::ServerConfig> {
        &self.config
    }

    /// `listener` with TLS on every connection it accepts: pass the result to
    /// [`Server::serve`](crate::server::Server::serve).
    pub fn listen<L: Listen>(&self, listener: L) -> TlsListener<L> {
        TlsListener {
            inner: listener,
            tls: self.clone(),
        }
    }
}

/// Certificates by server name: exact names first, then wildcards
/// (`*.example.com` covers one label), then the first certificate.
#[derive(Debug, Default)]
struct BySni {
    certs: Vec<Arc<CertifiedKey>>,
    /// Lower-case DNS name (a wildcard keeps its `*.`) → index in `certs`;
    /// the first certificate naming it wins.
    names: HashMap<String, usize>,
}

impl BySni {
    fn add(&mut self, certified: CertifiedKey) -> Result<(), String> {
        let leaf = certified
            .end_entity_cert()
            .map_err(|e| format!("no leaf certificate ({e})"))?;
        let parsed = webpki::EndEntityCert::try_from(leaf)
            .map_err(|e| format!("cannot parse the leaf certificate ({e:?})"))?;
        let index = self.certs.len();
        for name in parsed.valid_dns_names() {
            self.names.entry(name.to_ascii_lowercase()).or_insert(index);
        }
        self.certs.push(Arc::new(certified));
        Ok(())
    }

    fn by_name(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        let index = self.names.get(&name).or_else(|| {
            let (_, parent) = name.split_once('.')?;
            self.names.get(&format!("*.{parent}"))
        })?;
        self.certs.get(*index)
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.by_name(name))
            .or_else(|| self.certs.first())
            .cloned()
    }
}

/// A listener with TLS on each connection ([`ServerTls::listen`]).
#[derive(Debug)]
pub struct TlsListener<L> {
    inner: L,
    tls: ServerTls,
}

impl<L: Listen> Listen for TlsListener<L> {
    type Conn = ServerStream<L::Conn>;
    type Acceptor = TlsAccept<L::Acceptor>;

    fn into_acceptor(self) -> io::Result<Self::Acceptor> {
        Ok(TlsAccept {
            inner: self.inner.into_acceptor()?,
            acceptor: tokio_rustls::TlsAcceptor::from(self.tls.config),
        })
    }
}

/// The accepting end of a [`TlsListener`]: accepts as the listener inside
/// does and hands each connection over before its handshake, which runs in
/// the connection's task on its first read (so one slow client never holds
/// the accept loop, and the head timeout bounds the handshake).
pub struct TlsAccept<A> {
    inner: A,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl<A> std::fmt::Debug for TlsAccept<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsAccept")
    }
}

impl<A: Accept> Accept for TlsAccept<A> {
    type Conn = ServerStream<A::Conn>;

    async fn accept(&self) -> io::Result<(Self::Conn, Option<SocketAddr>)> {
        let (stream, peer) = self.inner.accept().await?;
        Ok((
            ServerStream::new(self.acceptor.accept(Ciphertext::new(stream))),
            peer,
        ))
    }

    fn waiting(&self) -> impl Future<Output = ()> + Send {
        self.inner.waiting()
    }
}
