//! One connection to an origin: the socket, its protocol state, and what the
//! pool needs to know about it (was it reused, did response bytes arrive, how
//! long may it live).

use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{request, Response};
use http_body::Body;
use proto::{Event, Framing, Role, WriteBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::{BodyFrame, Kind as BodyKind, RequestBody};
use crate::error::{Error, Kind};
use crate::io::{poll_read_buf, read_buf, write_buf};
use crate::upgrade::Upgraded;

/// An open connection.
pub(crate) struct Conn {
    stream: TcpStream,
    proto: proto::Connection,
    out: WriteBuf,
    /// When it was opened (for the max lifetime).
    pub(crate) created: Instant,
    /// When the last response was read whole (the server's
    /// `Keep-Alive: timeout` runs from there).
    response_ended: Option<Instant>,
}

/// How far a request got before it failed, for the error it becomes.
#[derive(Debug, Clone, Copy)]
struct Progress {
    reused: bool,
    request_written: bool,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, config: std::sync::Arc<proto::Config>) -> Conn {
        Conn {
            stream,
            proto: proto::Connection::new(Role::Client, config),
            out: WriteBuf::new(),
            created: Instant::now(),
            response_ended: None,
        }
    }

    /// Whether the connection carried a response before (taken from the pool).
    pub(crate) fn is_reused(&self) -> bool {
        // Asked before a request goes out: every request started on it was
        // answered (a connection is pooled only when nothing is in flight).
        self.proto.requests_started() > 0
    }

    /// Sends a request and reads the response head. The body, if any, is read
    /// with [`Conn::poll_body`].
    pub(crate) async fn send(
        &mut self,
        head: &request::Parts,
        body: RequestBody,
        response_timeout: Option<Duration>,
    ) -> Result<(Response<()>, Framing), Error> {
        let mut progress = Progress {
            reused: self.is_reused(),
            request_written: false,
        };
        let framing = self
            .proto
            .send_request(head, body.size(), &mut self.out)
            .map_err(|e| {
                Error::with_source(Kind::Request("the request cannot be sent as asked"), e)
            })?;
        let written = self.write_body(framing, body).await;
        match written {
            Ok(()) => progress.request_written = true,
            // A server may answer early and close (a 413 before the body was
            // read): look for that answer before calling the request failed.
            Err(WriteFailure::Io) => {}
            Err(WriteFailure::Fatal(e)) => return Err(e),
        }
        let read = self.read_head(progress);
        match response_timeout {
            Some(t) => tokio::time::timeout(t, read)
                .await
                .unwrap_or_else(|_| Err(Error::new(Kind::Timeout("response head")))),
            None => read.await,
        }
    }

    /// Writes the queued head and the body, flushing as the body streams.
    async fn write_body(
        &mut self,
        framing: Framing,
        body: RequestBody,
    ) -> Result<(), WriteFailure> {
        match body.0 {
            BodyKind::Empty => {}
            BodyKind::Full(bytes) => self.data(bytes)?,
            BodyKind::Stream(mut stream) => {
                // Request buffering, bounded: the head and the body's first
                // 64 KiB (all of it, if smaller) go out only once they have
                // arrived, so a body that breaks its framing early (a smuggling
                // attempt, a bad chunk) never reaches the upstream; a larger
                // body then streams through in 64 KiB steps.
                if framing != Framing::None {
                    while let Some(frame) =
                        poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_frame(cx)).await
                    {
                        let frame = frame.map_err(|e| {
                            WriteFailure::Fatal(Error::with_source(Kind::UserBody, e))
                        })?;
                        if let Ok(data) = frame.into_data() {
                            self.data(data)?;
                            if self.out.len() >= 64 * 1024 {
                                write_buf(&self.stream, &mut self.out)
                                    .await
                                    .map_err(|_| WriteFailure::Io)?;
                            }
                        }
                    }
                }
            }
        }
        self.proto
            .send_end(None, &mut self.out)
            .map_err(|e| WriteFailure::Fatal(Error::with_source(Kind::UserBody, e)))?;
        write_buf(&self.stream, &mut self.out)
            .await
            .map_err(|_| WriteFailure::Io)
    }

    fn data(&mut self, data: Bytes) -> Result<(), WriteFailure> {
        self.proto
            .send_data(data, &mut self.out)
            .map_err(|e| WriteFailure::Fatal(Error::with_source(Kind::UserBody, e)))
    }

    /// Reads until the (final) response head.
    async fn read_head(&mut self, progress: Progress) -> Result<(Response<()>, Framing), Error> {
        loop {
            match self.proto.next_event() {
                Ok(Event::Response { head, body }) => return Ok((head, body)),
                Ok(Event::Informational(_)) => continue,
                Ok(Event::NeedData) => {
                    match read_buf(&mut self.stream, self.proto.recv_buf()).await {
                        Ok(0) => self.proto.receive_eof(),
                        Ok(_) => {}
                        Err(e) if self.proto.buffered() == 0 => {
                            return Err(closed_before_response(progress, Some(e)));
                        }
                        Err(e) => return Err(Error::io(e)),
                    }
                }
                Ok(Event::Closed | Event::Paused) => {
                    return Err(closed_before_response(progress, None))
                }
                Ok(Event::Request { .. } | Event::Data(_) | Event::End { .. }) => {
                    return Err(Error::new(Kind::Protocol(proto::ErrorKind::UnexpectedData)))
                }
                Err(e) => return Err(Error::with_source(Kind::Protocol(e.kind().clone()), e)),
            }
        }
    }

    /// Reads the next piece of the response body; `Ok(None)` after its end.
    pub(crate) fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<BodyFrame>, Error>> {
        loop {
            match self.proto.next_event() {
                Ok(Event::Data(data)) => return Poll::Ready(Ok(Some(BodyFrame::Data(data)))),
                Ok(Event::End { trailers }) => {
                    self.response_ended = Some(Instant::now());
                    return Poll::Ready(Ok(Some(BodyFrame::End(trailers))));
                }
                Ok(Event::NeedData) => {
                    match std::task::ready!(poll_read_buf(
                        &mut self.stream,
                        self.proto.recv_buf(),
                        cx
                    )) {
                        Ok(0) => self.proto.receive_eof(),
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Err(Error::io(e))),
                    }
                }
                Ok(_) => return Poll::Ready(Ok(None)),
                Err(e) => return Poll::Ready(Err(Error::proto(e))),
            }
        }
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
        self.proto.is_reusable()
    }

    /// The moment from which the connection must not be reused, by the
    /// server's `Keep-Alive: timeout` on the last response, less `margin`
    /// ([`proto::Connection::peer_reusable_until`]); `None` when the last
    /// response gave no timeout.
    pub(crate) fn reusable_until(&self, margin: Duration) -> Option<Instant> {
        let ended = self.response_ended?;
        self.proto
            .peer_reusable_until(ended.into_std(), margin)
            .map(Instant::from_std)
    }

    /// Whether the peer closed (or sent something unasked) while the connection
    /// sat in the pool: a non-blocking peek, so a connection the server closed
    /// is never handed out.
    ///
    /// The peek runs only when the reactor has seen the socket become readable
    /// since the response was read (a FIN or stray bytes make it readable), so a
    /// quiet pooled connection costs no system call to check.
    pub(crate) fn is_closed_by_peer(&self) -> bool {
        let peek = || {
            let mut probe = [MaybeUninit::<u8>::uninit(); 1];
            socket2::SockRef::from(&self.stream).peek(&mut probe)
        };
        match self.stream.try_io(tokio::io::Interest::READABLE, peek) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            // EOF, unsolicited bytes, or an error: not reusable.
            _ => true,
        }
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
                self.data(b).map_err(|_| Error::new(Kind::UserBody))?;
            }
            self.proto
                .send_end(None, &mut self.out)
                .map_err(|e| Error::with_source(Kind::UserBody, e))?;
        }
        write_buf(&self.stream, &mut self.out)
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

enum WriteFailure {
    /// The socket failed: the server may still have answered.
    Io,
    /// The request itself is broken (its body failed or lied about its length).
    Fatal(Error),
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
