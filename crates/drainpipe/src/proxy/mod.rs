//! The reverse proxy: a `tower::Service` for the drainpipe server that
//! forwards each request through the client's pools to an upstream group.
//!
//! # Phases of one request
//!
//! ```text
//!  request ─▶ route      host + longest path prefix → upstream group (none: 404)
//!          ─▶ rewrite    hop-by-hop out, Via / X-Forwarded-* in (forward.rs)
//!          ─▶ pick       round robin / least connections over fit upstreams
//!          ─▶ send       through the pool of that upstream (Client::send)
//!               │ stale pooled connection, idempotent,
//!               │   replayable body     → once more on a new connection to
//!               │                         the same upstream (the client's rule)
//!               │ connect failed (nothing sent)        → next upstream
//!               │ anything else                        → 502 (504: timeout)
//!          ─▶ respond    hop-by-hop out, Via in; the body streams through,
//!                        re-framed by each hop; a truncated upstream body
//!                        aborts the client connection (never a clean end)
//!          ─▶ tunnel     after 101: bytes both ways (tunnel.rs)
//! ```
//!
//! Before `route`: CONNECT gets 405 (the forward proxy opens tunnels); an
//! OPTIONS or TRACE with `Max-Forwards: 0` is answered here (OPTIONS: 200 with
//! `Allow`; TRACE: 405, drainpipe echoes nothing), otherwise the field goes on
//! less one (RFC 9110 §7.6.2). `OPTIONS *` is routed as `/` and goes upstream
//! in asterisk-form, so the upstream describes itself.
//!
//! During `send` (the client's exchange, `client/exchange.rs`): the request
//! is written while the response is read, so an upstream's early final
//! answer (a 413 while the body uploads) is relayed at once and the rest of
//! the body is not forwarded (RFC 9112 §9.5); `Expect: 100-continue` goes on
//! upstream and the upstream's `100` (or its refusal) comes back; every 1xx
//! the upstream sends is relayed to an HTTP/1.1 client in order, through the
//! server's [`Interim`](crate::server::Interim) handle (RFC 9110 §15.2). Waits are bounded: connect,
//! a write making no progress (send timeout, 60 s), the response head and
//! each body read (response timeout, 60 s) → 504. drainpipe always speaks
//! HTTP/1.1 upstream, so it never answers `417` for an HTTP/1.0 next hop; an
//! upstream that ignores the expectation gets the body after 1 s.
//!
//! Persistence is per hop: the client's `Connection: close` closes the client
//! connection only; the upstream connection goes back to its pool, and an
//! upstream close does not close the client's connection.
//!
//! # Heads without a header map
//!
//! Most fields pass through a proxy unread, so neither direction builds an
//! `http::HeaderMap` for them beyond what the server already parsed. The
//! fields this hop adds (`Via`, `X-Forwarded-*`) travel to the client as a
//! [`proto::Relay`] in the request's extensions, written after the map.
//! The upstream's response is asked for as lines ([`proto::Relay`]):
//! its head is parsed and checked as strictly as any, and its end-to-end
//! field lines (hop-by-hop ones and those its `Connection` names left out)
//! are copied once, in their order and case, into a `FieldLines` in the
//! response's extensions; the response's header map is empty. A layer that
//! wants typed response fields calls [`FieldLines::append_to`](proto::FieldLines::append_to);
//! whatever it puts in the map is written before the lines.

pub mod explicit;
mod forward;
pub mod resolve;
pub(crate) mod respond;
mod tunnel;
pub mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HOST;
use http::{HeaderValue, Request, Response, StatusCode};

pub use explicit::{Credentials, ForwardProxy, Policy};
pub use forward::{forwarded_request, request_fields, response_fields, Forwarding};
pub use resolve::Resolver;
pub use respond::ProxyBody;
pub use upstream::{Balance, Ejection, Group, HealthCheck, Upstream};

