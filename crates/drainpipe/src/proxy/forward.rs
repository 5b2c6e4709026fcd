//! The per-hop rewrite of a forwarded message: hop-by-hop fields out (both
//! ways), `Via` and `X-Forwarded-*` in, `Upgrade` kept only when tunnelling.
//! Framing is never forwarded as-is: `Transfer-Encoding` is dropped here and
//! each hop's connection frames the body for itself.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;
use proto::FieldLines;

/// What a proxy adds to what it forwards.
#[derive(Debug, Clone)]
pub struct Forwarding {
    /// The pseudonym in `Via` (`None`: no `Via`). Default `drainpipe`.
    pub via: Option<String>,
    /// Whether to add `X-Forwarded-For`, `-Proto` and `-Host`. Default true.
    pub x_forwarded: bool,
}

impl Default for Forwarding {
    fn default() -> Self {
        Forwarding {
            via: Some("drainpipe".into()),
            x_forwarded: true,
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Rewrites a request's fields for the next hop. `tunnel`: the request asks to
/// switch protocols and the switch is forwarded, so `Upgrade` and
/// `Connection: upgrade` stay. `received` is the version the client used
/// (named in `Via`). `tls`: the client's connection is TLS
/// (`X-Forwarded-Proto: https`).
///
/// The typed form of [`forwarded_request`]: the added fields go into the map.
pub fn request_fields(
    headers: &mut HeaderMap,
    forwarding: &Forwarding,
    peer: Option<SocketAddr>,
    tls: bool,
    received: Version,
    tunnel: bool,
) {
    forwarded_request(headers, forwarding, peer, tls, received, tunnel).append_to(headers);
}

/// Rewrites a request's fields for the next hop (see [`request_fields`]),
/// returning the fields this hop adds (`Via`, `X-Forwarded-*`) as
/// [`FieldLines`] instead of inserting them: the hop-by-hop fields leave
/// `headers`, and so do earlier `Via`, `X-Forwarded-*` lines, whose entries
/// open the new `Via` and `X-Forwarded-For` lines. A proxy puts the lines in
/// the request's extensions, where the client writes them after the map: no
/// insertion into the map, no second look-up.
pub fn forwarded_request(
    headers: &mut HeaderMap,
    forwarding: &Forwarding,
    peer: Option<SocketAddr>,
    tls: bool,
    received: Version,
    tunnel: bool,
) -> FieldLines {
    let upgrade = tunnel
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    proto::fields::strip_hop_by_hop(headers);
    // RFC 9110 §10.1.1: `Expect: 100-continue` goes on toward the origin,
    // which may refuse before the body is sent (the proxy relays its 100 or
    // its answer); a 100-continue in an HTTP/1.0 request is ignored.
    if received == Version::HTTP_10 {
        headers.remove(header::EXPECT);
    }
    if let Some(upgrade) = upgrade {
        headers.insert(header::UPGRADE, upgrade);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // One look over the names says which of ours are there already (usually
    // none: then nothing is hashed for them).
    let mut earlier = [false; 4];
    for name in headers.keys() {
        if let Some(i) = OURS.iter().position(|ours| ours == name) {
            earlier[i] = true;
        }
    }
    let mut lines = FieldLines::with_capacity(128);
    if let Some(name) = &forwarding.via {
        let take = earlier[0].then(|| take_list(headers, &header::VIA));
        push_list(
            &mut lines,
            &header::VIA,
            take,
            &[version_text(received), name.as_bytes()],
        );
    }
    if forwarding.x_forwarded {
        // Without a peer address (a Unix socket) the earlier entries stay.
        if let Some(peer) = peer {
            let take = earlier[1].then(|| take_list(headers, &X_FORWARDED_FOR));
            let mut buf = [0u8; 48];
            let ip = ip_text(peer.ip(), &mut buf);
            push_list(&mut lines, &X_FORWARDED_FOR, take, &[ip]);
        }
        if earlier[2] {
            headers.remove(&X_FORWARDED_PROTO);
        }
        let proto: &[u8] = if tls { b"https" } else { b"http" };
        let _ = lines.push_field(&X_FORWARDED_PROTO, &[proto]);
        if earlier[3] {
            headers.remove(&X_FORWARDED_HOST);
        }
        if let Some(host) = headers.get(header::HOST) {
            let _ = lines.push_field(&X_FORWARDED_HOST, &[host.as_bytes()]);
        }
    }
    lines
}

/// Readies a rewritten request head for the proxy's client: the fields this
/// hop adds (from [`forwarded_request`]) ride in its extensions and are
/// written after the map, and the response is asked for as field lines
/// (both are what [`proto::Relay`] says), so neither direction builds a
/// header map for fields nobody reads.
pub(crate) fn to_next_hop(head: &mut http::request::Parts, added: FieldLines) {
    head.extensions.insert(proto::Relay { added });
}

/// The fields a proxy adds, in the order of `earlier` above.
static OURS: [HeaderName; 4] = [
    header::VIA,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
];

/// Removes every line of the list field `name` from `headers`, its entries
/// joined as one value (RFC 9110 §5.3: the lines are one list).
fn take_list(headers: &mut HeaderMap, name: &HeaderName) -> Vec<u8> {
    let mut joined = Vec::with_capacity(64);
    for existing in headers.get_all(name).iter().filter(|v| !v.is_empty()) {
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(existing.as_bytes());
    }
    headers.remove(name);
    joined
}

/// Adds the list field `name`: the earlier entries (if any), then this hop's
/// `item` (given in parts), on one line.
fn push_list(lines: &mut FieldLines, name: &HeaderName, earlier: Option<Vec<u8>>, item: &[&[u8]]) {
    let _ = match earlier.filter(|e| !e.is_empty()) {
        Some(earlier) => {
            let mut parts: Vec<&[u8]> = vec![&earlier, b", "];
            parts.extend_from_slice(item);
            lines.push_field(name, &parts)
        }
        None => lines.push_field(name, item),
    };
}

/// The protocol version as `Via` names it.
fn version_text(received: Version) -> &'static [u8] {
    if received == Version::HTTP_10 {
        b"1.0 "
    } else {
        b"1.1 "
    }
}

/// Rewrites a response's fields for the client. `tunnel`: the response
/// switches protocols (101), so `Upgrade` stays.
///
/// A response received as [`FieldLines`] (in `head.extensions`; the proxy's
/// client asks for that with [`proto::Relay`]) had its hop-by-hop
/// fields left out as it was read: `Via` is one more line after the
/// upstream's (RFC 9110 §5.3: the same list), and the map (empty, or what a
/// layer put there) is rewritten as any map is.
pub fn response_fields(
    head: &mut http::response::Parts,
    forwarding: &Forwarding,
    received: Version,
    tunnel: bool,
) {
    let headers = &mut head.headers;
    if !headers.is_empty() {
        let upgrade = tunnel
            .then(|| headers.get(header::UPGRADE).cloned())
            .flatten();
        proto::fields::strip_hop_by_hop(headers);
        if let Some(upgrade) = upgrade {
            headers.insert(header::UPGRADE, upgrade);
        }
    }
    let Some(name) = &forwarding.via else { return };
    let item: [&[u8]; 2] = [version_text(received), name.as_bytes()];
    match head.extensions.get_mut::<FieldLines>() {
        Some(lines) => {
            let _ = lines.push_field(&header::VIA, &item);
        }
        None => {
            let earlier = headers
                .contains_key(header::VIA)
                .then(|| take_list(headers, &header::VIA));
            let mut lines = FieldLines::new();
            push_list(&mut lines, &header::VIA, earlier, &item);
            lines.append_to(headers);
        }
    }
}

/// An informational (1xx) response from the upstream as the client gets it
/// (RFC 9110 §15.2: a proxy forwards the 1xx it did not ask for itself):
/// status and fields, hop-by-hop fields out.
pub(crate) fn informational(res: &http::Response<()>) -> http::response::Parts {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = res.status();
    parts.headers = res.headers().clone();
    proto::fields::strip_hop_by_hop(&mut parts.headers);
    parts
}

/// An IP address as text, written into a stack buffer (IPv4 by hand: it is on
/// every forwarded request).
fn ip_text(ip: std::net::IpAddr, buf: &mut [u8; 48]) -> &[u8] {
    let n = match ip {
        std::net::IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    buf[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    buf[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + octet % 10;
                n += 1;
            }
            n
        }
        std::net::IpAddr::V6(_) => {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{ip}");
            cursor.position() as usize
        }
    };
    &buf[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(lines: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in lines {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn request_loses_hop_by_hop_and_gains_forwarding_fields() {
        let mut h = map(&[
            ("host", "example.com"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic eA=="),
            ("expect", "100-continue"),
            ("x-forwarded-for", "10.0.0.1"),
            ("via", "1.1 edge"),
            ("accept", "*/*"),
        ]);
        let peer = "127.0.0.1:5000".parse().unwrap();
        request_fields(
            &mut h,
            &Forwarding::default(),
            Some(peer),
            false,
            Version::HTTP_10,
            false,
        );
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "accept",
                "host",
                "via",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto"
            ]
        );
        assert_eq!(h["via"], "1.1 edge, 1.0 drainpipe");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    // What a client claims in -Proto and -Host never passes on: replaced by
    // what this hop saw, and -Host dropped when the request has no Host.
    #[test]
    fn client_forwarded_proto_and_host_are_replaced_or_dropped() {
        let mut h = map(&[
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
        ]);
        let added = forwarded_request(
            &mut h,
            &Forwarding::default(),
            None,
            false,
            Version::HTTP_10,
            false,
        );
        assert!(h.is_empty(), "{h:?}");
        assert_eq!(added.get("x-forwarded-proto"), Some(&b"http"[..]));
        assert_eq!(added.get("x-forwarded-host"), None);
        assert_eq!(added.get("x-forwarded-for"), None, "no peer address");
    }

    #[test]
    fn tunnel_keeps_upgrade() {
        let mut h = map(&[
            ("host", "a"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "x"),
        ]);
        request_fields(
            &mut h,
            &Forwarding::default(),
            None,
            false,
            Version::HTTP_11,
            true,
        );
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["sec-websocket-key"], "x");

        let (mut head, ()) = http::Response::new(()).into_parts();
        head.headers = map(&[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("x-a", "1"),
        ]);
        response_fields(&mut head, &Forwarding::default(), Version::HTTP_11, true);
        let r = head.headers;
        assert_eq!(r["upgrade"], "websocket");
        assert!(!r.contains_key("connection"));
        assert_eq!(r["via"], "1.1 drainpipe");
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.3.255",
            "192.168.100.9",
            "::1",
            "2001:db8::7",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut buf = [0u8; 48];
            assert_eq!(ip_text(ip, &mut buf), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn forwarding_can_be_turned_off() {
        let mut h = map(&[("host", "a")]);
        let off = Forwarding {
            via: None,
            x_forwarded: false,
        };
        request_fields(
            &mut h,
            &off,
            Some("127.0.0.1:1".parse().unwrap()),
            false,
            Version::HTTP_11,
            false,
        );
        assert_eq!(h.len(), 1);
    }
}
