//! One connection's task: read into the protocol core, hand requests to the
//! handler one at a time, queue responses and write them out coalesced.
//!
//! The loop, in order:
//! 1. pull events from `proto::Connection`;
//! 2. a request → [`Driver::exchange`]: call the handler while feeding it the
//!    request body on demand, then stream the response into the outgoing
//!    queue;
//! 3. need-data → write what is queued (pipelined responses leave together, at
//!    most `max_batch` per write), then read with the timeout that applies:
//!    head (from the first byte; 408), idle (silent close), body;
//! 4. paused or closed → if the core says so, close gracefully.
//!
//! An idle connection holds no buffer: both are given back before it waits.

use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, StatusCode};
use http_body::Body;
use proto::{BodySize, Connection, Event, Framing, Role, WriteBuf};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::date;
use super::drain::{spread_delay, CloseReason, InState, Phase, Shared};
use super::info::{Abort, ConnInfo};
use super::interim;
use super::park::{Parker, Resume};
use crate::access;
use crate::body::{Demand, Incoming, Sender};
use crate::error::{BodyError, BoxError, Error, Kind};
use crate::io::{poll_read_buf, poll_write_buf, pool, read_buf, try_write_buf, write_buf};
use crate::sock;
use crate::transport::{Parking, Transport};
use crate::upgrade::{OnUpgrade, Pending, Upgraded};

/// Queued output beyond which a write is forced before going on.
const FLUSH_BYTES: usize = 64 * 1024;

/// How a connection's task ended.
pub(crate) enum Exit {
    /// The connection closed, for this reason.
    Closed(CloseReason),
    /// The connection went idle and was parked; a new task resumes it.
    Parked,
}

/// Why the serving loop stopped.
enum Stop {
    Close(CloseReason),
    /// The protocol switched: hand the connection (and the bytes read past the
    /// switch) to the handler's [`OnUpgrade`].
    Upgrade(Bytes),
    /// Idle for `park_after`: hand the connection to the parker, to close at
    /// `deadline` as `expiry` if nothing arrives.
    Park {
        deadline: Instant,
        expiry: CloseReason,
    },
}

/// What ended a wait for input.
enum Woke {
    /// A read finished (0: the client's EOF).
    Read(std::io::Result<usize>),
    /// This connection's moment in a drain's spread came.
    Drain,
    /// Idle long enough to be parked.
    Park,
    /// Idle the longest when a new connection needed the slot.
    Reclaim,
    /// The deadline that applies passed.
    Expired,
}

impl From<CloseReason> for Stop {
    fn from(reason: CloseReason) -> Self {
        Stop::Close(reason)
    }
}

