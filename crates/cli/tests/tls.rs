//! TLS as an operator uses it: `--tls-cert/--tls-key` on `origin` and
//! `proxy`, `https://` upstreams with `--upstream-ca`, `[[listener]] tls`
//! re-read on reload (a broken certificate refused, the old one kept), bad
//! files named in one line, an upstream that does not verify → 502 with the
//! reason in the log.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[path = "../../drainpipe/tests/support/certs.rs"]
mod certs;
mod common;

use certs::{Ca, Leaf, ECDSA};
use common::{curl, peer, Proc, Scratch, BIN};

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

/// The certificate the TLS listener at `addr` presents for `name`, as DER.
async fn presented(ca: &Ca, addr: SocketAddr, name: &str) -> Vec<u8> {
    let tls = drainpipe::tls::ClientTls::builder()
        .ca_file(&ca.cert)
        .build()
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = tokio::time::timeout(Duration::from_secs(5), tls.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
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

fn listener_config(listen: &str, origin: SocketAddr, leaf: &Leaf) -> String {
    format!(
        "[[listener]]\nlisten = \"{listen}\"\ntls = [{{ cert = \"{}\", key = \"{}\" }}]\n\n\
[[upstream]]\nname = \"o\"\nservers = [\"{origin}\"]\n\n[[route]]\npath = \"/\"\nupstream = \"o\"\n\n\
[drain]\ndelay = \"100ms\"\nspread = \"0s\"\n",
        leaf.cert.display(),
        leaf.key.display()
    )
}

fn reload(pid_file: &Path) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(["reload", "--pid-file", pid_file.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// Reload re-reads the certificate files: a renewed certificate is served
// by the successor; a broken one is refused (named) and the old process
// goes on serving the certificate it had.
#[test]
fn reload_rereads_the_certificates() {
    let mut scratch = Scratch::new("tls-reload");
    let ca = Ca::new("cli-reload");
    let first = ca.leaf("first", &["localhost"], ECDSA);
    let renewed = ca.leaf("renewed", &["localhost"], ECDSA);
    let live = Leaf {
        cert: scratch.path("live.pem"),
        key: scratch.path("live.key"),
    };
    let install = |leaf: &Leaf| {
        std::fs::copy(&leaf.cert, &live.cert).unwrap();
        std::fs::copy(&leaf.key, &live.key).unwrap();
    };
    install(&first);
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (config, pid_file) = (scratch.path("p.toml"), scratch.path("p.pid"));
    std::fs::write(
        &config,
        listener_config(&listen.to_string(), origin.addr("origin"), &live),
    )
    .unwrap();
    let mut old = Proc::start(
        &[
            "proxy",
            "--config",
            config.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
        1,
    );
    scratch.kill.push(old.pid());
    let rt = runtime();
    let served = || rt.block_on(presented(&ca, listen, "localhost"));
    let before = served();

    // A broken key: refused, named; the old certificate is still served.
    std::fs::write(&live.key, "not a key\n").unwrap();
    let (code, err) = reload(&pid_file);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("listener[0].tls") && err.contains("live.key"),
        "{err}"
    );
    assert_eq!(served(), before);

    // A renewed certificate: the successor serves it.
    install(&renewed);
    let (code, err) = reload(&pid_file);
    assert_eq!(code, Some(0), "{err}");
    let successor: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    scratch.kill.push(successor);
    // The old process accepts during its drain delay too: once it is gone,
    // every connection meets the successor.
    assert!(old.wait_exit(Duration::from_secs(10)).success());
    let after = served();
    assert_ne!(after, before, "the renewed certificate is served");
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
    assert!(!runtime()
        .block_on(presented(&ca, addr, "localhost"))
        .is_empty());
}
