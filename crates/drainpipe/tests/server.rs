//! The server over real sockets with a raw client: persistence, limits,
//! timeouts, `Expect: 100-continue`, handler panics, and an axum `Router`.

mod support;

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use drainpipe::body::Incoming;
use drainpipe::server::{service_fn, CloseReason, Server};
use support::*;

fn builder() -> drainpipe::server::Builder {
    Server::builder()
}

// RFC 9112 §9.3: HTTP/1.1 persists by default; the same connection serves both.
#[tokio::test]
async fn http11_requests_share_one_connection() {
    let srv = TestServer::origin(builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET /conn HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r1 = c.response().await;
    c.send(b"GET /conn HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r2 = c.response().await;
    let id = |r: &RawResponse| r.body_str().split(' ').next().unwrap().to_string();
    assert_eq!(id(&r1), id(&r2), "same connection");
    assert!(r1.body_str().contains("request=1") && r2.body_str().contains("request=2"));
    assert_eq!(
        r1.header("connection"),
        None,
        "no persistence field needed in 1.1"
    );
    assert_eq!(
        r1.head_without_date(),
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ndate: <masked>\r\ncontent-length: {}\r\nkeep-alive: timeout=60",
            r1.body.len()
        )
    );
}

// RFC 9112 §9.3 / Appendix C.2.2: HTTP/1.0 keep-alive is echoed with Keep-Alive.
#[tokio::test]
async fn http10_keep_alive_echoed_with_timeout_and_max() {
    let srv = TestServer::origin(
        builder()
            .idle_timeout(Duration::from_secs(7))
            .max_requests_per_connection(3),
    )
    .await;
    let mut c = Raw::connect(srv.addr).await;
    let req = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let mut maxes = Vec::new();
    for _ in 0..3 {
        c.send(req).await;
        let r = c.response().await;
        assert_eq!(r.body_str(), "Hello, World!");
        maxes.push((r.header("connection"), r.header("keep-alive")));
    }
    assert_eq!(
        maxes,
        [
            (Some("keep-alive".into()), Some("timeout=7, max=2".into())),
            (Some("keep-alive".into()), Some("timeout=7, max=1".into())),
            (Some("close".into()), None),
        ]
    );
    c.expect_eof().await;
}

#[tokio::test]
async fn http10_without_keep_alive_closes_after_one() {
    let srv = TestServer::origin(builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET / HTTP/1.0\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    c.expect_eof().await;
}

// RFC 9112 §6.3 step 8: a body of unknown length to an HTTP/1.0 client is
// delimited by the close, and the response says so.
#[tokio::test]
async fn http10_unknown_length_is_close_delimited() {
    let srv = TestServer::origin(builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET /chunked/5000 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    while c.fill().await {}
    let text = String::from_utf8_lossy(&c.buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(!head.contains("transfer-encoding") && !head.contains("content-length"));
    assert_eq!(body.len(), 5000);
}

#[tokio::test]
async fn http11_unknown_length_is_chunked() {
    let srv = TestServer::origin(builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET /chunked/70000 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(r.body.len(), 70000);
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(c.response().await.body_str(), "Hello, World!");
}

// Connection: close from either side.
#[tokio::test]
async fn close_honoured_from_both_sides() {
    let srv = TestServer::origin(builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(
        c.response().await.header("connection").as_deref(),
        Some("close")
    );
    c.expect_eof().await;

    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET /close HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(
        c.response().await.header("connection").as_deref(),
        Some("close")
    );
    c.expect_eof().await;
}

/// Polls `cond` every 10 ms for up to 2 s.
async fn eventually(cond: impl Fn() -> bool) -> bool {
    for _ in 0..200 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

// RFC 9112 §9.6: a client that announced its last request sends nothing
// more, so the server closes at once instead of lingering for the client's
// EOF; a client that said close but pipelined more gets a lingering close
// (and its response intact).
#[tokio::test]
async fn announced_last_request_closes_without_lingering() {
    // A linger long enough that only a plain close can pass the checks.
    let linger = drainpipe::Linger {
        timeout: Duration::from_secs(30),
        max_bytes: 1 << 20,
    };
    let srv = TestServer::origin(builder().linger(linger)).await;
    for request in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ] {
        let mut c = Raw::connect(srv.addr).await;
        c.send(request).await;
        assert_eq!(c.response().await.body_str(), "Hello, World!");
        c.expect_eof().await;
        // The client keeps its socket open; the server is gone all the same.
        let gone = eventually(|| srv.stats.open.load(Ordering::SeqCst) == 0).await;
        assert!(gone, "server still holds the connection");
        assert_eq!(srv.stats.lingering.load(Ordering::SeqCst), 0);
        drop(c);
    }

    // Close announced, then a request anyway: the server lingers until the
    // client closes, and the response arrives whole.
    let mut c = Raw::connect(srv.addr).await;
    c.send(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    assert_eq!(c.response().await.body_str(), "Hello, World!");
    c.expect_eof().await;
    let lingering = eventually(|| srv.stats.lingering.load(Ordering::SeqCst) == 1).await;
    assert!(lingering, "server did not linger");
    drop(c);
    assert!(eventually(|| srv.stats.open.load(Ordering::SeqCst) == 0).await);
}

// The response to a request that announced the close is the last thing
// the server sends: it leaves in the same TCP segment as the FIN (one
// packet, and one ACK from the client, fewer per connection), which the
// client sees as one segment bringing both. Counted with the client's
// `TCP_INFO` from the moment its request was acknowledged.
#[tokio::test]
async fn the_last_response_before_a_plain_close_leaves_with_the_fin() {
    let srv = TestServer::origin(builder()).await;
    let addr = srv.addr;
    let segments = tokio::task::spawn_blocking(move || segments_after_the_request(addr))
        .await
        .unwrap();
    assert_eq!(
        segments,
        Some(1),
        "segments bringing the response and the EOF"
    );
}

/// The `TCP_INFO` of a socket.
fn tcp_info(s: &std::net::TcpStream) -> nix::libc::tcp_info {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero tcp_info is a valid value; getsockopt writes at
    // most `len` bytes into it.
    let mut info: nix::libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<nix::libc::tcp_info>() as nix::libc::socklen_t;
    let rc = unsafe {
        nix::libc::getsockopt(
            s.as_raw_fd(),
            nix::libc::IPPROTO_TCP,
            nix::libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt(TCP_INFO)");
    info
}

/// Bytes waiting to be read on `s`.
fn readable_bytes(s: &std::net::TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int.
    let rc = unsafe { nix::libc::ioctl(s.as_raw_fd(), nix::libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "ioctl(FIONREAD)");
    n as usize
}

/// Sends `GET / HTTP/1.0` and counts the segments that arrive after the
/// server acknowledged it, up to the EOF. A try where the response came
/// with the acknowledgement itself cannot tell and is made again (at most
/// 50 tries; `None` if none could tell).
fn segments_after_the_request(addr: std::net::SocketAddr) -> Option<u32> {
    use std::io::{Read, Write};
    for _ in 0..50 {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while tcp_info(&s).tcpi_unacked != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "request never acknowledged"
            );
            std::thread::yield_now();
        }
        let before = tcp_info(&s).tcpi_segs_in;
        if readable_bytes(&s) > 0 {
            continue;
        }
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert!(got.ends_with(b"Hello, World!"), "{got:?}");
        return Some(tcp_info(&s).tcpi_segs_in - before);
    }
    None
}

// The last of max_requests carries close, and graceful close keeps every
// response: 10 pipelined, the server closes after the 3rd with 7 unread.
#[tokio::test]
async fn max_requests_closes_gracefully_without_destroying_responses() {
    let srv = TestServer::origin(builder().max_requests_per_connection(3)).await;
    let mut c = Raw::connect(srv.addr).await;
    let one = b"GET /conn HTTP/1.1\r\nHost: a\r\n\r\n";
    c.send(&one.repeat(10)).await;
    // Let the server close while 7 requests sit unread in its buffer: a plain
    // close would make the kernel reset and destroy the responses.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let r = c.response().await;
        bodies.push((r.body_str(), r.header("connection")));
    }
    assert!(bodies[0].0.ends_with("request=1\n") && bodies[0].1.is_none());
    assert!(bodies[1].0.ends_with("request=2\n") && bodies[1].1.is_none());
    assert!(bodies[2].0.ends_with("request=3\n"));
    assert_eq!(bodies[2].1.as_deref(), Some("close"));
    c.expect_eof().await;
    assert_eq!(
        srv.stats.requests.load(Ordering::Relaxed),
        3,
        "nothing after the close processed"
    );
}

// Limits: 431, 414, 413, each with a one-line reason and a close.
#[tokio::test]
async fn head_uri_and_body_limits() {
    let srv = TestServer::origin(
        builder()
            .max_head_bytes(4096)
            .max_uri_bytes(1024)
            .max_body_bytes(100),
    )
    .await;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
                "a".repeat(5000)
            )
            .into_bytes(),
            431,
            "message head larger than 4096 bytes",
        ),
        (
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(2000)).into_bytes(),
            414,
            "request target longer than 1024 bytes",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n".to_vec(),
            413,
            "body larger than 100 bytes",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n".to_vec(),
            413,
            "body larger than 100 bytes",
        ),
    ];
    for (req, status, reason) in cases {
        let mut c = Raw::connect(srv.addr).await;
        c.send(&req).await;
        if status == 413 && req.ends_with(b"65\r\n") {
            c.send(&[b'x'; 101]).await;
        }
        let r = c.response().await;
        assert_eq!(r.status, status, "{reason}");
        assert_eq!(r.header("connection").as_deref(), Some("close"));
        assert!(r.body_str().contains(reason), "{}", r.body_str());
        assert_eq!(r.body_str().lines().count(), 1);
        c.expect_eof().await;
    }
}

// An unread body within the discard limit keeps the connection; beyond it the
// response says close.
#[tokio::test]
async fn unread_body_discarded_or_connection_closed() {
    let srv = TestServer::origin(builder().max_discard_bytes(1000)).await;
    let mut c = Raw::connect(srv.addr).await;
    let mut req = b"POST /status/202 HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n".to_vec();
    req.extend_from_slice(&[b'x'; 1000]);
    req.extend_from_slice(b"GET /conn HTTP/1.1\r\nHost: a\r\n\r\n");
    c.send(&req).await;
    let r = c.response().await;
    assert_eq!((r.status, r.header("connection")), (202, None));
    let r = c.response().await;
    assert!(
        r.body_str().ends_with("request=2\n"),
        "same connection after the discard"
    );

    let mut c = Raw::connect(srv.addr).await;
    c.send(b"POST /status/202 HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n")
        .await;
    c.send(&[b'x'; 1001]).await;
    let r = c.response().await;
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    c.expect_eof().await;
}

// RFC 9110 §10.1.1: 100 Continue only when the handler reads the body.
#[tokio::test]
async fn expect_continue_only_when_the_body_is_read() {
    let srv = TestServer::origin(builder()).await;
    // `/` reads the body: 100 first, then the final response after the body.
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await;
    let interim = c.response().await;
    assert_eq!(interim.status, 100);
    assert_eq!(interim.bytes, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"hello").await;
    let r = c.response().await;
    assert_eq!((r.status, r.body_str().as_str()), (200, "Hello, World!"));
    assert_eq!(r.header("connection"), None);

    // `/status/201` never reads it: no 100, and the connection closes.
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"POST /status/201 HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    c.expect_eof().await;
}

// Timeouts, each short.
#[tokio::test]
async fn head_timeout_answers_408_or_closes_silently() {
    let srv = TestServer::origin(builder().head_timeout(Duration::from_millis(200))).await;
    // Part of a head, then silence: 408 and close.
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET / HTTP/1.1\r\nHo").await;
    let r = c.response().await;
    assert_eq!(r.status, 408);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    c.expect_eof().await;
    // Nothing at all: a silent close.
    let mut c = Raw::connect(srv.addr).await;
    c.expect_eof().await;
    // A slowloris trickle does not extend the deadline.
    let mut c = Raw::connect(srv.addr).await;
    let started = std::time::Instant::now();
    for b in b"GET / HTTP/1.1\r\n" {
        if c.closes_within(Duration::from_millis(50)).await {
            break;
        }
        let _ = c.stream.try_write(&[*b]);
    }
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "closed by the head deadline"
    );
    assert!(srv.stats.closed(CloseReason::HeadTimeout) >= 3);
}

#[tokio::test]
async fn idle_timeout_closes_silently() {
    let srv = TestServer::origin(builder().idle_timeout(Duration::from_millis(200))).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    c.response().await;
    let started = std::time::Instant::now();
    c.expect_eof().await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(srv.stats.closed(CloseReason::IdleTimeout), 1);
}

#[tokio::test]
async fn body_timeout_closes_a_stalled_upload() {
    let srv = TestServer::origin(builder().body_timeout(Duration::from_millis(200))).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab")
        .await;
    assert!(c.closes_within(Duration::from_secs(3)).await);
    assert_eq!(srv.stats.closed(CloseReason::BodyTimeout), 1);
}

#[tokio::test]
async fn write_timeout_closes_a_client_that_never_reads() {
    let srv = TestServer::origin(builder().write_timeout(Duration::from_millis(300))).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET /chunked/1000000000 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    // Never read: the socket buffers fill and writes stall.
    let deadline = std::time::Instant::now() + WAIT;
    while srv.stats.closed(CloseReason::WriteTimeout) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "write timeout never fired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(c);
}

// Max connections: with every slot busy (a request in flight on each), accept
// waits until a slot frees. (Idle keep-alive connections make room instead:
// see server_edges.rs.)
#[tokio::test]
async fn max_connections_makes_accept_wait() {
    let srv = TestServer::origin(builder().max_connections(2)).await;
    let mut a = Raw::connect(srv.addr).await;
    let mut b = Raw::connect(srv.addr).await;
    for c in [&mut a, &mut b] {
        c.send(b"GET /delay/600 HTTP/1.1\r\nHost: a\r\n\r\n").await;
    }
    let mut third = Raw::connect(srv.addr).await; // queued in the backlog
    third.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(
        !third.closes_within(Duration::from_millis(300)).await && third.buf.is_empty(),
        "no answer while both slots are taken"
    );
    for c in [&mut a, &mut b] {
        assert_eq!(c.response().await.body_str(), "Hello, World!");
    }
    let r = third.response().await;
    assert_eq!(r.body_str(), "Hello, World!");
    assert_eq!(srv.stats.accepted.load(Ordering::Relaxed), 3);
}

// A panicking handler: 500 for that request, that connection closed, the
// server goes on.
#[tokio::test]
async fn handler_panic_is_a_500_and_the_server_goes_on() {
    let service = service_fn(|req: http::Request<Incoming>| async move {
        if req.uri().path() == "/panic" {
            panic!("handler bug");
        }
        Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(Bytes::from(
            "fine",
        ))))
    });
    let srv = TestServer::start(builder(), service).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET /panic HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 500);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    c.expect_eof().await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(c.response().await.body_str(), "fine");
    assert_eq!(srv.stats.closed(CloseReason::HandlerError), 1);
}

