//! `drainpipe bench URL`: loads a URL with one of four connection strategies
//! and reports requests/s, latency percentiles (HDR histogram), connections
//! opened, errors by kind and the TIME_WAIT sockets left behind.
//!
//! | strategy | connections | in flight on each | `Connection: close` |
//! |---|---|---|---|
//! | `serial` | 1 at a time, a new one per request | 1 | yes |
//! | `parallel` | C at a time, a new one per request | 1 | yes |
//! | `persistent` | C keep-alive | 1 | no |
//! | `pipelined` | C keep-alive | D | no |
//!
//! Every connection is driven by its own task through the sans-IO core
//! ([`drainpipe::proto`]): it frames the requests and finds where each response
//! ends. Reads land straight in the core's receive buffer; the requests of a
//! batch leave in one write. A request's latency runs from the moment its bytes
//! were written to the end of its response.
//!
//! Every request sent ends one way: completed (a response ended; counted in
//! `requests`, by status code, and in `non_2xx` too if its status was not
//! 2xx), failed (an error of one kind), or given back when the server closed a
//! keep-alive connection gracefully before answering it (it is sent again on a
//! new connection). Any failed request makes the exit status 1 (bad usage: 2).
//!
//! With `--rate R` the requests follow a schedule of R per second across all
//! connections (request i is due at start + i/R): a connection sends a request
//! only once it is due, and its latency runs from when it was due, not from
//! when it could be sent, so a server that stalls is charged for every
//! request that waited behind the stall (no coordinated omission, as in wrk2).
//! Requests due before the end that no connection was free to send are
//! reported as `missed` (the server did not keep up), never silently dropped.
//! A connection that waits idle for its next due request may be closed by the
//! server (its idle timeout): that costs a new connection, not a failure, and
//! requests sent on it just as it closed, before any byte came back, go again.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{IsTerminal, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use drainpipe::proto::{BodySize, Config, Connection, ErrorKind, Event, Role, WriteBuf};
use drainpipe::tls::ClientTls;
use drainpipe::transport::Transport;
use drainpipe::wire;
use hdrhistogram::Histogram;
use http::{header, HeaderValue, Uri};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::either::Either;

use crate::args::{BenchArgs, Strategy};

/// Connections when `--connections` is not given (serial always uses 1).
const DEFAULT_CONNECTIONS: u32 = 64;
/// Seconds per strategy when neither `--requests` nor `--duration` is given.
const DEFAULT_SECONDS: f64 = 10.0;
/// Pause after a failed connect, so a dead server does not spin the bench.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// Wait before counting TIME_WAIT sockets after a run, so the last closes land.
const SETTLE: Duration = Duration::from_millis(200);
/// Largest latency the histogram tells apart (longer ones count as this), µs.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The connection could not be opened (refused, unreachable, timed out).
    Connect,
    /// The connection closed before the response began.
    Closed,
    /// The connection closed inside a response (its head or its body).
    Truncated,
    /// The response broke HTTP/1.x.
    Protocol,
    /// A socket read or write failed (a reset, say).
    Io,
    /// No progress for `--timeout` seconds.
    Timeout,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Connect,
        Kind::Closed,
        Kind::Truncated,
        Kind::Protocol,
        Kind::Io,
        Kind::Timeout,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Connect => "connect",
            Kind::Closed => "closed",
            Kind::Truncated => "truncated",
            Kind::Protocol => "protocol",
            Kind::Io => "io",
            Kind::Timeout => "timeout",
        }
    }
}

/// Runs `drainpipe bench` and says how it went: exit status 0 when every
/// request completed, 1 when any failed (the report is printed all the
/// same, and one line on stderr counts the failures) or the URL cannot be
/// reached, 2 on bad usage (a URL that is not `http://`, a request that
/// cannot be sent). Errors are one line naming the URL.
pub async fn main(args: BenchArgs) -> std::process::ExitCode {
    let url = args.url.clone();
    let (code, line) = match run(args).await {
        Ok((0, _)) => return std::process::ExitCode::SUCCESS,
        Ok((failed, sent)) => (1, format!("{failed} of {sent} requests to {url} failed")),
        Err(Stop::Usage(e)) => (2, e),
        Err(Stop::Failed(e)) => (1, e),
    };
    eprintln!("drainpipe: {line}");
    std::process::ExitCode::from(code)
}

/// Why a bench could not run.
enum Stop {
    /// Bad usage (exit status 2).
    Usage(String),
    /// The target could not be loaded (exit status 1).
    Failed(String),
}

