//! Body decoders for received messages: length, chunked and close-delimited.
//!
//! A decoder exists only while a body is being read. Data is split off the
//! receive buffer as [`Bytes`], never copied. Every count is overflow-checked and
//! every buffer bounded by [`Config`]; the end of input inside a length or chunked
//! body is [`ErrorKind::Truncated`], never a clean end.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::framing::Framing;
use crate::head::parse::{find_head_end, parse_fields};

/// What one decoding step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes (never empty).
    Data(Bytes),
    /// The body ended; trailers if a chunked body carried any.
    End(Option<HeaderMap>),
    /// The buffer holds no complete step; more input is needed.
    NeedData,
}

/// Decodes one body.
#[derive(Debug, Clone)]
pub struct Decoder {
    kind: Kind,
    received: u64,
}

#[derive(Debug, Clone)]
enum Kind {
    Length { remaining: u64, declared: u64 },
    Chunked(Chunked),
    UntilClose,
    Ended,
}

/// Where a chunked decoder is inside the stream (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy)]
enum Chunked {
    /// Expecting a chunk-size line.
    SizeLine,
    /// Inside chunk data.
    Data { remaining: u64 },
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: expecting the trailer section; `scanned` bytes of it
    /// were already searched for its end.
    Trailers { scanned: usize },
}

impl Decoder {
    /// A decoder for `framing`.
    pub fn new(framing: Framing) -> Self {
        let kind = match framing {
            Framing::None | Framing::Length(0) => Kind::Length {
                remaining: 0,
                declared: 0,
            },
            Framing::Length(n) => Kind::Length {
                remaining: n,
                declared: n,
            },
            Framing::Chunked => Kind::Chunked(Chunked::SizeLine),
            Framing::UntilClose => Kind::UntilClose,
        };
        Decoder { kind, received: 0 }
    }

    /// Body bytes produced so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Body bytes still to come, when the framing says.
    pub fn remaining(&self) -> Option<u64> {
        match self.kind {
            Kind::Length { remaining, .. } => Some(remaining),
            Kind::Ended => Some(0),
            Kind::Chunked(_) | Kind::UntilClose => None,
        }
    }

    /// Whether the body ends only when the connection closes.
    pub fn is_close_delimited(&self) -> bool {
        matches!(self.kind, Kind::UntilClose)
    }

    /// Whether the body has been read to its end.
    pub fn is_ended(&self) -> bool {
        matches!(self.kind, Kind::Ended)
    }

    /// Takes the next step out of `buf`. `eof` says no byte will follow what
    /// `buf` holds.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        eof: bool,
        config: &Config,
    ) -> Result<Decoded, Error> {
        let step = match &mut self.kind {
            Kind::Ended => return Err(Error::local(ErrorKind::IllegalCall("body already ended"))),
            Kind::Length { remaining: 0, .. } => {
                self.kind = Kind::Ended;
                return Ok(Decoded::End(None));
            }
            Kind::Length {
                remaining,
                declared,
            } => {
                if buf.is_empty() {
                    return if eof {
                        Err(Error::remote(ErrorKind::Truncated {
                            expected: Some(*declared),
                            received: self.received,
                        }))
                    } else {
                        Ok(Decoded::NeedData)
                    };
                }
                let n = (*remaining).min(buf.len() as u64);
                *remaining -= n;
                Decoded::Data(buf.split_to(n as usize).freeze())
            }
            Kind::UntilClose => {
                if !buf.is_empty() {
                    Decoded::Data(buf.split().freeze())
                } else if eof {
                    self.kind = Kind::Ended;
                    return Ok(Decoded::End(None));
                } else {
                    return Ok(Decoded::NeedData);
                }
            }
            Kind::Chunked(state) => {
                let step = chunked_step(state, buf, config)?;
                if matches!(step, Decoded::NeedData) && eof {
                    return Err(Error::remote(ErrorKind::Truncated {
                        expected: None,
                        received: self.received,
                    }));
                }
                if matches!(step, Decoded::End(_)) {
                    self.kind = Kind::Ended;
                }
                step
            }
        };
        if let Decoded::Data(data) = &step {
            self.received += data.len() as u64;
            if let Some(limit) = config.max_body_bytes {
                if self.received > limit {
                    return Err(Error::remote(ErrorKind::BodyTooLarge { limit }));
                }
            }
        }
        Ok(step)
    }
}

