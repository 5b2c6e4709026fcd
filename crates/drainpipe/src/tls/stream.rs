//! TLS streams as [`Transport`]s: [`ServerStream`] (a server connection whose
//! handshake runs on its first read or write) and tokio-rustls' client
//! stream, each over a [`Ciphertext`] socket (one record, one `send`).
//!
//! | method | TLS |
//! |---|---|
//! | `socket` | the descriptor underneath: kernel peeks see ciphertext, which is right for "is input pending?" and "did the peer close?" |
//! | `poll_read_ready` | ready at once when rustls holds plaintext, else the socket's readiness |
//! | `has_input` | plaintext held by rustls, else a kernel peek |
//! | `peer_closed_or_sent` | asked of the socket (a close_notify or a FIN both count) |
//! | `read_now` | through rustls (never a raw `recv`, which would take ciphertext) |
//! | `try_write_vectored` | encrypts into rustls and writes what the socket takes; the drivers then flush the rest |
//! | `parking` | never parked: the session lives in user space beside the descriptor |
//!
//! Closing: `poll_shutdown` queues close_notify, writes it, then shuts the
//! socket's write side (the FIN follows close_notify).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::io::poll_write_slices;
use crate::transport::{forward_transport, read_polled, Transport};

/// A TLS server connection: handshaking until its first read or write
/// completes the handshake, then a tokio-rustls stream. A failed handshake
/// is logged at debug and reads as an error (the connection closes).
pub struct ServerStream<T> {
    state: State<T>,
}

enum State<T> {
    Handshaking(tokio_rustls::Accept<Ciphertext<T>>),
    Ready(tokio_rustls::server::TlsStream<Ciphertext<T>>),
    Failed,
}

impl<T> std::fmt::Debug for ServerStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Handshaking(_) => "handshaking",
            State::Ready(_) => "ready",
            State::Failed => "failed",
        };
        f.debug_struct("ServerStream")
            .field("state", &state)
            .finish()
    }
}

impl<T: Transport> ServerStream<T> {
    /// A connection whose handshake `accept` runs.
    pub(crate) fn new(accept: tokio_rustls::Accept<Ciphertext<T>>) -> Self {
        ServerStream {
            state: State::Handshaking(accept),
        }
    }

    /// The rustls session, once the handshake is over (to read the SNI
    /// name, the ALPN protocol, the protocol version, whether it resumed).
    pub fn session(&self) -> Option<&rustls::ServerConnection> {
        match &self.state {
            State::Ready(s) => Some(s.get_ref().1),
            _ => None,
        }
    }

    /// The stream underneath.
    fn inner(&self) -> Option<&T> {
        match &self.state {
            State::Handshaking(a) => a.get_ref().map(Ciphertext::get_ref),
            State::Ready(s) => Some(s.get_ref().0.get_ref()),
            State::Failed => None,
        }
    }

