//! Graceful drain, one test per case (the first seed's bug: a drained server
//! must say `Connection: close` on every response whose head had not gone out).

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use drainpipe::server::{CloseReason, Server};
use support::*;

/// A `GET /` on `c` is answered 200 with `Connection: close`, then the
/// server closes.
async fn answered_with_close(c: &mut Raw) {
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(
        (r.status, r.header("connection").as_deref()),
        (200, Some("close"))
    );
    c.expect_eof().await;
}

#[tokio::test]
async fn idle_connection_closes_at_once() {
    let srv = TestServer::origin(Server::builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    c.response().await;
    let started = Instant::now();
    let stats = srv.stats.clone();
    let drain = tokio::spawn(srv.drain());
    c.expect_eof().await;
    assert!(started.elapsed() < Duration::from_millis(500));
    drop(c);
    let report = drain.await.unwrap();
    assert_eq!((report.open_at_start, report.clean, report.cut), (1, 1, 0));
    assert_eq!(stats.closed(CloseReason::Drain), 1);
}

#[tokio::test]
async fn request_in_progress_finishes_with_connection_close() {
    let mut srv = TestServer::origin(Server::builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET /delay/300 HTTP/1.1\r\nHost: a\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    srv.begin_drain();
    let r = c.response().await;
    assert_eq!((r.status, r.body_str().as_str()), (200, "Hello, World!"));
    assert_eq!(
        r.header("connection").as_deref(),
        Some("close"),
        "the drained response says close"
    );
    c.expect_eof().await;
    drop(c);
    let report = srv.drain().await;
    assert_eq!((report.clean, report.cut), (1, 0));
}

// Requests pipelined behind the one in progress are left unprocessed (so the
// client may retry them), and nothing after the close response is processed.
#[tokio::test]
async fn pipelined_requests_behind_are_left_unprocessed() {
    let mut srv = TestServer::origin(Server::builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(
        b"GET /delay/300 HTTP/1.1\r\nHost: a\r\n\r\n\
POST /status/201 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n\
GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    srv.begin_drain();
    let r = c.response().await;
    assert_eq!(r.body_str(), "Hello, World!");
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    c.expect_eof().await;
    assert_eq!(
        srv.stats.requests.load(Ordering::Relaxed),
        1,
        "only the first was processed"
    );
    drop(c);
    srv.drain().await;
}

#[tokio::test]
async fn drain_timeout_cuts_what_is_left() {
    let mut srv =
        TestServer::origin(Server::builder().drain_timeout(Duration::from_millis(200))).await;
    let mut busy = Raw::connect(srv.addr).await;
    busy.send(b"GET /delay/5000 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    let mut idle = Raw::connect(srv.addr).await;
    idle.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    idle.response().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    srv.begin_drain();
    idle.expect_eof().await;
    drop(idle);
    let started = Instant::now();
    assert!(
        busy.closes_within(Duration::from_secs(2)).await,
        "cut at the drain timeout"
    );
    assert!(busy.buf.is_empty(), "no response for the cut request");
    drop(busy);
    let report = srv.drain().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!((report.open_at_start, report.clean, report.cut), (2, 1, 1));
    assert!(
        report.elapsed >= Duration::from_millis(200) && report.elapsed < Duration::from_secs(3)
    );
}

#[tokio::test]
async fn listener_is_closed_once_draining() {
    let srv = TestServer::origin(Server::builder()).await;
    let addr = srv.addr;
    let report = srv.drain().await;
    assert_eq!(report.open_at_start, 0);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "new connections refused"
    );
}

// A keep-alive client whose next request has begun to arrive when the drain
// starts: the request is finished, answered with close, and nothing after it.
#[tokio::test]
async fn partial_head_at_drain_is_finished_and_answered_with_close() {
    let mut srv = TestServer::origin(Server::builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    c.response().await;
    c.send(b"GET /conn HT").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    srv.begin_drain();
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.send(b"TP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(
        (
            r.status,
            r.body_str().as_str(),
            r.header("connection").as_deref()
        ),
        (200, "conn=1 request=2\n", Some("close"))
    );
    c.expect_eof().await;
    assert_eq!(srv.stats.requests.load(Ordering::Relaxed), 2);
    drop(c);
    let report = srv.drain().await;
    assert_eq!((report.clean, report.cut), (1, 0));
}

// A connection accepted before the drain whose client has not sent its first
// request yet is not idle: clients retry only on reused connections, so
// closing it would fail the request it was opened for. It is answered, with
// close.
#[tokio::test]
async fn fresh_connection_at_drain_gets_its_first_request_answered() {
    let mut srv = TestServer::origin(Server::builder().park_idle_after(None)).await;
    let mut fresh = Raw::connect(srv.addr).await;
    let mut idle = Raw::connect(srv.addr).await;
    idle.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    idle.response().await;
    srv.begin_drain();
    idle.expect_eof().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    answered_with_close(&mut fresh).await;
    drop((fresh, idle));
    let report = srv.drain().await;
    assert_eq!((report.open_at_start, report.clean, report.cut), (2, 2, 0));
}

// The same for a silent new connection that was parked: it keeps its head
// deadline through the drain, and its request is answered with close.
#[tokio::test]
async fn parked_fresh_connection_at_drain_gets_its_first_request_answered() {
    let mut srv =
        TestServer::origin(Server::builder().park_idle_after(Some(Duration::from_millis(50))))
            .await;
    let mut fresh = Raw::connect(srv.addr).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(srv.stats.parked.load(Ordering::Relaxed), 1);
    srv.begin_drain();
    tokio::time::sleep(Duration::from_millis(400)).await;
    answered_with_close(&mut fresh).await;
    drop(fresh);
    let report = srv.drain().await;
    assert_eq!((report.clean, report.cut), (1, 0));
}

// A fresh connection that stays silent is closed at the head timeout, which
// the drain does not extend.
#[tokio::test]
async fn silent_fresh_connection_at_drain_closes_at_the_head_timeout() {
    let srv = TestServer::origin(
        Server::builder()
            .head_timeout(Duration::from_millis(300))
            .park_idle_after(None),
    )
    .await;
    let mut fresh = Raw::connect(srv.addr).await;
    let started = Instant::now();
    let drain = tokio::spawn(srv.drain());
    assert!(fresh.closes_within(Duration::from_secs(3)).await);
    assert!(fresh.buf.is_empty(), "a silent close");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    let report = drain.await.unwrap();
    assert_eq!((report.clean, report.cut), (1, 0));
}

#[tokio::test]
async fn parked_connections_close_at_once() {
    let srv =
        TestServer::origin(Server::builder().park_idle_after(Some(Duration::from_millis(50))))
            .await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = Raw::connect(srv.addr).await;
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
        c.response().await;
        clients.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(srv.stats.parked.load(Ordering::Relaxed), 3);
    let stats = srv.stats.clone();
    let started = Instant::now();
    let drain = tokio::spawn(srv.drain());
    for c in &mut clients {
        c.expect_eof().await;
    }
    assert!(started.elapsed() < Duration::from_millis(500));
    let report = drain.await.unwrap();
    assert_eq!((report.open_at_start, report.clean, report.cut), (3, 3, 0));
    assert_eq!(stats.closed(CloseReason::Drain), 3);
}

// Drain phases for orchestrators: not ready at once; during drain_delay the
// listener still accepts and every response says close; then it closes.
#[tokio::test]
async fn drain_delay_keeps_accepting_with_connection_close() {
    let mut srv =
        TestServer::origin(Server::builder().drain_delay(Duration::from_millis(400))).await;
    let mut before = Raw::connect(srv.addr).await;
    before.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(before.response().await.header("connection"), None);
    srv.begin_drain();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        srv.stats.draining.load(Ordering::Relaxed),
        "not ready any more"
    );
    // A new connection during the delay is served, told to close.
    let mut during = Raw::connect(srv.addr).await;
    answered_with_close(&mut during).await;
    // The idle connection from before is still open and also told to close.
    before.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(
        before.response().await.header("connection").as_deref(),
        Some("close")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        tokio::net::TcpStream::connect(srv.addr).await.is_err(),
        "listener closed after the delay"
    );
    drop((before, during));
    srv.drain().await;
}

// Idle keep-alive connections close spread over drain_spread, not in a burst.
#[tokio::test]
async fn idle_closes_are_spread_over_the_window() {
    let srv = TestServer::origin(
        Server::builder()
            .drain_spread(Duration::from_millis(800))
            .park_idle_after(None),
    )
    .await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut c = Raw::connect(srv.addr).await;
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
        c.response().await;
        clients.push(c);
    }
    let started = Instant::now();
    let drain = tokio::spawn(srv.drain());
    // Each client watches for its close at the same time.
    let watchers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                assert!(c.closes_within(Duration::from_secs(3)).await);
                started.elapsed()
            })
        })
        .collect();
    let mut closed_at = Vec::new();
    for w in watchers {
        closed_at.push(w.await.unwrap());
    }
    let report = drain.await.unwrap();
    assert_eq!((report.clean, report.cut), (8, 0));
    // The last close comes late, and the closes do not land in one burst.
    closed_at.sort();
    let (first, last) = (closed_at[0], closed_at[7]);
    assert!(last <= Duration::from_millis(1200), "{closed_at:?}");
    assert!(
        last - first >= Duration::from_millis(200),
        "all at once: {closed_at:?}"
    );
}

// A new connection that was due to be parked just after the drain began is
// not parked (nothing is, once draining) nor closed: it keeps waiting for its
// first request, which is answered with close.
#[tokio::test]
async fn fresh_connection_due_to_park_during_the_drain_keeps_waiting() {
    let mut srv = TestServer::origin(
        Server::builder()
            .park_idle_after(Some(Duration::from_millis(150)))
            .head_timeout(Duration::from_secs(3)),
    )
    .await;
    let mut fresh = Raw::connect(srv.addr).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    srv.begin_drain();
    tokio::time::sleep(Duration::from_millis(400)).await;
    answered_with_close(&mut fresh).await;
    drop(fresh);
    let report = srv.drain().await;
    assert_eq!((report.clean, report.cut), (1, 0));
}
