//! The HTTP/1.x client: a pool per origin, safe retries, opt-in pipelining.
//!
//! ```text
//!  Client::request ─▶ Client::send   (also the reverse and forward proxies')
//!        │           ─▶ pool.rs  checkout: warmest idle connection (EOF-checked),
//!        │                       or a new one (connect.rs), or wait in line
//!        │           ─▶ conn.rs  write the request, read the response head
//!        │  failed before any response byte on a reused connection, and the
//!        │  request is idempotent with a replayable body (retry.rs)?
//!        │           ─▶ once more, on a new connection
//!        ▼
//!  Response<ResponseBody>  the body holds the connection; its end gives it
//!                          back to the pool, an early drop closes it
//! ```
//!
//! The client honours the server: `Connection: close` or an HTTP/1.0 response
//! without keep-alive is never reused; `Keep-Alive: timeout=T, max=M` retires
//! a connection before T runs out (minus a margin) and after M requests, so the
//! client does not race the server's idle close. When the race happens anyway,
//! the retry rules decide, and what is not retried surfaces as an
//! [`Error`] that says whether the server may have acted.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), drainpipe::Error> {
//! use http_body_util::BodyExt;
//! let client = drainpipe::client::Client::new();
//! let req = http::Request::get("http://127.0.0.1:8080/").body(()).unwrap();
//! let res = client.request(req).await?;
//! let body = res.into_body().collect().await?.to_bytes();
//! println!("{}", String::from_utf8_lossy(&body));
//! # Ok(()) }
//! ```

mod body;
mod config;
mod conn;
pub(crate) mod connect;
mod exchange;
mod pool;
mod request_body;
pub mod retry;
mod stats;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::SizeHint;

pub use body::ResponseBody;
pub use config::{Config, DEFAULT_RESPONSE_TIMEOUT, DEFAULT_SEND_TIMEOUT};
pub use connect::{Connect, Connecting, Connector, Origin};
pub(crate) use exchange::OnInformational;
pub use request_body::RequestBody;
pub use stats::Stats;

use crate::error::{Error, Kind};
use crate::upgrade::ClientUpgrade;
use pool::Pool;

/// How one attempt failed.
pub(crate) enum Failure {
    /// Nothing was sent (no connection): the body comes back.
    NotSent(Error, RequestBody),
    /// The request went out, at least in part.
    Sent(Error),
    /// The retry rules allow sending it again ([`retry`]): a reused
    /// connection failed before any byte of the response and the request is
    /// idempotent; here is its body once more. Where it goes is the caller's
    /// choice (the same origin on a new connection, or another upstream).
    Stale(Error, RequestBody),
}