// Bad requests get their status and a close (a sample; the full smuggling
// suite lives in the protocol core's tests).
#[tokio::test]
async fn malformed_requests_get_their_status() {
    let srv = TestServer::origin(builder()).await;
    for (req, status) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ] {
        let mut c = Raw::connect(srv.addr).await;
        c.send(req).await;
        let r = c.response().await;
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(req));
        assert_eq!(r.header("connection").as_deref(), Some("close"));
        c.expect_eof().await;
    }
}

// An axum Router runs on the drainpipe server unchanged.
#[tokio::test]
async fn axum_router_runs_unchanged() {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route("/hi", get(|| async { "hi from axum" }))
        .route(
            "/upper",
            post(|body: String| async move { body.to_uppercase() }),
        );
    let srv = TestServer::start(builder(), app).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET /hi HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!((r.status, r.body_str().as_str()), (200, "hi from axum"));
    c.send(b"POST /upper HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(r.body_str(), "ABC");
    c.send(b"GET /missing HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(c.response().await.status, 404);
    assert_eq!(
        srv.stats.accepted.load(Ordering::Relaxed),
        1,
        "one connection for all three"
    );
}

// A client that half-closes after pipelining still gets every answer.
#[tokio::test]
async fn half_closed_client_gets_its_responses() {
    let srv = TestServer::origin(builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".repeat(3))
        .await;
    tokio::io::AsyncWriteExt::shutdown(&mut c.stream)
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(c.response().await.body_str(), "Hello, World!");
    }
    c.expect_eof().await;
}

/// Two requests for `path` on `c`, the connection parked between them: the
/// two response bodies.
async fn around_a_park(srv: &TestServer, c: &mut Raw, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
    c.send(request.as_bytes()).await;
    let first = c.response().await.body_str();
    assert!(
        eventually(|| srv.stats.parked.load(Ordering::Relaxed) == 1).await,
        "never parked"
    );
    c.send(request.as_bytes()).await;
    (first, c.response().await.body_str())
}

// Parking: an idle connection leaves its task; bytes bring it back on the same
// connection; deadlines and drains still close it.
#[tokio::test]
async fn idle_connection_is_parked_and_resumed() {
    let srv = TestServer::origin(
        builder()
            .park_idle_after(Some(Duration::from_millis(100)))
            .idle_timeout(Duration::from_secs(5)),
    )
    .await;
    let mut c = Raw::connect(srv.addr).await;
    let (first, second) = around_a_park(&srv, &mut c, "/conn").await;
    assert_eq!(srv.stats.parked.load(Ordering::Relaxed), 0);
    assert_eq!(
        first.split(' ').next(),
        second.split(' ').next(),
        "same connection"
    );
    assert!(second.ends_with("request=2\n"), "{second}");
    assert_eq!(srv.stats.accepted.load(Ordering::Relaxed), 1);
    // A client closing while parked is noticed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(srv.stats.parked.load(Ordering::Relaxed), 1);
    drop(c);
    let deadline = std::time::Instant::now() + WAIT;
    while srv.stats.open.load(Ordering::Relaxed) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "parked close not noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(srv.stats.closed(CloseReason::ClientClosed), 1);
}

// The peer's address survives parking: the resumed task's handler sees the
// client address it saw before (the one accepted, carried in the parked entry).
#[tokio::test]
async fn resumed_connection_keeps_its_peer_address() {
    let service = service_fn(|req: http::Request<Incoming>| async move {
        let info = req.body().conn_info().expect("a server connection");
        let line = format!(
            "conn={} request={} peer={:?}",
            info.id, info.request, info.peer
        );
        Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(Bytes::from(
            line,
        ))))
    });
    let srv = TestServer::start(
        builder()
            .park_idle_after(Some(Duration::from_millis(100)))
            .idle_timeout(Duration::from_secs(5)),
        service,
    )
    .await;
    let mut c = Raw::connect(srv.addr).await;
    let client = c.stream.local_addr().unwrap();
    let (first, second) = around_a_park(&srv, &mut c, "/").await;
    let id = first.split(' ').next().unwrap();
    assert_eq!(first, format!("{id} request=1 peer=Some({client})"));
    assert_eq!(second, format!("{id} request=2 peer=Some({client})"));
}

