//! RFC 9112 §6.3 (message body length), one table row per case, each naming its
//! step; and the head strictness rules of RFC 9112 §2–§5, one row per rule.

mod common;

use common::*;
use drainpipe_proto::{ErrorKind, Framing};
use http::StatusCode;

/// What a received request's framing should come out as.
enum Want {
    Framing(Framing),
    Error(ErrorKind, u16),
}

fn request_framing(raw: &str) -> Result<Framing, (ErrorKind, u16)> {
    let mut server = server();
    server.receive(raw.as_bytes());
    match server.next_event() {
        Ok(drainpipe_proto::Event::Request { body, .. }) => Ok(body),
        Ok(other) => panic!("{raw:?}: unexpected {other:?}"),
        Err(e) => Err((e.kind().clone(), e.status().as_u16())),
    }
}

#[test]
fn request_body_length_table() {
    use Want::*;
    let rows: &[(&str, &str, Want)] = &[
        (
            "§6.3 step 3: CL and TE together are refused (smuggling)",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            Error(ErrorKind::ContentLengthAndTransferEncoding, 400),
        ),
        (
            "§6.3 step 4: chunked final → chunked",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            Framing(drainpipe_proto::Framing::Chunked),
        ),
        (
            "§6.3 step 4: request TE without chunked final → 400",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            Error(ErrorKind::BadTransferEncoding, 400),
        ),
        (
            "§6.1: unknown coding before chunked → 501",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Error(ErrorKind::UnknownTransferCoding, 501),
        ),
        (
            "§6.1: TE in an HTTP/1.0 request is faulty framing",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            Error(ErrorKind::BadTransferEncoding, 400),
        ),
        (
            "§6.3 step 5: differing CL values → 400",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            Error(ErrorKind::BadContentLength, 400),
        ),
        (
            "§6.3 step 5: non-numeric CL → 400",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5a\r\n\r\n",
            Error(ErrorKind::BadContentLength, 400),
        ),
        (
            "§6.3 step 6 (RFC 9110 §8.6): identical repeated CL is one length",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            Framing(drainpipe_proto::Framing::Length(5)),
        ),
        (
            "§6.3 step 6: CL → that length",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            Framing(drainpipe_proto::Framing::Length(0)),
        ),
        (
            "§6.3 step 7: a request with neither has no body",
            "POST / HTTP/1.1\r\nHost: a\r\n\r\n",
            Framing(drainpipe_proto::Framing::None),
        ),
    ];
    for (rule, raw, want) in rows {
        let got = request_framing(raw);
        match want {
            Framing(f) => assert_eq!(got, Ok(*f), "{rule}"),
            Error(kind, status) => assert_eq!(got, Err((kind.clone(), *status)), "{rule}"),
        }
    }
}

fn response_framing(method: &str, raw: &str) -> Result<Framing, ErrorKind> {
    let mut client = client();
    let req = http::Request::builder()
        .method(method)
        .uri("http://a/")
        .body(&b""[..])
        .unwrap();
    request(&mut client, req);
    client.receive(raw.as_bytes());
    loop {
        match client.next_event() {
            Ok(drainpipe_proto::Event::Response { body, .. }) => return Ok(body),
            Ok(drainpipe_proto::Event::Informational(_)) => continue,
            Ok(other) => panic!("{raw:?}: unexpected {other:?}"),
            Err(e) => return Err(e.kind().clone()),
        }
    }
}

