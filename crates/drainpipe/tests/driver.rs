//! The server's connection driver on in-memory `tokio::io::duplex` streams,
//! under paused time: pipelining (order, one write), drain, each timeout
//! (head → 408, idle, body, write) at its exact moment, and any split of the
//! input giving the same responses. No sockets: the server runs on a
//! listener of the test's own ([`Accept`]).

use std::sync::Arc;
use std::time::Duration;

use drainpipe::origin::Origin;
use drainpipe::server::{Accept, Builder, CloseReason, DrainReport, Server, Stats};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Connections handed to the server over a channel.
struct Pipes(Mutex<mpsc::Receiver<DuplexStream>>);

impl Accept for Pipes {
    type Conn = DuplexStream;

    async fn accept(&self) -> std::io::Result<(DuplexStream, Option<std::net::SocketAddr>)> {
        match self.0.lock().await.recv().await {
            Some(s) => Ok((s, None)),
            None => std::future::pending().await,
        }
    }
}

/// The origin served on duplex streams.
struct Driven {
    conns: mpsc::Sender<DuplexStream>,
    stats: Arc<Stats>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<DrainReport>,
}

impl Driven {
    fn start(builder: Builder) -> Driven {
        let server = builder.build();
        let stats = server.stats();
        let (conns, rx) = mpsc::channel(8);
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(Pipes(Mutex::new(rx)), Origin, async {
                    let _ = stop.await;
                })
                .await
        });
        Driven {
            conns,
            stats,
            shutdown: Some(shutdown),
            task,
        }
    }

    /// A new connection whose pipe holds `capacity` bytes each way.
    async fn connect(&self, capacity: usize) -> DuplexStream {
        let (client, server) = tokio::io::duplex(capacity);
        self.conns.send(server).await.unwrap();
        client
    }

    async fn drain(mut self) -> DrainReport {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.await.unwrap()
    }
}

