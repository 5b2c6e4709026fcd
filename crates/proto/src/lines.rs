//! [`FieldLines`]: a head's end-to-end fields kept as the text they are sent
//! as, for messages passed on without anyone reading their fields.
//!
//! A proxy forwards most fields untouched. Building an `http::HeaderMap` for
//! them (a name lookup, a hash and an insertion per field) and writing the map
//! out again costs more than the rest of the head's work; a `FieldLines` is the
//! `name: value\r\n` lines themselves, copied once from the received head with
//! the hop-by-hop fields left out, and written out with one copy.
//!
//! How the parts fit:
//!
//! - **Sending.** [`Connection::send_response`](crate::Connection::send_response)
//!   writes the head's header map, then the `FieldLines` found in its
//!   extensions, then the fields the connection owns (framing, persistence,
//!   `Date`). What the lines hold counts as if it were in the map: a
//!   `Content-Length` (kept beside the text, never in it) frames the message,
//!   a `Date` or `Host` is not added again.
//!   [`Connection::send_request`](crate::Connection::send_request) does the
//!   same with the lines of a [`Relay`] in the request's extensions.
//! - **Receiving.** A request sent with the [`Relay`] extension gets its
//!   final response (and a `101`) with an empty header map and the
//!   response's end-to-end fields as a `FieldLines` in the response's
//!   extensions: every field line in its order and case except the hop-by-hop
//!   ones ([`HopByHop`](crate::HopByHop)'s set, `Upgrade` kept on a `101`) and
//!   `Content-Length` (kept as [`FieldLines::content_length`]). The head is
//!   parsed and checked exactly as for a header map: same strictness, same
//!   framing and persistence facts. Interim (1xx) responses still come with a
//!   header map.
//! - **Reading one.** [`FieldLines::get`] and [`FieldLines::iter`] read the
//!   lines; [`FieldLines::append_to`] moves them into a header map for code
//!   that wants typed fields.

use bytes::BytesMut;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::FIELDS_CAP;
use crate::fields::{self, DeclaredLength, FieldKind, HeadFacts};

/// A request extension for a request passed on by a proxy (see the
/// [module docs](self)): `added`, the fields this hop adds, is written after
/// the head's map, and the final response's end-to-end fields come back as
/// [`FieldLines`] instead of a header map. One extension for both, so a
/// relayed request costs one insertion into its extensions.
#[derive(Debug, Clone, Default)]
pub struct Relay {
    /// Written after the head's map, counted as if the map held them.
    pub added: FieldLines,
}

/// End-to-end field lines, as text (see the [module docs](self)).
#[derive(Debug, Clone, Default)]
pub struct FieldLines {
    /// `name: value\r\n` per field, valid by construction.
    pub(crate) text: BytesMut,
    /// A `Content-Length` given to [`FieldLines::push`] or received.
    pub(crate) content_length: Option<u64>,
    /// A `Date` line is among the lines.
    pub(crate) date: bool,
    /// A `Host` line is among the lines.
    pub(crate) host: bool,
    /// An `Upgrade` line is among the lines.
    pub(crate) upgrade: bool,
    /// An `Expect: 100-continue` line is among the lines.
    pub(crate) expect_continue: bool,
}

/// Why [`FieldLines::push`] refused a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidLine {
    /// The name is empty or not a token (RFC 9110 §5.1).
    Name,
    /// The value holds a control character other than tab (RFC 9110 §5.5).
    Value,
    /// The connection writes this field itself (`Connection`, `Keep-Alive`,
    /// `Proxy-Connection`, `Transfer-Encoding`).
    OwnedByConnection,
    /// A `Content-Length` that is not a length, or differs from one given
    /// before.
    ContentLength,
}

impl std::fmt::Display for InvalidLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InvalidLine::Name => "invalid field name",
            InvalidLine::Value => "invalid field value",
            InvalidLine::OwnedByConnection => "a field the connection writes itself",
            InvalidLine::ContentLength => "an invalid or conflicting Content-Length",
        })
    }
}

impl std::error::Error for InvalidLine {}

impl FieldLines {
    /// No lines.
    pub fn new() -> Self {
        FieldLines::default()
    }

