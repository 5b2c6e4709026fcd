//! Protocol switches (`101 Switching Protocols`, a 2xx to `CONNECT`): the raw
//! connection handed over after the switch, and a tunnel between two of them.
//!
//! - Server side: a request that may switch (it names `upgrade` in
//!   `Connection` and has `Upgrade`, or it is `CONNECT`) carries an
//!   [`OnUpgrade`] in its extensions. Once the handler's `101` (or 2xx to
//!   CONNECT) has been written, it resolves to the client's connection.
//! - Client side: a `101` response (or 2xx to CONNECT) carries the upstream
//!   connection; take it with [`take_upgraded`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use crate::error::{Error, Kind};
use crate::transport::Transport;

/// A connection after a protocol switch: the stream (of whichever transport
/// the connection ran on), and bytes already read from it that belong to the
/// new protocol.
pub struct Upgraded {
    /// The stream.
    pub stream: Box<dyn Transport>,
    /// Bytes received beyond the switch, to be handled before reading more.
    pub read_buf: Bytes,
}

/// Resolves to the client's connection once the server has answered its
/// request with a protocol switch. Found in the request's extensions (take it
/// with [`on_upgrade`]).
#[derive(Debug, Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

/// The server's end: fulfils the [`OnUpgrade`].
pub(crate) struct Pending(oneshot::Sender<Upgraded>);

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded")
            .field("read_buf", &self.read_buf)
            .finish_non_exhaustive()
    }
}

impl OnUpgrade {
    pub(crate) fn pair() -> (OnUpgrade, Pending) {
        let (tx, rx) = oneshot::channel();
        (OnUpgrade(Arc::new(Mutex::new(Some(rx)))), Pending(tx))
    }
}

impl Pending {
    pub(crate) fn fulfil(self, upgraded: Upgraded) {
        let _ = self.0.send(upgraded);
    }
}

impl Future for OnUpgrade {
    type Output = Result<Upgraded, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.0.lock().unwrap();
        let Some(rx) = slot.as_mut() else {
            return Poll::Ready(Err(Error::new(Kind::ConnectionLost)));
        };
        match Pin::new(rx).poll(cx) {
            Poll::Ready(Ok(up)) => {
                *slot = None;
                Poll::Ready(Ok(up))
            }
            Poll::Ready(Err(_)) => {
                *slot = None;
                Poll::Ready(Err(Error::new(Kind::ConnectionLost)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Takes the [`OnUpgrade`] of a request, if it may switch protocols.
pub fn on_upgrade<B>(req: &mut http::Request<B>) -> Option<OnUpgrade> {
    req.extensions_mut().remove::<OnUpgrade>()
}

/// The upstream connection carried by a client response that switched
/// protocols.
#[derive(Debug, Clone)]
pub(crate) struct ClientUpgrade(pub(crate) Arc<Mutex<Option<Upgraded>>>);

/// Takes the switched connection out of a client response (`101`, or a 2xx to
/// CONNECT).
pub fn take_upgraded<B>(res: &mut http::Response<B>) -> Option<Upgraded> {
    res.extensions_mut()
        .remove::<ClientUpgrade>()
        .and_then(|u| u.0.lock().unwrap().take())
}

/// Copies bytes both ways between two switched connections until both sides
/// are done; an EOF from one side is passed on as a half-close of the other.
/// Returns the bytes carried each way (a → b, b → a).
pub async fn tunnel(mut a: Upgraded, mut b: Upgraded) -> std::io::Result<(u64, u64)> {
    if !a.read_buf.is_empty() {
        b.stream.write_all(&a.read_buf).await?;
    }
    if !b.read_buf.is_empty() {
        a.stream.write_all(&b.read_buf).await?;
    }
    let (ab, ba) = tokio::io::copy_bidirectional(&mut a.stream, &mut b.stream).await?;
    Ok((ab + a.read_buf.len() as u64, ba + b.read_buf.len() as u64))
}
