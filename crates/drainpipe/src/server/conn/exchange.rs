//! The exchange dispatcher: one request from the handler's call to its
//! response in the outgoing queue. The connection loop (`conn.rs`) hands it
//! each request head; here the service is polled ready and called, the
//! request body is pumped to it on demand (`100 Continue` on its first ask),
//! a panic becomes a 500, queued 1xx go out before the final response, and
//! the response is streamed into the protocol core, flushing as it grows.

use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::task::{Context, Poll};

use bytes::Buf;
use http::{Request, StatusCode};
use http_body::Body;
use proto::{BodySize, Event, Framing};
use tokio::time::Instant;

use super::{Driver, Wait, FLUSH_BYTES};
use crate::access;
use crate::body::{Demand, Incoming, Sender};
use crate::error::{BodyError, BoxError, Error, Kind};
use crate::io::pool;
use crate::server::drain::CloseReason;
use crate::server::info::{Abort, ConnInfo};
use crate::transport::Transport;
use crate::upgrade::OnUpgrade;
use crate::wire::{poll_step, Step, StepError};

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

/// How an exchange failed: each is logged and, while the response has not
/// begun, answered; the connection then closes.
enum Failure {
    /// The service was not ready (503).
    NotReady(BoxError),
    /// The handler returned an error (500).
    Handler(BoxError),
    /// The handler panicked (500).
    Panicked,
    /// The request body broke the protocol (its status, to the client).
    RequestBody(proto::Error),
    /// The core refused the handler's response head (500).
    HeadRefused(proto::Error),
    /// The response body failed: the close makes the peer see a truncated
    /// body, never a complete one.
    BodyFailed(BoxError),
    /// The core refused a piece of the response body.
    BodyRefused(proto::Error),
    /// The response body ended short of its length.
    BodyShort(proto::Error),
}

