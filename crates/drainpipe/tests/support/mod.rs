//! Test support: servers on 127.0.0.1:0, a raw-TCP client that sees exact
//! bytes, and peer detection with a visible skip.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use drainpipe::body::Incoming;
use drainpipe::server::{Builder, DrainReport, Server, Stats};
use drainpipe::BoxError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server running in the test's runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<DrainReport>>,
}

impl TestServer {
    /// Starts `service` on 127.0.0.1:0 with `builder`'s settings.
    pub async fn start<S, B>(builder: Builder, service: S) -> TestServer
    where
        S: tower_service::Service<http::Request<Incoming>, Response = http::Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server: Server = builder.build();
        let stats = server.stats();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(listener, service, async {
                    let _ = rx.await;
                })
                .await
        });
        TestServer {
            addr,
            stats,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Starts the built-in origin.
    pub async fn origin(builder: Builder) -> TestServer {
        TestServer::start(builder, drainpipe::origin::Origin).await
    }

    /// Starts the drain (without waiting for it).
    pub fn begin_drain(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Drains and returns the report (bounded by a 10 s test timeout).
    pub async fn drain(mut self) -> DrainReport {
        self.begin_drain();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("drain finished in time")
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A raw TCP client: writes exact bytes, reads exact bytes, with timeouts
/// everywhere.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    pub eof: bool,
}

/// One parsed response, with its exact bytes.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
    pub bytes: Vec<u8>,
}

impl RawResponse {
    /// The first value of a field (case-insensitive name), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The head with the Date field's value masked, for exact comparison.
    pub fn head_without_date(&self) -> String {
        self.head
            .lines()
            .map(|l| {
                if l.to_ascii_lowercase().starts_with("date:") {
                    "date: <masked>".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n")
    }
}

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(5);

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Raw {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads once (up to `WAIT`); returns false at EOF. Panics on a reset.
    pub async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) => {
                self.eof = true;
                false
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Ok(Err(e)) => panic!("read failed (a reset destroyed unread data?): {e}"),
            Err(_) => panic!(
                "no bytes within {WAIT:?}; have {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Reads one whole response (Content-Length, chunked, or to EOF).
    /// `head_request`: the response has no body.
    pub async fn response_to(&mut self, head_request: bool) -> RawResponse {
        loop {
            if let Some(r) = self.try_parse(head_request) {
                return r;
            }
            if !self.fill().await {
                if let Some(r) = self.try_parse_at_eof() {
                    return r;
                }
                panic!(
                    "EOF inside a response: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    pub async fn response(&mut self) -> RawResponse {
        self.response_to(false).await
    }

    /// Expects the server to close without sending anything more.
    pub async fn expect_eof(&mut self) {
        while self.fill().await {}
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before EOF: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }

    /// Whether the server closes (EOF or reset) within `within`.
    pub async fn closes_within(&mut self, within: Duration) -> bool {
        let mut chunk = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return false,
            }
        }
    }

    fn try_parse(&mut self, head_request: bool) -> Option<RawResponse> {
        let end = find(&self.buf, b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&self.buf[..end - 4]).into_owned();
        let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
        let lower = head.to_ascii_lowercase();
        let no_body =
            head_request || status == 204 || status == 304 || (100..200).contains(&status);
        let (body, used) = if no_body {
            (Vec::new(), end)
        } else if lower.contains("\r\ntransfer-encoding: chunked") {
            let (body, used) = dechunk(&self.buf[end..])?;
            (body, end + used)
        } else if let Some(cl) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
        {
            let n: usize = cl.trim().parse().ok()?;
            if self.buf.len() < end + n {
                return None;
            }
            (self.buf[end..end + n].to_vec(), end + n)
        } else {
            return None; // close-delimited: only at EOF
        };
        let bytes: Vec<u8> = self.buf.drain(..used).collect();
        Some(RawResponse {
            status,
            head,
            body,
            bytes,
        })
    }

    fn try_parse_at_eof(&mut self) -> Option<RawResponse> {
        let end = find(&self.buf, b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&self.buf[..end - 4]).into_owned();
        let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
        let bytes: Vec<u8> = std::mem::take(&mut self.buf);
        Some(RawResponse {
            status,
            head,
            body: bytes[end..].to_vec(),
            bytes,
        })
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a complete chunked body; `None` if incomplete.
fn dechunk(mut b: &[u8]) -> Option<(Vec<u8>, usize)> {
    let total = b.len();
    let mut body = Vec::new();
    loop {
        let line_end = find(b, b"\r\n")?;
        let size_str = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            let end = find(b, b"\r\n")?;
            if end == 0 {
                return Some((body, total - b.len() + 2));
            }
            let trailer_end = find(b, b"\r\n\r\n")?;
            return Some((body, total - b.len() + trailer_end + 4));
        }
        if b.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Whether the peer program `name` is installed. A missing peer prints a
/// visible skip notice, or fails the test when `DRAINPIPE_REQUIRE_PEERS=1`.
pub fn peer(name: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("DRAINPIPE_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("peer `{name}` is required (DRAINPIPE_REQUIRE_PEERS=1) but not installed");
        }
        eprintln!("SKIPPED: peer `{name}` is not installed; install it to run this test");
    }
    found
}

/// Runs a blocking command with a timeout (so a hung peer cannot hang the test).
pub async fn run_peer(cmd: &str, args: &[&str], timeout: Duration) -> std::process::Output {
    let mut c = tokio::process::Command::new(cmd);
    c.args(args).kill_on_drop(true);
    tokio::time::timeout(timeout, c.output())
        .await
        .unwrap_or_else(|_| panic!("{cmd} {args:?} did not finish in {timeout:?}"))
        .expect("peer runs")
}

/// A scripted raw-TCP server: each accepted connection is handed to `script`
/// with its number (from 0). For peers that misbehave on purpose.
pub async fn raw_server<F, Fut>(script: F) -> SocketAddr
where
    F: Fn(usize, RawConn) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let script = Arc::new(script);
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((stream, _)) = listener.accept().await {
            let script = script.clone();
            let conn = RawConn {
                stream,
                buf: Vec::new(),
            };
            tokio::spawn(async move { script(n, conn).await });
            n += 1;
        }
    });
    addr
}

/// The server side of a scripted connection.
pub struct RawConn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

impl RawConn {
    /// Reads one request (head, and a Content-Length body); `None` at EOF.
    pub async fn request(&mut self) -> Option<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end + 4]).into_owned();
                let len: usize = head
                    .to_ascii_lowercase()
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let all: Vec<u8> = self.buf.drain(..end + 4 + len).collect();
                    return Some(String::from_utf8_lossy(&all).into_owned());
                }
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }
}
