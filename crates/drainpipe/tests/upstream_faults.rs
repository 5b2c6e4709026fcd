//! The proxy in front of an upstream that misbehaves on purpose: it resets,
//! truncates, stalls, answers garbage, or closes idle connections at random.
//!
//! What a user checks: the proxy answers `502` (or `504` for a timeout) when
//! nothing of the upstream's response has reached the client yet, aborts the
//! client's connection when the failure comes later (a truncated body is never
//! passed on as complete), never hangs (every client wait here is bounded),
//! never hands a stray upstream response to another request, and never leaks
//! a connection: the test process's open file descriptors return to their
//! baseline once things settle, and the proxy's server and pool are empty.
//!
//! The tests in this file count the whole process's descriptors, so they run
//! one at a time (a shared lock).

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drainpipe::client::{Client, Origin};
use drainpipe::proxy::{Balance, Group, Proxy, Route};
use drainpipe::server::Server;
use http_body_util::BodyExt;
use support::*;
use tokio::io::AsyncReadExt;

/// Serialises the tests of this file: each counts the process's descriptors.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the proxy waits for an upstream's response head.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(800);

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Closes with a reset (`SO_LINGER` 0) instead of a FIN.
fn reset(c: RawConn) {
    let _ = socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO));
    drop(c);
}

