//! Pipelining over real sockets: answers in request order, answers ready
//! together leave in one write, and a client that never reads is slowed down
//! instead of buffered without bound.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use drainpipe::server::Server;
use support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn responses_leave_in_request_order() {
    let srv = TestServer::origin(Server::builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(
        b"GET /delay/150 HTTP/1.1\r\nHost: a\r\n\r\n\
GET /bytes/3 HTTP/1.1\r\nHost: a\r\n\r\n\
GET /delay/50 HTTP/1.1\r\nHost: a\r\n\r\n\
HEAD /bytes/7 HTTP/1.1\r\nHost: a\r\n\r\n\
GET /conn HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    let r1 = c.response().await;
    let r2 = c.response().await;
    let r3 = c.response().await;
    let r4 = c.response_to(true).await;
    let r5 = c.response().await;
    assert_eq!(r1.body_str(), "Hello, World!");
    assert_eq!(r2.body_str(), "xxx");
    assert_eq!(r3.body_str(), "Hello, World!");
    assert_eq!(r4.header("content-length").as_deref(), Some("7"));
    assert!(r4.body.is_empty());
    assert!(r5.body_str().ends_with("request=5\n"), "{}", r5.body_str());
}

// Responses ready together leave in one write (at most 16 per write).
#[tokio::test]
async fn ready_responses_are_coalesced() {
    let srv = TestServer::origin(Server::builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    let one = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    c.send(&one.repeat(16)).await;
    for _ in 0..16 {
        assert_eq!(c.response().await.body_str(), "Hello, World!");
    }
    assert_eq!(
        srv.stats.writes.load(Ordering::Relaxed),
        1,
        "16 answers, one write"
    );

    c.send(&one.repeat(100)).await;
    for _ in 0..100 {
        assert_eq!(c.response().await.body_str(), "Hello, World!");
    }
    let writes = srv.stats.writes.load(Ordering::Relaxed) - 1;
    assert!(
        (7..=9).contains(&writes),
        "100 answers in {writes} writes, expected 7 (16 per write)"
    );
    assert_eq!(srv.stats.requests.load(Ordering::Relaxed), 116);
}

// A client that pipelines without reading is slowed down: the server stops
// reading once its writes stall, so the client's own writes block.
#[tokio::test]
async fn a_client_that_never_reads_is_held_back() {
    let srv = TestServer::origin(Server::builder().write_timeout(Duration::from_secs(30))).await;
    let mut c = Raw::connect(srv.addr).await;
    let one = b"GET /bytes/4096 HTTP/1.1\r\nHost: a\r\n\r\n";
    let flood = one.repeat(200_000); // ~8 MB of requests asking for ~800 MB
    let wrote_all = tokio::time::timeout(Duration::from_secs(2), c.stream.write_all(&flood)).await;
    assert!(wrote_all.is_err(), "the server kept reading without bound");
    let served = srv.stats.requests.load(Ordering::Relaxed);
    assert!(
        served < 20_000,
        "{served} requests parsed while the client never read"
    );
}
