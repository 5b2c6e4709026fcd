//! Opening connections: name resolution, TCP with a timeout, TCP_NODELAY.

use std::time::Duration;

use tokio::net::TcpStream;

use crate::error::{Error, Kind};

/// Where requests go: scheme, host and port (what makes two connections
/// interchangeable).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The host as written in the URI.
    pub host: String,
    /// The port (80 when the URI has none).
    pub port: u16,
}

impl Origin {
    /// The origin of an `http://` URI.
    pub fn of(uri: &http::Uri) -> Result<Origin, Error> {
        match uri.scheme_str() {
            Some("http") | None => {}
            Some(_) => return Err(Error::new(Kind::Request("only http:// URIs are supported"))),
        }
        let host = uri
            .host()
            .ok_or(Error::new(Kind::Request("the URI has no host")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Origin {
            host,
            port: uri.port_u16().unwrap_or(80),
        })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Connects to `origin` within `timeout`, trying each resolved address.
pub(crate) async fn connect(origin: &Origin, timeout: Duration) -> Result<TcpStream, Error> {
    let attempt = async {
        let addrs = tokio::net::lookup_host((origin.host.as_str(), origin.port))
            .await
            .map_err(|e| Error::with_source(Kind::Connect, e))?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    crate::transport::Transport::set_nodelay(&stream);
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => Error::with_source(Kind::Connect, e),
            None => Error::new(Kind::Connect),
        })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Error::new(Kind::ConnectTimeout)),
    }
}
