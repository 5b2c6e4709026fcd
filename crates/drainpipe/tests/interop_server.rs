//! Interop: real HTTP clients (curl, Python's http.client, ApacheBench, wrk)
//! against the drainpipe server running the built-in origin on 127.0.0.1.
//!
//! Each test asserts what the client saw (response fields, connection reuse,
//! close), not just the status. A missing peer prints a visible SKIPPED notice
//! (or fails with `DRAINPIPE_REQUIRE_PEERS=1`).

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use drainpipe::server::Server;
use support::{run_peer, TestServer};

/// Upper bound for any one peer run.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// A peer's stdout and stderr as text.
fn outputs(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parses the origin's `/conn` answers (`conn=ID request=N`, one a line) into
/// `(ID, N)` pairs.
fn conn_lines(text: &str) -> Vec<(u64, u32)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("conn=")?;
            let (id, req) = rest.split_once(" request=")?;
            Some((id.parse().ok()?, req.trim().parse().ok()?))
        })
        .collect()
}

/// Response fields curl -v printed (`< name: value`), lowercased names, in order.
fn curl_response_fields(stderr: &str) -> Vec<(String, String)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("< "))
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect()
}

/// How many times curl reported reusing a connection (curl 7.88.1:
/// `Re-using existing connection #0 with host …`; some older versions print
/// `Re-using existing connection! (#0) with host …`).
fn curl_reuses(stderr: &str) -> usize {
    stderr.matches("Re-using existing connection").count()
}

/// How many TCP connections curl opened.
fn curl_connects(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.starts_with("* Connected to"))
        .count()
}

/// curl with output bounded in time and no proxy, so traffic stays on 127.0.0.1.
async fn curl(args: &[&str]) -> (String, String) {
    let mut all = vec!["-sv", "--noproxy", "*", "--max-time", "20"];
    all.extend_from_slice(args);
    let out = run_peer("curl", &all, PEER_TIMEOUT).await;
    let (stdout, stderr) = outputs(&out);
    assert!(
        out.status.success(),
        "curl {all:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// HTTP/1.1: two URLs in one curl run share one connection, and the origin
/// sees requests 1 and 2 of the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http11_reuses_connection() {
    if !support::peer("curl") {
        return;
    }
    let server = TestServer::origin(Server::builder()).await;
    let url = server.url("/conn");
    let (stdout, stderr) = curl(&[&url, &url]).await;
    let ctx = format!("stdout:\n{stdout}\nstderr:\n{stderr}");

    assert_eq!(
        curl_connects(&stderr),
        1,
        "one TCP connection expected; {ctx}"
    );
    assert_eq!(
        curl_reuses(&stderr),
        1,
        "curl should reuse the connection; {ctx}"
    );
    assert_eq!(
        stderr.matches("< HTTP/1.1 200").count(),
        2,
        "two HTTP/1.1 200 responses expected; {ctx}"
    );
    let fields = curl_response_fields(&stderr);
    assert!(
        !fields
            .iter()
            .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close")),
        "no response may carry Connection: close; {ctx}"
    );
    assert_eq!(
        fields.iter().filter(|(n, _)| n == "content-type").count(),
        2,
        "both responses carry content-type; {ctx}"
    );
    assert_eq!(
        fields.iter().filter(|(n, _)| n == "date").count(),
        2,
        "both responses carry date; {ctx}"
    );

    let lines = conn_lines(&stdout);
    assert_eq!(lines.len(), 2, "two /conn answers expected; {ctx}");
    assert_eq!(lines[0].0, lines[1].0, "same connection id expected; {ctx}");
    assert_eq!(
        (lines[0].1, lines[1].1),
        (1, 2),
        "request numbers 1 then 2; {ctx}"
    );
    assert!(
        !stderr.contains("Closing connection"),
        "curl should never have closed the connection; {ctx}"
    );
}

/// HTTP/1.0 with `Connection: keep-alive`: the server answers
/// `Connection: keep-alive` with a `Keep-Alive: timeout=` advertisement and the
/// second URL reuses the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http10_keep_alive_reuses_connection() {
    if !support::peer("curl") {
        return;
    }
    let server = TestServer::origin(Server::builder()).await;
    let url = server.url("/conn");
    let (stdout, stderr) = curl(&["-0", "-H", "Connection: keep-alive", &url, &url]).await;
    let ctx = format!("stdout:\n{stdout}\nstderr:\n{stderr}");

    assert_eq!(
        stderr.matches("> GET /conn HTTP/1.0").count(),
        2,
        "curl sent two HTTP/1.0 requests; {ctx}"
    );
    assert_eq!(
        stderr.matches("< HTTP/1.0 200").count() + stderr.matches("< HTTP/1.1 200").count(),
        2,
        "two 200 responses expected; {ctx}"
    );
    let fields = curl_response_fields(&stderr);
    let connection: Vec<&str> = fields
        .iter()
        .filter(|(n, _)| n == "connection")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        connection.len(),
        2,
        "each response carries a Connection field; {ctx}"
    );
    assert!(
        connection
            .iter()
            .all(|v| v.eq_ignore_ascii_case("keep-alive")),
        "Connection: keep-alive on both responses; {ctx}"
    );
    let keep_alive: Vec<&str> = fields
        .iter()
        .filter(|(n, _)| n == "keep-alive")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        keep_alive.len(),
        2,
        "each response carries Keep-Alive; {ctx}"
    );
    for v in &keep_alive {
        let timeout = v
            .split(',')
            .find_map(|p| p.trim().strip_prefix("timeout="))
            .and_then(|t| t.trim().parse::<u64>().ok());
        assert_eq!(
            timeout,
            Some(60),
            "Keep-Alive advertises the default 60 s idle timeout, got {v:?}; {ctx}"
        );
    }

    assert_eq!(
        curl_connects(&stderr),
        1,
        "one TCP connection expected; {ctx}"
    );
    assert_eq!(
        curl_reuses(&stderr),
        1,
        "curl should reuse the connection; {ctx}"
    );
    let lines = conn_lines(&stdout);
    assert_eq!(lines.len(), 2, "two /conn answers expected; {ctx}");
    assert_eq!(lines[0].0, lines[1].0, "same connection id expected; {ctx}");
    assert_eq!(
        (lines[0].1, lines[1].1),
        (1, 2),
        "request numbers 1 then 2; {ctx}"
    );
}

