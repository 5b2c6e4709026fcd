//! A client and a server `Connection` run against each other in memory: exact
//! bytes on the wire, events on both sides, persistence decisions on both sides.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use drainpipe_proto::{
    BodySize, Config, Connection, ErrorKind, Framing, KeepAlive, Role, Side, WriteBuf,
};

fn get(uri: &str) -> http::Request<&'static [u8]> {
    http::Request::get(uri).body(&b""[..]).unwrap()
}

// RFC 9112 §9.3: HTTP/1.1 persists by default; no persistence fields needed.
#[test]
fn http11_keep_alive_exchange_exact_bytes() {
    let (mut c, mut srv) = (client(), server());
    let req = request(&mut c, get("http://example.com/a?b=1"));
    assert_eq!(s(&req), "GET /a?b=1 HTTP/1.1\r\nhost: example.com\r\n\r\n");
    let evs = feed(&mut srv, &req);
    assert_eq!(evs.len(), 3, "{evs:?}");
    assert!(
        matches!(&evs[0], Ev::Request { method, target, body: Framing::None, .. }
        if method == "GET" && target == "/a?b=1")
    );
    assert_eq!(evs[1], Ev::End(vec![]));
    assert_eq!(evs[2], Ev::NeedData);

    let res = respond(&mut srv, 200, &[("content-type", "text/plain")], b"hi");
    assert_eq!(
        s(&res),
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nhi"
    );
    let evs = feed(&mut c, &res);
    assert!(matches!(
        &evs[0],
        Ev::Response {
            status: 200,
            body: Framing::Length(2),
            ..
        }
    ));
    assert_eq!(
        evs[1..],
        [Ev::Data(b"hi".to_vec()), Ev::End(vec![]), Ev::NeedData]
    );
    for conn in [&c, &srv] {
        assert!(conn.keep_alive() && conn.is_idle() && !conn.must_close());
    }
}

// RFC 9112 §9.3 and Appendix C.2.2: HTTP/1.0 keep-alive is opt-in and echoed,
// with Keep-Alive: timeout, max (M = requests left).
#[test]
fn http10_keep_alive_echoed_with_parameters() {
    let config = Config {
        keep_alive: KeepAlive {
            enabled: true,
            max_requests: Some(3),
            timeout_secs: Some(5),
            ..KeepAlive::default()
        },
        ..Config::default()
    };
    let mut srv = server_with(config);
    let req = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    feed(&mut srv, req);
    let res = respond(&mut srv, 200, &[], b"x");
    assert_eq!(
        s(&res),
        "HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: keep-alive\r\n\
keep-alive: timeout=5, max=2\r\n\r\nx"
    );
    feed(&mut srv, req);
    let res = respond(&mut srv, 200, &[], b"x");
    assert!(
        s(&res).contains("keep-alive: timeout=5, max=1\r\n"),
        "{}",
        s(&res)
    );
    // The third and last request: Connection: close, and nothing more is read.
    feed(&mut srv, req);
    let res = respond(&mut srv, 200, &[], b"x");
    assert_eq!(
        s(&res),
        "HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx"
    );
    assert!(srv.must_close());
    assert_eq!(feed(&mut srv, req), [Ev::Paused]);

    // The client side reads the advertised parameters.
    let mut c = client();
    let mut r = get("http://a/");
    *r.version_mut() = http::Version::HTTP_10;
    let sent = request(&mut c, r);
    assert_eq!(
        s(&sent),
        "GET / HTTP/1.0\r\nhost: a\r\nconnection: keep-alive\r\n\r\n"
    );
    feed(
        &mut c,
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\nkeep-alive: timeout=5, max=2\r\n\r\n",
    );
    assert!(c.keep_alive());
    assert_eq!(c.peer_keep_alive().timeout_secs, Some(5));
    assert_eq!(c.peer_keep_alive().max, Some(2));
}