/// Builds a [`Client`].
#[derive(Debug, Clone, Default)]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// Time allowed to open a connection. Default 10 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }

    /// Time allowed from the request written to the response head, and then
    /// between two pieces of the response body (an upstream that stalls
    /// mid-body is cut). `None`: no limit. Default 60 s
    /// ([`DEFAULT_RESPONSE_TIMEOUT`]).
    pub fn response_timeout(mut self, d: Option<Duration>) -> Self {
        self.config.response_timeout = d;
        self
    }

    /// Time a write of the request (head or body) may make no progress, for
    /// a server that stops reading; the request then fails with a timeout
    /// and the connection is closed. `None`: no limit. Default 60 s
    /// ([`DEFAULT_SEND_TIMEOUT`]).
    pub fn send_timeout(mut self, d: Option<Duration>) -> Self {
        self.config.send_timeout = d;
        self
    }

    /// How long a request with `Expect: 100-continue` waits for the
    /// server's `100 Continue` (or its final answer) before sending its body
    /// anyway. Default 1 s.
    pub fn expect_timeout(mut self, d: Duration) -> Self {
        self.config.expect_timeout = d;
        self
    }

    /// Idle connections kept per origin. Default 64.
    pub fn max_idle_per_host(mut self, n: usize) -> Self {
        self.config.max_idle_per_host = n;
        self
    }

    /// How long a connection may sit idle in the pool. Default 60 s.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.config.idle_timeout = d;
        self
    }

    /// Connections open at once per origin; further requests wait in line
    /// (first come, first served). Default: no limit.
    pub fn max_per_host(mut self, n: Option<usize>) -> Self {
        self.config.max_per_host = n.map(|n| n.max(1));
        self
    }

    /// How long a connection may live, however busy. Default: no limit.
    pub fn max_lifetime(mut self, d: Option<Duration>) -> Self {
        self.config.max_lifetime = d;
        self
    }

    /// How long a request may wait in line for a connection. Default: no limit.
    pub fn pool_timeout(mut self, d: Option<Duration>) -> Self {
        self.config.pool_timeout = d;
        self
    }

    /// How long before a server's idle timeout (announced with
    /// `Keep-Alive: timeout`, or learned from its closes) a connection stops
    /// being reused. Default: twice the quickest round trip to that server
    /// plus 10 ms ([`proto::IdleEstimate::margin`]).
    pub fn keep_alive_margin(mut self, d: Duration) -> Self {
        self.config.keep_alive_margin = Some(d);
        self
    }

    /// How often a request that is safe to send again (idempotent, body in
    /// memory) may reuse a connection idle past a server's *learned* idle
    /// timeout, to find out whether the server now waits longer (answered:
    /// the learned bound is forgotten; closed: the request is retried on a
    /// new connection). Default 10 s.
    pub fn idle_probe_every(mut self, d: Duration) -> Self {
        self.config.probe_every = d;
        self
    }

    /// Whether safe retries are made (see [`retry`]). Default true.
    pub fn retry(mut self, on: bool) -> Self {
        self.config.retry = on;
        self
    }

    /// Limits on received responses (head size, body size, …).
    pub fn proto_config(mut self, config: proto::Config) -> Self {
        self.config.proto = Arc::new(config);
        self
    }

    /// How connections are opened: [`Connector`] by default (TCP, or a Unix
    /// socket for an [`Origin::unix`]). Pooling and keep-alive are the
    /// same on every transport.
    pub fn connector(mut self, connector: impl Connect) -> Self {
        self.config.connector = connect::Shared(Arc::new(connector));
        self
    }

    /// The TLS settings for `https://` URLs: a custom root store, a client
    /// certificate, a server name ([`ClientTls::builder`](crate::tls::ClientTls::builder)). By default
    /// the system's roots verify the server ([`ClientTls::system`](crate::tls::ClientTls::system)).
    /// Connections are pooled per scheme, host, port and TLS settings.
    pub fn tls(mut self, tls: crate::tls::ClientTls) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// The client.
    pub fn build(self) -> Client {
        Client::with(Arc::new(self.config), Arc::default(), Arc::default())
    }
}

/// A hook for the informational (1xx) responses to a request, called with
/// each as it arrives, before the final response: put it in the request's
/// extensions. `103 Early Hints` and a `100 Continue` are what it sees most.
///
/// ```
/// use drainpipe::client::Informational;
/// let mut req = http::Request::get("http://127.0.0.1:8080/").body(()).unwrap();
/// req.extensions_mut().insert(Informational::new(|res| {
///     println!("{} ahead of the response", res.status());
/// }));
/// ```
#[derive(Clone)]
pub struct Informational(Arc<exchange::InformationalFn<'static>>);

impl Informational {
    /// A hook calling `f`.
    pub fn new(f: impl Fn(&Response<()>) + Send + Sync + 'static) -> Self {
        Informational(Arc::new(f))
    }
}

impl std::fmt::Debug for Informational {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Informational")
    }
}

/// An HTTP/1.x client with a connection pool per origin. Cheap to clone; clones
/// share the pools.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

type Pools = Arc<Mutex<HashMap<Origin, Arc<Pool>>>>;

/// The pools of a client and of each of its siblings ([`Client::sibling`]).
type Family = Arc<Mutex<Vec<std::sync::Weak<Mutex<HashMap<Origin, Arc<Pool>>>>>>>;

struct Inner {
    config: Arc<Config>,
    pools: Pools,
    family: Family,
    stats: Arc<Stats>,
    /// Whether the idle reaper runs (started with the first pool).
    reaper: AtomicBool,
    /// How the reaper hears of idle connections the server closes.
    watcher: Arc<pool::Watcher>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A client with the defaults.
    pub fn new() -> Client {
        Builder::default().build()
    }

