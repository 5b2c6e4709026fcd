//! The explicit (forward) proxy: clients that know they talk to a proxy send
//! absolute-form requests (`GET http://host:port/path`) and `CONNECT host:port`.
//!
//! ```text
//!  request ─▶ authenticate  Proxy-Authorization: Basic, when credentials are
//!                           set (407 + Proxy-Authenticate otherwise); consumed
//!          ─▶ target        absolute-form or CONNECT authority (400 otherwise)
//!          ─▶ policy        resolve once; private and loopback ranges denied
//!                           unless allowed; CONNECT ports allow-listed (403)
//!          ─▶ absolute-form rewrite (hop-by-hop out, Proxy-Connection out,
//!                           Host from the target), send in origin-form through
//!                           the pool to the address just checked (a stale
//!                           pooled connection retried as the client does)
//!          ─▶ CONNECT       connect, `200 Connection established`, then bytes
//!                           both ways, half-close passed through
//! ```
//!
//! The client hop's persistence follows its `Proxy-Connection` as well as its
//! `Connection` (serve it with
//! [`Builder::honour_proxy_connection`](crate::server::Builder::honour_proxy_connection));
//! no hop-by-hop field crosses, so the "dumb proxy" hang of HTTP/1.0
//! `Connection: keep-alive` relayed blindly cannot happen.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use http::header::{HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION};
use http::{HeaderValue, Method, Request, Response, StatusCode};

use super::forward::{self, Forwarding};
use super::respond::{gateway_error, max_forwards, plain, relay_informational, ProxyBody};
use crate::body::Incoming;
use crate::client::connect::connect_tcp_within;
use crate::client::{Client, Failure, Origin, RequestBody};
use crate::upgrade::{on_upgrade, tunnel, Upgraded};

/// Where an explicit proxy may take its clients.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Whether loopback, private, link-local and other non-public addresses
    /// may be reached. Default false.
    pub allow_private: bool,
    /// Ports CONNECT may reach. Default `[443]`.
    pub connect_ports: Vec<u16>,
    /// Time allowed to connect a tunnel. Default 10 s.
    pub connect_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow_private: false,
            connect_ports: vec![443],
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// `user:password` pairs accepted in `Proxy-Authorization: Basic`.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    users: HashMap<String, String>,
}

impl Credentials {
    /// Reads `user:password` lines (blank lines and `#` comments skipped).
    pub fn parse(text: &str) -> Result<Credentials, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, password) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected user:password", i + 1))?;
            users.insert(user.to_string(), password.to_string());
        }
        Ok(Credentials { users })
    }

    /// Whether a `Proxy-Authorization` value names a known user and password.
    pub fn accept(&self, value: &HeaderValue) -> bool {
        let Some(encoded) = value.to_str().ok().and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        }) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(pair) = String::from_utf8(decoded) else {
            return false;
        };
        pair.split_once(':')
            .is_some_and(|(u, p)| self.users.get(u).is_some_and(|known| known == p))
    }
}

/// The methods the forward proxy passes on (`Allow` in its own answers).
const ALLOW: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT";

/// The explicit proxy service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ForwardProxy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    policy: Policy,
    credentials: Option<Credentials>,
    forwarding: Forwarding,
}

impl ForwardProxy {
    /// A forward proxy sending through `client`. It adds `Via` but no
    /// `X-Forwarded-*` (a forward proxy does not announce its clients).
    pub fn new(client: Client, policy: Policy, credentials: Option<Credentials>) -> ForwardProxy {
        ForwardProxy {
            inner: Arc::new(Inner {
                client,
                policy,
                credentials,
                forwarding: Forwarding {
                    via: Some("drainpipe".into()),
                    x_forwarded: false,
                },
            }),
        }
    }

    /// This forward proxy as a worker runs it: the same policy and
    /// credentials, with connection pools of its own
    /// ([`Client::sibling`]; see [`Proxy::for_worker`](super::Proxy::for_worker)).
    pub fn for_worker(&self) -> ForwardProxy {
        let inner = &self.inner;
        ForwardProxy {
            inner: Arc::new(Inner {
                client: inner.client.sibling(),
                policy: inner.policy.clone(),
                credentials: inner.credentials.clone(),
                forwarding: inner.forwarding.clone(),
            }),
        }
    }