/// Runs one strategy, or all four with `--compare`, then prints the results
/// (a table, or JSON lines) on stdout. Returns the requests that failed and
/// those that ended (completed or failed).
async fn run(args: BenchArgs) -> Result<(u64, u64), Stop> {
    let target = Target::resolve(&args).await?;
    let request = Template::new(&args, target.uri.clone(), false).map_err(Stop::Usage)?;
    let duration = match args.requests {
        Some(_) => None,
        None => Some(Duration::from_secs_f64(
            args.duration.unwrap_or(DEFAULT_SECONDS),
        )),
    };
    let timeout = Duration::from_secs_f64(args.timeout);
    // The first connection proves the URL reachable; the first strategy uses it.
    let mut first = match connect(&target, Instant::now() + timeout).await {
        Ok(stream) => Some(stream),
        Err(e) => return Err(Stop::Failed(format!("cannot connect to {}: {e}", args.url))),
    };
    let strategies: Vec<Strategy> = if args.compare {
        Strategy::ALL.to_vec()
    } else {
        vec![args.strategy]
    };
    let tty = std::io::stderr().is_terminal();
    let mut reports = Vec::with_capacity(strategies.len());
    for strategy in strategies {
        let close = matches!(strategy, Strategy::Serial | Strategy::Parallel);
        let setup = Setup {
            strategy,
            connections: match strategy {
                Strategy::Serial => 1,
                _ => args.connections.unwrap_or(DEFAULT_CONNECTIONS),
            },
            depth: match strategy {
                Strategy::Pipelined => args.depth,
                _ => 1,
            },
            request: if close {
                Template::new(&args, target.uri.clone(), true).map_err(Stop::Usage)?
            } else {
                request.clone()
            },
            requests: args.requests,
            duration,
            timeout,
            rate: args.rate,
        };
        let report = run_strategy(&target, setup, first.take(), tty).await;
        if args.json {
            println!("{}", report.json(&args.url));
        }
        reports.push(report);
    }
    if !args.json {
        print!("{}", table(&reports));
    }
    if args.chart {
        // With --json, stdout stays JSON lines: the chart goes to stderr.
        if args.json {
            eprint!("{}", chart(&reports));
        } else {
            print!("{}", chart(&reports));
        }
    }
    let failed: u64 = reports.iter().map(Report::errors).sum();
    let completed: u64 = reports.iter().map(|r| r.stats.completed).sum();
    Ok((failed, failed + completed))
}

/// Where the requests go.
struct Target {
    uri: Uri,
    addr: SocketAddr,
    /// `https://`: the TLS settings and the name to verify.
    tls: Option<(ClientTls, String)>,
}

