//! [`Incoming`]: a received message body as an `http-body` 1.x body, pulled on
//! demand with backpressure.
//!
//! The connection task owns the socket; the handler owns the `Incoming`. They
//! share one slot: the handler asks (polls), the connection reads just enough
//! from the socket to fill the slot, and stops reading while the slot is full.
//! So a slow handler slows the peer down through TCP flow control instead of
//! making drainpipe buffer. The first poll is also the signal for
//! `100 Continue`: a server sends it only when the handler reads the body.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};

use crate::error::BodyError;
use crate::server::info::ConnInfo;
use crate::server::interim::Interim;

/// A received body, streamed from the connection. It also carries the
/// [`ConnInfo`] of the connection it arrived on.
pub struct Incoming {
    inner: Option<Arc<Slot>>,
    size: SizeHint,
    conn: Option<ConnInfo>,
    interim: Option<Interim>,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The connection's end of the slot.
#[derive(Debug)]
pub(crate) struct Sender {
    slot: Arc<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The next frame, waiting for the reader.
    frame: Option<Frame<Bytes>>,
    /// How the body ends, delivered after `frame`.
    tail: Tail,
    /// The reader asked for a frame and found none.
    wanted: bool,
    /// The reader is gone: nothing more will be taken.
    reader_gone: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

#[derive(Debug, Default)]
enum Tail {
    #[default]
    Open,
    Ended,
    /// Ends in this error (taken when delivered).
    Failed(Option<BodyError>),
}

impl Incoming {
    /// An empty body.
    pub fn empty() -> Self {
        Incoming {
            inner: None,
            size: SizeHint::with_exact(0),
            conn: None,
            interim: None,
        }
    }

    /// The connection the request arrived on (id, the request's number on
    /// it, the client's address), when a drainpipe server received it.
    pub fn conn_info(&self) -> Option<ConnInfo> {
        self.conn
    }

    pub(crate) fn with_conn(mut self, conn: ConnInfo, interim: Interim) -> Self {
        self.conn = Some(conn);
        self.interim = Some(interim);
        self
    }

    /// Where informational (1xx) responses to this request go out ahead of
    /// the final one ([`Interim`]), when a drainpipe server received it.
    pub fn interim(&self) -> Option<Interim> {
        self.interim.clone()
    }

    /// A body fed through a [`Sender`]; `len` is the length when known.
    pub(crate) fn channel(len: Option<u64>) -> (Self, Sender) {
        let slot = Arc::new(Slot::default());
        let size = size_hint_of(len);
        (
            Incoming {
                inner: Some(slot.clone()),
                size,
                conn: None,
                interim: None,
            },
            Sender { slot },
        )
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(slot) = &self.inner {
            let mut s = slot.state.lock().unwrap();
            s.reader_gone = true;
            if let Some(w) = s.writer.take() {
                w.wake();
            }
        }
    }
}

impl http_body::Body for Incoming {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let Some(slot) = &this.inner else {
            return Poll::Ready(None);
        };
        let mut s = slot.state.lock().unwrap();
        if let Some(frame) = s.frame.take() {
            if let Some(d) = frame.data_ref() {
                shrink_size_hint(&mut this.size, d.len() as u64);
            }
            if let Some(w) = s.writer.take() {
                w.wake();
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        match &mut s.tail {
            Tail::Ended => return Poll::Ready(None),
            Tail::Failed(e) => return Poll::Ready(e.take().map(Err)),
            Tail::Open => {}
        }
        s.wanted = true;
        s.reader = Some(cx.waker().clone());
        if let Some(w) = s.writer.take() {
            w.wake();
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            None => true,
            Some(slot) => {
                let s = slot.state.lock().unwrap();
                matches!(s.tail, Tail::Ended) && s.frame.is_none()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.size
    }
}

/// The size hint of a body of `len` bytes when the length is known (exact),
/// else of unknown size.
pub(crate) fn size_hint_of(len: Option<u64>) -> SizeHint {
    match len {
        Some(n) => SizeHint::with_exact(n),
        None => SizeHint::default(),
    }
}

/// Takes `taken` bytes just handed out off what `size` says is left: a size
/// with an upper bound becomes exactly what remains below it, one without
/// lowers its lower bound.
pub(crate) fn shrink_size_hint(size: &mut SizeHint, taken: u64) {
    match size.upper() {
        Some(upper) => size.set_exact(upper.saturating_sub(taken)),
        None => {
            let lower = size.lower().saturating_sub(taken);
            size.set_lower(lower);
        }
    }
}

/// What the connection should do for the body next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Demand {
    /// The reader wants a frame and the slot is free: read from the socket.
    Read,
    /// The slot is full, or nobody asked yet: wait (the waker is registered).
    Wait,
    /// The reader is gone: stop feeding; what is left is discarded.
    Gone,
}

impl Sender {
    /// Whether the reader wants a frame now; registers `cx` to be woken when that
    /// changes.
    pub(crate) fn poll_demand(&self, cx: &mut Context<'_>) -> Demand {
        let mut s = self.slot.state.lock().unwrap();
        if s.reader_gone {
            return Demand::Gone;
        }
        if s.frame.is_none() && s.wanted {
            return Demand::Read;
        }
        s.writer = Some(cx.waker().clone());
        Demand::Wait
    }

    /// Whether the reader has asked for data at least once (the cue for
    /// `100 Continue`).
    pub(crate) fn was_polled(&self) -> bool {
        let s = self.slot.state.lock().unwrap();
        s.wanted || s.reader_gone
    }

    /// Puts a data frame in the (free) slot.
    pub(crate) fn data(&self, data: Bytes) {
        self.finish(Some(Frame::data(data)), Tail::Open);
    }

    /// Ends the body, with trailers if any.
    pub(crate) fn end(&self, trailers: Option<HeaderMap>) {
        self.finish(trailers.map(Frame::trailers), Tail::Ended);
    }

    /// Ends the body with an error: the reader never sees a clean end.
    pub(crate) fn error(&self, e: BodyError) {
        self.finish(None, Tail::Failed(Some(e)));
    }

    fn finish(&self, frame: Option<Frame<Bytes>>, tail: Tail) {
        let mut s = self.slot.state.lock().unwrap();
        debug_assert!(
            frame.is_none() || s.frame.is_none(),
            "body slot overwritten"
        );
        if frame.is_some() {
            s.frame = frame;
        }
        if !matches!(tail, Tail::Open) {
            s.tail = tail;
        }
        s.wanted = false;
        if let Some(w) = s.reader.take() {
            w.wake();
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // A body abandoned by the connection (it closed, or gave up) ends in an
        // error after any frame still waiting, never in a clean end.
        let mut s = self.slot.state.lock().unwrap();
        if matches!(s.tail, Tail::Open) {
            s.tail = Tail::Failed(Some(BodyError::connection_lost()));
            if let Some(w) = s.reader.take() {
                w.wake();
            }
        }
    }
}
