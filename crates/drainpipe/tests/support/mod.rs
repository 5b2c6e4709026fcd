//! Test support: servers on 127.0.0.1:0, a raw-TCP client that sees exact
//! bytes, and peer detection with a visible skip.
#![allow(dead_code)]

pub mod certs;
pub mod peers;

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
        TestServer::start_on(listener, addr, builder, service)
    }

    /// Starts `service` on `listener` (listening on `addr`), e.g. a TLS one.
    pub fn start_on<L, S, B>(
        listener: L,
        addr: SocketAddr,
        builder: Builder,
        service: S,
    ) -> TestServer
    where
        L: drainpipe::server::Listen + Send + 'static,
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
    /// Reads until a whole head is buffered; the offset just past it (its
    /// blank line), `None` at EOF, on an error or after `WAIT`.
    pub async fn head_end(&mut self) -> Option<usize> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                return Some(end + 4);
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

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

/// One request as a [`recording_upstream`] parsed it (strictly, with the
/// protocol core's server role).
#[derive(Debug, Clone)]
pub struct Seen {
    /// The upstream connection it came on (numbered from 0 in accept order).
    pub conn: usize,
    pub method: String,
    pub target: String,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    /// How its body was framed on the wire.
    pub framing: drainpipe::proto::Framing,
    pub body: Vec<u8>,
    /// The trailer section of a chunked body, if any.
    pub trailers: Option<http::HeaderMap>,
    /// Whether the whole message (body included) arrived.
    pub complete: bool,
}

impl Seen {
    /// Every value of field `name`, as text.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

/// What a [`recording_upstream`] saw.
#[derive(Clone, Default)]
pub struct Recorder {
    pub addr: Option<SocketAddr>,
    /// Every request head received, in order (also incomplete ones).
    pub seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    /// Every byte received, per connection.
    pub raw: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    /// Protocol errors in what was received (the sender broke HTTP/1.1).
    pub errors: Arc<std::sync::Mutex<Vec<String>>>,
    /// Connections open now (accepted and not yet closed by either side).
    pub open: Arc<std::sync::atomic::AtomicUsize>,
}

impl Recorder {
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("started")
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.raw.lock().unwrap().len()
    }

