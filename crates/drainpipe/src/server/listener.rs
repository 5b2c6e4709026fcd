//! The accept loop: max connections (accept waits for a free slot, and a
//! connection waiting makes room by reclaiming the longest-idle one), accept
//! errors such as EMFILE backing off instead of spinning, one task per
//! connection. The loop owns the listening socket and drops it the moment it
//! stops accepting ([`Listen`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::conn::{self, Exit};
use super::drain::Shared;
use super::park::{Parker, Respawn, Resume};
use super::slots::Slots;
use crate::body::Incoming;
use crate::error::BoxError;

/// The first pause after a resource error from accept; doubled up to
/// [`MAX_BACKOFF`] while errors repeat.
const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How long a reclaimed connection has to give its slot back before the
/// next one is reclaimed.
const RECLAIM_PAUSE: Duration = Duration::from_millis(20);

/// A listening socket [`Server::serve`](super::Server::serve) accepts on.
///
/// The accept loop owns what it is given and drops it the moment it stops
/// accepting (when the shutdown future and the drain delay are over), so the
/// socket closes then: a new client is refused at once (safe to retry)
/// instead of being queued by the kernel and reset when the process exits.
///
/// A [`TcpListener`] or a [`std::net::TcpListener`] is owned outright. An
/// `Arc<std::net::TcpListener>` lets a listener hand-off copy the socket while
/// it is served: keep only a [`Weak`](std::sync::Weak) of it, and upgrade that
/// at hand-off time ([`handoff::hand_over`](crate::handoff::hand_over)). Any
/// strong handle kept elsewhere keeps the socket open (and accepting into the
/// kernel's queue) after the loop stopped.
pub trait Listen {
    /// The socket, non-blocking, for the accept loop to own.
    fn into_socket(self) -> io::Result<Arc<std::net::TcpListener>>;
}

impl Listen for TcpListener {
    fn into_socket(self) -> io::Result<Arc<std::net::TcpListener>> {
        self.into_std().map(Arc::new)
    }
}

impl Listen for std::net::TcpListener {
    fn into_socket(self) -> io::Result<Arc<std::net::TcpListener>> {
        Arc::new(self).into_socket()
    }
}

impl Listen for Arc<std::net::TcpListener> {
    fn into_socket(self) -> io::Result<Arc<std::net::TcpListener>> {
        self.set_nonblocking(true)?;
        Ok(self)
    }
}

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
    // Accepted with our own `accept` (see there), on the same registration.
    // The socket closes when this function returns, unless a hand-off holds
    // a copy (see `Listen`).
    let registered = listener.into_socket().and_then(|l| {
        // SAFETY: the AsyncFd holds a strong handle of the listener, so the
        // descriptor it registers stays open, the same socket, until the
        // AsyncFd drops.
        unsafe { AsyncFd::register_with_interest(l, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)
    });
    let listener = match registered {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the listening socket; not accepting");
            return None;
        }
    };
    let parking = if shared.config.park_after.is_some() {
        // A mutex makes the service shareable with the parker's task (it is
        // only cloned under it).
        let respawn_service = std::sync::Mutex::new(service.clone());
        let respawn_shared = shared.clone();
        let respawn: Respawn = Arc::new(move |stream, resume, parker| {
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
    let slots = Slots::new(shared.config.max_connections);
    let mut backoff = MIN_BACKOFF;
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.acquire() => slot,
            never = make_room(&listener, &slots, parker.as_deref()) => match never {},
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = accept(&listener) => accepted,
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
async fn make_room(
    listener: &AsyncFd<Arc<std::net::TcpListener>>,
    slots: &Slots,
    parker: Option<&Parker>,
) -> std::convert::Infallible {
    loop {
        let Ok(mut ready) = listener.readable().await else {
            return std::future::pending().await;
        };
        if !crate::sock::has_pending_connection(listener.get_ref()) {
            // Readiness left from the last accept: nobody waits.
            ready.clear_ready();
            continue;
        }
        // Otherwise only looked at: the readiness stays for the accept.
        drop(ready);
        if slots.reclaim_longest_idle() {
            if let Some(parker) = parker {
                parker.close_reclaimed();
            }
        }
        tokio::time::sleep(RECLAIM_PAUSE).await;
    }
}

/// Accepts one connection. tokio's own `accept` marks the new socket readable
/// before the reactor has seen it, so the first read is tried at once; a client
/// that has not sent its request yet (most new connections under load) makes
/// that read find nothing, one wasted `recv` per connection. A stream built
/// from the accepted socket instead starts with no readiness: its first read
/// waits for the registration's first event, as nginx waits for it. (Clearing
/// the assumed readiness after tokio's accept is racy: on a multi-threaded
/// runtime the reactor may already have recorded a real event, which the
/// clear would lose, leaving the request unread.) Same syscalls: `accept4`,
/// then the registration.
async fn accept(
    listener: &AsyncFd<Arc<std::net::TcpListener>>,
) -> io::Result<(TcpStream, SocketAddr)> {
    const FLAGS: i32 = nix::libc::SOCK_NONBLOCK | nix::libc::SOCK_CLOEXEC;
    loop {
        let mut ready = listener.readable().await?;
        let accepted = ready.try_io(|l| socket2::SockRef::from(l.get_ref()).accept4(FLAGS));
        match accepted {
            Ok(Ok((socket, peer))) => {
                let peer = peer.as_socket().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "accepted a non-IP socket")
                })?;
                let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
                return Ok((stream, peer));
            }
            Ok(Err(e)) => return Err(e),
            // Nothing waiting after all: readiness cleared, wait again.
            Err(_would_block) => continue,
        }
    }
}

/// Runs a connection in its own task, until it closes or parks.
fn spawn_connection<S, B>(
    stream: TcpStream,
    resume: Resume,
    service: S,
    shared: Arc<Shared>,
    parker: Option<Arc<Parker>>,
) where
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
