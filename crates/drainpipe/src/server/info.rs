//! What a handler and its connection tell each other: the connection's facts
//! ([`ConnInfo`], connection → handler) and a request to drop it ([`Abort`],
//! handler → connection).

use std::net::SocketAddr;

/// Facts about the connection a request arrived on: from the request body
/// ([`Incoming::conn_info`](crate::body::Incoming::conn_info)), or the request's extensions when
/// [`Builder::conn_info_extension`](super::Builder::conn_info_extension) is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The connection's id, unique within the process.
    pub id: u64,
    /// This request's number on its connection, from 1.
    pub request: u32,
    /// The client's IP address; `None` for a peer without one (a Unix
    /// socket, an in-memory stream).
    pub peer: Option<SocketAddr>,
    /// Whether the connection is TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
}

/// Put in a response's extensions to make the server drop the connection with
/// a reset (`SO_LINGER` 0) instead of sending the response: for fault injection
/// (the origin's `/reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abort;
