//! Unix sockets from the command line and the config file: `--listen
//! unix:/PATH` for the origin, a proxy listening on one in front of an
//! upstream on another (`unix:/PATH` server), the socket file's mode, a stale
//! file replaced at start, a live one refused, the file removed on exit but
//! not when an upgrade hands it to a successor.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{Proc, Scratch, BIN};

/// Sends `req` on `s` and reads one response with a `Content-Length` body.
fn exchange(s: &mut UnixStream, req: &str) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if got.len() >= end + 4 + len {
                return String::from_utf8(got).unwrap();
            }
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "EOF inside a response: {got:?}");
        got.extend_from_slice(&chunk[..n]);
    }
}

fn body(res: &str) -> &str {
    res.split_once("\r\n\r\n").unwrap().1
}

/// The origin's `/conn` answer: the connection's id and the request's
/// number on it (the id depends on which worker took the connection on the
/// shared Unix socket: the kernel's pick).
fn conn(res: &str) -> (u64, u32) {
    let body = body(res);
    let field = |name: &str| {
        body.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {body:?}"))
    };
    assert!(body.contains(" worker="), "{body:?}");
    (
        field("conn=").parse().unwrap(),
        field("request=").parse().unwrap(),
    )
}

fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

fn gone_within(path: &Path, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    !path.exists()
}

