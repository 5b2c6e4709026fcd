//! Serialising heads into the caller's buffer.
//!
//! These write exactly what they are given; which framing and persistence fields a
//! message carries is decided by the [`Connection`](crate::Connection), which
//! calls them.

use bytes::{BufMut, BytesMut};
use http::{Method, StatusCode, Version};

/// Writes `HTTP/1.1 <code> <reason>\r\n`.
///
/// A server always names HTTP/1.1, its own version, whatever the request's
/// (RFC 9110 §2.5).
pub fn status_line(status: StatusCode, dst: &mut BytesMut) {
    let line: &[u8] = match status.as_u16() {
        200 => b"HTTP/1.1 200 OK\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        304 => b"HTTP/1.1 304 Not Modified\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        _ => {
            dst.put_slice(b"HTTP/1.1 ");
            dst.put_slice(status.as_str().as_bytes());
            dst.put_u8(b' ');
            dst.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
            dst.put_slice(b"\r\n");
            return;
        }
    };
    dst.put_slice(line);
}

/// A reason phrase to send instead of the status code's canonical one (put it
/// in a response's extensions), e.g. `200 Connection established`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonPhrase(&'static str);

impl ReasonPhrase {
    /// A phrase of visible characters, spaces and tabs; `None` otherwise.
    pub fn new(text: &'static str) -> Option<Self> {
        text.bytes()
            .all(|b| b == b'\t' || b == b' ' || (0x21..0x7f).contains(&b))
            .then_some(ReasonPhrase(text))
    }

    /// The phrase.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Writes `HTTP/1.1 <code> <reason>\r\n` with a chosen reason phrase.
pub fn status_line_with(status: StatusCode, reason: &[u8], dst: &mut BytesMut) {
    dst.put_slice(b"HTTP/1.1 ");
    dst.put_slice(status.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(reason);
    dst.put_slice(b"\r\n");
}

/// Writes `<method> <target> HTTP/1.x\r\n`.
pub fn request_line(method: &Method, target: &[u8], version: Version, dst: &mut BytesMut) {
    dst.put_slice(method.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(target);
    dst.put_slice(if version == Version::HTTP_10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
}

/// Writes one field line `<name>: <value>\r\n`.
pub fn field(name: &[u8], value: &[u8], dst: &mut BytesMut) {
    dst.put_slice(name);
    dst.put_slice(b": ");
    dst.put_slice(value);
    dst.put_slice(b"\r\n");
}

/// Writes `content-length: <n>\r\n`.
pub fn content_length(n: u64, dst: &mut BytesMut) {
    let mut digits = [0u8; 20];
    field(b"content-length", decimal(n, &mut digits), dst);
}

/// Writes `keep-alive: timeout=T, max=M\r\n` (either part left out when
/// `None`; nothing when both are), without formatting machinery: it goes on
/// every response to an HTTP/1.0 keep-alive client.
pub fn keep_alive(timeout_secs: Option<u32>, max: Option<u32>, dst: &mut BytesMut) {
    KeepAliveLine::default().write(timeout_secs, max, dst);
}

/// A `keep-alive` line as last written on a connection: the same parameters
/// give the same bytes, so a server that announces its idle timeout on every
/// response formats the line once, not per response.
#[derive(Debug, Clone, Copy)]
pub struct KeepAliveLine {
    /// The parameters `line` holds (`None`: nothing written yet).
    params: Option<(Option<u32>, Option<u32>)>,
    line: [u8; 48],
    len: u8,
}

impl Default for KeepAliveLine {
    fn default() -> Self {
        KeepAliveLine {
            params: None,
            line: [0; 48],
            len: 0,
        }
    }
}

impl KeepAliveLine {
    /// Writes the line for `timeout_secs` and `max` (see [`keep_alive`]),
    /// formatting it only when they differ from the last ones.
    #[inline]
    pub fn write(&mut self, timeout_secs: Option<u32>, max: Option<u32>, dst: &mut BytesMut) {
        if self.params != Some((timeout_secs, max)) {
            self.format(timeout_secs, max);
        }
        dst.put_slice(&self.line[..usize::from(self.len)]);
    }

    fn format(&mut self, timeout_secs: Option<u32>, max: Option<u32>) {
        self.params = Some((timeout_secs, max));
        self.len = 0;
        if timeout_secs.is_none() && max.is_none() {
            return;
        }
        // At most 12 + 8 + 10 + 2 + 4 + 10 + 2 = 48 bytes.
        let mut len = 0;
        let line = &mut self.line;
        let mut push = |bytes: &[u8]| {
            line[len..len + bytes.len()].copy_from_slice(bytes);
            len += bytes.len();
        };
        let mut digits = [0u8; 20];
        push(b"keep-alive: ");
        if let Some(t) = timeout_secs {
            push(b"timeout=");
            push(decimal(t.into(), &mut digits));
        }
        if let Some(m) = max {
            if timeout_secs.is_some() {
                push(b", ");
            }
            push(b"max=");
            push(decimal(m.into(), &mut digits));
        }
        push(b"\r\n");
        self.len = len as u8;
    }
}

/// `n` in decimal ASCII, in the tail of `digits`.
fn decimal(n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &digits[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_parameters() {
        for (timeout, max, line) in [
            (
                Some(5),
                Some(100),
                &b"keep-alive: timeout=5, max=100\r\n"[..],
            ),
            (Some(0), None, b"keep-alive: timeout=0\r\n"),
            (None, Some(4294967295), b"keep-alive: max=4294967295\r\n"),
            (None, None, b""),
        ] {
            let mut dst = BytesMut::new();
            keep_alive(timeout, max, &mut dst);
            assert_eq!(&dst[..], line, "{timeout:?} {max:?}");
            // Kept and written again; then other parameters, then these again.
            let mut kept = KeepAliveLine::default();
            for (t, m) in [
                (timeout, max),
                (timeout, max),
                (Some(7), None),
                (timeout, max),
            ] {
                let mut dst = BytesMut::new();
                kept.write(t, m, &mut dst);
                let mut fresh = BytesMut::new();
                keep_alive(t, m, &mut fresh);
                assert_eq!(dst, fresh, "{t:?} {m:?}");
            }
            // The same value as the parsed-and-formatted field.
            let value = crate::fields::KeepAliveParams {
                timeout_secs: timeout,
                max,
            }
            .to_value();
            let expected = value.map(|v| format!("keep-alive: {}\r\n", v.to_str().unwrap()));
            assert_eq!(expected.unwrap_or_default().as_bytes(), line);
        }
    }

    #[test]
    fn lines() {
        let mut b = BytesMut::new();
        status_line(StatusCode::OK, &mut b);
        status_line(StatusCode::from_u16(431).unwrap(), &mut b);
        status_line(StatusCode::from_u16(599).unwrap(), &mut b);
        request_line(&Method::GET, b"/x?y", Version::HTTP_10, &mut b);
        content_length(0, &mut b);
        content_length(u64::MAX, &mut b);
        assert_eq!(
            &b[..],
            &b"HTTP/1.1 200 OK\r\nHTTP/1.1 431 Request Header Fields Too Large\r\n\
HTTP/1.1 599 Unknown\r\nGET /x?y HTTP/1.0\r\ncontent-length: 0\r\n\
content-length: 18446744073709551615\r\n"[..]
        );
    }
}
