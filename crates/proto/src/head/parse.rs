//! Received heads: start line and field lines through `httparse` into `http`
//! types, with drainpipe's strictness rules on top.
//!
//! Rules beyond what `httparse` checks itself:
//! - every line ends in CRLF; a bare LF anywhere in the head is refused
//!   (RFC 9112 §2.2 allows accepting it; a proxy that does can be desynchronised
//!   from one that does not), and so is a bare CR, as soon as the byte after it
//!   arrives (a head whose lines end in CR alone would otherwise wait for an LF
//!   until the head timeout);
//! - obs-fold is named as such (RFC 9112 §5.2);
//! - the head, the field count and the request target are bounded (431, 431, 414);
//! - a request target carries no userinfo (RFC 9110 §4.2.4: an error, so it is
//!   never sent on, nor taken for the host);
//! - a request carries exactly one `Host`, and an HTTP/1.1 request at least one
//!   (RFC 9112 §3.2);
//! - HTTP/1.x with x above 1 is read as HTTP/1.1 (RFC 9110 §2.5: the highest
//!   minor version implemented), which `httparse` alone refuses; any other
//!   version (HTTP/0.9, HTTP/2.0…) gets 505.
//!
//! Field values are not copied: the head is frozen into one [`Bytes`] and every
//! value is a slice of it.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use smallvec::SmallVec;

use crate::config::{Config, FIELDS_CAP};
use crate::error::{Error, ErrorKind};
use crate::fields::{FieldKind, HeadFacts};
use crate::lines::FieldLines;

/// Looks for the end of a head (the byte after its empty line) in `buf`.
///
/// `scanned` is how far earlier calls looked; pass 0 for a new head and keep the
/// value between calls so each byte is looked at once, however the input is
/// split. Every LF must follow a CR, else [`ErrorKind::BareLf`]; every CR must
/// be followed by an LF, else [`ErrorKind::BareCr`] (RFC 9112 §2.2), so a head
/// whose lines end in bare CRs is refused as soon as it is seen instead of
/// waiting for an LF that never comes. Works for field blocks too (a trailer
/// section), which end the same way.
pub fn find_head_end(buf: &[u8], scanned: &mut usize) -> Result<Option<usize>, ErrorKind> {
    let start = *scanned;
    // Only LFs are looked for on the way to the end (one search per line):
    // a bare CR in a head that ends is refused by the parser, which stops at
    // it, and named by `map_httparse`.
    for i in memchr::memchr_iter(b'\n', &buf[start..]).map(|i| i + start) {
        if i == 0 || buf[i - 1] != b'\r' {
            // Whichever came first is named, as it is when the bytes arrive
            // one by one.
            return Err(if has_bare_cr(&buf[start..i]) {
                ErrorKind::BareCr
            } else {
                ErrorKind::BareLf
            });
        }
        // An empty line: CRLF right after the previous line's CRLF, or a block
        // that is only an empty line (a trailer section with no fields).
        if i == 1 || (i >= 3 && &buf[i - 3..i - 1] == b"\r\n") {
            return Ok(Some(i + 1));
        }
    }
    // No end yet: a bare CR among the new bytes is refused now, so a head
    // whose lines end in CR alone does not wait for the head timeout.
    let mut from = start;
    while let Some(i) = memchr::memchr(b'\r', &buf[from..]).map(|i| i + from) {
        match buf.get(i + 1) {
            Some(b'\n') => from = i + 2,
            Some(_) => return Err(ErrorKind::BareCr),
            // The byte after this CR has not arrived: look at it next time.
            None => {
                *scanned = i;
                return Ok(None);
            }
        }
    }
    *scanned = buf.len();
    Ok(None)
}

/// Whether `head` holds a CR that is not followed by an LF.
fn has_bare_cr(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\r', head).any(|i| head.get(i + 1) != Some(&b'\n'))
}

/// Checks an incomplete head against the limits, so a peer that never ends its
/// head is refused once it has sent too much: 414 while the request line is still
/// open past the URI limit, 431 past the head limit.
pub fn check_incomplete_head(buf: &[u8], is_request: bool, config: &Config) -> Result<(), Error> {
    // Room for the method, two spaces and the version around the target.
    const REQUEST_LINE_OVERHEAD: usize = 32;
    if is_request
        && buf.len() > config.max_uri_bytes + REQUEST_LINE_OVERHEAD
        && memchr::memchr(b'\n', buf).is_none()
    {
        return Err(Error::remote(ErrorKind::UriTooLong {
            limit: config.max_uri_bytes,
        }));
    }
    if buf.len() > config.max_head_bytes {
        return Err(Error::remote(ErrorKind::HeadTooLarge {
            limit: config.max_head_bytes,
        }));
    }
    Ok(())
}

