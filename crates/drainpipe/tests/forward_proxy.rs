//! The explicit (forward) proxy as a library, over sockets on 127.0.0.1:
//! what it refuses before anything goes upstream, and its retry of a stale
//! pooled connection. (`crates/cli/tests/forward.rs` drives the binary with
//! real clients.)

mod support;

use std::sync::atomic::Ordering;

use drainpipe::client::Client;
use drainpipe::proxy::{ForwardProxy, Policy};
use drainpipe::server::Server;
use support::*;

/// A forward proxy that may reach 127.0.0.1 (the test origins live there).
async fn forward_proxy() -> (TestServer, ForwardProxy) {
    let proxy = ForwardProxy::new(
        Client::new(),
        Policy {
            allow_private: true,
            ..Policy::default()
        },
        None,
    );
    let srv = TestServer::start(Server::builder(), proxy.clone()).await;
    (srv, proxy)
}

// RFC 9110 §4.2.4: userinfo in an http target is an error. Forwarded, it
// would reach the origin in Host (`Host: user:pw@…`), credentials included.
#[tokio::test]
async fn userinfo_in_the_target_is_refused_and_nothing_reaches_the_origin() {
    let origin = recording_upstream().await;
    let port = origin.addr().port();
    let (srv, _proxy) = forward_proxy().await;

    let mut c = Raw::connect(srv.addr).await;
    c.send(
        format!("GET http://user:pw@127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let r = c.response().await;
    assert_eq!(r.status, 400, "{}", r.body_str());
    assert_eq!(
        r.header("connection").as_deref(),
        Some("close"),
        "{}",
        r.head
    );
    assert!(c.closes_within(WAIT).await, "the connection closes");
    assert_eq!(origin.connections(), 0, "no connection to the origin");
    assert_eq!(origin.bytes_received(), 0);

    // The same request without userinfo goes through, with the target's
    // authority as Host: the refusal above was the userinfo's alone.
    let mut c = Raw::connect(srv.addr).await;
    c.send(
        format!("GET http://127.0.0.1:{port}/x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(c.response().await.status, 200);
    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/x");
    assert_eq!(seen[0].values("host"), [format!("127.0.0.1:{port}")]);
}

// DESIGN (client retry rules): a GET that lands on a pooled connection the
// origin closed just then goes once more on a new connection; the client of
// the proxy sees the answer, not a 502. A POST is never replayed.
#[tokio::test]
async fn stale_pooled_connection_is_retried_once_for_an_idempotent_request() {
    let (origin, seen) = racing_server().await;
    let (srv, proxy) = forward_proxy().await;
    let get = format!("GET http://{origin}/r HTTP/1.1\r\nHost: {origin}\r\n\r\n");

    let mut c = Raw::connect(srv.addr).await;
    c.send(get.as_bytes()).await;
    let r = c.response().await;
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
    // The origin connection is pooled; this GET reuses it and meets the close.
    c.send(get.as_bytes()).await;
    let r = c.response().await;
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "ok"),
        "retried on a new connection: {}",
        r.head
    );
    let stats = proxy.client().stats();
    assert_eq!(stats.retries.load(Ordering::Relaxed), 1);
    assert_eq!(stats.opened.load(Ordering::Relaxed), 2);
    assert_eq!(
        *seen.lock().unwrap(),
        ["GET /r HTTP/1.1"; 3],
        "the first, the lost one, the retry"
    );

    // A POST on the (again pooled, again closing) connection is not
    // replayed: 502, and the origin saw it once.
    c.send(
        format!(
            "POST http://{origin}/p HTTP/1.1\r\nHost: {origin}\r\nContent-Length: 4\r\n\r\ndata"
        )
        .as_bytes(),
    )
    .await;
    let r = c.response().await;
    assert_eq!(r.status, 502, "{}", r.body_str());
    assert_eq!(stats.retries.load(Ordering::Relaxed), 1);
    let posts = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("POST"))
        .count();
    assert_eq!(posts, 1, "the POST reached the origin once");
}
