//! A client's settings, as the [`Builder`](super::Builder) set them.

use std::sync::Arc;
use std::time::Duration;

use super::connect;

/// The default wait for a response head, and then between two pieces of a
/// response body: 60 s, nginx's `proxy_read_timeout`.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default time a write of a request may make no progress: 60 s, nginx's
/// `proxy_send_timeout`.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// The client's settings; see [`Builder`](super::Builder).
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) proto: Arc<proto::Config>,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Option<Duration>,
    pub(crate) send_timeout: Option<Duration>,
    pub(crate) expect_timeout: Duration,
    pub(crate) max_idle_per_host: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_per_host: Option<usize>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) pool_timeout: Option<Duration>,
    pub(crate) keep_alive_margin: Option<Duration>,
    pub(crate) probe_every: Duration,
    pub(crate) retry: bool,
    pub(crate) connector: connect::Shared,
    /// The TLS settings of `https://` URLs (`None`: [`ClientTls::system`](crate::tls::ClientTls::system)).
    pub(crate) tls: Option<crate::tls::ClientTls>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            proto: Arc::new(proto::Config::default()),
            connect_timeout: Duration::from_secs(10),
            response_timeout: Some(DEFAULT_RESPONSE_TIMEOUT),
            send_timeout: Some(DEFAULT_SEND_TIMEOUT),
            expect_timeout: Duration::from_secs(1),
            max_idle_per_host: 64,
            idle_timeout: Duration::from_secs(60),
            max_per_host: None,
            max_lifetime: None,
            pool_timeout: None,
            keep_alive_margin: None,
            probe_every: Duration::from_secs(10),
            retry: true,
            connector: connect::Shared::default(),
            tls: None,
        }
    }
}