    /// A builder.
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn with(config: Arc<Config>, stats: Arc<Stats>, family: Family) -> Client {
        let pools: Pools = Arc::default();
        family.lock().unwrap().push(Arc::downgrade(&pools));
        Client {
            inner: Arc::new(Inner {
                config,
                pools,
                family,
                stats,
                reaper: AtomicBool::new(false),
                watcher: Arc::default(),
            }),
        }
    }

    /// A client with this one's configuration and counters but pools of its
    /// own: one per worker ([`server::workers`](crate::server::workers)),
    /// as nginx keeps an upstream keep-alive cache per worker process, so a
    /// connection is only ever used by the worker that opened it. Clones
    /// share pools; siblings share none. The figures per origin below
    /// ([`Client::connection_counts`]...) are those of the whole family.
    pub fn sibling(&self) -> Client {
        Client::with(
            self.inner.config.clone(),
            self.inner.stats.clone(),
            self.inner.family.clone(),
        )
    }

    /// The client's counters (shared with its siblings).
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Connections open now to `origin` (idle, lent or connecting).
    pub fn open_connections(&self, origin: &Origin) -> usize {
        self.connection_counts(origin).0
    }

    /// Idle pooled connections to `origin` now.
    pub fn idle_connections(&self, origin: &Origin) -> usize {
        self.connection_counts(origin).1
    }

    /// Connections open to `origin` and how many of them are idle, each
    /// pool's read at one moment (so idle never exceeds open).
    pub fn connection_counts(&self, origin: &Origin) -> (usize, usize) {
        self.family_pools(origin)
            .iter()
            .map(|p| p.counts())
            .fold((0, 0), |(o, i), (po, pi)| (o + po, i + pi))
    }

    /// Stops using `origin` (a server that left its group), in this client
    /// and its siblings: its idle pooled connections close now; connections
    /// lent out close when their response ends. A later request to it
    /// starts a new pool.
    pub fn retire(&self, origin: &Origin) {
        for pools in self.family() {
            let pool = pools.lock().unwrap().remove(origin);
            if let Some(pool) = pool {
                pool.close_idle();
            }
        }
    }

    /// The idle timeout of `origin` as learned from its closes (the shortest
    /// idle time after which it was seen to close a connection), if any.
    pub fn learned_idle_timeout(&self, origin: &Origin) -> Option<Duration> {
        self.family_pools(origin)
            .iter()
            .filter_map(|p| p.learned_idle_timeout())
            .min()
    }

    /// Pooled connections to `origin` closed instead of reused because they
    /// had sat idle past its announced or learned idle timeout.
    pub fn retired_early(&self, origin: &Origin) -> u64 {
        self.family_pools(origin)
            .iter()
            .map(|p| p.retired_early.load(Ordering::Relaxed))
            .sum()
    }

    /// How long connections to `origin` took to open (`None` before its
    /// first one).
    pub fn connect_time(&self, origin: &Origin) -> Option<crate::metrics::histogram::Snapshot> {
        self.family_pools(origin)
            .iter()
            .map(|p| p.connect_time.snapshot())
            .reduce(|a, b| a.plus(&b))
    }

    /// The pools of this client and its siblings still in use.
    fn family(&self) -> Vec<Pools> {
        let mut family = self.inner.family.lock().unwrap();
        family.retain(|w| w.strong_count() > 0);
        family.iter().filter_map(std::sync::Weak::upgrade).collect()
    }

    /// The pools for `origin` of this client and its siblings.
    fn family_pools(&self, origin: &Origin) -> Vec<Arc<Pool>> {
        self.family()
            .iter()
            .filter_map(|pools| pools.lock().unwrap().get(origin).cloned())
            .collect()
    }

