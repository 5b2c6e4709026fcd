//! The reverse proxy over real sockets: hop-by-hop fields checked at the origin
//! and at the client, persistence per hop, re-framing, truncation, several
//! upstreams, retries, ejection, health checks, upgrade tunnels, reuse.

mod support;

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use drainpipe::body::Incoming;
use drainpipe::client::{Client, Origin};
use drainpipe::proxy::{Balance, Ejection, Group, HealthCheck, Proxy, Route};
use drainpipe::server::{service_fn, Server};
use http_body_util::BodyExt;
use support::*;

fn origin(addr: std::net::SocketAddr) -> Origin {
    Origin {
        host: "127.0.0.1".into(),
        port: addr.port(),
        tls: None,
    }
}

fn group(addrs: &[std::net::SocketAddr], balance: Balance) -> Arc<Group> {
    Arc::new(Group::new(
        "g",
        addrs.iter().map(|a| origin(*a)).collect(),
        balance,
    ))
}

async fn proxy_to(group: Arc<Group>) -> (TestServer, Proxy) {
    proxy_with(Proxy::builder(), group).await
}

async fn proxy_with(builder: drainpipe::proxy::Builder, group: Arc<Group>) -> (TestServer, Proxy) {
    let proxy = builder
        .route(Route {
            host: None,
            path_prefix: "/".into(),
            group,
        })
        .build();
    let srv = TestServer::start(Server::builder(), proxy.clone()).await;
    (srv, proxy)
}

/// A proxy in front of `upstream` (one server) and a raw client connected
/// to it; the server and the proxy are returned so they live as long as the
/// test.
async fn client_through_proxy(upstream: std::net::SocketAddr) -> (TestServer, Proxy, Raw) {
    let (srv, proxy) = proxy_to(group(&[upstream], Balance::RoundRobin)).await;
    let c = Raw::connect(srv.addr).await;
    (srv, proxy, c)
}

/// An upstream that answers every request with its own name.
async fn named(name: &'static str) -> TestServer {
    let service = service_fn(move |_req: http::Request<Incoming>| async move {
        Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(Bytes::from(
            name,
        ))))
    });
    TestServer::start(Server::builder(), service).await
}

#[tokio::test]
async fn hop_by_hop_fields_never_cross_either_way() {
    let upstream = TestServer::origin(Server::builder()).await;
    let (srv, _proxy) = proxy_to(group(&[upstream.addr], Balance::RoundRobin)).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(
        b"GET /echo HTTP/1.1\r\nHost: app.example\r\nConnection: keep-alive, X-Secret\r\n\
X-Secret: 1\r\nKeep-Alive: timeout=9\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
Proxy-Authorization: Basic eA==\r\nUpgrade: h2c\r\nX-Keep: yes\r\n\r\n",
    )
    .await;
    let r = c.response().await;
    let echoed = r.body_str().to_lowercase();
    for gone in [
        "connection:",
        "x-secret",
        "keep-alive:",
        "proxy-connection",
        "te:",
        "proxy-authorization",
        "upgrade:",
    ] {
        assert!(
            !echoed.contains(&format!("\n{gone}")),
            "{gone} reached the origin:\n{echoed}"
        );
    }
    assert!(echoed.contains("\nx-keep: yes"), "{echoed}");
    assert!(
        echoed.contains("\nhost: app.example"),
        "host preserved: {echoed}"
    );
    assert!(echoed.contains("\nvia: 1.1 drainpipe"), "{echoed}");
    assert!(echoed.contains("\nx-forwarded-for: 127.0.0.1"), "{echoed}");
    assert!(
        echoed.contains("\nx-forwarded-host: app.example"),
        "{echoed}"
    );
    assert!(echoed.contains("\nx-forwarded-proto: http"), "{echoed}");
    assert_eq!(r.header("via").as_deref(), Some("1.1 drainpipe"));

    // Response side: an upstream that sends hop-by-hop fields.
    let raw = raw_server(|_, mut c| async move {
        while c.request().await.is_some() {
            c.send(
                b"HTTP/1.1 200 OK\r\nConnection: X-Up\r\nX-Up: 1\r\nKeep-Alive: timeout=3\r\n\
Proxy-Authenticate: Basic\r\nTrailer: X-Sum\r\nX-Fine: 2\r\nContent-Length: 2\r\n\r\nok",
            )
            .await;
        }
    })
    .await;
    let (_srv, _proxy, mut c) = client_through_proxy(raw).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = c.response().await;
    let head = r.head.to_lowercase();
    // The upstream's `Keep-Alive: timeout=3` stays on its hop; the client
    // gets the proxy's own (its idle timeout, 60 s).
    assert_eq!(r.header("keep-alive").as_deref(), Some("timeout=60"));
    for gone in [
        "connection:",
        "x-up:",
        "keep-alive: timeout=3",
        "proxy-authenticate:",
        "trailer:",
    ] {
        assert!(
            !head.contains(&format!("\n{gone}")),
            "{gone} reached the client:\n{head}"
        );
    }
    assert_eq!(r.header("x-fine").as_deref(), Some("2"));
    assert_eq!(r.body_str(), "ok");
}

