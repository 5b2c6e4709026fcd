//! Server edges over real sockets: versions above HTTP/1.1, heads that end in
//! bare CRs, clients that never read, connection slots held by idle clients,
//! and the listening socket during a drain.

mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
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

/// Serves the origin on an `Arc` listener the test keeps only a `Weak` of (as
/// the binary's hand-off side does); returns the address, the weak handle, the
/// shutdown trigger and the serving task.
async fn serve_shared(
    builder: drainpipe::server::Builder,
) -> (
    std::net::SocketAddr,
    Weak<std::net::TcpListener>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<drainpipe::server::DrainReport>,
) {
    let listener = Arc::new(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = listener.local_addr().unwrap();
    let weak = Arc::downgrade(&listener);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = builder.build();
    let task = tokio::spawn(async move {
        server
            .serve(listener, drainpipe::origin::Origin, async {
                let _ = rx.await;
            })
            .await
    });
    (addr, weak, tx, task)
}

// Issue 12 item 1: the moment the server stops accepting, the listening
// socket is closed in the whole process (the hand-off side kept only a weak
// handle), so a new client is refused at once; the request in flight still
// completes, with `Connection: close`.
#[tokio::test]
async fn listener_closes_the_moment_accepting_stops() {
    let (addr, weak, shutdown, task) = serve_shared(builder()).await;
    let mut busy = Raw::connect(addr).await;
    busy.send(b"GET /delay/600 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    assert!(weak.upgrade().is_some(), "open while accepting");
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.send(()).unwrap();
    assert!(
        eventually(WAIT, || weak.upgrade().is_none()).await,
        "the listening socket outlived the accept loop"
    );
    let tried = Instant::now();
    let refused = tokio::net::TcpStream::connect(addr).await;
    let err = refused.expect_err("a new connection during the drain was accepted by the kernel");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert!(tried.elapsed() < Duration::from_millis(100));
    let r = busy.response().await;
    assert_eq!((r.status, r.body_str().as_str()), (200, "Hello, World!"));
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    busy.expect_eof().await;
    drop(busy); // ends the server's linger
    let report = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    assert_eq!((report.clean, report.cut), (1, 0));
}

// During a hand-off the successor holds a copy of the socket (taken from the
// weak handle while it was served): when this server stops accepting,
// connections still queue for the successor instead of being refused.
#[tokio::test]
async fn a_handed_off_listener_stays_open_for_the_successor() {
    let (addr, weak, shutdown, task) = serve_shared(builder()).await;
    let successor = weak
        .upgrade()
        .expect("open while accepting")
        .try_clone()
        .unwrap();
    shutdown.send(()).unwrap();
    let report = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    assert_eq!(report.cut, 0);
    assert!(weak.upgrade().is_none(), "this server holds nothing");
    let mut c = Raw::connect(addr).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let (accepted, peer) = successor.accept().unwrap();
    assert_eq!(
        peer,
        c.stream.local_addr().unwrap(),
        "the successor took it"
    );
    drop(accepted);
}

/// `GET /conn` on `c`: the answer names the connection and request number.
async fn conn_id(c: &mut Raw) -> String {
    c.send(b"GET /conn HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), None, "kept alive");
    r.body_str()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

// Issue 12 item 11: at max_connections, with a connection waiting to be
// accepted, the longest-idle keep-alive connection is closed to make room (a
// clean close: EOF after the response it read, no reset); the newcomer is
// served at once, not after the 60 s idle timeout. The same whether the idle
// connections wait in their tasks or parked.
#[tokio::test]
async fn at_max_connections_the_longest_idle_is_reclaimed() {
    for park in [None, Some(Duration::from_millis(20))] {
        let srv = TestServer::origin(builder().max_connections(2).park_idle_after(park)).await;
        let mut a = Raw::connect(srv.addr).await;
        conn_id(&mut a).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut b = Raw::connect(srv.addr).await;
        let b_id = conn_id(&mut b).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if park.is_some() {
            assert_eq!(srv.stats.parked.load(Ordering::Relaxed), 2, "both parked");
        }

        let started = Instant::now();
        let mut c = Raw::connect(srv.addr).await;
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
        let r = tokio::time::timeout(Duration::from_secs(1), c.response())
            .await
            .expect("the newcomer is served at once");
        assert_eq!(r.body_str(), "Hello, World!", "{park:?}");
        eprintln!(
            "park {park:?}: third client served in {:?}",
            started.elapsed()
        );

        a.expect_eof().await; // the longest idle: a clean close
        assert_eq!(
            conn_id(&mut b).await,
            b_id,
            "{park:?}: b kept its connection"
        );
        assert_eq!(srv.stats.closed(CloseReason::Reclaimed), 1, "{park:?}");
        // Counted where an operator looks: /metrics and /status.
        let registry = drainpipe::metrics::Registry::new().server("web", srv.stats.clone());
        assert!(
            registry.prometheus().contains(
                "drainpipe_connections_closed_total{listener=\"web\",reason=\"reclaimed\"} 1\n"
            ),
            "{}",
            registry.prometheus()
        );
        assert!(
            registry.status_json().contains("\"reclaimed\":1"),
            "{}",
            registry.status_json()
        );
    }
}

// Never a connection with a request in flight, nor one that has not sent its
// first request: only idle keep-alive ones. With none idle, a newcomer waits
// for a slot; the busy connection's response completes first, whole.
#[tokio::test]
async fn busy_and_new_connections_are_never_reclaimed() {
    let srv = TestServer::origin(builder().max_connections(3).park_idle_after(None)).await;
    let mut silent = Raw::connect(srv.addr).await; // the oldest, no request yet
    let mut busy = Raw::connect(srv.addr).await;
    busy.send(b"GET /delay/400 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    let mut idle = Raw::connect(srv.addr).await;
    conn_id(&mut idle).await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    // The idle keep-alive connection makes room (the newcomer's request is
    // slow, so it stays busy too).
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET /delay/900 HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let closed = tokio::time::timeout(Duration::from_millis(500), idle.expect_eof()).await;
    assert!(closed.is_ok(), "the idle connection was closed at once");

    // Nothing idle now: the next one waits until the busy connection's
    // response is out (then that one is idle, and makes room).
    let mut d = Raw::connect(srv.addr).await;
    d.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let busy_response = busy.response().await;
    assert_eq!(
        (busy_response.status, busy_response.body_str().as_str()),
        (200, "Hello, World!")
    );
    assert_eq!(busy_response.header("connection"), None);
    let served_at = Instant::now();
    let r = d.response().await;
    assert_eq!(r.status, 200);
    assert!(served_at.elapsed() < Duration::from_millis(500));
    busy.expect_eof().await;
    let r = c.response().await;
    assert_eq!((r.status, r.header("connection")), (200, None));
    assert_eq!(srv.stats.closed(CloseReason::Reclaimed), 2);

    // The silent connection was never touched: its first request is served.
    silent.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(silent.response().await.body_str(), "Hello, World!");
}
