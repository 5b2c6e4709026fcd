//! The client's response body, [`ResponseBody`]: what is received; it holds
//! the connection until its end, then gives it back to the pool.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::conn::BodyFrame;
use super::pool::Checkout;
use crate::error::Error;

/// A response body streamed from its connection. Reading it to the end gives
/// the connection back to the pool; dropping it early closes the connection. A
/// body that ends short of its framing yields an error
/// ([`Error::is_truncated`]), never a clean end.
pub struct ResponseBody {
    pub(crate) checkout: Option<Checkout>,
    pub(crate) size: SizeHint,
    /// Longest wait for the next piece of the body (the client's response
    /// timeout); the timer is armed while waiting.
    pub(crate) idle_timeout: Option<std::time::Duration>,
    /// The timer of that wait, made at the first wait and reset for each later
    /// one.
    pub(crate) timer: Option<StallTimer>,
}

/// One response body's timer for the wait for its next piece: a single
/// [`tokio::time::Sleep`], reset at the start of each wait instead of made
/// anew.
pub(crate) struct StallTimer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// Whether `sleep` runs for the current wait (cleared when a piece
    /// arrives).
    armed: bool,
}

impl StallTimer {
    /// Polls the timer of the current wait, arming it for `limit` from now if
    /// this is the wait's first poll. Ready once the wait has lasted `limit`.
    fn poll(timer: &mut Option<StallTimer>, limit: Duration, cx: &mut Context<'_>) -> Poll<()> {
        let timer = match timer {
            Some(t) => {
                if !t.armed {
                    t.sleep.as_mut().reset(tokio::time::Instant::now() + limit);
                    t.armed = true;
                }
                t
            }
            None => timer.insert(StallTimer {
                sleep: Box::pin(tokio::time::sleep(limit)),
                armed: true,
            }),
        };
        timer.sleep.as_mut().poll(cx)
    }

    /// A piece arrived: the current wait is over.
    fn disarm(timer: &mut Option<StallTimer>) {
        if let Some(t) = timer {
            t.armed = false;
        }
    }
}

impl ResponseBody {
    pub(crate) fn empty() -> Self {
        ResponseBody {
            checkout: None,
            size: SizeHint::with_exact(0),
            idle_timeout: None,
            timer: None,
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("open", &self.checkout.is_some())
            .finish()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let Some(checkout) = this.checkout.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = checkout.conn_mut().poll_body(cx);
        let Poll::Ready(polled) = polled else {
            if let Some(limit) = this.idle_timeout {
                if StallTimer::poll(&mut this.timer, limit, cx).is_ready() {
                    // The upstream stalled mid-body: the connection is dropped
                    // and the body ends in an error, never cleanly.
                    this.checkout = None;
                    return Poll::Ready(Some(Err(Error::new(crate::error::Kind::Timeout(
                        "response body read",
                    )))));
                }
            }
            return Poll::Pending;
        };
        StallTimer::disarm(&mut this.timer);
        match polled {
            Ok(Some(BodyFrame::Data(data))) => {
                crate::body::shrink_size_hint(&mut this.size, data.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Ok(Some(BodyFrame::End(trailers))) => {
                if let Some(c) = this.checkout.take() {
                    c.release();
                }
                Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))))
            }
            Ok(None) => Poll::Ready(None),
            Err(e) => {
                // The connection is discarded when the checkout drops.
                this.checkout = None;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.checkout.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.size
    }
}
