//! Opening connections: the [`Connect`] trait a [`Client`](super::Client)
//! opens its connections through, and its default, [`Connector`]: TCP
//! (name resolution, each address in turn, TCP_NODELAY), or a Unix socket for
//! an origin made with [`Origin::unix`], then TLS for an origin with
//! [`Origin::tls`] (`https://`). The client bounds every connect, handshake
//! included, by its connect timeout.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};

use crate::error::{Error, Kind};
use crate::tls::ClientTls;
use crate::transport::Transport;

/// A connection being opened.
pub type Connecting<'a> = Pin<Box<dyn Future<Output = io::Result<Box<dyn Transport>>> + Send + 'a>>;

/// Opens connections to origins, on any [`Transport`]. The default is
/// [`Connector`]; bring your own (another transport, a test's in-memory
/// pipes) with [`Builder::connector`](super::Builder::connector).
/// Pooling, keep-alive and retries are the client's and work the same on
/// every transport.
pub trait Connect: Send + Sync + 'static {
    /// Opens a connection to `origin`. An error is a connect failure (the
    /// request was not sent; the client may try another upstream).
    fn connect<'a>(&'a self, origin: &'a Origin) -> Connecting<'a>;
}

/// The default connector: TCP to the origin's host and port (each resolved
/// address in turn, TCP_NODELAY on), or the Unix socket of an origin made
/// with [`Origin::unix`]; then the TLS handshake when the origin has
/// [`Origin::tls`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Connector;

impl Connect for Connector {
    fn connect<'a>(&'a self, origin: &'a Origin) -> Connecting<'a> {
        Box::pin(async move {
            let stream: Box<dyn Transport> = match origin.unix_path() {
                Some(path) => Box::new(UnixStream::connect(path).await?),
                None => Box::new(connect_tcp(origin).await?),
            };
            match &origin.tls {
                Some(tls) => Ok(Box::new(tls.connect(&origin.host, stream).await?) as _),
                None => Ok(stream),
            }
        })
    }
}

/// The connector a client holds.
#[derive(Clone)]
pub(crate) struct Shared(pub(crate) Arc<dyn Connect>);

impl Default for Shared {
    fn default() -> Self {
        Shared(Arc::new(Connector))
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connect")
    }
}

/// Where requests go: scheme, host, port and TLS settings (what makes two
/// connections interchangeable).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The host as written in the URI.
    pub host: String,
    /// The port (80 when an `http` URI has none, 443 for `https`).
    pub port: u16,
    /// TLS to the origin (`https`), with its settings; `None`: cleartext.
    pub tls: Option<ClientTls>,
}

impl Origin {
    /// The origin of a Unix socket at `path` (absolute): [`Connector`] opens
    /// it as a Unix stream. Shown as `unix:PATH`.
    pub fn unix(path: impl AsRef<Path>) -> Origin {
        Origin {
            host: path.as_ref().to_string_lossy().into_owned(),
            port: 0,
            tls: None,
        }
    }

    /// The socket path of an origin made with [`Origin::unix`] (a host that
    /// starts with `/`, which no host name or address does).
    pub fn unix_path(&self) -> Option<&Path> {
        self.host.starts_with('/').then(|| Path::new(&self.host))
    }

    /// The origin of an `http://` or `https://` URI (`https`: verified
    /// against the system's roots, [`ClientTls::system`]).
    pub fn of(uri: &http::Uri) -> Result<Origin, Error> {
        let tls = match uri.scheme_str() {
            Some("http") | None => None,
            Some("https") => Some(ClientTls::system()),
            Some(_) => {
                return Err(Error::new(Kind::Request(
                    "only http:// and https:// URIs are supported",
                )))
            }
        };
        let host = uri
            .host()
            .ok_or(Error::new(Kind::Request("the URI has no host")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let default_port = if tls.is_some() { 443 } else { 80 };
        Ok(Origin {
            host,
            port: uri.port_u16().unwrap_or(default_port),
            tls,
        })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.tls.is_some() {
            f.write_str("https://")?;
        }
        if self.unix_path().is_some() {
            write!(f, "unix:{}", self.host)
        } else if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Connects to `origin` with `connector` within `timeout`.
pub(crate) async fn connect(
    connector: &dyn Connect,
    origin: &Origin,
    timeout: Duration,
) -> Result<Box<dyn Transport>, Error> {
    match tokio::time::timeout(timeout, connector.connect(origin)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(Error::with_source(Kind::Connect, e)),
        Err(_) => Err(Error::new(Kind::ConnectTimeout)),
    }
}

/// Connects over TCP to `origin` within `timeout`, trying each resolved
/// address.
pub(crate) async fn connect_tcp_within(
    origin: &Origin,
    timeout: Duration,
) -> Result<TcpStream, Error> {
    match tokio::time::timeout(timeout, connect_tcp(origin)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(Error::with_source(Kind::Connect, e)),
        Err(_) => Err(Error::new(Kind::ConnectTimeout)),
    }
}

/// Connects over TCP, trying each resolved address; TCP_NODELAY on.
async fn connect_tcp(origin: &Origin) -> io::Result<TcpStream> {
    let addrs = tokio::net::lookup_host((origin.host.as_str(), origin.port)).await?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                Transport::set_nodelay(&stream);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
}
