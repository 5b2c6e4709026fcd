//! The explicit (forward) proxy as a library, over sockets on 127.0.0.1:
//! what it refuses before anything goes upstream. (`crates/cli/tests/forward.rs`
//! drives the binary with real clients.)

mod support;

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
