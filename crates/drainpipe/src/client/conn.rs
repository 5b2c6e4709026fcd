//! One connection to an origin: the socket, its protocol state, and what the
//! pool needs to know about it (was it reused, did response bytes arrive, how
//! long may it live).

use std::future::poll_fn;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::{request, Response};
use proto::{Event, Framing, Role, WriteBuf};
use tokio::time::Instant;

use super::request_body::{Kind as BodyKind, RequestBody};
use crate::error::{Error, Kind};
use crate::io::write_buf;
use crate::transport::Transport;
use crate::upgrade::Upgraded;
use crate::wire::{poll_step, Step, StepError};

/// An open connection.
pub(crate) struct Conn {
    pub(super) stream: Box<dyn Transport>,
    pub(super) proto: proto::Connection,
    pub(super) out: WriteBuf,
    /// When it was opened (for the max lifetime).
    pub(crate) created: Instant,
    /// When the last response was read whole (the server's
    /// `Keep-Alive: timeout` runs from there).
    response_ended: Option<Instant>,
    /// The last exchange's round trip: from the request written whole to
    /// the first byte of its final response head.
    pub(super) round_trip: Option<Duration>,
    /// When bytes were last read from the socket.
    pub(super) last_read: Option<Instant>,
    /// The timer of an exchange's waits, made at the first wait and reset
    /// for each later one.
    pub(super) timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// How long it took to open (for the access log).
    pub(crate) connect_time: Option<Duration>,
}

/// How far a request got before it failed, for the error it becomes.
#[derive(Debug, Clone, Copy)]
struct Progress {
    reused: bool,
    request_written: bool,
}

impl Conn {
    pub(crate) fn new(stream: Box<dyn Transport>, config: std::sync::Arc<proto::Config>) -> Conn {
        Conn {
            stream,
            proto: proto::Connection::new(Role::Client, config),
            out: WriteBuf::new(),
            created: Instant::now(),
            response_ended: None,
            round_trip: None,
            last_read: None,
            timer: None,
            connect_time: None,
        }
    }

    /// Whether the connection carried a response before (taken from the pool).
    pub(crate) fn is_reused(&self) -> bool {
        // Asked before a request goes out: every request started on it was
        // answered (a connection is pooled only when nothing is in flight).
        self.proto.requests_started() > 0
    }

    /// Queues body data of the request being sent.
    pub(super) fn data(&mut self, data: Bytes) -> Result<(), Error> {
        self.proto
            .send_data(data, &mut self.out)
            .map_err(|e| Error::with_source(Kind::UserBody, e))
    }

    /// The next protocol event, through the drivers' one read loop
    /// ([`poll_step`]): reads for as long as the core needs data, an EOF
    /// fed to the core, which decides what it means. The time of each read
    /// is kept: the server's idle clock starts when it sent the bytes.
    pub(super) fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Result<Event, ReadError>> {
        loop {
            match std::task::ready!(poll_step(&mut self.stream, &mut self.proto, cx)) {
                Ok(Step::Event(event)) => return Poll::Ready(Ok(event)),
                Ok(Step::Read(0)) => {}
                Ok(Step::Read(_)) => self.last_read = Some(Instant::now()),
                Err(StepError::Io(error)) => {
                    return Poll::Ready(Err(ReadError::Io {
                        nothing_read: self.proto.buffered() == 0,
                        error,
                    }))
                }
                Err(StepError::Protocol(e)) => return Poll::Ready(Err(ReadError::Protocol(e))),
            }
        }
    }

    /// Reads until the (final) response head.
    async fn read_head(&mut self, progress: Progress) -> Result<(Response<()>, Framing), Error> {
        loop {
            match poll_fn(|cx| self.poll_event(cx)).await {
                Ok(Event::Response { head, body }) => return Ok((head, body)),
                Ok(Event::Informational(_)) => continue,
                Ok(Event::Closed | Event::Paused) => {
                    return Err(closed_before_response(progress, None))
                }
                Ok(_) => return Err(Error::new(Kind::Protocol(proto::ErrorKind::UnexpectedData))),
                Err(ReadError::Io {
                    nothing_read: true,
                    error,
                }) => return Err(closed_before_response(progress, Some(error))),
                Err(e) => return Err(e.into_error()),
            }
        }
    }