impl Target {
    /// Parses an `http://` or `https://` URL and resolves its host.
    async fn resolve(args: &BenchArgs) -> Result<Target, Stop> {
        let url = &args.url;
        let uri: Uri = url
            .parse()
            .map_err(|e| Stop::Usage(format!("invalid URL {url}: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(_) => {
                return Err(Stop::Usage(format!(
                    "unsupported URL {url}: only http:// and https:// are supported"
                )))
            }
            None => {
                return Err(Stop::Usage(format!(
                    "invalid URL {url}: expected http://HOST[:PORT][/PATH]"
                )))
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Stop::Usage(format!("invalid URL {url}: no host")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let tls = if https {
            let mut builder = ClientTls::builder()
                .insecure(args.insecure)
                .resumption(!args.no_resumption);
            if let Some(ca) = &args.ca {
                builder = builder.ca_file(ca);
            }
            let tls = builder
                .build()
                .map_err(|e| Stop::Usage(format!("--ca: {e}")))?;
            Some((tls, host.to_string()))
        } else {
            if args.ca.is_some() || args.insecure || args.no_resumption {
                return Err(Stop::Usage(
                    "--ca, --insecure and --no-resumption are for https:// URLs".into(),
                ));
            }
            None
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Stop::Failed(format!("cannot resolve {url}: {e}")))?
            .next()
            .ok_or_else(|| Stop::Failed(format!("cannot resolve {url}: no address")))?;
        Ok(Target { uri, addr, tls })
    }
}

/// The request every connection sends, built once.
#[derive(Debug, Clone)]
struct Template {
    parts: http::request::Parts,
    size: BodySize,
    body: Option<Bytes>,
}

impl Template {
    /// The request from the flags; `close` adds `Connection: close`. Checked
    /// once here by framing it, so sending it later cannot fail.
    fn new(args: &BenchArgs, uri: Uri, close: bool) -> Result<Template, String> {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = args.method.clone();
        parts.uri = uri;
        for (name, value) in &args.headers {
            parts.headers.append(name.clone(), value.clone());
        }
        if close {
            parts
                .headers
                .append(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let body = args
            .body
            .as_ref()
            .map(|b| Bytes::copy_from_slice(b.as_bytes()));
        let size = BodySize::Exact(body.as_ref().map_or(0, |b| b.len() as u64));
        let template = Template { parts, size, body };
        let mut probe = Connection::new(Role::Client, Arc::new(Config::default()));
        template
            .write(&mut probe, &mut WriteBuf::new())
            .map_err(|e| format!("cannot send this request to {}: {e}", args.url))?;
        Ok(template)
    }

    /// Frames one request into `out`.
    fn write(
        &self,
        conn: &mut Connection,
        out: &mut WriteBuf,
    ) -> Result<(), drainpipe::proto::Error> {
        conn.send_request(&self.parts, self.size, out)?;
        if let Some(body) = &self.body {
            conn.send_data(body.clone(), out)?;
        }
        conn.send_end(None, out)
    }
}

/// What one strategy run is asked to do.
struct Setup {
    strategy: Strategy,
    connections: u32,
    depth: u32,
    request: Template,
    requests: Option<u64>,
    duration: Option<Duration>,
    timeout: Duration,
    rate: Option<f64>,
}

/// A constant-throughput schedule: request `i` is due at `start + i / rate`.
struct Schedule {
    start: Instant,
    per_second: f64,
    /// The next request not yet claimed by a connection.
    next: AtomicU64,
    /// Requests claimed but owed again, by when they were due: sent on a
    /// connection the server had closed while it was idle (nothing came
    /// back), so they go again on a new one.
    owed: std::sync::Mutex<Vec<Instant>>,
}

impl Schedule {
    fn due_at(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.per_second)
    }

    /// When the next unclaimed request is due (at once if one is owed).
    fn next_due(&self) -> Instant {
        if self.owed.lock().unwrap().last().is_some() {
            return self.start;
        }
        self.due_at(self.next.load(Relaxed))
    }

    /// Requests due before `end` that were never sent: the server (or the
    /// connections) could not keep up with the rate.
    fn missed(&self, end: Instant) -> u64 {
        let due = (end.saturating_duration_since(self.start).as_secs_f64() * self.per_second).ceil()
            as u64;
        due.saturating_sub(self.next.load(Relaxed)) + self.owed.lock().unwrap().len() as u64
    }

    /// Claims up to `room` requests due by `now` (and before the deadline),
    /// pushing when each was due.
    fn claim_due(&self, room: u64, now: Instant, plan: &Plan, due: &mut Vec<Instant>) -> u64 {
        let mut n = 0;
        {
            let mut owed = self.owed.lock().unwrap();
            while n < room {
                let Some(at) = owed.pop() else { break };
                due.push(at);
                n += 1;
            }
        }
        while n < room {
            let i = self.next.load(Relaxed);
            let at = self.due_at(i);
            if at > now || plan.past_deadline(at) {
                break;
            }
            if self
                .next
                .compare_exchange_weak(i, i + 1, Relaxed, Relaxed)
                .is_ok()
            {
                due.push(at);
                n += 1;
            }
        }
        n
    }
}

/// What the connection tasks of one run share.
struct Plan {
    addr: SocketAddr,
    /// `https://`: the TLS settings and the name to verify.
    tls: Option<(ClientTls, String)>,
    depth: u64,
    request: Template,
    config: Arc<Config>,
    /// Requests still to start (`None`: until the deadline).
    budget: Option<AtomicU64>,
    deadline: Option<Instant>,
    timeout: Duration,
    /// `--rate`: when each request is due.
    schedule: Option<Schedule>,
    /// Completed so far, for the progress line.
    completed: AtomicU64,
    /// Errors so far, for the progress line.
    errors: AtomicU64,
}

impl Plan {
    /// Takes up to `want` requests from the budget.
    fn take(&self, want: u64) -> u64 {
        let Some(left) = &self.budget else {
            return want;
        };
        let mut cur = left.load(Relaxed);
        loop {
            if cur == 0 {
                return 0;
            }
            let n = cur.min(want);
            match left.compare_exchange_weak(cur, cur - n, Relaxed, Relaxed) {
                Ok(_) => return n,
                Err(now) => cur = now,
            }
        }
    }

    /// Returns requests that were taken but not sent, or not answered before a
    /// graceful close.
    fn give_back(&self, n: u64) {
        if let (Some(left), true) = (&self.budget, n > 0) {
            left.fetch_add(n, Relaxed);
        }
    }

    /// Requests sent on a connection the server closed before answering any
    /// of them, after it had been idle: they go again on a new connection
    /// (as a client retries on a stale pooled connection), not counted as
    /// errors. `due`: when each was due, on a schedule.
    fn owe(&self, n: u64, due: impl Iterator<Item = Instant>) {
        match &self.schedule {
            Some(schedule) => schedule.owed.lock().unwrap().extend(due),
            None => self.give_back(n),
        }
    }

    /// Whether the request budget is spent (never, for a duration).
    fn exhausted(&self) -> bool {
        self.budget.as_ref().is_some_and(|b| b.load(Relaxed) == 0)
    }

    fn past_deadline(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// `at`, or the deadline if that comes first.
    fn cap(&self, at: Instant) -> Instant {
        match self.deadline {
            Some(d) => d.min(at),
            None => at,
        }
    }
}

/// What one task counted.
struct Stats {
    latency: Histogram<u64>,
    completed: u64,
    non_2xx: u64,
    errors: [u64; 6],
    opened: u64,
    /// TLS connections whose handshake was full / resumed a session.
    handshakes_full: u64,
    handshakes_resumed: u64,
    /// Responses by status code (index: the code; 0: out of range).
    statuses: Box<[u64; 600]>,
    bytes_read: u64,
    bytes_written: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("valid histogram bounds"),
            completed: 0,
            non_2xx: 0,
            errors: [0; 6],
            opened: 0,
            handshakes_full: 0,
            handshakes_resumed: 0,
            statuses: Box::new([0; 600]),
            bytes_read: 0,
            bytes_written: 0,
        }
    }

    fn error(&mut self, kind: Kind, n: u64, plan: &Plan) {
        self.errors[kind as usize] += n;
        plan.errors.fetch_add(n, Relaxed);
    }

    /// Records `n` latencies of `us` microseconds each (`(us, n)`).
    fn record(&mut self, (us, n): (u64, u64)) {
        if n > 0 {
            let us = us.min(MAX_LATENCY_US);
            let _ = self.latency.record_n(us, n);
        }
    }

    fn merge(&mut self, other: &Stats) {
        let _ = self.latency.add(&other.latency);
        self.completed += other.completed;
        self.non_2xx += other.non_2xx;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        self.opened += other.opened;
        self.handshakes_full += other.handshakes_full;
        self.handshakes_resumed += other.handshakes_resumed;
        for (a, b) in self.statuses.iter_mut().zip(other.statuses.iter()) {
            *a += b;
        }
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
    }

    /// The status codes seen and how many responses had each.
    fn statuses(&self) -> Vec<(u16, u64)> {
        (0u16..)
            .zip(self.statuses.iter())
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (code, *n))
            .collect()
    }
}

/// Whether a connection task goes on.
enum Flow {
    /// Open another connection if requests are left.
    Next,
    /// The run is over for this task (the deadline passed).
    Stop,
}

/// A bench connection: TCP, or TLS over TCP.
type Stream = Either<TcpStream, Box<dyn Transport>>;

/// An opened connection and how its TLS handshake went.
struct Opened {
    stream: Stream,
    /// `None`: no TLS; `Some(true)`: the session was resumed.
    resumed: Option<bool>,
}

/// Where connections go: an address, and TLS for `https://`.
trait Dest {
    fn addr(&self) -> SocketAddr;
    fn tls(&self) -> Option<&(ClientTls, String)>;
}

impl Dest for Target {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn tls(&self) -> Option<&(ClientTls, String)> {
        self.tls.as_ref()
    }
}

impl Dest for Plan {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn tls(&self) -> Option<&(ClientTls, String)> {
        self.tls.as_ref()
    }
}

/// Opens a connection (no Nagle) and runs its TLS handshake for
/// `https://`, giving up at `limit`.
async fn connect(dest: &impl Dest, limit: Instant) -> std::io::Result<Opened> {
    let open = async {
        let stream = TcpStream::connect(dest.addr()).await?;
        let _ = stream.set_nodelay(true);
        let Some((tls, host)) = dest.tls() else {
            return Ok(Opened {
                stream: Either::Left(stream),
                resumed: None,
            });
        };
        let stream = tls.connect(host, stream).await?;
        let resumed = stream.get_ref().1.handshake_kind()
            == Some(drainpipe::tls::rustls::HandshakeKind::Resumed);
        Ok(Opened {
            stream: Either::Right(Box::new(stream)),
            resumed: Some(resumed),
        })
    };
    tokio::time::timeout_at(limit.into(), open)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// One connection slot: opens connections one after another while requests are
/// left, `first` (already open) first.
async fn worker(plan: Arc<Plan>, mut first: Option<Opened>) -> Stats {
    let mut stats = Stats::new();
    loop {
        // On a schedule, a connection claims its requests as they fall due.
        let reserved = if plan.schedule.is_some() {
            if plan.exhausted() {
                break;
            }
            0
        } else {
            match plan.take(1) {
                0 => break,
                n => n,
            }
        };
        let now = Instant::now();
        if plan.past_deadline(now) {
            plan.give_back(reserved);
            break;
        }
        let opened = match first.take() {
            Some(opened) => opened,
            None => match connect(&*plan, plan.cap(now + plan.timeout)).await {
                Ok(opened) => opened,
                Err(_) if plan.past_deadline(Instant::now()) => {
                    plan.give_back(reserved);
                    break;
                }
                Err(_) => {
                    // On a schedule nothing was reserved, but a failed
                    // connect is a failure all the same (else a dead server
                    // looks like a quiet one and the run passes).
                    stats.error(Kind::Connect, reserved.max(1), &plan);
                    let until = plan.cap(Instant::now() + CONNECT_BACKOFF);
                    tokio::time::sleep_until(until.into()).await;
                    continue;
                }
            },
        };
        stats.opened += 1;
        match opened.resumed {
            Some(true) => stats.handshakes_resumed += 1,
            Some(false) => stats.handshakes_full += 1,
            None => {}
        }
        if let Flow::Stop = drive(opened.stream, &plan, &mut stats, reserved).await {
            break;
        }
    }
    stats
}

/// What the watchdog found when it fired.
enum Check {
    /// Progress was made: keep waiting.
    Wait,
    /// The deadline passed.
    Stop,
    /// No progress for the timeout.
    TimedOut,
}

/// The watchdog fired: stop at the deadline, time out after `timeout` without
/// progress, otherwise re-arm it. It is armed once per timeout period, not per
/// read.
fn check(
    plan: &Plan,
    last_progress: Instant,
    watchdog: std::pin::Pin<&mut tokio::time::Sleep>,
) -> Check {
    let now = Instant::now();
    if plan.past_deadline(now) {
        return Check::Stop;
    }
    let stall = last_progress + plan.timeout;
    if now >= stall {
        return Check::TimedOut;
    }
    watchdog.reset(plan.cap(stall).into());
    Check::Wait
}

/// Drives one open connection: keeps up to `depth` requests in flight while
/// the budget lasts and the connection stays persistent. `to_send` requests
/// were already taken from the budget for it.
async fn drive(mut stream: Stream, plan: &Plan, stats: &mut Stats, mut to_send: u64) -> Flow {
    let mut conn = Connection::new(Role::Client, plan.config.clone());
    let mut out = WriteBuf::new();
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(plan.depth as usize);
    // On a schedule: when each request about to be sent was due.
    let mut due: Vec<Instant> = Vec::new();
    let mut last_progress = Instant::now();
    // The requests in flight went out after the connection sat idle, and
    // nothing has come back since: a close now is the server's idle close.
    let mut after_idle = false;
    let watchdog = tokio::time::sleep_until(plan.cap(last_progress + plan.timeout).into());
    tokio::pin!(watchdog);
    loop {
        // Top the pipeline up, and send the batch in one write.
        if conn.keep_alive() {
            let room = plan.depth.saturating_sub(conn.in_flight() as u64 + to_send);
            if room > 0 {
                match &plan.schedule {
                    None => to_send += plan.take(room),
                    Some(schedule) => {
                        let claimed = schedule.claim_due(room, Instant::now(), plan, &mut due);
                        let granted = plan.take(claimed);
                        due.truncate(due.len() - (claimed - granted) as usize);
                        to_send += granted;
                    }
                }
            }
        }
        if to_send > 0 {
            for _ in 0..to_send {
                if plan.request.write(&mut conn, &mut out).is_err() {
                    // Checked up front; cannot happen on a fresh state.
                    stats.error(Kind::Protocol, conn.in_flight().max(1) as u64, plan);
                    return Flow::Stop;
                }
            }
            let writing = out.len() as u64;
            loop {
                tokio::select! {
                    biased;
                    r = stream.write_all_buf(&mut out) => match r {
                        Ok(()) => break,
                        Err(_) => {
                            stats.error(Kind::Io, conn.in_flight() as u64, plan);
                            return Flow::Next;
                        }
                    },
                    () = &mut watchdog => match check(plan, last_progress, watchdog.as_mut()) {
                        Check::Wait => {}
                        Check::Stop => return Flow::Stop,
                        Check::TimedOut => {
                            stats.error(Kind::Timeout, conn.in_flight() as u64, plan);
                            return Flow::Next;
                        }
                    },
                }
            }
            stats.bytes_written += writing;
            let now = Instant::now();
            last_progress = now;
            if plan.schedule.is_some() {
                // Latency runs from when each request was due.
                sent_at.extend(due.drain(..));
            } else {
                sent_at.extend(std::iter::repeat_n(now, to_send as usize));
            }
            to_send = 0;
        }
        let in_flight = conn.in_flight() as u64;
        if in_flight == 0 {
            match &plan.schedule {
                Some(schedule) if conn.keep_alive() && !plan.exhausted() => {
                    // Idle until the next request falls due (another
                    // connection may claim it first: then the next one).
                    let at = schedule.next_due();
                    if plan.past_deadline(at) {
                        return Flow::Stop;
                    }
                    tokio::time::sleep_until(at.into()).await;
                    last_progress = Instant::now();
                    // The server may have closed it meanwhile (its idle
                    // timeout): a new connection, not an error.
                    let mut probe = [0u8; 1];
                    let peeked = match &mut stream {
                        Either::Left(tcp) => Transport::read_now(tcp, &mut probe),
                        Either::Right(other) => other.read_now(&mut probe),
                    };
                    match peeked {
                        Ok(0) => return Flow::Next,
                        Ok(_) => conn.receive(&probe),
                        Err(_) => {}
                    }
                    after_idle = true;
                    continue;
                }
                _ => return Flow::Next,
            }
        }

        // Read what arrived, straight into the core's receive buffer, with
        // the drivers' one read (`wire`): its buffer rules, and an EOF fed to
        // the core (TLS without close_notify as an unproven one, so a
        // close-delimited body cut there is truncated). Not `poll_step`: the
        // pipeline is topped up between the core asking for data and the
        // read, so the events of one read are taken below, up to `NeedData`.
        let read = loop {
            tokio::select! {
                biased;
                r = poll_fn(|cx| match &mut stream {
                    Either::Left(tcp) => wire::poll_read(tcp, &mut conn, cx),
                    Either::Right(other) => wire::poll_read(other, &mut conn, cx),
                }) => break r,
                () = &mut watchdog => match check(plan, last_progress, watchdog.as_mut()) {
                    Check::Wait => {}
                    Check::Stop => return Flow::Stop,
                    Check::TimedOut => {
                        stats.error(Kind::Timeout, in_flight, plan);
                        return Flow::Next;
                    }
                },
            }
        };
        match read {
            // The server's idle close of a connection that sat idle: the
            // requests just sent on it go again on a new one.
            Ok(0) if after_idle && conn.buffered() == 0 => {
                let n = conn.in_flight() as u64;
                plan.owe(n, sent_at.drain(..));
                return Flow::Next;
            }
            // The EOF is the core's now: its next event says what it means.
            Ok(0) => {}
            Ok(n) => {
                after_idle = false;
                stats.bytes_read += n as u64;
            }
            Err(_) => {
                stats.error(Kind::Io, in_flight, plan);
                return Flow::Next;
            }
        }
        let now = Instant::now();
        last_progress = now;
        let mut done = 0;
        let mut same = (0, 0);
        let ended = loop {
            match conn.next_event() {
                Ok(Event::Response { head, .. }) => {
                    let code = head.status().as_u16();
                    if !head.status().is_success() {
                        stats.non_2xx += 1;
                    }
                    stats.statuses[usize::from(code).min(599)] += 1;
                }
                Ok(Event::End { .. }) => {
                    if let Some(sent) = sent_at.pop_front() {
                        let us = now.saturating_duration_since(sent).as_micros();
                        let us = u64::try_from(us).unwrap_or(u64::MAX);
                        // Responses to one write that arrive in one read share
                        // a latency: record them together.
                        if us != same.0 {
                            stats.record(same);
                            same = (us, 0);
                        }
                        same.1 += 1;
                    }
                    done += 1;
                }
                // (A request head never reaches a client.)
                Ok(Event::Data(_) | Event::Informational(_) | Event::Request { .. }) => {}
                Ok(Event::NeedData) if conn.saw_eof() => {
                    stats.error(Kind::Closed, conn.in_flight().max(1) as u64, plan);
                    break true;
                }
                Ok(Event::NeedData) => break false,
                Ok(Event::Paused) => {
                    // The connection closes after this response (ours or the
                    // server's decision): unanswered requests go again.
                    plan.give_back(conn.in_flight() as u64);
                    break true;
                }
                Ok(Event::Closed) => {
                    stats.error(Kind::Closed, conn.in_flight().max(1) as u64, plan);
                    break true;
                }
                Err(e) => {
                    let kind = match e.kind() {
                        ErrorKind::Truncated { .. } => Kind::Truncated,
                        _ => Kind::Protocol,
                    };
                    stats.error(kind, conn.in_flight().max(1) as u64, plan);
                    break true;
                }
            }
        };
        stats.record(same);
        if done > 0 {
            stats.completed += done;
            plan.completed.fetch_add(done, Relaxed);
        }
        if ended {
            return Flow::Next;
        }
    }
}

/// The results of one strategy.
struct Report {
    strategy: Strategy,
    connections: u32,
    depth: u32,
    stats: Stats,
    elapsed: Duration,
    time_wait: u64,
    /// `--rate`, if given.
    rate: Option<f64>,
    /// On a schedule: requests due before the end that were never sent.
    missed: u64,
}

impl Report {
    fn errors(&self) -> u64 {
        self.stats.errors.iter().sum()
    }

    fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.stats.completed as f64 / secs
        } else {
            0.0
        }
    }

    /// Latency at `quantile`, in milliseconds (0 with no responses).
    fn ms(&self, quantile: f64) -> f64 {
        if self.stats.latency.is_empty() {
            return 0.0;
        }
        self.stats.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.stats.latency.max() as f64 / 1000.0
    }

    fn mean_ms(&self) -> f64 {
        self.stats.latency.mean() / 1000.0
    }

    fn stdev_ms(&self) -> f64 {
        self.stats.latency.stdev() / 1000.0
    }

    /// Bytes read per second.
    fn read_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.stats.bytes_read as f64 / secs
        } else {
            0.0
        }
    }

