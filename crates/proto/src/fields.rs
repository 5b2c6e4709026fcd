//! One helper per header rule, each reading *every* field line: tokens repeat
//! across lines, sit inside comma lists and come in any case (hyper once read only
//! the first `Connection` line and pooled a connection the peer had closed).
//!
//! - [`ConnectionTokens`]: `Connection` (RFC 9110 §7.6.1).
//! - [`content_length`]: `Content-Length` (RFC 9110 §8.6, RFC 9112 §6.3 step 5).
//! - [`transfer_coding`]: `Transfer-Encoding` (RFC 9112 §6.1).
//! - [`KeepAliveParams`]: `Keep-Alive: timeout=, max=` (RFC 2068 §19.7.1.1).
//! - [`HopByHop`]: the one hop-by-hop set (RFC 9110 §7.6.1), and
//!   [`strip_hop_by_hop`].
//! - [`request_host`]: the host a request is for — the target's authority
//!   over `Host` (RFC 9112 §3.2.2), never with userinfo.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};

use crate::error::{Error, ErrorKind};

/// The elements of a comma-separated list field value, trimmed of optional
/// whitespace, empty elements skipped (RFC 9110 §5.6.1).
pub fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').filter_map(|e| {
        let e = trim_ows(e);
        (!e.is_empty()).then_some(e)
    })
}

/// Every element of every line of the field `name`.
pub fn all_elements<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|v| list_elements(v.as_bytes()))
}

/// `s` without leading and trailing spaces and tabs (optional whitespace).
pub fn trim(s: &[u8]) -> &[u8] {
    trim_ows(s)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The persistence tokens of the `Connection` field, read across all its lines,
/// case-insensitively.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionTokens {
    /// `close` was present.
    pub close: bool,
    /// `keep-alive` was present.
    pub keep_alive: bool,
    /// `upgrade` was present.
    pub upgrade: bool,
    /// Some other token was present (it names a hop-by-hop field).
    pub other: bool,
}

impl ConnectionTokens {
    /// Reads every `Connection` line of `headers`.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut t = ConnectionTokens::default();
        for v in headers.get_all(header::CONNECTION) {
            t.add(v.as_bytes());
        }
        t
    }

    /// Adds the tokens of one `Connection` field value.
    pub fn add(&mut self, value: &[u8]) {
        for token in list_elements(value) {
            // The length picks the one candidate to compare with.
            match token.len() {
                5 if same_name(token, b"close") => self.close = true,
                10 if same_name(token, b"keep-alive") => self.keep_alive = true,
                7 if same_name(token, b"upgrade") => self.upgrade = true,
                _ => self.other = true,
            }
        }
    }
}

/// `Keep-Alive`, which `http` has no constant for (built at compile time).
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `Proxy-Connection` (built at compile time).
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether `name` is `lower` (lowercase letters and `-` only) in any case.
///
/// Eight bytes at a time (the last word overlapping the one before): each
/// byte of `name` gets the case bit (0x20) set where `lower` has a letter
/// (letters have bit 0x40, `-` has not), then the words must be equal. A
/// handful of instructions for a name of any of the lengths used here.
fn same_name(name: &[u8], lower: &[u8]) -> bool {
    const LETTER: u64 = 0x4040_4040_4040_4040;
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    let differs = |a: u64, t: u64| (a | ((t & LETTER) >> 1)) ^ t;
    if n >= 8 {
        let word =
            |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
        let mut diff = differs(word(name, n - 8), word(lower, n - 8));
        let mut at = 0;
        while at + 8 < n {
            diff |= differs(word(name, at), word(lower, at));
            at += 8;
        }
        diff == 0
    } else if n >= 4 {
        let word = |s: &[u8], at: usize| {
            u64::from(u32::from_le_bytes(
                s[at..at + 4].try_into().expect("4 bytes"),
            ))
        };
        differs(word(name, 0), word(lower, 0)) | differs(word(name, n - 4), word(lower, n - 4)) == 0
    } else {
        name.iter()
            .zip(lower)
            .all(|(&b, &t)| differs(u64::from(b), u64::from(t)) == 0)
    }
}

/// What a field name means to HTTP/1.x framing, persistence and forwarding:
/// the names drainpipe acts on, recognised by their bytes in any case (a
/// switch on the length, then one comparison), everything else [`Other`].
///
/// [`Other`]: FieldKind::Other
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `Host`.
    Host,
    /// `Date`.
    Date,
    /// `Connection`.
    Connection,
    /// `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Upgrade`.
    Upgrade,
    /// `Expect`.
    Expect,
    /// `Keep-Alive`.
    KeepAlive,
    /// `Proxy-Connection` (the Netscape convention of RFC 9112 §C.2.2).
    ProxyConnection,
    /// `TE`.
    Te,
    /// `Trailer`.
    Trailer,
    /// `Proxy-Authenticate`.
    ProxyAuthenticate,
    /// `Proxy-Authorization`.
    ProxyAuthorization,
    /// Any other name.
    Other,
}