#[tokio::test]
async fn parked_connection_honours_idle_timeout_and_request_limit() {
    let srv = TestServer::origin(
        builder()
            .park_idle_after(Some(Duration::from_millis(50)))
            .idle_timeout(Duration::from_millis(600))
            .max_requests_per_connection(2),
    )
    .await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(c.response().await.header("connection"), None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(srv.stats.parked.load(Ordering::Relaxed), 1);
    // The request count survives parking: the second request is the last.
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(
        c.response().await.header("connection").as_deref(),
        Some("close")
    );
    c.expect_eof().await;

    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    c.response().await;
    let started = std::time::Instant::now();
    c.expect_eof().await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(srv.stats.closed(CloseReason::IdleTimeout), 1);
}

// Every new connection's first request is read as soon as it arrives, on a
// multi-threaded runtime where the reactor runs on another thread than the
// accept loop: a readiness event that lands while a connection is being set
// up must not be lost (it once was, leaving the request unread until the
// connection was parked a second later, or closed by a drain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_connection_is_answered_at_once() {
    let srv = TestServer::origin(builder().park_idle_after(None)).await;
    let addr = srv.addr;
    let slowest = tokio::task::spawn_blocking(move || {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut slowest = Duration::ZERO;
                    for _ in 0..250 {
                        let started = std::time::Instant::now();
                        let mut s = std::net::TcpStream::connect(addr).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                            .unwrap();
                        let mut got = Vec::new();
                        s.read_to_end(&mut got).unwrap();
                        assert!(got.ends_with(b"Hello, World!"), "{got:?}");
                        slowest = slowest.max(started.elapsed());
                    }
                    slowest
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap()
    })
    .await
    .unwrap();
    // A lost wakeup leaves a request unread until the head timeout (10 s),
    // far beyond this bound (and the clients' 5 s read timeout); a loaded
    // machine stays well within it.
    assert!(
        slowest < Duration::from_secs(3),
        "a new connection waited {slowest:?} for its response"
    );
    assert_eq!(srv.stats.requests.load(Ordering::Relaxed), 2000);
    srv.drain().await;
}

