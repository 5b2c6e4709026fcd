//! The binary's drain phases on the listening socket: accepting (with
//! `Connection: close`) for `[drain] delay`, then closed in the whole process,
//! so a new client is refused at once instead of queued and reset at exit.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{read_response, write_proxy_config, Proc};

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

// The repro: a proxy with a slow request in flight gets SIGTERM. During
// `[drain] delay` a new client is still served (told to close); once the delay
// is over, connecting is refused at once; the request in flight completes with
// `Connection: close`, and the process exits.
#[test]
fn after_the_drain_delay_new_clients_are_refused_at_once() {
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let upstream = origin.addr("origin");
    let dir = std::env::temp_dir().join(format!("drainpipe-drain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("proxy.toml");
    write_proxy_config(
        &config,
        upstream,
        "[drain]\ndelay = \"500ms\"\ntimeout = \"10s\"\n",
    );
    let mut proxy = Proc::start(&["proxy", "--config", config.to_str().unwrap()], 1);
    let addr = proxy.addr("proxy");

    let mut busy = connect(addr).unwrap();
    write!(busy, "GET /delay/1500 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let term = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    // Within the delay: still accepting, every response says close.
    std::thread::sleep(Duration::from_millis(150));
    let mut during = connect(addr).expect("accepting during the drain delay");
    write!(during, "GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut during, &mut Vec::new()).unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert_eq!(body, b"Hello, World!");
    assert!(
        term.elapsed() < Duration::from_millis(500),
        "the check during the delay came too late ({:?})",
        term.elapsed()
    );

    // After the delay: refused at once.
    std::thread::sleep(
        Duration::from_millis(500).saturating_sub(term.elapsed()) + Duration::from_millis(300),
    );
    let tried = Instant::now();
    match connect(addr) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}"),
        Ok(mut s) => {
            // The old behaviour: queued by the kernel, then left hanging.
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let got = s.read(&mut [0u8; 256]);
            panic!("a connection was accepted by the kernel during the drain (then {got:?})");
        }
    }
    let refused_in = tried.elapsed();
    eprintln!("connect during the drain refused in {refused_in:?}");
    assert!(refused_in < Duration::from_millis(100), "{refused_in:?}");

    // The request in flight completes, told to close.
    let (head, body) = read_response(&mut busy, &mut Vec::new()).unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert_eq!(body, b"Hello, World!");
    let exited = proxy.wait_exit(Duration::from_secs(5));
    assert!(exited.success(), "{exited:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
