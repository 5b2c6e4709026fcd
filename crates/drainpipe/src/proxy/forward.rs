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
/// (named in `Via`).
pub fn request_fields(
    headers: &mut HeaderMap,
    forwarding: &Forwarding,
    peer: Option<SocketAddr>,
    received: Version,
    tunnel: bool,
) {
    let upgrade = tunnel
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    proto::fields::strip_hop_by_hop(headers);
    // The client's Expect is answered by this hop (100 Continue when the body
    // is read); the next hop gets the body at once.
    headers.remove(header::EXPECT);
    if let Some(upgrade) = upgrade {
        headers.insert(header::UPGRADE, upgrade);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    add_via(headers, forwarding, received);
    if forwarding.x_forwarded {
        if let Some(peer) = peer {
            append_list(headers, X_FORWARDED_FOR, &peer.ip().to_string());
        }
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
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

fn add_via(headers: &mut HeaderMap, forwarding: &Forwarding, received: Version) {
    if let Some(name) = &forwarding.via {
        let version = if received == Version::HTTP_10 {
            "1.0"
        } else {
            "1.1"
        };
        append_list(headers, header::VIA, &format!("{version} {name}"));
    }
}

/// Appends `item` to a comma-separated list field (one line).
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: &str) {
    let joined = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.is_empty() => format!("{existing}, {item}"),
        _ => item.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
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
        request_fields(&mut h, &Forwarding::default(), None, Version::HTTP_11, true);
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
            Version::HTTP_11,
            false,
        );
        assert_eq!(h.len(), 1);
    }
}