impl FieldKind {
    /// The kind of the field named `name` (any case).
    pub fn of(name: &[u8]) -> FieldKind {
        // The length and the first letter leave at most one candidate (most
        // names have none), which is then compared whole.
        let first = name.first().map_or(0, |b| b | 0x20);
        let (text, kind): (&[u8], FieldKind) = match (name.len(), first) {
            (2, b't') => (b"te", FieldKind::Te),
            (4, b'h') => (b"host", FieldKind::Host),
            (4, b'd') => (b"date", FieldKind::Date),
            (6, b'e') => (b"expect", FieldKind::Expect),
            (7, b'u') => (b"upgrade", FieldKind::Upgrade),
            (7, b't') => (b"trailer", FieldKind::Trailer),
            (10, b'c') => (b"connection", FieldKind::Connection),
            (10, b'k') => (b"keep-alive", FieldKind::KeepAlive),
            (14, b'c') => (b"content-length", FieldKind::ContentLength),
            (16, b'p') => (b"proxy-connection", FieldKind::ProxyConnection),
            (17, b't') => (b"transfer-encoding", FieldKind::TransferEncoding),
            (18, b'p') => (b"proxy-authenticate", FieldKind::ProxyAuthenticate),
            (19, b'p') => (b"proxy-authorization", FieldKind::ProxyAuthorization),
            _ => return FieldKind::Other,
        };
        if same_name(name, text) {
            kind
        } else {
            FieldKind::Other
        }
    }

    /// Whether the name is in the fixed hop-by-hop set ([`FIXED_HOP_BY_HOP`]);
    /// a field named by `Connection` is hop-by-hop too ([`HopByHop`]).
    pub fn is_fixed_hop_by_hop(self) -> bool {
        matches!(
            self,
            FieldKind::Connection
                | FieldKind::KeepAlive
                | FieldKind::ProxyConnection
                | FieldKind::Te
                | FieldKind::Trailer
                | FieldKind::TransferEncoding
                | FieldKind::Upgrade
                | FieldKind::ProxyAuthenticate
                | FieldKind::ProxyAuthorization
        )
    }

    /// The name as an `http::HeaderName` (a constant: no lookup, no check), `None`
    /// for [`FieldKind::Other`].
    pub fn header_name(self) -> Option<HeaderName> {
        Some(match self {
            FieldKind::Host => header::HOST,
            FieldKind::Date => header::DATE,
            FieldKind::Connection => header::CONNECTION,
            FieldKind::ContentLength => header::CONTENT_LENGTH,
            FieldKind::TransferEncoding => header::TRANSFER_ENCODING,
            FieldKind::Upgrade => header::UPGRADE,
            FieldKind::Expect => header::EXPECT,
            FieldKind::KeepAlive => KEEP_ALIVE,
            FieldKind::ProxyConnection => PROXY_CONNECTION,
            FieldKind::Te => header::TE,
            FieldKind::Trailer => header::TRAILER,
            FieldKind::ProxyAuthenticate => header::PROXY_AUTHENTICATE,
            FieldKind::ProxyAuthorization => header::PROXY_AUTHORIZATION,
            FieldKind::Other => return None,
        })
    }
}

/// What the fields of one head say about framing and persistence, gathered
/// in the one pass that parses the head (no lookup by name afterwards, and
/// none at all for fields that are absent, which in most heads is all of
/// them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadFacts {
    /// `Host` lines.
    pub hosts: u32,
    /// The `Connection` tokens.
    pub connection: ConnectionTokens,
    /// The `Proxy-Connection` tokens.
    pub proxy_connection: ConnectionTokens,
    /// The `Transfer-Encoding` lines.
    pub transfer_encoding: Codings,
    /// The `Content-Length` lines.
    pub content_length: DeclaredLength,
    /// An `Upgrade` line is present.
    pub upgrade: bool,
    /// A `Date` line is present.
    pub date: bool,
    /// The parameters of the `Keep-Alive` lines (read in the same pass;
    /// all `None` when there is none).
    pub keep_alive_params: KeepAliveParams,
    /// `Expect: 100-continue` is present.
    pub expect_continue: bool,
    /// A `Host` value is not `uri-host [ ":" port ]`.
    pub bad_host: bool,
}