// `drainpipe origin --listen unix:/PATH`: a stale file (its process gone) is
// replaced; while it serves, a second process on the same path is refused
// with a one-line reason; on SIGTERM the file is removed.
#[test]
fn origin_on_a_unix_socket_replaces_a_stale_file_and_removes_it_on_exit() {
    let scratch = Scratch::new("ux-origin");
    let sock = scratch.path("o.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists(), "a stale socket file is left");
    let listen = format!("unix:{}", sock.display());

    let mut origin = Proc::start(&["origin", "--listen", &listen], 0);
    assert_eq!(
        origin.next_line().as_deref(),
        Some(format!("drainpipe origin listening on {listen}").as_str())
    );
    let mut c = UnixStream::connect(&sock).unwrap();
    let r = exchange(&mut c, "GET /conn HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    let (id, request) = conn(&r);
    assert_eq!(request, 1);
    let r = exchange(&mut c, "GET /conn HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(conn(&r), (id, 2), "kept alive");
    drop(c);

    let out = Command::new(BIN)
        .args(["origin", "--listen", &listen])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim(),
        format!("drainpipe: cannot listen on {listen}: a running process listens on it")
    );

    sigterm(origin.pid());
    assert!(origin.wait_exit(Duration::from_secs(10)).success());
    assert!(!sock.exists(), "the socket file is removed on exit");
}

/// A proxy config: its listener and the built-in origin on Unix sockets, the
/// origin its upstream, socket files made with `mode`.
fn unix_config(proxy: &Path, origin: &Path, mode: &str) -> String {
    format!(
        "[[listener]]\nlisten = \"unix:{}\"\n\n[origin]\nlisten = \"unix:{}\"\n\n\
[[upstream]]\nname = \"o\"\nservers = [\"unix:{}\"]\n\n[[route]]\nupstream = \"o\"\n\n\
[server]\nsocket_mode = \"{mode}\"\n\n[drain]\ndelay = \"100ms\"\nspread = \"0s\"\n",
        proxy.display(),
        origin.display(),
        origin.display()
    )
}

// The proxy on a Unix socket in front of an upstream on another: the files
// get the configured mode, the upstream connection is pooled and reused, no
// X-Forwarded-For entry for a client without an IP address, and both files
// are removed on exit.
#[test]
fn proxy_on_unix_to_a_unix_upstream() {
    let scratch = Scratch::new("ux-proxy");
    let (psock, osock, config) = (
        scratch.path("p.sock"),
        scratch.path("o.sock"),
        scratch.path("p.toml"),
    );
    std::fs::write(&config, unix_config(&psock, &osock, "600")).unwrap();
    let mut proxy = Proc::start(&["proxy", "--config", config.to_str().unwrap()], 0);
    let lines = [proxy.next_line().unwrap(), proxy.next_line().unwrap()];
    assert!(
        lines.contains(&format!(
            "drainpipe proxy listening on unix:{}",
            psock.display()
        )),
        "{lines:?}"
    );
    for f in [&psock, &osock] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }

    let mut c = UnixStream::connect(&psock).unwrap();
    let r1 = exchange(&mut c, "GET /conn HTTP/1.1\r\nHost: front\r\n\r\n");
    let r2 = exchange(&mut c, "GET /conn HTTP/1.1\r\nHost: front\r\n\r\n");
    let (id, request) = conn(&r1);
    assert_eq!(request, 1, "{r1}");
    assert_eq!(conn(&r2), (id, 2), "the upstream connection reused");
    let r3 = exchange(&mut c, "GET /echo HTTP/1.1\r\nHost: front\r\n\r\n");
    let echoed = body(&r3);
    assert!(echoed.contains("\nx-forwarded-proto: http\n"), "{echoed}");
    assert!(!echoed.contains("x-forwarded-for"), "{echoed}");
    drop(c);

    sigterm(proxy.pid());
    assert!(proxy.wait_exit(Duration::from_secs(10)).success());
    assert!(!psock.exists() && !osock.exists(), "both files removed");
}

// An upgrade hands the Unix listener to the successor: the old process exits
// without removing the file, the successor serves on it (same path, no
// refusal), and removes it when it exits in turn.
#[test]
fn an_upgrade_hands_the_unix_socket_over_and_keeps_its_file() {
    let mut scratch = Scratch::new("ux-upgrade");
    let (psock, osock, config, pid_file) = (
        scratch.path("p.sock"),
        scratch.path("o.sock"),
        scratch.path("p.toml"),
        scratch.path("p.pid"),
    );
    std::fs::write(&config, unix_config(&psock, &osock, "660")).unwrap();
    let mut old = Proc::start(
        &[
            "proxy",
            "--config",
            config.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
        0,
    );
    scratch.kill.push(old.pid());
    let _ = (old.next_line(), old.next_line());
    let mut c = UnixStream::connect(&psock).unwrap();
    assert_eq!(
        body(&exchange(
            &mut c,
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )),
        "Hello, World!"
    );
    drop(c);
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = inode(&psock);

    let out = Command::new(BIN)
        .args(["upgrade", "--pid-file", pid_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let successor: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    scratch.kill.push(successor);
    assert_ne!(successor, old.pid());
    assert!(old.wait_exit(Duration::from_secs(10)).success());
    assert!(
        psock.exists() && osock.exists(),
        "the files stay for the successor"
    );
    assert_eq!(inode(&psock), before, "the same socket, not a new one");
    let mut c = UnixStream::connect(&psock).unwrap();
    assert_eq!(
        body(&exchange(
            &mut c,
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )),
        "Hello, World!"
    );
    drop(c);

    sigterm(successor);
    assert!(
        gone_within(&psock, Duration::from_secs(10)),
        "removed by the successor"
    );
    assert!(gone_within(&osock, Duration::from_secs(10)));
}

// The flags take Unix sockets too: `proxy --listen unix:/P --upstream
// unix:/O --admin unix:/A` in front of `origin --listen unix:/O`.
#[test]
fn flags_take_unix_sockets_for_listeners_upstreams_and_admin() {
    let scratch = Scratch::new("ux-flags");
    let (psock, osock, asock) = (
        scratch.path("p.sock"),
        scratch.path("o.sock"),
        scratch.path("a.sock"),
    );
    let unix = |p: &Path| format!("unix:{}", p.display());
    let mut origin = Proc::start(&["origin", "--listen", &unix(&osock)], 0);
    assert!(origin.next_line().is_some());
    let mut proxy = Proc::start(
        &[
            "proxy",
            "--listen",
            &unix(&psock),
            "--upstream",
            &unix(&osock),
            "--admin",
            &unix(&asock),
        ],
        0,
    );
    let lines = [proxy.next_line().unwrap(), proxy.next_line().unwrap()];
    assert!(
        lines.contains(&format!("drainpipe admin listening on {}", unix(&asock))),
        "{lines:?}"
    );
    let mut c = UnixStream::connect(&psock).unwrap();
    let r = exchange(&mut c, "GET /conn HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(conn(&r).1, 1, "{r}");
    let mut a = UnixStream::connect(&asock).unwrap();
    let r = exchange(&mut a, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    drop((c, a));
    for p in [&proxy, &origin] {
        sigterm(p.pid());
    }
    assert!(proxy.wait_exit(Duration::from_secs(10)).success());
    assert!(origin.wait_exit(Duration::from_secs(10)).success());
    assert!(!psock.exists() && !osock.exists() && !asock.exists());
}
