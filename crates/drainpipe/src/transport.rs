//! What the drivers need of a byte stream beyond `AsyncRead + AsyncWrite`.
//!
//! Every driver (server connection, client connection, the graceful close)
//! reads and writes through the [`Transport`] trait, so TCP, Unix sockets and
//! `tokio::io::duplex` pipes (tests) run through the same code. The trait's
//! methods are what only some transports have; each has a default that
//! is right for a transport without it:
//!
//! | method | TCP / Unix | default (e.g. `DuplexStream`) |
//! |---|---|---|
//! | [`socket`](Transport::socket) | the descriptor | `None` |
//! | [`peer_addr`](Transport::peer_addr) | the peer's IP address (TCP) | `None` |
//! | [`set_nodelay`](Transport::set_nodelay) | Nagle off (TCP) | nothing |
//! | [`poll_read_ready`](Transport::poll_read_ready) | the reactor's readiness | ready at once |
//! | [`try_write_vectored`](Transport::try_write_vectored) | `send` (one buffer) or `writev` without a waker | a poll with a no-op waker |
//! | [`try_write_before_close`](Transport::try_write_before_close) | `sendmsg` with `MSG_MORE` (TCP): the close's FIN leaves with the data | `try_write_vectored` |
//! | [`has_input`](Transport::has_input) | a kernel peek | `false` |
//! | [`peer_closed_or_sent`](Transport::peer_closed_or_sent) | a readiness-gated peek | `false` |
//! | [`read_now`](Transport::read_now) | a kernel `recv` | a poll with a no-op waker |
//! | [`reset_on_close`](Transport::reset_on_close) | `SO_LINGER` 0 | nothing |
//! | [`parking`](Transport::parking) | leave / rejoin the reactor | never parked |
//! | [`is_tls`](Transport::is_tls) | `false` (`true` for the [TLS](crate::tls) streams) | `false` |
//!
//! The half-close of a graceful close is `AsyncWrite::poll_shutdown` (a
//! `shutdown(SHUT_WR)` on a socket, the end of the pipe on a duplex).

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A byte stream a connection runs on; see the [module docs](self).
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The socket underneath, if there is one: the kernel is asked directly
    /// for what the reactor may report late (pending input, the peer's
    /// close). `None`: a stream without a descriptor.
    fn socket(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// The peer's IP address; `None` for a peer without one (a Unix socket,
    /// an in-memory pipe).
    fn peer_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// Turns Nagle's algorithm off where there is one: the drivers coalesce
    /// their own writes, so no small segment should wait for an ACK. (The
    /// server asks before a connection's second write: its first never
    /// waits.)
    fn set_nodelay(&self) {}

    /// Ready when a read may find something. Lets a reader wait without
    /// holding a buffer; the default is ready at once (the read itself
    /// waits).
    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Writes what fits without waiting and without registering a waker:
    /// `WouldBlock` when nothing fits. A socket writes one buffer with a
    /// plain `send`, several with `writev`.
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(self).poll_write_vectored(&mut cx, bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// [`try_write_vectored`](Transport::try_write_vectored) for the last
    /// bytes before a close that follows at once: a TCP socket holds them
    /// back (`MSG_MORE`) until the close, so that they and its FIN leave in
    /// one segment (a packet, and the peer's separate ACK, fewer per
    /// connection). The caller must close, or write again, right after: held
    /// bytes wait for one or the other.
    fn try_write_before_close(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.try_write_vectored(bufs)
    }

    /// Whether input (or an EOF) waits, asked of the kernel rather than of
    /// the reactor, whose readiness may lag. `false` without a socket.
    fn has_input(&self) -> bool {
        self.socket().is_some_and(peek_input)
    }

    /// Whether the peer closed (or sent something unasked) since the last
    /// read, for a pooled client connection: asked of the kernel only when
    /// the reactor saw the stream become readable, so a quiet connection
    /// costs no system call. `false` when the transport cannot tell (the
    /// client's retry rule then covers a stale connection).
    fn peer_closed_or_sent(&self) -> bool {
        false
    }

    /// Reads what is already there without waiting (`WouldBlock` when
    /// nothing is), asking the kernel rather than the reactor on a socket.
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(fd) = self.socket() {
            // SAFETY: `recv` only writes initialised bytes into the prefix it
            // reports; `u8` and `MaybeUninit<u8>` have the same layout.
            let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
            return socket2::SockRef::from(&fd).recv(uninit);
        }
        read_polled(self, buf)
    }

    /// Makes the close that follows a reset instead of a FIN (fault
    /// injection). Nothing without a socket.
    fn reset_on_close(&self) {
        if let Some(fd) = self.socket() {
            let _ = socket2::SockRef::from(&fd).set_linger(Some(std::time::Duration::ZERO));
        }
    }

    /// Whether the stream is encrypted (TLS): the proxy then says
    /// `X-Forwarded-Proto: https`.
    fn is_tls(&self) -> bool {
        false
    }

    /// How an idle connection on this transport leaves the runtime's
    /// reactor to wait as a bare descriptor in one shared epoll set, and
    /// comes back. `None`: it is never parked (it waits in its task).
    fn parking() -> Option<Parking<Self>>
    where
        Self: Sized,
    {
        None
    }
}

