//! Server edges over real sockets: versions above HTTP/1.1, heads that end in
//! bare CRs, clients that never read, connection slots held by idle clients,
//! and the listening socket during a drain.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use drainpipe::server::{CloseReason, Server};
use support::*;
use tokio::io::AsyncReadExt;

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

// A client that never reads its response: once a write makes no progress for
// the write timeout, the connection closes at once (no second flush to the
// same stalled peer, no linger), and what was written still ends in a FIN,
// not a reset.
#[tokio::test]
async fn write_timeout_closes_at_once() {
    let write_timeout = Duration::from_millis(300);
    let srv = TestServer::origin(builder().write_timeout(write_timeout)).await;
    let mut c = Raw::connect(srv.addr).await;
    let started = Instant::now();
    c.send(b"GET /chunked/1000000000 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    // Never read: the socket buffers fill and the writes stall.
    let closed = eventually(WAIT, || {
        srv.stats.closed(CloseReason::WriteTimeout) == 1
            && srv.stats.open.load(Ordering::Relaxed) == 0
    })
    .await;
    let held = started.elapsed();
    eprintln!("write timeout {write_timeout:?}: connection closed after {held:?}");
    assert!(closed, "connection still open after {held:?}");
    assert!(
        held < write_timeout + Duration::from_millis(700),
        "held {held:?} with a {write_timeout:?} write timeout"
    );
    assert_eq!(srv.stats.lingering.load(Ordering::Relaxed), 0);
    // What was written arrives, then a clean EOF: a response cut short (no
    // last chunk), never a reset.
    let mut chunk = vec![0u8; 1 << 20];
    let mut received = 0usize;
    loop {
        match tokio::time::timeout(WAIT, c.stream.read(&mut chunk)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                if received == 0 {
                    assert!(chunk[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
                }
                received += n;
                assert!(received < 1_000_000_000, "whole body arrived");
            }
            Ok(Err(e)) => panic!("read failed after {received} bytes: {e}"),
            Err(_) => panic!("no EOF after {received} bytes"),
        }
    }
    assert!(received > 0);
}
