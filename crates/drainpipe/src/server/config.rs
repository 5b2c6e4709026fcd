//! A server's limits and timeouts, as the [`Builder`](super::Builder) set
//! them.

use std::sync::Arc;
use std::time::Duration;

use crate::sock::Linger;

/// Limits and timeouts of a server; see [`Builder`](super::Builder) for each one's meaning and
/// default.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) proto: Arc<proto::Config>,
    pub(crate) head_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) drain_delay: Duration,
    pub(crate) drain_spread: Duration,
    pub(crate) access_log: Option<crate::access::AccessLog>,
    pub(crate) conn_info_extension: bool,
    pub(crate) linger: Linger,
    pub(crate) max_batch: usize,
    pub(crate) park_after: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        let idle_timeout = Duration::from_secs(60);
        Config {
            proto: Arc::new(proto::Config {
                keep_alive: proto::KeepAlive {
                    timeout_secs: announced_secs(idle_timeout),
                    announce_to_http11: true,
                    ..proto::KeepAlive::default()
                },
                ..proto::Config::default()
            }),
            head_timeout: Duration::from_secs(10),
            idle_timeout,
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 100_000,
            drain_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            drain_spread: Duration::ZERO,
            access_log: None,
            conn_info_extension: false,
            linger: Linger::default(),
            max_batch: 16,
            park_after: Some(Duration::from_secs(1)),
        }
    }
}

/// The idle timeout as announced in `Keep-Alive: timeout=T`: whole seconds,
/// nothing under one (`timeout=0` would tell clients never to reuse).
pub(super) fn announced_secs(idle_timeout: Duration) -> Option<u32> {
    u32::try_from(idle_timeout.as_secs())
        .ok()
        .filter(|s| *s > 0)
}