    /// One JSON object (one line).
    fn json(&self, url: &str) -> String {
        let kinds: serde_json::Map<String, serde_json::Value> = Kind::ALL
            .iter()
            .map(|k| (k.name().to_string(), self.stats.errors[*k as usize].into()))
            .collect();
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        serde_json::json!({
            "strategy": self.strategy.name(),
            "url": url,
            "connections": self.connections,
            "depth": self.depth,
            "requests": self.stats.completed,
            "errors": self.errors(),
            "errors_by_kind": kinds,
            "non_2xx": self.stats.non_2xx,
            "elapsed_s": round(self.elapsed.as_secs_f64()),
            "rps": round(self.rps()),
            "connections_opened": self.stats.opened,
            "tls_handshakes": {
                "full": self.stats.handshakes_full,
                "resumed": self.stats.handshakes_resumed,
            },
            "time_wait": self.time_wait,
            "rate": self.rate,
            "missed": self.missed,
            "bytes_read": self.stats.bytes_read,
            "bytes_written": self.stats.bytes_written,
            "read_bytes_per_s": round(self.read_per_second()),
            "status_codes": self
                .stats
                .statuses()
                .into_iter()
                .map(|(code, n)| (code.to_string(), n.into()))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "latency_ms": {
                "mean": round(self.mean_ms()),
                "stdev": round(self.stdev_ms()),
                "p50": self.ms(0.50),
                "p90": self.ms(0.90),
                "p99": self.ms(0.99),
                "p99.9": self.ms(0.999),
                "max": self.max_ms(),
            },
        })
        .to_string()
    }
}

