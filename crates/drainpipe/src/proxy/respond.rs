//! What the proxies answer with: [`ProxyBody`] (an upstream's body relayed,
//! or one of the proxy's own), the proxy's own short answers (`502`, `504`,
//! `Max-Forwards` on `OPTIONS`/`TRACE`), and 1xx relayed to the client.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use http_body::{Frame, SizeHint};

use super::forward;
use super::upstream::InFlight;
use crate::client::ResponseBody;
use crate::error::Error;
use crate::server::interim::Interim;

/// The answer to a request whose upstream attempt failed with `e`: 504 when a
/// timeout ran out, 502 otherwise (both proxies).
pub(crate) fn gateway_error(e: &Error) -> Response<ProxyBody> {
    if e.is_timeout() {
        plain(StatusCode::GATEWAY_TIMEOUT, "upstream timed out")
    } else {
        plain(StatusCode::BAD_GATEWAY, &format!("upstream failed: {e}"))
    }
}

/// RFC 9110 §7.6.2, for both proxies: an OPTIONS or TRACE with
/// `Max-Forwards: 0` is answered here (OPTIONS: 200 with `Allow`; TRACE: 405,
/// since drainpipe does not echo requests), a bad value gets 400; otherwise the
/// field goes on less one.
pub(crate) fn max_forwards(
    method: &http::Method,
    headers: &mut http::HeaderMap,
    allow: &'static str,
) -> Option<Response<ProxyBody>> {
    use proto::fields::MaxForwards;
    match proto::fields::max_forwards(method, headers) {
        Ok(MaxForwards::Forward) => None,
        Ok(MaxForwards::ForwardAs(n)) => {
            headers.insert(http::header::MAX_FORWARDS, HeaderValue::from(n));
            None
        }
        Ok(MaxForwards::AnswerHere) => {
            let mut res = if *method == http::Method::OPTIONS {
                let mut res = Response::new(ProxyBody::empty());
                res.headers_mut()
                    .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                res
            } else {
                plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "TRACE is not enabled on this proxy",
                )
            };
            res.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static(allow));
            Some(res)
        }
        Err(e) => Some(plain(e.status(), &e.kind().to_string())),
    }
}

/// Passes an upstream's informational response on to the client, if the
/// request came through a drainpipe server (a full queue drops it: the
/// client is not reading).
pub(crate) fn relay_informational(interim: Option<&Interim>, res: &Response<()>) {
    if let Some(interim) = interim {
        if let Err(e) = interim.send(forward::informational(res)) {
            tracing::debug!(status = %res.status(), error = %e, "informational response not relayed");
        }
    }
}

/// A short `text/plain` answer written by the proxy itself.
pub(crate) fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut res = Response::new(ProxyBody {
        inner: Kind::Full(Some(Bytes::from(format!("{} {}\n", status.as_u16(), text)))),
        _in_flight: None,
    });
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// A proxied response body: the upstream's, streamed (its errors end the
/// client's response abruptly), or the proxy's own.
pub struct ProxyBody {
    inner: Kind,
    /// Counts the request in flight to its upstream until the body is done.
    _in_flight: Option<InFlight>,
}

enum Kind {
    Upstream(ResponseBody),
    Full(Option<Bytes>),
}

impl ProxyBody {
    /// No body.
    pub(crate) fn empty() -> Self {
        ProxyBody {
            inner: Kind::Full(None),
            _in_flight: None,
        }
    }

    /// An upstream's body, streamed.
    pub(crate) fn upstream(body: ResponseBody) -> Self {
        ProxyBody {
            inner: Kind::Upstream(body),
            _in_flight: None,
        }
    }

    /// An upstream's body, streamed, its request counted in flight to the
    /// upstream until the body is done.
    pub(crate) fn counted(body: ResponseBody, in_flight: InFlight) -> Self {
        ProxyBody {
            inner: Kind::Upstream(body),
            _in_flight: Some(in_flight),
        }
    }
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyBody")
    }
}

impl http_body::Body for ProxyBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Kind::Upstream(body) => Pin::new(body).poll_frame(cx),
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        };
        if let Poll::Ready(None) = polled {
            this._in_flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Kind::Upstream(body) => body.is_end_stream(),
            Kind::Full(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Kind::Upstream(body) => body.size_hint(),
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}
