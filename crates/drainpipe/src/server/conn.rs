//! One connection's task: read into the protocol core, hand requests to the
//! handler one at a time, queue responses and write them out coalesced.
//!
//! The loop, in order:
//! 1. pull events from `proto::Connection`;
//! 2. a request → the exchange dispatcher (`conn/exchange.rs`): call the
//!    handler while feeding it the request body on demand, then stream the
//!    response into the outgoing queue;
//! 3. need-data → write what is queued (pipelined responses leave together, at
//!    most `max_batch` per write), then read with the timeout that applies:
//!    head (from the first byte; 408), idle (silent close), body;
//! 4. paused or closed → if the core says so, close gracefully.
//!
//! An idle connection holds no buffer: both are given back before it waits.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, StatusCode};
use http_body::Body;
use proto::{BodySize, Connection, Event, Role, WriteBuf};
use tokio::time::Instant;

use super::clock::Moment;
use super::drain::{spread_delay, CloseReason, InState, Phase, Shared};
use super::interim;
use super::park::{Parker, Resume, Writes};
use crate::access;
use crate::body::Incoming;
use crate::error::BoxError;
use crate::io::{poll_write_buf, pool, try_write_before_close, try_write_buf, write_buf};
use crate::sock;
use crate::transport::{Parking, Transport};
use crate::upgrade::{Pending, Upgraded};
use crate::wire::poll_read;

mod exchange;
mod timer;

use timer::Timer;

