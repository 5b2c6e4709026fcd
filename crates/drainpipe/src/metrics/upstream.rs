//! What is known of one upstream server beyond its balancing state: request
//! latency and time to first byte, responses by status class, errors by
//! kind, and the history the status page tells (since when it is up, down or
//! ejected, and why; the last health check).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::histogram::{Histogram, StatusClasses};

/// Why a request to an upstream server failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// No connection (refused, unreachable, connect timeout): nothing sent.
    Connect,
    /// A timeout after the request was sent (send, response head).
    Timeout,
    /// The connection broke or the response was malformed.
    Response,
    /// A pooled connection was found closed (the request went again).
    Stale,
}

impl UpstreamError {
    /// Every kind, in the order of [`UpstreamStats::errors`].
    pub const ALL: [UpstreamError; 4] = [
        UpstreamError::Connect,
        UpstreamError::Timeout,
        UpstreamError::Response,
        UpstreamError::Stale,
    ];

    /// Its label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Response => "response",
            UpstreamError::Stale => "stale",
        }
    }
}

/// One active health check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// When it ended.
    pub at: SystemTime,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen: the status and time, or the error.
    pub detail: String,
}

/// The counters of one upstream server.
#[derive(Debug)]
pub struct UpstreamStats {
    /// From choosing the server to the end of its response body, for
    /// requests it answered.
    pub latency: Histogram,
    /// From sending (a connect included when one was needed) to the
    /// response head.
    pub ttfb: Histogram,
    /// Its responses by status class.
    pub responses: StatusClasses,
    errors: [AtomicU64; UpstreamError::ALL.len()],
    events: Mutex<Events>,
}

/// Rare events, written off the hot path.
#[derive(Debug)]
struct Events {
    /// When the health checks last turned it up or down (else: created).
    health_changed: SystemTime,
    /// Its last ejection: since and until when.
    ejected: Option<(SystemTime, SystemTime)>,
    last_check: Option<CheckResult>,
}

impl Default for UpstreamStats {
    fn default() -> Self {
        UpstreamStats {
            latency: Histogram::default(),
            ttfb: Histogram::default(),
            responses: StatusClasses::default(),
            errors: Default::default(),
            events: Mutex::new(Events {
                health_changed: SystemTime::now(),
                ejected: None,
                last_check: None,
            }),
        }
    }
}

impl UpstreamStats {
    /// Counts a failed request.
    pub fn record_error(&self, kind: UpstreamError) {
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Errors by kind, in the order of [`UpstreamError::ALL`].
    pub fn errors(&self) -> [(UpstreamError, u64); UpstreamError::ALL.len()] {
        UpstreamError::ALL.map(|k| (k, self.errors[k as usize].load(Ordering::Relaxed)))
    }

    /// Records a health check; `turned` when it changed the server's health.
    pub(crate) fn record_check(&self, ok: bool, detail: String, turned: bool) {
        let mut events = self.events.lock().unwrap();
        let at = SystemTime::now();
        if turned {
            events.health_changed = at;
        }
        events.last_check = Some(CheckResult { at, ok, detail });
    }

    /// Records an ejection for `eject_for`.
    pub(crate) fn record_ejection(&self, eject_for: Duration) {
        let now = SystemTime::now();
        self.events.lock().unwrap().ejected = Some((now, now + eject_for));
    }

    /// The last health check, if any ran.
    pub fn last_check(&self) -> Option<CheckResult> {
        self.events.lock().unwrap().last_check.clone()
    }

    /// When the health checks last changed its health (else when it was
    /// created).
    pub fn health_changed(&self) -> SystemTime {
        self.events.lock().unwrap().health_changed
    }

    /// Its last ejection, since and until when.
    pub fn last_ejection(&self) -> Option<(SystemTime, SystemTime)> {
        self.events.lock().unwrap().ejected
    }
}

/// Whether an upstream server is chosen for requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    /// Chosen in turn.
    Up,
    /// Failed its active health checks: left out until they pass again.
    Down,
    /// Failed too many requests in a row: left out for a while.
    Ejected,
}

impl ServerState {
    /// Every state, in label order.
    pub const ALL: [ServerState; 3] = [ServerState::Up, ServerState::Down, ServerState::Ejected];

    /// Its label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Up => "up",
            ServerState::Down => "down",
            ServerState::Ejected => "ejected",
        }
    }
}

/// One upstream server's figures at one moment.
#[derive(Debug, Clone)]
pub struct UpstreamSnapshot {
    /// The proxy it belongs to.
    pub proxy: String,
    /// Its group.
    pub group: String,
    /// Its `host:port`.
    pub server: String,
    /// Its state now.
    pub state: ServerState,
    /// Since when it is in that state.
    pub since: SystemTime,
    /// Why, in a few words.
    pub reason: String,
    /// The last active health check, if any ran.
    pub check: Option<CheckResult>,
    /// Connections open to it (idle, lent or connecting).
    pub open: u64,
    /// Idle pooled connections to it.
    pub idle: u64,
    /// Requests in flight to it.
    pub in_flight: u64,
    /// Requests sent to it.
    pub requests: u64,
    /// Its responses by status class.
    pub responses: [u64; 5],
    /// Failed requests by kind.
    pub errors: [(UpstreamError, u64); UpstreamError::ALL.len()],
    /// Request duration (to the end of the response body).
    pub latency: super::histogram::Snapshot,
    /// Time to the response head.
    pub ttfb: super::histogram::Snapshot,
    /// Time to open a connection.
    pub connect: super::histogram::Snapshot,
    /// Its idle timeout as learned from its closes, in seconds.
    pub learned_idle_timeout: Option<f64>,
    /// Pooled connections retired before its idle timeout could close them.
    pub retired_early: u64,
}

impl UpstreamSnapshot {
    /// Its Prometheus labels: proxy, group and server.
    pub fn labels(&self) -> String {
        format!(
            "{},server=\"{}\"",
            self.group_labels(),
            super::escape::esc(&self.server)
        )
    }

    /// Its group's Prometheus labels: proxy and group.
    pub fn group_labels(&self) -> String {
        format!(
            "proxy=\"{}\",group=\"{}\"",
            super::escape::esc(&self.proxy),
            super::escape::esc(&self.group)
        )
    }

    /// Connections lent to a request now.
    pub fn active(&self) -> u64 {
        self.open.saturating_sub(self.idle)
    }

    /// Failed requests of every kind.
    pub fn errors_total(&self) -> u64 {
        self.errors.iter().map(|(_, n)| n).sum()
    }
}