// The upstream's response fields reach the client as the upstream wrote
// them: same order, same case, repeated lines kept apart, `Via` appended after
// the upstream's own; only the hop-by-hop ones (and those its `Connection`
// names) are left out. `Content-Length` of a HEAD or 304 response passes on.
#[tokio::test]
async fn upstream_fields_pass_on_in_order_and_case() {
    let raw = raw_server(|_, mut c| async move {
        while let Some(req) = c.request().await {
            if req.starts_with("HEAD ") {
                c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"v1\"\r\n\r\n")
                    .await;
            } else if req.to_ascii_lowercase().contains("if-none-match") {
                c.send(
                    b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1234\r\n\r\n",
                )
                .await;
            } else {
                c.send(
                    b"HTTP/1.1 200 OK\r\nx-MiXeD-case: One\r\nSet-Cookie: a=1\r\n\
Connection: X-Named, keep-alive\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\nX-Named: secret\r\n\
Set-Cookie: b=2\r\nVia: 1.0 cache\r\nKeep-Alive: timeout=3\r\nContent-Length: 2\r\n\
x-last:   spaced  \r\n\r\nok",
                )
                .await;
            }
        }
    })
    .await;
    let (_srv, _proxy, mut c) = client_through_proxy(raw).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.body_str(), "ok");
    let head = &r.head;
    let order = [
        "\r\nx-MiXeD-case: One\r\n",
        "\r\nSet-Cookie: a=1\r\n",
        "\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\n",
        "\r\nSet-Cookie: b=2\r\n",
        "\r\nVia: 1.0 cache\r\n",
        "\r\nx-last:   spaced  \r\n",
        "\r\nvia: 1.1 drainpipe\r\n",
    ];
    let mut from = 0;
    for line in order {
        let at = head[from..]
            .find(line)
            .unwrap_or_else(|| panic!("{line:?} missing or out of order:\n{head}"));
        from += at + line.len() - 2;
    }
    let lower = head.to_lowercase();
    assert!(!lower.contains("x-named"), "{head}");
    assert!(!lower.contains("timeout=3"), "{head}");
    assert_eq!(lower.matches("\r\ndate:").count(), 1, "one Date: {head}");
    assert_eq!(
        lower.matches("\r\ncontent-length: 2\r\n").count(),
        1,
        "{head}"
    );

    c.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = c.response_to(true).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length").as_deref(), Some("1234"));
    assert!(r.head.contains("\r\nETag: \"v1\"\r\n"), "{}", r.head);

    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"v1\"\r\n\r\n")
        .await;
    let r = c.response_to(true).await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("content-length").as_deref(), Some("1234"));
    assert!(r.body.is_empty());
    // Still one connection, still in step: a last exchange on it.
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(c.response().await.body_str(), "ok");
}