/// Runs one connection until it closes or parks.
pub(crate) async fn run<T, S, B>(
    stream: T,
    resume: Resume,
    service: S,
    shared: &Arc<Shared>,
    parker: Option<&Arc<Parker>>,
) -> Exit
where
    T: Transport,
    S: tower_service::Service<Request<Incoming>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    stream.set_nodelay();
    // Parked only with a parker, and on a transport that can leave the
    // reactor.
    let parking = parker.and(T::parking());
    let mut cut = shared.subscribe();
    // A connection resumed from the parker after a request keeps no head
    // deadline: its next head starts now. One parked before its first request
    // keeps the first one (no reset by a trickle of bytes).
    let head_deadline = resume
        .head_deadline
        .unwrap_or_else(|| Instant::now() + shared.config.head_timeout);
    let mut driver = Driver {
        head_deadline: Some(head_deadline),
        stream,
        conn: Connection::resume(
            Role::Server,
            shared.config.proto.clone(),
            resume.requests_started,
        ),
        out: WriteBuf::new(),
        service,
        shared,
        queued: 0,
        resume,
        aborted: false,
        body_error: None,
        upgrade: None,
        timer: Box::pin(sleep_until(head_deadline)),
        drain_wait: None,
        can_park: parking.is_some(),
        date: None,
        interim: Arc::default(),
        access: None,
    };
    let stop = tokio::select! {
        stop = driver.serve() => stop,
        () = wait_for_cut(&mut cut) => Stop::Close(CloseReason::Cut),
    };
    let reason = match stop {
        Stop::Close(reason) => reason,
        Stop::Upgrade(read_buf) => {
            shared.closing(CloseReason::Upgraded, driver.conn.requests_started());
            match driver.upgrade.take() {
                Some(pending) => pending.fulfil(Upgraded {
                    stream: Box::new(driver.stream),
                    read_buf,
                }),
                None => {
                    sock::graceful_close(driver.stream, shared.config.linger).await;
                }
            }
            return Exit::Closed(CloseReason::Upgraded);
        }
        Stop::Park { deadline, expiry } => {
            let (Some(parker), Some(Parking { leave, rejoin })) = (parker, parking) else {
                unreachable!("parking only with a parker and a parkable transport");
            };
            let resume = Resume {
                requests_started: driver.conn.requests_started(),
                head_deadline: driver
                    .head_deadline
                    .filter(|_| driver.conn.requests_started() == 0),
                ..driver.resume
            };
            let fd = match leave(driver.stream) {
                Ok(fd) => fd,
                // Out of the reactor but unusable: as good as closed.
                Err(_) => {
                    shared.closing(CloseReason::Io, resume.requests_started);
                    return Exit::Closed(CloseReason::Io);
                }
            };
            match parker.park(fd, resume, deadline, expiry) {
                Ok(()) => return Exit::Parked,
                // Not parked (a drain began): this idle connection closes.
                Err((fd, resume)) => {
                    shared.closing(CloseReason::Drain, resume.requests_started);
                    if let Ok(stream) = rejoin(fd) {
                        sock::graceful_close(stream, shared.config.linger).await;
                    }
                    return Exit::Closed(CloseReason::Drain);
                }
            }
        }
    };
    shared.closing(reason, driver.conn.requests_started());
    if reason == CloseReason::Cut {
        sock::shutdown_write_now(&mut driver.stream);
        return Exit::Closed(reason);
    }
    if driver.aborted {
        sock::reset(driver.stream);
        return Exit::Closed(reason);
    }
    if matches!(reason, CloseReason::WriteTimeout | CloseReason::Reclaimed) {
        // A client that stopped reading: what is still queued cannot reach
        // it, and lingering would hold it for nothing. An idle connection
        // closed to make room: nothing is owed, and its slot is wanted now.
        sock::close_now(driver.stream, shared.config.linger);
        return Exit::Closed(reason);
    }
    // Whatever is still queued (a final response, an error answer) goes out
    // before the close.
    if !driver.out.is_empty() {
        let _ = tokio::time::timeout(
            shared.config.write_timeout,
            write_buf(&mut driver.stream, &mut driver.out),
        )
        .await;
    }
    if driver.conn.peer_sent_last() {
        // The client announced its last request and sent nothing after it:
        // a plain close meets no unread input, so no reset can hit the
        // response and there is nothing to linger for.
        sock::close_plainly(driver.stream);
        return Exit::Closed(reason);
    }
    let _lingering = InState::enter(&shared.stats.lingering);
    sock::graceful_close(driver.stream, shared.config.linger).await;
    Exit::Closed(reason)
}

async fn wait_for_cut(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p == Phase::Cut).await;
}

