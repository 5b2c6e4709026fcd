//! `drainpipe bench` over TLS against a server whose responses end with the
//! connection (no length, no chunks): a response that ends with
//! close_notify is complete; one whose connection is cut without it is
//! truncated (an attacker can forge that end), not an I/O error.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use drainpipe::tls::{rustls, CertKey, ServerTls};

#[path = "../../drainpipe/tests/support/certs.rs"]
mod certs;

use certs::{Ca, ECDSA};

const BIN: &str = env!("CARGO_BIN_EXE_drainpipe");

/// A TLS server on 127.0.0.1 answering each connection's request with a
/// close-delimited `hello`, then closing, with close_notify first when
/// `notify`. Serves until the test process ends.
fn close_delimited_server(ca: &Ca, notify: bool) -> SocketAddr {
    let leaf = ca.leaf("localhost", &["localhost"], ECDSA);
    let tls = ServerTls::from_files(&[CertKey {
        cert: leaf.cert,
        key: leaf.key,
    }])
    .unwrap();
    let config: Arc<rustls::ServerConfig> = tls.config().clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let session = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut conn = rustls::StreamOwned::new(session, tcp);
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello");
            if notify {
                conn.conn.send_close_notify();
            }
            let _ = conn.flush();
            // Dropped: the FIN, after close_notify only when `notify`.
        }
    });
    addr
}

/// `bench` (serial, 5 requests, JSON) against the server: its exit code
/// and its report.
fn bench(ca: &Ca, addr: SocketAddr) -> (Option<i32>, String) {
    let url = format!("https://localhost:{}/", addr.port());
    let out = Command::new(BIN)
        .args(["bench", &url, "--ca", ca.cert.to_str().unwrap()])
        .args([
            "--strategy",
            "serial",
            "-n",
            "5",
            "--timeout",
            "10",
            "--json",
        ])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_close_delimited_response_over_tls_is_complete_only_with_close_notify() {
    let ca = Ca::new("bench-eof");
    let (code, out) = bench(&ca, close_delimited_server(&ca, true));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(r#""requests":5"#) && out.contains(r#""errors":0"#),
        "{out}"
    );
    assert!(out.contains(r#""status_codes":{"200":5}"#), "{out}");

    let (code, out) = bench(&ca, close_delimited_server(&ca, false));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(r#""requests":0"#) && out.contains(r#""errors":5"#),
        "{out}"
    );
    assert!(out.contains(r#""truncated":5"#), "{out}");
    assert!(out.contains(r#""io":0"#), "not an I/O error: {out}");
}