// The server's `Keep-Alive: timeout=T, max=M` as the client applies it: the
// timeout of the last response only (one without it clears an earlier one),
// the request limit counting down across responses without `max`.
#[test]
fn client_applies_the_last_keep_alive_timeout_and_counts_down_max() {
    let t0 = Instant::now();
    let margin = Duration::from_secs(1);
    let later = t0 + Duration::from_secs(10);
    let mut c = client();
    assert_eq!(c.peer_requests_left(), None);
    assert_eq!(c.peer_reusable_until(t0, margin), None);

    request(&mut c, get("http://a/"));
    feed(
        &mut c,
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nkeep-alive: timeout=5, max=2\r\n\r\n",
    );
    assert_eq!(
        c.peer_reusable_until(t0, margin),
        Some(t0 + Duration::from_secs(4)),
        "T less the margin"
    );
    assert_eq!(
        c.peer_requests_left(),
        Some(2),
        "max=M: M more after this one"
    );
    assert!(c.is_reusable());

    // No Keep-Alive: the earlier timeout is gone; max counts down.
    request(&mut c, get("http://a/"));
    assert!(!c.is_reusable(), "a request in flight");
    feed(&mut c, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(c.peer_reusable_until(later, margin), None);
    assert_eq!(c.peer_requests_left(), Some(1));
    assert!(c.is_reusable());

    // A timeout again, without max: the new timeout, max still counting.
    request(&mut c, get("http://a/"));
    feed(
        &mut c,
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nkeep-alive: timeout=1\r\n\r\n",
    );
    assert_eq!(c.peer_reusable_until(later, margin), Some(later));
    assert_eq!(
        c.peer_reusable_until(later, Duration::from_millis(400)),
        Some(later + Duration::from_millis(600))
    );
    assert_eq!(c.peer_requests_left(), Some(0));
    assert!(
        c.keep_alive() && c.is_idle() && !c.is_reusable(),
        "max used up"
    );

    // A later max replaces the count.
    let mut c = client();
    request(&mut c, get("http://a/"));
    feed(
        &mut c,
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nkeep-alive: max=0\r\n\r\n",
    );
    assert_eq!(c.peer_requests_left(), Some(0));
    assert!(!c.is_reusable());
}

// A pipelined client: `max=M` counts from the request the response answers,
// not from the last one sent.
#[test]
fn client_counts_keep_alive_max_from_the_answered_request() {
    let mut c = client();
    request(&mut c, get("http://a/1"));
    request(&mut c, get("http://a/2"));
    request(&mut c, get("http://a/3"));
    feed(
        &mut c,
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nkeep-alive: max=3\r\n\r\n",
    );
    // Three more after the first: two of them are already sent.
    assert_eq!(c.peer_requests_left(), Some(1));
    feed(&mut c, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    feed(
        &mut c,
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nkeep-alive: max=1\r\n\r\n",
    );
    assert_eq!(c.peer_requests_left(), Some(1));
    assert!(c.is_reusable());
}

#[test]
fn http10_without_keep_alive_closes() {
    let mut srv = server();
    feed(&mut srv, b"GET / HTTP/1.0\r\n\r\n");
    let res = respond(&mut srv, 200, &[], b"x");
    assert_eq!(
        s(&res),
        "HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx"
    );
    assert!(srv.must_close());
    // The client announced its last request and sent nothing after it.
    assert!(srv.peer_sent_last());

    // A client reading an HTTP/1.0 response without keep-alive does not reuse.
    let mut c = client();
    request(&mut c, get("http://a/"));
    feed(&mut c, b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert!(!c.keep_alive() && c.must_close());
}

// RFC 9112 §6.3 step 8 / §9.3: an unknown length to an HTTP/1.0 client is
// delimited by the close, which makes the connection non-persistent.
#[test]
fn unknown_length_to_http10_is_close_delimited() {
    let mut srv = server();
    feed(
        &mut srv,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    let mut out = WriteBuf::new();
    let (parts, ()) = http::Response::new(()).into_parts();
    let framing = srv
        .send_response(&parts, BodySize::Unknown, &mut out)
        .unwrap();
    assert_eq!(framing, Framing::UntilClose);
    srv.send_data(Bytes::from_static(b"stream"), &mut out)
        .unwrap();
    srv.send_end(None, &mut out).unwrap();
    assert_eq!(
        s(&wire(&mut out)),
        "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nstream"
    );
    assert!(srv.must_close());
}

#[test]
fn unknown_length_to_http11_is_chunked_with_trailers() {
    let (mut c, mut srv) = (client(), server());
    feed(&mut srv, &request(&mut c, get("http://a/")));
    let mut out = WriteBuf::new();
    let (parts, ()) = http::Response::new(()).into_parts();
    assert_eq!(
        srv.send_response(&parts, BodySize::Unknown, &mut out)
            .unwrap(),
        Framing::Chunked
    );
    srv.send_data(Bytes::from_static(b"hello "), &mut out)
        .unwrap();
    srv.send_data(Bytes::from_static(b"world"), &mut out)
        .unwrap();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    srv.send_end(Some(&trailers), &mut out).unwrap();
    let bytes = wire(&mut out);
    assert_eq!(
        s(&bytes),
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\nx-checksum: abc\r\n\r\n"
    );
    let evs = feed(&mut c, &bytes);
    assert_eq!(
        evs[1..],
        [
            Ev::Data(b"hello world".to_vec()),
            Ev::End(vec![("x-checksum".into(), "abc".into())]),
            Ev::NeedData
        ]
    );
    assert!(c.keep_alive() && srv.keep_alive());
}

// RFC 9110 §9.3.2: HEAD gets the GET's Content-Length and no body.
#[test]
fn head_response_advertises_length_sends_no_body() {
    let (mut c, mut srv) = (client(), server());
    let req = http::Request::head("http://a/").body(&b""[..]).unwrap();
    feed(&mut srv, &request(&mut c, req));
    let mut out = WriteBuf::new();
    let (parts, ()) = http::Response::new(()).into_parts();
    assert_eq!(
        srv.send_response(&parts, BodySize::Exact(42), &mut out)
            .unwrap(),
        Framing::None
    );
    let err = srv
        .send_data(Bytes::from_static(b"x"), &mut out)
        .unwrap_err();
    assert_eq!(
        (err.side(), err.kind()),
        (Side::Local, &ErrorKind::BodyNotAllowed)
    );
    srv.send_end(None, &mut out).unwrap();
    let bytes = wire(&mut out);
    assert_eq!(s(&bytes), "HTTP/1.1 200 OK\r\ncontent-length: 42\r\n\r\n");
    let evs = feed(&mut c, &bytes);
    assert_eq!(evs[1..], [Ev::End(vec![]), Ev::NeedData]);
    assert!(c.is_idle());
}

#[test]
fn no_content_and_not_modified_have_no_body() {
    let (mut c, mut srv) = (client(), server());
    for status in [204u16, 304] {
        feed(&mut srv, &request(&mut c, get("http://a/")));
        let bytes = respond(&mut srv, status, &[], b"");
        assert!(!s(&bytes).contains("content-length"), "{}", s(&bytes));
        let evs = feed(&mut c, &bytes);
        assert!(
            matches!(
                &evs[0],
                Ev::Response {
                    body: Framing::None,
                    ..
                }
            ),
            "{evs:?}"
        );
        assert_eq!(evs[1], Ev::End(vec![]));
    }
    assert!(c.keep_alive() && srv.keep_alive());
}

// RFC 9112 §9.6: a close from the client makes the response the last.
#[test]
fn client_close_is_honoured_and_nothing_after_it_is_read() {
    let (mut c, mut srv) = (client(), server());
    let req = http::Request::get("http://a/1")
        .header("connection", "close")
        .body(&b""[..])
        .unwrap();
    let mut bytes = request(&mut c, req);
    assert_eq!(
        s(&bytes),
        "GET /1 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
    );
    // A request pipelined behind the close is never processed.
    bytes.extend_from_slice(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    let evs = feed(&mut srv, &bytes);
    assert_eq!(evs.len(), 3, "{evs:?}");
    assert_eq!(evs[2], Ev::Paused);
    let res = respond(&mut srv, 200, &[], b"");
    assert_eq!(
        s(&res),
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    assert!(srv.must_close());
    assert_eq!(events(&mut srv), [Ev::Paused]);
    // It said close but sent more: the closing server must linger.
    assert!(!srv.peer_sent_last());
    feed(&mut c, &res);
    assert!(c.must_close());
}

// RFC 9112 §9.6: a client that announced its last request sends nothing
// more, so only then may a server close without lingering.
#[test]
fn peer_sent_last_only_when_the_client_announced_it() {
    // Connection: close, read whole, nothing after it.
    let mut srv = server();
    feed(
        &mut srv,
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
    );
    respond(&mut srv, 200, &[], b"");
    assert!(srv.must_close() && srv.peer_sent_last());

    // The body is not read yet: input is still expected.
    let mut srv = server();
    feed(
        &mut srv,
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 3\r\n\r\nab",
    );
    assert!(!srv.peer_sent_last());

    // The server decided the close (a handler's close): the client may have
    // more requests on the way.
    let mut srv = server();
    feed(&mut srv, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    respond(&mut srv, 200, &[("connection", "close")], b"");
    assert!(srv.must_close() && !srv.peer_sent_last());

    // HTTP/1.0 asking for keep-alive, closed by the server's request limit.
    let mut srv = server_with(Config {
        keep_alive: KeepAlive {
            max_requests: Some(1),
            ..KeepAlive::default()
        },
        ..Config::default()
    });
    feed(
        &mut srv,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    respond(&mut srv, 200, &[], b"");
    assert!(srv.must_close() && !srv.peer_sent_last());

    // A client never qualifies.
    let mut c = client();
    request(&mut c, get("http://a/"));
    feed(
        &mut c,
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(c.must_close() && !c.peer_sent_last());
}

#[test]
fn handler_close_is_honoured() {
    let (mut c, mut srv) = (client(), server());
    feed(&mut srv, &request(&mut c, get("http://a/")));
    let res = respond(&mut srv, 200, &[("connection", "close")], b"");
    assert_eq!(
        s(&res),
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    assert!(srv.must_close());
    let evs = feed(&mut c, &res);
    assert_eq!(evs.last(), Some(&Ev::Paused));
    assert!(!c.keep_alive() && c.must_close());
}

// Pipelining: requests parsed ahead, responses in order, in one buffer.
#[test]
fn pipelined_requests_answered_in_order_in_one_write() {
    let (mut c, mut srv) = (client(), server());
    let mut bytes = Vec::new();
    for i in 0..3 {
        bytes.extend(request(&mut c, get(&format!("http://a/{i}"))));
    }
    assert_eq!(c.in_flight(), 3);
    let evs = feed(&mut srv, &bytes);
    let targets: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            Ev::Request { target, .. } => Some(target.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(targets, ["/0", "/1", "/2"], "parsed ahead of the responses");
    assert_eq!(srv.in_flight(), 3);
    let mut out = WriteBuf::new();
    for i in 0..3 {
        let body = format!("r{i}");
        let mut res = http::Response::new(());
        res.headers_mut().insert("x-i", i.into());
        let (parts, ()) = res.into_parts();
        srv.send_response(&parts, BodySize::Exact(2), &mut out)
            .unwrap();
        srv.send_data(Bytes::from(body), &mut out).unwrap();
        srv.send_end(None, &mut out).unwrap();
    }
    let all = wire(&mut out);
    assert_eq!(
        s(&all),
        "HTTP/1.1 200 OK\r\nx-i: 0\r\ncontent-length: 2\r\n\r\nr0\
HTTP/1.1 200 OK\r\nx-i: 1\r\ncontent-length: 2\r\n\r\nr1\
HTTP/1.1 200 OK\r\nx-i: 2\r\ncontent-length: 2\r\n\r\nr2"
    );
    let evs = feed(&mut c, &all);
    let bodies: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            Ev::Data(d) => Some(s(d)),
            _ => None,
        })
        .collect();
    assert_eq!(bodies, ["r0", "r1", "r2"]);
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn pipeline_depth_is_bounded() {
    let mut srv = server_with(Config {
        max_pipelined: 2,
        ..Config::default()
    });
    let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let evs = feed(&mut srv, &req.repeat(3));
    // Two requests parsed, then paused with the third still buffered.
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, Ev::Request { .. }))
            .count(),
        2
    );
    assert_eq!(evs.last(), Some(&Ev::Paused));
    assert_eq!(srv.buffered(), req.len());
    respond(&mut srv, 200, &[], b"");
    let evs = events(&mut srv);
    assert!(matches!(evs[0], Ev::Request { .. }));
}

// RFC 9112 §9.3 / DESIGN: an unread request body within the discard limit keeps
// the connection; beyond it (or unknown) the response carries close.
#[test]
fn unread_request_body_within_limit_keeps_connection() {
    let config = Config {
        max_discard_bytes: 10,
        ..Config::default()
    };
    let mut srv = server_with(config.clone());
    let evs = feed(
        &mut srv,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n",
    );
    assert!(matches!(
        evs[0],
        Ev::Request {
            body: Framing::Length(10),
            ..
        }
    ));
    let res = respond(&mut srv, 200, &[], b"");
    assert!(!s(&res).contains("connection"), "{}", s(&res));
    // The rest of the body is read (and dropped by the driver), then the next request.
    let evs = feed(&mut srv, b"0123456789GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(evs[0], Ev::Data(b"0123456789".to_vec()));
    assert_eq!(evs[1], Ev::End(vec![]));
    assert!(matches!(&evs[2], Ev::Request { target, .. } if target == "/next"));

    let mut srv = server_with(config.clone());
    feed(
        &mut srv,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n",
    );
    let res = respond(&mut srv, 413, &[], b"");
    assert!(s(&res).contains("connection: close\r\n"), "{}", s(&res));
    assert!(srv.must_close());

    let mut srv = server_with(config);
    feed(
        &mut srv,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let res = respond(&mut srv, 200, &[], b"");
    assert!(s(&res).contains("connection: close\r\n"), "{}", s(&res));
}

// RFC 9110 §10.1.1: 100 Continue only when the body is wanted.
#[test]
fn expect_continue_answered_once_and_only_when_asked() {
    let mut srv = server();
    feed(
        &mut srv,
        b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    );
    let mut out = WriteBuf::new();
    assert!(srv.send_continue(&mut out));
    assert!(!srv.send_continue(&mut out));
    assert_eq!(s(&wire(&mut out)), "HTTP/1.1 100 Continue\r\n\r\n");
    let evs = feed(&mut srv, b"abc");
    assert_eq!(evs[..2], [Ev::Data(b"abc".to_vec()), Ev::End(vec![])]);
    let res = respond(&mut srv, 200, &[], b"");
    assert!(!s(&res).contains("connection"));

    // Without the header nothing is sent.
    let mut srv = server();
    feed(
        &mut srv,
        b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
    );
    assert!(!srv.send_continue(&mut out));

    // A final response without 100 while the body is unsent: the client may never
    // send it, so the connection closes.
    let mut srv = server();
    feed(
        &mut srv,
        b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    );
    let res = respond(&mut srv, 417, &[], b"");
    assert!(s(&res).contains("connection: close\r\n"));

    // The client sees the interim response, then the final one.
    let mut c = client();
    let req = http::Request::put("http://a/")
        .header("expect", "100-continue")
        .body(&b"abc"[..])
        .unwrap();
    request(&mut c, req);
    let evs = feed(
        &mut c,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(evs[0], Ev::Informational(100));
    assert!(matches!(evs[1], Ev::Response { status: 200, .. }));
}

// RFC 9110 §7.8: 101 switches protocols; bytes after it belong to the new one.
#[test]
fn upgrade_switches_both_sides() {
    let (mut c, mut srv) = (client(), server());
    let req = http::Request::get("http://a/ws")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .body(&b""[..])
        .unwrap();
    let bytes = request(&mut c, req);
    assert_eq!(
        s(&bytes),
        "GET /ws HTTP/1.1\r\nupgrade: websocket\r\nhost: a\r\nconnection: upgrade\r\n\r\n"
    );
    let mut bytes = bytes;
    bytes.extend_from_slice(b"\x81\x00");
    let evs = feed(&mut srv, &bytes);
    assert_eq!(
        evs.last(),
        Some(&Ev::Paused),
        "nothing read past an upgrade request"
    );
    let res = respond(&mut srv, 101, &[("upgrade", "websocket")], b"");
    assert_eq!(
        s(&res),
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
    );
    assert_eq!(srv.take_switched().as_deref(), Some(&b"\x81\x00"[..]));
    assert!(!srv.must_close());
    let mut res = res;
    res.extend_from_slice(b"frame");
    let evs = feed(&mut c, &res);
    assert_eq!(evs[1..], [Ev::End(vec![]), Ev::Paused]);
    assert_eq!(c.take_switched().as_deref(), Some(&b"frame"[..]));
}

#[test]
fn refused_upgrade_continues_as_http() {
    let mut srv = server();
    let req = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    let evs = feed(&mut srv, req);
    assert_eq!(evs.last(), Some(&Ev::Paused));
    respond(&mut srv, 200, &[], b"");
    let evs = events(&mut srv);
    assert!(matches!(&evs[0], Ev::Request { target, .. } if target == "/2"));
}

#[test]
fn connect_tunnel_switches_after_2xx() {
    let mut srv = server();
    feed(
        &mut srv,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nTLS",
    );
    let res = respond(&mut srv, 200, &[], b"");
    assert_eq!(s(&res), "HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(srv.take_switched().as_deref(), Some(&b"TLS"[..]));

    let mut c = client();
    let req = http::Request::connect("example.com:443")
        .body(&b""[..])
        .unwrap();
    let bytes = request(&mut c, req);
    assert_eq!(
        s(&bytes),
        "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n"
    );
}

// h11's rule: every call checked against the state first.
#[test]
fn illegal_sequences_are_refused_with_local_errors() {
    let mut srv = server();
    let mut out = WriteBuf::new();
    let (parts, ()) = http::Response::new(()).into_parts();
    let e = srv
        .send_response(&parts, BodySize::Exact(0), &mut out)
        .unwrap_err();
    assert_eq!(e.side(), Side::Local);
    assert!(matches!(e.kind(), ErrorKind::IllegalCall(_)));
    assert!(out.is_empty(), "nothing written on a refused call");

    feed(&mut srv, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    srv.send_response(&parts, BodySize::Exact(1), &mut out)
        .unwrap();
    // A second head inside one message.
    let before = out.len();
    assert!(srv
        .send_response(&parts, BodySize::Exact(1), &mut out)
        .is_err());
    assert_eq!(out.len(), before);
    // Ending short of the declared length cannot complete the message.
    let e = srv.send_end(None, &mut out).unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::BodyLengthMismatch {
            declared: 1,
            sent: 0
        }
    );
    assert!(srv.must_close());

    // Role misuse.
    let mut c = client();
    assert!(c
        .send_response(&parts, BodySize::Exact(0), &mut out)
        .is_err());
    let (rparts, ()) = http::Request::new(()).into_parts();
    assert!(srv
        .send_request(&rparts, BodySize::Exact(0), &mut out)
        .is_err());
    // A request without Host or authority cannot be sent as HTTP/1.1.
    let e = c
        .send_request(&rparts, BodySize::Exact(0), &mut out)
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Unsendable(_)));
    // 101 without an upgrade request.
    let mut srv = server();
    feed(&mut srv, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let (p101, ()) = http::Response::builder()
        .status(101)
        .body(())
        .unwrap()
        .into_parts();
    assert!(srv
        .send_response(&p101, BodySize::Exact(0), &mut out)
        .is_err());
    // A caller Content-Length that disagrees with the body.
    let (p, ()) = http::Response::builder()
        .header("content-length", "5")
        .body(())
        .unwrap()
        .into_parts();
    let e = srv
        .send_response(&p, BodySize::Exact(4), &mut out)
        .unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::BodyLengthMismatch {
            declared: 5,
            sent: 4
        }
    );
}

#[test]
fn client_refuses_unsolicited_and_truncated_responses() {
    let mut c = client();
    let evs = feed(&mut c, b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(evs, [Ev::Error(ErrorKind::UnexpectedData)]);
    assert!(c.must_close());

    let mut c = client();
    request(&mut c, get("http://a/"));
    feed(
        &mut c,
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345",
    );
    c.receive_eof();
    assert_eq!(
        events(&mut c),
        [Ev::Error(ErrorKind::Truncated {
            expected: Some(10),
            received: 5
        })]
    );

    // EOF before any response byte: Closed, with the request still in flight (the
    // driver's cue that it may retry).
    let mut c = client();
    request(&mut c, get("http://a/"));
    c.receive_eof();
    assert_eq!(events(&mut c), [Ev::Closed]);
    assert_eq!(c.in_flight(), 1);
}

// DESIGN "Transports and TLS": a close-delimited body that ends without the
// peer proving it (TLS without close_notify) is truncated, never complete;
// the same bytes with a proven EOF end the body.
#[test]
fn close_delimited_body_ending_in_an_unproven_eof_is_truncated() {
    for proven in [true, false] {
        let mut c = client();
        request(&mut c, get("http://a/"));
        let evs = feed(&mut c, b"HTTP/1.1 200 OK\r\n\r\nhello");
        assert!(evs.contains(&Ev::Data(b"hello".to_vec())), "{evs:?}");
        if proven {
            c.receive_eof();
            assert_eq!(events(&mut c), [Ev::End(vec![]), Ev::Paused]);
        } else {
            c.receive_unproven_eof();
            assert_eq!(
                events(&mut c),
                [Ev::Error(ErrorKind::Truncated {
                    expected: None,
                    received: 5
                })]
            );
        }
    }
    // A length-delimited body is complete before any EOF, proven or not.
    let mut c = client();
    request(&mut c, get("http://a/"));
    let evs = feed(&mut c, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    assert!(evs.contains(&Ev::End(vec![])), "{evs:?}");
    c.receive_unproven_eof();
    assert_eq!(events(&mut c), [Ev::Closed]);
}

#[test]
fn client_learns_which_pipelined_requests_were_unanswered() {
    let mut c = client();
    for i in 0..3 {
        request(&mut c, get(&format!("http://a/{i}")));
    }
    feed(
        &mut c,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(c.in_flight(), 1);
    assert!(c.must_close());
}

// DESIGN "Graceful drain": every response whose head is not yet sent carries
// close; idle connections close at once.
#[test]
fn drain_closes_idle_at_once_and_marks_pending_responses() {
    let mut srv = server();
    srv.close_after_current();
    assert!(srv.must_close());

    let mut srv = server();
    feed(
        &mut srv,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    assert!(!srv.is_idle());
    srv.close_after_current();
    assert!(!srv.must_close(), "a request in progress is never dropped");
    let res = respond(&mut srv, 200, &[], b"ok");
    assert!(s(&res).contains("connection: close\r\n"));
    assert!(srv.must_close());
}

#[test]
fn error_response_after_bad_request_closes() {
    let mut srv = server();
    let evs = feed(&mut srv, b"GET / HTTP/1.1\r\nHost : a\r\n\r\n");
    assert_eq!(evs, [Ev::Error(ErrorKind::BadFieldName)]);
    assert!(!srv.must_close(), "the error is still owed its response");
    let res = respond(&mut srv, 400, &[], b"bad");
    assert_eq!(
        s(&res),
        "HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\nconnection: close\r\n\r\nbad"
    );
    assert!(srv.must_close());
}

#[test]
fn keep_alive_disabled_closes_every_exchange() {
    let config = Arc::new(Config {
        keep_alive: KeepAlive {
            enabled: false,
            ..KeepAlive::default()
        },
        ..Config::default()
    });
    let mut c = Connection::new(Role::Client, config.clone());
    let bytes = request(&mut c, get("http://a/"));
    assert!(s(&bytes).contains("connection: close\r\n"));
    let mut srv = Connection::new(Role::Server, config);
    feed(&mut srv, &bytes);
    let res = respond(&mut srv, 200, &[], b"");
    assert!(s(&res).contains("connection: close\r\n"));
}

#[test]
fn idle_connection_gives_its_buffers_back() {
    let mut srv = server();
    feed(&mut srv, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    respond(&mut srv, 200, &[], b"");
    assert!(srv.is_idle());
    srv.release_buffers();
    assert_eq!(srv.recv_buf().capacity(), 0);
}

// Head timeout: 408 owed in the middle of a head, nothing owed when idle.
#[test]
fn timeout_owes_408_only_mid_head() {
    let mut srv = server();
    feed(&mut srv, b"GET / HT");
    assert_eq!(srv.time_out(), Some(http::StatusCode::REQUEST_TIMEOUT));
    let res = respond(&mut srv, 408, &[], b"");
    assert_eq!(
        s(&res),
        "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    assert!(srv.must_close());

    let mut srv = server();
    assert_eq!(srv.time_out(), None);
    assert!(srv.must_close());

    let mut srv = server();
    feed(&mut srv, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    respond(&mut srv, 200, &[], b"");
    assert_eq!(srv.time_out(), None, "idle between requests: silent close");
    assert!(srv.must_close());
}

// A resumed connection goes on counting requests from where it was set aside.
#[test]
fn resumed_connection_keeps_counting() {
    let config = Arc::new(Config {
        keep_alive: KeepAlive {
            enabled: true,
            max_requests: Some(3),
            timeout_secs: Some(5),
            ..KeepAlive::default()
        },
        ..Config::default()
    });
    let mut srv = Connection::resume(Role::Server, config, 2);
    assert!(srv.is_idle());
    feed(&mut srv, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let res = respond(&mut srv, 200, &[], b"");
    assert!(
        s(&res).contains("connection: close"),
        "the third request is the last"
    );
}

// RFC 9112 Appendix C.2.2: an explicit proxy may read Proxy-Connection as the
// client hop's Connection; others ignore it.
#[test]
fn proxy_connection_counts_only_when_asked() {
    let req = b"GET http://a/ HTTP/1.0\r\nProxy-Connection: keep-alive\r\n\r\n";
    let mut plain = server();
    feed(&mut plain, req);
    assert!(s(&respond(&mut plain, 200, &[], b"")).contains("connection: close"));
    let mut explicit = server_with(Config {
        honour_proxy_connection: true,
        ..Config::default()
    });
    feed(&mut explicit, req);
    assert!(s(&respond(&mut explicit, 200, &[], b"")).contains("connection: keep-alive"));
    let mut explicit = server_with(Config {
        honour_proxy_connection: true,
        ..Config::default()
    });
    feed(
        &mut explicit,
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\nProxy-Connection: close\r\n\r\n",
    );
    assert!(s(&respond(&mut explicit, 200, &[], b"")).contains("connection: close"));
}

// RFC 9112 §9.3: an explicit proxy does not persist a connection for an
// HTTP/1.0 request's `Connection: keep-alive` (a blind relay in front may have
// passed it on); `Proxy-Connection: keep-alive` is the client's own signal. An
// origin (not honouring Proxy-Connection) still honours `Connection`.
#[test]
fn explicit_proxy_ignores_http10_connection_keep_alive() {
    let relayed = b"GET http://a/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let mut explicit = server_with(Config {
        honour_proxy_connection: true,
        ..Config::default()
    });
    feed(&mut explicit, relayed);
    let res = s(&respond(&mut explicit, 200, &[], b""));
    assert!(res.contains("connection: close"), "{res}");
    assert!(explicit.must_close());
    let mut explicit = server_with(Config {
        honour_proxy_connection: true,
        ..Config::default()
    });
    feed(
        &mut explicit,
        b"GET http://a/ HTTP/1.0\r\nConnection: keep-alive\r\nProxy-Connection: keep-alive\r\n\r\n",
    );
    let res = s(&respond(&mut explicit, 200, &[], b""));
    assert!(res.contains("connection: keep-alive"), "{res}");
    let mut origin = server();
    feed(
        &mut origin,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    let res = s(&respond(&mut origin, 200, &[], b""));
    assert!(res.contains("connection: keep-alive"), "{res}");
}

// A server may announce its idle timeout on HTTP/1.1 too (as Node does), so
// clients that honour it never race the idle close; `max` only with a limit.
#[test]
fn http11_keep_alive_announces_the_idle_timeout_when_asked() {
    let announcing = |max_requests| Config {
        keep_alive: KeepAlive {
            timeout_secs: Some(60),
            max_requests,
            announce_to_http11: true,
            ..KeepAlive::default()
        },
        ..Config::default()
    };
    let mut srv = server_with(announcing(None));
    feed(&mut srv, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(
        s(&respond(&mut srv, 200, &[], b"hi")),
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nkeep-alive: timeout=60\r\n\r\nhi"
    );
    let mut srv = server_with(announcing(Some(3)));
    feed(&mut srv, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(s(&respond(&mut srv, 200, &[], b"")).contains("\r\nkeep-alive: timeout=60, max=2\r\n"));
    // Not on a closing response, and not unless asked.
    feed(
        &mut srv,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let res = s(&respond(&mut srv, 200, &[], b""));
    assert!(
        res.contains("connection: close") && !res.contains("keep-alive"),
        "{res}"
    );
    let mut plain = server_with(Config {
        keep_alive: KeepAlive {
            timeout_secs: Some(60),
            ..KeepAlive::default()
        },
        ..Config::default()
    });
    feed(&mut plain, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(!s(&respond(&mut plain, 200, &[], b"")).contains("keep-alive"));
}

// Informational responses are bounded like everything else received.
#[test]
fn endless_informational_responses_are_an_error() {
    let mut c = client();
    request(&mut c, get("http://a/"));
    let hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
    let limit = Config::default().max_informational;
    for _ in 0..limit {
        c.receive(hints);
        assert!(matches!(
            c.next_event(),
            Ok(drainpipe_proto::Event::Informational(_))
        ));
    }
    c.receive(hints);
    let e = c.next_event().unwrap_err();
    assert_eq!(*e.kind(), ErrorKind::TooManyInformational { limit });
    assert_eq!(e.status(), http::StatusCode::BAD_GATEWAY);
}

#[test]
fn custom_reason_phrase() {
    let mut srv = server();
    feed(&mut srv, b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n");
    let mut res = http::Response::new(());
    res.extensions_mut()
        .insert(drainpipe_proto::head::write::ReasonPhrase::new("Connection established").unwrap());
    let (parts, ()) = res.into_parts();
    let mut out = WriteBuf::new();
    srv.send_response(&parts, BodySize::Exact(0), &mut out)
        .unwrap();
    srv.send_end(None, &mut out).unwrap();
    assert_eq!(
        s(&wire(&mut out)),
        "HTTP/1.1 200 Connection established\r\n\r\n"
    );
    assert!(drainpipe_proto::head::write::ReasonPhrase::new("bad\r\nx").is_none());
}

// RFC 9112 §3.2.1: an empty path goes out as "/"; RFC 9110 §8.6: a caller's
// list of identical Content-Length values is one length.
#[test]
fn client_normalises_path_and_content_length_list() {
    let mut c = client();
    let bytes = request(&mut c, get("http://a?q=1"));
    assert_eq!(s(&bytes), "GET /?q=1 HTTP/1.1\r\nhost: a\r\n\r\n");
    let mut c = client();
    let req = http::Request::post("http://a/")
        .header("content-length", "5, 5")
        .body(&b"hello"[..])
        .unwrap();
    let bytes = request(&mut c, req);
    assert_eq!(
        s(&bytes),
        "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello"
    );
}

// A client that sends a `Relay` request gets the final response's
// end-to-end fields as text (order, case, repeats kept; hop-by-hop and
// `Content-Length` out of the text) with the same framing and persistence
// facts; an interim response still has a map. A server sending those lines
// writes them as they came, its own fields after them.
#[test]
fn response_received_as_lines_and_sent_on_as_they_came() {
    use drainpipe_proto::{Event, FieldLines, Relay};
    let mut c = client();
    let (mut parts, _) = get("http://a/").into_parts();
    let mut relay = Relay::default();
    relay.added.push(b"Via", b"1.1 hop").unwrap();
    parts.extensions.insert(relay);
    let mut out = WriteBuf::new();
    c.send_request(&parts, BodySize::Exact(0), &mut out)
        .unwrap();
    c.send_end(None, &mut out).unwrap();
    assert_eq!(
        s(&wire(&mut out)),
        "GET / HTTP/1.1\r\nVia: 1.1 hop\r\nhost: a\r\n\r\n",
        "the added lines after the map, before the connection's own"
    );

    c.receive(b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n");
    match c.next_event().unwrap() {
        Event::Informational(r) => assert_eq!(r.headers()["x-interim"], "1"),
        other => panic!("{other:?}"),
    }
    c.receive(
        b"HTTP/1.1 200 OK\r\nX-B: 1\r\nSet-Cookie: a=1\r\nConnection: close, X-Gone\r\n\
X-Gone: 1\r\nset-cookie: b=2\r\nContent-Length: 2\r\nKeep-Alive: timeout=9\r\n\r\nok",
    );
    let head = match c.next_event().unwrap() {
        Event::Response { head, body } => {
            assert_eq!(body, Framing::Length(2));
            head
        }
        other => panic!("{other:?}"),
    };
    assert!(head.headers().is_empty());
    let lines = head.extensions().get::<FieldLines>().expect("lines");
    assert_eq!(
        lines.as_bytes(),
        b"X-B: 1\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n"
    );
    assert_eq!(lines.content_length(), Some(2));
    assert_eq!(
        events(&mut c),
        [Ev::Data(b"ok".to_vec()), Ev::End(vec![]), Ev::Paused]
    );
    assert!(
        !c.keep_alive() && c.must_close(),
        "Connection: close still read"
    );

    // Sent on by a server: the lines as they came, the length from them.
    let mut srv = server();
    feed(&mut srv, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let (mut res, ()) = http::Response::new(()).into_parts();
    res.headers.insert("x-a", "0".parse().unwrap());
    res.extensions.insert(lines.clone());
    let mut out = WriteBuf::new();
    let framing = srv
        .send_response(&res, BodySize::Unknown, &mut out)
        .unwrap();
    assert_eq!(framing, Framing::Length(2), "framed by the lines' length");
    let sent = s(&wire(&mut out));
    assert!(
        sent.starts_with(
            "HTTP/1.1 200 OK\r\nx-a: 0\r\nX-B: 1\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n"
        ),
        "{sent}"
    );
    assert!(sent.contains("\r\ncontent-length: 2\r\n"), "{sent}");
    assert!(!sent.to_lowercase().contains("x-gone"), "{sent}");
}