use crate::body::Incoming;
use crate::client::{Client, Failure, RequestBody, ResponseBody};
use crate::error::Error;
use crate::metrics::upstream::UpstreamError;
use respond::{gateway_error, max_forwards, plain, relay_informational};
use upstream::InFlight;

/// A route: requests for `host` (any host when `None`) whose path starts with
/// `path_prefix` go to `group`.
#[derive(Debug, Clone)]
pub struct Route {
    /// The host matched (case-insensitive, port ignored); `None` matches any.
    pub host: Option<String>,
    /// The path prefix matched; the longest matching prefix wins.
    pub path_prefix: String,
    /// Where matching requests go.
    pub group: Arc<Group>,
}

/// Counters of a proxy.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests forwarded (attempts that got a response head).
    pub forwarded: AtomicU64,
    /// Requests sent again: to another upstream after a failed connect, or
    /// to the same one on a new connection after a stale pooled one.
    pub retries: AtomicU64,
    /// Requests answered 502 or 504 by the proxy.
    pub gateway_errors: AtomicU64,
}

/// Builds a [`Proxy`].
#[derive(Debug, Default)]
pub struct Builder {
    routes: Vec<Route>,
    client: Option<Client>,
    forwarding: Forwarding,
    preserve_host: bool,
}

impl Builder {
    /// Adds a route.
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// The client whose pools carry upstream requests (default: a new one).
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// What is added to forwarded messages (`Via`, `X-Forwarded-*`).
    pub fn forwarding(mut self, forwarding: Forwarding) -> Self {
        self.forwarding = forwarding;
        self
    }

    /// Whether the client's `Host` is sent upstream unchanged (default true);
    /// otherwise `Host` names the upstream.
    pub fn preserve_host(mut self, on: bool) -> Self {
        self.preserve_host = on;
        self
    }

    /// The proxy. Starts the groups' health checks (call inside a runtime).
    pub fn build(self) -> Proxy {
        let client = self.client.unwrap_or_default();
        let mut seen: Vec<*const Group> = Vec::new();
        for route in &self.routes {
            let ptr = Arc::as_ptr(&route.group);
            if !seen.contains(&ptr) {
                seen.push(ptr);
                route.group.start_health_checks(client.clone());
                route.group.start_resolving(client.clone());
            }
        }
        Proxy {
            inner: Arc::new(Inner {
                routes: self.routes,
                client,
                forwarding: self.forwarding,
                preserve_host: self.preserve_host,
                stats: Arc::default(),
            }),
        }
    }
}

/// The reverse proxy service; see the [module docs](self). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    routes: Vec<Route>,
    client: Client,
    forwarding: Forwarding,
    preserve_host: bool,
    stats: Arc<Stats>,
}

impl Proxy {
    /// A builder (hosts preserved, `Via` and `X-Forwarded-*` added).
    pub fn builder() -> Builder {
        Builder {
            preserve_host: true,
            ..Builder::default()
        }
    }

    /// This proxy as a worker runs it ([`crate::server::workers`]): the
    /// same routes, upstream groups (their health, ejections and DNS stay
    /// shared, checked once for all workers) and counters, with upstream
    /// pools of its own ([`Client::sibling`]). Call it on the worker: the
    /// pools' housekeeping runs where they are first used.
    pub fn for_worker(&self) -> Proxy {
        let inner = &self.inner;
        Proxy {
            inner: Arc::new(Inner {
                routes: inner.routes.clone(),
                client: inner.client.sibling(),
                forwarding: inner.forwarding.clone(),
                preserve_host: inner.preserve_host,
                stats: inner.stats.clone(),
            }),
        }
    }

