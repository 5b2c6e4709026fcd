//! The outgoing byte queue a [`Connection`](crate::Connection) writes into.
//!
//! Heads, chunk lines and small payloads are copied into one contiguous tail
//! (cheaper than an extra iovec); payloads of [`WriteBuf::COPY_MAX`] bytes or
//! more are queued by reference, never copied. The driver writes the queue out
//! with one vectored write ([`WriteBuf::chunks_vectored`]), so responses that
//! are ready together leave in one system call.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Outgoing bytes: a queue of frozen segments followed by a growable tail.
#[derive(Debug, Default)]
pub struct WriteBuf {
    queue: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl WriteBuf {
    /// Payloads at least this long are queued by reference instead of copied.
    pub const COPY_MAX: usize = 1024;

    /// An empty buffer; it allocates nothing until bytes are put in.
    pub fn new() -> Self {
        WriteBuf::default()
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The contiguous tail, for writing a head into; call
    /// [`WriteBuf::commit_tail`] afterwards so the length is counted.
    pub(crate) fn tail_mut(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    /// The tail's length before a head is written, to roll back on error.
    pub(crate) fn tail_len(&self) -> usize {
        self.tail.len()
    }

    /// Counts what was written into the tail since it was `mark` long, or
    /// (with `keep == false`) drops it.
    pub(crate) fn commit_tail(&mut self, mark: usize, keep: bool) {
        if keep {
            self.len += self.tail.len() - mark;
        } else {
            self.tail.truncate(mark);
        }
    }

    /// Appends a copy of `bytes`.
    pub fn put_slice(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Appends `bytes`, by reference when large.
    pub fn put_bytes(&mut self, bytes: Bytes) {
        if bytes.len() < Self::COPY_MAX {
            self.put_slice(&bytes);
            return;
        }
        self.len += bytes.len();
        if !self.tail.is_empty() {
            self.queue.push_back(self.tail.split().freeze());
        }
        self.queue.push_back(bytes);
    }

    /// Gives back all memory when nothing is waiting (an idle connection holds no
    /// buffer).
    pub fn release(&mut self) {
        if self.is_empty() {
            *self = WriteBuf::default();
        }
    }

    /// Takes the storage out when nothing is waiting, for a driver that keeps
    /// buffers in a pool (so an idle connection holds none and a busy one does
    /// not allocate for each response).
    pub fn take_storage(&mut self) -> Option<BytesMut> {
        if !self.is_empty() || self.tail.capacity() == 0 {
            return None;
        }
        self.queue = VecDeque::new();
        Some(std::mem::take(&mut self.tail))
    }

    /// Gives storage to a buffer that has none (it is cleared first).
    pub fn give_storage(&mut self, mut storage: BytesMut) {
        if self.tail.capacity() == 0 && self.tail.is_empty() {
            storage.clear();
            self.tail = storage;
        }
    }

    /// Bytes the contiguous tail can take before it grows.
    pub fn spare_capacity(&self) -> usize {
        self.tail.capacity() - self.tail.len()
    }

    /// Drops everything waiting.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.tail.clear();
        self.len = 0;
    }
}

impl Buf for WriteBuf {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        match self.queue.front() {
            Some(b) => b,
            None => &self.tail,
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len, "advance past the end of a WriteBuf");
        self.len -= cnt;
        while cnt > 0 {
            match self.queue.front_mut() {
                Some(front) if cnt >= front.len() => {
                    cnt -= front.len();
                    self.queue.pop_front();
                }
                Some(front) => {
                    front.advance(cnt);
                    return;
                }
                None => {
                    self.tail.advance(cnt);
                    return;
                }
            }
        }
        if self.len == 0 {
            // Reuse the tail's allocation from its start.
            self.tail.clear();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for seg in self.queue.iter().map(|b| &b[..]).chain([&self.tail[..]]) {
            if n == dst.len() {
                break;
            }
            if !seg.is_empty() {
                dst[n] = IoSlice::new(seg);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_kept_across_copied_and_queued_parts() {
        let mut w = WriteBuf::new();
        w.put_slice(b"head\r\n");
        let big = Bytes::from(vec![b'x'; WriteBuf::COPY_MAX]);
        w.put_bytes(big.clone());
        w.put_slice(b"\r\n");
        w.put_bytes(Bytes::from_static(b"small"));
        let mut expected = b"head\r\n".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"\r\nsmall");
        assert_eq!(w.len(), expected.len());
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(w.chunks_vectored(&mut slices), 3);
        let mut out = Vec::new();
        while w.has_remaining() {
            let c = w.chunk().len().min(7);
            out.extend_from_slice(&w.chunk()[..c]);
            w.advance(c);
        }
        assert_eq!(out, expected);
        w.release();
        assert_eq!(w.tail.capacity(), 0);
    }
}
