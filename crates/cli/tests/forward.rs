//! `drainpipe forward`, the explicit proxy, with real clients: curl -x (HTTP/1.0
//! and 1.1, reuse of the proxy connection visible), Python's urllib with a
//! proxy handler, a CONNECT tunnel carrying a plain TCP echo (half-close
//! included), the deny rules (403), an absolute-form `https://` request
//! (400: clients use CONNECT), Basic authentication (407), and the dumb
//! proxy scenario of the seed text completing without a hang.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{curl, peer, Proc, BIN};

/// `drainpipe ARGS` and the one address it printed.
fn start(args: &[&str]) -> (Proc, SocketAddr) {
    let p = Proc::start(args, 1);
    let addr = p.addrs()[0];
    (p, addr)
}

fn origin() -> (Proc, SocketAddr) {
    start(&["origin", "--listen", "127.0.0.1:0"])
}

#[test]
fn curl_through_the_proxy_http11_and_http10_with_reuse() {
    if !peer("curl") {
        return;
    }
    let (_o, origin) = origin();
    let (_p, proxy) = start(&["forward", "--listen", "127.0.0.1:0", "--allow-private"]);
    let proxy_url = format!("http://{proxy}");
    let conn_url = format!("http://{origin}/conn");
    let echo_url = format!("http://{origin}/echo");
    // HTTP/1.1: two requests, one proxy connection; the origin sees origin-form
    // requests without Proxy-Connection.
    let (out, err) = curl(&["-v", "-x", &proxy_url, &echo_url, &conn_url]);
    assert!(
        err.contains("Re-using existing connection #0 with proxy"),
        "{err}"
    );
    assert!(
        err.contains("> Proxy-Connection: Keep-Alive"),
        "curl sent it: {err}"
    );
    assert!(
        out.starts_with("GET /echo HTTP/1.1\n"),
        "origin-form upstream: {out}"
    );
    let lower = out.to_lowercase();
    assert!(!lower.contains("proxy-connection"), "{out}");
    assert!(lower.contains(&format!("host: {origin}")), "{out}");
    assert!(lower.contains("via: 1.1 drainpipe"), "{out}");

    // HTTP/1.0 with Proxy-Connection: Keep-Alive: the client hop persists.
    let (out, err) = curl(&["-v", "-0", "-x", &proxy_url, &conn_url, &conn_url]);
    assert!(
        err.contains("Re-using existing connection #0 with proxy"),
        "{err}"
    );
    assert!(
        err.to_lowercase().contains("< connection: keep-alive"),
        "{err}"
    );
    assert_eq!(out.matches("conn=").count(), 2, "{out}");
    // Without it, the HTTP/1.0 client's connection closes after each answer.
    let (_, err) = curl(&[
        "-v",
        "-0",
        "-H",
        "Proxy-Connection:",
        "-x",
        &proxy_url,
        &conn_url,
        &conn_url,
    ]);
    assert!(err.to_lowercase().contains("< connection: close"), "{err}");
    assert!(!err.contains("Re-using existing connection"), "{err}");
}

