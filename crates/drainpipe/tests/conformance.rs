//! Request smuggling over real sockets, against the server (the built-in
//! origin) and through the reverse proxy.
//!
//! Every ambiguous shape — CL.TE, TE.CL, TE.TE obfuscations, duplicate
//! `Content-Length`, bad chunk sizes, bare LF, obs-fold, control bytes in
//! values, whitespace before the colon, absolute-form oddities — is refused
//! with the status the protocol core maps it to, the connection closes, and a
//! request pipelined behind it in the same packet is never processed. Through
//! the proxy, a recording upstream (parsing strictly with the protocol core)
//! proves that refused shapes send nothing upstream at all, and that what is
//! accepted arrives clean and re-framed: one `Host`, at most one length field,
//! `Transfer-Encoding` only as the proxy's own `chunked`, no hop-by-hop fields.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use drainpipe::proto::Framing;
use drainpipe::server::Server;
use support::*;

/// Pipelined right behind every probe, in the same write.
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

/// Where a shape is refused: in the head (no request reaches the handler) or
/// in the body (the head was fine and reached the handler; the body is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Head,
    Body,
}

struct Refused {
    name: &'static str,
    bytes: Vec<u8>,
    status: u16,
    at: At,
}

fn post(fields: &str, body: &str) -> Vec<u8> {
    format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n{body}").into_bytes()
}

fn chunked(body: &str) -> Vec<u8> {
    post("Transfer-Encoding: chunked\r\n", body)
}

