//! Drain coordination: the phase every connection watches, connection counts,
//! close reasons, and the report a drain returns.
//!
//! Phases: `Running` → (shutdown) `Closing` for `drain_delay` (still
//! accepting; every response carries `Connection: close`) → `Draining` (the
//! listener is closed; connections idle between requests close, spread over
//! `drain_spread`; busy ones after their current response, which carries
//! `Connection: close`; one that has not sent its first request yet is waited
//! for up to its head timeout, since its client retries nothing on a new
//! connection) → (drain timeout) `Cut`: every connection still open is closed.
//!
//! The phase is one atomic in [`Shared`], the one source of truth every
//! connection reads. A change wakes every connection's task through its slot
//! (`slots.rs`) and the parker through a watch channel; `Stats::draining` is
//! its mirror for the metrics.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{watch, Notify};

use super::config::Config;
use super::slots::Slots;
use crate::metrics::writers::Writers;

/// The phase of a server's life every connection watches, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Phase {
    Running,
    /// `drain_delay`: still accepting, every response says close.
    Closing,
    /// The listener is closed; connections close as their work ends.
    Draining,
    Cut,
}

/// Why a connection closed (counted in [`Stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed at a message boundary.
    ClientClosed,
    /// Keep-alive ended by the rules: the client asked (`Connection: close`,
    /// HTTP/1.0 without keep-alive), the handler asked, or the request limit.
    KeepAliveEnded,
    /// Idle between requests for the idle timeout.
    IdleTimeout,
    /// A request head did not arrive in time (408 if it had started).
    HeadTimeout,
    /// A request body stalled for the body timeout.
    BodyTimeout,
    /// A write made no progress for the write timeout (the client stopped
    /// reading): closed at once, with no further write and no linger.
    WriteTimeout,
    /// Closed by a drain after its last response.
    Drain,
    /// Cut at the drain timeout.
    Cut,
    /// The client broke the protocol (answered with a 4xx/5xx first).
    ProtocolError,
    /// The handler failed (error, panic, or a body that broke its length).
    HandlerError,
    /// A socket error.
    Io,
    /// Handed over after a protocol switch (`101`, or a 2xx to CONNECT).
    Upgraded,
    /// Idle between requests the longest when every slot under
    /// `max_connections` was taken and a new connection waited: closed to
    /// make room for it.
    Reclaimed,
}

impl CloseReason {
    /// Every reason, in the order of [`Stats::closed`].
    pub const ALL: [CloseReason; 13] = [
        CloseReason::ClientClosed,
        CloseReason::KeepAliveEnded,
        CloseReason::IdleTimeout,
        CloseReason::HeadTimeout,
        CloseReason::BodyTimeout,
        CloseReason::WriteTimeout,
        CloseReason::Drain,
        CloseReason::Cut,
        CloseReason::ProtocolError,
        CloseReason::HandlerError,
        CloseReason::Io,
        CloseReason::Upgraded,
        CloseReason::Reclaimed,
    ];

    /// A short snake-case name, for metrics labels and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_close",
            CloseReason::KeepAliveEnded => "keep_alive_end",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::HeadTimeout => "head_timeout",
            CloseReason::BodyTimeout => "body_timeout",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::Drain => "drain",
            CloseReason::Cut => "cut",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::HandlerError => "handler_error",
            CloseReason::Io => "io_error",
            CloseReason::Upgraded => "upgraded",
            CloseReason::Reclaimed => "reclaimed",
        }
    }

    fn index(self) -> usize {
        CloseReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or(0)
    }
}

/// Live counters of a server.
///
/// A server run on workers ([`Server::for_worker`](super::Server::for_worker))
/// counts each worker's connections in a `Stats` of that worker's own (so
/// no counter is written by two cores), listed in [`Stats::workers`]: the
/// server's figures are its own plus its workers', which is how the
/// [`Registry`](crate::metrics::Registry) reads them. A worker's per-request
/// counters are written with plain loads and stores, not locked
/// instructions: they must be written from the worker's thread only (as
/// [`Workers`](super::Workers) runs each worker's connections).
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections receiving a request head or body now.
    pub reading: AtomicUsize,
    /// Connections handling a request (handler running, response being
    /// written) now.
    pub writing: AtomicUsize,
    /// Connections idle now in their own task (waiting for a next request).
    pub idle: AtomicUsize,
    /// Idle connections parked now (out of their task, see
    /// [`Builder::park_idle_after`](super::Builder::park_idle_after)).
    pub parked: AtomicUsize,
    /// Connections closing gracefully now (write side shut, discarding input).
    pub lingering: AtomicUsize,
    /// Requests received.
    pub requests: AtomicU64,
    /// Writes of the outgoing queue: one vectored write each unless the socket
    /// is full (responses that leave together count once).
    pub writes: AtomicU64,
    /// Bytes read from clients.
    pub bytes_in: AtomicU64,
    /// Bytes written to clients.
    pub bytes_out: AtomicU64,
    /// From a request's head to its response's end queued, per request.
    pub latency: crate::metrics::histogram::Histogram,
    /// Responses by status class (the server's own error answers included).
    pub responses: crate::metrics::histogram::StatusClasses,
    /// Whether a drain has begun (readiness should report not ready).
    pub draining: std::sync::atomic::AtomicBool,
    closed: [AtomicU64; CloseReason::ALL.len()],
    /// Connection ids given so far: one counter for a server and its
    /// workers (written once per connection), so ids are unique and dense.
    conn_ids: Arc<AtomicU64>,
    /// The counters of the workers running this server.
    workers: std::sync::Mutex<Vec<Arc<Stats>>>,
    per_connection: [AtomicU64; REQUESTS_PER_CONNECTION.len() + 1],
    per_connection_sum: AtomicU64,
    /// Who writes the per-request counters: one thread for a worker's (see
    /// [`Writers`]).
    writers: Writers,
}