/// Parses a complete request head (as delimited by [`find_head_end`]).
pub fn parse_request(head: &Bytes, config: &Config) -> Result<(Request<()>, HeadFacts), Error> {
    if head.len() > config.max_head_bytes {
        return Err(Error::remote(ErrorKind::HeadTooLarge {
            limit: config.max_head_bytes,
        }));
    }
    let max_fields = config.max_fields.min(FIELDS_CAP);
    let mut spans = FieldSpans::new();
    match request_spans(head, max_fields, &mut spans) {
        Ok(Some(at)) => build_request(head, &at, &spans, config),
        Ok(None) => Err(Error::remote(ErrorKind::BadStartLine)),
        Err(httparse::Error::Version) if higher_minor(head, true).is_some() => {
            parse_request(&higher_minor(head, true).expect("just checked"), config)
        }
        Err(e) => Err(Error::remote(map_httparse(e, head, max_fields))),
    }
}

/// Parses the request head at the start of `buf` and splits it off, in one
/// pass over its bytes, when the head is there whole and every one of its
/// lines ends in CRLF: the common case, for which looking for the head's end
/// first ([`find_head_end`]) would read each byte twice.
///
/// `None` (and `buf` untouched) for anything else: a head not complete yet,
/// one the parser refuses, a bare LF, a head over the size limit. The caller
/// then takes the general path (`find_head_end`, then [`parse_request`]),
/// which says what is wrong exactly as it would have without this attempt;
/// a head that passes here gets the same result from that path too (the
/// parser stops where `find_head_end` would: at the first empty line).
pub fn take_request(
    buf: &mut BytesMut,
    config: &Config,
) -> Option<Result<(Request<()>, HeadFacts), Error>> {
    let max_fields = config.max_fields.min(FIELDS_CAP);
    let mut spans = FieldSpans::new();
    let at = request_spans(buf, max_fields, &mut spans).ok()??;
    let name_starts = spans.iter().map(|f| f.name.0 as usize);
    if at.len > config.max_head_bytes || !lines_end_in_crlf(&buf[..at.len], name_starts) {
        return None;
    }
    let head = buf.split_to(at.len).freeze();
    Some(build_request(&head, &at, &spans, config))
}

/// Whether every line of a parsed head ends in CRLF, and no empty line
/// comes before it. The parser ends a line at an LF with or without a CR
/// before it, so the CR is looked for before each field line (the end of the
/// line above it) and in the head's last four bytes (the last line's end and
/// the empty line's).
/// `name_starts`: where each field's name begins in `head`.
fn lines_end_in_crlf(head: &[u8], mut name_starts: impl Iterator<Item = usize>) -> bool {
    // The parser also skips empty lines before the start line (CRLF or bare
    // LF); the caller took the CRLF ones off already.
    !matches!(head.first(), Some(b'\r' | b'\n'))
        && head.ends_with(b"\r\n\r\n")
        && name_starts.all(|at| at.checked_sub(2).and_then(|i| head.get(i)) == Some(&b'\r'))
}

/// Where a field line's name and value lie in its head (start, end).
#[derive(Clone, Copy)]
struct FieldSpan {
    name: (u32, u32),
    value: (u32, u32),
}

