//! Typed protocol errors: which side was at fault, what was wrong, and the status
//! code to answer with.
//!
//! A *remote* error means the peer sent something HTTP/1.x does not allow; a server
//! answers it with [`Error::status`] and closes. A *local* error means the caller
//! asked the connection to do something illegal (a response before a request, a
//! body on a HEAD response, fewer body bytes than the declared length); nothing was
//! written for that call.

use std::fmt;

use http::StatusCode;

/// Which side of the connection broke the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The caller of this [`Connection`](crate::Connection) (our own side).
    Local,
    /// The peer whose bytes were fed in.
    Remote,
}

/// What was wrong. Each kind maps to one status code ([`ErrorKind::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The head (start line and fields) exceeds the configured size (431).
    HeadTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The head has more field lines than configured (431).
    TooManyFields {
        /// The configured limit.
        limit: usize,
    },
    /// The request target is longer than configured (414).
    UriTooLong {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// A line ends in a bare LF instead of CRLF (RFC 9112 §2.2) (400).
    BareLf,
    /// A CR not followed by LF in a head (RFC 9112 §2.2) (400).
    BareCr,
    /// The start line is malformed (400).
    BadStartLine,
    /// The method is not a valid token (400).
    BadMethod,
    /// The request target is not a valid URI, or not of a form the method
    /// allows: authority-form is for CONNECT only, asterisk-form for OPTIONS
    /// only (RFC 9112 §3.2) (400).
    BadTarget,
    /// The request target carries userinfo (`user:password@`), which
    /// RFC 9110 §4.2.4 deprecates in `http` URIs and says to treat as an
    /// error: it would travel in clear text and must never reach `Host` (400).
    UserinfoInTarget,
    /// An HTTP version other than HTTP/1.x (505); a minor version above 1 is
    /// read as HTTP/1.1 instead (RFC 9110 §2.5).
    UnsupportedVersion,
    /// The status code is not three digits (response; 502 for a proxy).
    BadStatus,
    /// A field name is not a token, or whitespace precedes the colon
    /// (RFC 9112 §5.1) (400).
    BadFieldName,
    /// A field value holds NUL, CR, LF or another control byte (RFC 9110 §5.5) (400).
    BadFieldValue,
    /// A field line is folded across lines (obs-fold, RFC 9112 §5.2) (400).
    ObsFold,
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2) (400).
    MissingHost,
    /// A request with more than one `Host` field (RFC 9112 §3.2) (400).
    DuplicateHost,
    /// A `Host` value that is not `uri-host [ ":" port ]` (RFC 9112 §3.2) (400).
    BadHost,
    /// `Content-Length` is not a decimal number, overflows, or its values differ
    /// (RFC 9112 §6.3 step 5) (400).
    BadContentLength,
    /// `Max-Forwards` is not a decimal number, or its lines differ
    /// (RFC 9110 §7.6.2) (400).
    BadMaxForwards,
    /// More informational (1xx) responses ahead of a final one than the limit
    /// (a broken server) (502).
    TooManyInformational {
        /// The limit.
        limit: usize,
    },
    /// Both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.3 step 3; rejected
    /// as request smuggling) (400).
    ContentLengthAndTransferEncoding,
    /// `Transfer-Encoding` in a request whose final coding is not `chunked`, or
    /// `chunked` applied twice, or any `Transfer-Encoding` in an HTTP/1.0 message
    /// (RFC 9112 §6.1, §6.3 step 4) (400).
    BadTransferEncoding,
    /// A transfer coding this implementation does not know (RFC 9112 §6.1) (501).
    UnknownTransferCoding,
    /// A chunk-size line is malformed: no hex digits, junk after them, or a bad
    /// extension (RFC 9112 §7.1) (400).
    BadChunkSize,
    /// A chunk size does not fit in 64 bits (400).
    ChunkSizeOverflow,
    /// A chunk-size line (with its extensions) exceeds the configured limit (400).
    ChunkLineTooLong {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// Chunk data not followed by CRLF (400).
    BadChunkData,
    /// The trailer section exceeds the configured size or field count (431).
    TrailersTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The body exceeds the configured limit (413).
    BodyTooLarge {
        /// The configured limit in bytes.
        limit: u64,
    },
    /// The connection ended inside a message (a head, or a body with a length or
    /// chunked framing).
    Truncated {
        /// Body bytes the framing announced, when it did (`Content-Length`).
        expected: Option<u64>,
        /// Body bytes received before the end.
        received: u64,
    },
    /// Bytes arrived that no message can hold: a response with no request
    /// outstanding, or data after the connection was declared closing.
    UnexpectedData,
    /// The call is not allowed in the connection's current state; the text says
    /// which call and why (local misuse).
    IllegalCall(&'static str),
    /// Body data on a message that cannot have a body (HEAD response, 1xx, 204,
    /// 304) (local misuse).
    BodyNotAllowed,
    /// The body sent differs from the declared `Content-Length` (local misuse; the
    /// message cannot be completed and the connection must be closed).
    BodyLengthMismatch {
        /// The declared length.
        declared: u64,
        /// What was sent (or would have been, counting this call).
        sent: u64,
    },
    /// A request that cannot be serialised: no `Host` and no authority in the URI,
    /// or an unknown-length body on HTTP/1.0 (local misuse).
    Unsendable(&'static str),
}

impl ErrorKind {
    /// The status code a server answers with when the peer caused this error.
    ///
    /// Response-side errors (a malformed response) map to 502, as a gateway
    /// answers them.
    pub fn status(&self) -> StatusCode {
        use ErrorKind::*;
        match self {
            HeadTooLarge { .. } | TooManyFields { .. } | TrailersTooLarge { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            UnsupportedVersion => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            UnknownTransferCoding => StatusCode::NOT_IMPLEMENTED,
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BadStatus | TooManyInformational { .. } => StatusCode::BAD_GATEWAY,
            IllegalCall(_) | BodyNotAllowed | BodyLengthMismatch { .. } | Unsendable(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind::*;
        match self {
            HeadTooLarge { limit } => write!(f, "message head larger than {limit} bytes"),
            TooManyFields { limit } => write!(f, "more than {limit} header fields"),
            UriTooLong { limit } => write!(f, "request target longer than {limit} bytes"),
            BareLf => f.write_str("line terminated by a bare LF instead of CRLF"),
            BareCr => f.write_str("bare CR not followed by LF"),
            BadStartLine => f.write_str("malformed start line"),
            BadMethod => f.write_str("invalid method"),
            BadTarget => f.write_str("invalid request target"),
            UserinfoInTarget => f.write_str("userinfo in the request target"),
            UnsupportedVersion => f.write_str("unsupported HTTP version"),
            BadStatus => f.write_str("invalid status code"),
            BadFieldName => f.write_str("invalid field name (or whitespace before the colon)"),
            BadFieldValue => f.write_str("invalid byte in a field value"),
            ObsFold => f.write_str("obsolete line folding in a field"),
            MissingHost => f.write_str("HTTP/1.1 request without Host"),
            DuplicateHost => f.write_str("more than one Host field"),
            BadHost => f.write_str("invalid Host value"),
            BadContentLength => f.write_str("invalid or conflicting Content-Length"),
            BadMaxForwards => f.write_str("invalid or conflicting Max-Forwards"),
            TooManyInformational { limit } => {
                write!(f, "more than {limit} informational responses")
            }
            ContentLengthAndTransferEncoding => {
                f.write_str("both Content-Length and Transfer-Encoding")
            }
            BadTransferEncoding => f.write_str("Transfer-Encoding without chunked as final coding"),
            UnknownTransferCoding => f.write_str("unknown transfer coding"),
            BadChunkSize => f.write_str("malformed chunk-size line"),
            ChunkSizeOverflow => f.write_str("chunk size overflows 64 bits"),
            ChunkLineTooLong { limit } => write!(f, "chunk-size line longer than {limit} bytes"),
            BadChunkData => f.write_str("chunk data not followed by CRLF"),
            TrailersTooLarge { limit } => write!(f, "trailer section larger than {limit} bytes"),
            BodyTooLarge { limit } => write!(f, "body larger than {limit} bytes"),
            Truncated {
                expected: Some(e),
                received,
            } => write!(f, "connection closed after {received} of {e} body bytes"),
            Truncated {
                expected: None,
                received,
            } => write!(
                f,
                "connection closed inside a message ({received} body bytes read)"
            ),
            UnexpectedData => f.write_str("unexpected bytes where no message may start"),
            IllegalCall(why) => write!(f, "illegal call: {why}"),
            BodyNotAllowed => f.write_str("body data on a message that cannot have a body"),
            BodyLengthMismatch { declared, sent } => {
                write!(f, "body of {sent} bytes where Content-Length is {declared}")
            }
            Unsendable(why) => write!(f, "cannot send request: {why}"),
        }
    }
}

/// A protocol error: the side at fault and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    side: Side,
    kind: ErrorKind,
}

impl Error {
    /// An error caused by the peer's bytes.
    pub fn remote(kind: ErrorKind) -> Self {
        Error {
            side: Side::Remote,
            kind,
        }
    }

    /// An error caused by the caller.
    pub fn local(kind: ErrorKind) -> Self {
        Error {
            side: Side::Local,
            kind,
        }
    }

    /// The side at fault.
    pub fn side(&self) -> Side {
        self.side
    }

    /// What was wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The status code to answer with (see [`ErrorKind::status`]).
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.side {
            Side::Local => write!(f, "local protocol error: {}", self.kind),
            Side::Remote => write!(f, "peer protocol error: {}", self.kind),
        }
    }
}

impl std::error::Error for Error {}