/// Upper bounds of the requests-per-connection histogram buckets (a last
/// bucket holds the rest).
pub const REQUESTS_PER_CONNECTION: [u32; 7] = [0, 1, 2, 5, 10, 100, 1000];

impl Stats {
    /// A new connection id, from 1 (unique among a server's workers).
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// New counters for a worker, listed among this server's
    /// [`Stats::workers`].
    pub(crate) fn for_worker(&self) -> Arc<Stats> {
        let stats = Arc::new(Stats {
            conn_ids: self.conn_ids.clone(),
            writers: Writers::One,
            ..Stats::default()
        });
        self.workers.lock().unwrap().push(stats.clone());
        stats
    }

    /// The counters of the workers running this server (none unless it runs
    /// on workers): add them to this one's own for the server's figures.
    pub fn workers(&self) -> Vec<Arc<Stats>> {
        self.workers.lock().unwrap().clone()
    }

    /// Adds `n` to one of these counters (a per-request one: requests,
    /// writes, bytes), without a locked instruction on a worker's.
    #[inline(always)]
    pub(crate) fn add(&self, counter: &AtomicU64, n: u64) {
        self.writers.add(counter, n);
    }

    /// Records a request's latency and its response's status.
    #[inline(always)]
    pub(crate) fn record_response(&self, latency: std::time::Duration, status: http::StatusCode) {
        self.latency.record_by(latency, self.writers);
        self.responses.record_by(status, self.writers);
    }

    /// Connections closed for `reason` so far.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.closed[reason.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn record_close(&self, reason: CloseReason) {
        self.closed[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts of closed connections by requests served, one per bucket of
    /// [`REQUESTS_PER_CONNECTION`] (a connection with n requests lands in the
    /// first bucket whose bound is at least n), then the rest.
    pub fn requests_per_connection(&self) -> Vec<u64> {
        self.per_connection
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    pub(crate) fn record_requests_per_connection(&self, n: u32) {
        let bucket = REQUESTS_PER_CONNECTION
            .iter()
            .position(|&bound| n <= bound)
            .unwrap_or(REQUESTS_PER_CONNECTION.len());
        self.per_connection[bucket].fetch_add(1, Ordering::Relaxed);
        self.per_connection_sum
            .fetch_add(u64::from(n), Ordering::Relaxed);
    }

    /// Requests served by the connections closed so far.
    pub fn requests_of_closed_connections(&self) -> u64 {
        self.per_connection_sum.load(Ordering::Relaxed)
    }
}

/// Counts a connection in one state while alive.
pub(crate) struct InState<'a>(&'a AtomicUsize, Writers);

impl<'a> InState<'a> {
    /// Counts a connection in `gauge`, one of `stats`' gauges, until dropped.
    #[inline(always)]
    pub(crate) fn enter(stats: &Stats, gauge: &'a AtomicUsize) -> Self {
        stats.writers.increment(gauge);
        InState(gauge, stats.writers)
    }
}

impl Drop for InState<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.1.decrement(self.0);
    }
}

/// What a drain did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Connections open when the drain started.
    pub open_at_start: usize,
    /// Connections that finished cleanly during the drain (idle ones closed at
    /// once, busy ones after their last response).
    pub clean: usize,
    /// Connections still open at the drain timeout, closed by force.
    pub cut: usize,
    /// How long the drain took.
    pub elapsed: std::time::Duration,
}

