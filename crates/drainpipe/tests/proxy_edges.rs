//! The proxy's edges with an upstream, over sockets on 127.0.0.1 (issue 12):
//! an early final response relayed while the upload goes on (RFC 9112 §9.5),
//! the send and response timeouts (504), 1xx relayed in order (RFC 9110
//! §15.2), `Expect: 100-continue` forwarded (§10.1.1), `Max-Forwards` on
//! OPTIONS and TRACE (§7.6.2), and `OPTIONS *`.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drainpipe::client::{Client, Informational};
use drainpipe::proxy::{ForwardProxy, Policy};
use drainpipe::server::Server;
use http_body_util::BodyExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A reverse proxy with one route, `/` to `upstream`, carrying its requests
/// through `client`.
async fn proxy_with(upstream: SocketAddr, client: Client) -> TestServer {
    proxy_with_client(upstream, client).await.0
}

/// Writes `total` bytes of body in the background (it blocks once nobody
/// reads, which is the point); returns how many went out so far.
fn upload(mut w: tokio::net::tcp::OwnedWriteHalf, total: usize) -> Arc<AtomicUsize> {
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len());
            if w.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            counter.fetch_add(n, Ordering::Relaxed);
            left -= n;
        }
        // Keep the write half (and the connection) open.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    sent
}