impl FieldSpan {
    /// Notes where each of httparse's `fields` (slices of `head`) lies.
    #[inline]
    fn note_all(head: &[u8], fields: &[httparse::Header<'_>], spans: &mut FieldSpans) {
        for field in fields {
            spans.push(FieldSpan {
                name: span_in(head, field.name.as_bytes()),
                value: span_in(head, field.value),
            });
        }
    }

    /// The fields as names and value positions, for [`to_header_map`].
    fn fields<'h>(
        head: &'h Bytes,
        spans: &'h [FieldSpan],
    ) -> impl ExactSizeIterator<Item = (&'h [u8], Range<usize>)> + 'h {
        spans.iter().map(|f| {
            let ((name_start, name_end), (start, end)) = (f.name, f.value);
            (
                &head[name_start as usize..name_end as usize],
                start as usize..end as usize,
            )
        })
    }
}

/// Where `part`, a slice of `head`, lies in it. A head is at most a few
/// hundred KiB (its limit), so u32 offsets.
#[inline]
fn span_in(head: &[u8], part: &[u8]) -> (u32, u32) {
    let start = (part.as_ptr() as usize - head.as_ptr() as usize) as u32;
    (start, start + part.len() as u32)
}

/// The field spans of a head: on the stack up to a number of fields few
/// requests pass (nothing to clear or allocate first), on the heap beyond.
type FieldSpans = SmallVec<[FieldSpan; 32]>;

/// Where a parsed request line's parts lie in the head, and how long the
/// head is (the parser found its end).
struct RequestAt {
    len: usize,
    method: (u32, u32),
    target: (u32, u32),
    minor: u8,
}

/// Runs httparse over `buf` and notes where everything it found lies, so
/// that the head can be split off its buffer before anything is built from
/// it (the fields' places go into `spans`). `Ok(None)`: the head is not
/// complete.
fn request_spans(
    buf: &[u8],
    max_fields: usize,
    spans: &mut FieldSpans,
) -> Result<Option<RequestAt>, httparse::Error> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); FIELDS_CAP];
    let mut parsed = httparse::Request::new(&mut []);
    let status = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots[..max_fields],
    )?;
    let httparse::Status::Complete(len) = status else {
        return Ok(None);
    };
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Ok(None);
    };
    FieldSpan::note_all(buf, parsed.headers, spans);
    Ok(Some(RequestAt {
        len,
        method: span_in(buf, method.as_bytes()),
        target: span_in(buf, target.as_bytes()),
        minor,
    }))
}

/// The request, its fields sharing `head`'s memory, and its facts, once
/// httparse accepted the head; the rules httparse does not check are
/// applied here.
fn build_request(
    head: &Bytes,
    at: &RequestAt,
    spans: &[FieldSpan],
    config: &Config,
) -> Result<(Request<()>, HeadFacts), Error> {
    let part = |(start, end): (u32, u32)| &head[start as usize..end as usize];
    let target = part(at.target);
    if target.len() > config.max_uri_bytes {
        return Err(Error::remote(ErrorKind::UriTooLong {
            limit: config.max_uri_bytes,
        }));
    }
    let method =
        Method::from_bytes(part(at.method)).map_err(|_| Error::remote(ErrorKind::BadMethod))?;
    let uri = Uri::from_maybe_shared(head.slice(at.target.0 as usize..at.target.1 as usize))
        .map_err(|_| Error::remote(ErrorKind::BadTarget))?;
    check_target_form(&method, target, &uri)?;
    check_no_userinfo(&uri)?;
    let version = version(at.minor);
    let (map, facts) = to_header_map(head, FieldSpan::fields(head, spans))?;
    check_host(&facts, version)?;

    let mut req = Request::new(());
    *req.method_mut() = method;
    // The defaults replaced here own no memory (`/` is static, an empty map
    // allocates nothing): forgetting them skips their drop code. (Checked in
    // debug builds, so an `http` release that changed this would show.)
    debug_assert_eq!(req.headers().capacity(), 0);
    std::mem::forget(std::mem::replace(req.uri_mut(), uri));
    *req.version_mut() = version;
    std::mem::forget(std::mem::replace(req.headers_mut(), map));
    Ok((req, facts))
}

/// Parses a complete response head (as delimited by [`find_head_end`]).
///
/// `as_lines`: a final response (or a `101`) keeps its end-to-end fields as
/// [`FieldLines`] in its extensions and gets an empty header map (see
/// [`crate::lines`]); an interim one gets its map as always.
pub fn parse_response(
    head: &Bytes,
    config: &Config,
    as_lines: bool,
) -> Result<(Response<()>, HeadFacts), Error> {
    if head.len() > config.max_head_bytes {
        return Err(Error::remote(ErrorKind::HeadTooLarge {
            limit: config.max_head_bytes,
        }));
    }
    let max_fields = config.max_fields.min(FIELDS_CAP);
    // httparse wants initialised slots for responses: size them to the head
    // (most responses have a handful of fields) instead of clearing 128.
    let parsed = if memchr::memchr_iter(b'\n', head).count() <= SMALL_HEAD {
        let mut slots = [httparse::EMPTY_HEADER; SMALL_HEAD];
        response_in(
            head,
            &mut slots[..max_fields.min(SMALL_HEAD)],
            max_fields,
            as_lines,
        )
    } else {
        let mut slots = [httparse::EMPTY_HEADER; FIELDS_CAP];
        response_in(head, &mut slots[..max_fields], max_fields, as_lines)
    };
    match parsed {
        Err(e) if *e.kind() == ErrorKind::UnsupportedVersion => match higher_minor(head, false) {
            Some(as_11) => parse_response(&as_11, config, as_lines),
            None => Err(e),
        },
        parsed => parsed,
    }
}