impl HeadFacts {
    /// Gathers the facts of `headers` in one pass.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut facts = HeadFacts::default();
        for (name, value) in headers {
            facts.note(FieldKind::of(name.as_str().as_bytes()), value.as_bytes());
        }
        facts
    }

    /// Notes one field line of kind `kind`.
    pub fn note(&mut self, kind: FieldKind, value: &[u8]) {
        match kind {
            FieldKind::Host => {
                self.hosts += 1;
                self.bad_host |= !valid_host(value);
            }
            FieldKind::Date => self.date = true,
            FieldKind::Connection => self.connection.add(value),
            FieldKind::TransferEncoding => self.transfer_encoding.add(value),
            FieldKind::ContentLength => self.content_length.add(value),
            FieldKind::Upgrade => self.upgrade = true,
            FieldKind::Expect => {
                self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
            }
            FieldKind::KeepAlive => self.keep_alive_params.add(value),
            FieldKind::ProxyConnection => self.proxy_connection.add(value),
            FieldKind::Te
            | FieldKind::Trailer
            | FieldKind::ProxyAuthenticate
            | FieldKind::ProxyAuthorization
            | FieldKind::Other => {}
        }
    }

    /// Whether `Connection` or `Proxy-Connection` named a field beyond the
    /// persistence tokens (which then is hop-by-hop too).
    pub fn names_fields(&self) -> bool {
        self.connection.other || self.proxy_connection.other
    }
}

/// Whether a `Host` value is `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986
/// §3.2.2): a registered name or IPv4 address of unreserved, percent-encoded
/// and sub-delimiter characters, or a bracketed IP literal, then optional
/// digits after one colon. Empty is allowed (a target without authority).
pub fn valid_host(value: &[u8]) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &rest[..close];
        if literal.is_empty() || !literal.iter().all(|&b| IP_LITERAL[usize::from(b)]) {
            return false;
        }
        match &rest[close + 1..] {
            [] => return true,
            [b':', port @ ..] => (&b""[..], port),
            _ => return false,
        }
    } else {
        // One pass (this runs on every request): the name ends at its first
        // byte that is not a name byte, which must be the port's colon.
        let end = value
            .iter()
            .position(|&b| !REG_NAME[usize::from(b)])
            .unwrap_or(value.len());
        match &value[end..] {
            [] => return true,
            [b':', port @ ..] => (&b""[..], port),
            _ => return false,
        }
    };
    port.iter().all(u8::is_ascii_digit) && host.iter().all(|&b| REG_NAME[usize::from(b)])
}

/// The `Host` value of a request: the authority of its target when it has
/// one (absolute-form; RFC 9112 §3.2.2 has a proxy ignore a received `Host`
/// then), without any userinfo and its `@` (RFC 9112 §3.2, RFC 9110 §4.2.4);
/// otherwise the `Host` field. `None` when there is neither.
///
/// A received request with userinfo never gets this far (it is refused with
/// [`ErrorKind::UserinfoInTarget`]); a URI built by a caller may have it, and
/// it is dropped here.
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a [u8]> {
    match uri.authority() {
        Some(authority) => {
            let authority = authority.as_str();
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            Some(host.as_bytes())
        }
        None => headers.get(header::HOST).map(HeaderValue::as_bytes),
    }
}

/// Bytes of a registered name or IPv4 address: unreserved, `%` of a
/// percent-encoding, sub-delims (RFC 3986 §3.2.2).
const REG_NAME: [bool; 256] = byte_class(b"-._~%!$&'()*+,;=", false);

/// Bytes inside `[ ]`: an IPv6 address or an `IPvFuture` (RFC 3986 §3.2.2).
const IP_LITERAL: [bool; 256] = byte_class(b":.vV-_~!$&'()*+,;=", true);

/// A byte lookup table: ASCII letters and digits (or only hex digits), plus
/// `extra`. One load per byte on the request path instead of a search.
const fn byte_class(extra: &[u8], hex_only: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = if hex_only {
            c.is_ascii_hexdigit()
        } else {
            c.is_ascii_alphanumeric()
        };
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

/// What a proxy does with an OPTIONS or TRACE request by its `Max-Forwards`
/// (RFC 9110 §7.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxForwards {
    /// No `Max-Forwards`, or another method: forward as is.
    Forward,
    /// Forward with `Max-Forwards` set to this (the received value less one).
    ForwardAs(u32),
    /// `Max-Forwards: 0`: this hop is the recipient and answers itself.
    AnswerHere,
}

/// The `Max-Forwards` rule for a request a proxy received (RFC 9110 §7.6.2:
/// only OPTIONS and TRACE; at 0 the proxy answers, otherwise it forwards the
/// value less one). Every line is read; a value that is not a decimal number
/// (or several lines that differ) is [`ErrorKind::BadMaxForwards`]. A value
/// too large for `u32` counts as `u32::MAX`: it can never run out here.
pub fn max_forwards(method: &Method, headers: &HeaderMap) -> Result<MaxForwards, Error> {
    if *method != Method::OPTIONS && *method != Method::TRACE {
        return Ok(MaxForwards::Forward);
    }
    let mut found: Option<u32> = None;
    for v in headers.get_all(header::MAX_FORWARDS) {
        let digits = v.as_bytes().trim_ascii();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(Error::remote(ErrorKind::BadMaxForwards));
        }
        let n = digits.iter().try_fold(0u32, |n, d| {
            n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        });
        let n = n.unwrap_or(u32::MAX);
        if found.is_some_and(|f| f != n) {
            return Err(Error::remote(ErrorKind::BadMaxForwards));
        }
        found = Some(n);
    }
    Ok(match found {
        None => MaxForwards::Forward,
        Some(0) => MaxForwards::AnswerHere,
        Some(n) => MaxForwards::ForwardAs(n - 1),
    })
}