/// Moves a stream out of the runtime's reactor and back (see
/// [`Transport::parking`]).
#[derive(Debug)]
pub struct Parking<T> {
    /// Deregisters the stream and gives its descriptor up (an error: the
    /// socket is unusable, as good as closed).
    pub leave: fn(T) -> io::Result<OwnedFd>,
    /// Registers the descriptor again as a stream.
    pub rejoin: fn(OwnedFd) -> io::Result<T>,
}

impl<T> Clone for Parking<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Parking<T> {}

/// A readiness-gated peek for the tokio sockets.
macro_rules! peek_if_readable {
    ($stream:expr) => {{
        let stream = $stream;
        let peek = || {
            let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
            socket2::SockRef::from(stream).peek(&mut probe)
        };
        match stream.try_io(tokio::io::Interest::READABLE, peek) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            // EOF, unsolicited bytes, or an error.
            _ => true,
        }
    }};
}

impl Transport for TcpStream {
    fn socket(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        TcpStream::peer_addr(self).ok()
    }

    fn set_nodelay(&self) {
        let _ = TcpStream::set_nodelay(self, true);
    }

    #[inline]
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    #[inline]
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match bufs {
            [one] => TcpStream::try_write(self, one),
            _ => TcpStream::try_write_vectored(self, bufs),
        }
    }

    fn try_write_before_close(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        const FLAGS: i32 = nix::libc::MSG_MORE | nix::libc::MSG_NOSIGNAL;
        // Through the registration, so a full socket clears its readiness.
        let this: &TcpStream = self;
        this.try_io(tokio::io::Interest::WRITABLE, || {
            socket2::SockRef::from(this).send_vectored_with_flags(bufs, FLAGS)
        })
    }

    fn peer_closed_or_sent(&self) -> bool {
        peek_if_readable!(self)
    }

    fn parking() -> Option<Parking<Self>> {
        Some(Parking {
            leave: |s| s.into_std().map(OwnedFd::from),
            rejoin: |fd| TcpStream::from_std(std::net::TcpStream::from(fd)),
        })
    }
}

impl Transport for UnixStream {
    fn socket(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }

    #[inline]
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        UnixStream::poll_read_ready(self, cx)
    }

    #[inline]
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match bufs {
            [one] => UnixStream::try_write(self, one),
            _ => UnixStream::try_write_vectored(self, bufs),
        }
    }

    fn peer_closed_or_sent(&self) -> bool {
        peek_if_readable!(self)
    }

    fn parking() -> Option<Parking<Self>> {
        Some(Parking {
            leave: |s| s.into_std().map(OwnedFd::from),
            rejoin: |fd| UnixStream::from_std(std::os::unix::net::UnixStream::from(fd)),
        })
    }
}

impl Transport for tokio::io::DuplexStream {}

/// The methods of a transport that wraps another: every fact is asked of the
/// stream inside, reached by `self` followed by the first token group
/// (shared) or the second (mutable); `parking` keeps its default (never
/// parked). One list for every wrapper, so none forgets a method.
macro_rules! forward_transport {
    ([$($inner:tt)+], [$($inner_mut:tt)+]) => {
        fn socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
            self $($inner)+ .socket()
        }

        fn peer_addr(&self) -> Option<std::net::SocketAddr> {
            self $($inner)+ .peer_addr()
        }

        fn set_nodelay(&self) {
            self $($inner)+ .set_nodelay()
        }

        #[inline]
        fn poll_read_ready(
            &self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self $($inner)+ .poll_read_ready(cx)
        }

        #[inline]
        fn try_write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
            self $($inner_mut)+ .try_write_vectored(bufs)
        }

        fn try_write_before_close(
            &mut self,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::io::Result<usize> {
            self $($inner_mut)+ .try_write_before_close(bufs)
        }

        fn has_input(&self) -> bool {
            self $($inner)+ .has_input()
        }

        fn peer_closed_or_sent(&self) -> bool {
            self $($inner)+ .peer_closed_or_sent()
        }

        fn read_now(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self $($inner_mut)+ .read_now(buf)
        }

        fn reset_on_close(&self) {
            self $($inner)+ .reset_on_close()
        }

        fn is_tls(&self) -> bool {
            self $($inner)+ .is_tls()
        }
    };
}
pub(crate) use forward_transport;

/// A boxed transport (a client's connection, a switched one) is one too:
/// every fact is asked of the stream inside; it is never parked.
impl<T: Transport + ?Sized> Transport for Box<T> {
    forward_transport!([.as_ref()], [.as_mut()]);
}

/// Reads what the stream gives without waiting, through its own
/// `poll_read` with a no-op waker (`WouldBlock` when nothing is there).
pub(crate) fn read_polled<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut read = ReadBuf::new(buf);
    match Pin::new(stream).poll_read(&mut cx, &mut read) {
        Poll::Ready(Ok(())) => Ok(read.filled().len()),
        Poll::Ready(Err(e)) => Err(e),
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

/// Whether input (or an EOF) waits on a socket: a non-blocking peek, asked of
/// the kernel.
pub(crate) fn peek_input(fd: BorrowedFd<'_>) -> bool {
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    socket2::SockRef::from(&fd).peek(&mut probe).is_ok()
}
