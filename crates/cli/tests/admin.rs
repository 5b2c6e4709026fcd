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
    metric_f(text, series) as u64
}

/// The value of a metric line, as written.
fn metric_f(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .trim()
        .parse::<f64>()
        .unwrap()
}

/// A proxy (with its admin listener) in front of two upstream servers: the
/// origin `up`, and `down`, a port nothing listens on, found down by health
/// checks every 100 ms. Returns once `/metrics` says it is down, with the
/// socket that holds `down`'s port (keep it while the test runs).
fn proxy_with_a_server_down(up: SocketAddr) -> (Proc, SocketAddr, socket2::Socket) {
    // Bound and never listening: connections to it are refused, and no
    // other socket (the proxy's own listeners included) can take the port
    // while the test runs.
    let hold = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    hold.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let down = hold.local_addr().unwrap().as_socket().unwrap();
    let dir = std::env::temp_dir().join(format!("drainpipe-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join(format!("proxy-{}.toml", down.port()));
    std::fs::write(
        &config,
        format!(
            "[[listener]]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
[[upstream]]\nname = \"app\"\nservers = [\"{up}\", \"{down}\"]\n\n\
[upstream.health]\npath = \"/\"\ninterval = \"100ms\"\ntimeout = \"1s\"\nfall = 1\nrise = 1\n\n\
[[route]]\npath = \"/\"\nupstream = \"app\"\n"
        ),
    )
    .unwrap();
    let proxy = Proc::start(&["proxy", "--config", config.to_str().unwrap()], 2);
    let admin = proxy.addr("admin");
    let series = format!(
        "drainpipe_upstream_server_state{{proxy=\"proxy\",group=\"app\",server=\"{down}\",state=\"down\"}}"
    );
    let start = std::time::Instant::now();
    while metric(&get(admin, "/metrics").1, &series) != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{down} never down"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (proxy, down, hold)
}

// /metrics with a proxy in front of two upstream servers, one down: latency
// histograms, responses by status class per listener and per group, each
// server's state, health check, connections, requests and timings, process
// figures and build info, all as `promtool check metrics` accepts them.
#[test]
fn metrics_with_a_server_down_pass_promtool() {
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let up = origin.addr("origin");
    let (proxy, down, _hold) = proxy_with_a_server_down(up);
    let admin = proxy.addr("admin");
    let mut s = TcpStream::connect(proxy.addr("proxy")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for path in [
        "/",
        "/",
        "/status/503",
        "/",
        "/status/404",
        "/",
        "/status/503",
        "/",
        "/",
    ] {
        request(&mut s, path, false);
    }
    let (status, text) = get(admin, "/metrics");
    assert_eq!(status, 200);
    let m = |series: &str| metric(&text, series);
    let l = "listener=\"proxy\"";
    assert_eq!(
        m(&format!("drainpipe_responses_total{{{l},class=\"2xx\"}}")),
        6
    );
    assert_eq!(
        m(&format!("drainpipe_responses_total{{{l},class=\"4xx\"}}")),
        1
    );
    assert_eq!(
        m(&format!("drainpipe_responses_total{{{l},class=\"5xx\"}}")),
        2
    );
    assert_eq!(
        m(&format!("drainpipe_request_duration_seconds_count{{{l}}}")),
        9
    );
    assert_eq!(
        m(&format!(
            "drainpipe_request_duration_seconds_bucket{{{l},le=\"+Inf\"}}"
        )),
        9
    );
    // Every request answered locally within a second.
    assert_eq!(
        m(&format!(
            "drainpipe_request_duration_seconds_bucket{{{l},le=\"1\"}}"
        )),
        9
    );
    let g = "proxy=\"proxy\",group=\"app\"";
    assert_eq!(
        m(&format!(
            "drainpipe_upstream_responses_total{{{g},class=\"5xx\"}}"
        )),
        2
    );
    assert_eq!(
        m(&format!(
            "drainpipe_upstream_request_duration_seconds_count{{{g}}}"
        )),
        9
    );
    let (su, sd) = (
        format!("{g},server=\"{up}\""),
        format!("{g},server=\"{down}\""),
    );
    assert_eq!(
        m(&format!(
            "drainpipe_upstream_server_state{{{su},state=\"up\"}}"
        )),
        1
    );
    assert_eq!(
        m(&format!(
            "drainpipe_upstream_server_state{{{su},state=\"down\"}}"
        )),
        0
    );
    assert_eq!(
        m(&format!(
            "drainpipe_upstream_server_state{{{sd},state=\"down\"}}"
        )),
        1
    );
    assert_eq!(
        m(&format!(
            "drainpipe_upstream_server_state{{{sd},state=\"up\"}}"
        )),
        0
    );
    assert_eq!(
        m(&format!(
            "drainpipe_upstream_server_health_check_passed{{{su}}}"
        )),
        1
    );
    assert_eq!(
        m(&format!(
            "drainpipe_upstream_server_health_check_passed{{{sd}}}"
        )),
        0
    );
    // The down server gets no request; the live one all nine.
    assert_eq!(
        m(&format!("drainpipe_upstream_server_requests_total{{{su}}}")),
        9
    );
    assert_eq!(
        m(&format!("drainpipe_upstream_server_requests_total{{{sd}}}")),
        0
    );
    assert_eq!(
        m(&format!(
            "drainpipe_upstream_server_first_byte_seconds_count{{{su}}}"
        )),
        9
    );
    assert!(
        m(&format!(
            "drainpipe_upstream_server_connect_seconds_count{{{su}}}"
        )) >= 1
    );
    let conns = |state: &str| {
        m(&format!(
            "drainpipe_upstream_server_connections{{{su},state=\"{state}\"}}"
        ))
    };
    assert!(conns("open") >= 1, "{text}");
    assert_eq!(conns("open"), conns("idle") + conns("active"));
    assert_eq!(
        m(&format!(
            "drainpipe_upstream_server_connections{{{sd},state=\"open\"}}"
        )),
        0
    );
    assert!(m("process_open_fds") > 3);
    assert!(m("process_resident_memory_bytes") > 1 << 20);
    let started = metric_f(&text, "process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 120.0..=now + 1.0).contains(&started),
        "{started} vs {now}"
    );
    let build = text
        .lines()
        .find(|l| l.starts_with("drainpipe_build_info{"))
        .expect("build info");
    assert!(
        build.starts_with(&format!(
            "drainpipe_build_info{{version=\"{}\",commit=\"",
            env!("CARGO_PKG_VERSION")
        )) && build.ends_with("\"} 1"),
        "{build}"
    );

    common::assert_promtool_accepts(&text);
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
    // A profile of its own: two browsers on one profile directory (tests run
    // in parallel) make the second one fail.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let profile =
        std::env::temp_dir().join(format!("drainpipe-chromium-{}-{run}", std::process::id()));
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

// The status page with one of two upstream servers down: the overall state
// reads "degraded", each server's row says its state, why and its last
// health check, and its numbers match /metrics; the tables are in the page
// as served (no script needed); headless Chromium runs the script, which
// draws six charts of the last five minutes as inline SVG. A screenshot is
// saved as target/tmp/admin-status-degraded.png.
#[test]
fn status_page_shows_each_server_and_charts() {
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let up = origin.addr("origin");
    let (proxy, down, _hold) = proxy_with_a_server_down(up);
    let admin = proxy.addr("admin");
    // Traffic over three seconds, so the charts have points.
    let mut s = TcpStream::connect(proxy.addr("proxy")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for i in 0..30 {
        let path = if i % 10 == 9 {
            "/status/503"
        } else {
            "/delay/5"
        };
        assert!(request(&mut s, path, false).0 >= 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, metrics) = get(admin, "/metrics");
    let sv = |server: SocketAddr, name: &str| {
        metric(
            &metrics,
            &format!("{name}{{proxy=\"proxy\",group=\"app\",server=\"{server}\"}}"),
        )
        .to_string()
    };

    // Without JavaScript: the page as served holds the tables.
    let (status, html) = get(admin, "/status");
    assert_eq!(status, 200);
    assert_eq!(element(&html, "ready"), "degraded");
    assert_eq!(element(&html, "srv0-name"), up.to_string());
    assert_eq!(element(&html, "srv0-state"), "up");
    assert_eq!(element(&html, "srv1-name"), down.to_string());
    assert_eq!(element(&html, "srv1-state"), "down");
    assert!(
        element(&html, "srv1-reason")
            .starts_with("1 failed health check(s) in a row; last: GET /: "),
        "{html}"
    );
    assert!(
        element(&html, "srv1-check").starts_with("failed: GET /: "),
        "{html}"
    );
    assert!(
        element(&html, "srv0-check").starts_with("passed: GET / 200 OK in "),
        "{html}"
    );
    assert_eq!(
        element(&html, "srv0-requests"),
        sv(up, "drainpipe_upstream_server_requests_total")
    );
    // Nothing loaded from elsewhere: no links, sources or style URLs.
    assert!(
        !html.contains("<link") && !html.contains(" src=") && !html.contains("url("),
        "an external resource in:\n{html}"
    );

    if peer("chromium") {
        let url = format!("http://{admin}/status");
        let out = chromium(&["--dump-dom", &url]);
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        let (_, metrics) = get(admin, "/metrics");
        let sv = |server: SocketAddr, name: &str| {
            metric(
                &metrics,
                &format!("{name}{{proxy=\"proxy\",group=\"app\",server=\"{server}\"}}"),
            )
            .to_string()
        };
        assert_eq!(element(&dom, "ready"), "degraded");
        assert_eq!(element(&dom, "srv0-state"), "up");
        assert_eq!(element(&dom, "srv1-state"), "down");
        assert_eq!(
            element(&dom, "srv0-requests"),
            sv(up, "drainpipe_upstream_server_requests_total")
        );
        let errors = |server: SocketAddr| -> u64 {
            ["connect", "timeout", "response", "stale"]
                .iter()
                .map(|kind| {
                    metric(
                        &metrics,
                        &format!("drainpipe_upstream_server_errors_total{{proxy=\"proxy\",group=\"app\",server=\"{server}\",kind=\"{kind}\"}}"),
                    )
                })
                .sum()
        };
        assert_eq!(element(&dom, "srv0-errors"), errors(up).to_string());
        assert_eq!(element(&dom, "srv1-errors"), errors(down).to_string());
        // Connections change as health checks run: at least the pooled one.
        assert!(element(&dom, "srv0-open").parse::<u64>().unwrap() >= 1);
        assert_eq!(element(&dom, "srv1-requests"), "0");
        assert_eq!(
            element(&dom, "proxy-5xx"),
            metric(
                &metrics,
                "drainpipe_responses_total{listener=\"proxy\",class=\"5xx\"}"
            )
            .to_string()
        );
        assert_eq!(element(&dom, "proxy-5xx"), "3");
        assert_eq!(
            element(&dom, "proxy-requests"),
            metric(&metrics, "drainpipe_requests_total{listener=\"proxy\"}").to_string()
        );
        // Six charts, each an SVG, with lines drawn from the history.
        assert_eq!(
            dom.matches("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 400 130\"")
                .count(),
            6,
            "{dom}"
        );
        assert!(dom.matches("<path d=\"M").count() >= 6, "{dom}");
        let p50 = element(&dom, "proxy-p50");
        assert!(p50.ends_with(" ms"), "{p50}");
        let screenshot =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-status-degraded.png");
        let _ = std::fs::remove_file(&screenshot);
        chromium(&[
            "--window-size=1400,1100",
            &format!("--screenshot={}", screenshot.display()),
            &url,
        ]);
        let png = std::fs::read(&screenshot).expect("a screenshot was written");
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
        eprintln!("status page screenshot: {}", screenshot.display());
    }
}