    /// Drives the handshake; the stream once it is over.
    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<&mut tokio_rustls::server::TlsStream<Ciphertext<T>>>> {
        if let State::Handshaking(accept) = &mut self.state {
            match std::task::ready!(Pin::new(accept).poll(cx)) {
                Ok(stream) => self.state = State::Ready(stream),
                Err(e) => {
                    tracing::debug!(error = %e, "TLS handshake failed; closing");
                    self.state = State::Failed;
                    return Poll::Ready(Err(e));
                }
            }
        }
        match &mut self.state {
            State::Ready(s) => Poll::Ready(Ok(s)),
            _ => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl<T: Transport> AsyncRead for ServerStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if matches!(this.state, State::Failed) {
            return Poll::Ready(Ok(()));
        }
        let stream = std::task::ready!(this.poll_ready(cx))?;
        match Pin::new(stream).poll_read(cx, buf) {
            // A client that closes without close_notify after its last
            // request is common; the server's framing rules already treat an
            // EOF inside a request as truncation.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl<T: Transport> AsyncWrite for ServerStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let stream = std::task::ready!(self.get_mut().poll_ready(cx))?;
        Pin::new(stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let stream = std::task::ready!(self.get_mut().poll_ready(cx))?;
        Pin::new(stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Ready(s) => Pin::new(s).poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Ready(s) => Pin::new(s).poll_shutdown(cx),
            State::Handshaking(a) => match a.get_mut() {
                Some(inner) => Pin::new(inner).poll_shutdown(cx),
                None => Poll::Ready(Ok(())),
            },
            State::Failed => Poll::Ready(Ok(())),
        }
    }
}

/// The socket under a TLS stream, as rustls writes its records to it: a
/// write of one buffer (one record, the common case for a response) is a
/// plain `send` rather than a one-element `writev`, which costs the kernel
/// an iovec import per call; several records still go out in one `writev`.
/// Everything else passes through, and it is a [`Transport`] as the socket
/// is (never parked). [`ClientTls::connect`](super::ClientTls::connect) and
/// the TLS listeners put it under every stream they make.
#[derive(Debug)]
pub struct Ciphertext<T>(T);

impl<T> Ciphertext<T> {
    /// Wraps the socket a TLS stream is to run on.
    pub fn new(socket: T) -> Self {
        Ciphertext(socket)
    }

    /// The socket.
    pub fn get_ref(&self) -> &T {
        &self.0
    }

    /// The socket, mutably (bytes written to it bypass TLS).
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.0
    }

    /// The socket back.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: Transport> AsyncRead for Ciphertext<T> {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<T: Transport> AsyncWrite for Ciphertext<T> {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        poll_write_slices(Pin::new(&mut self.get_mut().0), cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl<T: Transport> Transport for Ciphertext<T> {
    forward_transport!([.0], [.0]);
}

/// Whether rustls holds plaintext (or a close_notify) a read would return
/// without touching the socket.
fn has_plaintext<D>(session: &rustls::ConnectionCommon<D>) -> bool {
    !session.wants_read()
}

impl<T: Transport> Transport for ServerStream<T> {
    fn socket(&self) -> Option<BorrowedFd<'_>> {
        self.inner().and_then(Transport::socket)
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner().and_then(Transport::peer_addr)
    }

    fn set_nodelay(&self) {
        if let Some(inner) = self.inner() {
            inner.set_nodelay();
        }
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.state {
            State::Ready(s) if has_plaintext(s.get_ref().1) => Poll::Ready(Ok(())),
            State::Ready(s) => s.get_ref().0.poll_read_ready(cx),
            State::Handshaking(a) => match a.get_ref() {
                Some(inner) => inner.poll_read_ready(cx),
                None => Poll::Ready(Ok(())),
            },
            State::Failed => Poll::Ready(Ok(())),
        }
    }

    fn has_input(&self) -> bool {
        match &self.state {
            State::Ready(s) => has_plaintext(s.get_ref().1) || s.get_ref().0.has_input(),
            State::Handshaking(a) => a.get_ref().is_some_and(Transport::has_input),
            State::Failed => false,
        }
    }

    fn peer_closed_or_sent(&self) -> bool {
        self.inner().is_some_and(Transport::peer_closed_or_sent)
    }

    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_polled(self, buf)
    }

    fn reset_on_close(&self) {
        if let Some(inner) = self.inner() {
            inner.reset_on_close();
        }
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// A client's TLS connection (opened by
/// [`ClientTls::connect`](super::ClientTls::connect)).
impl<T: Transport> Transport for tokio_rustls::client::TlsStream<T> {
    fn socket(&self) -> Option<BorrowedFd<'_>> {
        self.get_ref().0.socket()
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.get_ref().0.peer_addr()
    }

    fn set_nodelay(&self) {
        self.get_ref().0.set_nodelay()
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (inner, session) = self.get_ref();
        if has_plaintext(session) {
            return Poll::Ready(Ok(()));
        }
        inner.poll_read_ready(cx)
    }

    fn has_input(&self) -> bool {
        let (inner, session) = self.get_ref();
        has_plaintext(session) || inner.has_input()
    }

    fn peer_closed_or_sent(&self) -> bool {
        let (inner, session) = self.get_ref();
        has_plaintext(session) || inner.peer_closed_or_sent()
    }

    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_polled(self, buf)
    }

    fn reset_on_close(&self) {
        self.get_ref().0.reset_on_close()
    }

    fn is_tls(&self) -> bool {
        true
    }
}