    /// The pool for `origin`: a lookup; created (and the reaper started
    /// with the first one) only on a miss.
    fn pool(&self, origin: &Origin) -> Arc<Pool> {
        let mut pools = self.inner.pools.lock().unwrap();
        if let Some(pool) = pools.get(origin) {
            return pool.clone();
        }
        let pool = Arc::new(Pool::new(
            origin.clone(),
            self.inner.config.clone(),
            self.inner.stats.clone(),
            self.inner.watcher.clone(),
        ));
        pools.insert(origin.clone(), pool.clone());
        drop(pools);
        if !self.inner.reaper.swap(true, Ordering::Relaxed) {
            let weak = Arc::downgrade(&self.inner.pools);
            let every = (self.inner.config.idle_timeout / 4)
                .clamp(Duration::from_millis(100), Duration::from_secs(5));
            tokio::spawn(pool::reaper(weak, every, self.inner.watcher.clone()));
        }
        pool
    }

    /// The origin of `uri`, with this client's TLS settings for `https`.
    fn origin_of(&self, uri: &http::Uri) -> Result<Origin, Error> {
        let mut origin = Origin::of(uri)?;
        if let (Some(tls), Some(mine)) = (&mut origin.tls, &self.inner.config.tls) {
            *tls = mine.clone();
        }
        Ok(origin)
    }

    /// Sends `req` (an absolute `http://` URI) and returns the response, whose
    /// body streams from the connection.
    ///
    /// The request is written while the response is read: a final response
    /// that comes before the body is all sent (a `413`, a `401`) is returned
    /// at once and the rest of the body is not sent (RFC 9112 §9.5). With
    /// `Expect: 100-continue` the body waits for the server's `100` (or
    /// [`Builder::expect_timeout`]). Informational (1xx) responses go to an
    /// [`Informational`] hook in the request's extensions, as they arrive.
    ///
    /// A request that fails on a reused connection before any response byte
    /// arrived is sent once more on a new connection when it is idempotent (or
    /// carries `Idempotency-Key`) and its body is not a stream.
    pub async fn request<B>(&self, req: Request<B>) -> Result<Response<ResponseBody>, Error>
    where
        B: Into<RequestBody>,
    {
        let (head, body) = req.into_parts();
        let origin = self.origin_of(&head.uri)?;
        let hook = head.extensions.get::<Informational>().cloned();
        let hook = hook.as_ref().map(|h| &*h.0 as _);
        match self
            .send_retrying(&origin, &head, body.into(), hook, &self.inner.stats.retries)
            .await
        {
            Ok(res) => Ok(res),
            Err(Failure::NotSent(e, _) | Failure::Sent(e) | Failure::Stale(e, _)) => Err(e),
        }
    }

    /// Sends a request to `origin` once more after [`Failure::Stale`]: the
    /// same origin on a new connection. Used by [`Client::request`] and the
    /// forward proxy; the reverse proxy tries the next upstream instead.
    pub(crate) async fn send_retrying(
        &self,
        origin: &Origin,
        head: &http::request::Parts,
        body: RequestBody,
        on_informational: OnInformational<'_>,
        retries: &AtomicU64,
    ) -> Result<Response<ResponseBody>, Failure> {
        match self.send(origin, head, body, false, on_informational).await {
            Err(Failure::Stale(e, again)) => {
                tracing::debug!(%origin, error = %e, "stale pooled connection; retrying on a new connection");
                retries.fetch_add(1, Ordering::Relaxed);
                match self.send(origin, head, again, true, on_informational).await {
                    // At most once.
                    Err(Failure::Stale(e, _)) => Err(Failure::Sent(e)),
                    other => other,
                }
            }
            other => other,
        }
    }

    /// One attempt under the retry rules ([`retry`]), the one place they are
    /// applied: a connection from the pool (a new one if `fresh`), the
    /// request, the response head.
    ///
    /// A failure to connect gives the body back unsent ([`Failure::NotSent`]).
    /// A pooled connection found closed before any byte of the response,
    /// with an idempotent request and a replayable body (and retries on),
    /// gives [`Failure::Stale`] with the body to send again.
    pub(crate) async fn send(
        &self,
        origin: &Origin,
        head: &http::request::Parts,
        body: RequestBody,
        fresh: bool,
        on_informational: OnInformational<'_>,
    ) -> Result<Response<ResponseBody>, Failure> {
        let idempotent = retry::is_idempotent(&head.method, &head.headers);
        let spare = if self.inner.config.retry && idempotent {
            body.try_clone()
        } else {
            None
        };
        let may_probe = spare.is_some();
        match self
            .send_once(origin, head, body, fresh, may_probe, on_informational)
            .await
        {
            Err(Failure::Sent(e)) if retry::may_retry(&e, idempotent) => match spare {
                Some(again) => Err(Failure::Stale(e, again)),
                None => Err(Failure::Sent(e)),
            },
            other => other,
        }
    }