/// The message's `Content-Length`, read across all lines.
///
/// Repeated identical values (`5, 5` or two lines of `5`) are one length
/// (RFC 9110 §8.6); differing values, anything but ASCII digits, or a value that
/// overflows `u64` is [`ErrorKind::BadContentLength`]. The error is a remote one:
/// callers use it on received heads.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Error> {
    let mut declared = DeclaredLength::default();
    for v in headers.get_all(header::CONTENT_LENGTH) {
        declared.add(v.as_bytes());
    }
    declared.get()
}

/// `Content-Length` as its lines are read (the rule of [`content_length`],
/// one line at a time, so a head's parse needs no second look).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeclaredLength {
    /// No line yet.
    #[default]
    Absent,
    /// Every element so far was this length.
    Valid(u64),
    /// An element was not a length, or two differed.
    Invalid,
}

impl DeclaredLength {
    /// Adds one `Content-Length` line.
    pub fn add(&mut self, value: &[u8]) {
        // `split` yields at least one element: an empty value is invalid.
        for element in value.split(|&b| b == b',') {
            *self = match (*self, parse_decimal(trim_ows(element))) {
                (DeclaredLength::Absent, Some(n)) => DeclaredLength::Valid(n),
                (DeclaredLength::Valid(m), Some(n)) if m == n => DeclaredLength::Valid(n),
                _ => DeclaredLength::Invalid,
            };
        }
    }

    /// Whether a line was read.
    pub fn is_present(&self) -> bool {
        *self != DeclaredLength::Absent
    }

    /// The length (`None` without a line), or [`ErrorKind::BadContentLength`].
    pub fn get(&self) -> Result<Option<u64>, Error> {
        match *self {
            DeclaredLength::Absent => Ok(None),
            DeclaredLength::Valid(n) => Ok(Some(n)),
            DeclaredLength::Invalid => Err(Error::remote(ErrorKind::BadContentLength)),
        }
    }
}

/// A non-empty run of ASCII digits as `u64`, `None` on anything else or overflow.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// What the `Transfer-Encoding` field says about framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferCoding {
    /// No `Transfer-Encoding` field.
    Absent,
    /// `chunked` is the final (and only supported) coding.
    Chunked,
    /// Codings are present but `chunked` is not the final one.
    NotChunkedLast,
}

/// Reads `Transfer-Encoding` across all lines (RFC 9112 §6.1).
///
/// Only `chunked` is implemented. Any other coding name — `gzip`, `identity`,
/// `xchunked`, `chunked;x=1` — is [`ErrorKind::UnknownTransferCoding`] when
/// `chunked` is last (the body could be de-chunked but not decoded), and
/// [`TransferCoding::NotChunkedLast`] otherwise, which a request turns into 400.
/// `chunked` applied twice is [`ErrorKind::BadTransferEncoding`]. An empty field
/// value is [`ErrorKind::BadTransferEncoding`].
pub fn transfer_coding(headers: &HeaderMap) -> Result<TransferCoding, Error> {
    let mut codings = Codings::default();
    for v in headers.get_all(header::TRANSFER_ENCODING) {
        codings.add(v.as_bytes());
    }
    codings.get()
}

/// `Transfer-Encoding` as its lines are read (the rule of
/// [`transfer_coding`], one line at a time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Codings {
    lines: bool,
    any: bool,
    chunked_seen: bool,
    last_is_chunked: bool,
    unknown: bool,
    chunked_twice: bool,
}

impl Codings {
    /// Adds one `Transfer-Encoding` line.
    pub fn add(&mut self, value: &[u8]) {
        self.lines = true;
        for coding in list_elements(value) {
            self.any = true;
            let chunked = coding.eq_ignore_ascii_case(b"chunked");
            if self.chunked_seen {
                // Nothing may follow chunked, and chunked may not repeat (§6.1).
                self.chunked_twice |= chunked;
                self.last_is_chunked = false;
                self.unknown = true;
            } else if chunked {
                self.chunked_seen = true;
                self.last_is_chunked = true;
            } else {
                self.unknown = true;
            }
        }
    }

    /// Whether a line was read.
    pub fn is_present(&self) -> bool {
        self.lines
    }