impl std::ops::AddAssign for DrainReport {
    /// Adds another drain's figures (the workers of one listener): counts
    /// add up, the elapsed time is the longest.
    fn add_assign(&mut self, other: DrainReport) {
        self.open_at_start += other.open_at_start;
        self.clean += other.clean;
        self.cut += other.cut;
        self.elapsed = self.elapsed.max(other.elapsed);
    }
}

/// State shared by the accept loop and every connection of one `serve` call.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) stats: Arc<Stats>,
    /// The [`Phase`], as its `u8`.
    phase: AtomicU8,
    /// Tells the parker of phase changes (connection tasks hear of them
    /// through their slots).
    phase_watch: watch::Sender<Phase>,
    /// Every connection's slot under `max_connections`.
    pub(crate) slots: Arc<Slots>,
    /// Connections whose task is running.
    active: AtomicUsize,
    /// Connections that ended during the drain, by outcome.
    drained_clean: AtomicUsize,
    drained_cut: AtomicUsize,
    all_closed: Notify,
}

impl Shared {
    pub(crate) fn new(config: Config, stats: Arc<Stats>) -> Self {
        Shared {
            slots: Slots::new(config.max_connections),
            config,
            stats,
            phase: AtomicU8::new(Phase::Running as u8),
            phase_watch: watch::Sender::new(Phase::Running),
            active: AtomicUsize::new(0),
            drained_clean: AtomicUsize::new(0),
            drained_cut: AtomicUsize::new(0),
            all_closed: Notify::new(),
        }
    }

    /// Phase changes, for the parker.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase_watch.subscribe()
    }

    /// The phase now: one atomic load.
    pub(crate) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::Closing,
            2 => Phase::Draining,
            _ => Phase::Cut,
        }
    }

    /// Whether a shutdown has begun (every response now says close).
    pub(crate) fn is_draining(&self) -> bool {
        self.phase() >= Phase::Closing
    }

    /// Moves to `phase` (never back) and tells every connection.
    fn enter(&self, phase: Phase) {
        if self.phase.fetch_max(phase as u8, Ordering::AcqRel) >= phase as u8 {
            return;
        }
        self.stats.draining.store(true, Ordering::Release);
        self.phase_watch.send_replace(phase);
        self.slots.wake_all();
    }

    /// A new connection id.
    pub(crate) fn conn_id(&self) -> u64 {
        self.stats.next_conn_id()
    }

    /// A connection task starts.
    pub(crate) fn opened(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        self.stats.open.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection that carried `requests` decided to close (before its
    /// graceful close lingers): counted by reason and in the
    /// requests-per-connection histogram.
    pub(crate) fn closing(&self, reason: CloseReason, requests: u32) {
        self.stats.record_close(reason);
        self.stats.record_requests_per_connection(requests);
    }

    /// A connection out of any task (a parked one) closes at once.
    pub(crate) fn closed_now(&self, reason: CloseReason, requests: u32) {
        self.closing(reason, requests);
        self.closed(reason);
    }

    /// A connection task ends (after lingering).
    pub(crate) fn closed(&self, reason: CloseReason) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        match self.phase() {
            Phase::Running | Phase::Closing => {}
            Phase::Draining => {
                self.drained_clean.fetch_add(1, Ordering::Relaxed);
            }
            Phase::Cut => {
                let counter = if reason == CloseReason::Cut {
                    &self.drained_cut
                } else {
                    &self.drained_clean
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_closed.notify_waiters();
        }
    }

    /// The first step of a shutdown: not ready any more and, when a
    /// `drain_delay` is set, every response says close while the listener
    /// still accepts (load balancers notice and move traffic away).
    pub(crate) fn begin_closing(&self) {
        self.enter(Phase::Closing);
    }

    /// Runs the drain to its end: tells every connection, waits up to the drain
    /// timeout, then cuts what is left.
    pub(crate) async fn drain(&self) -> DrainReport {
        let started = Instant::now();
        let open_at_start = self.active.load(Ordering::Acquire);
        self.enter(Phase::Draining);
        let wait_all = async {
            loop {
                let notified = self.all_closed.notified();
                if self.active.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::pin!(wait_all);
        if tokio::time::timeout(self.config.drain_timeout, &mut wait_all)
            .await
            .is_err()
        {
            self.enter(Phase::Cut);
            // Cut connections close at once; this wait is short.
            wait_all.await;
        }
        DrainReport {
            open_at_start,
            clean: self.drained_clean.load(Ordering::Relaxed),
            cut: self.drained_cut.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
        }
    }
}

/// A delay in `[0, spread)` picked from a connection's id (scrambled, so
/// neighbouring ids land far apart).
pub(crate) fn spread_delay(id: u64, spread: std::time::Duration) -> std::time::Duration {
    let nanos = spread.as_nanos() as u64;
    if nanos == 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::from_nanos(id.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) % nanos)
}
