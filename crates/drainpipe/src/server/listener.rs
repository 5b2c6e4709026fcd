//! The accept loop: max connections (accept waits for a free slot, and a
//! connection waiting makes room by reclaiming the longest-idle one), accept
//! errors such as EMFILE backing off instead of spinning, one task per
//! connection. The loop owns the listening socket and drops it the moment it
//! stops accepting ([`Listen`]). Listeners are traits: TCP and Unix sockets
//! implement them, a user can bring their own ([`Accept`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use std::os::fd::{AsFd, AsRawFd};

use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;

use super::conn::{self, Exit};
use super::drain::{CloseReason, Shared};
use super::park::{Parker, Respawn, Resume, Writes};
use super::slots::Slots;
use crate::body::Incoming;
use crate::error::BoxError;
use crate::transport::Transport;

/// The first pause after a resource error from accept; doubled up to
/// [`MAX_BACKOFF`] while errors repeat.
const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How long a reclaimed connection has to give its slot back before the
/// next one is reclaimed.
const RECLAIM_PAUSE: Duration = Duration::from_millis(20);

/// What [`Server::serve`](super::Server::serve) accepts on: turned once into
/// an [`Accept`], which the accept loop owns.
///
/// The accept loop owns what it is given and drops it the moment it stops
/// accepting (when the shutdown future and the drain delay are over), so the
/// socket closes then: a new client is refused at once (safe to retry)
/// instead of being queued by the kernel and reset when the process exits.
///
/// Implemented for TCP ([`TcpListener`], [`std::net::TcpListener`]) and Unix
/// listeners ([`UnixListener`], [`std::os::unix::net::UnixListener`]), owned
/// outright, and for an `Arc` of either std listener, which lets a listener
/// hand-off copy the socket while it is served: keep only a
/// [`Weak`](std::sync::Weak) of it, and upgrade that at hand-off time
/// ([`handoff::hand_over`](crate::handoff::hand_over)). Any strong handle
/// kept elsewhere keeps the socket open (and accepting into the kernel's
/// queue) after the loop stopped. A `Vec` of such `Arc`s is accepted on as
/// one listener (the sockets of one address a worker takes, see
/// [`workers`](super::workers)); a socket several workers accept on closes
/// when the last of them stops. Every [`Accept`] is a `Listen` too: bring
/// your own listener by implementing [`Accept`].
pub trait Listen {
    /// The connections it yields.
    type Conn: Transport;
    /// The accepting end.
    type Acceptor: Accept<Conn = Self::Conn>;

    /// The accepting end, for the accept loop to own.
    fn into_acceptor(self) -> io::Result<Self::Acceptor>;
}