/// Runs one strategy to the end and reports it.
async fn run_strategy(
    target: &Target,
    setup: Setup,
    mut first: Option<Opened>,
    tty: bool,
) -> Report {
    let port = target.addr.port();
    let time_wait_before = count_time_wait(port);
    let start = Instant::now();
    let plan = Arc::new(Plan {
        addr: target.addr,
        tls: target.tls.clone(),
        depth: u64::from(setup.depth),
        request: setup.request,
        config: Arc::new(Config::default()),
        budget: setup.requests.map(AtomicU64::new),
        deadline: setup.duration.map(|d| start + d),
        timeout: setup.timeout,
        schedule: setup.rate.map(|per_second| Schedule {
            start,
            per_second,
            next: AtomicU64::new(0),
            owed: std::sync::Mutex::new(Vec::new()),
        }),
        completed: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let (stop, stopped) = oneshot::channel();
    let progress = tokio::spawn(progress(
        plan.clone(),
        setup.strategy.name(),
        start,
        setup.requests,
        setup.duration,
        tty,
        stopped,
    ));
    let tasks: Vec<_> = (0..setup.connections)
        .map(|_| tokio::spawn(worker(plan.clone(), first.take())))
        .collect();
    let mut stats = Stats::new();
    for task in tasks {
        match task.await {
            Ok(s) => stats.merge(&s),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    let elapsed = start.elapsed();
    let missed = plan
        .schedule
        .as_ref()
        .map_or(0, |s| s.missed(plan.deadline.unwrap_or(start + elapsed)));
    let _ = stop.send(elapsed);
    let _ = progress.await;
    tokio::time::sleep(SETTLE).await;
    let time_wait = count_time_wait(port).saturating_sub(time_wait_before);
    Report {
        strategy: setup.strategy,
        connections: setup.connections,
        depth: setup.depth,
        stats,
        elapsed,
        time_wait,
        rate: setup.rate,
        missed,
    }
}

/// The progress line on stderr: a bar redrawn every 100 ms on a terminal, a
/// plain line a second otherwise; ends when `stopped` gets the elapsed time.
async fn progress(
    plan: Arc<Plan>,
    name: &'static str,
    start: Instant,
    requests: Option<u64>,
    duration: Option<Duration>,
    tty: bool,
    mut stopped: oneshot::Receiver<Duration>,
) {
    let every = if tty {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    };
    let mut ticks = tokio::time::interval_at((start + every).into(), every);
    let mut stderr = std::io::stderr();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            elapsed = &mut stopped => {
                if tty {
                    let _ = write!(stderr, "\r\x1b[2K");
                } else if let Ok(elapsed) = elapsed {
                    let _ = writeln!(
                        stderr,
                        "bench {name}: done in {:.2}s {} requests {} errors",
                        elapsed.as_secs_f64(),
                        plan.completed.load(Relaxed),
                        plan.errors.load(Relaxed),
                    );
                }
                let _ = stderr.flush();
                return;
            }
        }
        let elapsed = start.elapsed();
        let completed = plan.completed.load(Relaxed);
        let errors = plan.errors.load(Relaxed);
        if tty {
            let fraction = match (requests, duration) {
                (Some(n), _) => completed as f64 / n as f64,
                (None, Some(d)) => elapsed.as_secs_f64() / d.as_secs_f64(),
                (None, None) => 0.0,
            }
            .clamp(0.0, 1.0);
            let _ = write!(
                stderr,
                "\r\x1b[2Kbench {name} [{}] {:3.0}% {:5.1}s {completed} requests {:.0} req/s {errors} errors",
                bar(fraction, 30),
                fraction * 100.0,
                elapsed.as_secs_f64(),
                completed as f64 / elapsed.as_secs_f64().max(1e-9),
            );
        } else {
            let _ = writeln!(
                stderr,
                "bench {name}: {}s {completed} requests {errors} errors",
                elapsed.as_secs(),
            );
        }
        let _ = stderr.flush();
    }
}

/// `fraction` of `width` as `#`, the rest as `.`.
fn bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("{}{}", "#".repeat(filled), ".".repeat(width - filled))
}

/// TIME_WAIT sockets on this host whose local or remote port is `port`
/// (client and server side alike), from /proc/net/tcp and /proc/net/tcp6.
fn count_time_wait(port: u16) -> u64 {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|table| time_wait_in(&table, port))
        .sum()
}