    /// What the lines say about framing.
    pub fn get(&self) -> Result<TransferCoding, Error> {
        if !self.lines {
            return Ok(TransferCoding::Absent);
        }
        if self.chunked_twice || !self.any {
            return Err(Error::remote(ErrorKind::BadTransferEncoding));
        }
        match (self.last_is_chunked, self.unknown) {
            (true, false) => Ok(TransferCoding::Chunked),
            (true, true) => Err(Error::remote(ErrorKind::UnknownTransferCoding)),
            (false, _) => Ok(TransferCoding::NotChunkedLast),
        }
    }
}

/// The parameters of a `Keep-Alive` field: `timeout=T, max=M`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepAliveParams {
    /// Seconds the sender keeps an idle connection open.
    pub timeout_secs: Option<u32>,
    /// Requests the sender will still serve on this connection.
    pub max: Option<u32>,
}

impl KeepAliveParams {
    /// Reads every `Keep-Alive` line; unknown parameters and unparsable values are
    /// ignored (the field is advisory).
    pub fn of(headers: &HeaderMap) -> Self {
        let mut p = KeepAliveParams::default();
        for value in headers.get_all(KEEP_ALIVE) {
            p.add(value.as_bytes());
        }
        p
    }

    /// Adds the parameters of one `Keep-Alive` line (a later one wins).
    pub fn add(&mut self, line: &[u8]) {
        for param in line.split(|&b| b == b',') {
            // A few bytes each: a plain scan, not a vectorised search.
            let Some(eq) = param.iter().position(|&b| b == b'=') else {
                continue;
            };
            let name = trim_ows(&param[..eq]);
            let mut value = trim_ows(&param[eq + 1..]);
            if let [b'"', quoted @ .., b'"'] = value {
                value = quoted;
            }
            let Some(n) = parse_decimal(value).and_then(|n| u32::try_from(n).ok()) else {
                continue;
            };
            if same_name(name, b"timeout") {
                self.timeout_secs = Some(n);
            } else if same_name(name, b"max") {
                self.max = Some(n);
            }
        }
    }

    /// The field value `timeout=T, max=M` (either part omitted when `None`), or
    /// `None` when both are.
    pub fn to_value(&self) -> Option<HeaderValue> {
        let v = match (self.timeout_secs, self.max) {
            (Some(t), Some(m)) => format!("timeout={t}, max={m}"),
            (Some(t), None) => format!("timeout={t}"),
            (None, Some(m)) => format!("max={m}"),
            (None, None) => return None,
        };
        HeaderValue::from_str(&v).ok()
    }
}

/// The fields fixed as hop-by-hop by RFC 9110 §7.6.1 (and `Proxy-Connection`, the
/// Netscape convention of RFC 9112 §C.2.2, and the proxy authentication pair
/// which belongs to the next hop only, RFC 9110 §11.7).
pub static FIXED_HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// The hop-by-hop field set of one message: the fixed names plus every field
/// named by its `Connection` lines. This is the one place the set is computed.
#[derive(Debug, Clone, Default)]
pub struct HopByHop {
    named: Vec<HeaderName>,
}

impl HopByHop {
    /// Computes the set for `headers`: the fixed names and every token of every
    /// `Connection` line (lowercased; tokens that are not valid field names are
    /// ignored). `Proxy-Connection` tokens count too, as old clients use it in
    /// place of `Connection`.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut named = Vec::new();
        let proxy_connection = PROXY_CONNECTION;
        for name in [&header::CONNECTION, &proxy_connection] {
            for token in all_elements(headers, name) {
                if let Ok(n) = HeaderName::from_bytes(token) {
                    if !named.contains(&n) {
                        named.push(n);
                    }
                }
            }
        }
        HopByHop { named }
    }

    /// Whether `name` is hop-by-hop for this message.
    pub fn contains(&self, name: &HeaderName) -> bool {
        FieldKind::of(name.as_str().as_bytes()).is_fixed_hop_by_hop() || self.named.contains(name)
    }

    /// The names contributed by `Connection` (beyond the fixed set).
    pub fn named(&self) -> &[HeaderName] {
        &self.named
    }
}

/// Removes every hop-by-hop field from `headers` (see [`HopByHop`]), returning
/// the `Connection` tokens it held so the caller can still act on them.
///
/// One pass over the fields finds which hop-by-hop names are present; only
/// those are removed (most messages carry none, so nothing is hashed).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) -> ConnectionTokens {
    let mut present: Vec<HeaderName> = Vec::new();
    let mut tokens = ConnectionTokens::default();
    let mut names_listed = false;
    for (name, value) in headers.iter() {
        let kind = FieldKind::of(name.as_str().as_bytes());
        if kind == FieldKind::Connection {
            tokens.add(value.as_bytes());
            names_listed = true;
        } else if kind == FieldKind::ProxyConnection {
            names_listed = true;
        }
        if kind.is_fixed_hop_by_hop() && !present.contains(name) {
            present.push(name.clone());
        }
    }
    if names_listed {
        for name in HopByHop::of(headers).named() {
            if !present.contains(name) {
                present.push(name.clone());
            }
        }
    }
    for name in &present {
        headers.remove(name);
    }
    tokens
}