/// What a connection waits for; [`Driver::deadline`] says for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// A request head (the first, or one begun).
    Head,
    /// The next request, between requests.
    Idle,
    /// More of a request body.
    Body,
    /// Room in the socket for queued output.
    Write,
}

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
    // Parked only with a parker, and on a transport that can leave the
    // reactor.
    let parking = parker.and(T::parking());
    // The task hears of a cut (and, in `read_more`, of a drain or a
    // reclaim) through its slot's waker; see slots.rs.
    let signal = resume.slot.signal();
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
        timer: Timer::new(head_deadline),
        can_park: parking.is_some(),
        moment: Moment::default(),
        interim: Arc::default(),
        access: None,
    };
    let stop = tokio::select! {
        stop = driver.serve() => stop,
        () = poll_fn(|cx| {
            signal.register(cx.waker());
            if shared.phase() == Phase::Cut {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }) => Stop::Close(CloseReason::Cut),
    };
    // A request cut in the middle (drain timeout) is logged too, with why.
    if let Stop::Close(reason) = stop {
        if driver.access.is_some() {
            driver.log_access(Some(reason));
        }
    }
    let reason = match stop {
        Stop::Close(reason) => reason,
        Stop::Upgrade(read_buf) => {
            shared.closing(CloseReason::Upgraded, driver.conn.requests_started());
            if driver.resume.writes != Writes::NoDelay {
                // A tunnel's small writes must not wait on Nagle.
                driver.stream.set_nodelay();
            }
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
        driver.before_write();
        driver.count_write();
        let (deadline, _) = driver.deadline(Wait::Write, Instant::now());
        let _ =
            tokio::time::timeout_at(deadline, write_buf(&mut driver.stream, &mut driver.out)).await;
    }
    if driver.conn.peer_sent_last() {
        // The client announced its last request and sent nothing after it:
        // a plain close meets no unread input, so no reset can hit the
        // response and there is nothing to linger for.
        sock::close_plainly(driver.stream);
        return Exit::Closed(reason);
    }
    let _lingering = InState::enter(&shared.stats, &shared.stats.lingering);
    sock::graceful_close(driver.stream, shared.config.linger).await;
    Exit::Closed(reason)
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
    timer: Timer,
    /// The clock reading and `Date` shared by the work done since the task
    /// last waited (see `clock.rs`).
    moment: Moment,
    /// Informational responses handlers ask for, written ahead of their
    /// final ones.
    interim: Arc<interim::Queue>,
    /// The access-log record of the request being handled (when logging).
    access: Option<Box<access::Record>>,
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
                    let stats = &self.shared.stats;
                    stats.add(&stats.requests, 1);
                    self.head_deadline = None;
                    let exchanged = {
                        let _writing = InState::enter(stats, &stats.writing);
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
                    if self.conn.must_close() {
                        // The last response; what the client still sends (an
                        // unread body) is discarded by the graceful close.
                        return self.flush_last().await;
                    }
                    if let Err(reason) = self.flush().await {
                        return reason.into();
                    }
                    if let Err(stop) = self.read_more().await {
                        return stop;
                    }
                }
                Ok(Event::Paused | Event::Closed) => return self.flush_last().await,
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
        if record.request_time.is_zero() {
            // Ended before its response was complete: by the wall clock it
            // arrived by (the exchange's own clock is gone with it).
            record.request_time = record.time.elapsed().unwrap_or_default();
        }
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
        // The last reading (the end of the latest response, if one was made
        // since the task woke) for every deadline this wait computes.
        let now = self.moment.now();
        self.moment.forget();
        let idle = self.conn.is_idle();
        let wait = if idle && self.conn.requests_started() > 0 {
            Wait::Idle
        } else if self.conn.is_receiving_body() {
            Wait::Body
        } else {
            Wait::Head
        };
        let (deadline, on_expiry) = self.deadline(wait, now);
        let config = &self.shared.config;
        let mut park_at = match config.park_after {
            // Nothing is parked once a drain began (a connection still open
            // then is waited for in its task).
            Some(after) if idle && self.can_park && self.shared.phase() < Phase::Draining => {
                Some(now + after).filter(|at| *at < deadline)
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
            self.resume.slot.idle();
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
        let stats = &self.shared.stats;
        let state = InState::enter(stats, if idle { &stats.idle } else { &stats.reading });
        let spread = config.drain_spread;
        let id = self.resume.id;
        let shared = self.shared;
        let Driver {
            stream,
            conn,
            timer,
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
            // One timer per connection, moved rather than re-created, and
            // only when its deadline comes earlier (see timer.rs).
            timer.set(wake);
            // A drain or a reclaim wakes the task through its slot; the
            // signal resolves when either concerns this wait.
            let wants_drain = can_drain && drain_at.is_none();
            let signalled = poll_fn(|cx| {
                resume.slot.register(cx.waker());
                let drain = wants_drain && shared.phase() >= Phase::Draining;
                if drain || (can_reclaim && resume.slot.is_reclaimed()) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
            tokio::select! {
                biased;
                // The drivers' one read, an EOF (proven or not) fed to the
                // core. `wire::poll_read`, not `poll_step`: the core already
                // said it needs data, and `poll_step` would ask it again on
                // every wake of this select.
                read = poll_fn(|cx| poll_read(stream, conn, cx)) => break Woke::Read(read),
                () = &mut *timer => {
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
                        if shared.phase() >= Phase::Draining {
                            park_at = None;
                            continue;
                        }
                        break Woke::Park;
                    }
                    break Woke::Expired;
                }
                () = signalled, if wants_drain || can_reclaim => {
                    if !(can_reclaim && resume.slot.is_reclaimed()) {
                        drain_at = Some(Instant::now() + spread_delay(id, spread));
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
            Woke::Read(Ok(0)) => {}
            Woke::Drain => self.conn.close_after_current(),
            Woke::Read(Ok(n)) => {
                let stats = &self.shared.stats;
                stats.add(&stats.bytes_in, n as u64);
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

    /// The one place that decides how long a wait may last: the deadline for
    /// `wait` starting `now`, and the close reason when it passes.
    ///
    /// - head: from the connection's start for its first request (no reset
    ///   by a trickle of bytes), else from the first wait that found the
    ///   next head incomplete (a head that arrives whole never sets one);
    /// - idle: between requests, from when the last response was queued;
    /// - body: from each wait for more request body (progress resets it);
    /// - write: from each write that found the socket full.
    fn deadline(&mut self, wait: Wait, now: Instant) -> (Instant, CloseReason) {
        let config = &self.shared.config;
        match wait {
            Wait::Head => (
                *self.head_deadline.get_or_insert(now + config.head_timeout),
                CloseReason::HeadTimeout,
            ),
            Wait::Idle => (now + config.idle_timeout, CloseReason::IdleTimeout),
            Wait::Body => (now + config.body_timeout, CloseReason::BodyTimeout),
            Wait::Write => (now + config.write_timeout, CloseReason::WriteTimeout),
        }
    }

    /// Every write goes through here first: Nagle goes off before the
    /// second (see `Writes`), whichever path writes it (a response, a 1xx
    /// ahead of one, body data while the handler works, the last answer
    /// before a close). A small segment written while an earlier one is
    /// unacknowledged would otherwise wait for the client's delayed ACK.
    fn before_write(&mut self) {
        match self.resume.writes {
            Writes::None => self.resume.writes = Writes::One,
            Writes::One => {
                self.stream.set_nodelay();
                self.resume.writes = Writes::NoDelay;
            }
            Writes::NoDelay => {}
        }
    }

    /// Writes out everything queued, within the write timeout.
    async fn flush(&mut self) -> Result<(), CloseReason> {
        self.write_queued(try_write_buf).await
    }

    /// Writes out the connection's last bytes and says why it closes. When
    /// the client announced its last request, the plain close follows at
    /// once (`run`): the bytes are held for it and leave with its FIN.
    async fn flush_last(&mut self) -> Stop {
        let flushed = if self.conn.peer_sent_last() {
            self.write_queued(try_write_before_close).await
        } else {
            self.flush().await
        };
        match flushed {
            Ok(()) => self.close_reason().into(),
            Err(reason) => reason.into(),
        }
    }

    /// Writes out everything queued within the write timeout, trying first
    /// with `first_try` ([`try_write_buf`] or [`try_write_before_close`]).
    async fn write_queued(
        &mut self,
        first_try: impl Fn(&mut T, &mut WriteBuf) -> std::io::Result<bool>,
    ) -> Result<(), CloseReason> {
        self.queued = 0;
        if self.out.is_empty() {
            return Ok(());
        }
        self.before_write();
        self.count_write();
        // Most writes complete at once: a timer only when the socket is full.
        match first_try(&mut self.stream, &mut self.out) {
            Ok(true) => return Ok(()),
            Ok(false) => self.moment.forget(),
            Err(_) => return Err(CloseReason::Io),
        }
        let now = self.moment.now();
        let (deadline, _) = self.deadline(Wait::Write, now);
        match tokio::time::timeout_at(deadline, write_buf(&mut self.stream, &mut self.out)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(CloseReason::Io),
            Err(_) => Err(CloseReason::WriteTimeout),
        }
    }

    /// Counts a write of everything queued in the server's statistics.
    fn count_write(&self) {
        let stats = &self.shared.stats;
        stats.add(&stats.writes, 1);
        stats.add(&stats.bytes_out, self.out.len() as u64);
    }

    /// Writes what is queued without waiting for it to finish.
    fn poll_flush_queued(&mut self, cx: &mut Context<'_>) -> Result<(), CloseReason> {
        if !self.out.is_empty() {
            self.before_write();
            if let Poll::Ready(Err(_)) = poll_write_buf(&mut self.stream, &mut self.out, cx) {
                return Err(CloseReason::Io);
            }
        }
        Ok(())
    }

    /// Queues a short `text/plain` answer written by the server itself (errors,
    /// timeouts), after which the connection closes.
    #[cold]
    #[inline(never)]
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
            .send_response_dated(&parts, size, Some(self.moment.date()), &mut self.out)
            .is_ok()
        {
            let _ = self.conn.send_data(body, &mut self.out);
            let _ = self.conn.send_end(None, &mut self.out);
        }
    }
}
