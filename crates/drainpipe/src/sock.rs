//! The graceful close, over any [`Transport`], and listening sockets:
//! readiness, deferred accepts.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::BytesMut;

use crate::transport::Transport;

/// How a closing side lingers: it shuts down its write side, then reads and
/// discards what the peer still sends until EOF, `timeout` or `max_bytes`,
/// then closes. This keeps the kernel from answering unread input with a reset
/// that would destroy responses the peer has not read yet.
#[derive(Debug, Clone, Copy)]
pub struct Linger {
    /// The longest wait for the peer's EOF.
    pub timeout: Duration,
    /// The most bytes read and discarded.
    pub max_bytes: usize,
}

impl Default for Linger {
    fn default() -> Self {
        Linger {
            timeout: Duration::from_secs(2),
            max_bytes: 256 * 1024,
        }
    }
}

/// Whether a connection waits in `listener`'s accept queue, asked of the
/// kernel (`poll` with no wait) rather than of the reactor, whose readiness
/// stays set after a successful accept.
pub(crate) fn has_pending_connection<L: std::os::fd::AsFd>(listener: &L) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// How long the kernel holds a connection that has sent nothing while
/// accepts are deferred ([`defer_accept`]); then it is accepted anyway, and
/// the head timeout starts.
pub const DEFER_ACCEPT_HOLD: Duration = Duration::from_secs(1);

/// Defers the accepts of a TCP listening socket (`on`) until each new
/// connection's first bytes arrive, as h2o does by default and nginx's
/// `listen … deferred` (Linux `TCP_DEFER_ACCEPT`); `false` turns it off.
///
/// HTTP clients speak first (a request, a TLS ClientHello, a PROXY header),
/// so nothing is lost: the kernel completes the handshake, keeps the
/// connection out of the accept queue until it has a request to read, and
/// the process is woken once per connection instead of twice (the accept,
/// then the request). A connection that sends nothing is held by the kernel
/// for [`DEFER_ACCEPT_HOLD`] (no descriptor, no connection slot), then
/// accepted like any other and closed by the head timeout. A client that
/// waits for the server to speak first (not HTTP) would wait that long.
///
/// Applies to sockets bound by anyone (the CLI sets it on every TCP listener
/// unless `[server] defer_accept = false`). Does nothing on other systems.
pub fn defer_accept(listener: &std::net::TcpListener, on: bool) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let secs: nix::libc::c_int = if on {
            DEFER_ACCEPT_HOLD.as_secs() as nix::libc::c_int
        } else {
            0
        };
        // SAFETY: the descriptor is the listener's, open for the call; the
        // value is a live c_int of the length given.
        let rc = unsafe {
            nix::libc::setsockopt(
                listener.as_raw_fd(),
                nix::libc::IPPROTO_TCP,
                nix::libc::TCP_DEFER_ACCEPT,
                std::ptr::from_ref(&secs).cast(),
                std::mem::size_of_val(&secs) as nix::libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (listener, on);
    Ok(())
}

/// Shuts down the write side now (our FIN follows everything written), for a
/// close that waits for nothing; a transport whose half-close must wait (it
/// has something to send first) is simply dropped after one try.
pub(crate) fn shutdown_write_now<T: Transport>(stream: &mut T) {
    let mut cx = Context::from_waker(Waker::noop());
    let _ = Pin::new(stream).poll_shutdown(&mut cx);
}

/// Closes `stream` gracefully (see [`Linger`]): everything already written
/// reaches the peer before any reset can. Ends when the peer closes its side,
/// or when the linger timeout or byte limit runs out.
pub(crate) async fn graceful_close<T: Transport>(mut stream: T, linger: Linger) {
    let drain = async {
        if poll_fn(|cx| Pin::new(&mut stream).poll_shutdown(cx))
            .await
            .is_err()
        {
            return;
        }
        let mut buf = BytesMut::with_capacity(4096);
        let mut discarded = 0usize;
        loop {
            buf.clear();
            match crate::io::read_buf(&mut stream, &mut buf).await {
                Ok(n) if n > 0 && discarded + n < linger.max_bytes => discarded += n,
                // EOF, the byte limit, or an error.
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(linger.timeout, drain).await;
}

/// Closes `stream` without waiting: for a peer that stopped reading (a write
/// timed out), which neither another write nor a linger can reach, and for an
/// idle connection closed to make room (nothing owed, nothing to wait for). Input already
/// received is read and discarded first (up to the linger byte limit, without
/// waiting for more), so the close is a FIN queued behind what was written,
/// not a reset that would destroy responses the peer has not read yet.
pub(crate) fn close_now<T: Transport>(mut stream: T, linger: Linger) {
    let mut buf = [0u8; 4096];
    let mut discarded = 0usize;
    while discarded < linger.max_bytes {
        match stream.read_now(&mut buf) {
            Ok(n) if n > 0 => discarded += n,
            _ => break,
        }
    }
    close_plainly(stream);
}

/// Closes `stream` at once, after a goodbye if its protocol has one (TLS's
/// close_notify, written without waiting): a socket's close is its FIN,
/// and a TLS stream dropped without close_notify would look cut.
pub(crate) fn close_plainly<T: Transport>(mut stream: T) {
    if stream.is_tls() {
        shutdown_write_now(&mut stream);
    }
    drop(stream);
}

/// Drops `stream` with a reset instead of a FIN (`SO_LINGER` 0): for fault
/// injection only.
pub(crate) fn reset<T: Transport>(stream: T) {
    stream.reset_on_close();
    drop(stream);
}