    pub fn bytes_received(&self) -> usize {
        self.raw.lock().unwrap().iter().map(Vec::len).sum()
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    pub fn open(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Counts a connection open until dropped.
struct OpenGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Polls `cond` every 10 ms until it holds or `within` passes; returns
/// whether it held.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An upstream that logs every request it receives, parsed strictly by the
/// protocol core (so anything ambiguous a proxy forwards shows up as an
/// error), and answers each complete one with `200` and `ok`. Connections idle
/// for `WAIT` are closed.
pub async fn recording_upstream() -> Recorder {
    use bytes::Buf;
    use drainpipe::proto::{BodySize, Config, Connection, Event, Role, WriteBuf};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rec = Recorder {
        addr: Some(listener.local_addr().unwrap()),
        ..Recorder::default()
    };
    let shared = rec.clone();
    tokio::spawn(async move {
        let config = Arc::new(Config::default());
        while let Ok((mut stream, _)) = listener.accept().await {
            let rec = shared.clone();
            let conn_no = {
                let mut raw = rec.raw.lock().unwrap();
                raw.push(Vec::new());
                raw.len() - 1
            };
            let config = config.clone();
            rec.open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let guard = OpenGuard(rec.open.clone());
            tokio::spawn(async move {
                let _guard = guard;
                let mut conn = Connection::new(Role::Server, config);
                let mut out = WriteBuf::new();
                let mut current: Option<usize> = None;
                let mut chunk = vec![0u8; 65536];
                loop {
                    let event = conn.next_event();
                    match event {
                        Ok(Event::Request { head, body }) => {
                            let mut seen = rec.seen.lock().unwrap();
                            seen.push(Seen {
                                conn: conn_no,
                                method: head.method().to_string(),
                                target: head.uri().to_string(),
                                version: head.version(),
                                headers: head.headers().clone(),
                                framing: body,
                                body: Vec::new(),
                                trailers: None,
                                complete: false,
                            });
                            current = Some(seen.len() - 1);
                        }
                        Ok(Event::Data(d)) => {
                            if let Some(i) = current {
                                rec.seen.lock().unwrap()[i].body.extend_from_slice(&d);
                            }
                        }
                        Ok(Event::End { trailers }) => {
                            if let Some(i) = current.take() {
                                let mut seen = rec.seen.lock().unwrap();
                                seen[i].complete = true;
                                seen[i].trailers = trailers;
                            }
                            let (mut parts, ()) = http::Response::new(()).into_parts();
                            parts.status = http::StatusCode::OK;
                            if conn
                                .send_response(&parts, BodySize::Exact(2), &mut out)
                                .is_ok()
                            {
                                let _ = conn.send_data(bytes::Bytes::from_static(b"ok"), &mut out);
                                let _ = conn.send_end(None, &mut out);
                            }
                            let bytes = out.copy_to_bytes(out.remaining());
                            if stream.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Ok(Event::NeedData) => {
                            if conn.saw_eof() {
                                return;
                            }
                            match tokio::time::timeout(WAIT, stream.read(&mut chunk)).await {
                                Ok(Ok(0)) => conn.receive_eof(),
                                Ok(Ok(n)) => {
                                    rec.raw.lock().unwrap()[conn_no].extend_from_slice(&chunk[..n]);
                                    conn.receive(&chunk[..n]);
                                }
                                Ok(Err(_)) | Err(_) => return,
                            }
                        }
                        Ok(Event::Paused | Event::Closed) => return,
                        Ok(_) => {}
                        Err(e) => {
                            // A peer that closes inside a body is not a protocol
                            // error on the wire (the request stays incomplete).
                            if !matches!(e.kind(), drainpipe::proto::ErrorKind::Truncated { .. }) {
                                rec.errors
                                    .lock()
                                    .unwrap()
                                    .push(format!("conn {conn_no}: {e}"));
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    rec
}

/// A server that answers the first request on a connection and closes when
/// the second arrives, unanswered (the keep-alive race), logging what it saw.
pub async fn racing_server() -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = log.clone();
    let addr = raw_server(move |_, mut c| {
        let seen = seen.clone();
        async move {
            if let Some(r) = c.request().await {
                seen.lock()
                    .unwrap()
                    .push(r.lines().next().unwrap().to_string());
                c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            }
            if let Some(r) = c.request().await {
                seen.lock()
                    .unwrap()
                    .push(r.lines().next().unwrap().to_string());
            }
        }
    })
    .await;
    (addr, log)
}

/// A reverse proxy with one route, `/` to `upstream`, served on 127.0.0.1:0.
pub async fn proxy_in_front_of(upstream: SocketAddr) -> (TestServer, drainpipe::proxy::Proxy) {
    proxy_with_client(upstream, drainpipe::client::Client::new()).await
}

/// [`proxy_in_front_of`], its upstream requests carried by `client`.
pub async fn proxy_with_client(
    upstream: SocketAddr,
    client: drainpipe::client::Client,
) -> (TestServer, drainpipe::proxy::Proxy) {
    let upstream = drainpipe::client::Origin {
        host: "127.0.0.1".into(),
        port: upstream.port(),
        tls: None,
    };
    let proxy = proxy_to(upstream, client);
    let srv = TestServer::start(Server::builder(), proxy.clone()).await;
    (srv, proxy)
}

/// A reverse proxy with one route, `/` to `upstream`, its upstream requests
/// carried by `client` (not served yet).
pub fn proxy_to(
    upstream: drainpipe::client::Origin,
    client: drainpipe::client::Client,
) -> drainpipe::proxy::Proxy {
    use drainpipe::proxy::{Balance, Group, Proxy, Route};

    let group = Arc::new(Group::new("peer", vec![upstream], Balance::RoundRobin));
    Proxy::builder()
        .client(client)
        .route(Route {
            host: None,
            path_prefix: "/".into(),
            group,
        })
        .build()
}