/// Parses the response head at the start of `buf` and takes it off, in one
/// pass over its bytes, when it is there whole and every line ends in CRLF
/// (as [`take_request`]; `None`, `buf` untouched, sends the caller down the
/// general path). With `as_lines`, a final response's fields are copied
/// into its [`FieldLines`] straight from `buf`, and the head's bytes are
/// then dropped: nothing refers to them.
pub fn take_response(
    buf: &mut BytesMut,
    config: &Config,
    as_lines: bool,
) -> Option<Result<(Response<()>, HeadFacts), Error>> {
    let max_fields = config.max_fields.min(FIELDS_CAP);
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); FIELDS_CAP];
    let mut parsed = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots[..max_fields],
    );
    let Ok(httparse::Status::Complete(len)) = status else {
        return None;
    };
    let head = &buf[..len];
    let name_starts = parsed
        .headers
        .iter()
        .map(|f| span_in(head, f.name.as_bytes()).0 as usize);
    if len > config.max_head_bytes || !lines_end_in_crlf(head, name_starts) {
        return None;
    }
    let (Some(code), Some(minor)) = (parsed.code, parsed.version) else {
        return None;
    };
    let mut res = new_response(StatusCode::from_u16(code).ok()?, minor);
    if let Some(facts) = received_as_lines(&mut res, head, parsed.headers, as_lines) {
        buf.advance(len);
        return Some(Ok((res, facts)));
    }
    let mut spans = FieldSpans::new();
    FieldSpan::note_all(head, parsed.headers, &mut spans);
    let head = buf.split_to(len).freeze();
    Some(
        to_header_map(&head, FieldSpan::fields(&head, &spans)).map(|(headers, facts)| {
            set_map(&mut res, headers);
            (res, facts)
        }),
    )
}

/// A response head with `status` and httparse's `minor` version.
fn new_response(status: StatusCode, minor: u8) -> Response<()> {
    let mut res = Response::new(());
    *res.status_mut() = status;
    *res.version_mut() = version(minor);
    res
}

/// With `as_lines`, a final response's (or a 101's) fields go into
/// [`FieldLines`] in its extensions, and its facts are returned; `None`
/// when they go into its map (an interim response always gets a map).
fn received_as_lines(
    res: &mut Response<()>,
    head: &[u8],
    fields: &[httparse::Header<'_>],
    as_lines: bool,
) -> Option<HeadFacts> {
    let status = res.status();
    let interim = status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS;
    if !as_lines || interim {
        return None;
    }
    let keep_upgrade = status == StatusCode::SWITCHING_PROTOCOLS;
    let (lines, facts) = FieldLines::received(head, fields, keep_upgrade);
    res.extensions_mut().insert(lines);
    Some(facts)
}

/// Puts a received head's map in place of the response's empty default.
fn set_map(res: &mut Response<()>, headers: HeaderMap) {
    // The empty default map allocates nothing: no drop needed.
    debug_assert_eq!(res.headers().capacity(), 0);
    std::mem::forget(std::mem::replace(res.headers_mut(), headers));
}

/// Field lines a head may have for the small slot array.
const SMALL_HEAD: usize = 16;

fn response_in<'h>(
    head: &'h Bytes,
    slots: &mut [httparse::Header<'h>],
    max_fields: usize,
    as_lines: bool,
) -> Result<(Response<()>, HeadFacts), Error> {
    let mut parsed = httparse::Response::new(slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Error::remote(ErrorKind::BadStartLine)),
        Err(e) => return Err(Error::remote(map_httparse(e, head, max_fields))),
    }
    let (Some(code), Some(minor)) = (parsed.code, parsed.version) else {
        return Err(Error::remote(ErrorKind::BadStartLine));
    };
    let status = StatusCode::from_u16(code).map_err(|_| Error::remote(ErrorKind::BadStatus))?;
    let mut res = new_response(status, minor);
    if let Some(facts) = received_as_lines(&mut res, head, parsed.headers, as_lines) {
        return Ok((res, facts));
    }
    let (headers, facts) = to_header_map(head, httparse_fields(head, parsed.headers))?;
    set_map(&mut res, headers);
    Ok((res, facts))
}

