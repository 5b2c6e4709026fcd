//! The built-in origin: a `tower::Service` with the routes demos, tests and
//! benchmarks need.
//!
//! | route | answer |
//! |---|---|
//! | `/` | any method: 200 `text/plain` `Hello, World!` (a request body is read and discarded) |
//! | `/echo` | the received head back, as text |
//! | `/bytes/N` | N bytes with `Content-Length` |
//! | `/chunked/N` | N bytes of unannounced length (chunked to HTTP/1.1) |
//! | `/delay/MS` | `Hello, World!` after MS milliseconds |
//! | `/status/CODE` | an empty response with that status |
//! | `/close` | 200 with `Connection: close` |
//! | `/conn` | `conn=ID request=N`: this connection's id and the request's number on it, then ` worker=W` on a [worker](crate::server::workers) |
//! | `/truncate/N` | announces N bytes, sends half, then closes |
//! | `/reset` | resets the connection instead of answering |
//! | anything else | 404 |

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use crate::body::Incoming;
use crate::error::BoxError;
use crate::server::info::Abort;

const HELLO: &[u8] = b"Hello, World!";
/// Filler for generated bodies: 64 KiB of `x`, sliced, never copied.
static FILL: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// The built-in origin service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin;

impl tower_service::Service<Request<Incoming>> for Origin {
    type Response = Response<OriginBody>;
    type Error = Infallible;
    type Future = OriginFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        // Without a body to read, `/` answers at once: no future to box.
        let bodiless = http_body::Body::is_end_stream(req.body());
        if bodiless && req.uri().path() == "/" {
            return OriginFuture(Some(Ready::Now(Some(text(
                StatusCode::OK,
                Bytes::from_static(HELLO),
            )))));
        }
        OriginFuture(Some(Ready::Later(Box::pin(route(req)))))
    }
}

/// The origin's response future: ready at once for `/` without a body,
/// boxed for the rest.
pub struct OriginFuture(Option<Ready>);

enum Ready {
    Now(Option<Response<OriginBody>>),
    Later(Pin<Box<dyn Future<Output = Response<OriginBody>> + Send>>),
}

impl std::fmt::Debug for OriginFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OriginFuture")
    }
}

impl Future for OriginFuture {
    type Output = Result<Response<OriginBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Some(Ready::Now(res)) => Poll::Ready(Ok(res.take().expect("polled after completion"))),
            Some(Ready::Later(fut)) => fut.as_mut().poll(cx).map(Ok),
            None => Poll::Pending,
        }
    }
}

async fn route(req: Request<Incoming>) -> Response<OriginBody> {
    let path = req.uri().path();
    let path = path.strip_prefix('/').unwrap_or(path);
    let (first, arg) = match path.split_once('/') {
        Some((first, arg)) => (first, Some(arg)),
        None => (path, None),
    };
    let number = arg.and_then(|a| a.parse::<u64>().ok());
    match (first, arg, number) {
        ("", None, _) => {
            discard(req.into_body()).await;
            text(StatusCode::OK, Bytes::from_static(HELLO))
        }
        ("echo", None, _) => {
            let head = echo_head(&req);
            discard(req.into_body()).await;
            text(StatusCode::OK, head.into())
        }
        ("bytes", Some(_), Some(n)) => response(StatusCode::OK, OriginBody::filled(n, true)),
        ("chunked", Some(_), Some(n)) => response(StatusCode::OK, OriginBody::filled(n, false)),
        ("delay", Some(_), Some(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(StatusCode::OK, Bytes::from_static(HELLO))
        }
        ("status", Some(_), Some(code)) => match u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(status) => response(status, OriginBody::empty()),
            None => text(StatusCode::BAD_REQUEST, "bad status code\n".into()),
        },
        ("close", None, _) => {
            let mut res = text(StatusCode::OK, Bytes::from_static(HELLO));
            res.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            res
        }
        ("conn", None, _) => {
            let info = req.body().conn_info();
            let mut line = match info {
                Some(i) => format!("conn={} request={}", i.id, i.request),
                None => "conn=? request=?".to_string(),
            };
            if let Some(w) = crate::server::workers::Worker::current() {
                line.push_str(&format!(" worker={}", w.index()));
            }
            line.push('\n');
            text(StatusCode::OK, line.into())
        }
        ("truncate", Some(_), Some(n)) => response(
            StatusCode::OK,
            OriginBody(Inner::Truncate {
                declared: n,
                half: Some(fill(n / 2)),
            }),
        ),
        ("reset", None, _) => {
            let mut res = response(StatusCode::OK, OriginBody::empty());
            res.extensions_mut().insert(Abort);
            res
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// Reads a request body to its end and drops it.
async fn discard(mut body: Incoming) {
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            return;
        }
    }
}

fn echo_head(req: &Request<Incoming>) -> String {
    let mut s = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
    for (name, value) in req.headers() {
        s.push_str(name.as_str());
        s.push_str(": ");
        s.push_str(&String::from_utf8_lossy(value.as_bytes()));
        s.push('\n');
    }
    s
}

fn text(status: StatusCode, body: Bytes) -> Response<OriginBody> {
    let mut res = response(status, OriginBody(Inner::Full(Some(body))));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    res
}

fn response(status: StatusCode, body: OriginBody) -> Response<OriginBody> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    res
}

fn fill(n: u64) -> Bytes {
    Bytes::from_static(&FILL[..n.min(FILL.len() as u64) as usize])
}

/// The origin's response bodies: whole, generated, or deliberately truncated.
#[derive(Debug)]
pub struct OriginBody(Inner);

#[derive(Debug)]
enum Inner {
    Full(Option<Bytes>),
    /// `remaining` bytes of filler, announced or not.
    Filled {
        remaining: u64,
        announced: bool,
    },
    /// Announces `declared` bytes, yields `half`, then fails.
    Truncate {
        declared: u64,
        half: Option<Bytes>,
    },
}

impl OriginBody {
    fn empty() -> Self {
        OriginBody(Inner::Full(None))
    }

    fn filled(n: u64, announced: bool) -> Self {
        OriginBody(Inner::Filled {
            remaining: n,
            announced,
        })
    }
}

impl http_body::Body for OriginBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match &mut self.get_mut().0 {
            Inner::Full(data) => data.take().map(|d| Ok(Frame::data(d))),
            Inner::Filled { remaining: 0, .. } => None,
            Inner::Filled { remaining, .. } => {
                let piece = fill(*remaining);
                *remaining -= piece.len() as u64;
                Some(Ok(Frame::data(piece)))
            }
            Inner::Truncate { half, .. } => match half.take() {
                Some(d) if !d.is_empty() => Some(Ok(Frame::data(d))),
                _ => Some(Err("truncated on purpose".into())),
            },
        };
        Poll::Ready(frame)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            Inner::Filled {
                remaining,
                announced: true,
            } => SizeHint::with_exact(*remaining),
            Inner::Filled { .. } => SizeHint::default(),
            Inner::Truncate { declared, .. } => SizeHint::with_exact(*declared),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(
            &self.0,
            Inner::Full(None) | Inner::Filled { remaining: 0, .. }
        )
    }
}