    /// The client carrying the forwarded requests.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    async fn handle(&self, mut req: Request<Incoming>) -> Response<ProxyBody> {
        if let Some(credentials) = &self.inner.credentials {
            let ok = req
                .headers()
                .get(PROXY_AUTHORIZATION)
                .is_some_and(|v| credentials.accept(v));
            if !ok {
                let mut res = plain(
                    StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                    "proxy credentials required",
                );
                res.headers_mut().insert(
                    PROXY_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"drainpipe\""),
                );
                return res;
            }
        }
        req.headers_mut().remove(PROXY_AUTHORIZATION);
        let method = req.method().clone();
        if let Some(answer) = max_forwards(&method, req.headers_mut(), ALLOW) {
            return answer;
        }
        let Some(authority) = req.uri().authority().cloned() else {
            return plain(
                StatusCode::BAD_REQUEST,
                "this is a proxy: send absolute-form requests (http://host/path) or CONNECT",
            );
        };
        let is_connect = req.method() == Method::CONNECT;
        if !is_connect && req.uri().scheme_str() == Some("https") {
            // A client asking the proxy to speak TLS for it: clients tunnel
            // https through CONNECT, so their TLS runs end to end.
            return plain(
                StatusCode::BAD_REQUEST,
                "https:// targets go through a CONNECT tunnel (CONNECT host:443), not absolute-form requests",
            );
        }
        if !is_connect && req.uri().scheme_str() != Some("http") {
            return plain(
                StatusCode::BAD_REQUEST,
                "only http:// targets (use CONNECT for others)",
            );
        }
        let port = authority
            .port_u16()
            .unwrap_or(if is_connect { 443 } else { 80 });
        if is_connect && !self.inner.policy.connect_ports.contains(&port) {
            return plain(
                StatusCode::FORBIDDEN,
                &format!("CONNECT to port {port} is not allowed"),
            );
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let addr = match self.resolve(&host, port).await {
            Ok(addr) => addr,
            Err(res) => return res,
        };
        if is_connect {
            self.connect(req, addr).await
        } else {
            self.forward(req, addr).await
        }
    }

    /// Resolves the target once and applies the address policy; the address
    /// returned is the one connected to (no second lookup to race).
    async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, Response<ProxyBody>> {
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
            Ok(a) => a.collect(),
            Err(_) => {
                return Err(plain(
                    StatusCode::BAD_GATEWAY,
                    &format!("cannot resolve {host}"),
                ))
            }
        };
        let Some(first) = addrs.first().copied() else {
            return Err(plain(
                StatusCode::BAD_GATEWAY,
                &format!("cannot resolve {host}"),
            ));
        };
        if !self.inner.policy.allow_private {
            if let Some(denied) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(plain(
                    StatusCode::FORBIDDEN,
                    &format!("destination {} is a private or local address", denied.ip()),
                ));
            }
        }
        Ok(first)
    }

    async fn connect(&self, mut req: Request<Incoming>, addr: SocketAddr) -> Response<ProxyBody> {
        let Some(down) = on_upgrade(&mut req) else {
            return plain(
                StatusCode::BAD_REQUEST,
                "CONNECT without a connection to hand over",
            );
        };
        let target = Origin {
            host: addr.ip().to_string(),
            port: addr.port(),
            tls: None,
        };
        let stream = match connect_tcp_within(&target, self.inner.policy.connect_timeout).await {
            Ok(s) => s,
            Err(e) if e.is_timeout() => {
                return plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!("connecting to {addr} timed out"),
                )
            }
            Err(e) => {
                return plain(
                    StatusCode::BAD_GATEWAY,
                    &format!("cannot connect to {addr}: {e}"),
                )
            }
        };
        let up = Upgraded {
            stream: Box::new(stream),
            read_buf: bytes::Bytes::new(),
        };
        tokio::spawn(async move {
            if let Ok(down) = down.await {
                if let Err(e) = tunnel(down, up).await {
                    tracing::debug!(error = %e, "CONNECT tunnel ended");
                }
            }
        });
        let mut res = Response::new(ProxyBody::empty());
        if let Some(reason) = proto::head::write::ReasonPhrase::new("Connection established") {
            res.extensions_mut().insert(reason);
        }
        res
    }

    async fn forward(&self, req: Request<Incoming>, addr: SocketAddr) -> Response<ProxyBody> {
        let received = req.version();
        let info = req.body().conn_info();
        let peer = info.and_then(|c| c.peer);
        let tls = info.is_some_and(|c| c.tls);
        let interim = req.body().interim();
        let relay = |res: &Response<()>| relay_informational(interim.as_ref(), res);
        let (mut head, body) = req.into_parts();
        let added = forward::forwarded_request(
            &mut head.headers,
            &self.inner.forwarding,
            peer,
            tls,
            received,
            false,
        );
        forward::to_next_hop(&mut head, added);
        head.version = http::Version::HTTP_11;
        // RFC 9112 §3.2.2: the target's authority is the Host sent on.
        if let Some(host) = proto::fields::request_host(&head.uri, &head.headers)
            .and_then(|h| HeaderValue::from_bytes(h).ok())
        {
            head.headers.insert(HOST, host);
        }
        // Sent in origin-form (the URI's path and query) to the address that
        // passed the policy, not to the name again.
        let origin = Origin {
            host: addr.ip().to_string(),
            port: addr.port(),
            tls: None,
        };
        let client = &self.inner.client;
        let sent_at = std::time::Instant::now();
        let retried = std::sync::atomic::AtomicU64::new(0);
        let sent = client
            .send_retrying(
                &origin,
                &head,
                RequestBody::stream(body),
                Some(&relay),
                &retried,
            )
            .await;
        let retries = retried.load(std::sync::atomic::Ordering::Relaxed);
        client
            .stats()
            .retries
            .fetch_add(retries, std::sync::atomic::Ordering::Relaxed);
        match sent {
            Ok(mut res) => {
                if head.extensions.get::<crate::access::Wanted>().is_some() {
                    let conn = res.extensions_mut().remove::<crate::access::ConnUsed>();
                    res.extensions_mut().insert(crate::access::Upstream {
                        addr: origin.to_string().into(),
                        connect_time: conn.and_then(|c| c.connect_time),
                        response_time: sent_at.elapsed(),
                        reused: conn.is_some_and(|c| c.reused),
                        retries: u32::try_from(retries).unwrap_or(u32::MAX),
                    });
                }
                let (mut head, body) = res.into_parts();
                forward::response_fields(&mut head, &self.inner.forwarding, received, false);
                head.version = http::Version::HTTP_11;
                Response::from_parts(head, ProxyBody::upstream(body))
            }
            Err(Failure::NotSent(e, _) | Failure::Sent(e) | Failure::Stale(e, _)) => {
                gateway_error(&e)
            }
        }
    }
}

/// Whether an address is on the public internet: not loopback, private,
/// link-local, shared (CGNAT), unspecified, multicast, documentation, or an
/// IPv4 address hidden in IPv6.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

impl tower_service::Service<Request<Incoming>> for ForwardProxy {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let proxy = self.clone();
        Box::pin(async move { Ok(proxy.handle(req).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_private_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:2800:220:1::1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn basic_credentials() {
        let c = Credentials::parse("# users\nalice:s3cret\n\nbob:x:y\n").unwrap();
        let header = |user_pass: &str| {
            HeaderValue::from_str(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(user_pass)
            ))
            .unwrap()
        };
        assert!(c.accept(&header("alice:s3cret")));
        assert!(c.accept(&header("bob:x:y")));
        assert!(!c.accept(&header("alice:wrong")));
        assert!(!c.accept(&header("carol:s3cret")));
        assert!(!c.accept(&HeaderValue::from_static("Bearer abc")));
        assert!(!c.accept(&HeaderValue::from_static("Basic !!!")));
        assert!(Credentials::parse("no-colon\n")
            .unwrap_err()
            .contains("line 1"));
    }
}