    /// One attempt: a connection from the pool (a new one if `fresh`), the
    /// request, the response head. A failure to connect gives the body back,
    /// unsent, so a caller may try it elsewhere.
    async fn send_once(
        &self,
        origin: &Origin,
        head: &http::request::Parts,
        body: RequestBody,
        fresh: bool,
        may_probe: bool,
        on_informational: OnInformational<'_>,
    ) -> Result<Response<ResponseBody>, Failure> {
        let pool = self.pool(origin);
        let mut checkout = match pool.checkout(fresh, may_probe).await {
            Ok(c) => c,
            Err(e) => return Err(Failure::NotSent(e, body)),
        };
        let config = &self.inner.config;
        let timeouts = exchange::Timeouts {
            response: config.response_timeout,
            send: config.send_timeout,
            expect: config.expect_timeout,
        };
        let sent = checkout
            .conn_mut()
            .send(head, body, timeouts, on_informational)
            .await;
        // What the pool learns of its server's idle timeout and round trip.
        let answered = match &sent {
            Ok(_) => Some(true),
            Err(e) if e.is_closed_before_response() => Some(false),
            Err(_) => None,
        };
        if let (Some(idle), Some(answered)) = (checkout.reused_after(), answered) {
            checkout.pool().reuse_outcome(idle, answered);
        }
        if let Some(rtt) = checkout.conn_mut().round_trip.take() {
            checkout.pool().round_trip(rtt);
        }
        let (mut res, framing) = sent.map_err(Failure::Sent)?;
        if head.extensions.get::<crate::access::Wanted>().is_some() {
            // A connection from the pool was idle for a while before.
            let reused = checkout.reused_after().is_some();
            let connect_time = checkout.conn_mut().connect_time.filter(|_| !reused);
            res.extensions_mut().insert(crate::access::ConnUsed {
                reused,
                connect_time,
            });
        }
        if framing != proto::Framing::None {
            let size = match framing.exact_len() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            };
            let body = ResponseBody {
                checkout: Some(checkout),
                size,
                idle_timeout: self.inner.config.response_timeout,
                timer: None,
            };
            return Ok(res.map(|()| body));
        }
        // The end follows the head at once: the connection goes back (or, after
        // a protocol switch, to the caller) before anything is read.
        let _ = std::future::poll_fn(|cx| checkout.conn_mut().poll_body(cx)).await;
        let mut res = res.map(|()| ResponseBody::empty());
        match checkout.into_upgraded() {
            Ok(upgraded) => {
                res.extensions_mut()
                    .insert(ClientUpgrade(Arc::new(Mutex::new(Some(upgraded)))));
            }
            Err(checkout) => checkout.release(),
        }
        Ok(res)
    }

    /// Sends idempotent requests pipelined on one connection known to be
    /// persistent, reading every response whole. If the server closes
    /// mid-pipeline, the requests it left unanswered are sent again on a new
    /// connection. Results come back in request order.
    ///
    /// A connection is known to be persistent once it has carried a keep-alive
    /// response; on a new connection the first request goes alone.
    /// Non-idempotent requests and streamed bodies are refused (an error in
    /// their place).
    pub async fn pipeline<B>(
        &self,
        requests: Vec<Request<B>>,
    ) -> Vec<Result<Response<Bytes>, Error>>
    where
        B: Into<RequestBody>,
    {
        let mut results: Vec<Option<Result<Response<Bytes>, Error>>> = Vec::new();
        let mut pending: Vec<(usize, http::request::Parts, RequestBody)> = Vec::new();
        let mut origin = None;
        for (i, req) in requests.into_iter().enumerate() {
            let (head, body) = req.into_parts();
            let body: RequestBody = body.into();
            results.push(None);
            let refused = if !retry::is_idempotent(&head.method, &head.headers) {
                Some("pipelining needs idempotent requests")
            } else if body.try_clone().is_none() {
                Some("pipelining needs bodies held in memory")
            } else {
                None
            };
            let this_origin = self.origin_of(&head.uri);
            match (refused, this_origin) {
                (Some(why), _) => results[i] = Some(Err(Error::new(Kind::Request(why)))),
                (None, Err(e)) => results[i] = Some(Err(e)),
                (None, Ok(o)) if origin.as_ref().is_some_and(|first| *first != o) => {
                    results[i] = Some(Err(Error::new(Kind::Request(
                        "pipelined requests share one origin",
                    ))))
                }
                (None, Ok(o)) => {
                    origin = Some(o);
                    pending.push((i, head, body));
                }
            }
        }
        if let Some(origin) = origin {
            let pool = self.pool(&origin);
            let mut pending: VecDeque<_> = pending.into();
            while !pending.is_empty() {
                self.pipeline_round(&pool, &mut pending, &mut results).await;
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::new(Kind::Request("not sent")))))
            .collect()
    }

    /// One connection's worth of a pipeline: answers what it can and leaves the
    /// unanswered requests in `pending`.
    async fn pipeline_round(
        &self,
        pool: &Arc<Pool>,
        pending: &mut VecDeque<(usize, http::request::Parts, RequestBody)>,
        results: &mut [Option<Result<Response<Bytes>, Error>>],
    ) {
        let mut checkout = match pool.checkout(false, false).await {
            Ok(c) => c,
            Err(e) => {
                let (i, _, _) = pending.pop_front().expect("pending is not empty");
                results[i] = Some(Err(e));
                return;
            }
        };
        let known_persistent = checkout.conn_mut().is_reused();
        // On a connection not yet known to persist, one request goes alone.
        let batch = if known_persistent { pending.len() } else { 1 };
        let sent: Vec<(usize, http::request::Parts, RequestBody)> =
            pending.drain(..batch).collect();
        let wire = sent.iter().map(|(_, head, body)| (head, body));
        if let Err(e) = checkout.conn_mut().send_all(wire).await {
            // Nothing answered: all go back, unless the connection was new
            // (then the first fails, so a server that never answers cannot
            // loop this forever).
            self.requeue(sent, pending, results, known_persistent, e);
            return;
        }
        let mut answered = 0;
        for (i, _, _) in &sent {
            match checkout.conn_mut().read_whole().await {
                Ok(Some(res)) => {
                    results[*i] = Some(Ok(res));
                    answered += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    results[*i] = Some(Err(e));
                    answered += 1;
                    break;
                }
            }
        }
        let unanswered: Vec<_> = sent.into_iter().skip(answered).collect();
        if unanswered.is_empty() {
            checkout.release();
            return;
        }
        drop(checkout);
        if answered > 0 {
            self.inner
                .stats
                .retries
                .fetch_add(unanswered.len() as u64, Ordering::Relaxed);
            for item in unanswered.into_iter().rev() {
                pending.push_front(item);
            }
        } else {
            let e = Error::new(Kind::ClosedBeforeResponse {
                reused: known_persistent,
                request_written: true,
            });
            self.requeue(unanswered, pending, results, known_persistent, e);
        }
    }

    /// Puts requests that got no answer back in line; on a connection that was
    /// new, the first of them fails with `e` instead (it made no progress).
    fn requeue(
        &self,
        sent: Vec<(usize, http::request::Parts, RequestBody)>,
        pending: &mut VecDeque<(usize, http::request::Parts, RequestBody)>,
        results: &mut [Option<Result<Response<Bytes>, Error>>],
        retryable: bool,
        e: Error,
    ) {
        let mut sent = sent.into_iter();
        if !retryable {
            if let Some((i, _, _)) = sent.next() {
                results[i] = Some(Err(e));
            }
        } else {
            self.inner
                .stats
                .retries
                .fetch_add(sent.len() as u64, Ordering::Relaxed);
        }
        for item in sent.rev() {
            pending.push_front(item);
        }
    }
}

use std::collections::VecDeque;