/// Parses a field block (a trailer section) ending in an empty line.
pub fn parse_fields(block: &Bytes, max_fields: usize) -> Result<HeaderMap, Error> {
    let max_fields = max_fields.min(FIELDS_CAP);
    let mut slots = [httparse::EMPTY_HEADER; FIELDS_CAP];
    match httparse::parse_headers(block, &mut slots[..max_fields]) {
        Ok(httparse::Status::Complete((_, fields))) => {
            to_header_map(block, httparse_fields(block, fields)).map(|(map, _)| map)
        }
        Ok(httparse::Status::Partial) => Err(Error::remote(ErrorKind::BadFieldName)),
        Err(e) => Err(Error::remote(map_httparse(e, block, max_fields))),
    }
}

/// Builds the header map and gathers the [`HeadFacts`] in the same pass, from
/// each field's name and where its value lies in `head`.
// Inlined into each caller: its result (a map and the facts) is then built
// in place instead of copied out.
#[inline(always)]
fn to_header_map<'h>(
    head: &'h Bytes,
    fields: impl ExactSizeIterator<Item = (&'h [u8], Range<usize>)>,
) -> Result<(HeaderMap, HeadFacts), Error> {
    // Exactly the fields received: a proxy's added fields travel as lines
    // (`Relay`), not in this map.
    let mut map = HeaderMap::with_capacity(fields.len());
    let mut facts = HeadFacts::default();
    for (name, value) in fields {
        let kind = FieldKind::of(name);
        let name = field_name(kind, name)?;
        let value = field_value(head, value);
        facts.note(kind, value.as_bytes());
        map.append(name, value);
    }
    Ok((map, facts))
}

/// httparse's fields as names and value positions in `head`, which they
/// are slices of.
fn httparse_fields<'h>(
    head: &'h Bytes,
    fields: &'h [httparse::Header<'h>],
) -> impl ExactSizeIterator<Item = (&'h [u8], Range<usize>)> + 'h {
    fields.iter().map(move |f| {
        let (start, end) = span_in(head, f.value);
        (f.name.as_bytes(), start as usize..end as usize)
    })
}

/// A received field value as a `HeaderValue`, sharing the head's memory,
/// without checking its bytes a second time.
///
/// httparse accepts in a value only tab, visible ASCII, space and obs-text
/// (0x80-0xFF): no other control character, no DEL. That is the set
/// `HeaderValue` allows, so the check `from_maybe_shared` would repeat (a
/// loop over every byte of every value, the largest single cost of a head
/// with many fields) cannot fail. The property test
/// `httparse_values_are_header_values` (tests/values.rs) holds httparse to
/// that, over its scalar and vectorised paths; debug builds check each value.
#[inline]
fn field_value(head: &Bytes, value: Range<usize>) -> HeaderValue {
    let shared = head.slice(value);
    debug_assert!(HeaderValue::from_bytes(&shared).is_ok(), "{shared:?}");
    // SAFETY: `value` passed httparse's value check, whose accepted bytes are
    // a subset of `HeaderValue`'s (see above); `from_maybe_shared_unchecked`
    // requires only that the bytes be a valid `HeaderValue`.
    unsafe { HeaderValue::from_maybe_shared_unchecked(shared) }
}

/// A field name. The names the rules know (`Host` in every HTTP/1.1
/// request, `Content-Length`, `Connection`…) were recognised already and are
/// constants; only the others go through the general lookup.
fn field_name(kind: FieldKind, name: &[u8]) -> Result<HeaderName, Error> {
    match kind.header_name() {
        Some(known) => Ok(known),
        None => HeaderName::from_bytes(name).map_err(|_| Error::remote(ErrorKind::BadFieldName)),
    }
}

/// The version httparse read (`HTTP/1.x` with x above 1 was lowered to 1
/// before parsing).
fn version(minor: u8) -> Version {
    if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    }
}

