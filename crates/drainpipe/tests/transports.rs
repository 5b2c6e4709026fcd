//! Transports other than TCP: a Unix socket listener end to end (keep-alive,
//! idle parking and resumption, drain), a listener of the user's own that
//! yields in-memory `tokio::io::duplex` streams, a client connector of the
//! user's own, and the reverse proxy to a Unix socket upstream.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use drainpipe::client::{self, Client, Connect, Connecting};
use drainpipe::origin::Origin;
use drainpipe::proxy::{Balance, Group, Proxy, Route};
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

/// Serves the origin on a fresh Unix socket until the test ends.
fn unix_origin(tag: &str) -> (SockPath, Arc<Stats>) {
    let path = SockPath::new(tag);
    let listener = UnixListener::bind(&path.0).unwrap();
    let server = Server::builder().build();
    let stats = server.stats();
    tokio::spawn(async move { server.serve(listener, Origin, std::future::pending()).await });
    (path, stats)
}

/// A connector of the test's own: every origin is one Unix socket.
struct AlwaysUnix(std::path::PathBuf);

impl Connect for AlwaysUnix {
    fn connect<'a>(&'a self, _origin: &'a client::Origin) -> Connecting<'a> {
        Box::pin(async move {
            let s = UnixStream::connect(&self.0).await?;
            Ok(Box::new(s) as Box<dyn drainpipe::transport::Transport>)
        })
    }
}

async fn text(res: http::Response<client::ResponseBody>) -> String {
    use http_body_util::BodyExt;
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

// A client with a connector of its own (a Unix socket): pooling and
// keep-alive as on TCP, the second request on the first one's connection.
#[tokio::test]
async fn client_with_own_connector_pools_over_unix() {
    let (path, server) = unix_origin("client");
    let client = Client::builder()
        .connector(AlwaysUnix(path.0.clone()))
        .build();
    for n in 1..=2 {
        let req = http::Request::get("http://local/conn").body(()).unwrap();
        let res = client.request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(text(res).await, format!("conn=1 request={n}\n"));
    }
    let origin = client::Origin {
        host: "local".into(),
        port: 80,
        tls: None,
    };
    assert_eq!(client.open_connections(&origin), 1);
    assert_eq!(client.stats().opened.load(Ordering::Relaxed), 1);
    assert_eq!(client.stats().reused.load(Ordering::Relaxed), 1);
    assert_eq!(server.accepted.load(Ordering::Relaxed), 1);
}

// The reverse proxy (served here on in-memory pipes) in front of an upstream
// on a Unix socket (`Origin::unix`, the default connector): its connection is
// pooled and reused; a request without `Host` gets `Host: localhost`, and
// the client's peer, with no IP address, adds no `X-Forwarded-For`.
#[tokio::test]
async fn proxy_reuses_a_unix_upstream_connection() {
    let (path, upstream) = unix_origin("upstream");
    let group = Arc::new(Group::new(
        "unix",
        vec![client::Origin::unix(&path.0)],
        Balance::RoundRobin,
    ));
    assert_eq!(
        client::Origin::unix(&path.0).to_string(),
        format!("unix:{}", path.0.display())
    );
    let proxy = Proxy::builder()
        .route(Route {
            host: None,
            path_prefix: "/".into(),
            group,
        })
        .build();
    let (conns, _) = {
        let server = Server::builder().build();
        let stats = server.stats();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            server
                .serve(Pipes(Mutex::new(rx)), proxy, std::future::pending())
                .await
        });
        (tx, stats)
    };
    let mut c = pipe(&conns).await;
    let r1 = exchange(&mut c, "GET /conn HTTP/1.1\r\nHost: front\r\n\r\n").await;
    assert!(r1.ends_with("\r\n\r\nconn=1 request=1\n"), "{r1}");
    let r2 = exchange(&mut c, "GET /conn HTTP/1.1\r\nHost: front\r\n\r\n").await;
    assert!(r2.ends_with("\r\n\r\nconn=1 request=2\n"), "{r2}");
    let r3 = exchange(
        &mut c,
        "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    )
    .await;
    let echoed = r3.split("\r\n\r\n").nth(1).unwrap();
    assert!(echoed.contains("\nhost: localhost\n"), "{echoed}");
    assert!(!echoed.contains("x-forwarded-for"), "{echoed}");
    assert_eq!(upstream.accepted.load(Ordering::Relaxed), 1);
}