#[test]
fn python_urllib_with_a_proxy_handler() {
    if !peer("python3") {
        return;
    }
    let (_o, origin) = origin();
    let (_p, proxy) = start(&["forward", "--listen", "127.0.0.1:0", "--allow-private"]);
    let script = format!(
        "import urllib.request\n\
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{'http': 'http://{proxy}'}}))\n\
r = opener.open('http://{origin}/echo', timeout=10)\n\
print(r.status, r.headers.get('Via'))\n\
print(r.read().decode())\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("200 1.1 drainpipe\n"), "{stdout}");
    assert!(stdout.contains("GET /echo HTTP/1.1"), "{stdout}");
}

#[test]
fn connect_tunnel_carries_a_tcp_echo_with_half_close() {
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = echo.accept().unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => s.write_all(&buf[..n]).unwrap(),
            }
        }
        // The client half-closed: answer once more, then close.
        s.write_all(b"bye").unwrap();
    });
    let port = echo_addr.port().to_string();
    let (_p, proxy) = start(&[
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--allow-private",
        "--allow-port",
        &port,
    ]);
    let mut c = TcpStream::connect(proxy).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        c,
        "CONNECT {echo_addr} HTTP/1.1\r\nHost: {echo_addr}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(
        head.starts_with("http/1.1 200 connection established\r\n"),
        "{head}"
    );
    assert!(
        !head.contains("content-length") && !head.contains("transfer-encoding"),
        "a tunnel has no framing: {head}"
    );
    c.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"bye", "half-close passed through both ways");

    // curl tunnelling HTTP through CONNECT (-p) to an allowed port.
    if peer("curl") {
        let (_o, origin) = origin();
        let port = origin.port().to_string();
        let (_p2, proxy2) = start(&[
            "forward",
            "--listen",
            "127.0.0.1:0",
            "--allow-private",
            "--allow-port",
            &port,
        ]);
        let (out, err) = curl(&[
            "-v",
            "-p",
            "-x",
            &format!("http://{proxy2}"),
            &format!("http://{origin}/"),
        ]);
        assert!(err.contains("CONNECT phase completed"), "{err}");
        assert_eq!(out, "Hello, World!");
    }
}

#[test]
fn denied_targets_get_403_with_a_reason() {
    let (_o, origin) = origin();
    let (_p, proxy) = start(&["forward", "--listen", "127.0.0.1:0"]);
    let ask = |req: String| {
        let mut c = TcpStream::connect(proxy).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(req.as_bytes()).unwrap();
        let mut got = String::new();
        let _ = c.read_to_string(&mut got);
        got
    };
    let r = ask(format!(
        "GET http://{origin}/ HTTP/1.1\r\nHost: {origin}\r\nConnection: close\r\n\r\n"
    ));
    assert!(r.starts_with("HTTP/1.1 403 Forbidden"), "{r}");
    assert!(
        r.ends_with("403 destination 127.0.0.1 is a private or local address\n"),
        "{r}"
    );
    let r = ask(format!(
        "CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n"
    ));
    assert!(r.starts_with("HTTP/1.1 403 Forbidden"), "{r}");
    assert!(
        r.contains(&format!("CONNECT to port {} is not allowed", origin.port())),
        "{r}"
    );
    let r = ask("GET /not-a-proxy-request HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".into());
    assert!(r.starts_with("HTTP/1.1 400 Bad Request"), "{r}");
    // https:// in absolute form: clients use CONNECT for TLS, and are told so.
    let r = ask(
        "GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
            .into(),
    );
    assert!(r.starts_with("HTTP/1.1 400 Bad Request"), "{r}");
    assert!(
        r.contains("https:// targets go through a CONNECT tunnel"),
        "{r}"
    );
}

