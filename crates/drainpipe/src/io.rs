//! The only transport reads and writes: reads land straight in the
//! connection's receive buffer, writes take the whole outgoing queue in one
//! call (vectored when it is several buffers, a plain `send` when it is one).
//! Generic over [`Transport`]: a socket's fast paths (waiting for readiness
//! before taking a buffer, a write that registers no waker) come from its
//! implementation of the trait.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use proto::WriteBuf;
use tokio::io::AsyncWrite;

use crate::transport::Transport;

/// Bytes reserved before each read.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// Most iovecs handed to one `writev`.
const MAX_IOVECS: usize = 32;

/// Reads once into `buf`: the count read, 0 at EOF.
///
/// Memory is taken only when bytes are there to read: with nothing buffered,
/// it waits for readiness first, and gives the buffer back if the read finds
/// nothing after all. So a connection waiting for its next request holds no
/// read buffer. A read that returns less than it asked for marks the socket not
/// ready (it was drained), so no extra `recv` ends in `EAGAIN`.
pub(crate) fn poll_read_buf<T: Transport>(
    stream: &mut T,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.is_empty() {
        std::task::ready!(stream.poll_read_ready(cx))?;
    }
    if buf.capacity() == 0 {
        *buf = pool::take();
    }
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    match tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf) {
        Poll::Pending => {
            if buf.is_empty() {
                pool::give(std::mem::take(buf));
            }
            Poll::Pending
        }
        ready => ready,
    }
}

/// Reads once into `buf`.
pub(crate) async fn read_buf<T: Transport>(
    stream: &mut T,
    buf: &mut BytesMut,
) -> io::Result<usize> {
    poll_fn(|cx| poll_read_buf(stream, buf, cx)).await
}

/// Writes one buffer with a plain write (`send` on a socket), several with
/// one vectored write: a one-element `writev` costs the kernel an iovec
/// import for nothing.
#[inline]
pub(crate) fn poll_write_slices<W: AsyncWrite + ?Sized>(
    stream: Pin<&mut W>,
    cx: &mut Context<'_>,
    slices: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    match slices {
        [one] => stream.poll_write(cx, one),
        some => stream.poll_write_vectored(cx, some),
    }
}

/// Writes everything in `out`, one write per readiness (see
/// [`poll_write_slices`]), then flushes the transport.
pub(crate) fn poll_write_buf<T: Transport>(
    stream: &mut T,
    out: &mut WriteBuf,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while !out.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let n = out.chunks_vectored(&mut slices);
        match std::task::ready!(poll_write_slices(Pin::new(&mut *stream), cx, &slices[..n])) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(written) => out.advance(written),
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Pin::new(stream).poll_flush(cx)
}

/// Writes what `out` holds without waiting: `Ok(true)` when all of it went
/// out, `Ok(false)` when the socket is full (the rest needs
/// [`write_buf`]). A transport that buffers (TLS records not yet written)
/// is flushed too: `Ok(true)` means nothing is left anywhere.
#[inline]
pub(crate) fn try_write_buf<T: Transport>(stream: &mut T, out: &mut WriteBuf) -> io::Result<bool> {
    try_write_buf_by(stream, out, T::try_write_vectored)
}

/// [`try_write_buf`] for a connection's last bytes, the close following at
/// once ([`Transport::try_write_before_close`]: on TCP they and the FIN
/// leave in one segment).
pub(crate) fn try_write_before_close<T: Transport>(
    stream: &mut T,
    out: &mut WriteBuf,
) -> io::Result<bool> {
    try_write_buf_by(stream, out, T::try_write_before_close)
}

/// [`try_write_buf`] with `write` as the transport's write.
#[inline]
fn try_write_buf_by<T: Transport>(
    stream: &mut T,
    out: &mut WriteBuf,
    write: impl Fn(&mut T, &[IoSlice<'_>]) -> io::Result<usize>,
) -> io::Result<bool> {
    while !out.is_empty() {
        // Small responses are one copied piece: no array of slices to fill.
        let written = if out.chunk().len() == out.len() {
            write(stream, &[IoSlice::new(out.chunk())])
        } else {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = out.chunks_vectored(&mut slices);
            write(stream, &slices[..n])
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => out.advance(written),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match Pin::new(stream).poll_flush(&mut cx) {
        Poll::Ready(Ok(())) => Ok(true),
        Poll::Ready(Err(e)) => Err(e),
        Poll::Pending => Ok(false),
    }
}

/// Writes everything in `out`.
pub(crate) async fn write_buf<T: Transport>(stream: &mut T, out: &mut WriteBuf) -> io::Result<()> {
    poll_fn(|cx| poll_write_buf(stream, out, cx)).await
}

/// Buffers of [`READ_CHUNK`] bytes kept per thread, so connections give theirs
/// back whenever they go idle without paying an allocation for the next
/// request.
pub(crate) mod pool {
    use std::cell::RefCell;

    use bytes::BytesMut;

    use super::READ_CHUNK;

    /// Most buffers kept per thread (`KEEP` × `READ_CHUNK` bytes at most).
    const KEEP: usize = 64;

    thread_local! {
        static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    }

    /// A buffer with room for a read.
    pub(crate) fn take() -> BytesMut {
        FREE.with(|f| f.borrow_mut().pop())
            .unwrap_or_else(|| BytesMut::with_capacity(READ_CHUNK))
    }

    /// Gives an empty buffer back (dropped if the pool is full or it is small).
    pub(crate) fn give(mut buf: BytesMut) {
        if buf.capacity() < READ_CHUNK / 2 {
            return;
        }
        buf.clear();
        FREE.with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < KEEP {
                f.push(buf);
            }
        });
    }
}
