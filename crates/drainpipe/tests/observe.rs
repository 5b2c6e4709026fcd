//! What the admin registry tells of a proxy and its upstream servers: a
//! server that refuses connections is counted (connect errors), ejected,
//! shown as such with its reason, and makes the overall state "degraded";
//! upstream responses are counted by status class and timed to the end of
//! their body.

mod support;

use std::sync::Arc;
use std::time::Duration;

use drainpipe::client::{Client, Origin};
use drainpipe::metrics::{Registry, ServerState, UpstreamError};
use drainpipe::proxy::{Balance, Ejection, Group, Proxy, Route};
use drainpipe::server::Server;
use http_body_util::BodyExt;
use support::*;

fn origin(port: u16) -> Origin {
    Origin {
        host: "127.0.0.1".into(),
        port,
        tls: None,
    }
}

#[tokio::test]
async fn a_refusing_server_is_counted_ejected_and_degrades_the_status() {
    let live = TestServer::origin(Server::builder()).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let group = Arc::new(
        Group::new(
            "app",
            vec![origin(live.addr.port()), origin(dead.port())],
            Balance::RoundRobin,
        )
        .ejection(Ejection {
            max_fails: 2,
            eject_for: Duration::from_secs(30),
        }),
    );
    let proxy = Proxy::builder()
        .client(Client::new())
        .route(Route {
            host: None,
            path_prefix: "/".into(),
            group,
        })
        .build();
    let srv = TestServer::start(Server::builder(), proxy.clone()).await;
    let registry = Registry::new()
        .server("web", srv.stats.clone())
        .proxy("px", proxy);
    assert_eq!(registry.status().state, "ready");

    // Round robin sends every other request to the dead server first; each
    // goes on to the live one. Two refusals eject the dead server.
    let client = Client::new();
    for path in ["/", "/status/503", "/", "/bytes/100000"] {
        let res = tokio::time::timeout(Duration::from_secs(5), async {
            client
                .request(http::Request::get(srv.url(path)).body(()).unwrap())
                .await
        })
        .await
        .expect("answered in time")
        .unwrap();
        res.into_body().collect().await.unwrap();
    }

    let servers = registry.upstream_servers();
    assert_eq!(servers.len(), 2);
    let (l, d) = (&servers[0], &servers[1]);
    assert_eq!(d.server, format!("127.0.0.1:{}", dead.port()));
    assert_eq!(d.state, ServerState::Ejected);
    assert!(
        d.reason.starts_with("2 failed requests in a row; back in "),
        "{}",
        d.reason
    );
    assert_eq!(
        d.errors[UpstreamError::Connect as usize],
        (UpstreamError::Connect, 2)
    );
    assert_eq!(d.errors_total(), 2);
    assert_eq!(d.latency.count(), 0, "no answer, no latency");
    assert_eq!(l.state, ServerState::Up);
    assert_eq!(l.errors_total(), 0);
    assert_eq!(l.responses, [0, 3, 0, 0, 1]);
    assert_eq!(l.latency.count(), 4);
    assert_eq!(l.ttfb.count(), 4);
    assert!(l.connect.count() >= 1);

    let status = registry.status();
    assert_eq!(status.state, "degraded");
    assert_eq!(status.servers[1].state, ServerState::Ejected);
    assert_eq!(status.listeners[0].responses["5xx"], 1);
    assert_eq!(status.listeners[0].responses["2xx"], 3);
    let text = registry.prometheus();
    let dl = format!(
        "proxy=\"px\",group=\"app\",server=\"127.0.0.1:{}\"",
        dead.port()
    );
    for line in [
        format!("drainpipe_upstream_server_state{{{dl},state=\"ejected\"}} 1"),
        format!("drainpipe_upstream_server_errors_total{{{dl},kind=\"connect\"}} 2"),
        "drainpipe_upstream_responses_total{proxy=\"px\",group=\"app\",class=\"5xx\"} 1".into(),
        "drainpipe_responses_total{listener=\"web\",class=\"2xx\"} 3".into(),
        "drainpipe_request_duration_seconds_count{listener=\"web\"} 4".into(),
        // The issue-18 figures: none retired early; no idle timeout learned,
        // so that gauge has no sample at all.
        format!("drainpipe_upstream_server_retired_early_total{{{dl}}} 0"),
    ] {
        assert!(
            text.contains(&format!("{line}\n")),
            "{line} not in:\n{text}"
        );
    }
    assert!(
        !text.contains("drainpipe_upstream_server_learned_idle_timeout_seconds{"),
        "{text}"
    );
}

// An upstream that closes idle connections after 300 ms without announcing
// it: once the pool saw the close, the learned idle timeout is a sample of
// its own (issue 18's figure, per server).
#[tokio::test]
async fn the_learned_idle_timeout_is_shown_per_server() {
    let live = TestServer::origin(
        Server::builder()
            .idle_timeout(Duration::from_millis(300))
            .announce_idle_timeout(false),
    )
    .await;
    let (srv, proxy) = proxy_in_front_of(live.addr).await;
    let registry = Registry::new().proxy("px", proxy);
    let client = Client::new();
    let res = client
        .request(http::Request::get(srv.url("/")).body(()).unwrap())
        .await
        .unwrap();
    res.into_body().collect().await.unwrap();
    let series = format!(
        "drainpipe_upstream_server_learned_idle_timeout_seconds{{proxy=\"px\",group=\"peer\",server=\"127.0.0.1:{}\"}} ",
        live.addr.port()
    );
    let mut text = String::new();
    let learned = eventually(Duration::from_secs(3), || {
        text = registry.prometheus();
        text.contains(&series)
    })
    .await;
    assert!(learned, "{text}");
    let value: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.25..0.6).contains(&value), "{value}");
    // The status page's row for the server says the same.
    let status = registry.status();
    let row = status
        .servers
        .iter()
        .find(|r| r.server == format!("127.0.0.1:{}", live.addr.port()))
        .expect("a row for the server");
    assert_eq!(row.learned_idle_timeout, Some(value));
    assert_eq!(row.retired_early, 0);
}