#[test]
fn response_body_length_table() {
    let rows: &[(&str, &str, &str, Result<Framing, ErrorKind>)] = &[
        (
            "§6.3 step 1: response to HEAD has no body, whatever CL says",
            "HEAD",
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            Ok(Framing::None),
        ),
        (
            "§6.3 step 1: 204 has no body",
            "GET",
            "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
            Ok(Framing::None),
        ),
        (
            "§6.3 step 1: 304 has no body",
            "GET",
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            Ok(Framing::None),
        ),
        (
            "§6.3 step 1: 1xx has no body (the final response follows)",
            "GET",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            Ok(Framing::Length(2)),
        ),
        (
            "§6.3 step 2: 2xx to CONNECT is a tunnel, no body",
            "CONNECT",
            "HTTP/1.1 200 Connection established\r\nContent-Length: 10\r\n\r\n",
            Ok(Framing::None),
        ),
        (
            "§6.3 step 3: CL and TE together refused",
            "GET",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            Err(ErrorKind::ContentLengthAndTransferEncoding),
        ),
        (
            "§6.3 step 4: chunked final → chunked",
            "GET",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Ok(Framing::Chunked),
        ),
        (
            "§6.3 step 4: response codings not ending in chunked: content would stay coded",
            "GET",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            Err(ErrorKind::UnknownTransferCoding),
        ),
        (
            "§6.3 step 5: differing CL → error",
            "GET",
            "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
            Err(ErrorKind::BadContentLength),
        ),
        (
            "§6.3 step 6: CL",
            "GET",
            "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n",
            Ok(Framing::Length(7)),
        ),
        (
            "§6.3 step 8: a response with neither is read until close",
            "GET",
            "HTTP/1.1 200 OK\r\n\r\n",
            Ok(Framing::UntilClose),
        ),
    ];
    for (rule, method, raw, want) in rows {
        assert_eq!(&response_framing(method, raw), want, "{rule}");
    }
}

#[test]
fn head_strictness_table() {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    let many_fields = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        (0..101)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let rows: Vec<(&str, String, ErrorKind, u16)> = vec![
        (
            "RFC 9112 §5.1: no whitespace between field name and colon",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n".into(),
            ErrorKind::BadFieldName,
            400,
        ),
        (
            "RFC 9112 §5.2: obs-fold refused",
            "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n".into(),
            ErrorKind::ObsFold,
            400,
        ),
        (
            "RFC 9110 §5.5: NUL in a field value",
            "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n".into(),
            ErrorKind::BadFieldValue,
            400,
        ),
        (
            "RFC 9112 §2.2: bare CR in a field value",
            "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n".into(),
            ErrorKind::BareCr,
            400,
        ),
        (
            "RFC 9112 §2.2: bare LF as a line end",
            "GET / HTTP/1.1\nHost: a\r\n\r\n".into(),
            ErrorKind::BareLf,
            400,
        ),
        (
            "RFC 9112 §3.2: HTTP/1.1 request without Host",
            "GET / HTTP/1.1\r\n\r\n".into(),
            ErrorKind::MissingHost,
            400,
        ),
        (
            "RFC 9112 §3.2: two Host fields",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(),
            ErrorKind::DuplicateHost,
            400,
        ),
        (
            "RFC 9112 §3: request target over the limit → 414",
            long_target,
            ErrorKind::UriTooLong { limit: 8192 },
            414,
        ),
        (
            "RFC 6585 §5: too many fields → 431",
            many_fields,
            ErrorKind::TooManyFields { limit: 100 },
            431,
        ),
        (
            "RFC 6585 §5: a 64 KiB head → 431",
            big_head,
            ErrorKind::HeadTooLarge { limit: 32 * 1024 },
            431,
        ),
        (
            "RFC 9112 §2.3: HTTP/2.0 in an HTTP/1 request line → 505",
            "GET / HTTP/2.0\r\nHost: a\r\n\r\n".into(),
            ErrorKind::UnsupportedVersion,
            505,
        ),
        (
            "RFC 9110 §2.5: a major version above 1 → 505",
            "GET / HTTP/3.1\r\nHost: a\r\n\r\n".into(),
            ErrorKind::UnsupportedVersion,
            505,
        ),
        (
            "RFC 9112 §2.2: lines ended by a bare CR, and no LF at all",
            "GET / HTTP/1.1\rHost: a\r\r".into(),
            ErrorKind::BareCr,
            400,
        ),
        (
            "RFC 9112 §2.2: a bare CR ends the request line",
            "GET / HTTP/1.1\rHost: a\r\n\r\n".into(),
            ErrorKind::BareCr,
            400,
        ),
        (
            "RFC 9112 §3: malformed request line",
            "GET /\r\nHost: a\r\n\r\n".into(),
            ErrorKind::BadStartLine,
            400,
        ),
        (
            "RFC 9112 §3.2.3: authority-form only with CONNECT",
            "GET example.com:80 HTTP/1.1\r\nHost: example.com\r\n\r\n".into(),
            ErrorKind::BadTarget,
            400,
        ),
        (
            "RFC 9112 §3.2.3: CONNECT only with authority-form",
            "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n".into(),
            ErrorKind::BadTarget,
            400,
        ),
        (
            "RFC 9112 §3.2.4: asterisk-form only with OPTIONS",
            "GET * HTTP/1.1\r\nHost: a\r\n\r\n".into(),
            ErrorKind::BadTarget,
            400,
        ),
        (
            "RFC 9110 §4.2.4: userinfo in an absolute-form target",
            "GET http://user:pw@a/x HTTP/1.1\r\nHost: a\r\n\r\n".into(),
            ErrorKind::UserinfoInTarget,
            400,
        ),
        (
            "RFC 9110 §4.2.4: userinfo without a password, HTTP/1.0",
            "GET http://user@a:8080/ HTTP/1.0\r\n\r\n".into(),
            ErrorKind::UserinfoInTarget,
            400,
        ),
        (
            "RFC 9110 §4.2.4: userinfo in an authority-form target",
            "CONNECT user@a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n".into(),
            ErrorKind::UserinfoInTarget,
            400,
        ),
        (
            "RFC 9112 §3.2: Host must be uri-host [\":\" port]",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n".into(),
            ErrorKind::BadHost,
            400,
        ),
        (
            "RFC 9110 §9.1: method must be a token",
            "G(T / HTTP/1.1\r\nHost: a\r\n\r\n".into(),
            ErrorKind::BadMethod,
            400,
        ),
    ];
    for (rule, raw, kind, status) in rows {
        let got = request_framing(&raw);
        assert_eq!(got, Err((kind, status)), "{rule}");
    }
}

