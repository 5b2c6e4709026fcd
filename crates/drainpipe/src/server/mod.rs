//! The HTTP/1.x server: serves any `tower::Service<http::Request<Incoming>>`
//! whose response body is an `http_body::Body`.
//!
//! The caller binds the listener and passes a shutdown future; [`Server::serve`]
//! accepts until the future resolves, then drains and returns a [`DrainReport`].
//! [`defer_accept`] on a TCP listener before serving it has the kernel hand
//! over each connection only once its request arrived (the binary does this
//! by default): one wake-up per new connection instead of two.
//!
//! ```text
//!  listener.rs   accept loop: max connections (accept waits), EMFILE back-off
//!  slots.rs      connection slots; at the limit, the longest-idle is reclaimed
//!       │ one task per connection
//!  conn.rs       the connection loop: read → proto::Connection → requests,
//!                deadlines, drain, parking, coalesced writes
//!  conn/exchange.rs  one request: service ready → call → body pump → response
//!                into proto (a panic becomes a 500)
//!       │        timeouts: head (408), idle, body, write; panic → 500 + close
//!  interim.rs    1xx a handler sends ahead of its response ([`Interim`],
//!                from the request body's `Incoming::interim`)
//!  park.rs       idle connections leave their task for one shared epoll set
//!  drain.rs      phase (running → draining → cut), counts, the report
//!  workers.rs    thread-per-core: N current-thread runtimes, one
//!                `SO_REUSEPORT` socket each ([`workers`])
//!  sock.rs       graceful close: FIN, discard input, then close
//!                (a plain close when the client announced its last request);
//!                deferred accepts (TCP_DEFER_ACCEPT)
//!  (TCP_NODELAY goes on before a connection's second write: park.rs `Writes`)
//! ```
//!
//! Every persistence rule (keep-alive, HTTP/1.0 `Keep-Alive`, `Connection:
//! close`, request limits, what a drain does to the next response) is decided by
//! `drainpipe-proto`; this module only owns sockets, timers and tasks.
//!
//! # Example
//!
//! ```no_run
//! use std::convert::Infallible;
//! use drainpipe::server::Server;
//! use drainpipe::body::Incoming;
//! use http_body_util::Full;
//! use bytes::Bytes;
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let service = drainpipe::server::service_fn(|_req: http::Request<Incoming>| async {
//!     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("hello"))))
//! });
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! let report = Server::builder().build().serve(listener, service, shutdown).await;
//! println!("{} connections drained, {} cut", report.clean, report.cut);
//! # Ok(()) }
//! ```

mod clock;
mod config;
mod conn;
mod date;
mod drain;
pub(crate) mod info;
pub(crate) mod interim;
mod listener;
mod park;
mod slots;
pub mod workers;

pub use crate::sock::{defer_accept, DEFER_ACCEPT_HOLD};
pub use listener::{Accept, Listen, SocketAcceptor};
pub use workers::{Worker, Workers};

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use crate::body::Incoming;
use crate::error::BoxError;
use crate::sock::Linger;

use config::announced_secs;
pub use config::Config;
pub use drain::{CloseReason, DrainReport, Stats, REQUESTS_PER_CONNECTION};
pub use info::{Abort, ConnInfo};
pub use interim::{Interim, InterimError};

/// Builds a [`Server`].
#[derive(Debug, Clone, Default)]
pub struct Builder {
    config: Config,
}

impl Builder {
    fn proto(&mut self) -> &mut proto::Config {
        Arc::make_mut(&mut self.config.proto)
    }

    /// Time allowed to receive a whole request head, from its first byte (or
    /// from accept, for the first request). Expiry: `408` and close; a silent
    /// close if nothing arrived. Default 10 s.
    pub fn head_timeout(mut self, d: Duration) -> Self {
        self.config.head_timeout = d;
        self
    }

    /// Time a keep-alive connection may sit idle between requests before it is
    /// closed (silently). Advertised to HTTP/1.0 keep-alive clients as
    /// `Keep-Alive: timeout=`. Default 60 s.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.config.idle_timeout = d;
        self.proto().keep_alive.timeout_secs = announced_secs(d);
        self
    }

    /// Time allowed between two reads of a request body. Default 30 s.
    pub fn body_timeout(mut self, d: Duration) -> Self {
        self.config.body_timeout = d;
        self
    }

    /// Time allowed for a write to make progress. Default 30 s. When it runs
    /// out the connection is closed at once (the client stopped reading: no
    /// further write, no linger).
    pub fn write_timeout(mut self, d: Duration) -> Self {
        self.config.write_timeout = d;
        self
    }

    /// Connections open at once. At the limit, a connection waiting to be
    /// accepted makes room: the keep-alive connection idle the longest (in
    /// its task or parked) is closed ([`CloseReason::Reclaimed`]); one with a
    /// request in flight, or that has not sent its first request, never is.
    /// With none idle, accept waits for a slot. Default 100,000.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n.max(1);
        self
    }

    /// Requests served per connection; the last response carries
    /// `Connection: close`. Default: no limit.
    pub fn max_requests_per_connection(mut self, n: u32) -> Self {
        self.proto().keep_alive.max_requests = Some(n.max(1));
        self
    }

    /// Whether HTTP/1.1 keep-alive responses announce the idle timeout in
    /// force (`Keep-Alive: timeout=T`, and `max=M` when a request limit is
    /// set), so clients that honour it (undici, drainpipe's own) never send
    /// a request into the idle close. HTTP/1.0 keep-alive responses always
    /// carry it. Default true.
    pub fn announce_idle_timeout(mut self, on: bool) -> Self {
        self.proto().keep_alive.announce_to_http11 = on;
        self
    }

    /// Whether connections persist at all. Default true.
    pub fn keep_alive(mut self, on: bool) -> Self {
        self.proto().keep_alive.enabled = on;
        self
    }

    /// Reads `Proxy-Connection` as the client's `Connection` (an explicit
    /// forward proxy's clients send it). Default off.
    pub fn honour_proxy_connection(mut self, on: bool) -> Self {
        self.proto().honour_proxy_connection = on;
        self
    }

    /// Largest request head; beyond it `431`. Default 32 KiB.
    pub fn max_head_bytes(mut self, n: usize) -> Self {
        self.proto().max_head_bytes = n;
        self
    }

    /// Most header fields; beyond it `431`. Default 100.
    pub fn max_fields(mut self, n: usize) -> Self {
        self.proto().max_fields = n;
        self
    }

    /// Longest request target; beyond it `414`. Default 8 KiB.
    pub fn max_uri_bytes(mut self, n: usize) -> Self {
        self.proto().max_uri_bytes = n;
        self
    }

    /// Largest request body; beyond it `413`. Default: no limit.
    pub fn max_body_bytes(mut self, n: u64) -> Self {
        self.proto().max_body_bytes = Some(n);
        self
    }

    /// Unread request body the server reads and discards after the response to
    /// keep the connection; a larger one closes it. Default 64 KiB.
    pub fn max_discard_bytes(mut self, n: u64) -> Self {
        self.proto().max_discard_bytes = n;
        self
    }

    /// Pipelined responses queued before a write is forced. Default 16.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.config.max_batch = n.max(1);
        self
    }

    /// How long a drain waits for in-flight requests before cutting what is
    /// left. Default 30 s.
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.config.drain_timeout = d;
        self
    }

    /// How long a shutdown keeps accepting before the listener closes, every
    /// response meanwhile carrying `Connection: close` and readiness already
    /// reported false, so load balancers notice and move traffic away. Default
    /// 0.
    pub fn drain_delay(mut self, d: Duration) -> Self {
        self.config.drain_delay = d;
        self
    }

    /// The window over which a drain closes idle keep-alive connections (each
    /// at its own moment), so their clients do not reconnect in one burst.
    /// Default 0: all at once.
    pub fn drain_spread(mut self, d: Duration) -> Self {
        self.config.drain_spread = d;
        self
    }

    /// Writes a line per request to `log` ([`crate::access`]). Default: none.
    pub fn access_log(mut self, log: Option<crate::access::AccessLog>) -> Self {
        self.config.access_log = log;
        self
    }

    /// Also puts each request's [`ConnInfo`] in its extensions (it is always
    /// available from the body, [`Incoming::conn_info`]; the extension is for
    /// frameworks that replace the body type, like axum). Off by default: it
    /// costs an allocation per request.
    pub fn conn_info_extension(mut self, on: bool) -> Self {
        self.config.conn_info_extension = on;
        self
    }

    /// How a closing connection lingers (see [`Linger`]).
    pub fn linger(mut self, linger: Linger) -> Self {
        self.config.linger = linger;
        self
    }

    /// How long a connection may sit idle in its own task before it is parked:
    /// its task ends, its socket leaves the runtime's reactor, and it waits as a
    /// small entry in one shared epoll set until bytes arrive (then a new task
    /// takes it up). `None` keeps every connection in its task. Default 1 s.
    pub fn park_idle_after(mut self, after: Option<Duration>) -> Self {
        self.config.park_after = after;
        self
    }

    /// The server.
    pub fn build(self) -> Server {
        Server {
            config: self.config,
            stats: Arc::new(Stats::default()),
        }
    }
}

