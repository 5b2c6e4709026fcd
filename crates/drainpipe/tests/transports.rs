//! The server on transports other than TCP: a Unix socket listener end to end
//! (keep-alive, idle parking and resumption, drain), and a listener of the
//! user's own that yields in-memory `tokio::io::duplex` streams.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use drainpipe::origin::Origin;
use drainpipe::server::{Accept, Server, Stats};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Mutex};

const WAIT: Duration = Duration::from_secs(5);

/// A fresh socket path in the temporary directory (removed when dropped).
struct SockPath(std::path::PathBuf);

impl SockPath {
    fn new(tag: &str) -> SockPath {
        let path =
            std::env::temp_dir().join(format!("drainpipe-test-{}-{tag}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        SockPath(path)
    }
}

impl Drop for SockPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads one response (head, then a `Content-Length` body) from `s`; `None`
/// at EOF before any byte.
async fn response<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                let whole: Vec<u8> = buf.drain(..end + 4 + len).collect();
                return Some(String::from_utf8_lossy(&whole).into_owned());
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("response within the wait")
            .unwrap_or(0);
        if n == 0 {
            assert!(buf.is_empty(), "EOF inside a response: {buf:?}");
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `req` and reads its response.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, req: &str) -> String {
    s.write_all(req.as_bytes()).await.unwrap();
    response(s, &mut Vec::new()).await.expect("a response")
}

async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < until {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

// A Unix listener serves keep-alive requests; an idle connection is parked
// (leaves its task) and its next request is served by the same connection.
#[tokio::test]
async fn unix_listener_keeps_alive_and_parks_idle_connections() {
    let path = SockPath::new("park");
    let listener = UnixListener::bind(&path.0).unwrap();
    let server = Server::builder()
        .park_idle_after(Some(Duration::from_millis(50)))
        .build();
    let stats = server.stats();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .serve(listener, Origin, async {
                let _ = stopped.await;
            })
            .await
    });

    let mut c = UnixStream::connect(&path.0).await.unwrap();
    let r1 = exchange(&mut c, "GET /conn HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(r1.starts_with("HTTP/1.1 200 OK\r\n"), "{r1}");
    let conn = |r: &str| {
        r.split("\r\n\r\n")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert!(r1.ends_with("request=1\n"), "{r1}");
    assert!(
        eventually(|| stats.parked.load(Ordering::Relaxed) == 1).await,
        "the idle Unix connection is parked"
    );
    let r2 = exchange(&mut c, "GET /conn HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(conn(&r1), conn(&r2), "the same connection served both");
    assert!(r2.ends_with("request=2\n"), "{r2}");
    assert_eq!(stats.accepted.load(Ordering::Relaxed), 1);

    // A drain closes the idle connection (a clean EOF, no reset).
    let _ = stop.send(());
    let mut rest = Vec::new();
    let n = tokio::time::timeout(WAIT, c.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "closed without a further byte");
    drop(c);
    let report = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    assert_eq!(report.cut, 0);
    // Refused once the listener closed.
    assert!(UnixStream::connect(&path.0).await.is_err());
}

/// A listener of the test's own: connections are in-memory pipes, handed
/// over a channel.
struct Pipes(Mutex<mpsc::Receiver<DuplexStream>>);

impl Accept for Pipes {
    type Conn = DuplexStream;

    async fn accept(&self) -> std::io::Result<(DuplexStream, Option<std::net::SocketAddr>)> {
        match self.0.lock().await.recv().await {
            Some(s) => Ok((s, None)),
            // No more connections: wait for the shutdown.
            None => std::future::pending().await,
        }
    }
}

fn serve_pipes(builder: drainpipe::server::Builder) -> (mpsc::Sender<DuplexStream>, Arc<Stats>) {
    let server = builder.build();
    let stats = server.stats();
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        server
            .serve(Pipes(Mutex::new(rx)), Origin, std::future::pending())
            .await
    });
    (tx, stats)
}

async fn pipe(to: &mpsc::Sender<DuplexStream>) -> DuplexStream {
    let (client, server) = tokio::io::duplex(64 * 1024);
    to.send(server).await.unwrap();
    client
}

// A listener the user brings: the server runs on duplex streams; a transport
// that cannot be parked stays in its task, and is closed at the idle timeout.
#[tokio::test(start_paused = true)]
async fn own_listener_of_duplex_streams_is_served() {
    let (conns, stats) = serve_pipes(
        Server::builder()
            .park_idle_after(Some(Duration::from_millis(10)))
            .idle_timeout(Duration::from_secs(3)),
    );
    let mut c = pipe(&conns).await;
    let r1 = exchange(&mut c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(r1.starts_with("HTTP/1.1 200 OK\r\n"), "{r1}");
    assert!(r1.ends_with("\r\n\r\nHello, World!"), "{r1}");
    let r2 = exchange(&mut c, "GET /conn HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(r2.ends_with("request=2\n"), "{r2}");

    let idle_from = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest))
        .await
        .expect("closed at the idle timeout")
        .unwrap();
    assert_eq!(n, 0);
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_secs(3) && idle < Duration::from_millis(3100),
        "closed after {idle:?}"
    );
    assert_eq!(stats.parked.load(Ordering::Relaxed), 0, "never parked");
    assert_eq!(stats.requests.load(Ordering::Relaxed), 2);
}
