//! The client over real sockets: pool behaviour, honouring the server, the
//! retry rules (the keep-alive race), truncation, pipelining.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use drainpipe::client::{Client, Origin};
use drainpipe::server::Server;
use http_body_util::BodyExt;
use support::*;

async fn text(client: &Client, url: &str) -> String {
    let res = client
        .request(http::Request::get(url).body(()).unwrap())
        .await
        .expect("request");
    let body = res.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

fn conn_id(conn_line: &str) -> String {
    conn_line.split(' ').next().unwrap().to_string()
}

fn origin_of(srv: &TestServer) -> Origin {
    Origin {
        host: "127.0.0.1".into(),
        port: srv.addr.port(),
        tls: None,
    }
}

#[tokio::test]
async fn keep_alive_reuses_one_connection() {
    let srv = TestServer::origin(Server::builder()).await;
    let client = Client::new();
    let a = text(&client, &srv.url("/conn")).await;
    let b = text(&client, &srv.url("/conn")).await;
    let c = text(&client, &srv.url("/conn")).await;
    assert_eq!(conn_id(&a), conn_id(&b));
    assert_eq!(conn_id(&b), conn_id(&c));
    assert!(c.ends_with("request=3\n"));
    assert_eq!(client.stats().opened.load(Ordering::Relaxed), 1);
    assert_eq!(client.stats().reused.load(Ordering::Relaxed), 2);
    assert_eq!(srv.stats.accepted.load(Ordering::Relaxed), 1);
}

// LIFO: the connection given back last is the next one lent.
#[tokio::test]
async fn warmest_connection_is_reused_first() {
    let srv = TestServer::origin(Server::builder()).await;
    let client = Client::new();
    let slow_url = srv.url("/delay/300");
    let (slow, fast) = tokio::join!(text(&client, &slow_url), async {
        // Starts after the slow one took its connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
        text(&client, &srv.url("/delay/50")).await
    });
    assert_eq!(
        (slow.as_str(), fast.as_str()),
        ("Hello, World!", "Hello, World!")
    );
    assert_eq!(client.idle_connections(&origin_of(&srv)), 2);
    // The slow request's connection came back last: it is the warmest.
    let next = text(&client, &srv.url("/conn")).await;
    assert!(next.ends_with("request=2\n"), "{next}");
    // Connection ids: the slow request was accepted first (id n), the fast one
    // second (n+1); the warmest is the slow one's.
    let first_id: u64 = conn_id(&next).trim_start_matches("conn=").parse().unwrap();
    let second = text(&client, &srv.url("/conn")).await;
    assert_eq!(conn_id(&second), conn_id(&next), "still the warmest");
    assert!(first_id >= 1);
}

#[tokio::test]
async fn max_idle_per_host_is_enforced() {
    let srv = TestServer::origin(Server::builder()).await;
    let client = Client::builder().max_idle_per_host(1).build();
    let urls: Vec<String> = (0..3).map(|_| srv.url("/delay/100")).collect();
    let futs = urls.iter().map(|u| text(&client, u));
    let bodies = futures_util::future::join_all(futs).await;
    assert!(bodies.iter().all(|b| b == "Hello, World!"));
    assert_eq!(client.stats().opened.load(Ordering::Relaxed), 3);
    assert_eq!(client.idle_connections(&origin_of(&srv)), 1);
    assert_eq!(client.open_connections(&origin_of(&srv)), 1);
}

// No idle connections allowed: every request opens one, and the pool keeps
// none (the server sees each connection end).
#[tokio::test]
async fn max_idle_per_host_zero_keeps_nothing() {
    let srv = TestServer::origin(Server::builder()).await;
    let client = Client::builder().max_idle_per_host(0).build();
    for _ in 0..3 {
        assert!(text(&client, &srv.url("/conn"))
            .await
            .ends_with("request=1\n"));
        assert_eq!(client.idle_connections(&origin_of(&srv)), 0);
        assert_eq!(client.open_connections(&origin_of(&srv)), 0);
    }
    assert_eq!(client.stats().opened.load(Ordering::Relaxed), 3);
    assert_eq!(srv.stats.accepted.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn idle_timeout_and_max_lifetime_retire_connections() {
    let srv = TestServer::origin(Server::builder()).await;
    let client = Client::builder()
        .idle_timeout(Duration::from_millis(200))
        .build();
    text(&client, &srv.url("/")).await;
    assert_eq!(client.idle_connections(&origin_of(&srv)), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(client.idle_connections(&origin_of(&srv)), 0, "reaped");
    text(&client, &srv.url("/")).await;
    assert_eq!(client.stats().opened.load(Ordering::Relaxed), 2);

    let client = Client::builder()
        .max_lifetime(Some(Duration::from_millis(300)))
        .build();
    text(&client, &srv.url("/")).await;
    text(&client, &srv.url("/")).await;
    assert_eq!(client.stats().opened.load(Ordering::Relaxed), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    text(&client, &srv.url("/")).await;
    assert_eq!(
        client.stats().opened.load(Ordering::Relaxed),
        2,
        "lifetime over"
    );
}

// Max connections per host: the rest wait in line, first come first served.
#[tokio::test]
async fn max_per_host_waits_fairly() {
    let srv = TestServer::origin(Server::builder()).await;
    let client = Client::builder().max_per_host(Some(1)).build();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let client = client.clone();
        let url = srv.url("/delay/50");
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10 * i)).await;
            text(&client, &url).await;
            order.lock().unwrap().push(i);
        }));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        *order.lock().unwrap(),
        [0, 1, 2, 3],
        "served in arrival order"
    );
    assert_eq!(client.stats().opened.load(Ordering::Relaxed), 1);
    assert_eq!(srv.stats.accepted.load(Ordering::Relaxed), 1);
}