/// An HTTP/1.x server; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Server {
    config: Config,
    stats: Arc<Stats>,
}

impl Server {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Live counters of this server (connections by state, requests, closes by
    /// reason).
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// This server as `worker` runs it: the same configuration, with the
    /// worker's part of [`Builder::max_connections`] ([`Worker::share_of`]:
    /// the limit holds for the whole process, each worker enforcing its
    /// part, as each accepts its own connections), and counters of its own
    /// (no per-request counter written from two cores), listed in this server's
    /// [`Stats::workers`] so that its figures are the workers' total. Those
    /// counters are written without locked instructions, so the server must
    /// be served from the worker's own thread, as [`Workers`] does. Its
    /// accept loop, slots and parking set are the worker's own, as each
    /// [`Server::serve`] call's are. Connection ids come from one counter for
    /// all workers.
    pub fn for_worker(&self, worker: Worker) -> Server {
        let mut config = self.config.clone();
        config.max_connections = worker.share_of(config.max_connections);
        Server {
            config,
            stats: self.stats.for_worker(),
        }
    }

    /// Serves `service` on `listener` until `shutdown` resolves, then drains:
    /// stops accepting, closes connections idle between requests at once (or
    /// spread over the drain spread), lets requests in progress finish (their
    /// responses carry `Connection: close`), answers the first request of a
    /// connection accepted before the drain if it comes within the head
    /// timeout, and cuts what is left after the drain timeout. Returns what the
    /// drain did.
    ///
    /// The listener closes the moment accepting stops (see [`Listen`]).
    pub async fn serve<L, S, B, F>(&self, listener: L, service: S, shutdown: F) -> DrainReport
    where
        L: Listen,
        S: tower_service::Service<http::Request<Incoming>, Response = http::Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
        F: Future<Output = ()>,
    {
        let shared = Arc::new(drain::Shared::new(self.config.clone(), self.stats.clone()));
        let delay = self.config.drain_delay;
        let closing = shared.clone();
        let shutdown = async move {
            shutdown.await;
            closing.begin_closing();
            tokio::time::sleep(delay).await;
        };
        // The listener is closed when the accept loop ends.
        let parker = listener::accept_until(listener, service, &shared, shutdown).await;
        let report = shared.drain().await;
        if let Some(parker) = parker {
            parker.abort();
        }
        report
    }
}

/// A [`tower_service::Service`] from an async function, for handlers that need
/// no state of their own.
pub fn service_fn<F>(f: F) -> ServiceFn<F> {
    ServiceFn { f }
}

/// The service returned by [`service_fn`].
#[derive(Debug, Clone, Copy)]
pub struct ServiceFn<F> {
    f: F,
}

impl<F, Fut, Req, Res, E> tower_service::Service<Req> for ServiceFn<F>
where
    F: FnMut(Req) -> Fut,
    Fut: Future<Output = Result<Res, E>>,
{
    type Response = Res;
    type Error = E;
    type Future = Fut;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Fut {
        (self.f)(req)
    }
}

/// The body type of responses built from bytes (re-exported for handlers).
pub type Full = http_body_util::Full<Bytes>;
