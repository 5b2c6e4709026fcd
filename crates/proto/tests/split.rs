//! Property tests: however the input is split (down to one byte at a time, with
//! several pipelined messages back to back), the events are the same; and what a
//! client sends, a server receives unchanged (and back).

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use drainpipe_proto::{BodySize, Config, Connection, Framing, Role, WriteBuf};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Msg {
    method: &'static str,
    path: String,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
    trailers: Vec<(String, String)>,
}

fn field_strategy() -> impl Strategy<Value = (String, String)> {
    ("x-[a-z]{1,8}", "[!-~]([ -~]{0,20}[!-~])?")
}

fn msg_strategy() -> impl Strategy<Value = Msg> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]),
        "/[a-z0-9/]{0,12}(\\?[a-z=&]{0,8})?",
        prop::collection::vec(field_strategy(), 0..4),
        prop::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
        prop::collection::vec(field_strategy(), 0..2),
    )
        .prop_map(|(method, path, fields, body, chunked, trailers)| Msg {
            method,
            path,
            fields,
            body,
            chunked,
            trailers,
        })
}

fn config() -> Arc<Config> {
    Arc::new(Config {
        max_pipelined: 64,
        ..Config::default()
    })
}

/// Sends `msg` as a request from `client`, returning its bytes.
fn send_request(client: &mut Connection, msg: &Msg) -> Vec<u8> {
    let mut b = http::Request::builder()
        .method(msg.method)
        .uri(format!("http://example.com{}", msg.path));
    for (n, v) in &msg.fields {
        b = b.header(n, v);
    }
    let (parts, ()) = b.body(()).unwrap().into_parts();
    let size = if msg.chunked {
        BodySize::Unknown
    } else {
        BodySize::Exact(msg.body.len() as u64)
    };
    let mut out = WriteBuf::new();
    let framing = client.send_request(&parts, size, &mut out).unwrap();
    send_body(client, framing, msg, &mut out);
    wire(&mut out)
}