// Honour the server: Connection: close, HTTP/1.0 without keep-alive,
// Keep-Alive: timeout and max.
#[tokio::test]
async fn server_close_signals_are_honoured() {
    let srv = TestServer::origin(Server::builder()).await;
    let client = Client::new();
    text(&client, &srv.url("/close")).await;
    assert_eq!(client.idle_connections(&origin_of(&srv)), 0);
    text(&client, &srv.url("/")).await;
    assert_eq!(client.stats().opened.load(Ordering::Relaxed), 2);

    let http10 = raw_server(|_, mut c| async move {
        while c.request().await.is_some() {
            c.send(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
        }
    })
    .await;
    let client = Client::new();
    let url = format!("http://{http10}/");
    text(&client, &url).await;
    text(&client, &url).await;
    assert_eq!(
        client.stats().opened.load(Ordering::Relaxed),
        2,
        "HTTP/1.0 without keep-alive"
    );
}

#[tokio::test]
async fn keep_alive_max_and_timeout_are_honoured() {
    let conns = Arc::new(AtomicUsize::new(0));
    let seen = conns.clone();
    let addr = raw_server(move |_, mut c| {
        seen.fetch_add(1, Ordering::Relaxed);
        async move {
            // `max=M`: M more requests after this one. The first answer
            // allows one more, the second none; the socket then stays open, so
            // only the client's own rule keeps it from a third request.
            for left in [1, 0] {
                if c.request().await.is_none() {
                    return;
                }
                let res = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=3, max={left}\r\n\r\nok"
                );
                c.send(res.as_bytes()).await;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    })
    .await;
    let client = Client::builder()
        .keep_alive_margin(Duration::from_millis(1500))
        .build();
    let url = format!("http://{addr}/");
    for _ in 0..3 {
        text(&client, &url).await;
    }
    assert_eq!(
        conns.load(Ordering::Relaxed),
        2,
        "max=M: a new connection after two requests"
    );
    // timeout=3 with a 1.5 s margin: reusable for 1.5 s only.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    text(&client, &url).await;
    assert_eq!(
        conns.load(Ordering::Relaxed),
        3,
        "retired before the server's timeout"
    );
    assert_eq!(client.stats().retries.load(Ordering::Relaxed), 0);
}

// The timeout is the last response's: one without `Keep-Alive` lifts the
// `timeout=1` of the one before, so the connection is still reused after
// 1.5 s (this server keeps idle connections for 5 s).
#[tokio::test]
async fn keep_alive_timeout_is_cleared_by_a_response_without_it() {
    let conns = Arc::new(AtomicUsize::new(0));
    let seen = conns.clone();
    let addr = raw_server(move |_, mut c| {
        seen.fetch_add(1, Ordering::Relaxed);
        async move {
            for keep_alive in ["Keep-Alive: timeout=1\r\n", "", ""] {
                let next = tokio::time::timeout(Duration::from_secs(5), c.request());
                let Ok(Some(_)) = next.await else { return };
                let res = format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{keep_alive}\r\nok");
                c.send(res.as_bytes()).await;
            }
        }
    })
    .await;
    let client = Client::builder()
        .keep_alive_margin(Duration::from_millis(200))
        .build();
    let url = format!("http://{addr}/");
    let run = async {
        text(&client, &url).await;
        text(&client, &url).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        text(&client, &url).await;
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the exchanges finish");
    assert_eq!(
        conns.load(Ordering::Relaxed),
        1,
        "the stale timeout=1 retired the connection"
    );
    assert_eq!(client.stats().reused.load(Ordering::Relaxed), 2);
    assert_eq!(client.stats().retries.load(Ordering::Relaxed), 0);
}

// The response timeout bounds each wait for the next piece of a body, not
// the whole body: pieces 250 ms apart pass a 500 ms timeout however many
// there are; a stall after them is cut 500 ms into it.
#[tokio::test]
async fn response_body_timeout_bounds_each_wait() {
    let addr = raw_server(|_, mut c| async move {
        let Some(req) = c.request().await else { return };
        let stall = req.starts_with("GET /stall ");
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\na")
            .await;
        for piece in [b"b", b"c", b"d", b"e"] {
            tokio::time::sleep(Duration::from_millis(250)).await;
            c.send(piece).await;
        }
        if stall {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        c.send(b"f").await;
    })
    .await;
    let client = Client::builder()
        .response_timeout(Some(Duration::from_millis(500)))
        .build();
    let get = |path: &str| {
        let req = http::Request::get(format!("http://{addr}{path}"))
            .body(())
            .unwrap();
        let client = client.clone();
        async move {
            let res = client.request(req).await.expect("response head");
            res.into_body().collect().await.map(|b| b.to_bytes())
        }
    };
    let paced = tokio::time::timeout(Duration::from_secs(5), get("/paced"))
        .await
        .expect("bounded");
    assert_eq!(paced.expect("paced body"), "abcdef");
    let started = std::time::Instant::now();
    let stalled = tokio::time::timeout(Duration::from_secs(5), get("/stall"))
        .await
        .expect("bounded");
    let e = stalled.expect_err("a stalled body is an error");
    assert!(e.is_timeout(), "{e}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "cut {:?} after the request",
        started.elapsed()
    );
}

// A pooled connection the server closed is detected before reuse (no error,
// no retry needed).
#[tokio::test]
async fn pending_eof_is_checked_before_reuse() {
    let srv = TestServer::origin(
        Server::builder()
            .idle_timeout(Duration::from_millis(100))
            .park_idle_after(None),
    )
    .await;
    let client = Client::new();
    text(&client, &srv.url("/")).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    text(&client, &srv.url("/")).await;
    assert_eq!(client.stats().opened.load(Ordering::Relaxed), 2);
    assert_eq!(client.stats().retries.load(Ordering::Relaxed), 0);
    assert_eq!(client.stats().reused.load(Ordering::Relaxed), 0);
}

/// A server that answers the first request on each connection, then closes
/// when the second arrives without answering it: exactly the keep-alive race
/// (the server closed the idle connection as the request went out). It counts
/// the requests it saw by first line.
async fn racing_server() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let addr = raw_server(move |_, mut c| {
        let log = log.clone();
        async move {
            if let Some(req) = c.request().await {
                log.lock()
                    .unwrap()
                    .push(req.lines().next().unwrap().to_string());
                c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
                    .await;
            }
            if let Some(req) = c.request().await {
                log.lock()
                    .unwrap()
                    .push(req.lines().next().unwrap().to_string());
                // Close without answering.
            }
        }
    })
    .await;
    (addr, seen)
}

#[tokio::test]
async fn stale_connection_get_is_retried_once() {
    let (addr, seen) = racing_server().await;
    let client = Client::new();
    let url = format!("http://{addr}/x");
    assert_eq!(text(&client, &url).await, "first");
    assert_eq!(
        text(&client, &url).await,
        "first",
        "retried on a new connection"
    );
    assert_eq!(client.stats().retries.load(Ordering::Relaxed), 1);
    assert_eq!(client.stats().opened.load(Ordering::Relaxed), 2);
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "first, the lost one, the retry"
    );
}

#[tokio::test]
async fn stale_connection_post_surfaces_a_typed_error_and_is_never_resent() {
    let (addr, seen) = racing_server().await;
    let client = Client::new();
    let url = format!("http://{addr}/x");
    let post = || http::Request::post(&url).body("payload").unwrap();
    client
        .request(post())
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    let err = client.request(post()).await.unwrap_err();
    assert!(err.is_closed_before_response(), "{err}");
    assert!(err.is_reused_connection(), "{err}");
    assert!(err.may_have_been_processed(), "the server may have acted");
    assert!(
        err.to_string().contains("request fully written: true"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen.lock().unwrap().len(), 2, "the POST was not resent");
    assert_eq!(client.stats().retries.load(Ordering::Relaxed), 0);

    // With an Idempotency-Key it is retried: first a pooled connection (its
    // first request is answered), then the keyed POST on it.
    text(&client, &url).await;
    let keyed = http::Request::post(&url)
        .header("idempotency-key", "k-1")
        .body("payload")
        .unwrap();
    let res = client.request(keyed).await.expect("retried");
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "first");
    assert_eq!(client.stats().retries.load(Ordering::Relaxed), 1);
    let lines = seen.lock().unwrap().clone();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("POST")).count(),
        4,
        "{lines:?}"
    );
}

