//! Body encoders for sent messages: the framing bytes around the payload.
//!
//! Payload is handed to the [`WriteBuf`] as [`Bytes`] and never copied when large;
//! the encoder adds only chunk lines and the terminator, and counts bytes so a
//! body that disagrees with its declared length is caught before it corrupts the
//! stream.

use bytes::{BufMut, Bytes};
use http::HeaderMap;

use crate::error::{Error, ErrorKind};
use crate::framing::Framing;
use crate::head::write;
use crate::write_buf::WriteBuf;

/// Encodes one body.
#[derive(Debug, Clone)]
pub struct Encoder {
    framing: Framing,
    sent: u64,
}

impl Encoder {
    /// An encoder for `framing`.
    pub fn new(framing: Framing) -> Self {
        Encoder { framing, sent: 0 }
    }

    /// The framing this encoder writes.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Writes `data` with its framing. Empty data writes nothing (a zero-size
    /// chunk would end the body).
    pub fn data(&mut self, data: Bytes, out: &mut WriteBuf) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        let len = data.len() as u64;
        match self.framing {
            Framing::None => return Err(Error::local(ErrorKind::BodyNotAllowed)),
            Framing::Length(declared) => {
                if self.sent + len > declared {
                    return Err(Error::local(ErrorKind::BodyLengthMismatch {
                        declared,
                        sent: self.sent + len,
                    }));
                }
                out.put_bytes(data);
            }
            Framing::Chunked => {
                chunk_size_line(len, out);
                out.put_bytes(data);
                out.put_slice(b"\r\n");
            }
            Framing::UntilClose => out.put_bytes(data),
        }
        self.sent += len;
        Ok(())
    }

    /// Ends the body: checks the length, or writes the last chunk and the trailers.
    /// Trailers are written only with chunked framing and dropped otherwise
    /// (trailers are optional metadata, RFC 9110 §6.5).
    pub fn end(&mut self, trailers: Option<&HeaderMap>, out: &mut WriteBuf) -> Result<(), Error> {
        match self.framing {
            Framing::Length(declared) if self.sent != declared => {
                Err(Error::local(ErrorKind::BodyLengthMismatch {
                    declared,
                    sent: self.sent,
                }))
            }
            Framing::Chunked => {
                let mark = out.tail_len();
                let tail = out.tail_mut();
                tail.put_slice(b"0\r\n");
                for (name, value) in trailers.into_iter().flatten() {
                    write::field(name.as_str().as_bytes(), value.as_bytes(), tail);
                }
                tail.put_slice(b"\r\n");
                out.commit_tail(mark, true);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Writes the minimal chunk-size line: lowercase hex, no leading zeros.
fn chunk_size_line(len: u64, out: &mut WriteBuf) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut line = [0u8; 18];
    let mut i = 16;
    let mut v = len;
    loop {
        i -= 1;
        line[i] = HEX[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    line[16] = b'\r';
    line[17] = b'\n';
    out.put_slice(&line[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    fn drain(out: &mut WriteBuf) -> Vec<u8> {
        let mut v = Vec::new();
        while out.has_remaining() {
            v.extend_from_slice(out.chunk());
            let n = out.chunk().len();
            out.advance(n);
        }
        v
    }

    #[test]
    fn chunked_minimal_lines_and_terminator() {
        let mut out = WriteBuf::new();
        let mut e = Encoder::new(Framing::Chunked);
        e.data(Bytes::from_static(b"hello"), &mut out).unwrap();
        e.data(Bytes::new(), &mut out).unwrap();
        e.data(Bytes::from(vec![b'a'; 300]), &mut out).unwrap();
        let mut t = HeaderMap::new();
        t.insert("x-sum", "7".parse().unwrap());
        e.end(Some(&t), &mut out).unwrap();
        let mut expected = b"5\r\nhello\r\n12c\r\n".to_vec();
        expected.extend_from_slice(&[b'a'; 300]);
        expected.extend_from_slice(b"\r\n0\r\nx-sum: 7\r\n\r\n");
        assert_eq!(drain(&mut out), expected);
    }

    #[test]
    fn length_mismatch_caught_both_ways() {
        let mut out = WriteBuf::new();
        let mut e = Encoder::new(Framing::Length(3));
        assert!(e.data(Bytes::from_static(b"abcd"), &mut out).is_err());
        e.data(Bytes::from_static(b"ab"), &mut out).unwrap();
        assert_eq!(
            e.end(None, &mut out).unwrap_err().kind(),
            &ErrorKind::BodyLengthMismatch {
                declared: 3,
                sent: 2
            }
        );
        let mut e = Encoder::new(Framing::None);
        assert_eq!(
            e.data(Bytes::from_static(b"x"), &mut out)
                .unwrap_err()
                .kind(),
            &ErrorKind::BodyNotAllowed
        );
    }
}