    /// The proxy's counters (shared by its workers).
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The client carrying upstream requests (its stats show upstream
    /// connections opened and reused).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The upstream groups its routes lead to, each once.
    pub fn groups(&self) -> Vec<Arc<Group>> {
        let mut groups: Vec<Arc<Group>> = Vec::new();
        for route in &self.inner.routes {
            if !groups.iter().any(|g| Arc::ptr_eq(g, &route.group)) {
                groups.push(route.group.clone());
            }
        }
        groups
    }

    fn route(&self, req: &Request<Incoming>) -> Option<&Route> {
        let host = req
            .uri()
            .host()
            .or_else(|| {
                let value = req.headers().get(HOST)?.to_str().ok()?;
                Some(host_name(value))
            })
            .unwrap_or_default();
        // `OPTIONS *` asks about the server as a whole: it goes where `/`
        // goes (and upstream in asterisk-form).
        let path = match req.uri().path() {
            "*" => "/",
            path => path,
        };
        self.inner
            .routes
            .iter()
            .filter(|r| r.host.as_ref().is_none_or(|h| h.eq_ignore_ascii_case(host)))
            .filter(|r| path.starts_with(&r.path_prefix))
            .max_by_key(|r| (r.path_prefix.len(), r.host.is_some()))
    }
}

/// The host name of a `Host` value: without its port, an IP literal with its
/// brackets (`[::1]:8080` → `[::1]`, as `Uri::host` gives it).
fn host_name(value: &str) -> &str {
    if value.starts_with('[') {
        return value.find(']').map_or(value, |end| &value[..=end]);
    }
    value.rsplit_once(':').map_or(value, |(name, _)| name)
}

impl tower_service::Service<Request<Incoming>> for Proxy {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let proxy = self.clone();
        Box::pin(async move { Ok(proxy.forward(req).await) })
    }
}

/// The methods the reverse proxy passes on (`Allow` in its own answers).
const ALLOW: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