fn send_body(conn: &mut Connection, framing: Framing, msg: &Msg, out: &mut WriteBuf) {
    if framing != Framing::None {
        // Send the body in two pieces to exercise several chunks.
        let mid = msg.body.len() / 2;
        conn.send_data(Bytes::copy_from_slice(&msg.body[..mid]), out)
            .unwrap();
        conn.send_data(Bytes::copy_from_slice(&msg.body[mid..]), out)
            .unwrap();
    }
    let mut trailers = http::HeaderMap::new();
    for (n, v) in &msg.trailers {
        trailers.append(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    conn.send_end(Some(&trailers), out).unwrap();
}

/// Feeds `input` in the pieces given by `cuts`, pulling every event; returns
/// the events without need-data, adjacent data merged.
fn run(conn: &mut Connection, input: &[u8], cuts: &[usize]) -> Vec<Ev> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(0);
    points.push(input.len());
    points.sort_unstable();
    points.dedup();
    let mut out: Vec<Ev> = Vec::new();
    for w in points.windows(2) {
        conn.receive(&input[w[0]..w[1]]);
        for ev in events(conn) {
            match (out.last_mut(), ev) {
                (_, Ev::NeedData) => {}
                (Some(Ev::Data(prev)), Ev::Data(more)) => prev.extend_from_slice(&more),
                (_, ev) => out.push(ev),
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn requests_any_split_same_events(
        msgs in prop::collection::vec(msg_strategy(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let mut client = Connection::new(Role::Client, config());
        let input: Vec<u8> = msgs.iter().flat_map(|m| send_request(&mut client, m)).collect();

        let whole = run(&mut Connection::new(Role::Server, config()), &input, &[]);
        let split = run(&mut Connection::new(Role::Server, config()), &input, &cuts);
        prop_assert_eq!(&split, &whole);

        // Round trip: each request arrives as sent.
        let mut it = whole.iter();
        for m in &msgs {
            let Some(Ev::Request { method, target, fields, .. }) = it.next() else {
                panic!("expected a request, got {whole:?}");
            };
            prop_assert_eq!(method.as_str(), m.method);
            prop_assert_eq!(target, &m.path);
            for f in &m.fields {
                prop_assert!(fields.contains(f), "{:?} missing from {:?}", f, fields);
            }
            let mut body = Vec::new();
            let mut end = None;
            for ev in it.by_ref() {
                match ev {
                    Ev::Data(d) => body.extend_from_slice(d),
                    Ev::End(t) => { end = Some(t.clone()); break; }
                    other => panic!("unexpected {other:?}"),
                }
            }
            prop_assert_eq!(&body, &m.body);
            let trailers = end.expect("message end");
            if m.chunked {
                prop_assert_eq!(trailers.len(), m.trailers.len());
            } else {
                prop_assert!(trailers.is_empty());
            }
        }
    }

    #[test]
    fn requests_one_byte_at_a_time(msgs in prop::collection::vec(msg_strategy(), 1..4)) {
        let mut client = Connection::new(Role::Client, config());
        let input: Vec<u8> = msgs.iter().flat_map(|m| send_request(&mut client, m)).collect();
        let whole = run(&mut Connection::new(Role::Server, config()), &input, &[]);
        let every: Vec<usize> = (0..input.len()).collect();
        let split = run(&mut Connection::new(Role::Server, config()), &input, &every);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn responses_any_split_same_events(
        msgs in prop::collection::vec(msg_strategy(), 1..6),
        statuses in prop::collection::vec(prop::sample::select(vec![200u16, 201, 204, 304, 404, 500]), 6),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        // The client pipelines the requests; the server answers each.
        let mut client = Connection::new(Role::Client, config());
        let mut server = Connection::new(Role::Server, config());
        let requests: Vec<u8> = msgs.iter().flat_map(|m| send_request(&mut client, m)).collect();
        run(&mut server, &requests, &[]);
        let mut out = WriteBuf::new();
        for (m, status) in msgs.iter().zip(&statuses) {
            let mut b = http::Response::builder().status(*status);
            for (n, v) in &m.fields {
                b = b.header(n, v);
            }
            let (parts, ()) = b.body(()).unwrap().into_parts();
            let size = if m.chunked { BodySize::Unknown } else { BodySize::Exact(m.body.len() as u64) };
            let framing = server.send_response(&parts, size, &mut out).unwrap();
            send_body(&mut server, framing, m, &mut out);
        }
        let input = wire(&mut out);

        let mut whole_client = Connection::new(Role::Client, config());
        let mut split_client = Connection::new(Role::Client, config());
        for m in &msgs {
            send_request(&mut whole_client, m);
            send_request(&mut split_client, m);
        }
        let whole = run(&mut whole_client, &input, &[]);
        let split = run(&mut split_client, &input, &cuts);
        prop_assert_eq!(&split, &whole);

        // Every response arrives, in order, bodiless where the rules say so.
        let heads: Vec<_> = whole.iter().filter_map(|e| match e {
            Ev::Response { status, body, .. } => Some((*status, *body)),
            _ => None,
        }).collect();
        prop_assert_eq!(heads.len(), msgs.len());
        for ((status, framing), (m, want)) in heads.iter().zip(msgs.iter().zip(&statuses)) {
            prop_assert_eq!(status, want);
            if m.method == "HEAD" || *want == 204 || *want == 304 {
                prop_assert_eq!(*framing, Framing::None);
            }
        }
        prop_assert_eq!(whole_client.in_flight(), 0);
        prop_assert!(whole_client.is_idle());
    }
}

/// Pieces of request heads, good and bad: the start lines, field lines and
/// line ends a hostile or broken client sends.
fn head_piece_strategy() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "GET / HTTP/1.1",
        "GET /a?b HTTP/1.0",
        "GET  / HTTP/1.1",
        "G@T / HTTP/1.1",
        "GET / HTTP/1.2",
        "GET / HTTP/2.0",
        "GET http://u@h/ HTTP/1.1",
        "CONNECT a:1 HTTP/1.1",
        "OPTIONS * HTTP/1.1",
        "POST /p HTTP/1.1",
        "Host: a",
        "Host: b:80",
        "Host: a b",
        "host: [::1]:8",
        "X: y",
        " folded",
        "X : y",
        "X:\x7f",
        "Bad\x01: v",
        "X: a\rb",
        "Content-Length: 3",
        "Content-Length: 3, 4",
        "Transfer-Encoding: chunked",
        "Connection: close",
        "Expect: 100-continue",
        "",
    ])
}

fn line_end_strategy() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\n", "\r", "\r\r\n"])
}

/// Feeds `input` in the given pieces and returns the events up to and
/// including the first error (an error is sticky: later calls repeat it), a
/// pause once however many times it is reported.
fn until_error(input: &[u8], pieces: &[usize]) -> Vec<Ev> {
    until_error_on(Connection::new(Role::Server, config()), input, pieces)
}

/// [`until_error`] on a given connection.
fn until_error_on(mut conn: Connection, input: &[u8], pieces: &[usize]) -> Vec<Ev> {
    let mut out: Vec<Ev> = Vec::new();
    let mut at = 0;
    for len in pieces.iter().copied().chain([input.len()]) {
        let end = (at + len).min(input.len());
        conn.receive(&input[at..end]);
        at = end;
        for ev in events_with_lines(&mut conn) {
            match (out.last_mut(), ev) {
                (_, Ev::NeedData) | (Some(Ev::Paused), Ev::Paused) => {}
                (Some(Ev::Data(prev)), Ev::Data(more)) => prev.extend_from_slice(&more),
                (_, Ev::Error(e)) => {
                    out.push(Ev::Error(e));
                    return out;
                }
                (_, ev) => out.push(ev),
            }
        }
        if at == input.len() {
            break;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// A head that arrives whole is parsed in one pass when all is well
    /// (`take_request`) and through `find_head_end` otherwise; one that
    /// arrives a byte at a time always takes the second path. Good or bad,
    /// the verdict must be the same: the same requests, the same error.
    #[test]
    fn heads_good_or_bad_same_verdict_whole_or_byte_by_byte(
        lines in prop::collection::vec((head_piece_strategy(), line_end_strategy()), 1..8),
        next in any::<bool>(),
    ) {
        let mut input: Vec<u8> = lines.iter().flat_map(|(l, e)| [l.as_bytes(), e.as_bytes()].concat()).collect();
        input.extend_from_slice(b"\r\n");
        if next {
            input.extend_from_slice(b"abcGET /n HTTP/1.1\r\nHost: n\r\n\r\n");
        }
        let whole = until_error(&input, &[]);
        let bytes = until_error(&input, &vec![1; input.len()]);
        prop_assert_eq!(&bytes, &whole, "{:?}", String::from_utf8_lossy(&input));
    }
}

/// Like `events`, with a response's received lines (a `Relay` request's
/// answer) shown as its fields.
fn events_with_lines(conn: &mut Connection) -> Vec<Ev> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let ev = match conn.next_event() {
            Ok(drainpipe_proto::Event::Response { head, body }) => {
                let mut ev = convert(Ok(drainpipe_proto::Event::Response {
                    head: head.clone(),
                    body,
                }));
                if let (Ev::Response { fields, .. }, Some(lines)) = (
                    &mut ev,
                    head.extensions().get::<drainpipe_proto::FieldLines>(),
                ) {
                    fields.push((
                        "lines".into(),
                        String::from_utf8_lossy(lines.as_bytes()).into_owned(),
                    ));
                }
                ev
            }
            other => convert(other),
        };
        let stop = matches!(ev, Ev::NeedData | Ev::Paused | Ev::Closed | Ev::Error(_));
        out.push(ev);
        if stop {
            return out;
        }
    }
    panic!("no stopping event in 10000 calls");
}

fn response_piece_strategy() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "HTTP/1.1 200 OK",
        "HTTP/1.0 200 OK",
        "HTTP/1.1 100 Continue",
        "HTTP/1.1 204 No Content",
        "HTTP/1.1 999 Odd",
        "HTTP/1.2 200 OK",
        "HTTP/2.0 200 OK",
        "HTTP/1.1 20 OK",
        "HTTP/1.1 200",
        "Content-Length: 3",
        "Content-Length: 3, 4",
        "Content-Length: x",
        "Transfer-Encoding: chunked",
        "Connection: close, X-Named",
        "X-Named: 1",
        "Keep-Alive: timeout=5",
        "Set-Cookie: a=1",
        "Date: Wed, 02 Dec 2026 10:00:00 GMT",
        " folded",
        "X : y",
        "X: a\rb",
        "Bad\x01: v",
        "",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// The same for response heads, read into a map or (a `Relay` request's
    /// answer) as field lines.
    #[test]
    fn responses_good_or_bad_same_verdict_whole_or_byte_by_byte(
        lines in prop::collection::vec((response_piece_strategy(), line_end_strategy()), 1..8),
        as_lines in any::<bool>(),
    ) {
        let mut input: Vec<u8> = lines.iter().flat_map(|(l, e)| [l.as_bytes(), e.as_bytes()].concat()).collect();
        input.extend_from_slice(b"\r\nabc0\r\n\r\n");
        let client = || {
            let mut c = Connection::new(Role::Client, config());
            let mut b = http::Request::builder().uri("http://a/");
            if as_lines {
                b = b.extension(drainpipe_proto::Relay::default());
            }
            let (parts, ()) = b.body(()).unwrap().into_parts();
            let mut out = WriteBuf::new();
            c.send_request(&parts, BodySize::Exact(0), &mut out).unwrap();
            c.send_end(None, &mut out).unwrap();
            c
        };
        let whole = until_error_on(client(), &input, &[]);
        let bytes = until_error_on(client(), &input, &vec![1; input.len()]);
        prop_assert_eq!(&bytes, &whole, "{:?}", String::from_utf8_lossy(&input));
    }
}
