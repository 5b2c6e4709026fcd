//! The proxy's request path fed generated and mutated bytes, without sockets,
//! under `cargo test` (the invariants of `oracle/proxy_request.rs`, which the cargo-fuzz target
//! `fuzz/fuzz_targets/proxy_request.rs` checks too; it needs nightly features).
//!
//! Bytes go into a server connection split at random points (as the proxy's
//! server reads them); every request head it yields is rewritten by
//! `drainpipe::proxy::request_fields`, given the upstream target and `Host` the
//! proxy gives it, serialised by a client connection (as the proxy's pool sends
//! it) and parsed again by a strict server connection (as the upstream reads
//! it). Invariants: no hop-by-hop field survives; at most one `Host`; no
//! `Transfer-Encoding`; `Content-Length` only with the framed length; the
//! upstream parses the result with the same method, target and framing.
//!
//! The inputs come from a seeded generator (a request grammar rich in
//! smuggling material, then byte mutations), so a failure names its seed and
//! bytes and reproduces exactly. `FUZZ_PROXY_CASES` sets the number of cases
//! (default 20,000); `FUZZ_PROXY_SEED` the first seed.
//!
//! (drainpipe's dev-dependencies do not include `proptest`, and its
//! `Cargo.toml` is outside this change; the generator below stands in for it.)

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use drainpipe::proto::{BodySize, Config, Connection, Event, Role, WriteBuf};
use drainpipe::proxy::{request_fields, Forwarding};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

#[path = "oracle/proxy_request.rs"]
mod oracle;

use oracle::{check, values};

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

const METHODS: &[&str] = &[
    "GET", "GET", "POST", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "PATCH", "CONNECT", "TRACE",
    "FOO",
];
const TARGETS: &[&str] = &[
    "/",
    "/a/b?c=d",
    "/%2e%2e/x",
    "//double/slash",
    "/a#frag",
    "*",
    "http://example.com/x?y=1",
    "http://example.com",
    "http://example.com?q=1",
    "http://u:p@h:8080/p",
    "HTTP://EXAMPLE.COM:80/",
    "example.com:443",
];
const VERSIONS: &[&str] = &["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0"];
const TOKENS: &[&str] = &[
    "close",
    "keep-alive",
    "Keep-Alive",
    "upgrade",
    "x-a",
    "X-B",
    "via",
    "host",
    "content-length",
    "transfer-encoding",
    "x-forwarded-for",
    "x-forwarded-host",
    "te",
    "expect",
    "foo bar",
    "",
];
const FIELDS: &[(&str, &[&str])] = &[
    ("Host", &["a", "example.com:8080", "a b", "", "[::1]:80"]),
    (
        "Content-Length",
        &["0", "5", "5", "5, 5", "05", " 5 ", "+5", "5,6", "-1"],
    ),
    (
        "Transfer-Encoding",
        &[
            "chunked",
            "chunked",
            "CHUNKED",
            "gzip, chunked",
            "identity",
            "chunked, chunked",
            "\tchunked",
            "xchunked",
        ],
    ),
    ("Keep-Alive", &["timeout=5, max=9"]),
    ("TE", &["trailers"]),
    ("Trailer", &["X-T"]),
    ("Upgrade", &["websocket", "h2c"]),
    ("Proxy-Authorization", &["Basic eA=="]),
    ("Proxy-Authenticate", &["Basic"]),
    ("Expect", &["100-continue"]),
    ("Via", &["1.0 edge", "1.1 a, 1.1 b"]),
    ("X-Forwarded-For", &["10.0.0.1", "1.1.1.1, 2.2.2.2"]),
    ("X-Forwarded-Host", &["spoofed"]),
    ("X-Forwarded-Proto", &["https"]),
    ("X-A", &["1", "a\tb", "\u{e9}"]),
    ("X-B", &["2"]),
    ("Transfer_Encoding", &["chunked"]),
];
const BODIES: &[&str] = &[
    "",
    "hello",
    "5\r\nhello\r\n0\r\n\r\n",
    "0\r\n\r\n",
    "5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    "3\r\nabc\r\n",
];
const MUTANTS: &[u8] = b"\r\n\0 \t:,;\x7f\x80a0";

fn mixed_case(rng: &mut Rng, s: &str) -> String {
    match rng.below(3) {
        0 => s.to_ascii_lowercase(),
        1 => s.to_ascii_uppercase(),
        _ => s.to_string(),
    }
}

fn generate_request(rng: &mut Rng, out: &mut Vec<u8>) {
    let method = *rng.pick(METHODS);
    let target = *rng.pick(TARGETS);
    let version = *rng.pick(VERSIONS);
    out.extend_from_slice(format!("{method} {target} {version}\r\n").as_bytes());
    if version == "HTTP/1.1" || rng.one_in(2) {
        out.extend_from_slice(b"Host: a\r\n");
    }
    for _ in 0..rng.below(10) {
        if rng.one_in(4) {
            let name = *rng.pick(&["Connection", "Proxy-Connection", "connection"]);
            let tokens: Vec<&str> = (0..1 + rng.below(4)).map(|_| *rng.pick(TOKENS)).collect();
            let sep = *rng.pick(&[", ", ",", " , "]);
            out.extend_from_slice(format!("{name}: {}\r\n", tokens.join(sep)).as_bytes());
        } else {
            let (name, values) = *rng.pick(FIELDS);
            let value = *rng.pick(values);
            let name = mixed_case(rng, name);
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(rng.pick(BODIES).as_bytes());
}

/// A generated input: one to three requests back to back, sometimes mutated.
fn generate(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = Vec::new();
    for _ in 0..1 + rng.below(3) {
        generate_request(rng, &mut bytes);
    }
    if rng.one_in(3) {
        for _ in 0..1 + rng.below(3) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[at] = *rng.pick(MUTANTS),
                1 => {
                    bytes.remove(at);
                }
                _ => {
                    let end = (at + 1 + rng.below(16)).min(bytes.len());
                    let copy = bytes[at..end].to_vec();
                    let to = rng.below(bytes.len());
                    bytes.splice(to..to, copy);
                }
            }
        }
    }
    bytes
}

