//! Every request-smuggling shape is refused with the right error and status, and
//! nothing behind it is ever turned into a request: the error is sticky and the
//! connection closes after answering it.

mod common;

use common::*;
use drainpipe_proto::ErrorKind;

/// Feeds `raw` (with a request to smuggle appended) and checks the connection
/// refuses it with `kind`/`status` and never yields the smuggled request.
fn assert_refused(name: &str, raw: &str, kind: ErrorKind, status: u16) {
    let mut srv = server();
    let mut input = raw.as_bytes().to_vec();
    input.extend_from_slice(b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n");
    srv.receive(&input);
    let mut seen = Vec::new();
    for _ in 0..64 {
        let ev = convert(srv.next_event());
        if let Ev::Request { target, .. } = &ev {
            assert_ne!(target, "/smuggled", "{name}: smuggled request processed");
        }
        let stop = matches!(ev, Ev::Error(_) | Ev::NeedData | Ev::Paused);
        seen.push(ev);
        if stop {
            break;
        }
    }
    let last = seen.last().cloned();
    assert_eq!(
        last,
        Some(Ev::Error(kind.clone())),
        "{name}: events {seen:?}"
    );
    assert_eq!(kind.status().as_u16(), status, "{name}");
    // Sticky: asking again gives the same error, never the next request.
    for _ in 0..3 {
        assert_eq!(convert(srv.next_event()), Ev::Error(kind.clone()), "{name}");
    }
    assert!(!srv.keep_alive(), "{name}: connection must close");
}

const H: &str = "POST / HTTP/1.1\r\nHost: a\r\n";

#[test]
fn cl_te_shapes() {
    let cases: Vec<(&str, String, ErrorKind, u16)> = vec![
        (
            "CL.TE",
            format!("{H}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX"),
            ErrorKind::ContentLengthAndTransferEncoding,
            400,
        ),
        (
            "TE.CL",
            format!("{H}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"),
            ErrorKind::ContentLengthAndTransferEncoding,
            400,
        ),
        (
            "duplicate differing Content-Length",
            format!("{H}Content-Length: 0\r\nContent-Length: 5\r\n\r\n"),
            ErrorKind::BadContentLength,
            400,
        ),
        (
            "Content-Length list that differs",
            format!("{H}Content-Length: 0, 5\r\n\r\n"),
            ErrorKind::BadContentLength,
            400,
        ),
        (
            "signed Content-Length",
            format!("{H}Content-Length: +5\r\n\r\n"),
            ErrorKind::BadContentLength,
            400,
        ),
    ];
    for (name, raw, kind, status) in cases {
        assert_refused(name, &raw, kind, status);
    }
}

#[test]
fn te_obfuscations() {
    let cases: Vec<(&str, String, ErrorKind, u16)> = vec![
        (
            "chunked not last",
            format!("{H}Transfer-Encoding: chunked, identity\r\n\r\n"),
            ErrorKind::BadTransferEncoding,
            400,
        ),
        (
            "xchunked",
            format!("{H}Transfer-Encoding: xchunked\r\n\r\n"),
            ErrorKind::BadTransferEncoding,
            400,
        ),
        (
            "chunked with trailing junk",
            format!("{H}Transfer-Encoding: chunked;x\r\n\r\n"),
            ErrorKind::BadTransferEncoding,
            400,
        ),
        (
            "chunked then identity on a second line",
            format!("{H}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"),
            ErrorKind::BadTransferEncoding,
            400,
        ),
        (
            "chunked twice",
            format!("{H}Transfer-Encoding: chunked, chunked\r\n\r\n"),
            ErrorKind::BadTransferEncoding,
            400,
        ),
        (
            "unknown coding before chunked",
            format!("{H}Transfer-Encoding: foo, chunked\r\n\r\n"),
            ErrorKind::UnknownTransferCoding,
            501,
        ),
        (
            "TE with whitespace before the colon",
            format!("{H}Transfer-Encoding : chunked\r\n\r\n"),
            ErrorKind::BadFieldName,
            400,
        ),
        (
            "TE folded onto a second line",
            format!("{H}Transfer-Encoding:\r\n chunked\r\n\r\n"),
            ErrorKind::ObsFold,
            400,
        ),
        (
            "TE in an HTTP/1.0 request",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".to_string(),
            ErrorKind::BadTransferEncoding,
            400,
        ),
        (
            "empty TE",
            format!("{H}Transfer-Encoding: \r\n\r\n"),
            ErrorKind::BadTransferEncoding,
            400,
        ),
    ];
    for (name, raw, kind, status) in cases {
        assert_refused(name, &raw, kind, status);
    }
}

#[test]
fn chunk_size_shapes() {
    let te = format!("{H}Transfer-Encoding: chunked\r\n\r\n");
    let cases: Vec<(&str, String, ErrorKind, u16)> = vec![
        (
            "chunk size overflowing 64 bits",
            format!("{te}10000000000000000\r\n"),
            ErrorKind::ChunkSizeOverflow,
            400,
        ),
        (
            "non-hex chunk size",
            format!("{te}g\r\n"),
            ErrorKind::BadChunkSize,
            400,
        ),
        (
            "0x-prefixed chunk size",
            format!("{te}0x5\r\nhello\r\n0\r\n\r\n"),
            ErrorKind::BadChunkSize,
            400,
        ),
        (
            "negative chunk size",
            format!("{te}-1\r\n"),
            ErrorKind::BadChunkSize,
            400,
        ),
        (
            "chunk size with a bare LF",
            format!("{te}5\nhello\r\n0\r\n\r\n"),
            ErrorKind::BareLf,
            400,
        ),
        (
            "chunk data longer than its size",
            format!("{te}3\r\nhello\r\n0\r\n\r\n"),
            ErrorKind::BadChunkData,
            400,
        ),
        (
            "trailer with a bare LF",
            format!("{te}0\r\nX: y\n\r\n"),
            ErrorKind::BareLf,
            400,
        ),
    ];
    for (name, raw, kind, status) in cases {
        assert_refused(name, &raw, kind, status);
    }
}

#[test]
fn field_and_line_shapes() {
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let cases: Vec<(&str, String, ErrorKind, u16)> = vec![
        (
            "obs-fold",
            format!("{H}X-A: 1\r\n\t2\r\n\r\n"),
            ErrorKind::ObsFold,
            400,
        ),
        (
            "whitespace before the colon",
            format!("{H}Content-Length : 0\r\n\r\n"),
            ErrorKind::BadFieldName,
            400,
        ),
        (
            "NUL in a value",
            format!("{H}X-A: a\0b\r\n\r\n"),
            ErrorKind::BadFieldValue,
            400,
        ),
        (
            "CR in a value (bare CR)",
            format!("{H}X-A: a\rb\r\n\r\n"),
            ErrorKind::BareCr,
            400,
        ),
        (
            "LF in a value (bare LF)",
            format!("{H}X-A: a\nb\r\n\r\n"),
            ErrorKind::BareLf,
            400,
        ),
        (
            "bare LF request line",
            "GET / HTTP/1.1\nHost: a\n\n".into(),
            ErrorKind::BareLf,
            400,
        ),
        (
            "missing Host",
            "GET / HTTP/1.1\r\n\r\n".into(),
            ErrorKind::MissingHost,
            400,
        ),
        (
            "duplicate Host",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(),
            ErrorKind::DuplicateHost,
            400,
        ),
        (
            "a 64 KiB head",
            big,
            ErrorKind::HeadTooLarge { limit: 32 * 1024 },
            431,
        ),
        (
            "space inside the request line",
            "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n".into(),
            ErrorKind::BadStartLine,
            400,
        ),
    ];
    for (name, raw, kind, status) in cases {
        assert_refused(name, &raw, kind, status);
    }
}

#[test]
fn absolute_form_oddities() {
    // Absolute-form is accepted (a proxy needs it); the target must parse.
    let mut srv = server();
    let evs = feed(
        &mut srv,
        b"GET http://example.com/x HTTP/1.1\r\nHost: other\r\n\r\n",
    );
    assert!(matches!(&evs[0], Ev::Request { target, .. } if target == "http://example.com/x"));
    assert_refused(
        "absolute-form with a space-less garbage authority",
        "GET http://exa mple.com/ HTTP/1.1\r\nHost: a\r\n\r\n",
        ErrorKind::BadStartLine,
        400,
    );
    assert_refused(
        "a target with a control byte",
        "GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n",
        ErrorKind::BadStartLine,
        400,
    );
}
