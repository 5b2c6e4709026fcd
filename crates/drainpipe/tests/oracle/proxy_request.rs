//! The proxy request path's invariants, shared by the `cargo test` suite
//! (`tests/fuzz_proxy_path.rs`) and the cargo-fuzz target
//! (`fuzz/fuzz_targets/proxy_request.rs`, which includes this file).
//!
//! A request head the server connection yielded is rewritten by
//! `drainpipe::proxy::request_fields` (as the proxy does), given the upstream
//! target and `Host` the proxy gives it, serialised by a client connection (as
//! the proxy's pool sends it) and parsed again by a strict server connection
//! (as the upstream reads it). Invariants:
//! - no hop-by-hop field survives the rewrite: the fixed set, every field the
//!   request's `Connection`/`Proxy-Connection` named (only `Upgrade` and
//!   `Connection: upgrade` when the request is tunnelled);
//! - `Expect` goes on unchanged toward the origin (RFC 9110 §10.1.1) unless
//!   the request is HTTP/1.0 (whose expectation is ignored) or its
//!   `Connection` named it;
//! - at most one `Host`; no `Transfer-Encoding`; `Content-Length` only with
//!   the length the body was framed with;
//! - what goes upstream parses strictly, with the same method and target, one
//!   `Host`, at most one `Content-Length`, the body framed exactly as the
//!   client sent it, and no hop-by-hop field but the connection's own.

use std::sync::Arc;

use bytes::Buf;
use drainpipe::proto::{
    BodySize, Config, Connection, ConnectionTokens, Event, Framing, HopByHop, Role, WriteBuf,
};
use drainpipe::proxy::{request_fields, Forwarding};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Version};

pub const FIXED_HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Fields the proxy itself adds (a `Connection` may name them; the proxy then
/// writes its own value).
pub const ADDED: [&str; 4] = [
    "via",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

pub const UPSTREAM: &str = "127.0.0.1:8080";

/// The invariants for one request head; returns whether it went upstream.
pub fn check(head: Request<()>, framing: Framing) -> bool {
    let original = head.headers().clone();
    let named = HopByHop::of(&original);
    let tunnel = head.method() != Method::CONNECT
        && original.contains_key(header::UPGRADE)
        && ConnectionTokens::of(&original).upgrade;
    let mut headers = original.clone();
    request_fields(
        &mut headers,
        &Forwarding::default(),
        Some("127.0.0.1:5000".parse().unwrap()),
        false,
        head.version(),
        tunnel,
    );

    for name in FIXED_HOP_BY_HOP
        .iter()
        .map(|n| HeaderName::from_static(n))
        .chain(named.named().iter().cloned())
    {
        if ADDED.contains(&name.as_str()) {
            continue;
        }
        if tunnel && name == header::UPGRADE {
            assert_eq!(headers.get_all(&name).iter().count(), 1);
            continue;
        }
        if tunnel && name == header::CONNECTION {
            assert_eq!(values(&headers, &name), ["upgrade"]);
            continue;
        }
        assert!(
            !headers.contains_key(&name),
            "hop-by-hop `{name}` survived: {headers:?}"
        );
    }
    let expect_named = named.named().contains(&header::EXPECT);
    if head.version() == Version::HTTP_10 || expect_named {
        assert!(!headers.contains_key(header::EXPECT), "{headers:?}");
    } else {
        assert_eq!(
            values(&headers, &header::EXPECT),
            values(&original, &header::EXPECT)
        );
    }
    assert!(!headers.contains_key(header::TRANSFER_ENCODING));
    assert!(
        headers.get_all(header::HOST).iter().count() <= 1,
        "{headers:?}"
    );
    let lengths = values(&headers, &header::CONTENT_LENGTH);
    for cl in &lengths {
        for element in cl.split(',') {
            assert_eq!(
                Some(framing),
                element.trim().parse().ok().map(Framing::Length),
                "Content-Length {lengths:?} but the body is framed {framing:?}"
            );
        }
    }
    let via = values(&headers, &header::VIA);
    assert_eq!(via.len(), 1);
    let version = if head.version() == Version::HTTP_10 {
        "1.0"
    } else {
        "1.1"
    };
    assert!(via[0].ends_with(&format!("{version} drainpipe")), "{via:?}");
    assert_eq!(
        values(&headers, &HeaderName::from_static("x-forwarded-proto")),
        ["http"]
    );

    // Upstream, as the proxy builds it (a route for "/"). CONNECT is sent
    // on in authority-form (a tunnel request, not a target to compare).
    if !head.uri().path().starts_with('/') || head.method() == Method::CONNECT {
        return false;
    }
    let path = head
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let Ok(uri) = format!("http://{UPSTREAM}{path}").parse() else {
        return false;
    };
    let (mut parts, ()) = head.into_parts();
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    if !headers.contains_key(header::HOST) {
        headers.insert(header::HOST, HeaderValue::from_static(UPSTREAM));
    }
    parts.headers = headers;
    let size = match framing {
        Framing::Length(n) => BodySize::Exact(n),
        Framing::None => BodySize::Exact(0),
        Framing::Chunked | Framing::UntilClose => BodySize::Unknown,
    };
    let mut client = Connection::new(Role::Client, Arc::new(Config::default()));
    let mut wire = WriteBuf::new();
    let sent = match client.send_request(&parts, size, &mut wire) {
        Ok(f) => f,
        Err(e) => panic!("the rewritten request cannot be sent: {e}: {parts:?}"),
    };
    let bytes = wire.copy_to_bytes(wire.remaining());
    let mut upstream = Connection::new(
        Role::Server,
        Arc::new(Config {
            max_head_bytes: 64 * 1024,
            max_fields: drainpipe::proto::config::FIELDS_CAP,
            ..Config::default()
        }),
    );
    upstream.receive(&bytes);
    let (seen, seen_framing) = match upstream.next_event() {
        Ok(Event::Request { head, body }) => (head, body),
        other => panic!(
            "the upstream cannot parse what the proxy sent: {other:?}\n{}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    assert_eq!(seen.method(), parts.method);
    // RFC 9112 §3.2.1: an empty path goes out as "/".
    let expected = if path.starts_with('/') {
        path.clone()
    } else {
        format!("/{path}")
    };
    assert_eq!(seen.uri().to_string(), expected);
    assert_eq!(seen_framing, sent, "framed one way, parsed another");
    assert_eq!(seen.headers().get_all(header::HOST).iter().count(), 1);
    assert!(values(seen.headers(), &header::CONTENT_LENGTH).len() <= 1);
    for name in FIXED_HOP_BY_HOP {
        let allowed = match name {
            "transfer-encoding" => sent == Framing::Chunked,
            "connection" | "upgrade" => tunnel,
            _ => false,
        };
        assert!(
            allowed || !seen.headers().contains_key(name),
            "`{name}` reached the upstream:\n{}",
            String::from_utf8_lossy(&bytes)
        );
    }
    true
}

pub fn values(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}
