//! Upstreams named by host follow DNS (issue 15): `drainpipe proxy` with a
//! group `servers = ["app.test:PORT"]` and `[resolver] nameservers` pointing
//! at a small DNS server this test runs on 127.0.0.1. Every A record is a
//! server; records that appear are used within the resolve interval, records
//! that disappear take no new request and their idle connections close.
//! The servers listen on loopback addresses (127.0.0.1 and 127.0.0.2: two
//! addresses for one port, as two pods behind one name have).

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{read_response, Proc, BIN};

/// A DNS server answering A queries for any name with `records` (TTL 0),
/// AAAA and others with no answer. Returns its address.
fn dns_server(records: Arc<Mutex<Vec<Ipv4Addr>>>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let query = &buf[..n];
            if n < 12 {
                continue;
            }
            // The question: labels up to a zero byte, then type and class.
            let mut i = 12;
            while i < n && query[i] != 0 {
                i += 1 + query[i] as usize;
            }
            let question_end = i + 5;
            if question_end > n {
                continue;
            }
            let qtype = u16::from_be_bytes([query[i + 1], query[i + 2]]);
            let answers: Vec<Ipv4Addr> = if qtype == 1 {
                records.lock().unwrap().clone()
            } else {
                Vec::new()
            };
            let mut res = Vec::with_capacity(512);
            res.extend_from_slice(&query[..2]); // id
            res.extend_from_slice(&[0x81, 0x80]); // response, RD, RA, NOERROR
            res.extend_from_slice(&[0, 1]); // one question
            res.extend_from_slice(&(answers.len() as u16).to_be_bytes());
            res.extend_from_slice(&[0, 0, 0, 0]); // no authority, no additional
            res.extend_from_slice(&query[12..question_end]);
            for ip in answers {
                res.extend_from_slice(&[0xc0, 0x0c]); // the question's name
                res.extend_from_slice(&[0, 1, 0, 1]); // A, IN
                res.extend_from_slice(&[0, 0, 0, 0]); // TTL 0
                res.extend_from_slice(&[0, 4]);
                res.extend_from_slice(&ip.octets());
            }
            let _ = socket.send_to(&res, from);
        }
    });
    addr
}

/// An HTTP/1.1 server on `ip:port` answering every request with `name`,
/// keeping connections open; counts the connections open now.
fn named_server(ip: Ipv4Addr, port: u16, name: &'static str) -> Option<Arc<AtomicUsize>> {
    let listener = TcpListener::bind((ip, port)).ok()?;
    let open = Arc::new(AtomicUsize::new(0));
    let counter = open.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let counter = counter.clone();
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let res = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                            name.len()
                        );
                        if s.write_all(res.as_bytes()).is_err() {
                            break;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Some(open)
}

/// Two servers on one port: 127.0.0.1 ("a") and 127.0.0.2 ("b").
fn two_servers() -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    for _ in 0..20 {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let Some(a) = named_server(Ipv4Addr::new(127, 0, 0, 1), port, "a") else {
            continue;
        };
        if let Some(b) = named_server(Ipv4Addr::new(127, 0, 0, 2), port, "b") {
            return (port, a, b);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

fn config(dns: SocketAddr, port: u16, lazy: bool) -> String {
    format!(
        "[[listener]]\nlisten = \"127.0.0.1:0\"\n\n\
         [resolver]\nnameservers = [\"{dns}\"]\n\n\
         [[upstream]]\nname = \"app\"\nservers = [\"app.test:{port}\"]\n\
         resolve_interval = \"200ms\"\nlazy = {lazy}\n\n\
         [[route]]\npath = \"/\"\nupstream = \"app\"\n"
    )
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("drainpipe-dns-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("proxy.toml")
}

/// Who answers `n` requests sent on one client connection.
fn answers(proxy: SocketAddr, n: usize) -> Vec<String> {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    (0..n)
        .map(|_| {
            s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
                .unwrap();
            let (head, body) = read_response(&mut s, &mut buf).unwrap();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            String::from_utf8(body).unwrap()
        })
        .collect()
}

/// Polls until `cond` holds, for at most 5 s.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_group_follows_its_name_in_dns() {
    let records = Arc::new(Mutex::new(vec![Ipv4Addr::new(127, 0, 0, 1)]));
    let dns = dns_server(records.clone());
    let (port, open_a, open_b) = two_servers();
    let file = scratch("follow");
    std::fs::write(&file, config(dns, port, false)).unwrap();
    let p = Proc::start(&["proxy", "--config", file.to_str().unwrap()], 1);
    let proxy = p.addr("proxy");

    assert_eq!(answers(proxy, 4), ["a"; 4], "one address, one server");

    // A second pod appears: both take requests (round robin).
    records.lock().unwrap().push(Ipv4Addr::new(127, 0, 0, 2));
    assert!(
        eventually(|| {
            let got = answers(proxy, 4);
            got.contains(&"a".to_string()) && got.contains(&"b".to_string())
        }),
        "the new address became a server: {}",
        p.log()
    );

    // The first one goes: no new request reaches it, and its idle pooled
    // connection is closed.
    *records.lock().unwrap() = vec![Ipv4Addr::new(127, 0, 0, 2)];
    assert!(
        eventually(|| answers(proxy, 4) == ["b"; 4]),
        "only the remaining address serves: {}",
        p.log()
    );
    assert!(
        eventually(|| open_a.load(Ordering::SeqCst) == 0),
        "the removed server's pooled connections closed"
    );
    assert!(open_b.load(Ordering::SeqCst) >= 1);
    let log = p.log();
    assert!(log.contains("server added"), "{log}");
    assert!(log.contains("server removed"), "{log}");

    // The name stops resolving: the servers known are kept.
    records.lock().unwrap().clear();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(answers(proxy, 2), ["b"; 2]);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

#[test]
fn a_name_that_does_not_resolve_at_start_is_an_error_unless_lazy() {
    let records = Arc::new(Mutex::new(Vec::new()));
    let dns = dns_server(records.clone());
    let file = scratch("start");
    std::fs::write(&file, config(dns, 9, false)).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["proxy", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("drainpipe: upstream \"app\": app.test"),
        "{err}"
    );

    // Lazy: it starts, answers 502 until the name resolves, then serves.
    let (port, _a, _b) = two_servers();
    std::fs::write(&file, config(dns, port, true)).unwrap();
    let p = Proc::start(&["proxy", "--config", file.to_str().unwrap()], 1);
    let proxy = p.addr("proxy");
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut s, &mut Vec::new()).unwrap();
    assert!(head.starts_with("http/1.1 502"), "{head}");
    records.lock().unwrap().push(Ipv4Addr::new(127, 0, 0, 1));
    assert!(eventually(|| {
        let mut s = TcpStream::connect(proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .unwrap();
        let (head, body) = read_response(&mut s, &mut Vec::new()).unwrap();
        head.starts_with("http/1.1 200") && body == b"a"
    }));
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}
