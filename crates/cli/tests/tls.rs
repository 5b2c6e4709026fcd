//! TLS as an operator uses it: `--tls-cert/--tls-key` on `origin` and
//! `proxy`, `https://` upstreams with `--upstream-ca`, `[[listener]] tls`
//! re-read on reload (a broken certificate refused, the old one kept), bad
//! files named in one line, an upstream that does not verify → 502 with the
//! reason in the log.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use drainpipe::tls::rustls;

#[path = "../../drainpipe/tests/support/certs.rs"]
mod certs;
mod common;

use certs::{Ca, Leaf, ECDSA};
use common::{control, curl, peer, pid_in, read_response, Proc, Scratch, BIN};

fn origin_tls(leaf: &Leaf) -> Proc {
    Proc::start(
        &[
            "origin",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            leaf.cert.to_str().unwrap(),
            "--tls-key",
            leaf.key.to_str().unwrap(),
        ],
        1,
    )
}

/// A blocking TLS connection to `addr` for the server name `name`, trusting
/// `ca`, its handshake done (reads time out after 10 s).
fn tls_connect(ca: &Ca, addr: SocketAddr, name: &str) -> TlsConn {
    let tls = drainpipe::tls::ClientTls::builder()
        .ca_file(&ca.cert)
        .build()
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let session = rustls::ClientConnection::new(tls.config().clone(), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut conn = rustls::StreamOwned::new(session, tcp);
    while conn.conn.is_handshaking() {
        conn.conn.complete_io(&mut conn.sock).unwrap();
    }
    conn
}

type TlsConn = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// The certificate a TLS connection's server presented (its leaf), as DER.
fn leaf_of(conn: &TlsConn) -> Vec<u8> {
    conn.conn.peer_certificates().unwrap()[0].to_vec()
}

/// The certificate the TLS listener at `addr` presents for `name`, as DER.
fn presented(ca: &Ca, addr: SocketAddr, name: &str) -> Vec<u8> {
    leaf_of(&tls_connect(ca, addr, name))
}

/// `GET PATH` on a keep-alive TLS connection: the response's head
/// (lower-cased) and body.
fn get(conn: &mut TlsConn, buf: &mut Vec<u8>, path: &str) -> (String, Vec<u8>) {
    write!(conn, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    conn.flush().unwrap();
    read_response(conn, buf).unwrap()
}

// curl → TLS proxy → TLS origin: both hops keep their connection (the
// origin's `/conn` counts requests on the upstream connection; curl reuses
// its own), and the origin sees `X-Forwarded-Proto: https`.
#[test]
fn curl_through_a_tls_proxy_to_a_tls_origin() {
    if !peer("curl") {
        return;
    }
    let ca = Ca::new("cli-proxy");
    let leaf = ca.leaf("localhost", &["localhost"], ECDSA);
    let origin = origin_tls(&leaf);
    let upstream = format!("https://localhost:{}", origin.addr("origin").port());
    let proxy = Proc::start(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--upstream-ca",
            ca.cert.to_str().unwrap(),
            "--tls-cert",
            leaf.cert.to_str().unwrap(),
            "--tls-key",
            leaf.key.to_str().unwrap(),
        ],
        1,
    );
    let base = format!("https://localhost:{}", proxy.addr("proxy").port());
    let (out, err) = curl(&[
        "-v",
        "--cacert",
        ca.cert.to_str().unwrap(),
        &format!("{base}/conn"),
        &format!("{base}/conn"),
        &format!("{base}/echo"),
    ]);
    assert!(
        out.contains("request=1") && out.contains("request=2"),
        "{out}\n{err}"
    );
    // One upstream connection served both.
    let ids: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("conn="))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{out}");
    assert_eq!(ids[0], ids[1], "{out}");
    // curl reused its TLS connection to the proxy.
    assert!(
        err.contains("Re-using existing") || err.contains("left intact"),
        "{err}"
    );
    assert_eq!(err.matches("Connected to").count(), 1, "{err}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-forwarded-proto: https"),
        "{out}"
    );
}