/// Reads one response head (and a Content-Length body) from a raw stream,
/// within `within`.
async fn read_response(
    r: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut Vec<u8>,
    within: Duration,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                let all: Vec<u8> = buf.drain(..end + 4 + len).collect();
                return String::from_utf8_lossy(&all).into_owned();
            }
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout_at(deadline, r.read(&mut chunk)).await {
            Ok(Ok(0)) => panic!("EOF; have {:?}", String::from_utf8_lossy(buf)),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => panic!("read: {e}; have {:?}", String::from_utf8_lossy(buf)),
            Err(_) => panic!(
                "no response within {within:?}; have {:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }
}

/// An upstream that answers every request with `status` as soon as its head
/// arrives, then stops reading (the connection stays open), counting
/// connections.
async fn refusing_upstream(status: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    let addr = raw_server(move |_, mut c| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if c.head_end().await.is_none() {
                return;
            }
            let res = format!("HTTP/1.1 {status}\r\nContent-Length: 7\r\n\r\nrefused");
            c.send(res.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    })
    .await;
    (addr, conns)
}

// RFC 9112 §9.5: an upstream that answers 413 right after the head and stops
// reading: the answer reaches the client at once, the rest of the upload is
// not forwarded, the upstream connection (its request unfinished) is not
// reused, and the client connection closes (its body was not read).
#[tokio::test]
async fn early_final_response_is_relayed_while_the_upload_goes_on() {
    let (upstream, conns) = refusing_upstream("413 Payload Too Large").await;
    let srv = proxy_with(upstream, Client::new()).await;
    let total = 20 * 1024 * 1024;
    let stream = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    w.write_all(
        format!("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {total}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let sent = upload(w, total);
    let mut buf = Vec::new();
    let res = read_response(&mut r, &mut buf, WAIT).await;
    let took = started.elapsed();
    assert!(res.starts_with("HTTP/1.1 413 "), "{res}");
    assert!(res.ends_with("refused"), "{res}");
    assert!(
        res.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "the client's unread body ends its connection: {res}"
    );
    assert!(took < Duration::from_secs(2), "relayed after {took:?}");
    assert!(
        sent.load(Ordering::Relaxed) < total,
        "answered before the upload ended"
    );
    eprintln!(
        "413 relayed after {took:?}, {} of {total} bytes uploaded",
        sent.load(Ordering::Relaxed)
    );

    // The next request gets a new upstream connection: the first one's
    // request never completed.
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"POST /again HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    assert_eq!(c.response().await.status, 413);
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

// The client library returns the early response too.
#[tokio::test]
async fn client_returns_an_early_response() {
    let (upstream, _) = refusing_upstream("401 Unauthorized").await;
    let client = Client::new();
    let body = vec![b'x'; 20 * 1024 * 1024];
    let req = http::Request::post(format!("http://{upstream}/upload"))
        .body(body)
        .unwrap();
    let started = Instant::now();
    let res = tokio::time::timeout(WAIT, client.request(req))
        .await
        .expect("answered before the upload ends")
        .unwrap();
    assert_eq!(res.status(), 401);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"refused");
    assert!(started.elapsed() < Duration::from_secs(2));
}

// An upstream that stops reading a large upload and never answers: the send
// timeout (no progress) gives 504 and the upstream connection is closed.
#[tokio::test]
async fn a_stalled_upload_times_out_with_504() {
    let closed = Arc::new(AtomicUsize::new(0));
    let seen_close = closed.clone();
    let upstream = raw_server(move |_, mut c| {
        let seen_close = seen_close.clone();
        async move {
            let mut chunk = [0u8; 4096];
            // The head, then nothing more is read for 3 s...
            if c.head_end().await.is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            // ...then read on to see the proxy close the connection.
            loop {
                match tokio::time::timeout(WAIT, c.stream.read(&mut chunk)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        seen_close.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Ok(Ok(_)) => {}
                    Err(_) => return,
                }
            }
        }
    })
    .await;
    let client = Client::builder()
        .send_timeout(Some(Duration::from_secs(1)))
        .build();
    let srv = proxy_with(upstream, client).await;
    let total = 64 * 1024 * 1024;
    let stream = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    w.write_all(
        format!("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {total}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let _sent = upload(w, total);
    let mut buf = Vec::new();
    let res = read_response(&mut r, &mut buf, WAIT).await;
    let took = started.elapsed();
    assert!(res.starts_with("HTTP/1.1 504 "), "{res}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "504 after {took:?}"
    );
    assert!(
        eventually(WAIT, || closed.load(Ordering::SeqCst) == 1).await,
        "the upstream connection is closed"
    );
}

/// An upstream that reads a request and then says nothing for two minutes.
async fn silent_upstream() -> SocketAddr {
    raw_server(|_, mut c| async move {
        if c.head_end().await.is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(120)).await;
    })
    .await
}

/// Sends `request` to `addr` and waits (up to 100 s of the test's clock) for
/// the response; returns it and how long it took on that clock.
async fn answer_after(addr: SocketAddr, request: String) -> (String, Duration) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let started = tokio::time::Instant::now();
    w.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let res = read_response(&mut r, &mut buf, Duration::from_secs(100)).await;
    (res, started.elapsed())
}

// With no response timeout configured, a stalled upstream is given up after
// 60 s (nginx's default) with 504: both proxies, their default clients. The
// clock is paused and jumps ahead whenever everything waits.
#[tokio::test(start_paused = true)]
async fn the_default_response_timeout_is_60s_in_both_proxies() {
    let upstream = silent_upstream().await;
    let srv = proxy_with(upstream, Client::new()).await;
    let (res, took) = answer_after(
        srv.addr,
        "GET /stall HTTP/1.1\r\nHost: a\r\n\r\n".to_string(),
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 504 "), "{res}");
    assert!(
        took >= Duration::from_secs(60) && took < Duration::from_secs(61),
        "{took:?}"
    );

    let forward = ForwardProxy::new(
        Client::new(),
        Policy {
            allow_private: true,
            ..Policy::default()
        },
        None,
    );
    let fwd = TestServer::start(Server::builder(), forward).await;
    let (res, took) = answer_after(
        fwd.addr,
        format!("GET http://{upstream}/stall HTTP/1.1\r\nHost: {upstream}\r\n\r\n"),
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 504 "), "{res}");
    assert!(
        took >= Duration::from_secs(60) && took < Duration::from_secs(61),
        "{took:?}"
    );
}

/// An upstream that sends `103 Early Hints` and an unsolicited `100`, waits,
/// then answers 200.
async fn hinting_upstream() -> SocketAddr {
    raw_server(|_, mut c| async move {
        while c.request().await.is_some() {
            c.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
                .await;
            c.send(b"HTTP/1.1 100 Continue\r\n\r\n").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
                .await;
        }
    })
    .await
}

// RFC 9110 §15.2: a proxy forwards the 1xx responses it did not ask for, in
// order, ahead of the final one, and never to an HTTP/1.0 client.
#[tokio::test]
async fn informational_responses_are_relayed_in_order() {
    let upstream = hinting_upstream().await;
    let srv = proxy_with(upstream, Client::new()).await;

    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET /page HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let started = Instant::now();
    let hints = c.response().await;
    let hints_after = started.elapsed();
    assert_eq!(hints.status, 103, "{}", hints.head);
    assert_eq!(
        hints.header("link").as_deref(),
        Some("</style.css>; rel=preload")
    );
    assert!(
        hints_after < Duration::from_millis(250),
        "the 103 came at once, not with the final response ({hints_after:?})"
    );
    let cont = c.response().await;
    assert_eq!(cont.status, 100, "{}", cont.head);
    let fin = c.response().await;
    assert_eq!(fin.status, 200);
    assert_eq!(fin.body_str(), "final");
    assert!(fin.header("connection").is_none(), "{}", fin.head);

    // HTTP/1.0: the final response only.
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET /page HTTP/1.0\r\nHost: a\r\n\r\n").await;
    let fin = c.response().await;
    assert_eq!(fin.status, 200, "{}", fin.head);
    assert!(fin.head.starts_with("HTTP/1.1 200 OK"), "{}", fin.head);
    assert!(!String::from_utf8_lossy(&fin.bytes).contains(" 103 "));

    // The forward proxy relays them too.
    let forward = ForwardProxy::new(
        Client::new(),
        Policy {
            allow_private: true,
            ..Policy::default()
        },
        None,
    );
    let fwd = TestServer::start(Server::builder(), forward).await;
    let mut c = Raw::connect(fwd.addr).await;
    c.send(format!("GET http://{upstream}/page HTTP/1.1\r\nHost: {upstream}\r\n\r\n").as_bytes())
        .await;
    assert_eq!(c.response().await.status, 103);
    assert_eq!(c.response().await.status, 100);
    assert_eq!(c.response().await.status, 200);
}

// The client library hands each informational response to the request's hook.
#[tokio::test]
async fn client_hook_sees_informational_responses() {
    let upstream = hinting_upstream().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut req = http::Request::get(format!("http://{upstream}/page"))
        .body(())
        .unwrap();
    req.extensions_mut().insert(Informational::new(move |res| {
        let link = res
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_string());
        log.lock().unwrap().push((res.status().as_u16(), link));
    }));
    let res = Client::new().request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (103, Some("</style.css>; rel=preload".to_string())),
            (100, None)
        ]
    );
}

/// An upstream that answers `Expect: 100-continue` with `verdict`: "continue"
/// sends 100, reads the body and answers 200 with its length; anything else
/// is a final status sent without reading the body. Records every head and
/// the body bytes it read.
async fn expecting_upstream(verdict: &'static str) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let addr = raw_server(move |_, mut c| {
        let seen = seen.clone();
        async move {
            let mut chunk = [0u8; 8192];
            let Some(end) = c.head_end().await else {
                return;
            };
            let head = String::from_utf8_lossy(&c.buf[..end]).to_ascii_lowercase();
            seen.lock().unwrap().push(head.clone());
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if verdict != "continue" {
                let res = format!("HTTP/1.1 {verdict}\r\nContent-Length: 0\r\n\r\n");
                c.send(res.as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(10)).await;
                return;
            }
            if head.contains("\r\nexpect: 100-continue\r\n") {
                c.send(b"HTTP/1.1 100 Continue\r\n\r\n").await;
            }
            while c.buf.len() < end + len {
                match tokio::time::timeout(WAIT, c.stream.read(&mut chunk)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                    Ok(Ok(n)) => c.buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = String::from_utf8_lossy(&c.buf[end..end + len]).into_owned();
            seen.lock().unwrap().push(format!("body:{body}"));
            let res = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            c.send(res.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    })
    .await;
    (addr, log)
}

// RFC 9110 §10.1.1: `Expect: 100-continue` goes to the upstream, which can
// refuse before the body is sent; the client, waiting for a 100, gets the
// refusal at once and never sends its body.
#[tokio::test]
async fn expect_continue_lets_the_upstream_refuse_before_the_upload() {
    let (upstream, log) = expecting_upstream("401 Unauthorized").await;
    let srv = proxy_with(upstream, Client::new()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(
        b"PUT /file HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    let started = Instant::now();
    let res = c.response().await;
    assert_eq!(res.status, 401, "no 100 first: {}", res.head);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "before the proxy's expect timeout: {:?}",
        started.elapsed()
    );
    let heads = log.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].contains("\r\nexpect: 100-continue\r\n"),
        "{heads:?}"
    );
}

// The upstream's 100 is relayed; only then does the client send its body,
// which reaches the upstream whole. A client that does not wait works too.
#[tokio::test]
async fn expect_continue_relays_the_upstream_100() {
    let (upstream, log) = expecting_upstream("continue").await;
    let srv = proxy_with(upstream, Client::new()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"PUT /file HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let cont = c.response().await;
    assert_eq!(cont.status, 100, "{}", cont.head);
    c.send(b"hello").await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(res.body_str(), "hello");
    assert!(
        c.buf.is_empty(),
        "exactly one 100 was sent, not the proxy's and the upstream's"
    );
    let heads = log.lock().unwrap().clone();
    assert!(
        heads[0].contains("\r\nexpect: 100-continue\r\n"),
        "{heads:?}"
    );
    assert_eq!(heads[1], "body:hello");

    // A client that sends its body without waiting.
    let mut c = Raw::connect(srv.addr).await;
    c.send(
        b"PUT /file HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nworld",
    )
    .await;
    let first = c.response().await;
    let res = if first.status == 100 {
        c.response().await
    } else {
        first
    };
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(res.body_str(), "world");
}

// RFC 9110 §7.6.2: at `Max-Forwards: 0` the proxy answers OPTIONS (200 with
// Allow) and TRACE (405) itself; otherwise the field goes on less one; a
// malformed value is refused. Nothing answered here reaches the upstream.
#[tokio::test]
async fn max_forwards_on_options_and_trace() {
    let upstream = recording_upstream().await;
    let srv = proxy_with(upstream.addr(), Client::new()).await;
    let mut c = Raw::connect(srv.addr).await;

    c.send(b"OPTIONS /x HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\n\r\n")
        .await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(
        res.header("allow").as_deref(),
        Some("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS")
    );
    assert_eq!(res.header("content-length").as_deref(), Some("0"));

    c.send(b"TRACE /x HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\n\r\n")
        .await;
    let res = c.response().await;
    assert_eq!(res.status, 405, "{}", res.head);
    assert!(res.header("allow").is_some());
    assert_eq!(upstream.connections(), 0, "nothing went upstream");

    c.send(b"OPTIONS /x HTTP/1.1\r\nHost: a\r\nMax-Forwards: 5\r\n\r\n")
        .await;
    assert_eq!(c.response().await.status, 200);
    c.send(b"GET /y HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\n\r\n")
        .await;
    assert_eq!(c.response().await.status, 200, "GET ignores Max-Forwards");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].method, "OPTIONS");
    assert_eq!(seen[0].values("max-forwards"), ["4"]);
    assert_eq!(seen[1].values("max-forwards"), ["0"]);

    c.send(b"OPTIONS /x HTTP/1.1\r\nHost: a\r\nMax-Forwards: many\r\n\r\n")
        .await;
    assert_eq!(c.response().await.status, 400);
    assert_eq!(upstream.seen().len(), 2);

    // The forward proxy applies the same rule.
    let forward = ForwardProxy::new(
        Client::new(),
        Policy {
            allow_private: true,
            ..Policy::default()
        },
        None,
    );
    let fwd = TestServer::start(Server::builder(), forward).await;
    let target = upstream.addr();
    let mut c = Raw::connect(fwd.addr).await;
    c.send(
        format!("OPTIONS http://{target}/x HTTP/1.1\r\nHost: {target}\r\nMax-Forwards: 0\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.head);
    assert!(res.header("allow").unwrap().contains("CONNECT"));
    assert_eq!(upstream.seen().len(), 2);
}

// `OPTIONS *` asks about the server as a whole: the reverse proxy sends it to
// the upstream of `/` in asterisk-form.
#[tokio::test]
async fn options_asterisk_goes_to_the_default_upstream() {
    let upstream = recording_upstream().await;
    let srv = proxy_with(upstream.addr(), Client::new()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(res.body_str(), "ok", "the upstream's answer");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].target.as_str()),
        ("OPTIONS", "*")
    );
    assert!(upstream.errors().is_empty(), "{:?}", upstream.errors());
}

// RFC 9112 §9.5 stops an upload only for a response that refuses it: an
// upstream that answers 200 at once and then reads the whole body (it
// streams while it reads) gets every byte, and the response after that.
#[tokio::test]
async fn an_early_success_lets_the_upload_finish() {
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let upstream = raw_server(move |_, mut c| {
        let counter = counter.clone();
        async move {
            let mut chunk = [0u8; 65536];
            let Some(end) = c.head_end().await else {
                return;
            };
            let head = String::from_utf8_lossy(&c.buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
            let mut got = c.buf.len() - end;
            while got < len {
                match tokio::time::timeout(WAIT, c.stream.read(&mut chunk)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(n)) => got += n,
                }
            }
            counter.store(got, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
    .await;
    let srv = proxy_with(upstream, Client::new()).await;
    let total = 1024 * 1024;
    let mut c = Raw::connect(srv.addr).await;
    let mut request =
        format!("POST /stream HTTP/1.1\r\nHost: a\r\nContent-Length: {total}\r\n\r\n").into_bytes();
    request.extend(std::iter::repeat_n(b'x', total));
    c.send(&request).await;
    let res = c.response().await;
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(res.body_str(), "ok");
    assert!(
        eventually(WAIT, || received.load(Ordering::SeqCst) == total).await,
        "the upstream got {} of {total} body bytes",
        received.load(Ordering::SeqCst)
    );
}

// A handler that sends informational responses to a client that never reads
// them is told the queue is full; the connection's memory stays bounded.
#[tokio::test]
async fn informational_responses_are_bounded_when_the_client_does_not_read() {
    use drainpipe::server::InterimError;
    let sent = Arc::new(AtomicUsize::new(0));
    let count = sent.clone();
    let service =
        drainpipe::server::service_fn(move |req: http::Request<drainpipe::body::Incoming>| {
            let count = count.clone();
            async move {
                let interim = req.body().interim().expect("a drainpipe server's request");
                let big = "x".repeat(8 * 1024);
                let outcome = tokio::time::timeout(WAIT, async {
                    loop {
                        let mut res = http::Response::new(());
                        *res.status_mut() = http::StatusCode::from_u16(103).unwrap();
                        res.headers_mut()
                            .insert("link", http::HeaderValue::from_str(&big).unwrap());
                        match interim.send(res.into_parts().0) {
                            Ok(()) => count.fetch_add(1, Ordering::SeqCst),
                            Err(InterimError::Full) => return,
                            Err(e) => panic!("{e}"),
                        };
                        tokio::task::yield_now().await;
                    }
                })
                .await;
                assert!(outcome.is_ok(), "the queue never filled");
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"done"),
                )))
            }
        });
    let srv = TestServer::start(drainpipe::server::Server::builder(), service).await;
    let stream = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    // The client never reads; its receive buffer is kept small.
    socket2::SockRef::from(&stream)
        .set_recv_buffer_size(4096)
        .unwrap();
    let (_r, mut w) = stream.into_split();
    w.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || sent.load(Ordering::SeqCst) > 0).await,
        "no informational response sent"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = sent.load(Ordering::SeqCst);
    // Socket buffers take a few MiB at most; everything else waits in the
    // 64 KiB outgoing queue and the 8-entry handler queue.
    assert!(
        n * 8 * 1024 < 16 * 1024 * 1024,
        "{n} informational responses of 8 KiB accepted"
    );
}