    /// No lines, with room for `bytes` of them.
    pub fn with_capacity(bytes: usize) -> Self {
        FieldLines {
            text: BytesMut::with_capacity(bytes),
            ..FieldLines::default()
        }
    }

    /// Appends the field `name: value` after the lines there are. A name
    /// already present gets another line: RFC 9110 §5.3 makes that the same
    /// as appending to its list. `Content-Length` is kept beside the text (the
    /// connection frames the message with it).
    pub fn push(&mut self, name: &[u8], value: &[u8]) -> Result<(), InvalidLine> {
        self.push_joined(name, &[value])
    }

    /// [`FieldLines::push`] with the value given in parts, written one after
    /// the other (a list's earlier entries, `", "`, a new one) without
    /// joining them first.
    pub fn push_joined(&mut self, name: &[u8], value: &[&[u8]]) -> Result<(), InvalidLine> {
        if name.is_empty() || !name.iter().all(|&b| TOKEN[usize::from(b)]) {
            return Err(InvalidLine::Name);
        }
        self.push_named(name, value)
    }

    /// [`FieldLines::push_joined`] for a name that is valid by its type: only
    /// the value is checked.
    pub fn push_field(&mut self, name: &HeaderName, value: &[&[u8]]) -> Result<(), InvalidLine> {
        self.push_named(name.as_str().as_bytes(), value)
    }

    /// Adds a line whose name was checked.
    fn push_named(&mut self, name: &[u8], value: &[&[u8]]) -> Result<(), InvalidLine> {
        if !value.iter().all(|part| valid_value(part)) {
            return Err(InvalidLine::Value);
        }
        let kind = FieldKind::of(name);
        match kind {
            FieldKind::Connection
            | FieldKind::KeepAlive
            | FieldKind::ProxyConnection
            | FieldKind::TransferEncoding => Err(InvalidLine::OwnedByConnection),
            FieldKind::ContentLength => {
                let mut declared = match self.content_length {
                    Some(n) => DeclaredLength::Valid(n),
                    None => DeclaredLength::Absent,
                };
                declared.add(&value.concat());
                match declared {
                    DeclaredLength::Valid(n) => {
                        self.content_length = Some(n);
                        Ok(())
                    }
                    _ => Err(InvalidLine::ContentLength),
                }
            }
            _ => {
                if kind != FieldKind::Other {
                    self.note(kind, &value.concat());
                }
                let len = value.iter().map(|part| part.len()).sum::<usize>();
                self.text.reserve(name.len() + len + 4);
                self.text.extend_from_slice(name);
                self.text.extend_from_slice(b": ");
                for part in value {
                    self.text.extend_from_slice(part);
                }
                self.text.extend_from_slice(b"\r\n");
                Ok(())
            }
        }
    }

