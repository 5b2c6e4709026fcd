//! The one read loop of every connection: the next protocol event, else one
//! read into the core's receive buffer, else the end of the stream.
//!
//! The server's body pump, the client's connection and `drainpipe bench`
//! all turn a [`proto::Connection`] and a [`Transport`] into events through
//! [`poll_step`]; a caller with something to do between the core asking for
//! data and the read (the server's head wait races its timers, the bench
//! tops its pipeline up) reads through [`poll_read`] itself. Either way the
//! same rules hold:
//!
//! - the read lands straight in the core's receive buffer, through the
//!   drivers' one read (a buffer is taken only once the transport is
//!   readable, and given back to the thread's pool if the read finds
//!   nothing);
//! - an EOF is fed to the core, which decides what it means (between
//!   messages: closed; inside one: truncated);
//! - a TLS stream that ended without close_notify reads as an EOF the
//!   transport could not prove ([`proto::Connection::receive_unproven_eof`]):
//!   a close-delimited body that ends there is truncated, never complete;
//! - every read is reported ([`Step::Read`]), so the caller can count
//!   bytes, stamp the time of arrival or apply its own rule to an EOF.
//!
//! ```no_run
//! # async fn demo(mut stream: tokio::net::TcpStream, mut conn: drainpipe::proto::Connection)
//! # -> Result<(), drainpipe::wire::StepError> {
//! use drainpipe::proto::Event;
//! use drainpipe::wire::{poll_step, Step};
//!
//! let mut received = 0;
//! loop {
//!     match std::future::poll_fn(|cx| poll_step(&mut stream, &mut conn, cx)).await? {
//!         Step::Read(n) => received += n,
//!         Step::Event(Event::Closed) => break,
//!         Step::Event(_event) => { /* act on it */ }
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::io;
use std::task::{Context, Poll};

use proto::{Connection, Event};

use crate::io::poll_read_buf;
use crate::transport::Transport;

/// One step of a connection's read loop.
// As large as the core's `Event` it carries, as the core's own
// `Result<Event, _>` is: boxing would allocate per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Step {
    /// The core's next event; never [`Event::NeedData`] (a read is made
    /// instead).
    Event(Event),
    /// The core needed data and this many bytes were read into it. `Read(0)`:
    /// the stream ended, and the EOF was fed to the core (whose next event
    /// says what it means).
    Read(usize),
}

/// Why the read loop stopped.
#[derive(Debug)]
pub enum StepError {
    /// The transport failed (not an EOF: that is [`Step::Read(0)`](Step::Read)).
    Io(io::Error),
    /// The peer broke the protocol, or its message was cut short
    /// ([`proto::ErrorKind::Truncated`]); the core's error, which stays.
    Protocol(proto::Error),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Io(e) => write!(f, "read failed: {e}"),
            StepError::Protocol(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StepError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StepError::Io(e) => Some(e),
            StepError::Protocol(e) => Some(e),
        }
    }
}

/// Takes the core's next event; when it needs data, reads once into its
/// receive buffer (see [`poll_read`]) and reports the read. `Pending` only
/// while that read waits.
///
/// Call again after a [`Step::Read`]: the bytes (or the EOF) are the core's
/// now, and its next event may be ready.
#[inline]
pub fn poll_step<T: Transport>(
    stream: &mut T,
    conn: &mut Connection,
    cx: &mut Context<'_>,
) -> Poll<Result<Step, StepError>> {
    match conn.next_event() {
        Ok(Event::NeedData) => {
            // The core's contract: once an EOF is fed it never asks for more.
            debug_assert!(!conn.saw_eof(), "the core asked for data after EOF");
            poll_read(stream, conn, cx).map(|read| read.map(Step::Read).map_err(StepError::Io))
        }
        Ok(event) => Poll::Ready(Ok(Step::Event(event))),
        Err(e) => Poll::Ready(Err(StepError::Protocol(e))),
    }
}