/// Counts the TIME_WAIT (state `06`) rows of a /proc/net/tcp table on `port`.
fn time_wait_in(table: &str, port: u16) -> u64 {
    fn port_of(addr: &str) -> Option<u16> {
        u16::from_str_radix(addr.rsplit_once(':')?.1, 16).ok()
    }
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace();
            let (_, local, remote, state) =
                (fields.next(), fields.next(), fields.next(), fields.next());
            state == Some("06")
                && [local, remote]
                    .into_iter()
                    .any(|addr| addr.and_then(port_of) == Some(port))
        })
        .count() as u64
}

/// The results as a table, then the errors by kind of any run that had some.
fn table(reports: &[Report]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<11} {:>5} {:>5} {:>10} {:>7} {:>7} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "strategy",
        "conns",
        "depth",
        "requests",
        "errors",
        "non-2xx",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "opened",
        "TIME_WAIT",
    );
    for r in reports {
        let _ = writeln!(
            s,
            "{:<11} {:>5} {:>5} {:>10} {:>7} {:>7} {:>11.1} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8} {:>9}",
            r.strategy.name(),
            r.connections,
            r.depth,
            r.stats.completed,
            r.errors(),
            r.stats.non_2xx,
            r.rps(),
            r.ms(0.50),
            r.ms(0.90),
            r.ms(0.99),
            r.max_ms(),
            r.stats.opened,
            r.time_wait,
        );
    }
    for r in reports {
        let codes: Vec<String> = r
            .stats
            .statuses()
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "{}: latency ms mean {:.3} stdev {:.3} p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}; read {} bytes ({:.2} MB/s), written {} bytes; status {}{}",
            r.strategy.name(),
            r.mean_ms(),
            r.stdev_ms(),
            r.ms(0.50),
            r.ms(0.90),
            r.ms(0.99),
            r.ms(0.999),
            r.max_ms(),
            r.stats.bytes_read,
            r.read_per_second() / 1e6,
            r.stats.bytes_written,
            if codes.is_empty() { "none".to_string() } else { codes.join(", ") },
            r.rate.map_or(String::new(), |rate| format!(
                "; rate {rate} req/s asked, latency from each request's due time, {} due but never sent",
                r.missed
            )),
        );
    }
    for r in reports.iter().filter(|r| r.errors() > 0) {
        let kinds: Vec<String> = Kind::ALL
            .iter()
            .filter(|k| r.stats.errors[**k as usize] > 0)
            .map(|k| format!("{} {}", k.name(), r.stats.errors[*k as usize]))
            .collect();
        let _ = writeln!(s, "{} errors: {}", r.strategy.name(), kinds.join(", "));
    }
    for r in reports {
        let (full, resumed) = (r.stats.handshakes_full, r.stats.handshakes_resumed);
        if full + resumed > 0 {
            let _ = writeln!(
                s,
                "{}: TLS handshakes {full} full, {resumed} resumed",
                r.strategy.name()
            );
        }
    }
    s
}

