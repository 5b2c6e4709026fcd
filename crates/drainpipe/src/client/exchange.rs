//! One request on a connection: the request is written while the response is
//! read, in one loop, so the server's answer is seen the moment it arrives.
//!
//! ```text
//!  upload:   [await 100] ─▶ body (first 64 KiB held) ─▶ flushing ─▶ written
//!                 │ 100, or the expect timeout             │ write error
//!                 └──────────────▶ body                    └─▶ broken
//!  response: 1xx → the caller's hook (100 also releases the body)
//!            final head mid-upload (RFC 9112 §9.5): an error status (4xx,
//!            5xx) or a closing response is returned at once, the rest of
//!            the body is not sent and the connection, its request
//!            unfinished, is never reused; any other (a 2xx from a server
//!            that answers while it reads) is held until the body is sent
//!  timers:   send (a write making no progress), response (from the request
//!            written to the final head), expect (the wait for 100)
//! ```
//!
//! Request buffering, bounded: without `Expect`, the head and the body's first
//! 64 KiB (all of it, if smaller) go out only once they have arrived, so a body
//! that breaks its framing early (a smuggling attempt, a bad chunk) never
//! reaches the server; a larger body then streams, with at most 64 KiB queued.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{request, Response};
use http_body::Body;
use proto::{Event, Framing};
use tokio::time::Instant;

use super::conn::Conn;
use super::request_body::Kind as BodyKind;
use super::request_body::RequestBody;
use crate::error::{Error, Kind};
use crate::io::{poll_read_buf, poll_write_buf};

/// Most request bytes queued ahead of the socket (and held back before the
/// head goes out).
const HOLD: usize = 64 * 1024;

/// What is called with each informational (1xx) response, as it arrives.
pub(crate) type InformationalFn<'f> = dyn Fn(&Response<()>) + Send + Sync + 'f;

/// The hook of one request, if it has one.
pub(crate) type OnInformational<'a> = Option<&'a InformationalFn<'a>>;

/// The waits one exchange may make.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// From the request written whole to the final response head.
    pub(crate) response: Option<Duration>,
    /// A write of the request making no progress.
    pub(crate) send: Option<Duration>,
    /// The wait for `100 Continue` before the body goes anyway.
    pub(crate) expect: Duration,
}

/// How far the request has been written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upload {
    /// The head is out; the body waits for `100 Continue` until `until`.
    AwaitContinue { until: Instant },
    /// The body is pulled and queued; nothing is written while `held`.
    Body { held: bool },
    /// The body ended; what is queued is being written.
    Flushing,
    /// The whole request is written, since `at`.
    Written { at: Instant },
    /// A write failed at `at`: the server may still answer (a 413 sent
    /// before it stopped reading).
    Broken { at: Instant },
}

/// The state of one exchange's loop.
struct Exchange<'h> {
    upload: Upload,
    /// A final response that came before the body was sent, held until it
    /// is (a response that does not refuse the body).
    held_response: Option<(Response<()>, Framing)>,
    /// Whether an informational response came (then a close is no longer
    /// "before any byte of the response").
    informational: bool,
    source: BodyKind,
    /// Since when the queued request bytes have made no progress.
    stalled_since: Option<Instant>,
    reused: bool,
    on_informational: OnInformational<'h>,
}

impl Conn {
    /// Sends a request and reads the response head, both at once: a final
    /// response that arrives while the body is still going out is returned
    /// at once (the rest of the body is not sent). The body, if any, is read
    /// with [`Conn::poll_body`].
    pub(crate) async fn send(
        &mut self,
        head: &request::Parts,
        body: RequestBody,
        timeouts: Timeouts,
        on_informational: OnInformational<'_>,
    ) -> Result<(Response<()>, Framing), Error> {
        let reused = self.is_reused();
        let framing = self
            .proto
            .send_request(head, body.size(), &mut self.out)
            .map_err(|e| {
                Error::with_source(Kind::Request("the request cannot be sent as asked"), e)
            })?;
        let upload = if framing.has_body() && self.proto.awaits_continue() {
            Upload::AwaitContinue {
                until: Instant::now() + timeouts.expect,
            }
        } else {
            Upload::Body { held: true }
        };
        let mut exchange = Exchange {
            upload,
            held_response: None,
            informational: false,
            source: body.0,
            stalled_since: None,
            reused,
            on_informational,
        };
        poll_fn(|cx| self.poll_exchange(&mut exchange, timeouts, cx)).await
    }