/// Waits (bounded) for the peer to close, reading and dropping what it sends.
async fn until_eof(c: &mut RawConn, at_most: Duration) {
    let mut chunk = [0u8; 4096];
    let _ = tokio::time::timeout(at_most, async {
        while let Ok(n) = c.stream.read(&mut chunk).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

fn path_of(request: &str) -> String {
    request.split(' ').nth(1).unwrap_or("").to_string()
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// The misbehaving upstream: what it does depends on the request's path.
/// `/ok` answers properly and keeps the connection.
async fn faulty(_n: usize, mut c: RawConn) {
    while let Some(req) = c.request().await {
        let path = path_of(&req);
        let body_1000_head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        match path.as_str() {
            "/ok" => {
                c.send(OK).await;
                continue;
            }
            "/reset" => return reset(c),
            "/close" => return,
            "/reset-mid-body" => {
                c.send(body_1000_head).await;
                c.send(&[b'x'; 100]).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                return reset(c);
            }
            "/truncate-length" => {
                c.send(body_1000_head).await;
                c.send(&[b'x'; 500]).await;
                return;
            }
            "/truncate-chunked" => {
                c.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n")
                    .await;
                return;
            }
            "/truncate-in-chunk" => {
                c.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nhello")
                    .await;
                return;
            }
            "/truncate-head" => {
                c.send(b"HTTP/1.1 200 OK\r\nContent-Le").await;
                return;
            }
            "/http09" => {
                // A body without a head, delimited by the close.
                c.send(b"POISON").await;
                return;
            }
            "/stall-in-head" => {
                c.send(b"HTTP/1.1 200 OK\r\nContent-Le").await;
                until_eof(&mut c, Duration::from_secs(5)).await;
                return;
            }
            "/stall" => {
                // Never answers; lets go once the proxy gives up.
                until_eof(&mut c, Duration::from_secs(5)).await;
                return;
            }
            "/stall-body" => {
                c.send(body_1000_head).await;
                c.send(&[b'x'; 10]).await;
                until_eof(&mut c, Duration::from_secs(8)).await;
                return;
            }
            "/bad-chunk" => {
                c.send(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
                )
                .await;
                until_eof(&mut c, Duration::from_secs(3)).await;
                return;
            }
            "/extra-response" => {
                // One response too many: it must never reach anyone.
                c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON")
                    .await;
                continue;
            }
            garbage => {
                let bytes: &[u8] = match garbage {
                    "/garbage-text" => b"HELLO WORLD\r\n\r\n",
                    "/garbage-binary" => b"\x00\x01\x02\xff\xfe\r\n\r\n\x00POISON",
                    "/bad-status" => b"HTTP/1.1 2000 OK\r\nContent-Length: 6\r\n\r\nPOISON",
                    "/bad-version" => b"HTTP/2.0 200 OK\r\nContent-Length: 6\r\n\r\nPOISON",
                    "/cl-te" => b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nPOISON\r\n0\r\n\r\n",
                    "/two-lengths" => b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Length: 2\r\n\r\nPOISON",
                    "/te-gzip" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nPOISON",
                    "/bare-lf" => b"HTTP/1.1 200 OK\nContent-Length: 6\n\nPOISON",
                    "/obs-fold" => b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 6\r\n\r\nPOISON",
                    "/nul-in-value" => b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 6\r\n\r\nPOISON",
                    "/switching-unasked" => b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nPOISON",
                    _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                };
                c.send(bytes).await;
                // Stay open a little: the proxy must judge the bytes, not wait
                // for a close.
                until_eof(&mut c, Duration::from_secs(3)).await;
                return;
            }
        }
    }
}

/// A proxy (with a response timeout and a short pool idle timeout) in front
/// of `upstream`.
struct Rig {
    srv: TestServer,
    proxy: Proxy,
    origin: Origin,
}

async fn rig(upstream: SocketAddr) -> Rig {
    let origin = Origin {
        host: "127.0.0.1".into(),
        port: upstream.port(),
        tls: None,
    };
    let client = Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .response_timeout(Some(RESPONSE_TIMEOUT))
        .idle_timeout(Duration::from_millis(300))
        .build();
    let proxy = Proxy::builder()
        .client(client)
        .route(Route {
            host: None,
            path_prefix: "/".into(),
            group: Arc::new(Group::new("g", vec![origin.clone()], Balance::RoundRobin)),
        })
        .build();
    let srv = TestServer::start(Server::builder(), proxy.clone()).await;
    Rig { srv, proxy, origin }
}

impl Rig {
    /// One `/ok` through the proxy, so everything created lazily (the
    /// server's parker, the client's reaper) exists before the baseline.
    async fn warm_up(&self) {
        let mut c = Raw::connect(self.srv.addr).await;
        c.send(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert_eq!(c.response().await.body_str(), "ok");
        drop(c);
        self.settle().await;
    }

    /// Waits until no connection is open on the proxy's server or in its pool.
    async fn settle(&self) -> bool {
        eventually(Duration::from_secs(6), || {
            self.srv.stats.open.load(Ordering::Relaxed) == 0
                && self.proxy.client().open_connections(&self.origin) == 0
        })
        .await
    }

    /// After a fault run: everything closed, descriptors back to `baseline`.
    async fn assert_no_leak(&self, baseline: usize) {
        let settled = self.settle().await;
        let back = eventually(Duration::from_secs(6), || open_fds() <= baseline).await;
        assert!(
            settled,
            "connections left: server {} open, pool {} open",
            self.srv.stats.open.load(Ordering::Relaxed),
            self.proxy.client().open_connections(&self.origin)
        );
        assert!(
            back,
            "file descriptors leaked: {} open, baseline {baseline}",
            open_fds()
        );
    }
}

/// Reads until the proxy closes the connection (EOF or reset), bounded.
async fn read_to_close(c: &mut Raw) -> Vec<u8> {
    assert!(
        c.closes_within(WAIT).await,
        "the proxy neither finished nor aborted the response: {:?}",
        String::from_utf8_lossy(&c.buf)
    );
    std::mem::take(&mut c.buf)
}

/// A response cut short: a head, then fewer body bytes than announced (or no
/// last chunk), then the close.
fn assert_cut_short(path: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let end = find(bytes, b"\r\n\r\n").unwrap_or_else(|| panic!("{path}: no head in {text:?}"));
    let head = text[..end].to_ascii_lowercase();
    let body = &bytes[end + 4..];
    assert!(head.starts_with("http/1.1 200 "), "{path}: {head}");
    if let Some(cl) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        let cl: usize = cl.trim().parse().unwrap();
        assert!(
            body.len() < cl,
            "{path}: a truncated body passed on complete ({} of {cl})",
            body.len()
        );
    } else {
        assert!(
            head.contains("\r\ntransfer-encoding: chunked"),
            "{path}: neither length nor chunked: {head}"
        );
        assert!(
            !body.ends_with(b"0\r\n\r\n"),
            "{path}: a truncated chunked body got its last chunk: {text:?}"
        );
    }
}

#[tokio::test]
async fn failures_before_the_response_head_are_502_or_504() {
    let _one = ONE_AT_A_TIME.lock().await;
    let upstream = raw_server(faulty).await;
    let rig = rig(upstream).await;
    rig.warm_up().await;
    let baseline = open_fds();

    let cases: &[(&str, u16)] = &[
        ("/reset", 502),
        ("/close", 502),
        ("/truncate-head", 502),
        ("/stall", 504),
        ("/stall-in-head", 504),
        ("/garbage-text", 502),
        ("/garbage-binary", 502),
        ("/http09", 502),
        ("/bad-status", 502),
        ("/bad-version", 502),
        ("/cl-te", 502),
        ("/two-lengths", 502),
        ("/te-gzip", 502),
        ("/bare-lf", 502),
        ("/obs-fold", 502),
        ("/nul-in-value", 502),
        ("/switching-unasked", 502),
    ];
    for &(path, status) in cases {
        for method in ["GET", "POST"] {
            let mut c = Raw::connect(rig.srv.addr).await;
            let req =
                format!("{method} {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
            let started = tokio::time::Instant::now();
            c.send(req.as_bytes()).await;
            let r = c.response().await;
            assert_eq!(r.status, status, "{method} {path}: {}", r.body_str());
            assert!(
                r.body_str().starts_with(&format!("{status} ")),
                "{method} {path}: the proxy's own answer, got {:?}",
                r.body_str()
            );
            assert!(
                !String::from_utf8_lossy(&r.bytes).contains("POISON"),
                "{method} {path}: upstream garbage reached the client"
            );
            if status == 504 {
                assert!(
                    started.elapsed() < RESPONSE_TIMEOUT + Duration::from_secs(2),
                    "{path}: the 504 took {:?}",
                    started.elapsed()
                );
            }
            // The client's connection is intact and in step.
            c.send(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n").await;
            let next = c.response().await;
            assert_eq!(
                (next.status, next.body_str().as_str()),
                (200, "ok"),
                "{method} {path}: the next request on the client connection"
            );
        }
    }
    assert!(rig.proxy.stats().gateway_errors.load(Ordering::Relaxed) >= 2 * cases.len() as u64);
    rig.assert_no_leak(baseline).await;
}

#[tokio::test]
async fn failures_after_the_head_abort_the_client_connection() {
    let _one = ONE_AT_A_TIME.lock().await;
    let upstream = raw_server(faulty).await;
    let rig = rig(upstream).await;
    rig.warm_up().await;
    let baseline = open_fds();

    for path in [
        "/reset-mid-body",
        "/truncate-length",
        "/truncate-chunked",
        "/truncate-in-chunk",
        "/bad-chunk",
    ] {
        // Over raw bytes: a head, a short body, the close.
        let mut c = Raw::connect(rig.srv.addr).await;
        c.send(
            format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\nGET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
                .as_bytes(),
        )
        .await;
        let bytes = read_to_close(&mut c).await;
        assert_cut_short(path, &bytes);
        assert!(
            !String::from_utf8_lossy(&bytes).contains("\r\n\r\nok"),
            "{path}: the request pipelined behind was answered on an aborted connection"
        );

        // Through a real client: an error, never a complete body.
        let client = Client::new();
        let req = http::Request::get(format!("http://{}{path}", rig.srv.addr))
            .body(())
            .unwrap();
        let res = tokio::time::timeout(WAIT, client.request(req))
            .await
            .unwrap_or_else(|_| panic!("{path}: no response head in time"))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(res.status(), 200);
        let collected = tokio::time::timeout(WAIT, res.into_body().collect())
            .await
            .unwrap_or_else(|_| panic!("{path}: the body neither ended nor failed"));
        match collected {
            Ok(body) => panic!(
                "{path}: a truncated body ended cleanly ({} bytes)",
                body.to_bytes().len()
            ),
            Err(e) => assert!(
                e.is_truncated() || e.to_string().contains("chunk"),
                "{path}: {e}"
            ),
        }
    }
    rig.assert_no_leak(baseline).await;
}

// An upstream that sends one response too many must not desynchronise the
// pool: the stray response never answers anybody's next request.
#[tokio::test]
async fn a_stray_upstream_response_never_answers_another_request() {
    let _one = ONE_AT_A_TIME.lock().await;
    let upstream = raw_server(faulty).await;
    let rig = rig(upstream).await;
    rig.warm_up().await;
    let baseline = open_fds();

    for _ in 0..5 {
        let mut c = Raw::connect(rig.srv.addr).await;
        c.send(b"GET /extra-response HTTP/1.1\r\nHost: a\r\n\r\n")
            .await;
        assert_eq!(c.response().await.body_str(), "ok");
        for _ in 0..3 {
            c.send(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n").await;
            let r = c.response().await;
            assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
        }
    }
    rig.assert_no_leak(baseline).await;
}

/// A tiny deterministic generator (xorshift64*).
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

// The upstream keeps connections alive but closes them whenever it likes:
// right after a response, a moment later, or with a reset. Idempotent
// requests are retried on a fresh connection and all succeed; a POST may fail
// (502) but is never sent twice; every answer belongs to its own request.
#[tokio::test]
async fn an_upstream_closing_idle_connections_at_random() {
    let _one = ONE_AT_A_TIME.lock().await;
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = received.clone();
    let upstream = raw_server(move |n, mut c| {
        let log = log.clone();
        async move {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (n as u64 + 1).wrapping_mul(0x1000_0001);
            while let Some(req) = c.request().await {
                let path = path_of(&req);
                log.lock().unwrap().push(format!("{} {path}", &req[..4]));
                let id = path.rsplit('/').next().unwrap_or("").to_string();
                c.send(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{id}",
                        id.len()
                    )
                    .as_bytes(),
                )
                .await;
                match next(&mut rng) % 6 {
                    0 => return,
                    1 => return reset(c),
                    2 => {
                        let ms = next(&mut rng) % 20;
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        return;
                    }
                    3 => {
                        let ms = next(&mut rng) % 20;
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        return reset(c);
                    }
                    _ => {}
                }
            }
        }
    })
    .await;
    let rig = rig(upstream).await;
    let mut warm = Raw::connect(rig.srv.addr).await;
    warm.send(b"GET /ok/warm HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(warm.response().await.body_str(), "warm");
    drop(warm);
    assert!(rig.settle().await);
    let baseline = open_fds();

    let addr = rig.srv.addr;
    let workers: Vec<_> = (0..4)
        .map(|w| {
            tokio::spawn(async move {
                let mut rng = 0xdead_beef_u64 + w;
                let mut c = Raw::connect(addr).await;
                let (mut gets_ok, mut posts_ok, mut posts_502) = (0, 0, 0);
                for i in 0..60 {
                    let id = format!("w{w}r{i}");
                    let post = next(&mut rng) % 3 == 0;
                    let req = if post {
                        format!(
                            "POST /post/{id} HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody"
                        )
                    } else {
                        format!("GET /get/{id} HTTP/1.1\r\nHost: a\r\n\r\n")
                    };
                    c.send(req.as_bytes()).await;
                    let r = c.response().await;
                    match (post, r.status) {
                        (_, 200) => {
                            assert_eq!(r.body_str(), id, "an answer to another request");
                            if post {
                                posts_ok += 1
                            } else {
                                gets_ok += 1
                            }
                        }
                        (true, 502) => posts_502 += 1,
                        (_, s) => panic!("{req:?}: {s} {}", r.body_str()),
                    }
                    let pause = next(&mut rng) % 15;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                (gets_ok, posts_ok, posts_502)
            })
        })
        .collect();
    let (mut gets, mut posts_ok, mut posts_502) = (0, 0, 0);
    for w in workers {
        let (g, p, f) = tokio::time::timeout(Duration::from_secs(20), w)
            .await
            .expect("workers finish")
            .unwrap();
        gets += g;
        posts_ok += p;
        posts_502 += f;
    }
    let received = received.lock().unwrap().clone();
    let mut posts: Vec<&String> = received.iter().filter(|r| r.starts_with("POST")).collect();
    let all_posts = posts.len();
    posts.sort();
    posts.dedup();
    assert_eq!(posts.len(), all_posts, "a POST reached the upstream twice");
    assert!(
        all_posts >= posts_ok,
        "{all_posts} POSTs upstream, {posts_ok} answered"
    );
    eprintln!(
        "random closes: {gets} GETs OK, {posts_ok} POSTs OK, {posts_502} POSTs 502, \
{} upstream connections, {} retries",
        rig.proxy.client().stats().opened.load(Ordering::Relaxed),
        rig.proxy.stats().retries.load(Ordering::Relaxed)
    );
    assert!(
        rig.proxy.stats().retries.load(Ordering::Relaxed) > 0,
        "the race was hit"
    );
    rig.assert_no_leak(baseline).await;
}

// An upstream that sends a head and part of the body, then goes silent: the
// client must not wait forever. Nothing bounds the upstream body read today
// (the response timeout ends at the head; the server's write timeout does not
// apply while it waits for the next frame), so the client connection stays
// open for as long as the upstream stalls.
#[tokio::test]
async fn an_upstream_stalling_mid_body_is_cut() {
    let _one = ONE_AT_A_TIME.lock().await;
    let upstream = raw_server(faulty).await;
    let rig = rig(upstream).await;
    rig.warm_up().await;
    let baseline = open_fds();
    let mut c = Raw::connect(rig.srv.addr).await;
    c.send(b"GET /stall-body HTTP/1.1\r\nHost: a\r\n\r\n").await;
    // Expected: cut after an inactivity bound like the response timeout
    // (0.8 s here); the read gives up after WAIT (5 s).
    let started = std::time::Instant::now();
    let bytes = read_to_close(&mut c).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut after {:?}",
        started.elapsed()
    );
    assert_cut_short("/stall-body", &bytes);
    drop(c);
    rig.assert_no_leak(baseline).await;
}

// A request body the proxy is still streaming when the upstream resets: the
// client gets a 502 (nothing of a response arrived), and nothing leaks.
#[tokio::test]
async fn an_upstream_reset_while_the_request_body_streams() {
    let _one = ONE_AT_A_TIME.lock().await;
    let upstream = raw_server(|_, mut c| async move {
        // Read a little of the request, then reset.
        let mut chunk = [0u8; 1024];
        let _ = tokio::time::timeout(WAIT, c.stream.read(&mut chunk)).await;
        reset(c);
    })
    .await;
    let rig = rig(upstream).await;
    // No warm-up request against this upstream (it answers nothing): let the
    // proxy's server start, then take the baseline.
    {
        let mut c = Raw::connect(rig.srv.addr).await;
        c.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert_eq!(c.response().await.status, 502);
    }
    assert!(rig.settle().await);
    let baseline = open_fds();
    for _ in 0..3 {
        let mut c = Raw::connect(rig.srv.addr).await;
        let body = vec![b'x'; 100 * 1024];
        c.send(
            format!(
                "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await;
        // The proxy may stop reading the body once the upstream is gone;
        // what matters is the answer.
        let _ = tokio::time::timeout(
            WAIT,
            tokio::io::AsyncWriteExt::write_all(&mut c.stream, &body),
        )
        .await;
        let r = c.response().await;
        assert_eq!(r.status, 502, "{}", r.body_str());
    }
    rig.assert_no_leak(baseline).await;
}
