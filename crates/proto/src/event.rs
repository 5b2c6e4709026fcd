//! What the peer's bytes mean, one event at a time.

use bytes::Bytes;
use http::{HeaderMap, Request, Response};

use crate::framing::Framing;

/// The next thing received, from [`Connection::next_event`](crate::Connection::next_event).
///
/// A message is a head event, zero or more [`Event::Data`], then [`Event::End`].
#[derive(Debug)]
pub enum Event {
    /// A request head (server role). `body` says how its body is framed.
    Request {
        /// The head; its body type is `()`, the body follows as events.
        head: Request<()>,
        /// The body's framing ([`Framing::None`] for none).
        body: Framing,
    },
    /// An informational (1xx, not 101) response head (client role); the final
    /// response follows.
    Informational(Response<()>),
    /// A final response head (client role).
    Response {
        /// The head.
        head: Response<()>,
        /// The body's framing.
        body: Framing,
    },
    /// Body bytes of the current message (never empty).
    Data(Bytes),
    /// The current message ended; `trailers` if a chunked body carried any.
    End {
        /// The trailer section, if any.
        trailers: Option<HeaderMap>,
    },
    /// Nothing complete is buffered: feed more bytes (or EOF).
    NeedData,
    /// Nothing more can be read until our side acts: the pipeline is full, the
    /// connection closes after our current response, or the protocol switched
    /// ([`Connection::take_switched`](crate::Connection::take_switched)). Input may
    /// still arrive; it waits in the buffer (or, after a close decision, is
    /// discarded).
    Paused,
    /// The peer closed the connection at a message boundary.
    Closed,
}