// Without --upstream-ca the test CA is unknown: 502, and the log says why.
#[test]
fn an_upstream_that_does_not_verify_is_a_502_with_the_reason_logged() {
    let ca = Ca::new("cli-unverified");
    let leaf = ca.leaf("localhost", &["localhost"], ECDSA);
    let origin = origin_tls(&leaf);
    let upstream = format!("https://localhost:{}", origin.addr("origin").port());
    let proxy = Proc::start(
        &["proxy", "--listen", "127.0.0.1:0", "--upstream", &upstream],
        1,
    );
    let mut s = std::net::TcpStream::connect(proxy.addr("proxy")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert!(got.starts_with("HTTP/1.1 502"), "{got}");
    let log = proxy.log_once("upstream connect failed", Duration::from_secs(5));
    let line = log
        .lines()
        .find(|l| l.contains("upstream connect failed"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("UnknownIssuer") || line.contains("certificate"),
        "{line}"
    );
}

fn refused(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    err
}

// A missing, unreadable or mismatched certificate or key: one line naming
// the file, from the flags and from a configuration file.
#[test]
fn bad_certificate_files_are_named_in_one_line() {
    let ca = Ca::new("cli-bad");
    let a = ca.leaf("a", &["localhost"], ECDSA);
    let b = ca.leaf("b", &["localhost"], ECDSA);
    let missing = ca.path("missing.pem");
    for (cert, key, named) in [
        (&missing, &a.key, &missing),
        (&a.cert, &b.key, &b.key),
        (&a.key, &a.key, &a.key),
    ] {
        let err = refused(&[
            "origin",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ]);
        assert!(
            err.starts_with(&format!("drainpipe: --tls-cert: {}", named.display())),
            "{err}"
        );
    }
    let config = ca.path("bad.toml");
    std::fs::write(
        &config,
        format!(
            "[[listener]]\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n",
            a.cert.display(),
            b.key.display()
        ),
    )
    .unwrap();
    let err = refused(&["check", "--config", config.to_str().unwrap()]);
    assert!(err.contains("listener[0].tls: "), "{err}");
    assert!(err.contains(&b.key.display().to_string()), "{err}");
    // Upstream TLS settings: a missing CA file, and settings for a group
    // with no https:// server.
    for (servers, ca, want) in [
        (
            "https://127.0.0.1:1",
            missing.display().to_string(),
            format!("upstream[0].tls_ca: {}", missing.display()),
        ),
        (
            "127.0.0.1:1",
            ca.cert.display().to_string(),
            "upstream[0].servers: tls_* settings are given but no server is https://".into(),
        ),
    ] {
        std::fs::write(
            &config,
            format!("[[upstream]]\nname = \"a\"\nservers = [\"{servers}\"]\ntls_ca = \"{ca}\"\n"),
        )
        .unwrap();
        let err = refused(&["check", "--config", config.to_str().unwrap()]);
        assert!(err.contains(&want), "{err}");
    }
}

/// A proxy whose TLS listener serves the certificate in files the test
/// replaces (`install`), with a pid file for `drainpipe reload|upgrade`.
struct Renewable {
    ca: Ca,
    /// The files the listener is configured with.
    live: Leaf,
    /// Where the listener is: the same address across hand-offs.
    listen: SocketAddr,
    config: PathBuf,
    pid_file: PathBuf,
    /// The first process (the successors are killed by `scratch`).
    first: Option<Proc>,
    _origin: Proc,
    scratch: Scratch,
}

impl Renewable {
    /// Serves `leaf` through a proxy in front of a built-in origin; after a
    /// hand-off the old process keeps accepting for `drain_delay`.
    fn start(test: &str, ca: Ca, leaf: &Leaf, drain_delay: &str) -> Renewable {
        let scratch = Scratch::new(test);
        let live = Leaf {
            cert: scratch.path("live.pem"),
            key: scratch.path("live.key"),
        };
        let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (config, pid_file) = (scratch.path("p.toml"), scratch.path("p.pid"));
        std::fs::write(
            &config,
            format!(
                "[[listener]]\nlisten = \"{listen}\"\ntls = [{{ cert = \"{}\", key = \"{}\" }}]\n\n\
[[upstream]]\nname = \"o\"\nservers = [\"{}\"]\n\n[[route]]\npath = \"/\"\nupstream = \"o\"\n\n\
[drain]\ndelay = \"{drain_delay}\"\nspread = \"0s\"\n",
                live.cert.display(),
                live.key.display(),
                origin.addr("origin"),
            ),
        )
        .unwrap();
        let mut r = Renewable {
            ca,
            live,
            listen,
            config,
            pid_file,
            first: None,
            _origin: origin,
            scratch,
        };
        r.install(leaf);
        let first = Proc::start(
            &[
                "proxy",
                "--config",
                r.config.to_str().unwrap(),
                "--pid-file",
                r.pid_file.to_str().unwrap(),
            ],
            1,
        );
        r.scratch.kill.push(first.pid());
        r.first = Some(first);
        r
    }

    /// Copies `leaf`'s files over the live ones.
    fn install(&self, leaf: &Leaf) {
        std::fs::copy(&leaf.cert, &self.live.cert).unwrap();
        std::fs::copy(&leaf.key, &self.live.key).unwrap();
    }

    /// The leaf a new connection is presented, as DER.
    fn served(&self) -> Vec<u8> {
        presented(&self.ca, self.listen, "localhost")
    }

    /// `drainpipe VERB` for the running process; once it succeeded, the
    /// successor the pid file names is killed at the end of the test.
    fn hand_off(&mut self, verb: &str) -> (Option<i32>, String) {
        let (code, err) = control(verb, &self.pid_file);
        if code == Some(0) {
            self.scratch.kill.push(pid_in(&self.pid_file));
        }
        (code, err)
    }

    /// Waits for the first process to exit once its drain is over: from
    /// then on every new connection meets the successor.
    fn first_exits(&mut self) {
        let first = self.first.as_mut().unwrap();
        assert!(first.wait_exit(Duration::from_secs(15)).success());
    }
}

// Reload re-reads the certificate files: a renewed certificate is served
// by the successor; a broken one is refused (named) and the old process
// goes on serving the certificate it had.
#[test]
fn reload_rereads_the_certificates() {
    let ca = Ca::new("cli-reload");
    let first = ca.leaf("first", &["localhost"], ECDSA);
    let renewed = ca.leaf("renewed", &["localhost"], ECDSA);
    let mut proxy = Renewable::start("tls-reload", ca, &first, "100ms");
    let before = proxy.served();

    // A broken key: refused, named; the old certificate is still served.
    std::fs::write(&proxy.live.key, "not a key\n").unwrap();
    let (code, err) = proxy.hand_off("reload");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("listener[0].tls") && err.contains("live.key"),
        "{err}"
    );
    assert_eq!(proxy.served(), before);

    // A renewed certificate: the successor serves it.
    proxy.install(&renewed);
    let (code, err) = proxy.hand_off("reload");
    assert_eq!(code, Some(0), "{err}");
    proxy.first_exits();
    let after = proxy.served();
    assert_ne!(after, before, "the renewed certificate is served");
}

// An upgrade (SIGUSR2: a successor takes the listening sockets) re-reads the
// certificate files too: once the successor serves, a new connection is
// presented the renewed certificate. A keep-alive connection opened before
// goes on: the old process answers its next request (with `Connection:
// close`, it is draining) and then closes it with close_notify.
#[test]
fn upgrade_rereads_the_certificates() {
    let ca = Ca::new("cli-upgrade");
    let first = ca.leaf("first", &["localhost"], ECDSA);
    let renewed = ca.leaf("renewed", &["localhost"], ECDSA);
    let mut proxy = Renewable::start("tls-upgrade", ca, &first, "3s");
    let mut kept = tls_connect(&proxy.ca, proxy.listen, "localhost");
    let mut buf = Vec::new();
    let (head, body) = get(&mut kept, &mut buf, "/");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(body, b"Hello, World!");
    let before = leaf_of(&kept);
    assert_eq!(proxy.served(), before);

    proxy.install(&renewed);
    let (code, err) = proxy.hand_off("upgrade");
    assert_eq!(code, Some(0), "{err}");
    // `upgrade` returned once the successor served.
    let successor = pid_in(&proxy.pid_file);
    assert_ne!(successor, proxy.first.as_ref().unwrap().pid());

    // The connection opened before: still served, then closed cleanly.
    let (head, body) = get(&mut kept, &mut buf, "/");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body, b"Hello, World!");
    let mut rest = Vec::new();
    let end = kept.read_to_end(&mut rest);
    assert!(
        matches!(end, Ok(0)),
        "close_notify, then the end: {end:?} {rest:?}"
    );

    proxy.first_exits();
    let after = proxy.served();
    assert_ne!(after, before, "the renewed certificate is served");
    let mut fresh = tls_connect(&proxy.ca, proxy.listen, "localhost");
    assert_eq!(leaf_of(&fresh), after);
    let (head, body) = get(&mut fresh, &mut buf, "/");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"Hello, World!");
}

