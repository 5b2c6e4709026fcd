//! The per-side states of a connection and the exchanges in flight.
//!
//! Two halves move independently, as in h11: [`Recv`] says what the peer's next
//! bytes are, [`Send`] what our next call may be. What ties them is the queue of
//! [`Exchange`]s (request/response pairs in flight): a server pushes one per
//! request head received and pops it when the response ends; a client pushes one
//! per request head sent and pops it when the response ends. Data lives in the
//! variant that owns it: a decoder only while a body is read, an encoder only
//! while one is sent.

use http::{Method, Version};

use crate::decode::Decoder;
use crate::encode::Encoder;
use crate::error::Error;

/// The receiving half.
#[derive(Debug)]
pub(crate) enum Recv {
    /// Expecting a message head; `scanned` bytes were already searched for its end.
    Head { scanned: usize },
    /// Inside a body; `then` is where the half goes when it ends.
    Body { decoder: Decoder, then: After },
    /// No further message will be read (the connection closes after our side
    /// finishes); input is discarded.
    Done,
    /// The protocol switched (101, or 2xx to CONNECT): input belongs to the new
    /// protocol.
    Switched,
    /// The peer's EOF was seen at a message boundary.
    Closed,
    /// The peer broke the protocol; the error repeats on every call.
    Failed(Error),
}

/// The sending half.
#[derive(Debug)]
pub(crate) enum Send {
    /// Ready for a message head.
    Head,
    /// Inside a body; `then` is where the half goes when it ends.
    Body { encoder: Encoder, then: After },
    /// Our last message was sent: nothing more will be.
    Done,
    /// The protocol switched after our message.
    Switched,
    /// Our message could not be completed (a body length mismatch); the
    /// connection must be closed.
    Failed,
}

/// Where a half goes when the current message ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// The next message.
    Next,
    /// No next message: the connection closes.
    Close,
    /// The protocol switches.
    Switch,
}

/// What kind of method a request had, as far as framing and switching care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MethodClass {
    Head,
    Connect,
    Other,
}

impl MethodClass {
    pub(crate) fn of(method: &Method) -> Self {
        if *method == Method::HEAD {
            MethodClass::Head
        } else if *method == Method::CONNECT {
            MethodClass::Connect
        } else {
            MethodClass::Other
        }
    }

    /// A representative method for framing rules.
    pub(crate) fn method(self) -> &'static Method {
        static HEAD: Method = Method::HEAD;
        static CONNECT: Method = Method::CONNECT;
        static GET: Method = Method::GET;
        match self {
            MethodClass::Head => &HEAD,
            MethodClass::Connect => &CONNECT,
            MethodClass::Other => &GET,
        }
    }
}

/// One request/response pair in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exchange {
    pub(crate) method: MethodClass,
    pub(crate) version: Version,
    /// This exchange is the connection's last (the request asked, HTTP/1.0
    /// without keep-alive, the request limit, or a protocol error).
    pub(crate) close: bool,
    /// The request asked to switch protocols (`Upgrade` named in `Connection`).
    pub(crate) upgrade: bool,
    /// The request carries `Expect: 100-continue` and no `100` went out yet.
    pub(crate) continue_pending: bool,
    /// The request (head and body) has been received entirely (server) or sent
    /// entirely (client).
    pub(crate) request_done: bool,
    /// Client: informational (1xx) responses received so far for it.
    pub(crate) informational: u16,
    /// Client: the request asked for the response's fields as
    /// [`FieldLines`](crate::FieldLines) ([`Relay`](crate::Relay)).
    pub(crate) as_lines: bool,
}

impl Exchange {
    /// Whether the response may switch the connection to another protocol, so
    /// nothing after the request may be read until it is known.
    pub(crate) fn may_switch(&self) -> bool {
        self.upgrade || self.method == MethodClass::Connect
    }
}