#[test]
fn valid_target_forms_are_accepted() {
    for raw in [
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        "GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /x?y HTTP/1.1\r\nHost: a:8080\r\n\r\n",
        // '@' is userinfo only inside an authority.
        "GET /a@b?c=d@e HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://a/b@c HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert_eq!(request_framing(raw), Ok(Framing::None), "{raw:?}");
    }
}

#[test]
fn higher_minor_version_is_served_as_http11() {
    // RFC 9110 §2.5: HTTP/1.2 is processed as HTTP/1.1, the highest minor
    // version implemented: Host is required, the connection persists, and the
    // response says HTTP/1.1.
    let mut server = server();
    let evs = feed(&mut server, b"GET /a HTTP/1.2\r\nHost: h\r\n\r\n");
    assert_eq!(
        evs,
        [
            Ev::Request {
                method: "GET".into(),
                target: "/a".into(),
                version: "HTTP/1.1".into(),
                fields: vec![("host".into(), "h".into())],
                body: Framing::None,
            },
            Ev::End(vec![]),
            Ev::NeedData,
        ]
    );
    let wire = respond(&mut server, 200, &[], b"ok");
    assert_eq!(s(&wire), "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    assert!(server.keep_alive());
    assert_eq!(
        request_framing("GET / HTTP/1.9\r\n\r\n"),
        Err((ErrorKind::MissingHost, 400))
    );
}

#[test]
fn http10_request_without_host_is_accepted() {
    // RFC 9112 §3.2 requires Host of HTTP/1.1 only.
    assert_eq!(request_framing("GET / HTTP/1.0\r\n\r\n"), Ok(Framing::None));
}

#[test]
fn leading_empty_lines_are_ignored() {
    // RFC 9112 §2.2: at least one empty line before a request-line is ignored.
    assert_eq!(
        request_framing("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        Ok(Framing::None)
    );
}

#[test]
fn oversized_declared_body_gets_413_before_reading_it() {
    let mut server = server_with(drainpipe_proto::Config {
        max_body_bytes: Some(10),
        ..Default::default()
    });
    let evs = feed(
        &mut server,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n",
    );
    assert_eq!(evs, [Ev::Error(ErrorKind::BodyTooLarge { limit: 10 })]);
    assert_eq!(
        ErrorKind::BodyTooLarge { limit: 10 }.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
}