    /// The lines of a received head (`fields`, parsed and checked from
    /// `head`), less the hop-by-hop fields (`Upgrade` kept when
    /// `keep_upgrade`), with the facts about the head gathered in the same
    /// pass. The kept lines are copied as they came, a run of them at a time.
    pub(crate) fn received(
        head: &[u8],
        fields: &[httparse::Header<'_>],
        keep_upgrade: bool,
    ) -> (FieldLines, HeadFacts) {
        let mut facts = HeadFacts::default();
        let mut lines = FieldLines::with_capacity(head.len());
        // Each name is looked at once (the parser allows at most FIELDS_CAP).
        let mut kinds = [FieldKind::Other; FIELDS_CAP];
        for (field, kind) in fields.iter().zip(kinds.iter_mut()) {
            *kind = FieldKind::of(field.name.as_bytes());
            facts.note(*kind, field.value);
        }
        lines.content_length = facts.content_length.get().ok().flatten();
        // Rare: `Connection` names fields, which are hop-by-hop too (its line
        // may come after theirs, so this is known only now).
        let named = facts.names_fields();
        let listing = || {
            fields
                .iter()
                .zip(kinds)
                .filter(|(_, kind)| {
                    matches!(kind, FieldKind::Connection | FieldKind::ProxyConnection)
                })
                .map(|(f, _)| f.value)
        };
        // Field i's line is head[start(i) .. start(i + 1)]; the last one ends
        // before the head's final CRLF.
        let start = |i: usize| match fields.get(i) {
            Some(f) => f.name.as_ptr() as usize - head.as_ptr() as usize,
            None => head.len() - 2,
        };
        let mut run: Option<usize> = None;
        for (i, (field, &kind)) in fields.iter().zip(kinds.iter()).enumerate() {
            let keep = keeps(kind, keep_upgrade)
                && !(named
                    && kind == FieldKind::Other
                    && fields::named_by(field.name.as_bytes(), listing()));
            if keep {
                lines.note(kind, field.value);
            }
            match (keep, run) {
                (true, None) => run = Some(start(i)),
                (false, Some(from)) => {
                    lines.text.extend_from_slice(&head[from..start(i)]);
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(from) = run {
            lines
                .text
                .extend_from_slice(&head[from..start(fields.len())]);
        }
        (lines, facts)
    }

    fn note(&mut self, kind: FieldKind, value: &[u8]) {
        match kind {
            FieldKind::Date => self.date = true,
            FieldKind::Host => self.host = true,
            FieldKind::Upgrade => self.upgrade = true,
            FieldKind::Expect => {
                self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
    }

    /// The lines as written: `name: value\r\n` each (a received line as it
    /// came: its optional whitespace around the value kept).
    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }

    /// The `Content-Length` the lines carry (kept out of the text).
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Whether there is no line (and no `Content-Length`).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.content_length.is_none()
    }

    /// The lines in order, as `(name, value)` (`Content-Length` not among
    /// them).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.text[..]
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
                let value = line.get(colon + 1..).unwrap_or_default();
                (&line[..colon], fields::trim(value))
            })
    }

    /// The value of the first line named `name` (any case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Appends every line (and the `Content-Length`) to `map`, for code that
    /// wants typed fields; `self` is left empty.
    pub fn append_to(&mut self, map: &mut HeaderMap) {
        for (name, value) in self.iter() {
            // Valid by construction: every line passed the parser or `push`.
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                map.append(name, value);
            }
        }
        if let Some(n) = self.content_length {
            map.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        *self = FieldLines::default();
    }
}

/// Whether a received field of `kind` is passed on.
fn keeps(kind: FieldKind, keep_upgrade: bool) -> bool {
    match kind {
        FieldKind::ContentLength => false,
        FieldKind::Upgrade => keep_upgrade,
        kind => !kind.is_fixed_hop_by_hop(),
    }
}

/// Whether `value` is a valid field value: visible ASCII, space, tab and
/// obs-text, what `http::HeaderValue` accepts. Without an early exit, so the
/// loop compiles to a few instructions per byte.
fn valid_value(value: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let allowed = |b: u8| (b >= 0x20 || b == b'\t') && b != 0x7f;
    // Eight bytes at a time: a word with a byte below 0x20 or equal to 0x7f
    // (the classic "has a byte less than n" and "has a zero byte" tests, exact
    // about whether there is one) sends the value to the byte-wise check,
    // which also lets tabs through.
    let mut words = value.chunks_exact(8);
    let mut suspect = 0;
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let del = x ^ (ONES * 0x7f);
        suspect |=
            (x.wrapping_sub(ONES * 0x20) & !x & HIGH) | (del.wrapping_sub(ONES) & !del & HIGH);
    }
    if suspect != 0 {
        return value.iter().all(|&b| allowed(b));
    }
    words.remainder().iter().all(|&b| allowed(b))
}