/// Whether a field line named `name` is named hop-by-hop by a message's
/// `Connection` and `Proxy-Connection` values (`listing`): the [`HopByHop`]
/// rule for a head kept as field lines, where no header map is built.
pub fn named_by<'a>(name: &[u8], listing: impl IntoIterator<Item = &'a [u8]>) -> bool {
    listing
        .into_iter()
        .flat_map(list_elements)
        .any(|token| token.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(lines: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in lines {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    // RFC 9110 §7.6.1: tokens across lines, in lists, any case.
    #[test]
    fn connection_tokens_read_every_line_any_case() {
        let h = map(&[("connection", "Keep-Alive, foo"), ("connection", " CLOSE ")]);
        let t = ConnectionTokens::of(&h);
        assert!(t.close && t.keep_alive && t.other && !t.upgrade);
        let h = map(&[("connection", "foo,,  ,Upgrade")]);
        assert!(ConnectionTokens::of(&h).upgrade);
        // Near misses are other tokens.
        let h = map(&[("connection", "closer, keep_alive, upgradE2, clos")]);
        let t = ConnectionTokens::of(&h);
        assert!(t.other && !t.close && !t.keep_alive && !t.upgrade);
        assert_eq!(
            ConnectionTokens::of(&HeaderMap::new()),
            ConnectionTokens::default()
        );
    }

    // RFC 9110 §7.6.2.
    #[test]
    fn max_forwards_rules() {
        use http::Method;
        let mf = |m: &Method, lines: &[(&str, &str)]| max_forwards(m, &map(lines));
        let options = Method::OPTIONS;
        assert_eq!(mf(&options, &[]), Ok(MaxForwards::Forward));
        assert_eq!(
            mf(&options, &[("max-forwards", "0")]),
            Ok(MaxForwards::AnswerHere)
        );
        assert_eq!(
            mf(&Method::TRACE, &[("max-forwards", " 5 ")]),
            Ok(MaxForwards::ForwardAs(4))
        );
        assert_eq!(
            mf(&options, &[("max-forwards", "3"), ("max-forwards", "3")]),
            Ok(MaxForwards::ForwardAs(2))
        );
        assert_eq!(
            mf(&options, &[("max-forwards", "99999999999")]),
            Ok(MaxForwards::ForwardAs(u32::MAX - 1))
        );
        assert_eq!(
            mf(&Method::GET, &[("max-forwards", "0")]),
            Ok(MaxForwards::Forward),
            "only OPTIONS and TRACE"
        );
        for bad in ["", "-1", "1.5", "x"] {
            let e = mf(&options, &[("max-forwards", bad)]).unwrap_err();
            assert_eq!(*e.kind(), ErrorKind::BadMaxForwards, "{bad:?}");
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
        }
        assert!(mf(&options, &[("max-forwards", "1"), ("max-forwards", "2")]).is_err());
    }

    // RFC 9110 §8.6 / RFC 9112 §6.3 step 5.
    #[test]
    fn content_length_rules() {
        let cl = |lines: &[(&str, &str)]| content_length(&map(lines));
        assert_eq!(cl(&[]), Ok(None));
        assert_eq!(cl(&[("content-length", "42")]), Ok(Some(42)));
        assert_eq!(cl(&[("content-length", "42, 42")]), Ok(Some(42)));
        assert_eq!(
            cl(&[("content-length", "42"), ("content-length", "42")]),
            Ok(Some(42))
        );
        for bad in [
            "42, 43",
            "+42",
            "-1",
            "4 2",
            "0x10",
            "",
            "18446744073709551616",
            "1,",
        ] {
            assert_eq!(
                cl(&[("content-length", bad)]).unwrap_err().kind(),
                &ErrorKind::BadContentLength,
                "{bad:?}"
            );
        }
        assert!(cl(&[("content-length", "1"), ("content-length", "2")]).is_err());
        assert_eq!(
            cl(&[("content-length", "18446744073709551615")]),
            Ok(Some(u64::MAX))
        );
    }

    // RFC 9112 §6.1 and the smuggling obfuscations.
    #[test]
    fn transfer_coding_rules() {
        let te = |v: &[&str]| {
            let lines: Vec<_> = v.iter().map(|v| ("transfer-encoding", *v)).collect();
            transfer_coding(&map(&lines))
        };
        assert_eq!(
            transfer_coding(&HeaderMap::new()),
            Ok(TransferCoding::Absent)
        );
        assert_eq!(te(&["chunked"]), Ok(TransferCoding::Chunked));
        assert_eq!(te(&["CHUNKED"]), Ok(TransferCoding::Chunked));
        assert_eq!(
            te(&["chunked , identity"]),
            Ok(TransferCoding::NotChunkedLast)
        );
        assert_eq!(te(&["xchunked"]), Ok(TransferCoding::NotChunkedLast));
        assert_eq!(te(&["chunked;x=1"]), Ok(TransferCoding::NotChunkedLast));
        assert_eq!(
            te(&["chunked", "identity"]),
            Ok(TransferCoding::NotChunkedLast)
        );
        assert_eq!(
            te(&["gzip, chunked"]).unwrap_err().kind(),
            &ErrorKind::UnknownTransferCoding
        );
        assert_eq!(
            te(&["chunked", "chunked"]).unwrap_err().kind(),
            &ErrorKind::BadTransferEncoding
        );
        assert_eq!(
            te(&[""]).unwrap_err().kind(),
            &ErrorKind::BadTransferEncoding
        );
        assert_eq!(
            te(&[" , "]).unwrap_err().kind(),
            &ErrorKind::BadTransferEncoding
        );
    }

    // RFC 9112 §3.2 / RFC 3986 §3.2.2.
    #[test]
    fn host_values() {
        for good in [
            "a",
            "example.com",
            "example.com:8080",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:80",
            "",
            "a-b_c~d%20",
            "host:",
            ":80",
            "xn--bcher-kva.example:65535",
        ] {
            assert!(valid_host(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "a b", "a/b", "a@b", "a:b:c", "a:b", "[::1", "[]", "[::1]x", "a?b", "a#b", "\t",
            "a::1", "a:1:", "a:1a", "a:\u{80}", "\u{7f}", "a\u{0}:1",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
        }
    }

    /// `valid_host` against the grammar read the plain way (the name before
    /// the last colon, the port after it), over every value of up to six
    /// bytes from an alphabet of each kind of byte that matters.
    #[test]
    fn host_values_as_the_grammar_reads_them() {
        fn by_grammar(value: &[u8]) -> bool {
            if value.first() == Some(&b'[') {
                return valid_host(value); // the bracketed form is not in the alphabet
            }
            let (host, port) = match value.iter().rposition(|&b| b == b':') {
                Some(colon) => (&value[..colon], &value[colon + 1..]),
                None => (value, &b""[..]),
            };
            port.iter().all(u8::is_ascii_digit) && host.iter().all(|&b| REG_NAME[usize::from(b)])
        }
        let alphabet = b"a1:%/ @.\x80";
        let mut value = Vec::new();
        let mut checked = 0;
        for len in 0..=6u32 {
            for mut n in 0..alphabet.len().pow(len) {
                value.clear();
                for _ in 0..len {
                    value.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                assert_eq!(valid_host(&value), by_grammar(&value), "{value:?}");
                checked += 1;
            }
        }
        assert!(checked > 100_000);
    }

    // RFC 9112 §3.2.2: an absolute-form target's authority is the host,
    // whatever Host says; userinfo never is part of it.
    #[test]
    fn request_host_prefers_the_target_and_drops_userinfo() {
        let host = |target: &str, fields: &[(&str, &str)]| {
            let uri: Uri = target.parse().unwrap();
            let h = map(fields);
            request_host(&uri, &h).map(|v| String::from_utf8(v.to_vec()).unwrap())
        };
        let field = [("host", "field.example")];
        assert_eq!(host("/x", &field).as_deref(), Some("field.example"));
        assert_eq!(host("/x", &[]), None);
        assert_eq!(
            host("http://target.example:8080/x", &field).as_deref(),
            Some("target.example:8080")
        );
        assert_eq!(
            host("http://user:pw@target.example/x", &field).as_deref(),
            Some("target.example")
        );
        assert_eq!(host("http://u@[::1]:80", &[]).as_deref(), Some("[::1]:80"));
        assert_eq!(
            host("example.com:443", &field).as_deref(),
            Some("example.com:443")
        );
    }

    #[test]
    fn keep_alive_params_parse_and_emit() {
        let h = map(&[("keep-alive", "Timeout=5, MAX=100, foo=bar")]);
        let p = KeepAliveParams::of(&h);
        assert_eq!(p.timeout_secs, Some(5));
        assert_eq!(p.max, Some(100));
        assert_eq!(p.to_value().unwrap(), "timeout=5, max=100");
        let h = map(&[("keep-alive", "timeout=x"), ("keep-alive", "max=\"3\"")]);
        let p = KeepAliveParams::of(&h);
        assert_eq!((p.timeout_secs, p.max), (None, Some(3)));
        assert_eq!(KeepAliveParams::default().to_value(), None);
        for (line, expected) in [
            (&b" timeout = 7 ,max=2,"[..], (Some(7), Some(2))),
            (b",,timeout=9", (Some(9), None)),
            (b"timeouts=9, maximum=1, max", (None, None)),
            (
                b"timeout=99999999999, max=4294967295",
                (None, Some(u32::MAX)),
            ),
            (b"", (None, None)),
        ] {
            let mut p = KeepAliveParams::default();
            p.add(line);
            assert_eq!((p.timeout_secs, p.max), expected, "{line:?}");
        }
    }

    // RFC 9110 §7.6.1: the fixed set plus every field named in Connection.
    #[test]
    fn hop_by_hop_set_and_strip() {
        let mut h = map(&[
            ("connection", "close, X-Foo"),
            ("connection", "x-bar"),
            ("proxy-connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic eA=="),
            ("proxy-authenticate", "Basic"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("x-keep", "3"),
            ("host", "example"),
        ]);
        let set = HopByHop::of(&h);
        assert!(set.contains(&HeaderName::from_static("x-foo")));
        assert!(set.contains(&HeaderName::from_static("x-bar")));
        assert!(!set.contains(&HeaderName::from_static("x-keep")));
        let tokens = strip_hop_by_hop(&mut h);
        assert!(tokens.close);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["host", "x-keep"]);
    }

    #[test]
    fn field_kinds_agree_with_the_fixed_hop_by_hop_list() {
        for name in &FIXED_HOP_BY_HOP {
            let upper = name.as_str().to_ascii_uppercase();
            assert!(
                FieldKind::of(upper.as_bytes()).is_fixed_hop_by_hop(),
                "{name}"
            );
        }
        let others = [
            "host",
            "date",
            "expect",
            "content-length",
            "x-te",
            "upgrades",
            "via",
        ];
        for name in others {
            assert!(
                !FieldKind::of(name.as_bytes()).is_fixed_hop_by_hop(),
                "{name}"
            );
        }
        assert_eq!(FieldKind::of(b"Content-Length"), FieldKind::ContentLength);
        // Each kind's constant name is the name it was recognised from.
        for name in [
            &b"Host"[..],
            b"date",
            b"CONNECTION",
            b"content-length",
            b"Transfer-Encoding",
            b"upgrade",
            b"expect",
            b"Keep-Alive",
            b"proxy-connection",
            b"TE",
            b"trailer",
            b"proxy-authenticate",
            b"Proxy-Authorization",
            b"x-other",
        ] {
            let kind = FieldKind::of(name);
            let typed = HeaderName::from_bytes(name).unwrap();
            assert_eq!(
                kind.header_name().unwrap_or(typed.clone()),
                typed,
                "{kind:?}"
            );
            assert_eq!(kind == FieldKind::Other, kind.header_name().is_none());
        }
        // Any case of every letter, nothing else: not `-` for `\r`, not a
        // neighbouring letter, not a longer or shorter name.
        for lower in [
            &b"te"[..],
            b"max",
            b"host",
            b"expect",
            b"timeout",
            b"keep-alive",
            b"content-length",
            b"proxy-authorization",
        ] {
            assert!(same_name(lower, lower));
            assert!(same_name(&lower.to_ascii_uppercase(), lower));
            for at in 0..lower.len() {
                let mut other = lower.to_vec();
                other[at] = if lower[at] == b'-' {
                    b'\r'
                } else {
                    lower[at] + 1
                };
                assert!(!same_name(&other, lower), "{other:?}");
                other[at] = lower[at] ^ 0x20 ^ 0x40;
                assert!(!same_name(&other, lower), "{other:?}");
                let mut mixed = lower.to_vec();
                mixed[at] = mixed[at].to_ascii_uppercase();
                assert!(same_name(&mixed, lower));
            }
            assert!(!same_name(&lower[1..], lower));
        }
        assert_eq!(FieldKind::of(b"HOST"), FieldKind::Host);
        assert!(named_by(b"X-Foo", [&b"close, x-foo"[..]]));
        assert!(!named_by(b"x-foo", [&b"close"[..], &b"x-foobar"[..]]));
    }

    #[test]
    fn length_and_codings_read_line_by_line() {
        let mut d = DeclaredLength::default();
        assert_eq!(d.get().unwrap(), None);
        d.add(b"5, 5");
        d.add(b" 5 ");
        assert_eq!(d.get().unwrap(), Some(5));
        d.add(b"6");
        assert!(d.get().is_err());
        let mut empty = DeclaredLength::default();
        empty.add(b"");
        assert!(empty.get().is_err());
        let mut c = Codings::default();
        c.add(b"gzip");
        assert_eq!(c.get().unwrap(), TransferCoding::NotChunkedLast);
        c.add(b"chunked");
        assert_eq!(
            c.get().unwrap_err().kind(),
            &ErrorKind::UnknownTransferCoding
        );
    }
}