struct Driver<'a, T, S> {
    stream: T,
    conn: Connection,
    out: WriteBuf,
    service: S,
    shared: &'a Shared,
    /// When the request head being received must be complete.
    head_deadline: Option<Instant>,
    /// Responses queued in `out` since the last write.
    queued: usize,
    /// The connection's identity and slot, carried across parking.
    resume: Resume,
    /// Whether an idle connection may be parked.
    can_park: bool,
    /// The handler asked for a reset instead of a response ([`Abort`]).
    aborted: bool,
    /// The request body broke the protocol (too large, bad chunk): answered
    /// with its status instead of the handler's response.
    body_error: Option<proto::Error>,
    /// Where the connection goes if the current request switches protocols.
    upgrade: Option<Pending>,
    /// The connection's one timer (head, idle, body deadlines; parking).
    timer: Pin<Box<Sleep>>,
    /// Resolves when a drain begins (registered once, kept across reads).
    drain_wait: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// The `Date` of the responses made since the task last waited: taken at
    /// the first of them and forgotten whenever the task waits (for input, a
    /// write, a handler or a body), so pipelined responses made together
    /// share one clock read.
    date: Option<HeaderValue>,
    /// Informational responses handlers ask for, written ahead of their
    /// final ones.
    interim: Arc<interim::Queue>,
    /// The access-log record of the request being handled (when logging).
    access: Option<Box<access::Record>>,
}

/// Feeds one request body to its handler.
struct Pump {
    /// `None` once the body ended or its reader went away.
    tx: Option<Sender>,
    /// Whether the connection's timer runs the body timeout (armed while
    /// waiting for body bytes; the timer is free while a request is handled).
    waiting: bool,
    /// Body bytes passed on so far.
    received: u64,
}