/// The accepting end of a listener: yields connections on any [`Transport`].
pub trait Accept: Send + Sync + 'static {
    /// The connections it yields.
    type Conn: Transport;

    /// The next connection and its peer's IP address (`None` for a peer
    /// without one). An error of kind `ConnectionAborted`,
    /// `ConnectionReset`, `ConnectionRefused`, `Interrupted` or `WouldBlock`
    /// concerns one connection and the loop goes on at once; any other
    /// (EMFILE, ENOBUFS...) makes it back off.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Conn, Option<SocketAddr>)>> + Send;

    /// Resolves when a connection waits to be accepted, asked while every
    /// connection slot is taken: the longest-idle keep-alive connection then
    /// makes room. The default never resolves (accept waits for a slot).
    fn waiting(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

impl<A: Accept> Listen for A {
    type Conn = A::Conn;
    type Acceptor = A;

    fn into_acceptor(self) -> io::Result<A> {
        Ok(self)
    }
}

/// Listening sockets (TCP or Unix; usually one) registered with the
/// runtime: what the std and tokio listeners become for the accept loop.
/// Several are the sockets of one address a worker accepts on
/// ([`Worker::share`](super::Worker::share)); each is tried in turn.
#[derive(Debug)]
pub struct SocketAcceptor<L: AsRawFd> {
    fds: Vec<AsyncFd<Arc<L>>>,
    /// Where the next accept starts looking, so no socket starves the others.
    next: AtomicUsize,
}

impl<L: AsRawFd + AsFd> SocketAcceptor<L> {
    /// Registers `listeners` (made non-blocking) with the runtime.
    fn register(listeners: Vec<Arc<L>>) -> io::Result<Self> {
        if listeners.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no listening socket to accept on",
            ));
        }
        let fds = listeners
            .into_iter()
            .map(|listener| {
                // SAFETY: the AsyncFd holds a strong handle of the listener, so
                // the descriptor it registers stays open, the same socket,
                // until the AsyncFd drops.
                unsafe { AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) }
                    .map_err(io::Error::from)
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(SocketAcceptor {
            fds,
            next: AtomicUsize::new(0),
        })
    }

    /// Accepts one socket. tokio's own `accept` marks the new socket readable
    /// before the reactor has seen it, so the first read is tried at once; a
    /// client that has not sent its request yet (most new connections under
    /// load) makes that read find nothing, one wasted `recv` per connection.
    /// A stream built from the accepted socket instead starts with no
    /// readiness: its first read waits for the registration's first event,
    /// as nginx waits for it. (Clearing the assumed readiness after tokio's
    /// accept is racy: on a multi-threaded runtime the reactor may already
    /// have recorded a real event, which the clear would lose, leaving the
    /// request unread.) Same syscalls: `accept4`, then the registration.
    /// On a listener that defers accepts ([`defer_accept`](crate::sock::defer_accept))
    /// the request is already there: the registration's first event comes
    /// with the next look at the reactor, for every connection of the batch
    /// accepted in this wake-up at once.
    async fn accept_socket(&self) -> io::Result<(socket2::Socket, socket2::SockAddr)> {
        const FLAGS: i32 = nix::libc::SOCK_NONBLOCK | nix::libc::SOCK_CLOEXEC;
        std::future::poll_fn(|cx| {
            let n = self.fds.len();
            let start = self.next.load(Ordering::Relaxed);
            for i in (start..start + n).map(|i| i % n) {
                let fd = &self.fds[i];
                while let Poll::Ready(ready) = fd.poll_read_ready(cx) {
                    let mut ready = ready?;
                    // Nothing waiting after all: readiness cleared, look again
                    // (which registers the waker).
                    if let Ok(accepted) =
                        ready.try_io(|l| socket2::SockRef::from(l.get_ref()).accept4(FLAGS))
                    {
                        self.next.store((i + 1) % n, Ordering::Relaxed);
                        return Poll::Ready(accepted);
                    }
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Resolves when a connection waits in an accept queue, asked of the
    /// kernel (`poll` with no wait) rather than of the reactor, whose
    /// readiness stays set after a successful accept.
    async fn pending_connection(&self) {
        std::future::poll_fn(|cx| {
            for fd in &self.fds {
                while let Poll::Ready(Ok(mut ready)) = fd.poll_read_ready(cx) {
                    if crate::sock::has_pending_connection(fd.get_ref()) {
                        // Only looked at: the readiness stays for the accept.
                        return Poll::Ready(());
                    }
                    // Readiness left from the last accept: nobody waits.
                    ready.clear_ready();
                }
            }
            Poll::Pending
        })
        .await
    }
}

impl Accept for SocketAcceptor<std::net::TcpListener> {
    type Conn = TcpStream;

    async fn accept(&self) -> io::Result<(TcpStream, Option<SocketAddr>)> {
        let (socket, peer) = self.accept_socket().await?;
        let peer = peer.as_socket();
        Ok((TcpStream::from_std(socket.into())?, peer))
    }

    fn waiting(&self) -> impl Future<Output = ()> + Send {
        self.pending_connection()
    }
}

impl Accept for SocketAcceptor<std::os::unix::net::UnixListener> {
    type Conn = UnixStream;

    async fn accept(&self) -> io::Result<(UnixStream, Option<SocketAddr>)> {
        let (socket, _) = self.accept_socket().await?;
        Ok((UnixStream::from_std(socket.into())?, None))
    }

    fn waiting(&self) -> impl Future<Output = ()> + Send {
        self.pending_connection()
    }
}

/// The std listeners, each owned outright, or in an `Arc` a hand-off may
/// copy, or several in `Arc`s (the sockets of one address a worker accepts
/// on, see [`workers`](super::workers)).
macro_rules! listen_on {
    ($std:ty, $tokio:ty) => {
        impl Listen for Arc<$std> {
            type Conn = <SocketAcceptor<$std> as Accept>::Conn;
            type Acceptor = SocketAcceptor<$std>;

            fn into_acceptor(self) -> io::Result<Self::Acceptor> {
                vec![self].into_acceptor()
            }
        }

        impl Listen for Vec<Arc<$std>> {
            type Conn = <SocketAcceptor<$std> as Accept>::Conn;
            type Acceptor = SocketAcceptor<$std>;

            fn into_acceptor(self) -> io::Result<Self::Acceptor> {
                for l in &self {
                    l.set_nonblocking(true)?;
                }
                SocketAcceptor::register(self)
            }
        }

        impl Listen for $std {
            type Conn = <SocketAcceptor<$std> as Accept>::Conn;
            type Acceptor = SocketAcceptor<$std>;

            fn into_acceptor(self) -> io::Result<Self::Acceptor> {
                Arc::new(self).into_acceptor()
            }
        }

        impl Listen for $tokio {
            type Conn = <SocketAcceptor<$std> as Accept>::Conn;
            type Acceptor = SocketAcceptor<$std>;

            fn into_acceptor(self) -> io::Result<Self::Acceptor> {
                self.into_std()?.into_acceptor()
            }
        }
    };
}

listen_on!(std::net::TcpListener, TcpListener);
listen_on!(std::os::unix::net::UnixListener, UnixListener);

/// Accepts connections until `shutdown` resolves. Returns the parker's task,
/// which the caller stops once the drain is over.
pub(crate) async fn accept_until<L, S, B, F>(
    listener: L,
    service: S,
    shared: &Arc<Shared>,
    shutdown: F,
) -> Option<JoinHandle<()>>
where
    L: Listen,
    S: tower_service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()>,
{
    // The socket closes when this function returns, unless a hand-off holds
    // a copy (see `Listen`).
    let listener = match listener.into_acceptor() {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the listening socket; not accepting");
            return None;
        }
    };
    let parking = if shared.config.park_after.is_some() && L::Conn::parking().is_some() {
        // A mutex makes the service shareable with the parker's task (it is
        // only cloned under it).
        let respawn_service = std::sync::Mutex::new(service.clone());
        let respawn_shared = shared.clone();
        let rejoin = L::Conn::parking().map(|p| p.rejoin);
        let respawn: Respawn = Arc::new(move |fd, resume, parker| {
            let stream = match rejoin.map(|rejoin| rejoin(fd)) {
                Some(Ok(stream)) => stream,
                _ => {
                    respawn_shared.closed_now(CloseReason::Io, resume.requests_started);
                    return;
                }
            };
            let service = respawn_service.lock().unwrap().clone();
            spawn_connection(
                stream,
                resume,
                service,
                respawn_shared.clone(),
                Some(parker.clone()),
            );
        });
        match Parker::start(shared.clone(), respawn) {
            Ok((parker, task)) => Some((parker, tokio::spawn(task))),
            Err(e) => {
                tracing::warn!(error = %e, "cannot park idle connections; keeping them in their tasks");
                None
            }
        }
    } else {
        None
    };
    let parker = parking.as_ref().map(|(p, _)| p.clone());
    let slots = &shared.slots;
    let mut backoff = MIN_BACKOFF;
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.acquire() => slot,
            never = make_room(&listener, slots, parker.as_deref()) => match never {},
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = MIN_BACKOFF;
                shared.opened();
                let resume = Resume {
                    id: shared.conn_id(),
                    requests_started: 0,
                    peer,
                    head_deadline: None,
                    slot,
                    writes: Writes::None,
                };
                spawn_connection(
                    stream,
                    resume,
                    service.clone(),
                    shared.clone(),
                    parker.clone(),
                );
            }
            Err(e) if is_per_connection(&e) => {}
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: nothing to accept with until
                // something is freed; wait instead of spinning.
                tracing::warn!(error = %e, pause_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    parking.map(|(_, task)| task)
}

/// Runs while every slot is taken: each time a connection waits to be
/// accepted, the longest-idle keep-alive connection is closed to make room
/// (its slot comes back to [`Slots::acquire`], which then wins the select), and
/// after a pause, if none came back (none was idle, or it just got a request),
/// the next one is looked for.
async fn make_room<A: Accept>(
    listener: &A,
    slots: &Slots,
    parker: Option<&Parker>,
) -> std::convert::Infallible {
    loop {
        listener.waiting().await;
        if slots.reclaim_longest_idle() {
            if let Some(parker) = parker {
                parker.close_reclaimed();
            }
        }
        tokio::time::sleep(RECLAIM_PAUSE).await;
    }
}

/// Runs a connection in its own task, until it closes or parks.
fn spawn_connection<T, S, B>(
    stream: T,
    resume: Resume,
    service: S,
    shared: Arc<Shared>,
    parker: Option<Arc<Parker>>,
) where
    T: Transport,
    S: tower_service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    // Boxed: a connection's future is a few KiB, and spawning moves an unboxed
    // future several times on its way into the task (about ten copies, a
    // third of the CPU a short connection costs); a box moves as a pointer.
    tokio::spawn(Box::pin(async move {
        if let Exit::Closed(reason) =
            conn::run(stream, resume, service, &shared, parker.as_ref()).await
        {
            shared.closed(reason);
        }
    }));
}

/// Errors that concern one connection only (it was reset before accept
/// finished); the next accept can go on at once.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