#[tokio::test]
async fn streamed_body_is_never_replayed() {
    let (addr, seen) = racing_server().await;
    let client = Client::new();
    let url = format!("http://{addr}/x");
    text(&client, &url).await;
    let frames = [Bytes::from("a"), Bytes::from("b")]
        .map(|b| Ok::<_, std::convert::Infallible>(http_body::Frame::data(b)));
    let stream = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let req = http::Request::put(&url)
        .body(drainpipe::client::RequestBody::stream(stream))
        .unwrap();
    let err = client.request(req).await.unwrap_err();
    assert!(err.is_reused_connection());
    assert_eq!(seen.lock().unwrap().len(), 2);
}

// The classic race, for real: a server that closes idle connections after
// exactly 1 s, a client sending a GET about every second, 30 times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_race_with_a_one_second_idle_close_shows_no_errors() {
    let srv = TestServer::origin(
        Server::builder()
            .idle_timeout(Duration::from_secs(1))
            .park_idle_after(None),
    )
    .await;
    let client = Client::new();
    let mut errors = 0;
    for i in 0..30u64 {
        // 1 s, give or take a little, to land on both sides of the close.
        let jitter = (i * 7 % 11) as i64 - 5;
        tokio::time::sleep(Duration::from_millis((1000 + jitter) as u64)).await;
        let res = client
            .request(http::Request::get(srv.url("/")).body(()).unwrap())
            .await;
        match res {
            Ok(r) => assert_eq!(
                r.into_body().collect().await.unwrap().to_bytes(),
                "Hello, World!"
            ),
            Err(e) => {
                eprintln!("request {i}: {e}");
                errors += 1;
            }
        }
    }
    let stats = client.stats();
    eprintln!(
        "race: 30 GETs, {errors} errors, {} connections opened, {} reused, {} retried",
        stats.opened.load(Ordering::Relaxed),
        stats.reused.load(Ordering::Relaxed),
        stats.retries.load(Ordering::Relaxed)
    );
    assert_eq!(errors, 0);
}