/// One step of the chunked decoder: loops over framing lines until it has data,
/// the end, or needs more input.
fn chunked_step(
    state: &mut Chunked,
    buf: &mut BytesMut,
    config: &Config,
) -> Result<Decoded, Error> {
    loop {
        match state {
            Chunked::SizeLine => {
                let Some(lf) = memchr::memchr(b'\n', buf) else {
                    if buf.len() > config.max_chunk_line_bytes {
                        return Err(Error::remote(ErrorKind::ChunkLineTooLong {
                            limit: config.max_chunk_line_bytes,
                        }));
                    }
                    return Ok(Decoded::NeedData);
                };
                if lf + 1 > config.max_chunk_line_bytes {
                    return Err(Error::remote(ErrorKind::ChunkLineTooLong {
                        limit: config.max_chunk_line_bytes,
                    }));
                }
                let size = parse_chunk_line(&buf[..lf])?;
                let _ = buf.split_to(lf + 1);
                *state = if size == 0 {
                    Chunked::Trailers { scanned: 0 }
                } else {
                    Chunked::Data { remaining: size }
                };
            }
            Chunked::Data { remaining } => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedData);
                }
                let n = (*remaining).min(buf.len() as u64);
                *remaining -= n;
                if *remaining == 0 {
                    *state = Chunked::DataEnd;
                }
                return Ok(Decoded::Data(buf.split_to(n as usize).freeze()));
            }
            Chunked::DataEnd => match &buf[..buf.len().min(2)] {
                b"\r\n" => {
                    let _ = buf.split_to(2);
                    *state = Chunked::SizeLine;
                }
                [] | b"\r" => return Ok(Decoded::NeedData),
                _ => return Err(Error::remote(ErrorKind::BadChunkData)),
            },
            Chunked::Trailers { scanned } => {
                let end = find_head_end(buf, scanned).map_err(Error::remote)?;
                let Some(end) = end else {
                    if buf.len() > config.max_trailer_bytes {
                        return Err(Error::remote(ErrorKind::TrailersTooLarge {
                            limit: config.max_trailer_bytes,
                        }));
                    }
                    return Ok(Decoded::NeedData);
                };
                if end > config.max_trailer_bytes {
                    return Err(Error::remote(ErrorKind::TrailersTooLarge {
                        limit: config.max_trailer_bytes,
                    }));
                }
                let block = buf.split_to(end).freeze();
                if end == 2 {
                    return Ok(Decoded::End(None));
                }
                let trailers =
                    parse_fields(&block, config.max_fields).map_err(|e| match e.kind() {
                        ErrorKind::TooManyFields { .. } => {
                            Error::remote(ErrorKind::TrailersTooLarge {
                                limit: config.max_trailer_bytes,
                            })
                        }
                        _ => e,
                    })?;
                return Ok(Decoded::End(Some(trailers)));
            }
        }
    }
}

