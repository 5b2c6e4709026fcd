//! The drivers' one error type: opaque, with predicates for what callers decide
//! on — was it a timeout, was the body truncated, may the server have acted on
//! the request, is a retry safe.

use std::fmt;
use std::io;

/// A boxed error from user code (a handler's body, a service).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error from a drainpipe driver: the server's request bodies, the client's
/// requests and response bodies.
pub struct Error {
    inner: Box<Inner>,
}

/// An error reading a received body (an alias: the same opaque type).
pub type BodyError = Error;

struct Inner {
    kind: Kind,
    source: Option<BoxError>,
}

/// What went wrong; private so new cases never break callers, who use the
/// predicates instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Connecting failed (nothing was sent).
    Connect,
    /// Connecting took longer than the connect timeout (nothing was sent).
    ConnectTimeout,
    /// A timeout elapsed (which one is in the message).
    Timeout(&'static str),
    /// The connection closed before any byte of the response arrived.
    ClosedBeforeResponse {
        /// The connection had served earlier requests (pooled).
        reused: bool,
        /// The whole request had been written.
        request_written: bool,
    },
    /// The connection closed inside a body.
    Truncated {
        expected: Option<u64>,
        received: u64,
    },
    /// The peer broke HTTP/1.x (a malformed response, a bad chunk).
    Protocol(proto::ErrorKind),
    /// The request could not be sent as asked (caller misuse).
    Request(&'static str),
    /// The connection task went away while a body was being read.
    ConnectionLost,
    /// A socket error.
    Io,
    /// No connection became free in time (pool wait).
    PoolTimeout,
    /// The body to send failed (the user's body stream errored).
    UserBody,
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Error {
            inner: Box::new(Inner { kind, source: None }),
        }
    }

    pub(crate) fn with_source(kind: Kind, source: impl Into<BoxError>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                source: Some(source.into()),
            }),
        }
    }

    #[allow(dead_code)]
    pub(crate) fn kind(&self) -> &Kind {
        &self.inner.kind
    }

    pub(crate) fn connection_lost() -> Self {
        Error::new(Kind::ConnectionLost)
    }

    pub(crate) fn io(e: io::Error) -> Self {
        Error::with_source(Kind::Io, e)
    }

    /// A protocol error from the core, mapped to the driver's kinds (a
    /// truncation keeps its counts).
    pub(crate) fn proto(e: proto::Error) -> Self {
        match e.kind() {
            proto::ErrorKind::Truncated { expected, received } => Error::new(Kind::Truncated {
                expected: *expected,
                received: *received,
            }),
            kind => Error::with_source(Kind::Protocol(kind.clone()), e),
        }
    }

    /// Whether a timeout elapsed.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::Timeout(_) | Kind::PoolTimeout | Kind::ConnectTimeout
        )
    }

    /// Whether connecting failed (the request was never sent).
    pub fn is_connect(&self) -> bool {
        matches!(self.inner.kind, Kind::Connect | Kind::ConnectTimeout)
    }

    /// Whether the connection closed before any byte of the response arrived.
    pub fn is_closed_before_response(&self) -> bool {
        matches!(self.inner.kind, Kind::ClosedBeforeResponse { .. })
    }

    /// Whether that happened on a reused (pooled) connection — the classic
    /// keep-alive race, where the server closed an idle connection just as the
    /// request went out.
    pub fn is_reused_connection(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::ClosedBeforeResponse { reused: true, .. }
        )
    }

    /// Whether a body ended early; see [`Error::truncation`].
    pub fn is_truncated(&self) -> bool {
        matches!(self.inner.kind, Kind::Truncated { .. })
    }

    /// For a truncated body: the bytes the framing announced (when it did) and
    /// the bytes received.
    pub fn truncation(&self) -> Option<(Option<u64>, u64)> {
        match self.inner.kind {
            Kind::Truncated { expected, received } => Some((expected, received)),
            _ => None,
        }
    }

    /// Whether the peer broke the protocol (a malformed response or body).
    pub fn is_protocol(&self) -> bool {
        matches!(self.inner.kind, Kind::Protocol(_))
    }

    /// Whether the server may have acted on the request. `false` only when it
    /// provably did not: connecting failed, or a pool wait timed out, so nothing
    /// was sent. A close before any response byte still counts as "may have":
    /// the server could have processed the request and crashed before answering.
    pub fn may_have_been_processed(&self) -> bool {
        !matches!(
            self.inner.kind,
            Kind::Connect | Kind::ConnectTimeout | Kind::PoolTimeout | Kind::Request(_)
        )
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("drainpipe::Error");
        d.field("kind", &self.inner.kind);
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.kind {
            Kind::Connect => f.write_str("connect failed")?,
            Kind::ConnectTimeout => f.write_str("connect timed out")?,
            Kind::Timeout(which) => write!(f, "{which} timed out")?,
            Kind::ClosedBeforeResponse {
                reused,
                request_written,
            } => write!(
                f,
                "connection closed before the response (reused connection: {reused}, request fully written: {request_written})"
            )?,
            Kind::Truncated {
                expected: Some(e),
                received,
            } => write!(f, "body truncated: {received} of {e} bytes")?,
            Kind::Truncated {
                expected: None,
                received,
            } => write!(f, "body truncated after {received} bytes")?,
            Kind::Protocol(k) => write!(f, "protocol error: {k}")?,
            Kind::Request(why) => write!(f, "invalid request: {why}")?,
            Kind::ConnectionLost => f.write_str("connection lost while reading the body")?,
            Kind::Io => f.write_str("i/o error")?,
            Kind::PoolTimeout => f.write_str("timed out waiting for a pooled connection")?,
            Kind::UserBody => f.write_str("the body being sent failed")?,
        }
        if let Some(s) = &self.inner.source {
            if !matches!(self.inner.kind, Kind::Protocol(_)) {
                write!(f, ": {s}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|s| &**s as &(dyn std::error::Error + 'static))
    }
}