// Persistence per hop.
#[tokio::test]
async fn client_close_does_not_close_the_upstream_connection() {
    let upstream = TestServer::origin(Server::builder()).await;
    let (srv, proxy) = proxy_to(group(&[upstream.addr], Balance::RoundRobin)).await;
    for _ in 0..3 {
        let mut c = Raw::connect(srv.addr).await;
        c.send(b"GET /conn HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await;
        let r = c.response().await;
        assert_eq!(r.header("connection").as_deref(), Some("close"));
        c.expect_eof().await;
    }
    assert_eq!(
        upstream.stats.accepted.load(Ordering::Relaxed),
        1,
        "one upstream connection for all"
    );
    assert_eq!(proxy.client().idle_connections(&origin(upstream.addr)), 1);
}

#[tokio::test]
async fn upstream_close_does_not_close_the_client_connection() {
    let upstream = TestServer::origin(Server::builder()).await;
    let (srv, _proxy) = proxy_to(group(&[upstream.addr], Balance::RoundRobin)).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET /close HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(
        r.header("connection"),
        None,
        "the upstream's close stays upstream"
    );
    c.send(b"GET /conn HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = c.response().await;
    assert!(
        r.body_str().ends_with("request=1\n"),
        "a new upstream connection: {}",
        r.body_str()
    );
    assert_eq!(
        srv.stats.accepted.load(Ordering::Relaxed),
        1,
        "same client connection"
    );
    assert_eq!(upstream.stats.accepted.load(Ordering::Relaxed), 2);
}

// Close-delimited upstream responses are re-framed: chunked to HTTP/1.1
// clients, delimited by the close to HTTP/1.0 ones.
#[tokio::test]
async fn close_delimited_upstream_is_reframed() {
    let raw = raw_server(|_, mut c| async move {
        if c.request().await.is_some() {
            c.send(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close")
                .await;
        }
    })
    .await;
    let (srv, _proxy, mut c) = client_through_proxy(raw).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(r.body_str(), "until the close");
    assert_eq!(
        r.header("connection"),
        None,
        "the client connection persists"
    );

    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    while c.fill().await {}
    let all = String::from_utf8_lossy(&c.buf).into_owned();
    assert!(all.contains("\r\nconnection: close\r\n"), "{all}");
    assert!(!all.contains("transfer-encoding"));
    assert!(all.ends_with("\r\n\r\nuntil the close"), "{all}");
}

// A truncated upstream response is never passed on as complete.
#[tokio::test]
async fn truncated_upstream_aborts_the_client_response() {
    let upstream = TestServer::origin(Server::builder()).await;
    let (srv, _proxy) = proxy_to(group(&[upstream.addr], Balance::RoundRobin)).await;
    // After the head went out: the client sees fewer bytes than announced.
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET /truncate/100 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    while c.fill().await {}
    let all = String::from_utf8_lossy(&c.buf).into_owned();
    let (head, body) = all.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("content-length: 100"), "{head}");
    assert_eq!(body.len(), 50, "the client sees the truncation");

    // A chunked upstream cut short: no terminating chunk reaches the client.
    let raw = raw_server(|_, mut c| async move {
        c.request().await;
        c.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .await;
    })
    .await;
    let (_srv, _proxy, mut c) = client_through_proxy(raw).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    while c.fill().await {}
    let all = String::from_utf8_lossy(&c.buf).into_owned();
    assert!(all.contains("5\r\nhello\r\n"), "{all}");
    assert!(
        !all.ends_with("0\r\n\r\n"),
        "a terminating chunk would claim completeness: {all}"
    );

    // Before the head: 502.
    let raw = raw_server(|_, mut c| async move {
        c.request().await;
        c.send(b"HTTP/1.1 200 O").await;
    })
    .await;
    let (_srv, _proxy, mut c) = client_through_proxy(raw).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(c.response().await.status, 502);
}

#[tokio::test]
async fn round_robin_and_least_connections() {
    let (a, b) = (named("a").await, named("b").await);
    let (srv, _proxy) = proxy_to(group(&[a.addr, b.addr], Balance::RoundRobin)).await;
    let client = Client::new();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let res = client
            .request(http::Request::get(srv.url("/")).body(()).unwrap())
            .await
            .unwrap();
        seen.push(
            String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
                .unwrap(),
        );
    }
    assert_eq!(seen, ["a", "b", "a", "b"]);

    // Least connections: while a slow request holds `slow`, the rest go to `fast`.
    let slow = TestServer::origin(Server::builder()).await;
    let fast = TestServer::origin(Server::builder()).await;
    let (srv, _proxy) = proxy_to(group(&[slow.addr, fast.addr], Balance::LeastConnections)).await;
    let held = tokio::spawn({
        let url = srv.url("/delay/500");
        async move {
            let client = Client::new();
            let res = client
                .request(http::Request::get(url).body(()).unwrap())
                .await
                .unwrap();
            res.into_body().collect().await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = Client::new();
    for _ in 0..4 {
        let res = client
            .request(http::Request::get(srv.url("/")).body(()).unwrap())
            .await
            .unwrap();
        res.into_body().collect().await.unwrap();
    }
    held.await.unwrap();
    let on_slow = slow.stats.requests.load(Ordering::Relaxed);
    let on_fast = fast.stats.requests.load(Ordering::Relaxed);
    assert_eq!((on_slow + on_fast), 5);
    assert!(
        on_fast >= 4,
        "least connections sent {on_fast} of the 4 quick requests to the idle upstream"
    );
}

// Connect failure → next upstream (any method); passive ejection afterwards.
#[tokio::test]
async fn dead_upstream_is_skipped_then_ejected() {
    let live = named("live").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let g = Arc::new(
        Group::new(
            "g",
            vec![origin(dead), origin(live.addr)],
            Balance::RoundRobin,
        )
        .ejection(Ejection {
            max_fails: 2,
            eject_for: Duration::from_secs(60),
        }),
    );
    let (srv, proxy) = proxy_to(g.clone()).await;
    let client = Client::new();
    for _ in 0..6 {
        let req = http::Request::post(srv.url("/")).body("payload").unwrap();
        let res = client.request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "live");
    }
    assert!(g.upstreams()[0].is_ejected());
    assert_eq!(g.upstreams()[0].requests(), 2, "tried twice, then ejected");
    assert_eq!(proxy.stats().retries.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn health_checks_take_a_failing_upstream_out() {
    let sick = {
        let service = service_fn(|req: http::Request<Incoming>| async move {
            let status = if req.uri().path() == "/health" {
                503
            } else {
                200
            };
            let mut res = http::Response::new(http_body_util::Full::new(Bytes::from("sick")));
            *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(res)
        });
        TestServer::start(Server::builder(), service).await
    };
    let well = named("well").await;
    let g = Arc::new(
        Group::new(
            "g",
            vec![origin(sick.addr), origin(well.addr)],
            Balance::RoundRobin,
        )
        .health_check(HealthCheck {
            path: "/health".into(),
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(500),
            fall: 2,
            rise: 2,
        }),
    );
    let (srv, _proxy) = proxy_to(g.clone()).await;
    let deadline = std::time::Instant::now() + WAIT;
    while g.upstreams()[0].is_healthy() {
        assert!(
            std::time::Instant::now() < deadline,
            "never marked unhealthy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(g.upstreams()[1].is_healthy());
    let client = Client::new();
    for _ in 0..4 {
        let res = client
            .request(http::Request::get(srv.url("/")).body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "well");
    }
}

// Every server of a group is checked at once: a server that accepts and
// never answers (its check waits out the 1 s timeout) does not delay the
// verdict on another (down after two failed checks 50 ms apart, not after
// two rounds of a second each).
#[tokio::test]
async fn a_silent_server_does_not_delay_the_health_checks_of_others() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let sick = {
        let service = service_fn(|_req: http::Request<Incoming>| async move {
            let mut res = http::Response::new(http_body_util::Full::new(Bytes::from("sick")));
            *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            Ok::<_, Infallible>(res)
        });
        TestServer::start(Server::builder(), service).await
    };
    let g = Arc::new(
        Group::new(
            "g",
            vec![origin(silent_addr), origin(sick.addr)],
            Balance::RoundRobin,
        )
        .health_check(HealthCheck {
            path: "/health".into(),
            interval: Duration::from_millis(50),
            timeout: Duration::from_secs(1),
            fall: 2,
            rise: 2,
        }),
    );
    let started = std::time::Instant::now();
    let (_srv, _proxy) = proxy_to(g.clone()).await;
    while g.upstreams()[1].is_healthy() {
        assert!(
            started.elapsed() < Duration::from_millis(700),
            "the sick server's checks waited behind the silent one's"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        g.upstreams()[0].is_healthy(),
        "its first check is still waiting"
    );
}

#[tokio::test]
async fn stale_upstream_connection_retries_idempotent_only() {
    let (up, seen) = racing_server().await;
    let (srv, proxy) = proxy_to(group(&[up], Balance::RoundRobin)).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(c.response().await.status, 200);
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(
        c.response().await.status,
        200,
        "retried on a fresh upstream connection"
    );
    assert_eq!(proxy.stats().retries.load(Ordering::Relaxed), 1);
    // A POST on a stale upstream connection is never replayed: 502.
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\ndata")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 502, "{}", r.body_str());
    let posts = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("POST"))
        .count();
    assert_eq!(posts, 1, "the POST reached the upstream once");
}

// DESIGN: idempotent retry to the next upstream on a stale pooled
// connection. Round robin sends the 1st request to the racing upstream A, the
// 2nd to B; the 3rd meets A's stale connection and goes on to B.
#[tokio::test]
async fn stale_upstream_connection_retries_on_the_next_upstream() {
    let (a, seen) = racing_server().await;
    let b = TestServer::origin(Server::builder()).await;
    let (srv, proxy) = proxy_to(group(&[a, b.addr], Balance::RoundRobin)).await;
    let mut c = Raw::connect(srv.addr).await;
    let mut bodies = Vec::new();
    for _ in 0..3 {
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
        let r = c.response().await;
        assert_eq!(r.status, 200, "{}", r.body_str());
        bodies.push(r.body_str());
    }
    assert_eq!(bodies, ["ok", "Hello, World!", "Hello, World!"]);
    assert_eq!(proxy.stats().retries.load(Ordering::Relaxed), 1);
    // A saw its first request and the one its stale connection swallowed.
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert_eq!(b.stats.requests.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn upstream_timeout_is_a_504() {
    let upstream = TestServer::origin(Server::builder()).await;
    let client = Client::builder()
        .response_timeout(Some(Duration::from_millis(200)))
        .build();
    let (srv, _proxy) = proxy_with(
        Proxy::builder().client(client),
        group(&[upstream.addr], Balance::RoundRobin),
    )
    .await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET /delay/2000 HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 504);
    assert_eq!(r.body_str().lines().count(), 1);
}

// Upgrade: after 101 the proxy tunnels bytes both ways, half-close included.
#[tokio::test]
async fn upgrade_is_tunnelled_after_101() {
    let raw = raw_server(|_, mut c| async move {
        let Some(req) = c.request().await else { return };
        assert!(req.to_lowercase().contains("\r\nupgrade: echo"), "{req}");
        assert!(
            req.to_lowercase().contains("\r\nconnection: upgrade"),
            "{req}"
        );
        c.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
            .await;
        // Echo until the client half-closes, then say goodbye and close.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = c.buf.clone();
        c.stream.write_all(&buf).await.unwrap();
        loop {
            buf.resize(1024, 0);
            match c.stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => c.stream.write_all(&buf[..n]).await.unwrap(),
            }
        }
        c.stream.write_all(b"bye").await.unwrap();
    })
    .await;
    let (_srv, _proxy, mut c) = client_through_proxy(raw).await;
    c.send(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade").as_deref(), Some("echo"));
    assert_eq!(r.header("connection").as_deref(), Some("upgrade"));
    c.send(b" ping").await;
    let mut got = Vec::new();
    while got.len() < b"early ping".len() {
        c.fill().await;
        got.append(&mut c.buf);
    }
    assert_eq!(got, b"early ping");
    tokio::io::AsyncWriteExt::shutdown(&mut c.stream)
        .await
        .unwrap();
    while c.fill().await {}
    assert_eq!(
        c.buf, b"bye",
        "half-close passed through, the upstream's last bytes came back"
    );
}

// Upstream connections opened stay at most the number of concurrent clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused() {
    let upstream = TestServer::origin(Server::builder()).await;
    let (srv, proxy) = proxy_to(group(&[upstream.addr], Balance::RoundRobin)).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = srv.url("/");
        tasks.push(tokio::spawn(async move {
            let client = Client::new();
            for _ in 0..25 {
                let res = client
                    .request(http::Request::get(&url).body(()).unwrap())
                    .await
                    .unwrap();
                assert_eq!(
                    res.into_body().collect().await.unwrap().to_bytes(),
                    "Hello, World!"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let opened = upstream.stats.accepted.load(Ordering::Relaxed);
    assert!(
        opened <= 8,
        "{opened} upstream connections for 8 concurrent clients"
    );
    assert_eq!(upstream.stats.requests.load(Ordering::Relaxed), 200);
    assert_eq!(
        proxy.client().stats().opened.load(Ordering::Relaxed),
        opened
    );
}

#[tokio::test]
async fn no_route_is_404_and_longest_prefix_wins() {
    let (api, web) = (named("api").await, named("web").await);
    let proxy = Proxy::builder()
        .route(Route {
            host: Some("app.test".into()),
            path_prefix: "/".into(),
            group: group(&[web.addr], Balance::RoundRobin),
        })
        .route(Route {
            host: Some("app.test".into()),
            path_prefix: "/api/".into(),
            group: group(&[api.addr], Balance::RoundRobin),
        })
        .build();
    let srv = TestServer::start(Server::builder(), proxy).await;
    let mut c = Raw::connect(srv.addr).await;
    for (path, host, want) in [
        ("/api/x", "app.test", "api"),
        ("/x", "App.Test:8080", "web"),
    ] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await;
        assert_eq!(c.response().await.body_str(), want);
    }
    c.send(b"GET / HTTP/1.1\r\nHost: other\r\n\r\n").await;
    assert_eq!(c.response().await.status, 404);
}
