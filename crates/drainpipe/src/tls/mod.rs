//! TLS with rustls on every hop: listeners ([`ServerTls`]), upstreams and the
//! client library ([`ClientTls`]).
//!
//! TLS is one more [`Transport`](crate::transport::Transport) wrapped around
//! a TCP (or Unix) stream; the drivers do not know it is there, except
//! through the trait:
//!
//! ```text
//!  listener:  Accept (TCP) ──▶ TlsAccept ──▶ ServerStream (handshake on the
//!             first read, so the head timeout bounds it) ──▶ server/conn.rs
//!  client:    Connector: TCP ──▶ ClientTls::connect (handshake within the
//!             connect timeout) ──▶ client::TlsStream ──▶ client/conn.rs
//! ```
//!
//! What TLS changes in the trait (see [`stream`]):
//! - the kernel peeks (`has_input`, `peer_closed_or_sent`) look at
//!   ciphertext: right for "input pending?" and "did the peer close?";
//!   `read_now` goes through rustls;
//! - closing sends close_notify before the FIN (`poll_shutdown`); a
//!   close-delimited response that ends without close_notify is
//!   [`Truncated`](crate::error::Error::is_truncated), never complete;
//! - idle connections are never parked: the TLS session state lives in
//!   user space and would have to be kept beside the descriptor (they wait
//!   in their task instead).
//!
//! Crypto: the `ring` provider (no C build tools needed beyond a C compiler;
//! see `bench/BENCHMARKS.md` for the measurement against aws-lc-rs).
//! Protocol versions TLS 1.2 and 1.3; ALPN `http/1.1` only.

mod client;
mod pem;
mod server;
pub mod stream;

pub use client::{ClientTls, ClientTlsBuilder};
/// The rustls crate, for configurations built by hand
/// ([`ServerTls::from_config`], [`ClientTls::from_config`]) and session
/// facts (protocol version, resumption).
pub use rustls;
pub use server::{CertKey, ServerTls, TlsAccept, TlsListener};
pub use stream::ServerStream;
/// The tokio-rustls crate, whose client stream [`ClientTls::connect`]
/// returns.
pub use tokio_rustls;

use std::sync::Arc;

/// The one ALPN protocol spoken.
pub(crate) const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The crypto provider every configuration is built with.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS configuration that cannot be built: what is wrong, naming the file
/// at fault when there is one (`cert.pem: no certificate found`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> ConfigError {
        ConfigError(message.into())
    }

    pub(crate) fn file(path: &std::path::Path, message: impl std::fmt::Display) -> ConfigError {
        ConfigError(format!("{}: {message}", path.display()))
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}