// Truncation: fewer bytes than Content-Length, or chunked without its last
// chunk, is an error, never a clean end.
#[tokio::test]
async fn truncated_bodies_are_errors() {
    let srv = TestServer::origin(Server::builder()).await;
    let client = Client::new();
    let res = client
        .request(
            http::Request::get(srv.url("/truncate/100"))
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    let err = res.into_body().collect().await.unwrap_err();
    assert!(err.is_truncated(), "{err}");
    assert_eq!(err.truncation(), Some((Some(100), 50)));

    let chunked = raw_server(|_, mut c| async move {
        c.request().await;
        c.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .await;
    })
    .await;
    let res = client
        .request(
            http::Request::get(format!("http://{chunked}/"))
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    let err = res.into_body().collect().await.unwrap_err();
    assert_eq!(err.truncation(), Some((None, 5)), "{err}");
    // The broken connection was not pooled.
    assert_eq!(
        client.idle_connections(&Origin {
            host: "127.0.0.1".into(),
            port: chunked.port(),
            tls: None,
        }),
        0
    );
}

#[tokio::test]
async fn malformed_response_is_a_protocol_error() {
    let addr = raw_server(|_, mut c| async move {
        c.request().await;
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
            .await;
    })
    .await;
    let err = Client::new()
        .request(
            http::Request::get(format!("http://{addr}/"))
                .body(())
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(err.is_protocol(), "{err}");
}

#[tokio::test]
async fn connect_failure_is_typed_and_nothing_was_sent() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = unused.local_addr().unwrap();
    drop(unused);
    let err = Client::new()
        .request(
            http::Request::get(format!("http://{addr}/"))
                .body(())
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err}");
    assert!(!err.may_have_been_processed());
}

// Pipelining: a server that answers 5 of 10 pipelined requests then closes:
// all 10 complete, the last 5 on a new connection.
#[tokio::test]
async fn pipeline_retries_what_the_server_left_unanswered() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let addr = raw_server(move |conn_no, mut c| {
        let seen = seen.clone();
        async move {
            let mut answered = 0;
            while let Some(req) = c.request().await {
                let path = req.split(' ').nth(1).unwrap().to_string();
                seen.lock().unwrap().push((conn_no, path.clone()));
                let body = format!("{path}@{conn_no}");
                c.send(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
                answered += 1;
                if conn_no == 0 && answered == 5 {
                    // Leave the rest unanswered: drain what was sent, then close.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return;
                }
            }
        }
    })
    .await;
    let client = Client::new();
    let reqs: Vec<_> = (0..10)
        .map(|i| {
            http::Request::get(format!("http://{addr}/{i}"))
                .body(())
                .unwrap()
        })
        .collect();
    let results = client.pipeline(reqs).await;
    let bodies: Vec<String> = results
        .into_iter()
        .map(|r| {
            String::from_utf8(r.expect("every request completes").into_body().to_vec()).unwrap()
        })
        .collect();
    let expected: Vec<String> = (0..10)
        .map(|i| format!("/{i}@{}", if i < 5 { 0 } else { 1 }))
        .collect();
    assert_eq!(bodies, expected);
    assert_eq!(client.stats().opened.load(Ordering::Relaxed), 2);
    assert!(client.stats().retries.load(Ordering::Relaxed) >= 5);
    // After the first request, the rest went out pipelined: the server read
    // requests 1..9 before answering all of them (they were all in flight).
    let seen = log.lock().unwrap();
    assert_eq!(seen.iter().filter(|(c, _)| *c == 0).count(), 5);
}

#[tokio::test]
async fn pipeline_refuses_non_idempotent_requests() {
    let srv = TestServer::origin(Server::builder()).await;
    let client = Client::new();
    let results = client
        .pipeline(vec![
            http::Request::get(srv.url("/"))
                .body(drainpipe::client::RequestBody::empty())
                .unwrap(),
            http::Request::post(srv.url("/")).body("x".into()).unwrap(),
        ])
        .await;
    assert!(results[0].is_ok());
    assert!(results[1]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("idempotent"));
}