impl Proxy {
    async fn forward(&self, mut req: Request<Incoming>) -> Response<ProxyBody> {
        if req.method() == http::Method::CONNECT {
            // A reverse proxy opens no tunnels (the forward proxy does).
            let mut res = plain(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not served here");
            res.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static(ALLOW));
            return res;
        }
        let method = req.method().clone();
        if let Some(answer) = max_forwards(&method, req.headers_mut(), ALLOW) {
            return answer;
        }
        // RFC 9112 §3.2.2: the Host sent on is the request's host as proto
        // defines it. Only an absolute-form target can make that differ from
        // the received Host (which it then replaces).
        if req.uri().authority().is_some() {
            if let Some(host) = proto::fields::request_host(req.uri(), req.headers())
                .and_then(|h| HeaderValue::from_bytes(h).ok())
            {
                req.headers_mut().insert(HOST, host);
            }
        }
        let Some(route) = self.route(&req) else {
            return plain(StatusCode::NOT_FOUND, "no route for this request");
        };
        let group = route.group.clone();
        let received = req.version();
        let info = req.body().conn_info();
        let peer = info.and_then(|c| c.peer);
        let tls = info.is_some_and(|c| c.tls);
        // 1xx from the upstream go on to the client as they come (RFC 9110
        // §15.2); the server writes none to an HTTP/1.0 client.
        let interim = req.body().interim();
        let relay = |res: &Response<()>| relay_informational(interim.as_ref(), res);
        let on_upgrade = crate::upgrade::on_upgrade(&mut req);
        let (mut head, body) = req.into_parts();
        let tunnel = on_upgrade.is_some() && head.method != http::Method::CONNECT;
        let added = forward::forwarded_request(
            &mut head.headers,
            &self.inner.forwarding,
            peer,
            tls,
            received,
            tunnel,
        );
        forward::to_next_hop(&mut head, added);
        head.version = http::Version::HTTP_11;
        let mut body = RequestBody::stream(body);
        let mut tried: Vec<usize> = Vec::new();
        let mut last_error: Option<Error> = None;
        // A failed connect or a stale pooled connection (the client's retry
        // rules allowed a replay) goes on to the next upstream; when none is
        // left, a stale one's upstream gets the request once more on a new
        // connection.
        let mut again: Option<usize> = None;
        let members = group.upstreams();
        loop {
            let (index, mut in_flight) = match group.pick(&members, &tried) {
                Some(picked) => picked,
                None => match again.take() {
                    Some(index) => (index, Group::pick_again(&members, index)),
                    None => break,
                },
            };
            let fresh = tried.contains(&index);
            tried.push(index);
            let upstream = in_flight.upstream().clone();
            let origin = upstream.origin();
            // The request goes to `origin` as is: its target is written in
            // origin-form from the URI's path and query.
            if !self.inner.preserve_host || !head.headers.contains_key(HOST) {
                if let Some(host) = upstream.host_value() {
                    head.headers.insert(HOST, host.clone());
                }
            }
            match self
                .inner
                .client
                .send(origin, &head, body, fresh, Some(&relay))
                .await
            {
                Ok(mut res) => {
                    upstream.succeeded();
                    let response_time = in_flight.answered(res.status());
                    if head.extensions.get::<crate::access::Wanted>().is_some() {
                        let conn = res.extensions_mut().remove::<crate::access::ConnUsed>();
                        res.extensions_mut().insert(crate::access::Upstream {
                            addr: upstream.addr().clone(),
                            connect_time: conn.and_then(|c| c.connect_time),
                            response_time,
                            reused: conn.is_some_and(|c| c.reused),
                            retries: (tried.len() - 1) as u32,
                        });
                    }
                    self.inner.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    return self.respond(res, in_flight, received, on_upgrade);
                }
                Err(Failure::NotSent(e, unsent)) => {
                    // Nothing reached this upstream: any request may go on.
                    upstream.failed(&group.ejection);
                    in_flight.failed(UpstreamError::Connect);
                    tracing::warn!(upstream = %origin, error = %e, "upstream connect failed");
                    body = unsent;
                    last_error = Some(e);
                }
                Err(Failure::Sent(e)) => {
                    upstream.failed(&group.ejection);
                    in_flight.failed(if e.is_timeout() {
                        UpstreamError::Timeout
                    } else {
                        UpstreamError::Response
                    });
                    return self.gateway_error(&e);
                }
                Err(Failure::Stale(e, replay)) => {
                    // The connection was stale, not the upstream at fault:
                    // no mark towards ejection.
                    in_flight.failed(UpstreamError::Stale);
                    tracing::debug!(upstream = %origin, error = %e, "stale upstream connection; retrying");
                    body = replay;
                    last_error = Some(e);
                    if !fresh {
                        again = Some(index);
                    }
                }
            }
            self.inner.stats.retries.fetch_add(1, Ordering::Relaxed);
        }
        match last_error {
            Some(e) => self.gateway_error(&e),
            None => plain(StatusCode::BAD_GATEWAY, "no upstream"),
        }
    }

    fn respond(
        &self,
        res: Response<ResponseBody>,
        in_flight: InFlight,
        received: http::Version,
        on_upgrade: Option<crate::upgrade::OnUpgrade>,
    ) -> Response<ProxyBody> {
        let mut res = res;
        let switching = res.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            match (on_upgrade, crate::upgrade::take_upgraded(&mut res)) {
                (Some(down), Some(up)) => tunnel::spawn(down, up),
                _ => {
                    return plain(
                        StatusCode::BAD_GATEWAY,
                        "upstream switched protocols unasked",
                    )
                }
            }
        }
        let (mut head, body) = res.into_parts();
        forward::response_fields(&mut head, &self.inner.forwarding, received, switching);
        head.version = http::Version::HTTP_11;
        Response::from_parts(head, ProxyBody::counted(body, in_flight))
    }

    /// [`gateway_error`], counted and logged.
    fn gateway_error(&self, e: &Error) -> Response<ProxyBody> {
        self.inner
            .stats
            .gateway_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, "upstream request failed");
        gateway_error(e)
    }
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_name_drops_the_port_and_keeps_ip_literals_whole() {
        assert_eq!(host_name("example.com:8080"), "example.com");
        assert_eq!(host_name("example.com"), "example.com");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("127.0.0.1:80"), "127.0.0.1");
    }
}
