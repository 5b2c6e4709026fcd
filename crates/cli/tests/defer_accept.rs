//! Deferred accepts (`server.defer_accept`, on by default): the process sees
//! a new TCP connection only once its first bytes have arrived, so a client
//! that connects and says nothing costs it nothing for about a second (the
//! kernel holds it), after which it is accepted and closed by the head
//! timeout like any other. Turned off, a connection is accepted at once; a
//! reload that turns it off applies to the sockets the successor takes over.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

mod common;

use common::{control, pid_in, read_response, Proc, Scratch};

/// A proxy listener in front of `origin`, an admin listener, a head timeout
/// of 300 ms, and `defer` as `server.defer_accept` (absent: the default).
fn config(origin: SocketAddr, defer: Option<bool>) -> String {
    let defer = defer.map_or(String::new(), |on| format!("defer_accept = {on}\n"));
    format!(
        "[[listener]]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
[[upstream]]\nname = \"o\"\nservers = [\"{origin}\"]\n\n[[route]]\npath = \"/\"\nupstream = \"o\"\n\n\
[server]\nhead_timeout = \"300ms\"\n{defer}\n[drain]\ndelay = \"0s\"\nspread = \"0s\"\n"
    )
}

/// How many connections the proxy listener has accepted, from `/metrics`.
fn accepted(admin: SocketAddr) -> u64 {
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (_, body) = read_response(&mut s, &mut Vec::new()).unwrap();
    let text = String::from_utf8(body).unwrap();
    let series = "drainpipe_connections_accepted_total{listener=\"proxy\"} ";
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Polls [`accepted`] until it is `n`, for at most `within`; how long it took.
fn accepted_within(admin: SocketAddr, n: u64, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if accepted(admin) == n {
            return Some(start.elapsed());
        }
        if start.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A connection that never sends anything: how long until the server closed
/// it (EOF), at most 8 s.
fn silent_until_closed(addr: SocketAddr) -> Duration {
    let mut s = TcpStream::connect(addr).unwrap();
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(0) => start.elapsed(),
        other => panic!(
            "a silent connection got {other:?} after {:?}",
            start.elapsed()
        ),
    }
}

fn hello(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let (head, body) = read_response(s, &mut Vec::new()).unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    String::from_utf8(body).unwrap()
}

#[test]
fn by_default_a_connection_is_accepted_once_it_speaks() {
    let scratch = Scratch::new("defer-on");
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let file = scratch.path("p.toml");
    std::fs::write(&file, config(origin.addr("origin"), None)).unwrap();
    let proxy = Proc::start(&["proxy", "--config", file.to_str().unwrap()], 2);
    let (addr, admin) = (proxy.addr("proxy"), proxy.addr("admin"));

    // Connected (the handshake is done) but silent: not accepted yet.
    let mut quiet = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(accepted(admin), 0);
    // Its request makes it accepted, and served on that connection.
    assert_eq!(hello(&mut quiet), "Hello, World!");
    assert_eq!(accepted(admin), 1);
    assert_eq!(hello(&mut quiet), "Hello, World!");
    assert_eq!(accepted(admin), 1, "the same connection served both");

    // A client that never speaks is still closed: held by the kernel for
    // about a second (its SYN-ACK retransmission), then accepted and closed
    // by the 300 ms head timeout.
    let took = silent_until_closed(addr);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert_eq!(accepted(admin), 2);
}

#[test]
fn turned_off_a_silent_connection_is_accepted_at_once() {
    let scratch = Scratch::new("defer-off");
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let file = scratch.path("p.toml");
    std::fs::write(&file, config(origin.addr("origin"), Some(false))).unwrap();
    let proxy = Proc::start(&["proxy", "--config", file.to_str().unwrap()], 2);
    let (addr, admin) = (proxy.addr("proxy"), proxy.addr("admin"));

    let mut quiet = TcpStream::connect(addr).unwrap();
    let took = accepted_within(admin, 1, Duration::from_secs(5)).expect("accepted");
    assert!(took < Duration::from_millis(800), "{took:?}");
    assert_eq!(hello(&mut quiet), "Hello, World!");

    // Only the head timeout holds a silent client now.
    let took = silent_until_closed(addr);
    assert!(took < Duration::from_millis(900), "{took:?}");
}

#[test]
fn a_reload_that_turns_it_off_applies_to_the_sockets_taken_over() {
    let mut scratch = Scratch::new("defer-reload");
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let (file, pid_file) = (scratch.path("p.toml"), scratch.path("p.pid"));
    std::fs::write(&file, config(origin.addr("origin"), Some(true))).unwrap();
    let old = Proc::start(
        &[
            "proxy",
            "--config",
            file.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
        2,
    );
    scratch.kill.push(old.pid());
    let addr = old.addr("proxy");

    std::fs::write(&file, config(origin.addr("origin"), Some(false))).unwrap();
    let (code, err) = control("reload", &pid_file);
    assert_eq!(code, Some(0), "{err}");
    let successor = pid_in(&pid_file);
    scratch.kill.push(successor);
    assert_ne!(successor, old.pid());
    // The successor prints its addresses to the first process's stdout: the
    // same proxy port (taken over), a new admin port.
    let admin = (0..2)
        .filter_map(|_| old.next_line())
        .find(|l| l.contains("admin"))
        .map(|l| common::address_in(&l))
        .expect("the successor's admin address");
    assert_eq!(
        hello(&mut TcpStream::connect(addr).unwrap()),
        "Hello, World!"
    );
    let before = accepted(admin);

    // A silent client on the inherited socket is accepted at once now.
    let _quiet = TcpStream::connect(addr).unwrap();
    let took = accepted_within(admin, before + 1, Duration::from_secs(5)).expect("accepted");
    assert!(took < Duration::from_millis(800), "{took:?}");
}
