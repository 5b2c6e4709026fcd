//! `drainpipe bench` against a `drainpipe origin` subprocess: each strategy
//! completes the requests asked with the connections it should open, JSON lines
//! carry the required fields, errors are counted by kind, and bad input is a
//! one-line error.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{Proc, BIN};

/// A `drainpipe origin` on 127.0.0.1:0, killed on drop.
struct Origin(Proc);

impl Origin {
    fn start() -> Origin {
        Origin(Proc::start(
            &["--threads", "1", "origin", "--listen", "127.0.0.1:0"],
            1,
        ))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.0.addr("origin"))
    }
}

/// What a finished `drainpipe` run left.
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `drainpipe --threads 1 ARGS`, killing it (and failing) after `within`.
fn drainpipe(args: &[&str], within: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(["--threads", "1"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drainpipe starts");
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("drainpipe {args:?} did not finish in {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs a bench that must succeed and returns its JSON lines.
fn bench_json(args: &[&str]) -> Vec<Value> {
    bench_json_exit(args, 0)
}

/// Runs a bench that must exit with `code` and returns its JSON lines.
fn bench_json_exit(args: &[&str], code: i32) -> Vec<Value> {
    let mut all = vec!["bench", "--json"];
    all.extend_from_slice(args);
    let out = drainpipe(&all, Duration::from_secs(8));
    assert_eq!(out.code, Some(code), "{args:?}: {}", out.stderr);
    if code == 1 {
        // The report, then one line counting the failures.
        assert_eq!(
            out.stderr
                .lines()
                .filter(|l| l.starts_with("drainpipe: "))
                .count(),
            1
        );
        assert!(
            out.stderr.contains(" requests to http://") && out.stderr.contains(" failed"),
            "{}",
            out.stderr
        );
    }
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer {key} in {v}"))
}

#[test]
fn each_strategy_completes_the_requests_asked() {
    let origin = Origin::start();
    let url = origin.url("/");
    for (strategy, opened) in [
        ("serial", 200),
        ("parallel", 200),
        ("persistent", 4),
        ("pipelined", 4),
    ] {
        let runs = bench_json(&[
            "--strategy",
            strategy,
            "--requests",
            "200",
            "--connections",
            "4",
            "--depth",
            "8",
            &url,
        ]);
        assert_eq!(runs.len(), 1, "{runs:?}");
        let r = &runs[0];
        assert_eq!(r["strategy"], strategy, "{r}");
        assert_eq!(num(r, "requests"), 200, "{r}");
        assert_eq!(num(r, "errors"), 0, "{r}");
        assert_eq!(num(r, "non_2xx"), 0, "{r}");
        assert_eq!(num(r, "connections_opened"), opened, "{r}");
    }
}

#[test]
fn compare_json_prints_four_objects_with_the_required_fields() {
    let origin = Origin::start();
    let runs = bench_json(&[
        "--compare",
        "--requests",
        "100",
        "-c",
        "8",
        &origin.url("/"),
    ]);
    let names: Vec<&str> = runs.iter().filter_map(|r| r["strategy"].as_str()).collect();
    assert_eq!(names, ["serial", "parallel", "persistent", "pipelined"]);
    for r in &runs {
        for key in [
            "requests",
            "errors",
            "connections_opened",
            "time_wait",
            "non_2xx",
        ] {
            num(r, key);
        }
        assert!(r["rps"].as_f64().unwrap() > 0.0, "{r}");
        for q in ["mean", "stdev", "p50", "p90", "p99", "p99.9", "max"] {
            let ms = r["latency_ms"][q].as_f64().unwrap_or(-1.0);
            assert!((0.0..5000.0).contains(&ms), "{q} in {r}");
        }
        let l = &r["latency_ms"];
        assert!(
            l["p99"].as_f64() <= l["p99.9"].as_f64() && l["p99.9"].as_f64() <= l["max"].as_f64(),
            "{r}"
        );
        // "Hello, World!" (13 bytes) and a head per response; the request
        // bytes as sent.
        assert!(num(r, "bytes_read") > 100 * 13, "{r}");
        assert!(num(r, "bytes_written") > 100 * 20, "{r}");
        assert!(r["read_bytes_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["status_codes"], serde_json::json!({"200": 100}), "{r}");
        assert_eq!(num(r, "requests"), 100, "{r}");
        for kind in [
            "connect",
            "closed",
            "truncated",
            "protocol",
            "io",
            "timeout",
        ] {
            assert_eq!(r["errors_by_kind"][kind].as_u64(), Some(0), "{r}");
        }
    }
}

// With `Connection: close` the server closes first, so each closed connection
// leaves a TIME_WAIT socket on the server's side of the target port.
#[test]
fn serial_leaves_time_wait_sockets() {
    let origin = Origin::start();
    let runs = bench_json(&[
        "--strategy",
        "serial",
        "--requests",
        "100",
        &origin.url("/"),
    ]);
    assert_eq!(num(&runs[0], "connections_opened"), 100);
    assert!(num(&runs[0], "time_wait") > 0, "{}", runs[0]);
}

#[test]
fn duration_runs_for_about_that_long_with_plain_progress() {
    let origin = Origin::start();
    let started = Instant::now();
    let out = drainpipe(
        &["bench", "--duration", "1.2", "-c", "4", &origin.url("/")],
        Duration::from_secs(8),
    );
    let took = started.elapsed();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        took >= Duration::from_millis(1200) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Not a terminal: one plain line a second, then a final one.
    assert!(
        out.stderr.contains("bench persistent: 1s "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(" 0 errors"), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(lines[0].starts_with("strategy") && lines[0].contains("req/s"));
    assert!(lines[1].starts_with("persistent"), "{}", out.stdout);
    // The details: latency spread, transfer, status codes.
    assert!(
        lines[2].starts_with("persistent: latency ms mean ")
            && lines[2].contains(" p99.9 ")
            && lines[2].contains(" MB/s), written ")
            && lines[2].contains("; status 200 "),
        "{}",
        out.stdout
    );
}

#[test]
fn errors_are_counted_by_kind_and_non_2xx_apart() {
    let origin = Origin::start();
    let r = &bench_json_exit(&["-n", "20", "-c", "2", &origin.url("/truncate/100")], 1)[0];
    assert_eq!(num(r, "requests"), 0, "{r}");
    assert_eq!(num(r, "errors"), 20, "{r}");
    assert_eq!(r["errors_by_kind"]["truncated"].as_u64(), Some(20), "{r}");

    let r = &bench_json_exit(&["-n", "20", "-c", "2", &origin.url("/reset")], 1)[0];
    assert_eq!(r["errors_by_kind"]["io"].as_u64(), Some(20), "{r}");

    let r = &bench_json(&["-n", "20", "-c", "2", &origin.url("/status/503")])[0];
    assert_eq!((num(r, "requests"), num(r, "errors")), (20, 0), "{r}");
    assert_eq!(num(r, "non_2xx"), 20, "{r}");
    assert_eq!(r["status_codes"], serde_json::json!({"503": 20}), "{r}");

    // The server closes after every response: a new connection each time, and
    // the pipelined requests it left unanswered go again, without errors.
    let r = &bench_json(&[
        "-n",
        "30",
        "-c",
        "2",
        "--strategy",
        "pipelined",
        "-d",
        "4",
        &origin.url("/close"),
    ])[0];
    assert_eq!((num(r, "requests"), num(r, "errors")), (30, 0), "{r}");
    assert_eq!(num(r, "connections_opened"), 30, "{r}");

    let r = &bench_json_exit(
        &[
            "-n",
            "2",
            "-c",
            "2",
            "--timeout",
            "0.3",
            &origin.url("/delay/3000"),
        ],
        1,
    )[0];
    assert_eq!(r["errors_by_kind"]["timeout"].as_u64(), Some(2), "{r}");
}

#[test]
fn compare_table_and_chart() {
    let origin = Origin::start();
    let out = drainpipe(
        &[
            "bench",
            "--compare",
            "--chart",
            "-n",
            "50",
            "-c",
            "4",
            &origin.url("/"),
        ],
        Duration::from_secs(8),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("strategy"), "{}", out.stdout);
    for (i, name) in ["serial", "parallel", "persistent", "pipelined"]
        .iter()
        .enumerate()
    {
        assert!(lines[1 + i].starts_with(name), "{}", out.stdout);
        // Then a line of details per strategy.
        assert!(
            lines[5 + i].starts_with(&format!("{name}: latency ms mean ")),
            "{}",
            out.stdout
        );
        let bar = lines[10 + i];
        assert!(
            bar.starts_with(name) && bar.contains("|#"),
            "{}",
            out.stdout
        );
    }
    assert_eq!(lines[9], "requests/s", "{}", out.stdout);
}

#[test]
fn request_method_headers_and_body_are_sent() {
    let origin = Origin::start();
    let r = &bench_json(&[
        "-n",
        "10",
        "-c",
        "1",
        "--method",
        "POST",
        "--header",
        "X-One: 1",
        "-H",
        "X-Two: two",
        "--body",
        "hello",
        &origin.url("/"),
    ])[0];
    assert_eq!((num(r, "requests"), num(r, "errors")), (10, 0), "{r}");
}

fn one_line_error(args: &[&str], code: i32, names: &str) {
    let out = drainpipe(args, Duration::from_secs(8));
    assert_eq!(out.code, Some(code), "{args:?}: {}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.starts_with("drainpipe: "), "{}", out.stderr);
    assert!(out.stderr.contains(names), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn unreachable_or_unsupported_url_is_one_line_naming_it() {
    // A port nothing listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    one_line_error(&["bench", "-n", "10", &url], 1, &url);
    // Bad usage: exit status 2.
    one_line_error(&["bench", "ftp://127.0.0.1:1/"], 2, "ftp://127.0.0.1:1/");
    one_line_error(
        &["bench", "--insecure", "http://127.0.0.1:1/"],
        2,
        "--insecure",
    );
    one_line_error(&["bench", "not a url"], 2, "not a url");
}

#[test]
fn bad_flags_are_one_line_naming_them() {
    for (args, names) in [
        (
            &["bench", "--strategy", "bogus", "http://127.0.0.1:1/"][..],
            "--strategy",
        ),
        (
            &["bench", "--connections", "0", "http://127.0.0.1:1/"][..],
            "--connections",
        ),
        (
            &["bench", "--depth", "x", "http://127.0.0.1:1/"][..],
            "--depth",
        ),
        (
            &["bench", "--duration", "0", "http://127.0.0.1:1/"][..],
            "--duration",
        ),
        (
            &["bench", "--header", "nocolon", "http://127.0.0.1:1/"][..],
            "--header",
        ),
        (
            &["bench", "--method", "G T", "http://127.0.0.1:1/"][..],
            "--method",
        ),
        (
            &["bench", "-n", "5", "--duration", "1", "http://127.0.0.1:1/"][..],
            "--duration",
        ),
        // (main's handler keeps clap's first line, which does not name it.)
        (&["bench"][..], "required arguments"),
    ] {
        one_line_error(args, 2, names);
    }
}

// The bytes read are exactly the responses' bytes: /bytes/1000 answers 1000
// body bytes after a head of known size.
#[test]
fn bytes_read_are_the_responses_bytes() {
    let origin = Origin::start();
    let r = &bench_json(&["-n", "10", "-c", "1", &origin.url("/bytes/1000")])[0];
    let per_response = num(r, "bytes_read") / 10;
    assert_eq!(num(r, "bytes_read") % 10, 0, "{r}");
    assert!((1000 + 40..1000 + 400).contains(&per_response), "{r}");
}

// --rate 500: the run keeps 500 requests a second (within 5 %), its
// latencies measured from each request's due time.
#[test]
fn rate_keeps_the_throughput_asked() {
    let origin = Origin::start();
    let r = &bench_json(&[
        "--rate",
        "500",
        "-c",
        "4",
        "--duration",
        "2",
        &origin.url("/"),
    ])[0];
    let rps = r["rps"].as_f64().unwrap();
    assert!((475.0..=525.0).contains(&rps), "{rps} req/s: {r}");
    assert_eq!(r["rate"].as_f64(), Some(500.0), "{r}");
    assert_eq!(num(r, "errors"), 0, "{r}");
    assert!((950..=1000).contains(&num(r, "requests")), "{r}");
    assert!(num(r, "missed") <= 25, "{r}");
}

// On a schedule a connection waits idle between requests; a server that
// closes idle connections (here after 100 ms, without `Connection: close`)
// costs a new connection, not a failed request.
#[test]
fn rate_is_not_failed_by_the_servers_idle_close() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                use std::io::Write;
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let mut buf = [0u8; 1024];
                // Answers whatever requests come, until 100 ms pass idle.
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            });
        }
    });
    let r = &bench_json(&[
        "--rate",
        "5",
        "-c",
        "1",
        "--duration",
        "2",
        &format!("http://{addr}/"),
    ])[0];
    assert_eq!(num(r, "errors"), 0, "{r}");
    assert!((9..=10).contains(&num(r, "requests")), "{r}");
    assert!(num(r, "connections_opened") >= 8, "{r}");
}

// No coordinated omission: one connection to a server that takes 50 ms per
// request, asked for 100 requests a second, serves 20 a second; the requests
// queue behind each other and their latency, counted from when each was due,
// grows far past 50 ms (counted from when each was sent it would stay near
// 50 ms).
#[test]
fn rate_latency_counts_the_wait_behind_a_slow_server() {
    let origin = Origin::start();
    let r = &bench_json(&[
        "--rate",
        "100",
        "-c",
        "1",
        "--duration",
        "1",
        &origin.url("/delay/50"),
    ])[0];
    let l = &r["latency_ms"];
    assert!(num(r, "requests") <= 21, "{r}");
    // The rest were due but never sent: reported, not hidden.
    assert!(num(r, "missed") >= 70, "{r}");
    assert!(l["p50"].as_f64().unwrap() > 200.0, "{r}");
    assert!(l["max"].as_f64().unwrap() > 600.0, "{r}");
    // Without --rate the same load reports about 50 ms.
    let r = &bench_json(&["-n", "10", "-c", "1", &origin.url("/delay/50")])[0];
    assert!(r["latency_ms"]["p50"].as_f64().unwrap() < 150.0, "{r}");
}
