//! The per-hop rewrite of a forwarded message: hop-by-hop fields out (both
//! ways), `Via` and `X-Forwarded-*` in, `Upgrade` kept only when tunnelling.
//! Framing is never forwarded as-is: `Transfer-Encoding` is dropped here and
//! each hop's connection frames the body for itself.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

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
pub fn request_fields(
    headers: &mut HeaderMap,
    forwarding: &Forwarding,
    peer: Option<SocketAddr>,
    tls: bool,
    received: Version,
    tunnel: bool,
) {
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
    add_via(headers, forwarding, received);
    if forwarding.x_forwarded {
        if let Some(peer) = peer {
            let mut buf = [0u8; 48];
            append_list(headers, X_FORWARDED_FOR, &[ip_text(peer.ip(), &mut buf)]);
        }
        let proto = if tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        if let Some(host) = headers.get(header::HOST).cloned() {
            headers.insert(X_FORWARDED_HOST, host);
        }
    }
}

/// Rewrites a response's fields for the client. `tunnel`: the response
/// switches protocols (101), so `Upgrade` stays.
pub fn response_fields(
    headers: &mut HeaderMap,
    forwarding: &Forwarding,
    received: Version,
    tunnel: bool,
) {
    let upgrade = tunnel
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    proto::fields::strip_hop_by_hop(headers);
    if let Some(upgrade) = upgrade {
        headers.insert(header::UPGRADE, upgrade);
    }
    add_via(headers, forwarding, received);
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

fn add_via(headers: &mut HeaderMap, forwarding: &Forwarding, received: Version) {
    if let Some(name) = &forwarding.via {
        let version: &[u8] = if received == Version::HTTP_10 {
            b"1.0 "
        } else {
            b"1.1 "
        };
        append_list(headers, header::VIA, &[version, name.as_bytes()]);
    }
}

/// Appends an item (given in parts) to a comma-separated list field, on one
/// line; no formatting machinery, one small copy.
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: &[&[u8]]) {
    let mut value = Vec::with_capacity(64);
    // Every earlier line keeps its entries, in order.
    for existing in headers.get_all(&name).iter().filter(|v| !v.is_empty()) {
        value.extend_from_slice(existing.as_bytes());
        value.extend_from_slice(b", ");
    }
    for part in item {
        value.extend_from_slice(part);
    }
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        headers.insert(name, v);
    }
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

        let mut r = map(&[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("x-a", "1"),
        ]);
        response_fields(&mut r, &Forwarding::default(), Version::HTTP_11, true);
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