/// `tchar` (RFC 9110 §5.6.2).
const TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    fn received(head: &[u8], keep_upgrade: bool) -> (FieldLines, HeadFacts) {
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let (_, fields) = match httparse::parse_headers(head, &mut slots).unwrap() {
            httparse::Status::Complete(done) => done,
            httparse::Status::Partial => panic!("partial"),
        };
        FieldLines::received(head, fields, keep_upgrade)
    }

    #[test]
    fn received_lines_keep_order_and_case_and_lose_hop_by_hop() {
        let (lines, facts) = received(
            b"Date: Wed, 02 Dec 2026 10:00:00 GMT\r\nX-Named: 1\r\nContent-Length: 5\r\n\
              Keep-Alive: timeout=5\r\nConnection: keep-alive, X-Named\r\nSet-Cookie: a=1\r\n\
              Upgrade: h2c\r\nSet-Cookie: b=2\r\nTE: trailers\r\n\r\n",
            false,
        );
        assert_eq!(
            lines.as_bytes(),
            b"Date: Wed, 02 Dec 2026 10:00:00 GMT\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
        );
        assert_eq!(lines.content_length(), Some(5));
        assert_eq!(facts.keep_alive_params.timeout_secs, Some(5));
        assert!(facts.connection.keep_alive && facts.upgrade);
        assert_eq!(lines.get("SET-COOKIE"), Some(&b"a=1"[..]));
        assert!(lines.date && !lines.upgrade);
        let cookies = lines
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"set-cookie"));
        assert_eq!(cookies.count(), 2);
    }

    #[test]
    fn upgrade_is_kept_when_asked() {
        let (lines, _) = received(b"Upgrade: websocket\r\nConnection: upgrade\r\n\r\n", true);
        assert_eq!(lines.as_bytes(), b"Upgrade: websocket\r\n");
        assert!(lines.upgrade);
    }

    #[test]
    fn push_checks_what_it_is_given() {
        let mut lines = FieldLines::new();
        lines.push(b"Via", b"1.1 drainpipe").unwrap();
        assert_eq!(lines.push(b"X Bad", b"1"), Err(InvalidLine::Name));
        assert_eq!(lines.push(b"", b"1"), Err(InvalidLine::Name));
        assert_eq!(lines.push(b"x-a", b"a\r\nb: c"), Err(InvalidLine::Value));
        assert_eq!(lines.push(b"x-a", b"a\0"), Err(InvalidLine::Value));
        // Every byte of a long value is looked at, in a word or in the tail.
        for at in 0..19 {
            for bad in [0u8, b'\r', b'\n', 0x1f, 0x7f] {
                let mut value = *b"0123456789abcdefghi";
                value[at] = bad;
                assert_eq!(
                    lines.push(b"x-a", &value),
                    Err(InvalidLine::Value),
                    "{at} {bad}"
                );
            }
        }
        assert_eq!(
            lines.push(b"Connection", b"close"),
            Err(InvalidLine::OwnedByConnection)
        );
        assert_eq!(
            lines.push(b"transfer-encoding", b"chunked"),
            Err(InvalidLine::OwnedByConnection)
        );
        lines.push(b"content-length", b"7").unwrap();
        assert_eq!(
            lines.push(b"content-length", b"8"),
            Err(InvalidLine::ContentLength)
        );
        lines.push(b"x-tab", b"a\tb \x80").unwrap();
        lines
            .push(b"x-long", b"tab\tin a long value \xff~")
            .unwrap();
        assert_eq!(
            lines.as_bytes(),
            b"Via: 1.1 drainpipe\r\nx-tab: a\tb \x80\r\nx-long: tab\tin a long value \xff~\r\n"
        );
        let mut map = HeaderMap::new();
        lines.append_to(&mut map);
        assert!(lines.is_empty());
        assert_eq!(map["via"], "1.1 drainpipe");
        assert_eq!(map["content-length"], "7");
        assert_eq!(map["x-tab"].as_bytes(), b"a\tb \x80");
    }
}

#[cfg(test)]
mod strictness {
    use crate::config::Config;
    use crate::head::parse::parse_response;
    use bytes::Bytes;

    // A received head is refused (or accepted) alike whether its fields go
    // into a header map or into lines.
    #[test]
    fn lines_are_as_strict_as_the_map() {
        let config = Config::default();
        for bad in [
            &b"HTTP/1.1 200 OK\r\nX: a\x7fb\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX\x01: a\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: \x80\xff\ttab\r\n\r\n",
        ] {
            let head = Bytes::copy_from_slice(bad);
            let as_map = parse_response(&head, &config, false).map(|_| ());
            let as_lines = parse_response(&head, &config, true).map(|_| ());
            assert_eq!(
                as_map.as_ref().map_err(|e| e.kind().clone()),
                as_lines.as_ref().map_err(|e| e.kind().clone()),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
