//! Where a received message's body ends: RFC 9112 §6.3, step by step.

use http::{Method, StatusCode, Version};

use crate::error::{Error, ErrorKind};
use crate::fields::{HeadFacts, TransferCoding};

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (HEAD response, 1xx, 204, 304, a request without length
    /// fields, a switch of protocols).
    None,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (a response without length fields); such a
    /// message makes the connection non-persistent.
    UntilClose,
}

impl Framing {
    /// Whether the message has a body of one byte or more, or may have.
    pub fn has_body(&self) -> bool {
        !matches!(self, Framing::None | Framing::Length(0))
    }

    /// The body length if the framing fixes it in advance.
    pub fn exact_len(&self) -> Option<u64> {
        match self {
            Framing::None => Some(0),
            Framing::Length(n) => Some(*n),
            Framing::Chunked | Framing::UntilClose => None,
        }
    }
}

/// Which message [`body_framing`] looks at.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// A request.
    Request,
    /// A response to a request made with `request_method`.
    Response {
        /// The method of the request this response answers.
        request_method: &'a Method,
        /// The response's status.
        status: StatusCode,
    },
}

/// The body length of a received message, RFC 9112 §6.3, its steps in order.
///
/// Departures from the RFC's leniency, each to close a smuggling vector:
/// step 3 refuses `Content-Length` with `Transfer-Encoding` instead of letting TE
/// win; `Transfer-Encoding` in an HTTP/1.0 message is refused (RFC 9112 §6.1
/// says its framing is faulty); and a response whose transfer codings do not end
/// in `chunked` is refused instead of being read to the close, because its
/// content would arrive still coded.
pub fn body_framing(
    message: Message<'_>,
    version: Version,
    facts: &HeadFacts,
) -> Result<Framing, Error> {
    // 1. A response to HEAD, and any 1xx, 204 or 304 response, ends after its
    //    head whatever its fields say.
    if let Message::Response {
        request_method,
        status,
    } = message
    {
        if *request_method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok(Framing::None);
        }
        // 2. A 2xx response to CONNECT switches the connection to a tunnel: no
        //    body; what follows belongs to the tunnel.
        if *request_method == Method::CONNECT && status.is_success() {
            return Ok(Framing::None);
        }
    }

    let coding = facts.transfer_encoding.get()?;
    let has_content_length = facts.content_length.is_present();

    // 3. Transfer-Encoding and Content-Length together: RFC 9112 lets TE win and
    //    requires closing afterwards; drainpipe refuses the message outright.
    if coding != TransferCoding::Absent && has_content_length {
        return Err(Error::remote(ErrorKind::ContentLengthAndTransferEncoding));
    }

    // 4. Transfer-Encoding: chunked last → chunked. Otherwise a request is
    //    refused (400); a response would be read until close, but its content
    //    would still be coded, so it is refused too. HTTP/1.0 has no TE (§6.1).
    if coding != TransferCoding::Absent {
        if version == Version::HTTP_10 {
            return Err(Error::remote(ErrorKind::BadTransferEncoding));
        }
        return match (coding, message) {
            (TransferCoding::Chunked, _) => Ok(Framing::Chunked),
            (_, Message::Request) => Err(Error::remote(ErrorKind::BadTransferEncoding)),
            (_, Message::Response { .. }) => Err(Error::remote(ErrorKind::UnknownTransferCoding)),
        };
    }

    // 5. An invalid Content-Length (not digits, overflow, differing values) is an
    //    unrecoverable framing error.
    // 6. A valid Content-Length gives the length.
    if has_content_length {
        if let Some(n) = facts.content_length.get()? {
            return Ok(Framing::Length(n));
        }
    }

    match message {
        // 7. A request with neither has no body.
        Message::Request => Ok(Framing::None),
        // 8. A response with neither is delimited by the close of the connection.
        Message::Response { .. } => Ok(Framing::UntilClose),
    }
}

/// What the caller knows of a body it is about to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySize {
    /// Exactly this many bytes.
    Exact(u64),
    /// Not known in advance (streamed): chunked to HTTP/1.1 peers, delimited by
    /// the close to HTTP/1.0 ones.
    Unknown,
}
