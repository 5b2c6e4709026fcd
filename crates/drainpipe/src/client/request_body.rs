//! The client's request body, [`RequestBody`]: what is sent; replayable when
//! held in memory.

use std::fmt;

use bytes::{Buf, Bytes};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use proto::BodySize;

use crate::error::BoxError;

type BoxBody = UnsyncBoxBody<Bytes, BoxError>;

/// A request body: empty, bytes in memory (which can be sent again on a
/// retry), or a stream (which cannot).
pub struct RequestBody(pub(crate) Kind);

pub(crate) enum Kind {
    Empty,
    Full(Bytes),
    Stream(BoxBody),
}

impl RequestBody {
    /// No body.
    pub fn empty() -> Self {
        RequestBody(Kind::Empty)
    }

    /// A body held in memory.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            RequestBody::empty()
        } else {
            RequestBody(Kind::Full(bytes))
        }
    }

    /// A streamed body; a request carrying one is never replayed.
    pub fn stream<B>(body: B) -> Self
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if body.is_end_stream() {
            return RequestBody::empty();
        }
        let mapped = body
            .map_frame(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))
            .map_err(Into::into)
            .boxed_unsync();
        RequestBody(Kind::Stream(mapped))
    }

    /// What the size is known to be.
    pub(crate) fn size(&self) -> BodySize {
        match &self.0 {
            Kind::Empty => BodySize::Exact(0),
            Kind::Full(b) => BodySize::Exact(b.len() as u64),
            Kind::Stream(s) => s
                .size_hint()
                .exact()
                .map_or(BodySize::Unknown, BodySize::Exact),
        }
    }

    /// A copy to send on a retry, if the body can be sent again.
    pub(crate) fn try_clone(&self) -> Option<RequestBody> {
        match &self.0 {
            Kind::Empty => Some(RequestBody::empty()),
            Kind::Full(b) => Some(RequestBody(Kind::Full(b.clone()))),
            Kind::Stream(_) => None,
        }
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Empty => f.write_str("RequestBody::Empty"),
            Kind::Full(b) => write!(f, "RequestBody::Full({} bytes)", b.len()),
            Kind::Stream(_) => f.write_str("RequestBody::Stream"),
        }
    }
}

impl From<()> for RequestBody {
    fn from(_: ()) -> Self {
        RequestBody::empty()
    }
}

impl From<Bytes> for RequestBody {
    fn from(b: Bytes) -> Self {
        RequestBody::full(b)
    }
}

impl From<String> for RequestBody {
    fn from(s: String) -> Self {
        RequestBody::full(s)
    }
}

impl From<&'static str> for RequestBody {
    fn from(s: &'static str) -> Self {
        RequestBody::full(Bytes::from_static(s.as_bytes()))
    }
}

impl From<Vec<u8>> for RequestBody {
    fn from(v: Vec<u8>) -> Self {
        RequestBody::full(v)
    }
}