/// What the proxy path made of the input, for counting coverage.
#[derive(Default, Debug)]
struct Tally {
    inputs: usize,
    requests: usize,
    forwarded: usize,
    refused: usize,
}

/// Feeds `data` (split at random points) to a server connection and checks
/// every request it yields.
fn run(data: &[u8], rng: &mut Rng, tally: &mut Tally) {
    let config = Arc::new(Config {
        max_head_bytes: 8 * 1024,
        ..Config::default()
    });
    let mut server = Connection::new(Role::Server, config);
    let (answer, ()) = http::Response::new(()).into_parts();
    let mut out = WriteBuf::new();
    let mut rest = data;
    loop {
        if rest.is_empty() {
            server.receive_eof();
        } else {
            let n = 1 + rng.below(rest.len());
            server.receive(&rest[..n]);
            rest = &rest[n..];
        }
        let mut stop = false;
        for _ in 0..256 {
            match server.next_event() {
                Ok(Event::Request { head, body }) => {
                    tally.requests += 1;
                    if check(head, body) {
                        tally.forwarded += 1;
                    }
                }
                Ok(Event::End { .. }) => {
                    if server
                        .send_response(&answer, BodySize::Exact(0), &mut out)
                        .is_ok()
                    {
                        let _ = server.send_end(None, &mut out);
                    }
                    out.clear();
                }
                Ok(Event::NeedData) => break,
                Ok(Event::Paused | Event::Closed) => {
                    stop = true;
                    break;
                }
                Ok(_) => {}
                Err(_) => {
                    tally.refused += 1;
                    stop = true;
                    break;
                }
            }
        }
        if stop || server.saw_eof() {
            return;
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn generated_requests_keep_the_proxy_path_invariants() {
    let cases = env_u64("FUZZ_PROXY_CASES", 20_000);
    let first = env_u64("FUZZ_PROXY_SEED", 1);
    let mut tally = Tally::default();
    for seed in first..first + cases {
        let mut rng = Rng::new(seed);
        let data = generate(&mut rng);
        let outcome = catch_unwind(AssertUnwindSafe(|| run(&data, &mut rng, &mut tally)));
        if outcome.is_err() {
            panic!(
                "seed {seed} (FUZZ_PROXY_SEED={seed} FUZZ_PROXY_CASES=1) broke an invariant; input:\n{}",
                data.escape_ascii()
            );
        }
        tally.inputs += 1;
    }
    eprintln!("proxy path: {tally:?}");
    // The generator must reach both sides of the path, or it tests nothing.
    assert!(tally.forwarded > tally.inputs / 4, "{tally:?}");
    assert!(tally.refused > tally.inputs / 10, "{tally:?}");
}

/// Known shapes, each through the same checks (a regression list the
/// generator might take long to hit).
#[test]
fn known_shapes_keep_the_proxy_path_invariants() {
    let shapes: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: via, x-forwarded-for\r\nVia: 1.0 x\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: content-length\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding, te\r\nTE: trailers\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, X-A\r\nUpgrade: websocket\r\nX-A: 1\r\n\r\n",
        b"GET http://example.com/x HTTP/1.0\r\nProxy-Connection: keep-alive, X-A\r\nX-A: 1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
    ];
    let mut tally = Tally::default();
    for (i, shape) in shapes.iter().enumerate() {
        let mut rng = Rng::new(i as u64);
        run(shape, &mut rng, &mut tally);
    }
    assert_eq!(tally.refused, 0, "{tally:?}");
    assert_eq!(tally.forwarded, shapes.len() - 1, "{tally:?}");
}

// RFC 9110 §7.6.3: a proxy appends its entry to Via (and X-Forwarded-For is
// the same kind of list); field lines with the same name are one
// comma-separated list (RFC 9110 §5.3). The rewrite keeps only the first line
// and drops the hops named on later ones.
#[test]
fn via_and_x_forwarded_for_keep_every_earlier_hop() {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("a"));
    h.append(header::VIA, HeaderValue::from_static("1.1 a"));
    h.append(header::VIA, HeaderValue::from_static("1.1 b"));
    h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
    h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
    request_fields(
        &mut h,
        &Forwarding::default(),
        Some("127.0.0.1:5000".parse().unwrap()),
        false,
        Version::HTTP_11,
        false,
    );
    let joined =
        |name: &str| values(&h, &HeaderName::from_bytes(name.as_bytes()).unwrap()).join(", ");
    assert_eq!(joined("via"), "1.1 a, 1.1 b, 1.1 drainpipe");
    assert_eq!(joined("x-forwarded-for"), "10.0.0.1, 10.0.0.2, 127.0.0.1");
}