/// Plain HTTP/1.0 (no keep-alive asked): each response carries
/// `Connection: close`, the server closes, curl opens a second connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http10_without_keep_alive_closes() {
    if !support::peer("curl") {
        return;
    }
    let server = TestServer::origin(Server::builder()).await;
    let url = server.url("/conn");
    let (stdout, stderr) = curl(&["-0", &url, &url]).await;
    let ctx = format!("stdout:\n{stdout}\nstderr:\n{stderr}");

    assert_eq!(
        stderr.matches("> GET /conn HTTP/1.0").count(),
        2,
        "curl sent two HTTP/1.0 requests; {ctx}"
    );
    let fields = curl_response_fields(&stderr);
    let connection: Vec<&str> = fields
        .iter()
        .filter(|(n, _)| n == "connection")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        connection,
        vec!["close", "close"],
        "both responses carry Connection: close; {ctx}"
    );
    assert!(
        !fields.iter().any(|(n, _)| n == "keep-alive"),
        "no Keep-Alive field without a keep-alive request; {ctx}"
    );
    assert_eq!(
        curl_connects(&stderr),
        2,
        "two TCP connections expected; {ctx}"
    );
    assert_eq!(curl_reuses(&stderr), 0, "no reuse expected; {ctx}");

    let lines = conn_lines(&stdout);
    assert_eq!(lines.len(), 2, "two /conn answers expected; {ctx}");
    assert_ne!(
        lines[0].0, lines[1].0,
        "different connection ids expected; {ctx}"
    );
    assert_eq!(
        (lines[0].1, lines[1].1),
        (1, 1),
        "each is request 1 of its connection; {ctx}"
    );
}

/// Python's http.client: two requests on one `HTTPConnection` use the same
/// socket, and the origin sees requests 1 and 2 of one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_client_reuses_connection() {
    if !support::peer("python3") {
        return;
    }
    let server = TestServer::origin(Server::builder()).await;
    let script = r#"
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)
socks = []
for _ in range(2):
    c.request("GET", "/conn")
    r = c.getresponse()
    body = r.read().decode().strip()
    socks.append(c.sock)
    print("body", body)
    print("status", r.status, "version", r.version, "will_close", r.will_close)
    print("connection", r.getheader("Connection"))