#[test]
fn basic_authentication_is_checked_and_consumed() {
    let (_o, origin) = origin();
    let dir = std::env::temp_dir().join(format!("drainpipe-fwd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let creds = dir.join("users");
    std::fs::write(&creds, "alice:s3cret\n").unwrap();
    let (_p, proxy) = start(&[
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--allow-private",
        "--credentials",
        creds.to_str().unwrap(),
    ]);
    let ask = |auth: &str| {
        let mut c = TcpStream::connect(proxy).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(c, "GET http://{origin}/echo HTTP/1.1\r\nHost: {origin}\r\n{auth}Connection: close\r\n\r\n").unwrap();
        let mut got = String::new();
        let _ = c.read_to_string(&mut got);
        got
    };
    let r = ask("");
    assert!(
        r.starts_with("HTTP/1.1 407 Proxy Authentication Required"),
        "{r}"
    );
    assert!(
        r.contains("\r\nproxy-authenticate: Basic realm=\"drainpipe\"\r\n"),
        "{r}"
    );
    let r = ask("Proxy-Authorization: Basic YWxpY2U6d3Jvbmc=\r\n"); // alice:wrong
    assert!(r.starts_with("HTTP/1.1 407"), "{r}");
    let r = ask("Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n"); // alice:s3cret
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    assert!(
        !r.to_lowercase().contains("proxy-authorization"),
        "consumed, never forwarded: {r}"
    );
    // A credentials file that does not exist is a one-line error naming it.
    let out = Command::new(BIN)
        .args(["forward", "--credentials", "/nonexistent/users"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.starts_with("drainpipe: --credentials: cannot read /nonexistent/users"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

// The seed text's dumb proxy: a client sends `Connection: keep-alive` through
// the proxy to an HTTP/1.0 server that would honour it. A proxy that relays the
// field blindly leaves the origin holding the connection open while the body
// can only end at the close: both ends hang. drainpipe strips it.
#[test]
fn dumb_proxy_hang_cannot_happen() {
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin_addr = origin.local_addr().unwrap();
    std::thread::spawn(move || {
        while let Ok((mut s, _)) = origin.accept() {
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let keep = String::from_utf8_lossy(&req)
                    .to_lowercase()
                    .contains("connection: keep-alive");
                // An HTTP/1.0 server: no Content-Length, the body ends at the
                // close; with keep-alive it believes the connection stays open.
                let _ =
                    s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold server");
                if keep {
                    std::thread::sleep(Duration::from_secs(30));
                }
            });
        }
    });
    let (_p, proxy) = start(&["forward", "--listen", "127.0.0.1:0", "--allow-private"]);
    let started = Instant::now();
    let mut c = TcpStream::connect(proxy).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "GET http://{origin_addr}/ HTTP/1.0\r\nConnection: keep-alive\r\nProxy-Connection: keep-alive\r\n\r\n"
    )
    .unwrap();
    // HTTP/1.0 client, body of unknown length: delimited by the close.
    let mut got = String::new();
    c.read_to_string(&mut got)
        .expect("the response completes without a hang");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        got.starts_with("HTTP/1.1 200 OK") && got.ends_with("old server"),
        "{got}"
    );
    assert!(got.contains("\r\nconnection: close\r\n"), "{got}");
}

// The second seed's whole chain, with drainpipe as the smart proxy behind a
// blind relay: HTTP/1.0 client → relay → `drainpipe forward` → origin. The
// relay copies bytes both ways and closes its client side only when its
// server side closes. The client's `Connection: keep-alive` reaches drainpipe
// through the relay; if drainpipe kept the connection for it, the client
// (which reads until the close) would hang until drainpipe's idle timeout.
// RFC 9112 §9.3: drainpipe answers with `Connection: close` and closes.
#[test]
fn blind_relay_in_front_of_the_forward_proxy_does_not_hang() {
    let (_o, origin) = origin();
    let (_p, proxy) = start(&["forward", "--listen", "127.0.0.1:0", "--allow-private"]);
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((client, _)) = relay.accept() else {
            return;
        };
        let server = TcpStream::connect(proxy).unwrap();
        let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        // Client → server: a plain byte copy (a client EOF is not passed on).
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = c_in.read(&mut buf) {
                if n == 0 || s_out.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
        // Server → client, until the server closes; only then the client side.
        let (mut s_in, mut c_out) = (server, client);
        let mut buf = [0u8; 4096];
        while let Ok(n) = s_in.read(&mut buf) {
            if n == 0 || c_out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = c_out.shutdown(Shutdown::Both);
    });

    let started = Instant::now();
    let mut c = TcpStream::connect(relay_addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    write!(
        c,
        "GET http://{origin}/ HTTP/1.0\r\nHost: {origin}\r\nConnection: keep-alive\r\n\r\n"
    )
    .unwrap();
    // An HTTP/1.0 client of the seed's kind reads until the connection closes.
    let mut got = Vec::new();
    c.read_to_end(&mut got)
        .expect("the exchange ends with a close, not a read timeout");
    let got = String::from_utf8_lossy(&got);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the client saw the end after {:?}",
        started.elapsed()
    );
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("\r\nconnection: close\r\n"), "{got}");
    assert!(!got.to_lowercase().contains("keep-alive"), "{got}");
    assert!(got.ends_with("Hello, World!"), "{got}");
}
