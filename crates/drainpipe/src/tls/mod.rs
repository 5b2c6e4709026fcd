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
mod error;
mod pem;
mod server;
mod settings;
pub mod stream;

pub use client::{ClientTls, ClientTlsBuilder};
pub use error::ConfigError;
/// The rustls crate, for configurations built by hand
/// ([`ServerTls::from_config`], [`ClientTls::from_config`]) and session
/// facts (protocol version, resumption).
pub use rustls;
pub use server::{CertKey, ServerTls, TlsAccept, TlsListener};
pub use stream::{Ciphertext, ServerStream};
/// The tokio-rustls crate, whose client stream [`ClientTls::connect`]
/// returns.
pub use tokio_rustls;
