//! A client's counters.

use std::sync::atomic::AtomicU64;

/// Counters of a client.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections opened.
    pub opened: AtomicU64,
    /// Requests served by a pooled (reused) connection.
    pub reused: AtomicU64,
    /// Requests sent again after a safe-to-retry failure.
    pub retries: AtomicU64,
}