fn raw(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn refused(name: &'static str, bytes: Vec<u8>, status: u16, at: At) -> Refused {
    Refused {
        name,
        bytes,
        status,
        at,
    }
}

/// Every shape the server must refuse, with the status the protocol core
/// maps it to.
fn refused_shapes() -> Vec<Refused> {
    use At::*;
    let mut v = vec![
        // CL.TE and TE.CL: both length fields (RFC 9112 §6.3 step 3, refused
        // outright instead of letting TE win).
        refused(
            "CL.TE",
            post(
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\nX",
            ),
            400,
            Head,
        ),
        refused(
            "TE.CL",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                "8\r\nSMUGGLED\r\n0\r\n\r\n",
            ),
            400,
            Head,
        ),
        refused(
            "CL with TE: identity",
            post(
                "Content-Length: 5\r\nTransfer-Encoding: identity\r\n",
                "hello",
            ),
            400,
            Head,
        ),
        refused(
            "CL with an obfuscated TE (xchunked)",
            post(
                "Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n",
                "hello",
            ),
            400,
            Head,
        ),
        // Content-Length shapes (RFC 9110 §8.6, RFC 9112 §6.3 step 5).
        refused(
            "duplicate differing Content-Length lines",
            post("Content-Length: 0\r\nContent-Length: 5\r\n", "hello"),
            400,
            Head,
        ),
        refused(
            "differing Content-Length list",
            post("Content-Length: 0, 5\r\n", "hello"),
            400,
            Head,
        ),
        refused(
            "signed Content-Length",
            post("Content-Length: +5\r\n", "hello"),
            400,
            Head,
        ),
        refused(
            "negative Content-Length",
            post("Content-Length: -1\r\n", ""),
            400,
            Head,
        ),
        refused(
            "hex Content-Length",
            post("Content-Length: 0x5\r\n", "hello"),
            400,
            Head,
        ),
        refused(
            "Content-Length with a fraction",
            post("Content-Length: 5.0\r\n", "hello"),
            400,
            Head,
        ),
        refused(
            "Content-Length with inner space",
            post("Content-Length: 1 2\r\n", "hello"),
            400,
            Head,
        ),
        refused(
            "empty Content-Length",
            post("Content-Length: \r\n", ""),
            400,
            Head,
        ),
        refused(
            "Content-Length overflowing 64 bits",
            post("Content-Length: 99999999999999999999999\r\n", ""),
            400,
            Head,
        ),
        // TE.TE obfuscations (RFC 9112 §6.1, §6.3 step 4).
        refused(
            "Transfer-Encoding: xchunked",
            post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "Transfer-Encoding: chunked, identity",
            post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "Transfer-Encoding: identity",
            post("Transfer-Encoding: identity\r\n", ""),
            400,
            Head,
        ),
        refused(
            "chunked then identity on a second line",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                "0\r\n\r\n",
            ),
            400,
            Head,
        ),
        refused(
            "chunked twice",
            post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "chunked on two lines",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            400,
            Head,
        ),
        refused(
            "chunked with a parameter",
            post("Transfer-Encoding: chunked;x=1\r\n", "0\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "quoted chunked",
            post("Transfer-Encoding: \"chunked\"\r\n", "0\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "empty Transfer-Encoding",
            post("Transfer-Encoding: \r\n", ""),
            400,
            Head,
        ),
        refused(
            "gzip before chunked (unknown coding)",
            post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
            501,
            Head,
        ),
        refused(
            "unknown coding before chunked",
            post("Transfer-Encoding: foo, chunked\r\n", "0\r\n\r\n"),
            501,
            Head,
        ),
        refused(
            "Transfer-Encoding : chunked (space before the colon)",
            post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "Transfer-Encoding<TAB>: chunked (tab before the colon)",
            post("Transfer-Encoding\t: chunked\r\n", "0\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "Content-Length : 5 (space before the colon)",
            post("Content-Length : 5\r\n", "hello"),
            400,
            Head,
        ),
        refused(
            "Transfer-Encoding with a vertical tab",
            post("Transfer-Encoding:\x0bchunked\r\n", "0\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "Transfer-Encoding in an HTTP/1.0 request",
            raw("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
            Head,
        ),
        // obs-fold and leading whitespace (RFC 9112 §5.2, §2.2).
        refused(
            "TE folded onto a second line",
            post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "obs-fold hiding a Content-Length",
            post(
                "Content-Length: 5\r\nX-A: 1\r\n\tContent-Length: 0\r\n",
                "hello",
            ),
            400,
            Head,
        ),
        refused(
            "whitespace before the first field line",
            raw("GET / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "a line of only whitespace",
            raw("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n \r\n\r\n"),
            400,
            Head,
        ),
        // Bare LF and bare CR (RFC 9112 §2.2: a proxy that accepts a bare LF
        // can be desynchronised from one that does not).
        refused(
            "bare LF after the request line",
            raw("GET / HTTP/1.1\nHost: a\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "bare LF after a field line",
            raw("GET / HTTP/1.1\r\nHost: a\nContent-Length: 5\r\n\r\nhello"),
            400,
            Head,
        ),
        refused(
            "bare LF ending the head",
            raw("GET / HTTP/1.1\r\nHost: a\r\n\n"),
            400,
            Head,
        ),
        refused(
            "a head of bare LFs",
            raw("GET / HTTP/1.1\nHost: a\n\n"),
            400,
            Head,
        ),
        refused(
            "bare CR ending the request line",
            raw("GET / HTTP/1.1\rHost: a\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "lines ended by a bare CR",
            raw("GET / HTTP/1.1\rHost: a\r\r"),
            400,
            Head,
        ),
        // Control bytes (RFC 9110 §5.5).
        refused(
            "CR inside a value",
            raw("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "NUL inside a value",
            post("Content-Length: 5\r\nX-A: a\0b\r\n", "hello"),
            400,
            Head,
        ),
        refused(
            "NUL inside Transfer-Encoding",
            post("Transfer-Encoding: chunked\0\r\n", "0\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "DEL inside a value",
            raw("GET / HTTP/1.1\r\nHost: a\r\nX-A:\x7f\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "SOH inside a value",
            raw("GET / HTTP/1.1\r\nHost: a\r\nX-A: \x01\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "NUL in the target",
            raw("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "NUL in the method",
            raw("G\0ET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            400,
            Head,
        ),
        // Field names.
        refused(
            "space inside a field name",
            raw("GET / HTTP/1.1\r\nHost: a\r\nX-A b: 1\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "empty field name",
            raw("GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n"),
            400,
            Head,
        ),
        // Host (RFC 9112 §3.2).
        refused("missing Host", raw("GET / HTTP/1.1\r\n\r\n"), 400, Head),
        refused(
            "duplicate Host",
            raw("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            400,
            Head,
        ),
        // Request line.
        refused(
            "two spaces in the request line",
            raw("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "tab in the request line",
            raw("GET /\tHTTP/1.1\r\nHost: a\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "space after the version",
            raw("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "space inside the target",
            raw("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "HTTP/2.0 in an HTTP/1 request line",
            raw("GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
            505,
            Head,
        ),
        refused(
            "HTTP/3.0 in an HTTP/1 request line",
            raw("GET / HTTP/3.0\r\nHost: a\r\n\r\n"),
            505,
            Head,
        ),
        // Absolute-form oddities (RFC 9112 §3.2.2).
        refused(
            "absolute-form with a space in the authority",
            raw("GET http://exa mple.com/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "absolute-form with a control byte",
            raw("GET http://example.com/a\x01b HTTP/1.1\r\nHost: a\r\n\r\n"),
            400,
            Head,
        ),
        refused(
            "absolute-form without Host in HTTP/1.1",
            raw("GET http://example.com/x HTTP/1.1\r\n\r\n"),
            400,
            Head,
        ),
        // Limits.
        refused(
            "a 64 KiB head",
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
                "a".repeat(64 * 1024)
            )
            .into_bytes(),
            431,
            Head,
        ),
        refused(
            "too many fields",
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
                (0..101)
                    .map(|i| format!("X-{i}: 1\r\n"))
                    .collect::<String>()
            )
            .into_bytes(),
            431,
            Head,
        ),
        refused(
            "a 9 KiB target",
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9 * 1024)).into_bytes(),
            414,
            Head,
        ),
        // Chunked bodies (RFC 9112 §7.1): the head is fine, the body is not.
        refused(
            "chunk size overflowing 64 bits",
            chunked("10000000000000000\r\nx\r\n0\r\n\r\n"),
            400,
            Body,
        ),
        refused(
            "chunk size of 17 f's",
            chunked("fffffffffffffffff\r\nx\r\n0\r\n\r\n"),
            400,
            Body,
        ),
        refused("non-hex chunk size", chunked("g\r\n\r\n"), 400, Body),
        refused(
            "0x-prefixed chunk size",
            chunked("0x5\r\nhello\r\n0\r\n\r\n"),
            400,
            Body,
        ),
        refused("negative chunk size", chunked("-1\r\n\r\n"), 400, Body),
        refused(
            "space before the chunk size",
            chunked(" 5\r\nhello\r\n0\r\n\r\n"),
            400,
            Body,
        ),
        refused(
            "space after the chunk size",
            chunked("5 \r\nhello\r\n0\r\n\r\n"),
            400,
            Body,
        ),
        refused(
            "empty chunk size",
            chunked("\r\nhello\r\n0\r\n\r\n"),
            400,
            Body,
        ),
        refused(
            "chunk size ended by a bare LF",
            chunked("5\nhello\r\n0\r\n\r\n"),
            400,
            Body,
        ),
        refused(
            "chunk size ended by a bare CR",
            chunked("5\rhello\r\n0\r\n\r\n"),
            400,
            Body,
        ),
        refused(
            "chunk data longer than its size",
            chunked("3\r\nhello\r\n0\r\n\r\n"),
            400,
            Body,
        ),
        refused(
            "chunk data ended by a bare LF",
            chunked("5\r\nhello\n0\r\n\r\n"),
            400,
            Body,
        ),
        refused(
            "last chunk ended by a bare LF",
            chunked("5\r\nhello\r\n0\n\r\n"),
            400,
            Body,
        ),
        refused(
            "chunked body ended by a bare LF",
            chunked("5\r\nhello\r\n0\r\n\n"),
            400,
            Body,
        ),
        refused(
            "trailer line ended by a bare LF",
            chunked("5\r\nhello\r\n0\r\nX: y\n\r\n"),
            400,
            Body,
        ),
        refused(
            "folded trailer",
            chunked("5\r\nhello\r\n0\r\nX: 1\r\n 2\r\n\r\n"),
            400,
            Body,
        ),
    ];
    v.push(refused(
        "chunk-size line longer than 1 KiB",
        chunked(&format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(2048))),
        400,
        Body,
    ));
    v
}

/// Sends `shape` with [`SMUGGLED`] behind it in one write and checks the answer:
/// the expected status with `Connection: close`, then the close, and nothing
/// more (no second response).
async fn check_refused(addr: SocketAddr, shape: &Refused) -> Result<(), String> {
    let mut c = Raw::connect(addr).await;
    let mut bytes = shape.bytes.clone();
    bytes.extend_from_slice(SMUGGLED);
    c.send(&bytes).await;
    let r = c.response().await;
    let mut wrong = Vec::new();
    if r.status != shape.status {
        wrong.push(format!(
            "status {} instead of {}: {:?}",
            r.status,
            shape.status,
            r.body_str()
        ));
    }
    if r.header("connection").as_deref() != Some("close") {
        wrong.push(format!("no `Connection: close`: {}", r.head));
    }
    if !c.closes_within(WAIT).await {
        wrong.push("connection left open".into());
    }
    if !c.buf.is_empty() {
        wrong.push(format!(
            "bytes after the refusal: {:?}",
            String::from_utf8_lossy(&c.buf)
        ));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}", shape.name, wrong.join("; ")))
    }
}

/// The next final response (1xx skipped).
async fn final_response(c: &mut Raw) -> RawResponse {
    loop {
        let r = c.response().await;
        if r.status >= 200 {
            return r;
        }
    }
}

fn assert_all(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn server_refuses_every_smuggling_shape_and_processes_nothing_behind_it() {
    let srv = TestServer::origin(Server::builder()).await;
    let mut failures = Vec::new();
    for shape in refused_shapes() {
        let before = srv.stats.requests.load(Ordering::Relaxed);
        let result = check_refused(srv.addr, &shape).await;
        let processed = srv.stats.requests.load(Ordering::Relaxed) - before;
        // A head refused: nothing reaches the handler. A body refused: only
        // the request whose head was fine does; never the smuggled one.
        let expected = match shape.at {
            At::Head => 0,
            At::Body => 1,
        };
        if let Err(e) = result {
            failures.push(e);
        }
        if processed != expected {
            failures.push(format!(
                "{}: {processed} request(s) processed, expected {expected}",
                shape.name
            ));
        }
    }
    assert_all(failures);
    assert!(
        eventually(WAIT, || srv.stats.open.load(Ordering::Relaxed) == 0).await,
        "every refused connection closed on the server"
    );
}

#[tokio::test]
async fn proxy_refuses_every_smuggling_shape_and_the_upstream_sees_nothing() {
    let upstream = recording_upstream().await;
    let srv = proxy_in_front_of(upstream.addr()).await.0;
    let mut failures = Vec::new();
    for shape in refused_shapes() {
        let connections = upstream.connections();
        if let Err(e) = check_refused(srv.addr, &shape).await {
            failures.push(e);
        }
        if upstream.bytes_received() != 0 {
            failures.push(format!(
                "{}: the upstream received {:?}",
                shape.name,
                upstream.seen()
            ));
            break;
        }
        // A refused head never reaches the handler: not even a connection
        // upstream. (A refused body may find one opened for it, unused.)
        if shape.at == At::Head && upstream.connections() != connections {
            failures.push(format!("{}: an upstream connection opened", shape.name));
        }
    }
    assert_all(failures);
    assert!(upstream.seen().is_empty());
    // Connections opened for refused bodies carried nothing and are closed,
    // not pooled (the upstream would otherwise close them after WAIT).
    assert!(
        eventually(Duration::from_secs(2), || upstream.open() == 0).await,
        "{} upstream connection(s) left open",
        upstream.open()
    );
}

/// What an accepted request looked like when it reached the upstream: checks
/// it is clean and re-framed. `named` are fields the client's `Connection`
/// named (hop-by-hop for that message).
fn check_clean(seen: &Seen, named: &[&str]) -> Vec<String> {
    let mut wrong = Vec::new();
    let te = seen.values("transfer-encoding");
    let cl = seen.values("content-length");
    match seen.framing {
        Framing::Chunked => {
            if te != ["chunked"] {
                wrong.push(format!("Transfer-Encoding {te:?}"));
            }
        }
        _ => {
            if !te.is_empty() {
                wrong.push(format!("Transfer-Encoding {te:?} without chunked framing"));
            }
        }
    }
    if !te.is_empty() && !cl.is_empty() {
        wrong.push(format!(
            "both Transfer-Encoding {te:?} and Content-Length {cl:?}"
        ));
    }
    if cl.len() > 1 {
        wrong.push(format!("several Content-Length {cl:?}"));
    }
    if seen.values("host").len() != 1 {
        wrong.push(format!("Host {:?}", seen.values("host")));
    }
    for hop in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    ]
    .iter()
    .chain(named)
    {
        if seen.headers.contains_key(*hop) {
            wrong.push(format!("hop-by-hop `{hop}` forwarded"));
        }
    }
    if let Some(t) = &seen.trailers {
        for framing in ["content-length", "transfer-encoding", "host"] {
            if t.contains_key(framing) {
                wrong.push(format!("`{framing}` forwarded as a trailer"));
            }
        }
    }
    if !seen.target.starts_with('/') {
        wrong.push(format!("target {:?} not in origin-form", seen.target));
    }
    if !seen.complete {
        wrong.push("incomplete".into());
    }
    wrong
}

struct Accepted {
    name: &'static str,
    bytes: Vec<u8>,
    /// The body the handler / upstream must see.
    body: &'static str,
    /// Fields named by the request's `Connection` (must not be forwarded).
    named: &'static [&'static str],
}

fn accepted(
    name: &'static str,
    bytes: Vec<u8>,
    body: &'static str,
    named: &'static [&'static str],
) -> Accepted {
    Accepted {
        name,
        bytes,
        body,
        named,
    }
}

/// Shapes that look odd but are valid HTTP/1.1: accepted, framed exactly one
/// way, and the request behind them is a separate request.
fn accepted_shapes() -> Vec<Accepted> {
    vec![
        accepted(
            "Transfer-Encoding:<TAB>chunked (tab is OWS)",
            post("Transfer-Encoding:\tchunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            "hello",
            &[],
        ),
        accepted(
            "Transfer-Encoding: CHUNKED (codings are case-insensitive)",
            post("Transfer-Encoding: CHUNKED\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            "hello",
            &[],
        ),
        accepted(
            "Transfer-Encoding with trailing whitespace",
            post(
                "Transfer-Encoding: chunked \t\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
            "hello",
            &[],
        ),
        accepted(
            "identical Content-Length lines",
            post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
            "hello",
            &[],
        ),
        accepted(
            "Content-Length without a space",
            post("Content-Length:5\r\n", "hello"),
            "hello",
            &[],
        ),
        accepted(
            "Content-Length with trailing whitespace",
            post("Content-Length: 5 \t\r\n", "hello"),
            "hello",
            &[],
        ),
        accepted(
            "chunk extensions, BWS and leading zeros",
            chunked("0002;a=1\r\nhe\r\n3 ; b=\"x;y\"\r\nllo\r\n0\r\n\r\n"),
            "hello",
            &[],
        ),
        accepted(
            "framing fields in the trailer section",
            chunked(
                "5\r\nhello\r\n0\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\nHost: evil\r\nX-T: 1\r\n\r\n",
            ),
            "hello",
            &[],
        ),
        accepted(
            "Connection naming Content-Length",
            post("Content-Length: 5\r\nConnection: content-length\r\n", "hello"),
            "hello",
            &["content-length"],
        ),
        accepted(
            "Connection naming Transfer-Encoding",
            post(
                "Transfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
            "hello",
            &[],
        ),
        accepted(
            "Connection naming Host",
            post("Content-Length: 5\r\nConnection: host\r\n", "hello"),
            "hello",
            &[],
        ),
        // `Expect` is not hop-by-hop: RFC 9110 §10.1.1 has a proxy forward
        // `100-continue` toward the origin (tests/proxy_edges.rs).
        accepted(
            "every hop-by-hop field at once",
            post(
                "Content-Length: 5\r\nConnection: keep-alive, X-Secret\r\nConnection: X-Other\r\n\
X-Secret: 1\r\nX-Other: 2\r\nKeep-Alive: timeout=9\r\nProxy-Connection: keep-alive\r\n\
TE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nProxy-Authorization: Basic eA==\r\n\
Expect: 100-continue\r\n",
                "hello",
            ),
            "hello",
            &["x-secret", "x-other"],
        ),
        accepted(
            "Transfer_Encoding (underscore) is just another field",
            post(
                "Transfer_Encoding: chunked\r\nContent-Length: 5\r\n",
                "hello",
            ),
            "hello",
            &[],
        ),
        accepted(
            "HTTP/1.2 is processed as HTTP/1.1 (RFC 9110 §2.5)",
            raw("POST / HTTP/1.2\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"),
            "hello",
            &[],
        ),
        accepted(
            "empty lines before the request line",
            [b"\r\n\r\n".as_slice(), &post("Content-Length: 5\r\n", "hello")].concat(),
            "hello",
            &[],
        ),
    ]
}

#[tokio::test]
async fn server_frames_valid_odd_shapes_one_way() {
    let srv = TestServer::origin(Server::builder()).await;
    let mut failures = Vec::new();
    for shape in accepted_shapes() {
        let before = srv.stats.requests.load(Ordering::Relaxed);
        let mut c = Raw::connect(srv.addr).await;
        c.send(&[shape.bytes.as_slice(), SMUGGLED].concat()).await;
        let first = final_response(&mut c).await;
        let second = final_response(&mut c).await;
        // `/` reads and discards the body, then says hello; `/smuggled` is a
        // separate request on its own (404).
        if (first.status, first.body_str().as_str()) != (200, "Hello, World!") {
            failures.push(format!("{}: first answer {first:?}", shape.name));
        }
        if second.status != 404 {
            failures.push(format!("{}: second answer {second:?}", shape.name));
        }
        let processed = srv.stats.requests.load(Ordering::Relaxed) - before;
        if processed != 2 {
            failures.push(format!("{}: {processed} requests processed", shape.name));
        }
    }
    assert_all(failures);
}

#[tokio::test]
async fn proxy_forwards_valid_odd_shapes_clean_and_reframed() {
    let upstream = recording_upstream().await;
    let srv = proxy_in_front_of(upstream.addr()).await.0;
    let mut failures = Vec::new();
    for shape in accepted_shapes() {
        let from = upstream.seen().len();
        let mut c = Raw::connect(srv.addr).await;
        c.send(&[shape.bytes.as_slice(), SMUGGLED].concat()).await;
        for _ in 0..2 {
            let r = final_response(&mut c).await;
            if (r.status, r.body_str().as_str()) != (200, "ok") {
                failures.push(format!("{}: answer {r:?}", shape.name));
            }
        }
        let seen = upstream.seen()[from..].to_vec();
        if seen.len() != 2 {
            failures.push(format!("{}: upstream saw {seen:?}", shape.name));
            continue;
        }
        let (first, second) = (&seen[0], &seen[1]);
        let mut wrong = check_clean(first, shape.named);
        if first.method != "POST" || String::from_utf8_lossy(&first.body) != shape.body {
            wrong.push(format!("{} with body {:?}", first.method, first.body));
        }
        wrong.extend(check_clean(second, &[]));
        if second.target != "/smuggled" || second.framing != Framing::None {
            wrong.push(format!("second request {second:?}"));
        }
        for w in wrong {
            failures.push(format!("{}: {w}", shape.name));
        }
    }
    assert_all(failures);
    assert_eq!(upstream.errors(), Vec::<String>::new());
}

// A body that looks like a request is a body: the length says so.
#[tokio::test]
async fn a_request_inside_a_body_is_never_a_request() {
    let head = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        SMUGGLED.len()
    );
    let bytes = [head.as_bytes(), SMUGGLED].concat();

    let srv = TestServer::origin(Server::builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(&bytes).await;
    assert_eq!(c.response().await.body_str(), "Hello, World!");
    assert!(!c.closes_within(Duration::from_millis(300)).await);
    assert!(c.buf.is_empty(), "one answer only");
    assert_eq!(srv.stats.requests.load(Ordering::Relaxed), 1);

    let upstream = recording_upstream().await;
    let proxy = proxy_in_front_of(upstream.addr()).await.0;
    let mut c = Raw::connect(proxy.addr).await;
    c.send(&bytes).await;
    assert_eq!(c.response().await.body_str(), "ok");
    assert!(!c.closes_within(Duration::from_millis(300)).await);
    assert!(c.buf.is_empty(), "one answer only");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].target, "/");
    assert_eq!(seen[0].body, SMUGGLED, "forwarded as the body");
    assert_eq!(check_clean(&seen[0], &[]), Vec::<String>::new());
}

// A chunked body that turns bad after the proxy has started streaming it:
// the upstream sees the head and part of the body, never a complete request,
// never the request smuggled behind it, and the upstream connection is not
// reused (which would desynchronise it).
#[tokio::test]
async fn a_body_that_turns_bad_midstream_never_completes_upstream() {
    let upstream = recording_upstream().await;
    let srv = proxy_in_front_of(upstream.addr()).await.0;
    let mut c = Raw::connect(srv.addr).await;
    // More than the client buffers before its first write (64 KiB), so the
    // head and these bytes go upstream before the bad chunk arrives.
    let good = vec![b'x'; 100 * 1024];
    let first = [
        format!("{:x}\r\n", good.len()).as_bytes(),
        &good,
        b"\r\n".as_slice(),
    ]
    .concat();
    c.send(&chunked(std::str::from_utf8(&first).unwrap())).await;
    assert!(
        eventually(WAIT, || upstream.bytes_received() > 64 * 1024).await,
        "the request was never streamed upstream: {:?}",
        upstream.seen()
    );
    c.send(&[b"zz\r\n0\r\n\r\n".as_slice(), SMUGGLED].concat())
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert!(c.closes_within(WAIT).await);
    assert!(c.buf.is_empty(), "one answer only");

    // The aborted upstream connection must close, not go back to the pool.
    let mut next = Raw::connect(srv.addr).await;
    next.send(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(next.response().await.body_str(), "ok");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        !seen[0].complete,
        "the broken body never completes upstream"
    );
    assert!(seen[0].body.len() <= good.len() && seen[0].body.iter().all(|b| *b == b'x'));
    assert_eq!(seen[1].target, "/next");
    assert_ne!(seen[1].conn, seen[0].conn, "a fresh upstream connection");
    assert!(seen.iter().all(|s| s.target != "/smuggled"));
    assert_eq!(upstream.errors(), Vec::<String>::new());
}

// RFC 9112 §3.2.2: absolute-form is sent on in origin-form; userinfo never
// travels (it is refused: see the next test).
#[tokio::test]
async fn absolute_form_is_forwarded_in_origin_form() {
    let upstream = recording_upstream().await;
    let srv = proxy_in_front_of(upstream.addr()).await.0;
    let cases: [(&str, &str); 3] = [
        (
            "GET http://example.com/x?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            "/x?q=1",
        ),
        (
            "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
            "/",
        ),
        (
            "GET HTTP://EXAMPLE.COM:80/y HTTP/1.1\r\nHost: example.com\r\n\r\n",
            "/y",
        ),
    ];
    for (request, target) in cases {
        let mut c = Raw::connect(srv.addr).await;
        c.send(request.as_bytes()).await;
        assert_eq!(c.response().await.status, 200, "{request:?}");
        let seen = upstream.seen().pop().unwrap();
        assert_eq!(seen.target, target, "{request:?}");
        assert_eq!(check_clean(&seen, &[]), Vec::<String>::new(), "{request:?}");
        for (name, value) in &seen.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            assert!(
                !value.contains("user") && !value.contains("pw@"),
                "userinfo forwarded in {name}: {value}"
            );
        }
    }
}

// RFC 9110 §4.2.4: userinfo in an http target is to be treated as an error.
// Refused with 400 before routing: no connection upstream, no byte sent.
#[tokio::test]
async fn userinfo_in_the_target_is_refused_and_the_upstream_sees_nothing() {
    let upstream = recording_upstream().await;
    let srv = proxy_in_front_of(upstream.addr()).await.0;
    for request in [
        "GET http://user:pw@example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "GET http://user@example.com/x HTTP/1.0\r\n\r\n",
    ] {
        let mut c = Raw::connect(srv.addr).await;
        c.send(request.as_bytes()).await;
        let r = c.response().await;
        assert_eq!(r.status, 400, "{request:?}");
        assert_eq!(
            r.header("connection").as_deref(),
            Some("close"),
            "{request:?}"
        );
        assert!(c.closes_within(WAIT).await, "{request:?}: left open");
    }
    assert_eq!(upstream.connections(), 0);
    assert_eq!(upstream.bytes_received(), 0);
}

// RFC 9112 §3.2.2: "When a proxy receives a request with an absolute-form of
// request-target, the proxy MUST ignore the received Host header field (if
// any) and instead replace it with the host information of the
// request-target." Forwarding the received Host lets a client route by one
// host (the proxy routes by the target's) and be served as another.
#[tokio::test]
async fn absolute_form_target_decides_the_host_upstream() {
    let upstream = recording_upstream().await;
    let srv = proxy_in_front_of(upstream.addr()).await.0;
    for request in [
        "GET http://example.com/x HTTP/1.1\r\nHost: other.example\r\n\r\n",
        "GET http://example.com/x HTTP/1.0\r\n\r\n",
    ] {
        let mut c = Raw::connect(srv.addr).await;
        c.send(request.as_bytes()).await;
        assert_eq!(c.response().await.status, 200, "{request:?}");
        let seen = upstream.seen().pop().unwrap();
        assert_eq!(seen.values("host"), ["example.com"], "{request:?}");
        assert_eq!(
            seen.values("x-forwarded-host"),
            ["example.com"],
            "{request:?}"
        );
    }
}

// Authority-form belongs to CONNECT and asterisk-form to OPTIONS (RFC 9112
// §3.2.3, §3.2.4); neither reaches a reverse proxy's upstream with another
// method.
#[tokio::test]
async fn proxy_sends_no_authority_or_asterisk_form_upstream() {
    let upstream = recording_upstream().await;
    let srv = proxy_in_front_of(upstream.addr()).await.0;
    for request in [
        "GET example.com:80 HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: example.com\r\n\r\n",
    ] {
        let mut c = Raw::connect(srv.addr).await;
        c.send(request.as_bytes()).await;
        let r = c.response().await;
        assert!(
            (400..500).contains(&r.status),
            "{request:?}: {} {}",
            r.status,
            r.body_str()
        );
    }
    assert_eq!(upstream.bytes_received(), 0, "{:?}", upstream.seen());
}

// RFC 9112 §3.2.3: authority-form is only for CONNECT; a server answers such a
// request line with 400. The built-in origin instead panics on the empty path
// (origin.rs `path[1..]`), which the server turns into a 500.
#[tokio::test]
async fn server_refuses_authority_form_outside_connect() {
    let srv = TestServer::origin(Server::builder()).await;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET example.com:80 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 400, "{}", r.body_str());
}

// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code
// to any HTTP/1.1 request message that ... contains ... a Host header field
// with an invalid field value." A proxy that forwards it passes a host
// confusion on to the upstream (and into X-Forwarded-Host).
#[tokio::test]
async fn invalid_host_values_are_refused() {
    let srv = TestServer::origin(Server::builder()).await;
    let upstream = recording_upstream().await;
    let proxy = proxy_in_front_of(upstream.addr()).await.0;
    for host in ["a b", "a/b", "a@b", "a:b:c"] {
        let shape = refused(
            "invalid Host",
            format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
            400,
            At::Head,
        );
        let mut failures = Vec::new();
        for addr in [srv.addr, proxy.addr] {
            if let Err(e) = check_refused(addr, &shape).await {
                failures.push(format!("Host: {host}: {e}"));
            }
        }
        assert_all(failures);
    }
    assert_eq!(upstream.bytes_received(), 0, "{:?}", upstream.seen());
}

// RFC 9110 §8.6: a Content-Length list of identical values may be accepted
// (and replaced by one value). The server accepts `5, 5`; the proxy must then
// forward one valid length, not fail the request as the upstream's fault.
#[tokio::test]
async fn proxy_forwards_an_identical_content_length_list_as_one_length() {
    let upstream = recording_upstream().await;
    let srv = proxy_in_front_of(upstream.addr()).await.0;
    let mut c = Raw::connect(srv.addr).await;
    c.send(&post("Content-Length: 5, 5\r\n", "hello")).await;
    let r = c.response().await;
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].body, b"hello");
    assert_eq!(check_clean(&seen[0], &[]), Vec::<String>::new());
}

// RFC 9112 §3.2.1: "If the target URI's path component is empty, the client
// MUST send "/" as the path within the origin-form of request-target." An
// absolute-form target with an empty path and a query goes upstream as
// `GET ?q=1 HTTP/1.1`, which the upstream refuses as a bad request line (found
// by the proxy_request fuzz target).
#[tokio::test]
async fn absolute_form_with_an_empty_path_is_forwarded_with_slash() {
    let upstream = recording_upstream().await;
    let srv = proxy_in_front_of(upstream.addr()).await.0;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"GET http://example.com?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .await;
    let r = c.response().await;
    assert_eq!(upstream.errors(), Vec::<String>::new());
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
    assert_eq!(upstream.seen().pop().unwrap().target, "/?q=1");
}

// `CONNECT` takes the authority-form and nothing else (RFC 9112 §3.2.3), so
// `CONNECT / HTTP/1.1` is an invalid request line (400); a reverse proxy
// should not turn it into a CONNECT to its upstream (today the upstream gets
// `CONNECT 127.0.0.1:<port>` and the client a `200` with no tunnel).
#[tokio::test]
async fn connect_to_the_reverse_proxy_goes_nowhere() {
    let upstream = recording_upstream().await;
    let srv = proxy_in_front_of(upstream.addr()).await.0;
    let mut c = Raw::connect(srv.addr).await;
    c.send(b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let r = c.response().await;
    assert!((400..500).contains(&r.status), "{r:?}");
    assert_eq!(upstream.bytes_received(), 0, "{:?}", upstream.seen());
}
