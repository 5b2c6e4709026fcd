//! What every TLS configuration built here shares: the crypto provider and
//! the one ALPN protocol.

use std::sync::Arc;

/// The one ALPN protocol spoken.
pub(crate) const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The crypto provider every configuration is built with (ring; see
/// `bench/BENCHMARKS.md`, "TLS crypto provider").
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
