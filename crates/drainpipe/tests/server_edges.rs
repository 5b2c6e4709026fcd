//! Server edges over real sockets: versions above HTTP/1.1, heads that end in
//! bare CRs, clients that never read, connection slots held by idle clients,
//! and the listening socket during a drain.

mod support;

use std::time::{Duration, Instant};

use drainpipe::server::Server;
use support::*;

fn builder() -> drainpipe::server::Builder {
    Server::builder()
}

// RFC 9110 §2.5: HTTP/1.2 is processed as HTTP/1.1 (answered as 1.1, and
// persistent as 1.1 is); a major version of 2 or more stays 505.
#[tokio::test]
async fn http12_is_served_as_http11_and_http2_stays_505() {
    let srv = TestServer::origin(builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET /conn HTTP/1.2\r\nHost: a\r\n\r\n").await;
    let r1 = c.response().await;
    c.send(b"GET /conn HTTP/1.2\r\nHost: a\r\n\r\n").await;
    let r2 = c.response().await;
    for r in [&r1, &r2] {
        assert!(r.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", r.head);
        assert_eq!(r.header("connection"), None, "persistent as HTTP/1.1");
    }
    let id = |r: &RawResponse| r.body_str().split(' ').next().unwrap().to_string();
    assert_eq!(id(&r1), id(&r2), "one connection served both");
    assert!(r2.body_str().contains("request=2"), "{}", r2.body_str());

    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 505);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    c.expect_eof().await;
}

// RFC 9112 §2.2: a head whose lines end in bare CRs (no LF ever comes) is
// refused with 400 at once, not left to the head timeout.
#[tokio::test]
async fn bare_cr_head_gets_400_at_once() {
    let srv = TestServer::origin(builder().head_timeout(Duration::from_secs(30))).await;
    let mut c = Raw::connect(srv.addr).await;
    let started = Instant::now();
    c.send(b"GET / HTTP/1.1\rHost: a\r\r").await;
    let r = tokio::time::timeout(Duration::from_secs(2), c.response())
        .await
        .expect("answered long before the 30 s head timeout");
    assert_eq!(r.status, 400, "{}", r.head);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    c.expect_eof().await;
    assert!(started.elapsed() < Duration::from_secs(2));
}