    fn poll_exchange(
        &mut self,
        x: &mut Exchange<'_>,
        timeouts: Timeouts,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(Response<()>, Framing), Error>> {
        loop {
            if x.held_response.is_none() {
                match self.poll_response(x, cx) {
                    Poll::Ready(Ok(res))
                        if x.upload_done() || refuses_body(&res.0, &self.proto) =>
                    {
                        return Poll::Ready(Ok(res));
                    }
                    Poll::Ready(Ok(res)) => x.held_response = Some(res),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            self.poll_upload(x, cx)?;
            if x.upload_done() {
                if let Some(res) = x.held_response.take() {
                    return Poll::Ready(Ok(res));
                }
            }
            // The one timer: the earliest deadline that applies now.
            let now = Instant::now();
            let deadlines = [
                match x.upload {
                    Upload::AwaitContinue { until } => Some((until, Due::Continue)),
                    _ => None,
                },
                x.stalled_since
                    .zip(timeouts.send)
                    .map(|(since, limit)| (since + limit, Due::Send)),
                match x.upload {
                    Upload::Written { at } | Upload::Broken { at } => {
                        timeouts.response.map(|limit| (at + limit, Due::Response))
                    }
                    _ => None,
                },
            ];
            let Some((at, due)) = deadlines.into_iter().flatten().min_by_key(|(at, _)| *at) else {
                return Poll::Pending;
            };
            if at > now {
                // The connection's one timer, kept across its exchanges.
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                if timer.deadline() != at {
                    timer.as_mut().reset(at);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            match due {
                // No `100` in time: the body goes anyway (the server may not
                // know the expectation).
                Due::Continue => x.upload = Upload::Body { held: false },
                Due::Send => {
                    return Poll::Ready(Err(Error::new(Kind::Timeout("request send"))));
                }
                Due::Response => {
                    return Poll::Ready(Err(Error::new(Kind::Timeout("response head"))));
                }
            }
        }
    }

    /// Reads toward the final response head; informational ones go to the
    /// hook (a `100` releases a body waiting for it).
    fn poll_response(
        &mut self,
        x: &mut Exchange<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(Response<()>, Framing), Error>> {
        loop {
            match self.proto.next_event() {
                Ok(Event::Response { head, body }) => {
                    self.round_trip = match x.upload {
                        Upload::Written { at } => Some(at.elapsed()),
                        _ => None,
                    };
                    return Poll::Ready(Ok((head, body)));
                }
                Ok(Event::Informational(res)) => {
                    x.informational = true;
                    if res.status() == http::StatusCode::CONTINUE
                        && matches!(x.upload, Upload::AwaitContinue { .. })
                    {
                        x.upload = Upload::Body { held: false };
                    }
                    if let Some(hook) = x.on_informational {
                        hook(&res);
                    }
                }
                Ok(Event::NeedData) => {
                    match std::task::ready!(poll_read_buf(
                        &mut self.stream,
                        self.proto.recv_buf(),
                        cx
                    )) {
                        Ok(0) => self.proto.receive_eof(),
                        Ok(_) => self.last_read = Some(Instant::now()),
                        Err(e) if self.proto.buffered() == 0 => {
                            return Poll::Ready(Err(x.closed_before_response(Some(e))));
                        }
                        Err(e) if super::conn::is_unproven_eof(&e) => {
                            self.proto.receive_unproven_eof()
                        }
                        Err(e) => return Poll::Ready(Err(Error::io(e))),
                    }
                }
                Ok(Event::Closed | Event::Paused) => {
                    return Poll::Ready(Err(x.closed_before_response(None)))
                }
                Ok(Event::Request { .. } | Event::Data(_) | Event::End { .. }) => {
                    return Poll::Ready(Err(Error::new(Kind::Protocol(
                        proto::ErrorKind::UnexpectedData,
                    ))))
                }
                Err(e) => {
                    return Poll::Ready(Err(Error::with_source(
                        Kind::Protocol(e.kind().clone()),
                        e,
                    )))
                }
            }
        }
    }

    /// Moves the request along as far as it can go without waiting. `Err`:
    /// the request itself is broken (its body failed or lied about its
    /// length); a socket error only marks the upload broken.
    fn poll_upload(&mut self, x: &mut Exchange<'_>, cx: &mut Context<'_>) -> Result<(), Error> {
        loop {
            let writable = match x.upload {
                Upload::Written { .. } | Upload::Broken { .. } => return Ok(()),
                Upload::Body { held } => !held,
                Upload::AwaitContinue { .. } | Upload::Flushing => true,
            };
            if writable && !self.out.is_empty() {
                let queued = self.out.len();
                // Registers for writability when the transport is full; a
                // wake-up means room.
                let wrote = poll_write_buf(&mut self.stream, &mut self.out, cx);
                let progressed = self.out.len() < queued;
                match wrote {
                    Poll::Ready(Ok(())) => x.stalled_since = None,
                    Poll::Pending => {
                        if progressed || x.stalled_since.is_none() {
                            x.stalled_since = Some(Instant::now());
                        }
                        return Ok(());
                    }
                    Poll::Ready(Err(_)) => {
                        x.stalled_since = None;
                        x.upload = Upload::Broken { at: Instant::now() };
                        return Ok(());
                    }
                }
            }
            match x.upload {
                Upload::AwaitContinue { .. } => return Ok(()),
                Upload::Flushing => {
                    x.upload = Upload::Written { at: Instant::now() };
                    return Ok(());
                }
                Upload::Body { held } => {
                    if self.out.len() >= HOLD {
                        if held {
                            x.upload = Upload::Body { held: false };
                            continue;
                        }
                        // Full: wait for the socket (registered above).
                        return Ok(());
                    }
                    match poll_source(&mut x.source, cx) {
                        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                            Ok(data) => self.data(data)?,
                            // Request trailers are not forwarded (they are
                            // optional, RFC 9110 §6.5, and would need every
                            // field checked against what a trailer may carry).
                            Err(_trailers) => {
                                self.end(None)?;
                                x.upload = Upload::Flushing;
                            }
                        },
                        Poll::Ready(None) => {
                            self.end(None)?;
                            x.upload = Upload::Flushing;
                        }
                        Poll::Ready(Some(Err(e))) => {
                            return Err(Error::with_source(Kind::UserBody, e));
                        }
                        Poll::Pending => return Ok(()),
                    }
                }
                Upload::Written { .. } | Upload::Broken { .. } => return Ok(()),
            }
        }
    }

    fn end(&mut self, trailers: Option<&http::HeaderMap>) -> Result<(), Error> {
        self.proto
            .send_end(trailers, &mut self.out)
            .map_err(|e| Error::with_source(Kind::UserBody, e))
    }
}

/// Which deadline the timer runs for.
#[derive(Debug, Clone, Copy)]
enum Due {
    Continue,
    Send,
    Response,
}

/// The next frame of a request body.
fn poll_source(
    source: &mut BodyKind,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, crate::error::BoxError>>> {
    match source {
        BodyKind::Empty => Poll::Ready(None),
        BodyKind::Full(_) => {
            let BodyKind::Full(bytes) = std::mem::replace(source, BodyKind::Empty) else {
                unreachable!()
            };
            Poll::Ready(Some(Ok(http_body::Frame::data(bytes))))
        }
        BodyKind::Stream(stream) => Pin::new(stream).poll_frame(cx),
    }
}

/// Whether an early final response means the server does not want the rest
/// of the body (RFC 9112 §9.5): an error status, or the connection closes
/// after it.
fn refuses_body(head: &Response<()>, proto: &proto::Connection) -> bool {
    head.status().as_u16() >= 400 || !proto.keep_alive()
}

impl Exchange<'_> {
    /// Whether the request went out whole, or can go no further.
    fn upload_done(&self) -> bool {
        matches!(self.upload, Upload::Written { .. } | Upload::Broken { .. })
    }

    /// The connection ended before the final response: whether the request
    /// may be retried depends on how far it got. After an informational
    /// response the server had answered something: not "before any byte".
    fn closed_before_response(&self, cause: Option<std::io::Error>) -> Error {
        if self.informational {
            let kind = Kind::Truncated {
                expected: None,
                received: 0,
            };
            return match cause {
                Some(e) => Error::with_source(kind, e),
                None => Error::new(kind),
            };
        }
        let kind = Kind::ClosedBeforeResponse {
            reused: self.reused,
            request_written: matches!(self.upload, Upload::Written { .. }),
        };
        match cause {
            Some(e) => Error::with_source(kind, e),
            None => Error::new(kind),
        }
    }
}
