//! The admin listener: `/healthz`, `/ready` (503 once draining), `/metrics`,
//! and the live `/status` page rendered by headless Chromium after known
//! traffic: the numbers it shows match `/metrics`, and a screenshot is saved
//! among the test's outputs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

mod common;

use common::{peer, read_response, Proc};

/// One request on `s` (keep-alive unless `close`); returns status and body.
fn request(s: &mut TcpStream, path: &str, close: bool) -> (u16, String) {
    let connection = if close { "Connection: close\r\n" } else { "" };
    write!(s, "GET {path} HTTP/1.1\r\nHost: a\r\n{connection}\r\n").unwrap();
    let (head, body) = read_response(s, &mut Vec::new()).expect("a whole response");
    (
        head[9..12].parse().unwrap(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    request(&mut s, path, true)
}

/// The value of a metric line (exact name and labels).
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .trim()
        .parse::<f64>()
        .unwrap() as u64
}

/// The text of the element with `id` in a dumped DOM.
fn element(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let start = at + dom[at..].find('>').unwrap() + 1;
    dom[start..start + dom[start..].find('<').unwrap()].to_string()
}

fn chromium(args: &[&str]) -> std::process::Output {
    let profile = std::env::temp_dir().join(format!("drainpipe-chromium-{}", std::process::id()));
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=4000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args);
    let out = cmd.output().expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    out
}

#[test]
fn admin_endpoints_and_the_live_status_page() {
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let upstream = origin.addr("origin").to_string();
    let proxy = Proc::start(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--admin",
            "127.0.0.1:0",
        ],
        2,
    );
    let (proxy_addr, admin) = (proxy.addr("proxy"), proxy.addr("admin"));
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(admin, "/ready"), (200, "ready\n".into()));

    // Known traffic: 4 requests on one connection, 3 on another (the last
    // closing it).
    let mut a = TcpStream::connect(proxy_addr).unwrap();
    for _ in 0..4 {
        assert_eq!(request(&mut a, "/", false).0, 200);
    }
    let mut b = TcpStream::connect(proxy_addr).unwrap();
    for i in 0..3 {
        assert_eq!(request(&mut b, "/", i == 2).0, 200);
    }
    // The server lingers until the client closes its side too.
    drop(b);
    std::thread::sleep(Duration::from_millis(200));

    let (status, metrics) = get(admin, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        metric(&metrics, "drainpipe_requests_total{listener=\"proxy\"}"),
        7
    );
    assert_eq!(
        metric(
            &metrics,
            "drainpipe_connections_accepted_total{listener=\"proxy\"}"
        ),
        2
    );
    assert_eq!(
        metric(&metrics, "drainpipe_connections_open{listener=\"proxy\"}"),
        1
    );
    assert_eq!(
        metric(
            &metrics,
            "drainpipe_connections_closed_total{listener=\"proxy\",reason=\"keep_alive_end\"}"
        ),
        1
    );
    assert_eq!(metric(&metrics, "drainpipe_ready"), 1);
    let opened = metric(
        &metrics,
        "drainpipe_upstream_connections_opened_total{proxy=\"proxy\"}",
    );
    let reused = metric(
        &metrics,
        "drainpipe_upstream_requests_reused_total{proxy=\"proxy\"}",
    );
    assert_eq!(opened + reused, 7, "every proxied request counted once");

    if peer("chromium") {
        let url = format!("http://{admin}/status");
        let out = chromium(&["--dump-dom", &url]);
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(element(&dom, "ready"), "ready");
        assert_eq!(element(&dom, "proxy-requests"), "7");
        assert_eq!(element(&dom, "proxy-accepted"), "2");
        assert_eq!(element(&dom, "proxy-open"), "1");
        assert_eq!(element(&dom, "proxy-per-connection"), "3.50");
        assert_eq!(element(&dom, "proxy-closed-keep_alive_end"), "1");
        assert_eq!(element(&dom, "proxy-opened"), opened.to_string());
        assert_eq!(element(&dom, "proxy-reused"), reused.to_string());
        let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-status.png");
        let _ = std::fs::remove_file(&screenshot);
        chromium(&[
            "--window-size=1280,800",
            &format!("--screenshot={}", screenshot.display()),
            &url,
        ]);
        let png = std::fs::read(&screenshot).expect("a screenshot was written");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{} bytes",
            png.len()
        );
        eprintln!("status page screenshot: {}", screenshot.display());
    }

    // SIGTERM: readiness turns 503 at once while the drain runs. A slow request
    // in flight keeps the drain (and so the admin listener, which closes last)
    // going while readiness is checked.
    write!(a, "GET /delay/1500 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let _ = Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(get(admin, "/ready"), (503, "draining\n".into()));
    let (_, metrics) = get(admin, "/metrics");
    assert_eq!(metric(&metrics, "drainpipe_ready"), 0);
    // The slow request still completes, told to close.
    let mut rest = String::new();
    a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    a.read_to_string(&mut rest).unwrap();
    assert!(
        rest.contains("\r\nconnection: close\r\n") && rest.ends_with("Hello, World!"),
        "{rest}"
    );
}

// The access log: off by default, one flag turns it on; one line per request
// with the connection id and the request's number on it.
#[test]
fn access_log_names_connection_and_request_number() {
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let upstream = origin.addr("origin").to_string();
    let mut proxy = Proc::start(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--access-log",
        ],
        1,
    );
    let mut s = TcpStream::connect(proxy.addr("proxy")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(request(&mut s, "/conn", false).0, 200);
    assert_eq!(request(&mut s, "/status/404", true).0, 404);
    std::thread::sleep(Duration::from_millis(200));
    let err = proxy.kill_for_log();
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("drainpipe::access"))
        .collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("conn=1 request=1")
            && lines[0].contains("target=/conn")
            && lines[0].contains("status=200"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("conn=1 request=2") && lines[1].contains("status=404"),
        "{}",
        lines[1]
    );
}