impl<'a, T, S, B> Driver<'a, T, S>
where
    T: Transport,
    S: tower_service::Service<Request<Incoming>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    /// One request: the handler is called and driven while its body is fed on
    /// demand, then its response is streamed into the outgoing queue.
    // Not an `async fn`: its arguments would be copied once more, from the
    // future's captures to its locals, when it starts.
    #[allow(clippy::manual_async_fn)]
    pub(super) fn exchange(
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
            // When this request's handling began: the wake-up that read it, or
            // the end of the response before it in the same turn.
            let started = self.moment.now();
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
                    self.moment.forget();
                }
                ready
            })
            .await
            {
                return Err(self.fail(Failure::NotReady(e.into())));
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
                self.moment.forget();
                Poll::Pending
            })
            .await?;

            if caught.is_err() {
                outcome = None;
            }
            self.queue_interim(info.request);
            let (parts, body) = match outcome {
                Some(Ok(res)) => res.into_parts(),
                Some(Err(e)) => return Err(self.fail(Failure::Handler(e))),
                // A ready call always leaves its outcome: none, it panicked.
                None => return Err(self.fail(Failure::Panicked)),
            };

            if let Some(e) = self.body_error.take() {
                return Err(self.fail(Failure::RequestBody(e)));
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
            let date = self.moment.date();
            if self.out.is_empty() && self.out.spare_capacity() == 0 {
                self.out.give_storage(pool::take());
            }
            let framing =
                match self
                    .conn
                    .send_response_dated(&parts, size, Some(date), &mut self.out)
                {
                    Ok(f) => f,
                    Err(e) => return Err(self.fail(Failure::HeadRefused(e))),
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
                                self.moment.forget();
                                Poll::Pending
                            }
                        }
                    })
                    .await?;
                    match frame {
                        None => break,
                        Some(Err(e)) => return Err(self.fail(Failure::BodyFailed(e))),
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(mut data) => {
                                let bytes = data.copy_to_bytes(data.remaining());
                                let before = self.out.len();
                                if let Err(e) = self.conn.send_data(bytes, &mut self.out) {
                                    return Err(self.fail(Failure::BodyRefused(e)));
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
                return Err(self.fail(Failure::BodyShort(e)));
            }
            sent += self.out.len().saturating_sub(before);
            self.queued += 1;
            let stats = &self.shared.stats;
            let took = self.moment.read().saturating_duration_since(started);
            stats.record_response(took, status);
            if let Some(record) = self.access.as_deref_mut() {
                // The monotonic clock: a wall-clock step does not show.
                record.request_time = took;
                record.status = status.as_u16();
                record.bytes_sent = sent as u64;
                record.bytes_received = pump.as_ref().map_or(0, |p| p.received);
                record.upstream = parts.extensions.get::<access::Upstream>().cloned();
            }
            Ok(())
        }
    }

    /// Logs `failure`, queues its answer when one is still possible, and
    /// says why the connection closes. Kept out of line: the exchange's hot
    /// path stays small (its code shares the instruction cache with the
    /// kernel's on every turn).
    #[cold]
    #[inline(never)]
    fn fail(&mut self, failure: Failure) -> CloseReason {
        let internal = || {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error\n",
            )
        };
        let answer = match &failure {
            Failure::NotReady(e) => {
                tracing::error!(error = %e, "service not ready");
                Some((StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable\n"))
            }
            Failure::Handler(e) => {
                tracing::error!(error = %e, "handler failed");
                Some(internal())
            }
            Failure::Panicked => {
                tracing::error!("handler panicked");
                Some(internal())
            }
            Failure::RequestBody(e) => {
                if e.side() == proto::Side::Remote {
                    let text = format!("{} {}\n", e.status(), e.kind());
                    self.answer_plain(e.status(), text);
                }
                return CloseReason::ProtocolError;
            }
            Failure::HeadRefused(e) => {
                tracing::error!(error = %e, "handler response refused");
                Some(internal())
            }
            Failure::BodyFailed(e) => {
                tracing::warn!(error = %e, "response body failed");
                None
            }
            Failure::BodyRefused(e) => {
                tracing::error!(error = %e, "response body refused");
                None
            }
            Failure::BodyShort(e) => {
                tracing::error!(error = %e, "response body shorter than its length");
                None
            }
        };
        if let Some((status, text)) = answer {
            self.answer_plain(status, text.into());
        }
        CloseReason::HandlerError
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
            match poll_step(&mut self.stream, &mut self.conn, cx) {
                Poll::Ready(Ok(Step::Event(Event::Data(data)))) => {
                    pump.received += data.len() as u64;
                    tx.data(data);
                    pump.waiting = false;
                }
                Poll::Ready(Ok(Step::Event(Event::End { trailers }))) => {
                    tx.end(trailers);
                    pump.tx = None;
                }
                // The EOF is the core's now: its next event says what it means.
                Poll::Ready(Ok(Step::Read(0))) => {}
                Poll::Ready(Ok(Step::Read(n))) => {
                    let stats = &self.shared.stats;
                    stats.add(&stats.bytes_in, n as u64);
                    pump.waiting = false;
                }
                Poll::Ready(Ok(Step::Event(_))) => {
                    tx.error(BodyError::connection_lost());
                    pump.tx = None;
                }
                Poll::Ready(Err(StepError::Io(e))) => {
                    tx.error(BodyError::io(e));
                    pump.tx = None;
                    return Err(CloseReason::Io);
                }
                Poll::Ready(Err(StepError::Protocol(e))) => {
                    // The handler learns why its body failed; the client gets
                    // the error's status and the connection closes.
                    tx.error(BodyError::proto(e.clone()));
                    self.body_error = Some(e);
                    pump.tx = None;
                }
                // Only a read waits.
                Poll::Pending => {
                    if !pump.waiting {
                        let (deadline, _) = self.deadline(Wait::Body, Instant::now());
                        self.timer.set(deadline);
                        pump.waiting = true;
                    }
                    if self.timer.poll_expired(cx).is_ready() {
                        tx.error(Error::new(Kind::Timeout("request body read")));
                        pump.tx = None;
                        return Err(CloseReason::BodyTimeout);
                    }
                    return Ok(());
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
    #[inline(always)]
    pub(super) fn queue_interim(&mut self, request: u32) {
        if self.interim.is_pending() && self.out.len() < FLUSH_BYTES {
            self.queue_interim_now(request);
        }
    }

    /// The rest of [`Self::queue_interim`], when something is queued (rarely).
    #[cold]
    fn queue_interim_now(&mut self, request: u32) {
        for head in self.interim.take(request) {
            if let Err(e) = self
                .conn
                .send_response(&head, BodySize::Exact(0), &mut self.out)
            {
                tracing::debug!(error = %e, status = %head.status, "informational response not sent");
            }
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