print("same_socket", socks[0] is not None and socks[0] is socks[1])
c.close()
"#;
    let host = server.addr.ip().to_string();
    let port = server.addr.port().to_string();
    let out = run_peer("python3", &["-c", script, &host, &port], PEER_TIMEOUT).await;
    let (stdout, stderr) = outputs(&out);
    let ctx = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        out.status.success(),
        "python3 failed ({}); {ctx}",
        out.status
    );

    let bodies: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("body "))
        .collect();
    let lines = conn_lines(&bodies.join("\n"));
    assert_eq!(lines.len(), 2, "two /conn answers expected; {ctx}");
    assert_eq!(lines[0].0, lines[1].0, "same connection id expected; {ctx}");
    assert_eq!(
        (lines[0].1, lines[1].1),
        (1, 2),
        "request numbers 1 then 2; {ctx}"
    );
    assert_eq!(
        stdout
            .matches("status 200 version 11 will_close False")
            .count(),
        2,
        "two HTTP/1.1 200 responses that keep the connection; {ctx}"
    );
    assert!(
        !stdout.contains("connection close"),
        "no Connection: close expected; {ctx}"
    );
    assert!(
        stdout.lines().any(|l| l == "same_socket True"),
        "http.client should have kept its socket; {ctx}"
    );
}

/// ApacheBench with `-k` (HTTP/1.0 keep-alive): every request succeeds and is
/// counted as a keep-alive request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_keep_alive_every_request() {
    if !support::peer("ab") {
        return;
    }
    let server = TestServer::origin(Server::builder()).await;
    let url = server.url("/");
    let out = run_peer(
        "ab",
        &["-k", "-n", "2000", "-c", "10", "-s", "10", &url],
        PEER_TIMEOUT,
    )
    .await;
    let (stdout, stderr) = outputs(&out);
    let ctx = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(out.status.success(), "ab failed ({}); {ctx}", out.status);

    assert!(
        stdout.contains("Complete requests:      2000"),
        "2000 complete requests expected; {ctx}"
    );
    assert!(
        stdout.contains("Failed requests:        0"),
        "no failed requests expected; {ctx}"
    );
    assert!(
        !stdout.contains("Non-2xx"),
        "no non-2xx responses expected; {ctx}"
    );
    assert!(
        stdout.contains("Keep-Alive requests:    2000"),
        "every request should be a keep-alive request; {ctx}"
    );
    assert!(
        stdout.contains("Document Length:        13 bytes"),
        "the origin's `Hello, World!` (13 bytes) expected; {ctx}"
    );
    let accepted = server.stats.accepted.load(Ordering::Relaxed);
    assert!(
        accepted <= 10,
        "ab -c 10 with keep-alive should need at most 10 connections, server accepted {accepted}; {ctx}"
    );
}

/// wrk pipelining 16 requests at a time: no socket errors, no non-2xx, and the
/// server coalesces pipelined responses into few writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrk_pipelined_writes_are_coalesced() {
    if !support::peer("wrk") {
        return;
    }
    let server = TestServer::origin(Server::builder()).await;
    let dir = std::env::temp_dir().join(format!("drainpipe-interop-wrk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("pipeline.lua");
    std::fs::write(
        &script,
        r#"
init = function(args)
  local r = {}
  for i = 1, 16 do
    r[i] = wrk.format(nil, "/")
  end
  req = table.concat(r)
end

request = function()
  return req
end
"#,
    )
    .unwrap();
    let script_path = script.to_str().unwrap().to_string();
    let url = server.url("/");
    let out = run_peer(
        "wrk",
        &[
            "-t1",
            "-c4",
            "-d2s",
            "--timeout",
            "5s",
            "-s",
            &script_path,
            &url,
        ],
        PEER_TIMEOUT,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let (stdout, stderr) = outputs(&out);
    let ctx = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(out.status.success(), "wrk failed ({}); {ctx}", out.status);

    assert!(
        !stdout.contains("Socket errors"),
        "no socket errors expected; {ctx}"
    );
    assert!(
        !stdout.contains("Non-2xx"),
        "no non-2xx responses expected; {ctx}"
    );
    let count: u64 = stdout
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once(' ')?;
            rest.starts_with("requests in").then(|| n.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no `N requests in` line; {ctx}"));
    assert!(count > 0, "wrk completed no requests; {ctx}");

    let requests = server.stats.requests.load(Ordering::Relaxed);
    let writes = server.stats.writes.load(Ordering::Relaxed);
    assert!(
        requests >= count,
        "server counted {requests} requests, wrk completed {count}; {ctx}"
    );
    assert!(writes > 0, "server counted no writes; {ctx}");
    assert!(
        requests / writes >= 8,
        "pipelined responses should be coalesced: {requests} requests in {writes} writes \
         (ratio {:.2}, want >= 8); {ctx}",
        requests as f64 / writes as f64
    );
}