    /// Reads the next piece of the response body; `Ok(None)` after its end.
    pub(crate) fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<BodyFrame>, Error>> {
        Poll::Ready(match std::task::ready!(self.poll_event(cx)) {
            Ok(Event::Data(data)) => Ok(Some(BodyFrame::Data(data))),
            Ok(Event::End { trailers }) => {
                // The server's idle clock started when it sent these
                // bytes, not when the reader got round to them.
                self.response_ended = Some(self.last_read.unwrap_or_else(Instant::now));
                Ok(Some(BodyFrame::End(trailers)))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(e.into_error()),
        })
    }

    /// Reads the whole body of the current response into memory.
    pub(crate) async fn read_body(&mut self) -> Result<Bytes, Error> {
        let mut whole = bytes::BytesMut::new();
        loop {
            match poll_fn(|cx| self.poll_body(cx)).await? {
                Some(BodyFrame::Data(d)) => whole.extend_from_slice(&d),
                Some(BodyFrame::End(_)) | None => return Ok(whole.freeze()),
            }
        }
    }

    /// Whether the protocol switched (a `101`, or a 2xx to CONNECT).
    pub(crate) fn is_switched(&self) -> bool {
        self.proto.is_switched()
    }

    /// The raw connection after a protocol switch.
    pub(crate) fn into_upgraded(mut self: Box<Self>) -> Upgraded {
        let read_buf = self.proto.take_switched().unwrap_or_default();
        let conn = *self;
        Upgraded {
            stream: conn.stream,
            read_buf,
        }
    }

    /// Whether the connection may carry another request: the server did not
    /// close it, nothing is in flight, and it has requests left
    /// ([`proto::Connection::is_reusable`]).
    pub(crate) fn is_reusable(&self) -> bool {
        // Bytes of the last request still queued (an early answer came
        // while they were going out): the server may never read them.
        self.proto.is_reusable() && self.out.is_empty()
    }

    /// When the connection last went idle: the end of its last response.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        self.response_ended
    }

    /// The idle timeout the server announced on its last response
    /// (`Keep-Alive: timeout=T`); `None` when that response gave none, even
    /// if an earlier one did.
    pub(crate) fn announced_idle_timeout(&self) -> Option<Duration> {
        self.proto
            .peer_keep_alive()
            .timeout_secs
            .map(|t| Duration::from_secs(t.into()))
    }

    /// Ready once the socket is readable (the server closed it or sent
    /// something); registers `cx` to be woken when it becomes so.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<()> {
        Transport::poll_read_ready(&self.stream, cx).map(|_| ())
    }

    /// Whether the peer closed (or sent something unasked) while the connection
    /// sat in the pool: a non-blocking peek, so a connection the server closed
    /// is never handed out.
    ///
    /// The peek runs only when the reactor has seen the socket become readable
    /// since the response was read (a FIN or stray bytes make it readable), so a
    /// quiet pooled connection costs no system call to check.
    pub(crate) fn is_closed_by_peer(&self) -> bool {
        self.stream.peer_closed_or_sent()
    }

    /// Pipelining: writes every request head of `requests` (bodiless or in
    /// memory) in one write.
    pub(crate) async fn send_all<'a>(
        &mut self,
        requests: impl IntoIterator<Item = (&'a request::Parts, &'a RequestBody)>,
    ) -> Result<(), Error> {
        for (head, body) in requests {
            let body = body.try_clone().expect("pipelined bodies are replayable");
            self.proto
                .send_request(head, body.size(), &mut self.out)
                .map_err(|e| {
                    Error::with_source(Kind::Request("the request cannot be sent as asked"), e)
                })?;
            if let BodyKind::Full(b) = body.0 {
                self.data(b)?;
            }
            self.proto
                .send_end(None, &mut self.out)
                .map_err(|e| Error::with_source(Kind::UserBody, e))?;
        }
        write_buf(&mut self.stream, &mut self.out)
            .await
            .map_err(Error::io)
    }

    /// Pipelining: reads the next response whole. `Ok(None)`: the connection
    /// closed before any byte of it.
    pub(crate) async fn read_whole(&mut self) -> Result<Option<Response<Bytes>>, Error> {
        let progress = Progress {
            reused: true,
            request_written: true,
        };
        let head = match self.read_head(progress).await {
            Ok((head, _)) => head,
            Err(e) if e.is_closed_before_response() => return Ok(None),
            Err(e) => return Err(e),
        };
        let body = self.read_body().await?;
        Ok(Some(head.map(|()| body)))
    }
}

/// Why [`Conn::poll_event`] has no event.
pub(super) enum ReadError {
    /// The transport failed; `nothing_read`: no byte of the next message had
    /// arrived.
    Io {
        nothing_read: bool,
        error: std::io::Error,
    },
    /// The server broke the protocol.
    Protocol(proto::Error),
}

impl ReadError {
    /// The client's error for it.
    pub(super) fn into_error(self) -> Error {
        match self {
            ReadError::Io { error, .. } => Error::io(error),
            ReadError::Protocol(e) => Error::proto(e),
        }
    }
}

fn closed_before_response(progress: Progress, cause: Option<std::io::Error>) -> Error {
    let kind = Kind::ClosedBeforeResponse {
        reused: progress.reused,
        request_written: progress.request_written,
    };
    match cause {
        Some(e) => Error::with_source(kind, e),
        None => Error::new(kind),
    }
}

/// What reading a response body produced.
pub(crate) enum BodyFrame {
    Data(Bytes),
    End(Option<HeaderMap>),
}
