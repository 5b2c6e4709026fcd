//! The addresses a user writes, on the command line and in the config file:
//! where to listen (`HOST:PORT`, `[::1]:PORT`, `:PORT`, `unix:/PATH`) and
//! where an upstream is (`HOST:PORT`, `http://HOST[:PORT]`, `unix:/PATH`).
//! Every error says what is wrong with the text ("port 'abc' is not a
//! number", "scheme ftp is not supported").

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use drainpipe::client::Origin;
use serde::{Deserialize, Deserializer};

/// A listen address as written, and the socket addresses it stands for (a
/// host name may resolve to several: each is bound), or the path of a Unix
/// socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    text: String,
    /// The socket addresses to bind, in resolver order (none for a Unix
    /// socket).
    pub addrs: Vec<SocketAddr>,
    /// The Unix socket to bind (`unix:/PATH`).
    pub unix: Option<PathBuf>,
}

impl ListenAddr {
    /// Parses and resolves `text`.
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("unix:") {
            return Ok(ListenAddr {
                text: text.to_string(),
                addrs: Vec::new(),
                unix: Some(unix_path(text, path)?),
            });
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(format!(
                "{text}: a listen address takes no scheme ({scheme}://); use HOST:PORT"
            ));
        }
        let (host, port) = host_port(text)?;
        let port = port.ok_or_else(|| format!("{text}: no port (use HOST:PORT or :PORT)"))?;
        let addrs = match host {
            Host::Any => vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)],
            Host::Ip(ip) => vec![SocketAddr::new(ip, port)],
            Host::Name(name) => resolve(name, port).map_err(|e| format!("{text}: {e}"))?,
        };
        Ok(ListenAddr {
            text: text.to_string(),
            addrs,
            unix: None,
        })
    }

    /// One IP socket address (no resolution needed).
    pub fn ip(addr: SocketAddr) -> ListenAddr {
        ListenAddr {
            text: addr.to_string(),
            addrs: vec![addr],
            unix: None,
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<ListenAddr, String> {
        ListenAddr::parse(s)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ListenAddr, D::Error> {
        let text = String::deserialize(d)?;
        ListenAddr::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The permission bits of a Unix socket file drainpipe creates, written in
/// octal (`"660"`, `"0660"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketMode(pub u32);

impl std::str::FromStr for SocketMode {
    type Err = String;

    fn from_str(text: &str) -> Result<SocketMode, String> {
        let digits = text.trim();
        match u32::from_str_radix(digits, 8) {
            Ok(mode) if mode <= 0o777 && !digits.is_empty() => Ok(SocketMode(mode)),
            _ => Err(format!(
                "{text:?} is not a file mode (octal permission bits such as \"660\")"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for SocketMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SocketMode, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The absolute path of a `unix:PATH` address.
fn unix_path(text: &str, path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err(format!("{text}: no socket path (use unix:/PATH)"));
    }
    if !path.starts_with('/') {
        return Err(format!(
            "{text}: the socket path must be absolute (use unix:/PATH)"
        ));
    }
    if path.len() > 107 {
        // sun_path holds 108 bytes with its NUL.
        return Err(format!("{text}: the socket path is longer than 107 bytes"));
    }
    Ok(PathBuf::from(path))
}

/// An upstream server: `HOST:PORT`, `[V6]:PORT`, `http://HOST[:PORT]` (port
/// 80 by default with the scheme), `https://HOST[:PORT]` (TLS, port 443 by
/// default, verified with the system's roots unless the group says
/// otherwise) or `unix:/PATH`. The host is not resolved here.
pub fn upstream(text: &str) -> Result<Origin, String> {
    let text = text.trim();
    if let Some(path) = text.strip_prefix("unix:") {
        return Ok(Origin::unix(unix_path(text, path)?));
    }
    let (rest, default_port) = match text.split_once("://") {
        None => (text, None),
        Some(("http", rest)) => (rest, Some(80)),
        Some(("https", rest)) => (rest, Some(443)),
        Some((scheme, _)) => {
            return Err(format!(
                "{text}: scheme {scheme} is not supported (use HOST:PORT, http://HOST:PORT or https://HOST:PORT)"
            ))
        }
    };
    let scheme = if default_port == Some(443) {
        "https"
    } else {
        "http"
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "{text}: an upstream is a server, not a URL: no path, query or user (use HOST:PORT)"
        ));
    }
    let (host, port) = host_port(rest).map_err(|e| e.replacen(rest, text, 1))?;
    let port = port
        .or(default_port)
        .ok_or_else(|| format!("{text}: no port (use HOST:PORT or http://HOST)"))?;
    let host = match host {
        Host::Any => return Err(format!("{text}: no host (use HOST:PORT)")),
        Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        Host::Ip(ip) => ip.to_string(),
        Host::Name(name) => name.to_string(),
    };
    let uri: http::Uri = format!("{scheme}://{host}:{port}/")
        .parse()
        .map_err(|_| format!("{text}: {host:?} is not a valid host name"))?;
    Origin::of(&uri).map_err(|e| format!("{text}: {e}"))
}

/// Resolves an upstream's host now: `Err` names the host when it does not
/// resolve (an IP address always does).
pub fn resolve_upstream(origin: &Origin) -> Result<Vec<SocketAddr>, String> {
    if origin.unix_path().is_some() {
        // Nothing to resolve: whether it is there shows at connect time.
        return Ok(Vec::new());
    }
    match origin.host.parse::<IpAddr>() {
        Ok(ip) => Ok(vec![SocketAddr::new(ip, origin.port)]),
        Err(_) => resolve(&origin.host, origin.port),
    }
}

enum Host<'a> {
    /// Empty: every interface.
    Any,
    Ip(IpAddr),
    Name(&'a str),
}

/// Splits `HOST:PORT`, `[V6]:PORT`, `:PORT` or a bare `HOST`.
fn host_port(text: &str) -> Result<(Host<'_>, Option<u16>), String> {
    let (host, port) = if let Some(inner) = text.strip_prefix('[') {
        let (v6, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("{text}: '[' without ']' (write IPv6 as [::1]:PORT)"))?;
        let ip = v6
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{text}: {v6:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{text}: expected ':PORT' after ']'"))?,
            ),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        };
        if host.contains(':') {
            return Err(format!(
                "{text}: an IPv6 address needs brackets: [{host}]:PORT"
            ));
        }
        let host = if host.is_empty() {
            Host::Any
        } else if let Ok(ip) = host.parse::<Ipv4Addr>() {
            Host::Ip(IpAddr::V4(ip))
        } else if host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        {
            Host::Name(host)
        } else {
            return Err(format!("{text}: {host:?} is not a valid host name"));
        };
        (host, port)
    };
    let port = match port {
        None => None,
        Some("") => return Err(format!("{text}: no port after ':'")),
        Some(p) if !p.chars().all(|c| c.is_ascii_digit()) => {
            return Err(format!("{text}: port '{p}' is not a number"))
        }
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("{text}: port {p} is out of range (0-65535)"))?,
        ),
    };
    Ok((host, port))
}

fn resolve(name: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = (name, port)
        .to_socket_addrs()
        .map_err(|e| format!("host name '{name}' does not resolve: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("host name '{name}' resolves to no address"));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        let a = ListenAddr::parse("127.0.0.1:8080").unwrap();
        assert_eq!(a.addrs, ["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]);
        let a = ListenAddr::parse(":8085").unwrap();
        assert_eq!(a.addrs, ["0.0.0.0:8085".parse::<SocketAddr>().unwrap()]);
        let a = ListenAddr::parse("[::1]:9").unwrap();
        assert_eq!(a.addrs, ["[::1]:9".parse::<SocketAddr>().unwrap()]);
        let a = ListenAddr::parse("localhost:8085").unwrap();
        assert!(!a.addrs.is_empty());
        assert!(a
            .addrs
            .iter()
            .all(|s| s.ip().is_loopback() && s.port() == 8085));
        assert_eq!(a.to_string(), "localhost:8085");
        let a = ListenAddr::parse("unix:/run/d.sock").unwrap();
        assert_eq!(a.unix, Some(PathBuf::from("/run/d.sock")));
        assert!(a.addrs.is_empty());
        assert_eq!(a.to_string(), "unix:/run/d.sock");
    }

    #[test]
    fn listen_errors_say_what_is_wrong() {
        for (text, want) in [
            ("127.0.0.1:abc", "127.0.0.1:abc: port 'abc' is not a number"),
            ("127.0.0.1:70000", "port 70000 is out of range"),
            ("localhost", "localhost: no port"),
            ("127.0.0.1:", "no port after ':'"),
            ("::1:80", "an IPv6 address needs brackets: [::1]:PORT"),
            ("[::1:80", "'[' without ']'"),
            ("[nope]:80", "\"nope\" is not an IPv6 address"),
            ("unix:", "unix:: no socket path (use unix:/PATH)"),
            ("unix:run/d.sock", "the socket path must be absolute"),
            ("http://127.0.0.1:80", "takes no scheme (http://)"),
            ("no host!:80", "\"no host!\" is not a valid host name"),
            (
                "nowhere.invalid:80",
                "nowhere.invalid:80: host name 'nowhere.invalid' does not resolve",
            ),
        ] {
            let err = ListenAddr::parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err:?} lacks {want:?}");
            assert_eq!(err.lines().count(), 1);
        }
    }

    #[test]
    fn socket_modes() {
        assert_eq!("660".parse(), Ok(SocketMode(0o660)));
        assert_eq!("0600".parse(), Ok(SocketMode(0o600)));
        for bad in ["", "8", "1777", "rw"] {
            assert!(bad
                .parse::<SocketMode>()
                .unwrap_err()
                .contains("is not a file mode"));
        }
    }

    #[test]
    fn upstream_forms() {
        let o = upstream("127.0.0.1:8081").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 8081));
        let o = upstream("http://127.0.0.1:8081").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 8081));
        let o = upstream("http://app.internal/").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("app.internal", 80));
        assert!(o.tls.is_none());
        let o = upstream("https://app.internal").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("app.internal", 443));
        assert!(o.tls.is_some());
        assert_eq!(o.to_string(), "https://app.internal:443");
        let o = upstream("[::1]:8081").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("::1", 8081));
        let o = upstream("localhost:8082").unwrap();
        assert_eq!(o.to_string(), "localhost:8082");
        let o = upstream("unix:/run/app.sock").unwrap();
        assert_eq!(o.unix_path(), Some(std::path::Path::new("/run/app.sock")));
        assert_eq!(o.to_string(), "unix:/run/app.sock");
    }

    #[test]
    fn upstream_errors_say_what_is_wrong() {
        for (text, want) in [
            ("127.0.0.1:abc", "port 'abc' is not a number"),
            ("ftp://h:21", "scheme ftp is not supported"),
            (
                "https://h:443/x",
                "https://h:443/x: an upstream is a server, not a URL",
            ),
            (
                "unix:app.sock",
                "unix:app.sock: the socket path must be absolute",
            ),
            ("nowhere", "nowhere: no port"),
            (":8080", "no host"),
            ("http://h:80/api", "no path"),
            ("http://h:abc", "http://h:abc: port 'abc' is not a number"),
        ] {
            let err = upstream(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn resolving_an_upstream() {
        let o = upstream("localhost:1").unwrap();
        assert!(resolve_upstream(&o).unwrap().iter().all(|a| a.port() == 1));
        let o = upstream("nowhere.invalid:1").unwrap();
        let err = resolve_upstream(&o).unwrap_err();
        assert!(
            err.starts_with("host name 'nowhere.invalid' does not resolve"),
            "{err}"
        );
    }
}