/// Reads once into `conn`'s receive buffer: the count read, 0 at the end
/// of the stream, which is fed to the core (an EOF the transport could not
/// prove, TLS without close_notify, as such). For a caller that has just
/// seen [`Event::NeedData`] and acts before reading; [`poll_step`] is
/// this after the core's next event.
///
/// Memory is taken only when the transport is readable: with nothing
/// buffered, it waits for readiness first, and gives the buffer back to the
/// thread's pool if the read finds nothing after all.
#[inline]
pub fn poll_read<T: Transport>(
    stream: &mut T,
    conn: &mut Connection,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    match std::task::ready!(poll_read_buf(stream, conn.recv_buf(), cx)) {
        Ok(0) => conn.receive_eof(),
        Ok(n) => return Poll::Ready(Ok(n)),
        // TLS ended without close_notify: the core decides (a
        // close-delimited body is truncated, not complete).
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => conn.receive_unproven_eof(),
        Err(e) => return Poll::Ready(Err(e)),
    }
    Poll::Ready(Ok(0))
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::Waker;

    use proto::{BodySize, Role, WriteBuf};
    use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

    use super::*;

    /// Three responses a server sent back to back: a length, a chunked body
    /// with a trailer, an empty 404.
    const PIPELINED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n\
HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";

    /// A client connection that sent `n` GETs, and the server's end of its
    /// stream.
    fn client(n: usize) -> (Connection, DuplexStream, DuplexStream) {
        let mut conn = Connection::new(Role::Client, Arc::new(proto::Config::default()));
        let mut out = WriteBuf::new();
        let (head, ()) = http::Request::get("http://example.com/")
            .body(())
            .unwrap()
            .into_parts();
        for _ in 0..n {
            conn.send_request(&head, BodySize::Exact(0), &mut out)
                .unwrap();
            conn.send_end(None, &mut out).unwrap();
        }
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        (conn, ours, theirs)
    }

    /// What a reader sees: heads, each body's bytes joined (reads may cut
    /// them anywhere), ends with their trailers, the close; and the bytes
    /// the steps reported read.
    #[derive(Default, Debug, PartialEq)]
    struct Transcript {
        events: Vec<String>,
        read: usize,
        eofs: usize,
    }

    impl Transcript {
        /// Takes one step in; `false` once the loop is over.
        fn take(&mut self, step: Result<Step, StepError>) -> bool {
            let line = match step {
                Ok(Step::Read(0)) => {
                    self.eofs += 1;
                    return true;
                }
                Ok(Step::Read(n)) => {
                    self.read += n;
                    return true;
                }
                Ok(Step::Event(Event::Response { head, .. })) => format!("head {}", head.status()),
                Ok(Step::Event(Event::Data(data))) => {
                    let text = String::from_utf8_lossy(&data).into_owned();
                    match self.events.last_mut() {
                        Some(last) if last.starts_with("data ") => last.push_str(&text),
                        _ => self.events.push(format!("data {text}")),
                    }
                    return true;
                }
                Ok(Step::Event(Event::End { trailers })) => format!("end {trailers:?}"),
                Ok(Step::Event(other)) => format!("{other:?}"),
                Err(StepError::Protocol(e)) => format!("error {:?}", e.kind()),
                Err(StepError::Io(e)) => format!("io {e}"),
            };
            let more = line.starts_with("head") || line.starts_with("end");
            self.events.push(line);
            more
        }
    }

    /// Steps until the loop would wait (a no-op waker: nothing is lost, the
    /// next real poll registers again).
    fn steps_now<T: Transport>(stream: &mut T, conn: &mut Connection, t: &mut Transcript) {
        let mut cx = Context::from_waker(Waker::noop());
        while let Poll::Ready(step) = poll_step(stream, conn, &mut cx) {
            if !t.take(step) {
                return;
            }
        }
    }

    /// The peer sends `bytes` and its EOF at once; the loop runs to its end.
    async fn sent_whole<T: Transport>(
        bytes: &[u8],
        theirs: &mut DuplexStream,
        stream: &mut T,
        conn: &mut Connection,
    ) -> Transcript {
        theirs.write_all(bytes).await.unwrap();
        theirs.shutdown().await.unwrap();
        let mut t = Transcript::default();
        steps_to_end(stream, conn, &mut t).await;
        t
    }

    /// Steps to the end of the loop (each wait bounded).
    async fn steps_to_end<T: Transport>(stream: &mut T, conn: &mut Connection, t: &mut Transcript) {
        for _ in 0..1000 {
            let step = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                std::future::poll_fn(|cx| poll_step(stream, conn, cx)),
            )
            .await
            .expect("the read loop waited with input and an EOF there");
            if !t.take(step) {
                return;
            }
        }
        panic!("the read loop never ended");
    }

    #[tokio::test]
    async fn pipelined_responses_split_anywhere_give_the_same_events() {
        let whole = {
            let (mut conn, mut ours, mut theirs) = client(3);
            sent_whole(PIPELINED, &mut theirs, &mut ours, &mut conn).await
        };
        assert_eq!(
            whole.events,
            [
                "head 200 OK",
                "data hello",
                "end None",
                "head 200 OK",
                "data abcde",
                "end Some({\"x-t\": \"1\"})",
                "head 404 Not Found",
                "end None",
                "Closed",
            ]
        );
        assert_eq!((whole.read, whole.eofs), (PIPELINED.len(), 1));
        for at in 0..=PIPELINED.len() {
            let (mut conn, mut ours, mut theirs) = client(3);
            let mut t = Transcript::default();
            theirs.write_all(&PIPELINED[..at]).await.unwrap();
            steps_now(&mut ours, &mut conn, &mut t);
            theirs.write_all(&PIPELINED[at..]).await.unwrap();
            theirs.shutdown().await.unwrap();
            steps_to_end(&mut ours, &mut conn, &mut t).await;
            assert_eq!(t, whole, "split at byte {at}");
        }
    }

    #[tokio::test]
    async fn an_eof_inside_a_body_is_truncated() {
        let (mut conn, mut ours, mut theirs) = client(1);
        let t = sent_whole(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            &mut theirs,
            &mut ours,
            &mut conn,
        )
        .await;
        assert_eq!(
            t.events,
            [
                "head 200 OK",
                "data abc",
                "error Truncated { expected: Some(10), received: 3 }",
            ]
        );
        assert_eq!(t.eofs, 1, "the EOF was reported as a read of 0");
        // The core's error stays: the next step says it again, reading nothing.
        let mut cx = Context::from_waker(Waker::noop());
        let again = poll_step(&mut ours, &mut conn, &mut cx);
        assert!(matches!(again, Poll::Ready(Err(StepError::Protocol(_)))));
    }

    /// A stream whose end is an EOF it cannot prove, as TLS without
    /// close_notify reads.
    struct Unproven(DuplexStream);

    impl AsyncRead for Unproven {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let before = buf.filled().len();
            std::task::ready!(Pin::new(&mut self.0).poll_read(cx, buf))?;
            if buf.filled().len() == before && buf.remaining() > 0 {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Unproven {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    impl Transport for Unproven {}

    #[tokio::test]
    async fn a_close_delimited_body_needs_a_proven_eof() {
        const CLOSE_DELIMITED: &[u8] = b"HTTP/1.1 200 OK\r\n\r\nabc";
        // A proven EOF ends the body.
        let (mut conn, mut ours, mut theirs) = client(1);
        let t = sent_whole(CLOSE_DELIMITED, &mut theirs, &mut ours, &mut conn).await;
        // (The connection ended with it: nothing more is read.)
        assert_eq!(t.events, ["head 200 OK", "data abc", "end None", "Paused"]);
        // An unproven one cuts it short: truncated, not an I/O error.
        let (mut conn, ours, mut theirs) = client(1);
        let mut ours = Unproven(ours);
        let t = sent_whole(CLOSE_DELIMITED, &mut theirs, &mut ours, &mut conn).await;
        assert_eq!(
            t.events,
            [
                "head 200 OK",
                "data abc",
                "error Truncated { expected: None, received: 3 }",
            ]
        );
        assert_eq!(t.eofs, 1);
    }
}