/// An ASCII bar chart of requests/s per strategy.
fn chart(reports: &[Report]) -> String {
    use std::fmt::Write as _;
    const WIDTH: usize = 50;
    let top = reports.iter().map(Report::rps).fold(0.0, f64::max);
    let mut s = String::from("requests/s\n");
    for r in reports {
        let fraction = if top > 0.0 { r.rps() / top } else { 0.0 };
        let filled = ((fraction * WIDTH as f64).round() as usize).min(WIDTH);
        let _ = writeln!(
            s,
            "{:<11} |{:<WIDTH$}| {:.0}",
            r.strategy.name(),
            "#".repeat(filled),
            r.rps(),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_wait_rows_on_the_port_are_counted() {
        // Port 0x1F90 = 8080; state 06 = TIME_WAIT, 01 = ESTABLISHED, 0A = LISTEN.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:C350 06 00000000:00000000 03:00000F4F 00000000     0        0 0 3 0\n\
   2: 0100007F:C351 0100007F:1F90 06 00000000:00000000 03:00000F4F 00000000     0        0 0 3 0\n\
   3: 0100007F:C352 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0\n\
   4: 0100007F:C353 0100007F:1F91 06 00000000:00000000 03:00000F4F 00000000     0        0 0 3 0\n";
        assert_eq!(time_wait_in(table, 8080), 2);
        assert_eq!(time_wait_in(table, 8081), 1);
        assert_eq!(time_wait_in(table, 9999), 0);
        assert_eq!(time_wait_in("", 8080), 0);
    }

    // At 1000 requests/s, 10.5 ms after the start 11 are due (0 ms .. 10 ms),
    // at most `room` at a time, each with the time it was due; none past the
    // deadline.
    #[test]
    fn a_schedule_gives_out_only_what_is_due() {
        let start = Instant::now();
        let plan = Plan {
            addr: "127.0.0.1:1".parse().unwrap(),
            tls: None,
            depth: 4,
            request: Template {
                parts: http::Request::new(()).into_parts().0,
                size: BodySize::Exact(0),
                body: None,
            },
            config: Arc::new(Config::default()),
            budget: None,
            deadline: Some(start + Duration::from_millis(20)),
            timeout: Duration::from_secs(1),
            schedule: Some(Schedule {
                start,
                per_second: 1000.0,
                next: AtomicU64::new(0),
                owed: std::sync::Mutex::new(Vec::new()),
            }),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        };
        let s = plan.schedule.as_ref().unwrap();
        let mut due = Vec::new();
        let now = start + Duration::from_micros(10_500);
        assert_eq!(s.claim_due(8, now, &plan, &mut due), 8);
        assert_eq!(s.claim_due(8, now, &plan, &mut due), 3);
        assert_eq!(s.claim_due(8, now, &plan, &mut due), 0);
        let offsets: Vec<u128> = due.iter().map(|t| (*t - start).as_micros()).collect();
        assert_eq!(offsets, (0..11).map(|i| i * 1000).collect::<Vec<_>>());
        assert_eq!(s.next_due() - start, Duration::from_millis(11));
        let later = start + Duration::from_secs(1);
        due.clear();
        assert_eq!(
            s.claim_due(100, later, &plan, &mut due),
            9,
            "none past 20 ms"
        );
    }

    #[test]
    fn budget_is_shared_and_given_back() {
        let plan = Plan {
            addr: "127.0.0.1:1".parse().unwrap(),
            tls: None,
            depth: 4,
            request: Template {
                parts: http::Request::new(()).into_parts().0,
                size: BodySize::Exact(0),
                body: None,
            },
            config: Arc::new(Config::default()),
            budget: Some(AtomicU64::new(5)),
            deadline: None,
            timeout: Duration::from_secs(1),
            schedule: None,
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        };
        assert_eq!(plan.take(4), 4);
        assert_eq!(plan.take(4), 1);
        assert_eq!(plan.take(4), 0);
        plan.give_back(3);
        assert_eq!(plan.take(2), 2);
        assert_eq!(plan.take(2), 1);
    }

    #[test]
    fn bars_fill_proportionally() {
        assert_eq!(bar(0.0, 4), "....");
        assert_eq!(bar(0.5, 4), "##..");
        assert_eq!(bar(2.0, 4), "####");
    }
}