/// RFC 9112 §3.2: exactly one `Host` in a request, with a valid value;
/// HTTP/1.1 requires it.
fn check_host(facts: &HeadFacts, version: Version) -> Result<(), Error> {
    match facts.hosts {
        0 if version == Version::HTTP_11 => Err(Error::remote(ErrorKind::MissingHost)),
        2.. => Err(Error::remote(ErrorKind::DuplicateHost)),
        _ if facts.bad_host => Err(Error::remote(ErrorKind::BadHost)),
        _ => Ok(()),
    }
}

/// RFC 9112 §3.2: CONNECT takes the authority-form and only it; the
/// asterisk-form is for OPTIONS only; everything else is origin-form
/// (`/path`) or absolute-form (`scheme://…`).
fn check_target_form(method: &Method, target: &[u8], uri: &Uri) -> Result<(), Error> {
    let authority_form = uri.scheme().is_none() && uri.authority().is_some();
    let ok = if *method == Method::CONNECT {
        authority_form && !target.contains(&b'/')
    } else if target == b"*" {
        *method == Method::OPTIONS
    } else {
        !authority_form && (target.starts_with(b"/") || uri.scheme().is_some())
    };
    if ok {
        Ok(())
    } else {
        Err(Error::remote(ErrorKind::BadTarget))
    }
}

/// RFC 9110 §4.2.4: userinfo (`user:password@host`) in an `http` target is
/// to be treated as an error. Only an authority can hold it (absolute- and
/// authority-form); `@` is its delimiter there and nowhere else.
fn check_no_userinfo(uri: &Uri) -> Result<(), Error> {
    match uri.authority() {
        Some(authority) if authority.as_str().contains('@') => {
            Err(Error::remote(ErrorKind::UserinfoInTarget))
        }
        _ => Ok(()),
    }
}

/// Names what `httparse` refused, looking at the head where its error is vague.
fn map_httparse(e: httparse::Error, head: &[u8], max_fields: usize) -> ErrorKind {
    match e {
        _ if has_bare_cr(head) => ErrorKind::BareCr,
        httparse::Error::HeaderName if is_obs_fold(head) => ErrorKind::ObsFold,
        httparse::Error::HeaderName => ErrorKind::BadFieldName,
        httparse::Error::HeaderValue => ErrorKind::BadFieldValue,
        httparse::Error::NewLine => ErrorKind::BadStartLine,
        httparse::Error::Status => ErrorKind::BadStatus,
        httparse::Error::Token if !method_is_token(head) => ErrorKind::BadMethod,
        httparse::Error::Token => ErrorKind::BadStartLine,
        httparse::Error::TooManyHeaders => ErrorKind::TooManyFields { limit: max_fields },
        httparse::Error::Version if names_other_version(head) => ErrorKind::UnsupportedVersion,
        httparse::Error::Version => ErrorKind::BadStartLine,
    }
}

