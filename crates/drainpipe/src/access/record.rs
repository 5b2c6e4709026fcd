//! What the access log writes of a request: its [`Record`], and what the
//! proxy and the client add to it ([`Upstream`], [`ConnUsed`], asked for by
//! [`Wanted`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Uri, Version};

/// Put in a request's extensions by a server that logs it: a proxy then
/// puts [`Upstream`] in the response's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted;

/// What a proxy tells the access log of the upstream exchange (in the
/// response's extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The server's `host:port`.
    pub addr: Arc<str>,
    /// Time to open the connection (`None`: a pooled one was reused).
    pub connect_time: Option<Duration>,
    /// From sending the request to its response head.
    pub response_time: Duration,
    /// Whether the connection was reused.
    pub reused: bool,
    /// Attempts before the one that was answered.
    pub retries: u32,
}

/// What the client tells of the connection an answered request used (in the
/// response's extensions, when the request carries [`Wanted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnUsed {
    /// Time to open it (`None`: a pooled one was reused).
    pub connect_time: Option<Duration>,
    /// Whether it was reused.
    pub reused: bool,
}

/// One request, as logged.
#[derive(Debug, Clone)]
pub struct Record {
    /// When its head arrived.
    pub time: SystemTime,
    /// The client's IP address (`None` for one without: a Unix socket).
    pub remote: Option<SocketAddr>,
    /// Its method.
    pub method: Method,
    /// Its target as received.
    pub target: Uri,
    /// Its version.
    pub version: Version,
    /// The response's status (0 if none was sent).
    pub status: u16,
    /// Bytes of request body received.
    pub bytes_received: u64,
    /// Bytes of response sent: head, body and framing.
    pub bytes_sent: u64,
    /// From the head's arrival to the response's end queued.
    pub request_time: Duration,
    /// Its `Host`.
    pub host: Option<HeaderValue>,
    /// Its `User-Agent`.
    pub user_agent: Option<HeaderValue>,
    /// Its `Referer`.
    pub referer: Option<HeaderValue>,
    /// Its connection's id.
    pub connection_id: u64,
    /// Its number on the connection, from 1.
    pub connection_requests: u32,
    /// The upstream exchange, when proxied.
    pub upstream: Option<Upstream>,
    /// Why the connection closed, when this was its last request.
    pub close_reason: Option<&'static str>,
}

impl Record {
    /// A record of a request with `head` from `remote` on connection `id`,
    /// its `number`th.
    pub fn new<B>(
        head: &http::Request<B>,
        remote: Option<SocketAddr>,
        id: u64,
        number: u32,
    ) -> Record {
        let h = head.headers();
        Record {
            time: SystemTime::now(),
            remote,
            method: head.method().clone(),
            target: head.uri().clone(),
            version: head.version(),
            status: 0,
            bytes_received: 0,
            bytes_sent: 0,
            request_time: Duration::ZERO,
            host: h.get(http::header::HOST).cloned(),
            user_agent: h.get(http::header::USER_AGENT).cloned(),
            referer: h.get(http::header::REFERER).cloned(),
            connection_id: id,
            connection_requests: number,
            upstream: None,
            close_reason: None,
        }
    }
}