fn bench(args: &[&str]) -> String {
    let out = Command::new(BIN).arg("bench").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

// `bench https://…` with --ca: serial connections resume the first one's
// session; with --no-resumption every handshake is full; --insecure
// accepts a certificate no root vouches for.
#[test]
fn bench_reports_full_and_resumed_handshakes() {
    let ca = Ca::new("cli-bench");
    let leaf = ca.leaf("localhost", &["localhost"], ECDSA);
    let origin = origin_tls(&leaf);
    let url = format!("https://localhost:{}/", origin.addr("origin").port());
    let ca_file = ca.cert.to_str().unwrap();
    let serial = ["--strategy", "serial", "-n", "20"];
    let out = bench(&[&[url.as_str(), "--ca", ca_file][..], &serial].concat());
    assert!(
        out.contains("serial: TLS handshakes 1 full, 19 resumed"),
        "{out}"
    );
    let out = bench(
        &[
            &[url.as_str(), "--ca", ca_file, "--no-resumption"][..],
            &serial,
        ]
        .concat(),
    );
    assert!(
        out.contains("serial: TLS handshakes 20 full, 0 resumed"),
        "{out}"
    );
    let out = bench(&[&[url.as_str(), "--insecure", "--json"][..], &serial].concat());
    assert!(
        out.contains(r#""tls_handshakes":{"full":1,"resumed":19}"#),
        "{out}"
    );
    // Without --ca the test CA is unknown: the bench says so and fails.
    let out = Command::new(BIN)
        .args(["bench", &url, "-n", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid peer certificate"), "{err}");
}

// A cleartext client on a TLS port: closed, logged at debug (and not above),
// and a TLS client right after it is served.
#[test]
fn a_cleartext_client_is_logged_at_debug_and_closed() {
    let ca = Ca::new("cli-cleartext");
    let leaf = ca.leaf("localhost", &["localhost"], ECDSA);
    let mut cmd = Command::new(BIN);
    cmd.env("RUST_LOG", "debug").args([
        "origin",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        leaf.cert.to_str().unwrap(),
        "--tls-key",
        leaf.key.to_str().unwrap(),
    ]);
    let origin = Proc::spawn(cmd, 1);
    let addr = origin.addr("origin");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(!got.starts_with(b"HTTP/"), "{got:?}");
    let log = origin.log_once("TLS handshake failed", Duration::from_secs(5));
    let line = log
        .lines()
        .find(|l| l.contains("TLS handshake failed"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("DEBUG"), "{line}");
    // A TLS client right after it is served.
    assert!(!presented(&ca, addr, "localhost").is_empty());
}