/// Reads one whole response (`Content-Length` or chunked body) from `s`,
/// leaving what follows in `buf`; `None` at EOF before any byte.
async fn response<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(len) = complete(buf) {
            let whole: Vec<u8> = buf.drain(..len).collect();
            return Some(String::from_utf8(whole).unwrap());
        }
        let mut chunk = [0u8; 8192];
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            assert!(buf.is_empty(), "EOF inside a response: {buf:?}");
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The length of the first complete response in `buf`.
fn complete(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    if head.contains("\r\ntransfer-encoding: chunked") {
        let term = buf[end..].windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some(end + term + 5);
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    (buf.len() >= end + len).then_some(end + len)
}

/// Reads to EOF: what came, and when the EOF did.
async fn until_eof<S: AsyncRead + Unpin>(s: &mut S) -> (Vec<u8>, Instant) {
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    (rest, Instant::now())
}

fn header(res: &str, name: &str) -> Option<String> {
    let head = res.split("\r\n\r\n").next().unwrap();
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn body(res: &str) -> &str {
    res.split_once("\r\n\r\n").unwrap().1
}

// Pipelined requests are answered strictly in order, the later ones waiting
// for the slow first one, and the responses leave together in one write.
#[tokio::test(start_paused = true)]
async fn pipelined_responses_in_order_in_one_write() {
    let srv = Driven::start(Server::builder());
    let mut c = srv.connect(64 * 1024).await;
    let start = Instant::now();
    c.write_all(
        b"GET /delay/200 HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /conn HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /bytes/5 HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /conn HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let r1 = response(&mut c, &mut buf).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(200),
        "after the delay"
    );
    assert_eq!(body(&r1), "Hello, World!");
    // Everything else had already arrived with the first response.
    assert!(complete(&buf).is_some(), "the rest came in the same write");
    let r2 = response(&mut c, &mut buf).await.unwrap();
    let r3 = response(&mut c, &mut buf).await.unwrap();
    let r4 = response(&mut c, &mut buf).await.unwrap();
    assert_eq!(body(&r2), "conn=1 request=2\n");
    assert_eq!(body(&r3).len(), 5);
    assert_eq!(body(&r4), "conn=1 request=4\n");
    assert!(buf.is_empty());
    assert_eq!(
        srv.stats.writes.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "four responses, one write"
    );
}

// A drain: the idle connection closes at once, silently; the request in
// flight is finished, its response carries `Connection: close`, then the
// connection closes; nothing is cut.
#[tokio::test(start_paused = true)]
async fn drain_closes_idle_at_once_and_finishes_in_flight_with_close() {
    let srv = Driven::start(Server::builder());
    let mut idle = srv.connect(4096).await;
    let r = {
        idle.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        response(&mut idle, &mut Vec::new()).await.unwrap()
    };
    assert_eq!(header(&r, "connection"), None);
    let mut busy = srv.connect(4096).await;
    busy.write_all(b"GET /delay/500 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let begun = Instant::now();
    let drained = tokio::spawn(srv.drain());
    let (rest, at) = until_eof(&mut idle).await;
    assert!(rest.is_empty(), "closed without a byte");
    assert_eq!(at, begun, "the idle connection closed at once");

    let mut buf = Vec::new();
    let r = response(&mut busy, &mut buf).await.unwrap();
    assert_eq!(begun.elapsed(), Duration::from_millis(400), "finished");
    assert_eq!(body(&r), "Hello, World!");
    assert_eq!(header(&r, "connection").as_deref(), Some("close"));
    let (rest, _) = until_eof(&mut busy).await;
    assert!(rest.is_empty() && buf.is_empty());
    drop((idle, busy));
    let report = drained.await.unwrap();
    assert_eq!((report.open_at_start, report.clean, report.cut), (2, 2, 0));
}

// Head timeout: counted from accept; a connection that sent part of a head
// gets `408` and is closed, one that sent nothing is closed silently.
#[tokio::test(start_paused = true)]
async fn head_timeout_408_or_silent_close() {
    let srv = Driven::start(Server::builder().head_timeout(Duration::from_secs(2)));
    let start = Instant::now();
    let mut partial = srv.connect(4096).await;
    let mut silent = srv.connect(4096).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    partial.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();

    let (got, at) = until_eof(&mut partial).await;
    let got = String::from_utf8(got).unwrap();
    assert_eq!(
        at - start,
        Duration::from_secs(2),
        "from accept, not the first byte"
    );
    assert!(got.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{got}");
    assert_eq!(header(&got, "connection").as_deref(), Some("close"));

    let (got, at) = until_eof(&mut silent).await;
    assert!(got.is_empty(), "nothing received, nothing answered");
    assert_eq!(at - start, Duration::from_secs(2));
    assert_eq!(srv.stats.closed(CloseReason::HeadTimeout), 2);
}

// Idle timeout: a keep-alive connection that sends nothing more is closed
// silently when it runs out, counted from the end of the last response; a
// next head that has begun is under the head timeout instead.
#[tokio::test(start_paused = true)]
async fn idle_timeout_then_head_timeout_for_a_begun_head() {
    let srv = Driven::start(
        Server::builder()
            .idle_timeout(Duration::from_secs(5))
            .head_timeout(Duration::from_secs(1)),
    );
    let mut c = srv.connect(4096).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    response(&mut c, &mut Vec::new()).await.unwrap();
    let answered = Instant::now();
    let (got, at) = until_eof(&mut c).await;
    assert!(got.is_empty());
    assert_eq!(at - answered, Duration::from_secs(5));
    assert_eq!(srv.stats.closed(CloseReason::IdleTimeout), 1);

    let mut c = srv.connect(4096).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    response(&mut c, &mut Vec::new()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let begun = Instant::now();
    c.write_all(b"GET / HT").await.unwrap();
    let (got, at) = until_eof(&mut c).await;
    assert_eq!(
        at - begun,
        Duration::from_secs(1),
        "head timeout from its first byte"
    );
    assert!(String::from_utf8(got).unwrap().starts_with("HTTP/1.1 408 "));
}

// Body timeout: a request body that stops arriving ends the connection when
// the time between two reads runs out.
#[tokio::test(start_paused = true)]
async fn body_timeout_between_reads() {
    let srv = Driven::start(Server::builder().body_timeout(Duration::from_secs(3)));
    let mut c = srv.connect(4096).await;
    c.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.write_all(b"wor").await.unwrap();
    let last = Instant::now();
    let (_got, at) = until_eof(&mut c).await;
    assert_eq!(at - last, Duration::from_secs(3), "from the last bytes");
    assert_eq!(srv.stats.closed(CloseReason::BodyTimeout), 1);
}

// Write timeout: a client that stops reading is cut off when a write makes
// no progress for the write timeout.
#[tokio::test(start_paused = true)]
async fn write_timeout_when_the_client_stops_reading() {
    let srv = Driven::start(Server::builder().write_timeout(Duration::from_secs(4)));
    let mut c = srv.connect(1024).await;
    c.write_all(b"GET /bytes/1000000 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let sent = Instant::now();
    tokio::time::sleep(Duration::from_millis(3990)).await;
    assert_eq!(srv.stats.closed(CloseReason::WriteTimeout), 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(srv.stats.closed(CloseReason::WriteTimeout), 1);
    // What it got is a truncated response: less than the body, then EOF.
    let (got, _) = until_eof(&mut c).await;
    assert!(got.len() < 1_000_000 && got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(sent.elapsed() >= Duration::from_secs(4));
}

/// Pipelined requests of every framing; the last one closes.
const INPUT: &[u8] = b"GET /conn HTTP/1.1\r\nHost: a\r\n\r\n\
POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world\
POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: v\r\n\r\n\
GET /bytes/3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
GET /chunked/3 HTTP/1.1\r\nHost: a\r\n\r\n\
GET /conn HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

/// The server's whole output for `INPUT` written in `pieces`, each after the
/// server took the previous one; `Date` values masked.
fn served(pieces: &[&[u8]]) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let srv = Driven::start(Server::builder());
        let mut c = srv.connect(64 * 1024).await;
        for piece in pieces {
            c.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (out, _) = until_eof(&mut c).await;
        let out = String::from_utf8(out).unwrap();
        out.lines()
            .map(|l| {
                if l.starts_with("date: ") {
                    "date: <masked>"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[test]
fn unsplit_input_is_answered_in_full() {
    let out = served(&[INPUT]);
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 6, "{out}");
    assert!(out.contains("conn=1 request=1") && out.contains("conn=1 request=6"));
    assert!(out.contains("POST /echo HTTP/1.1\n"), "{out}");
    assert!(
        out.contains("connection: keep-alive\nkeep-alive: timeout=60"),
        "{out}"
    );
    assert!(out.contains("transfer-encoding: chunked"), "{out}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    // Any split of the input, down to single bytes, gives the same bytes out.
    #[test]
    fn any_split_gives_the_same_responses(mut cuts in prop::collection::vec(1..INPUT.len(), 0..24)) {
        cuts.sort_unstable();
        cuts.dedup();
        let mut pieces = Vec::new();
        let mut from = 0;
        for &to in &cuts {
            pieces.push(&INPUT[from..to]);
            from = to;
        }
        pieces.push(&INPUT[from..]);
        prop_assert_eq!(served(&pieces), served(&[INPUT]));
    }
}
