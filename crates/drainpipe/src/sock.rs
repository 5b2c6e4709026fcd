//! Socket options and the graceful close.

use std::io;
use std::net::Shutdown;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;

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

/// Turns Nagle off: drainpipe coalesces its own writes, so small segments never
/// wait for an ACK (no Nagle/delayed-ACK stalls).
pub(crate) fn set_nodelay(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
}

/// Shuts down the write side (our FIN follows everything written).
pub(crate) fn shutdown_write(stream: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(stream).shutdown(Shutdown::Write)
}

/// Whether input (or an EOF) is waiting on `stream`, asked of the kernel with
/// a non-blocking peek rather than of the reactor, whose readiness may lag.
pub(crate) fn has_input<S: std::os::fd::AsFd>(stream: &S) -> bool {
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    socket2::SockRef::from(stream).peek(&mut probe).is_ok()
}

/// Whether a connection waits in `listener`'s accept queue, asked of the
/// kernel (`poll` with no wait) rather than of the reactor, whose readiness
/// stays set after a successful accept.
pub(crate) fn has_pending_connection<L: std::os::fd::AsFd>(listener: &L) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// Closes `stream` gracefully (see [`Linger`]): everything already written
/// reaches the peer before any reset can. Ends when the peer closes its side,
/// or when the linger timeout or byte limit runs out.
pub(crate) async fn graceful_close(mut stream: TcpStream, linger: Linger) {
    if shutdown_write(&stream).is_err() {
        return;
    }
    let drain = async {
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
pub(crate) fn close_now(stream: TcpStream, linger: Linger) {
    let sock = socket2::SockRef::from(&stream);
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut discarded = 0usize;
    // The socket is non-blocking: a recv finds what is there and stops.
    while discarded < linger.max_bytes {
        match sock.recv(&mut buf) {
            Ok(n) if n > 0 => discarded += n,
            _ => break,
        }
    }
    drop(stream);
}

/// Drops `stream` with a reset instead of a FIN (`SO_LINGER` 0): for fault
/// injection only.
pub(crate) fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}
