//! The `drainpipe origin` process: SIGTERM drains, bad flags get one line, and a
//! low file-descriptor limit makes accept back off without spinning while the
//! connections already open keep being served.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{read_response, Proc, BIN};

/// `drainpipe origin` on 127.0.0.1:0 with `extra` flags, through `wrapper`
/// (e.g. prlimit).
fn origin(wrapper: &[&str], extra: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args(["origin", "--listen", "127.0.0.1:0"]).args(extra);
    let p = Proc::spawn(cmd, 1);
    let addr = p.addr("origin");
    (p, addr)
}

/// CPU time (user + system) `p` used so far, in clock ticks.
fn cpu_ticks(p: &Proc) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.pid())).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads one response with a Content-Length body; returns its head and body.
fn response(s: &mut TcpStream) -> (String, String) {
    let (head, body) = read_response(s, &mut Vec::new()).expect("a whole response");
    (head, String::from_utf8_lossy(&body).into_owned())
}

fn get(s: &mut TcpStream, path: &str) -> (String, String) {
    write!(s, "GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    response(s)
}

#[test]
fn sighup_and_sigusr2_are_logged_and_ignored() {
    let (p, addr) = origin(&[], &[]);
    let mut conn = connect(addr);
    assert_eq!(get(&mut conn, "/").1, "Hello, World!");
    for sig in ["-HUP", "-USR2"] {
        assert!(Command::new("kill")
            .args([sig, &p.pid().to_string()])
            .status()
            .unwrap()
            .success());
    }
    let log = p.log_once("SIGUSR2", Duration::from_secs(5));
    assert!(
        log.contains("SIGHUP: nothing to reload") && log.contains("SIGUSR2"),
        "{log}"
    );
    // Same process, same connection.
    assert_eq!(get(&mut conn, "/").1, "Hello, World!");
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits() {
    let (mut p, addr) = origin(&[], &["--drain-timeout", "5"]);
    let mut busy = connect(addr);
    write!(busy, "GET /delay/500 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut idle = connect(addr);
    assert_eq!(get(&mut idle, "/").1, "Hello, World!");
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &p.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (head, body) = response(&mut busy);
    assert_eq!(body, "Hello, World!");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    let status = p.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The idle connection was closed at once, without a response.
    let mut rest = Vec::new();
    assert_eq!(idle.read_to_end(&mut rest).unwrap_or(0), 0);
    let stderr = p.log_once("drained", Duration::from_secs(5));
    assert!(
        stderr.contains("drained") && stderr.contains("clean=2"),
        "{stderr}"
    );
}

#[test]
fn bad_flag_or_value_is_one_line_naming_it() {
    for (args, names) in [
        (&["--bogus"][..], "--bogus"),
        (&["origin", "--listen", "nope"][..], "--listen"),
        (&["origin", "--drain-timeout", "x"][..], "--drain-timeout"),
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(names), "{err}");
        assert!(err.starts_with("drainpipe: "), "{err}");
    }
    // A port already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["origin", "--listen", &addr])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

// With a low fd limit, accept fails with EMFILE: the server keeps serving the
// connections it has, backs off instead of spinning, and recovers.
#[test]
fn fd_exhaustion_backs_off_and_recovers() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        if std::env::var("DRAINPIPE_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("prlimit (util-linux) is required");
        }
        eprintln!("SKIPPED: prlimit is not installed");
        return;
    }
    let (p, addr) = origin(&["prlimit", "--nofile=48:48"], &[]);
    let mut first = connect(addr);
    assert_eq!(get(&mut first, "/").1, "Hello, World!");
    // Open far more connections than the server has descriptors for.
    let mut extra: Vec<TcpStream> = (0..80).map(|_| connect(addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(&p);
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(&p) - before;
    // Clock ticks are 1/100 s: a busy loop would burn ~200 in 2 s.
    assert!(spent < 30, "accept spun: {spent} ticks in 2 s");
    // The connection it already had is still served.
    assert_eq!(get(&mut first, "/").1, "Hello, World!");
    // Free the descriptors: the waiting connections get served.
    extra.truncate(10);
    drop(extra);
    std::thread::sleep(Duration::from_millis(100));
    let mut later = connect(addr);
    later
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(get(&mut later, "/").1, "Hello, World!");
}