/// Parses `chunk-size [ chunk-ext ] CR` (the LF already cut off): hex digits with
/// an overflow check, then optional extensions, which are checked for stray
/// bytes and ignored (RFC 9112 §7.1.1).
fn parse_chunk_line(line: &[u8]) -> Result<u64, Error> {
    let bad = || Error::remote(ErrorKind::BadChunkSize);
    let Some((b'\r', line)) = line.split_last() else {
        return Err(Error::remote(ErrorKind::BareLf));
    };
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(bad());
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let v = (b as char).to_digit(16).ok_or_else(bad)? as u64;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(v))
            .ok_or(Error::remote(ErrorKind::ChunkSizeOverflow))?;
    }
    let rest = &line[digits..];
    let ext_start = rest.iter().position(|&b| b != b' ' && b != b'\t');
    match ext_start {
        None if rest.is_empty() => Ok(size),
        // Whitespace is only allowed before an extension (BWS ";").
        None => Err(bad()),
        Some(i) if rest[i] == b';' => {
            // Extensions: any visible bytes, spaces and tabs; no other controls.
            if rest[i..]
                .iter()
                .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
            {
                Ok(size)
            } else {
                Err(bad())
            }
        }
        Some(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(
        framing: Framing,
        input: &[u8],
        eof: bool,
    ) -> Result<(Vec<u8>, Option<HeaderMap>), Error> {
        let config = Config::default();
        let mut d = Decoder::new(framing);
        let mut buf = BytesMut::from(input);
        let mut body = Vec::new();
        loop {
            match d.decode(&mut buf, eof, &config)? {
                Decoded::Data(b) => body.extend_from_slice(&b),
                Decoded::End(t) => return Ok((body, t)),
                Decoded::NeedData => panic!("needs data"),
            }
        }
    }

    // RFC 9112 §7.1: chunks, extensions, trailers.
    #[test]
    fn chunked_with_extensions_and_trailers() {
        let (body, trailers) = decode_all(
            Framing::Chunked,
            b"5;a=b;c=\"d e\"\r\nhello\r\n6 ;x\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(trailers.unwrap()["x-sum"], "1");
    }

    #[test]
    fn chunk_line_rules() {
        assert_eq!(parse_chunk_line(b"ff\r"), Ok(255));
        assert_eq!(parse_chunk_line(b"FFFFFFFFFFFFFFFF\r"), Ok(u64::MAX));
        let kind = |l: &[u8]| parse_chunk_line(l).unwrap_err().kind().clone();
        assert_eq!(kind(b"10000000000000000\r"), ErrorKind::ChunkSizeOverflow);
        assert_eq!(kind(b"\r"), ErrorKind::BadChunkSize);
        assert_eq!(kind(b"x1\r"), ErrorKind::BadChunkSize);
        assert_eq!(kind(b"-1\r"), ErrorKind::BadChunkSize);
        assert_eq!(kind(b"1 \r"), ErrorKind::BadChunkSize);
        assert_eq!(kind(b"1x\r"), ErrorKind::BadChunkSize);
        assert_eq!(kind(b"0x1\r"), ErrorKind::BadChunkSize);
        assert_eq!(kind(b"1;a\0\r"), ErrorKind::BadChunkSize);
        assert_eq!(kind(b"1"), ErrorKind::BareLf);
    }

    #[test]
    fn truncation_is_an_error() {
        let e = decode_all(Framing::Length(10), b"12345", true).unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::Truncated {
                expected: Some(10),
                received: 5
            }
        );
        let e = decode_all(Framing::Chunked, b"5\r\nhello\r\n", true).unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::Truncated {
                expected: None,
                received: 5
            }
        );
        assert_eq!(
            decode_all(Framing::UntilClose, b"abc", true).unwrap().0,
            b"abc"
        );
    }

    #[test]
    fn limits_are_enforced_at_and_past_the_limit() {
        let config = Config {
            max_chunk_line_bytes: 8,
            max_trailer_bytes: 16,
            max_body_bytes: Some(4),
            ..Config::default()
        };
        let run = |framing, input: &[u8]| {
            let mut d = Decoder::new(framing);
            let mut buf = BytesMut::from(input);
            loop {
                match d.decode(&mut buf, false, &config) {
                    Ok(Decoded::End(_)) => return Ok(()),
                    Ok(Decoded::NeedData) => return Ok(()),
                    Ok(Decoded::Data(_)) => {}
                    Err(e) => return Err(e.kind().clone()),
                }
            }
        };
        // A chunk line of exactly 8 bytes passes, 9 fails.
        assert_eq!(
            run(Framing::Chunked, b"4;abcd\r\nabcd\r\n0\r\n\r\n"),
            Ok(())
        );
        assert!(matches!(
            run(Framing::Chunked, b"4;abcde\r\nabcd\r\n"),
            Err(ErrorKind::ChunkLineTooLong { .. })
        ));
        // Without a line end the limit applies too: endless extensions stop.
        assert!(matches!(
            run(Framing::Chunked, b"4;aaaaaaaaaaaa"),
            Err(ErrorKind::ChunkLineTooLong { .. })
        ));
        // The body limit: 4 bytes pass, 5 fail.
        assert!(matches!(
            run(Framing::Chunked, b"5\r\nabcde\r\n"),
            Err(ErrorKind::BodyTooLarge { limit: 4 })
        ));
        // Trailers: 16 bytes pass, 17 fail.
        assert_eq!(run(Framing::Chunked, b"0\r\nX-A: 1234567\r\n\r\n"), Ok(()));
        assert!(matches!(
            run(Framing::Chunked, b"0\r\nX-A: 12345678\r\n\r\n"),
            Err(ErrorKind::TrailersTooLarge { .. })
        ));
    }
}