/// TCP_NODELAY on the server's end of the connection whose client end is
/// bound to `client` (found among this process's descriptors: the server
/// runs in the test).
fn server_nodelay(client: std::net::SocketAddr) -> bool {
    use std::os::fd::BorrowedFd;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: only looked at while this function runs; the server's
        // sockets stay open meanwhile (the connection is idle, kept alive).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&fd);
        if sock.peer_addr().ok().and_then(|a| a.as_socket()) == Some(client) {
            return sock.tcp_nodelay().unwrap();
        }
    }
    panic!("no server socket connected to {client}");
}

// Nagle (with Linux's Minshall rule) never holds a connection's first write,
// so TCP_NODELAY costs a setsockopt only on a connection that writes again:
// off after the first response, on from the second.
#[tokio::test]
async fn nagle_goes_off_before_the_second_write() {
    let srv = TestServer::origin(builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    let client = c.stream.local_addr().unwrap();
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(c.response().await.status, 200);
    assert!(!server_nodelay(client), "one write: Nagle still on");
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(c.response().await.status, 200);
    assert!(server_nodelay(client), "off before the second write");
}

// A 1xx written while the handler works is a write too: the final response
// after it is the connection's second write and goes out with Nagle off (it
// would otherwise wait for the client's delayed ACK of the 1xx).
#[tokio::test]
async fn a_response_after_an_informational_one_goes_out_with_nagle_off() {
    let service = service_fn(|req: http::Request<Incoming>| async move {
        let interim = req.body().interim().expect("a drainpipe server's request");
        let mut hints = http::Response::new(());
        *hints.status_mut() = http::StatusCode::from_u16(103).unwrap();
        interim.send(hints.into_parts().0).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(Bytes::from(
            "ok",
        ))))
    });
    let srv = TestServer::start(builder(), service).await;
    let mut c = Raw::connect(srv.addr).await;
    let client = c.stream.local_addr().unwrap();
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = c.response().await;
    assert_eq!(r.status, 103, "{}", r.head);
    let r = c.response().await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(server_nodelay(client), "off before the final response");
}