/// RFC 9110 §2.5: a message in HTTP/1.x with x above 1 is processed as if it
/// were HTTP/1.1, the highest minor version implemented. `httparse` refuses
/// such a version, so the head is copied with its minor digit lowered to 1 and
/// parsed again (a rare case: only this path pays for the copy). `None` when
/// the version is not `HTTP/1.2`…`HTTP/1.9`: the last of the request line's
/// words, the first of a status line's.
fn higher_minor(head: &Bytes, is_request: bool) -> Option<Bytes> {
    const LEN: usize = b"HTTP/1.x".len();
    let line_end = memchr::memchr(b'\r', head)?;
    let (at, sep) = if is_request {
        let at = line_end.checked_sub(LEN)?;
        (at, at.checked_sub(1)?)
    } else {
        (0, LEN)
    };
    let version = head.get(at..at + LEN)?;
    if head.get(sep) != Some(&b' ')
        || !matches!(
            version,
            [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9']
        )
    {
        return None;
    }
    let mut copy = head.to_vec();
    copy[at + LEN - 1] = b'1';
    Some(Bytes::from(copy))
}

/// Whether the start line begins with a token (RFC 9110 §5.6.2) then a space.
fn method_is_token(head: &[u8]) -> bool {
    let word = head.split(|&b| b == b' ').next().unwrap_or(head);
    !word.is_empty()
        && word
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && head.len() > word.len()
}

/// A field line that starts with whitespace continues the previous one.
fn is_obs_fold(head: &[u8]) -> bool {
    memchr::memmem::find(head, b"\n ").is_some() || memchr::memmem::find(head, b"\n\t").is_some()
}

/// Whether the start line is well-formed but for its version, `HTTP/x.y` other
/// than 1.0/1.1: the third of exactly three words in a request line, the first
/// word of a status line.
fn names_other_version(head: &[u8]) -> bool {
    let line = &head[..memchr::memchr(b'\r', head).unwrap_or(head.len())];
    let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let version = match words.as_slice() {
        [_, _, version] if !line.starts_with(b"HTTP/") => version,
        [version, ..] => version,
        [] => return false,
    };
    matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_found_however_split() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        for split in 0..head.len() {
            let mut scanned = 0;
            let first = find_head_end(&head[..split], &mut scanned).unwrap();
            let end = first.or_else(|| find_head_end(head, &mut scanned).unwrap());
            assert_eq!(end, Some(head.len() - 4), "split at {split}");
        }
    }

    #[test]
    fn bare_lf_refused() {
        let mut s = 0;
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\nHost: a\r\n\r\n", &mut s),
            Err(ErrorKind::BareLf)
        );
        let mut s = 0;
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nHost: a\n\n", &mut s),
            Err(ErrorKind::BareLf)
        );
    }

    #[test]
    fn bare_cr_refused_as_soon_as_the_next_byte_is_seen() {
        let head = b"GET / HTTP/1.1\rHost: a\r\r";
        let mut s = 0;
        assert_eq!(find_head_end(head, &mut s), Err(ErrorKind::BareCr));
        // Split after a CR: nothing is known until the byte after it arrives,
        // and that byte is then looked at.
        let mut s = 0;
        assert_eq!(find_head_end(&head[..15], &mut s), Ok(None));
        assert_eq!(find_head_end(&head[..16], &mut s), Err(ErrorKind::BareCr));
        // A CR inside a line of a head that ends: the parser refuses it.
        let cfg = Config::default();
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nX\r: a\r\n\r\n",
            b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\rX\r\nHost: a\r\n\r\n",
        ] {
            let mut s = 0;
            let end = find_head_end(head, &mut s).unwrap().unwrap();
            let e = parse_request(&Bytes::copy_from_slice(&head[..end]), &cfg).unwrap_err();
            assert_eq!(
                e.kind(),
                &ErrorKind::BareCr,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn higher_minor_version_read_as_http11() {
        let config = Config::default();
        for minor in 2..=9 {
            let head = Bytes::from(format!("GET /x HTTP/1.{minor}\r\nHost: a\r\nX: y\r\n\r\n"));
            let (req, _) = parse_request(&head, &config).unwrap();
            assert_eq!(req.version(), Version::HTTP_11, "1.{minor}");
            assert_eq!(req.uri(), "/x");
            assert_eq!(req.headers()["x"], "y");
            let head = Bytes::from(format!("HTTP/1.{minor} 204 No Content\r\nX: y\r\n\r\n"));
            let (res, _) = parse_response(&head, &config, false).unwrap();
            assert_eq!(res.version(), Version::HTTP_11, "1.{minor}");
            assert_eq!(res.status(), StatusCode::NO_CONTENT);
        }
        for head in [
            "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            "GET / HTTP/3.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/0.9\r\nHost: a\r\n\r\n",
        ] {
            let e = parse_request(&Bytes::from(head), &config).unwrap_err();
            assert_eq!(*e.kind(), ErrorKind::UnsupportedVersion, "{head:?}");
        }
        let e =
            parse_response(&Bytes::from("HTTP/2.0 200 OK\r\n\r\n"), &config, false).unwrap_err();
        assert_eq!(*e.kind(), ErrorKind::UnsupportedVersion);
        // Not a version at all: still a malformed start line.
        let e =
            parse_request(&Bytes::from("GET / HTTP/1.12\r\nHost: a\r\n\r\n"), &config).unwrap_err();
        assert_eq!(*e.kind(), ErrorKind::BadStartLine);
    }

    #[test]
    fn empty_field_block_ends_at_once() {
        let mut s = 0;
        assert_eq!(find_head_end(b"\r\nnext", &mut s), Ok(Some(2)));
    }
}