impl<'a, T, S, B> Driver<'a, T, S>
where
    T: Transport,
    S: tower_service::Service<Request<Incoming>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    async fn serve(&mut self) -> Stop {
        loop {
            match self.conn.next_event() {
                Ok(Event::Request { head, body }) => {
                    self.shared.stats.requests.fetch_add(1, Ordering::Relaxed);
                    self.head_deadline = None;
                    let exchanged = {
                        let _writing = InState::enter(&self.shared.stats.writing);
                        // Not boxed: moving a request's state into the heap
                        // costs more than it saves; an idle connection gives
                        // its whole task up when it is parked.
                        self.exchange(head, body).await
                    };
                    if self.access.is_some() {
                        self.log_access(exchanged.err());
                    }
                    if let Err(reason) = exchanged {
                        return reason.into();
                    }
                    if let Some(read_buf) = self.conn.take_switched() {
                        if let Err(reason) = self.flush().await {
                            return reason.into();
                        }
                        return Stop::Upgrade(read_buf);
                    }
                    if self.queued >= self.shared.config.max_batch || self.out.len() >= FLUSH_BYTES
                    {
                        if let Err(reason) = self.flush().await {
                            return reason.into();
                        }
                    }
                }
                // The rest of a body its handler did not read: discarded (the
                // core bounded it when the response started).
                Ok(Event::Data(_) | Event::End { .. }) => {}
                Ok(Event::NeedData) => {
                    if let Err(reason) = self.flush().await {
                        return reason.into();
                    }
                    if self.conn.must_close() {
                        // The last response is out; what the client still sends
                        // (an unread body) is discarded by the graceful close.
                        return self.close_reason().into();
                    }
                    if let Err(stop) = self.read_more().await {
                        return stop;
                    }
                }
                Ok(Event::Paused | Event::Closed) => {
                    if let Err(reason) = self.flush().await {
                        return reason.into();
                    }
                    return self.close_reason().into();
                }
                Ok(Event::Informational(_) | Event::Response { .. }) => {
                    unreachable!("a server connection yields no responses")
                }
                Err(e) => {
                    if matches!(e.kind(), proto::ErrorKind::Truncated { .. }) {
                        return CloseReason::ClientClosed.into();
                    }
                    if e.side() == proto::Side::Remote {
                        let text = format!("{} {}\n", e.status(), e.kind());
                        self.answer_plain(e.status(), text);
                    }
                    return CloseReason::ProtocolError.into();
                }
            }
        }
    }

    /// Writes the access-log line of the request just handled: why the
    /// connection closes after it, if it does (`failed`, or the core says
    /// it must).
    #[cold]
    fn log_access(&mut self, failed: Option<CloseReason>) {
        let (Some(mut record), Some(log)) = (self.access.take(), &self.shared.config.access_log)
        else {
            return;
        };
        record.request_time = record.time.elapsed().unwrap_or_default();
        record.close_reason = match failed {
            Some(reason) => Some(reason.as_str()),
            None if self.conn.must_close() => Some(self.close_reason().as_str()),
            None => None,
        };
        log.log(&record);
    }

    /// Why the connection closes when the core says it must.
    fn close_reason(&self) -> CloseReason {
        if self.conn.saw_eof() && self.conn.in_flight() == 0 {
            CloseReason::ClientClosed
        } else if self.shared.is_draining() {
            CloseReason::Drain
        } else {
            CloseReason::KeepAliveEnded
        }
    }

    /// Waits for more input with the timeout that applies, or for a drain
    /// while nothing is in flight. An idle connection that stays quiet for
    /// `park_after` is parked instead (when the deadline is further away).
    async fn read_more(&mut self) -> Result<(), Stop> {
        self.date = None;
        let config = &self.shared.config;
        let idle = self.conn.is_idle();
        let (deadline, on_expiry) = if idle {
            if self.conn.requests_started() == 0 {
                let d = self
                    .head_deadline
                    .unwrap_or_else(|| Instant::now() + config.head_timeout);
                (d, CloseReason::HeadTimeout)
            } else {
                (
                    Instant::now() + config.idle_timeout,
                    CloseReason::IdleTimeout,
                )
            }
        } else if self.conn.is_receiving_body() {
            (
                Instant::now() + config.body_timeout,
                CloseReason::BodyTimeout,
            )
        } else {
            let d = *self
                .head_deadline
                .get_or_insert_with(|| Instant::now() + config.head_timeout);
            (d, CloseReason::HeadTimeout)
        };
        let mut park_at = match config.park_after {
            // Nothing is parked once a drain began (a connection still open
            // then is waited for in its task).
            Some(after) if idle && self.can_park && !self.shared.draining.is_cancelled() => {
                Some(Instant::now() + after).filter(|at| *at < deadline)
            }
            _ => None,
        };
        // Only a connection between requests is closed by a drain. One that
        // has not sent its first request yet is waited for (up to the head
        // timeout): its client connected to send one, and a client retries
        // only on a reused connection, so closing it would fail a request.
        // One whose next head has begun is finished and answered with close.
        let mut can_drain = idle && self.conn.requests_started() > 0;
        // The same connections may be closed to make room at max_connections.
        let mut can_reclaim = can_drain;
        if can_reclaim {
            self.resume.slot.idle(Instant::now());
        }
        if idle {
            // An idle connection holds no buffer: both go back to the pool.
            let recv = std::mem::take(self.conn.recv_buf());
            pool::give(recv);
            self.conn.release_buffers();
            if let Some(storage) = self.out.take_storage() {
                pool::give(storage);
            }
        }
        if can_drain && self.drain_wait.is_none() {
            let token = self.shared.draining.clone();
            self.drain_wait = Some(Box::pin(token.cancelled_owned()));
        }
        let state = InState::enter(if idle {
            &self.shared.stats.idle
        } else {
            &self.shared.stats.reading
        });
        let spread = config.drain_spread;
        let id = self.resume.id;
        let shared = self.shared;
        let Driver {
            stream,
            conn,
            timer,
            drain_wait,
            resume,
            ..
        } = self;
        // A drain closes a connection with nothing in flight at a moment spread
        // over the drain window, so its clients do not all reconnect at once.
        let mut drain_at: Option<Instant> = None;
        let woke = loop {
            let wake = [Some(deadline), park_at, drain_at]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(deadline);
            // One timer per connection, moved rather than re-created: pushing
            // its deadline later is a single atomic store.
            timer.as_mut().reset(wake);
            let draining = async {
                if let Some(wait) = drain_wait.as_mut() {
                    wait.as_mut().await;
                }
            };
            tokio::select! {
                biased;
                read = read_buf(stream, conn.recv_buf()) => break Woke::Read(read),
                () = timer.as_mut() => {
                    if drain_at.is_some_and(|at| at <= wake) {
                        // The reactor may not have reported a request that
                        // already arrived: look before closing on it.
                        if stream.has_input() {
                            drain_at = None;
                            can_drain = false;
                            continue;
                        }
                        break Woke::Drain;
                    }
                    if park_at.is_some_and(|at| at <= wake) {
                        // Nothing is parked once a drain began: a connection
                        // still waiting then waits here, to its deadline.
                        if shared.draining.is_cancelled() {
                            park_at = None;
                            continue;
                        }
                        break Woke::Park;
                    }
                    break Woke::Expired;
                }
                () = draining, if can_drain && drain_at.is_none() => {
                    drain_at = Some(Instant::now() + spread_delay(id, spread));
                }
                () = resume.slot.notified(), if can_reclaim => {
                    if !resume.slot.is_reclaimed() {
                        continue;
                    }
                    // A request that just arrived is served instead.
                    if stream.has_input() {
                        resume.slot.busy();
                        can_reclaim = false;
                        continue;
                    }
                    break Woke::Reclaim;
                }
            }
        };
        drop(state);
        if !matches!(woke, Woke::Park | Woke::Reclaim) {
            // Parked, it stays idle (and may be reclaimed by the parker).
            self.resume.slot.busy();
        }
        match woke {
            Woke::Read(Ok(0)) => self.conn.receive_eof(),
            Woke::Drain => self.conn.close_after_current(),
            Woke::Read(Ok(n)) => {
                self.shared
                    .stats
                    .bytes_in
                    .fetch_add(n as u64, Ordering::Relaxed);
                if idle && self.conn.requests_started() > 0 {
                    self.head_deadline = Some(Instant::now() + self.shared.config.head_timeout);
                }
            }
            Woke::Read(Err(e)) => {
                return Err(match e.kind() {
                    std::io::ErrorKind::ConnectionReset => CloseReason::ClientClosed,
                    _ => CloseReason::Io,
                }
                .into())
            }
            Woke::Reclaim => return Err(CloseReason::Reclaimed.into()),
            Woke::Park => {
                return Err(Stop::Park {
                    deadline,
                    expiry: on_expiry,
                })
            }
            Woke::Expired => {
                if let Some(status) = self.conn.time_out() {
                    self.answer_plain(
                        status,
                        format!("{status}: the request head did not arrive in time\n"),
                    );
                }
                return Err(on_expiry.into());
            }
        }
        Ok(())
    }

    /// Writes out everything queued, within the write timeout.
    async fn flush(&mut self) -> Result<(), CloseReason> {
        self.queued = 0;
        if self.out.is_empty() {
            return Ok(());
        }
        self.shared.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.shared
            .stats
            .bytes_out
            .fetch_add(self.out.len() as u64, Ordering::Relaxed);
        // Most writes complete at once: a timer only when the socket is full.
        match try_write_buf(&mut self.stream, &mut self.out) {
            Ok(true) => return Ok(()),
            Ok(false) => self.date = None,
            Err(_) => return Err(CloseReason::Io),
        }
        match tokio::time::timeout(
            self.shared.config.write_timeout,
            write_buf(&mut self.stream, &mut self.out),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(CloseReason::Io),
            Err(_) => Err(CloseReason::WriteTimeout),
        }
    }

    /// One request: the handler is called and driven while its body is fed on
    /// demand, then its response is streamed into the outgoing queue.
    // Not an `async fn`: its arguments would be copied once more, from the
    // future's captures to its locals, when it starts.
    #[allow(clippy::manual_async_fn)]
    fn exchange(
        &mut self,
        head: Request<()>,
        framing: Framing,
    ) -> impl Future<Output = Result<(), CloseReason>> + use<'_, 'a, T, S, B> {
        async move {
            let (body, mut pump) = if framing.has_body() {
                let (body, tx) = Incoming::channel(framing.exact_len());
                (
                    body,
                    Some(Pump {
                        tx: Some(tx),
                        waiting: false,
                        received: 0,
                    }),
                )
            } else {
                // A bodiless request's end follows its head at once.
                let _ = self.conn.next_event();
                (Incoming::empty(), None)
            };
            let info = ConnInfo {
                id: self.resume.id,
                request: self.conn.requests_started(),
                peer: self.resume.peer,
                tls: self.stream.is_tls(),
            };
            let body = body.with_conn(info, self.interim.handle(info.request));
            let started = std::time::Instant::now();
            let logged = self.shared.config.access_log.is_some();
            if logged {
                self.access = Some(Box::new(access::Record::new(
                    &head,
                    info.peer,
                    info.id,
                    info.request,
                )));
            }
            let mut req = head.map(|()| body);
            if logged {
                req.extensions_mut().insert(access::Wanted);
            }
            if self.conn.request_may_switch() {
                let (on_upgrade, pending) = OnUpgrade::pair();
                req.extensions_mut().insert(on_upgrade);
                self.upgrade = Some(pending);
            } else {
                self.upgrade = None;
            }
            if self.shared.config.conn_info_extension {
                req.extensions_mut().insert(info);
            }

            if let Err(e) = poll_fn(|cx| {
                let ready = self.service.poll_ready(cx);
                if ready.is_pending() {
                    self.date = None;
                }
                ready
            })
            .await
            {
                tracing::error!(error = %e.into(), "service not ready");
                self.answer_plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "503 Service Unavailable\n".into(),
                );
                return Err(CloseReason::HandlerError);
            }
            let mut call = pin!(self.service.call(req));
            // The response is put straight here: passed back through the layers
            // of `Poll`s and `Result`s below, it would be copied at each.
            let mut outcome = None;
            let caught = poll_fn(|cx| {
                let polled = poll_caught(|| match call.as_mut().poll(cx) {
                    Poll::Ready(r) => {
                        outcome = Some(r.map_err(Into::<BoxError>::into));
                        Poll::Ready(())
                    }
                    Poll::Pending => Poll::Pending,
                });
                if let Poll::Ready(r) = polled {
                    return Poll::Ready(Ok(r));
                }
                // The 1xx the handler sent go out before anything its work
                // causes (the pump's own `100 Continue` included).
                self.interim.register(cx.waker());
                self.queue_interim(info.request);
                if let Some(p) = pump.as_mut() {
                    self.poll_pump(p, cx)?;
                }
                // Earlier pipelined responses go out while this handler works.
                self.poll_flush_queued(cx)?;
                self.date = None;
                Poll::Pending
            })
            .await?;

            if caught.is_err() {
                outcome = None;
            }
            self.queue_interim(info.request);
            let (parts, body) = match outcome {
                Some(Ok(res)) => res.into_parts(),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "handler failed");
                    self.answer_plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "500 Internal Server Error\n".into(),
                    );
                    return Err(CloseReason::HandlerError);
                }
                // A ready call always leaves its outcome: none, it panicked.
                None => {
                    tracing::error!("handler panicked");
                    self.answer_plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "500 Internal Server Error\n".into(),
                    );
                    return Err(CloseReason::HandlerError);
                }
            };

            if let Some(e) = self.body_error.take() {
                if e.side() == proto::Side::Remote {
                    let text = format!("{} {}\n", e.status(), e.kind());
                    self.answer_plain(e.status(), text);
                }
                return Err(CloseReason::ProtocolError);
            }
            if parts.extensions.get::<Abort>().is_some() {
                self.aborted = true;
                self.out.clear();
                return Err(CloseReason::HandlerError);
            }
            if self.shared.is_draining() {
                self.conn.close_after_current();
            }
            let status = parts.status;
            // Bytes this response adds to the queue (for the access log):
            // counted around each addition, as the queue may be written out
            // between them.
            let queued_before = self.out.len();
            let size = body
                .size_hint()
                .exact()
                .map_or(BodySize::Unknown, BodySize::Exact);
            let date = self.date.get_or_insert_with(date::now);
            if self.out.is_empty() && self.out.spare_capacity() == 0 {
                self.out.give_storage(pool::take());
            }
            let framing =
                match self
                    .conn
                    .send_response_dated(&parts, size, Some(date), &mut self.out)
                {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::error!(error = %e, "handler response refused");
                        self.answer_plain(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "500 Internal Server Error\n".into(),
                        );
                        return Err(CloseReason::HandlerError);
                    }
                };
            // The status that went out is logged even if the body then fails.
            if let Some(record) = self.access.as_deref_mut() {
                record.status = status.as_u16();
            }
            let mut sent = self.out.len().saturating_sub(queued_before);
            let mut trailers = None;
            if framing != Framing::None {
                let mut body = pin!(body);
                loop {
                    let frame = poll_fn(|cx| {
                        if let Some(p) = pump.as_mut() {
                            self.poll_pump(p, cx)?;
                        }
                        match poll_caught(|| body.as_mut().poll_frame(cx)) {
                            Poll::Ready(Ok(frame)) => {
                                Poll::Ready(Ok(frame.map(|f| f.map_err(Into::<BoxError>::into))))
                            }
                            Poll::Ready(Err(())) => Poll::Ready(Err(CloseReason::HandlerError)),
                            Poll::Pending => {
                                // The body waits: what is queued goes out meanwhile.
                                self.poll_flush_queued(cx)?;
                                self.date = None;
                                Poll::Pending
                            }
                        }
                    })
                    .await?;
                    match frame {
                        None => break,
                        Some(Err(e)) => {
                            // The response cannot be completed: the close makes the
                            // peer see a truncated body, never a complete one.
                            tracing::warn!(error = %e, "response body failed");
                            return Err(CloseReason::HandlerError);
                        }
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(mut data) => {
                                let bytes = data.copy_to_bytes(data.remaining());
                                let before = self.out.len();
                                if let Err(e) = self.conn.send_data(bytes, &mut self.out) {
                                    tracing::error!(error = %e, "response body refused");
                                    return Err(CloseReason::HandlerError);
                                }
                                sent += self.out.len().saturating_sub(before);
                                if self.out.len() >= FLUSH_BYTES {
                                    self.flush().await?;
                                }
                            }
                            Err(frame) => {
                                if let Ok(t) = frame.into_trailers() {
                                    trailers = Some(t);
                                    break;
                                }
                            }
                        },
                    }
                }
            }
            let before = self.out.len();
            if let Err(e) = self.conn.send_end(trailers.as_ref(), &mut self.out) {
                tracing::error!(error = %e, "response body shorter than its length");
                return Err(CloseReason::HandlerError);
            }
            sent += self.out.len().saturating_sub(before);
            self.queued += 1;
            let stats = &self.shared.stats;
            stats.latency.record(started.elapsed());
            stats.responses.record(status);
            if let Some(record) = self.access.as_deref_mut() {
                record.status = status.as_u16();
                record.bytes_sent = sent as u64;
                record.bytes_received = pump.as_ref().map_or(0, |p| p.received);
                record.upstream = parts.extensions.get::<access::Upstream>().cloned();
            }
            Ok(())
        }
    }

    /// Feeds the request body while its reader asks: reads from the socket only
    /// into a free slot (backpressure), sends `100 Continue` on the first ask.
    /// `Err` ends the connection.
    fn poll_pump(&mut self, pump: &mut Pump, cx: &mut Context<'_>) -> Result<(), CloseReason> {
        loop {
            let Some(tx) = &pump.tx else {
                return Ok(());
            };
            if tx.was_polled() && self.conn.send_continue(&mut self.out) {
                self.poll_flush_queued(cx)?;
            }
            match tx.poll_demand(cx) {
                Demand::Gone => {
                    pump.tx = None;
                    return Ok(());
                }
                Demand::Wait => return Ok(()),
                Demand::Read => {}
            }
            match self.conn.next_event() {
                Ok(Event::Data(data)) => {
                    pump.received += data.len() as u64;
                    tx.data(data);
                    pump.waiting = false;
                }
                Ok(Event::End { trailers }) => {
                    tx.end(trailers);
                    pump.tx = None;
                }
                Ok(Event::NeedData) => {
                    match poll_read_buf(&mut self.stream, self.conn.recv_buf(), cx) {
                        Poll::Ready(Ok(0)) => self.conn.receive_eof(),
                        Poll::Ready(Ok(n)) => {
                            self.shared
                                .stats
                                .bytes_in
                                .fetch_add(n as u64, Ordering::Relaxed);
                            pump.waiting = false;
                        }
                        Poll::Ready(Err(e)) => {
                            tx.error(BodyError::io(e));
                            pump.tx = None;
                            return Err(CloseReason::Io);
                        }
                        Poll::Pending => {
                            if !pump.waiting {
                                let deadline = Instant::now() + self.shared.config.body_timeout;
                                self.timer.as_mut().reset(deadline);
                                pump.waiting = true;
                            }
                            if self.timer.as_mut().poll(cx).is_ready() {
                                tx.error(Error::new(Kind::Timeout("request body read")));
                                pump.tx = None;
                                return Err(CloseReason::BodyTimeout);
                            }
                            return Ok(());
                        }
                    }
                }
                Ok(_) => {
                    tx.error(BodyError::connection_lost());
                    pump.tx = None;
                }
                Err(e) => {
                    // The handler learns why its body failed; the client gets
                    // the error's status and the connection closes.
                    tx.error(BodyError::proto(e.clone()));
                    self.body_error = Some(e);
                    pump.tx = None;
                }
            }
        }
    }

    /// Queues the informational responses a handler sent for `request`
    /// ahead of its final response (the core writes none to HTTP/1.0).
    ///
    /// Nothing is taken while the outgoing queue holds [`FLUSH_BYTES`] or
    /// more (a client that does not read): the handler's queue then fills
    /// and [`Interim::send`](super::Interim::send) says so, instead of
    /// memory growing.
    fn queue_interim(&mut self, request: u32) {
        if self.out.len() >= FLUSH_BYTES {
            return;
        }
        for head in self.interim.take(request) {
            if let Err(e) = self
                .conn
                .send_response(&head, BodySize::Exact(0), &mut self.out)
            {
                tracing::debug!(error = %e, status = %head.status, "informational response not sent");
            }
        }
    }

    /// Writes what is queued without waiting for it to finish.
    fn poll_flush_queued(&mut self, cx: &mut Context<'_>) -> Result<(), CloseReason> {
        if !self.out.is_empty() {
            if let Poll::Ready(Err(_)) = poll_write_buf(&mut self.stream, &mut self.out, cx) {
                return Err(CloseReason::Io);
            }
        }
        Ok(())
    }

    /// Queues a short `text/plain` answer written by the server itself (errors,
    /// timeouts), after which the connection closes.
    fn answer_plain(&mut self, status: StatusCode, text: String) {
        self.shared.stats.responses.record(status);
        if let Some(record) = self.access.as_deref_mut() {
            record.status = status.as_u16();
            record.bytes_sent = text.len() as u64;
        }
        self.conn.close_after_current();
        let mut res = http::Response::new(());
        *res.status_mut() = status;
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        let (parts, ()) = res.into_parts();
        let body = Bytes::from(text);
        let size = BodySize::Exact(body.len() as u64);
        if self
            .conn
            .send_response_dated(&parts, size, Some(&date::now()), &mut self.out)
            .is_ok()
        {
            let _ = self.conn.send_data(body, &mut self.out);
            let _ = self.conn.send_end(None, &mut self.out);
        }
    }
}

/// Polls with a panic caught: `Err(())` if `f` panicked.
#[inline(always)]
fn poll_caught<T>(f: impl FnOnce() -> Poll<T>) -> Poll<Result<T, ()>> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Poll::Ready(t)) => Poll::Ready(Ok(t)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(_) => Poll::Ready(Err(())),
    }
}
