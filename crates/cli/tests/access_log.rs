//! The access log, read from its file: JSON lines with every field (the
//! connection's id and request number, bytes, Host, user agent, referer, the
//! upstream's address, connect and response times, reuse, retries, the
//! close reason on the connection's last request), reopened on SIGUSR1
//! after logrotate moved the file; the combined format from the flag; a bad
//! template variable is a one-line error naming the key.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

mod common;

use common::{read_response, write_proxy_config, Proc, BIN};

fn config(dir: &std::path::Path, upstream: &str, access: &str) -> std::path::PathBuf {
    let path = dir.join("proxy.toml");
    write_proxy_config(&path, upstream, &format!("[access_log]\n{access}\n"));
    path
}

fn lines_of(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits (bounded) until `path` holds `n` lines; the log is flushed every
/// second.
fn wait_lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let start = std::time::Instant::now();
    loop {
        let lines = lines_of(path);
        if lines.len() >= n || start.elapsed() > Duration::from_secs(5) {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn json_lines_with_every_field_reopened_on_sigusr1() {
    let dir = std::env::temp_dir().join(format!("drainpipe-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let _ = std::fs::remove_file(&log);
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let upstream = origin.addr("origin").to_string();
    let cfg = config(
        &dir,
        &upstream,
        &format!("format = \"json\"\npath = \"{}\"", log.display()),
    );
    let proxy = Proc::start(&["proxy", "--config", cfg.to_str().unwrap()], 1);
    let mut s = TcpStream::connect(proxy.addr("proxy")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    // 1: a GET on a new upstream connection; 2: a POST with a 5-byte body,
    // user agent and referer, on the pooled one; 3: a 404 asking to close.
    s.write_all(b"GET /conn HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .unwrap();
    let (_, first) = read_response(&mut s, &mut buf).unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: example.test\r\nUser-Agent: tester/1.0\r\nReferer: http://r.test/\r\nContent-Length: 5\r\n\r\nhello",
    )
    .unwrap();
    read_response(&mut s, &mut buf).unwrap();
    s.write_all(b"GET /status/404 HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut s, &mut buf).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);

    let lines = wait_lines(&log, 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let (a, b, c) = (&lines[0], &lines[1], &lines[2]);
    for l in &lines {
        assert_eq!(l["remote_addr"], "127.0.0.1");
        assert_eq!(l["host"], "example.test");
        assert_eq!(l["version"], "HTTP/1.1");
        assert_eq!(l["upstream_addr"], upstream.as_str());
        assert_eq!(l["retries"], 0);
        assert_eq!(l["connection_id"], a["connection_id"], "one connection");
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
        assert!(l["request_time"].as_f64().unwrap() < 5.0, "{l}");
    }
    assert_eq!(a["method"], "GET");
    assert_eq!(a["target"], "/conn");
    assert_eq!(a["status"], 200);
    assert_eq!(a["connection_requests"], 1);
    assert_eq!(a["upstream_reused"], false);
    assert!(a["upstream_connect_time"].as_f64().unwrap() > 0.0, "{a}");
    assert!(a["upstream_response_time"].as_f64().unwrap() > 0.0, "{a}");
    assert_eq!(a["close_reason"], serde_json::Value::Null);
    // The bytes sent are the whole response: head and body.
    let sent = a["bytes_sent"].as_u64().unwrap() as usize;
    assert!(sent > first.len() + 20, "{a}");
    assert_eq!(b["method"], "POST");
    assert_eq!(b["connection_requests"], 2);
    assert_eq!(b["bytes_received"], 5);
    assert_eq!(b["user_agent"], "tester/1.0");
    assert_eq!(b["referer"], "http://r.test/");
    assert_eq!(b["upstream_reused"], true);
    assert_eq!(b["upstream_connect_time"], 0.0);
    assert_eq!(c["status"], 404);
    assert_eq!(c["connection_requests"], 3);
    assert_eq!(c["close_reason"], "keep_alive_end");
    assert_eq!(
        c["bytes_sent"].as_u64().unwrap() as usize,
        head.len() + 4 + body.len(),
        "{c}: {head}"
    );

    // logrotate: the file is moved away, SIGUSR1, and new lines go to a new
    // file by the old name; what was buffered went to the moved one.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let _ = Command::new("kill")
        .args(["-USR1", &proxy.pid().to_string()])
        .status();
    proxy.log_once("access log reopened", Duration::from_secs(5));
    let mut s = TcpStream::connect(proxy.addr("proxy")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /after HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    read_response(&mut s, &mut Vec::new()).unwrap();
    let after = wait_lines(&log, 1);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["target"], "/after");
    assert_eq!(after[0]["status"], 404);
    assert_ne!(after[0]["connection_id"], a["connection_id"]);
    assert_eq!(lines_of(&rotated).len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

// `--access-log` writes the combined format to stdout; a template writes its
// variables; an unknown variable is refused at start, naming the key.
#[test]
fn combined_from_the_flag_templates_and_a_bad_variable() {
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let upstream = origin.addr("origin").to_string();
    let proxy = Proc::start(
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
    s.write_all(b"GET /bytes/10 HTTP/1.1\r\nHost: a\r\nUser-Agent: ua\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut s, &mut Vec::new()).unwrap();
    let line = proxy.next_line().expect("a log line on stdout");
    let (prefix, rest) = line.split_once(" [").unwrap();
    assert_eq!(prefix, "127.0.0.1 - -");
    let (_, rest) = rest.split_once("] ").unwrap();
    assert_eq!(
        rest,
        format!(
            "\"GET /bytes/10 HTTP/1.1\" 200 {} \"-\" \"ua\"",
            head.len() + 4 + 10
        )
    );

    let dir = std::env::temp_dir().join(format!("drainpipe-access-t-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("t.log");
    let _ = std::fs::remove_file(&log);
    let cfg = config(
        &dir,
        &upstream,
        &format!(
            "format = \"$method $target $status c=$connection_id/$connection_requests up=$upstream_addr\"\npath = \"{}\"",
            log.display()
        ),
    );
    let proxy = Proc::start(&["proxy", "--config", cfg.to_str().unwrap()], 1);
    let mut s = TcpStream::connect(proxy.addr("proxy")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    read_response(&mut s, &mut Vec::new()).unwrap();
    let start = std::time::Instant::now();
    let mut text = String::new();
    while text.is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
        text = std::fs::read_to_string(&log).unwrap_or_default();
    }
    assert_eq!(text, format!("GET /x 404 c=1/1 up={upstream}\n"));

    let bad = config(&dir, &upstream, "format = \"$status $nope\"");
    let out = Command::new(BIN)
        .args(["proxy", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.starts_with(&format!(
            "drainpipe: {}: access_log.format: unknown access log variable $nope (known: $time,",
            bad.display()
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

// The forward proxy logs the origin it reached, like the reverse proxy.
#[test]
fn the_forward_proxy_logs_its_upstream() {
    let dir = std::env::temp_dir().join(format!("drainpipe-access-f-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("forward.log");
    let _ = std::fs::remove_file(&log);
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let upstream = origin.addr("origin");
    let cfg = dir.join("forward.toml");
    std::fs::write(
        &cfg,
        format!(
            "[forward]\nlisten = \"127.0.0.1:0\"\nallow_private = true\n\n[access_log]\nformat = \"json\"\npath = \"{}\"\n",
            log.display()
        ),
    )
    .unwrap();
    let proxy = Proc::start(&["proxy", "--config", cfg.to_str().unwrap()], 1);
    let mut s = TcpStream::connect(proxy.addr("forward")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET http://{upstream}/conn HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (head, _) = read_response(&mut s, &mut Vec::new()).unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let lines = wait_lines(&log, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["target"], format!("http://{upstream}/conn"));
    assert_eq!(l["upstream_addr"], upstream.to_string());
    assert_eq!(l["upstream_reused"], false);
    assert_eq!(l["retries"], 0);
    assert!(l["upstream_connect_time"].as_f64().unwrap() > 0.0, "{l}");
    assert_eq!(l["close_reason"], "keep_alive_end");
    let _ = std::fs::remove_dir_all(&dir);
}

// A request still in flight when the drain timeout cuts it gets its line,
// with the close reason `cut` and no status (no response was sent).
#[test]
fn a_request_cut_by_the_drain_timeout_is_logged() {
    let dir = std::env::temp_dir().join(format!("drainpipe-access-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let _ = std::fs::remove_file(&log);
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let cfg = config(
        &dir,
        &origin.addr("origin").to_string(),
        &format!("format = \"json\"\npath = \"{}\"", log.display()),
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("[drain]\ntimeout = \"1s\"\ndelay = \"0s\"\n\n{text}"),
    )
    .unwrap();
    let mut proxy = Proc::start(&["proxy", "--config", cfg.to_str().unwrap()], 1);
    let mut s = TcpStream::connect(proxy.addr("proxy")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /delay/8000 HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(proxy.wait_exit(Duration::from_secs(10)).success());
    let lines = lines_of(&log);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["target"], "/delay/8000");
    assert_eq!(lines[0]["close_reason"], "cut");
    assert_eq!(lines[0]["status"], 0);
    assert!(
        lines[0]["request_time"].as_f64().unwrap() >= 0.9,
        "{}",
        lines[0]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
