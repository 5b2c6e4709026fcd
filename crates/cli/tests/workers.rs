//! Thread-per-core workers as a user sees them: with `--threads 2`,
//! connections are spread over both workers and each stays on its own
//! (across parking too); the admin listener's figures are the process's
//! totals, with a row per worker on `/status`; each worker keeps its own
//! upstream pool; a drain under load with two workers loses no request it
//! accepted.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{read_response, write_proxy_config, Proc, Scratch};

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// One request on `s`: the status line's code and the body.
fn get(s: &mut TcpStream, buf: &mut Vec<u8>, path: &str) -> (u16, String) {
    write!(s, "GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let (head, body) = read_response(s, buf).unwrap();
    let code = head[9..12].parse().unwrap();
    (code, String::from_utf8(body).unwrap())
}

/// The origin's `/conn` answer: (connection id, request number, worker).
fn conn(body: &str) -> (u64, u32, usize) {
    let field = |name: &str| -> &str {
        body.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {body:?}"))
    };
    (
        field("conn=").parse().unwrap(),
        field("request=").parse().unwrap(),
        field("worker=").parse().unwrap(),
    )
}

#[test]
fn connections_spread_over_the_workers_and_each_stays_on_its_own() {
    let origin = Proc::start(&["--threads", "2", "origin", "--listen", "127.0.0.1:0"], 1);
    let addr = origin.addr("origin");
    let mut conns: Vec<(TcpStream, Vec<u8>)> =
        (0..24).map(|_| (connect(addr), Vec::new())).collect();
    let mut first = Vec::new();
    for (s, buf) in &mut conns {
        let (id, request, worker) = conn(&get(s, buf, "/conn").1);
        assert_eq!(request, 1);
        first.push((id, worker));
    }
    let on = |w: usize| first.iter().filter(|(_, on)| *on == w).count();
    assert_eq!(on(0) + on(1), 24, "workers 0 and 1 only: {first:?}");
    assert!(on(0) > 0 && on(1) > 0, "both workers accept: {first:?}");
    let mut ids: Vec<u64> = first.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 24, "connection ids unique across workers");

    // Idle past park_idle_after (1 s): each connection is parked by its
    // worker, and resumes there.
    std::thread::sleep(Duration::from_millis(1300));
    for n in 2..=3 {
        for ((s, buf), (id, worker)) in conns.iter_mut().zip(&first) {
            assert_eq!(conn(&get(s, buf, "/conn").1), (*id, n, *worker));
        }
    }
}

/// A metric's value (exact name and labels).
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .trim()
        .parse::<f64>()
        .unwrap() as u64
}

#[test]
fn metrics_are_the_sum_of_the_workers_and_each_worker_pools_its_own() {
    let origin = Proc::start(&["--threads", "2", "origin", "--listen", "127.0.0.1:0"], 1);
    let upstream = origin.addr("origin").to_string();
    let proxy = two_worker_proxy(&upstream);
    let (addr, admin) = (proxy.addr("proxy"), proxy.addr("admin"));
    // 12 connections, 3 requests each, one after the other: each worker
    // serving some opens one upstream connection and reuses it after.
    let mut upstream_conns = Vec::new();
    for _ in 0..12 {
        let (mut s, mut buf) = (connect(addr), Vec::new());
        for _ in 0..3 {
            let (code, body) = get(&mut s, &mut buf, "/conn");
            assert_eq!(code, 200, "{body}");
            upstream_conns.push(conn(&body).0);
        }
    }
    let (mut a, mut buf) = (connect(admin), Vec::new());
    let (code, text) = get(&mut a, &mut buf, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(
        metric(&text, "drainpipe_requests_total{listener=\"proxy\"}"),
        36
    );
    assert_eq!(
        metric(
            &text,
            "drainpipe_connections_accepted_total{listener=\"proxy\"}"
        ),
        12
    );
    let opened = metric(
        &text,
        "drainpipe_upstream_connections_opened_total{proxy=\"proxy\"}",
    );
    let reused = metric(
        &text,
        "drainpipe_upstream_requests_reused_total{proxy=\"proxy\"}",
    );
    assert_eq!(opened + reused, 36, "{text}");
    // One upstream connection per proxy worker: both served (12
    // connections all on one worker: 1 in 2,048), neither used the other's.
    assert_eq!(opened, 2, "{text}");
    let mut distinct = upstream_conns.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 2, "upstream connections {distinct:?}");
}

// `/status` with `--threads 2`: each listener row has one row per worker
// (JSON and the page as served), the workers' figures add up to the
// listener's, both workers hold some of the connections (SO_REUSEPORT spread
// them), and `/metrics` says the same per worker in families that
// `promtool check metrics` accepts.
#[test]
fn status_has_a_row_per_worker_and_they_add_up() {
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let upstream = origin.addr("origin").to_string();
    let proxy = two_worker_proxy(&upstream);
    let (addr, admin) = (proxy.addr("proxy"), proxy.addr("admin"));
    // 24 connections kept open, with 1, 2 or 3 requests each: 48 requests.
    let mut conns = Vec::new();
    for i in 0..24 {
        let (mut s, mut buf) = (connect(addr), Vec::new());
        for _ in 0..=i % 3 {
            assert_eq!(get(&mut s, &mut buf, "/").0, 200);
        }
        conns.push(s);
    }
    let fetch = |path: &str| {
        let (mut s, mut buf) = (connect(admin), Vec::new());
        let (code, body) = get(&mut s, &mut buf, path);
        assert_eq!(code, 200, "{path}: {body}");
        body
    };
    // Every connection between requests (idle, or parked after 1 s): the
    // states are settled.
    let deadline = Instant::now() + Duration::from_secs(5);
    let listener = loop {
        let status: serde_json::Value = serde_json::from_str(&fetch("/status.json")).unwrap();
        let l = status["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "proxy")
            .unwrap_or_else(|| panic!("no proxy listener: {status}"))
            .clone();
        let waiting =
            l["states"]["idle"].as_u64().unwrap() + l["states"]["parked"].as_u64().unwrap();
        if waiting == 24 {
            break l;
        }
        assert!(Instant::now() < deadline, "not all between requests: {l}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(listener["open"], 24, "{listener}");
    assert_eq!(listener["accepted"], 24, "{listener}");
    assert_eq!(listener["requests"], 48, "{listener}");
    let workers = listener["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{listener}");
    let n = |w: &serde_json::Value, path: &[&str]| -> u64 {
        path.iter()
            .fold(w, |v, k| &v[*k])
            .as_u64()
            .unwrap_or_else(|| panic!("no {path:?} in {w}"))
    };
    for (i, w) in workers.iter().enumerate() {
        assert_eq!(w["worker"], i, "{w}");
        assert!(
            n(w, &["open"]) > 0,
            "both workers hold connections: {listener}"
        );
        let states: u64 = w["states"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(states, n(w, &["open"]), "each connection in one state: {w}");
    }
    for path in [
        &["open"][..],
        &["accepted"],
        &["requests"],
        &["closed"],
        &["states", "idle"],
        &["states", "parked"],
        &["states", "reading"],
        &["states", "writing"],
        &["responses", "2xx"],
    ] {
        assert_eq!(
            workers.iter().map(|w| n(w, path)).sum::<u64>(),
            n(&listener, path),
            "{path:?} adds up: {listener}"
        );
    }

    // The page as served (no script run): the same rows.
    let page = fetch("/status");
    for (i, w) in workers.iter().enumerate() {
        for field in ["open", "accepted", "requests"] {
            let cell = format!("id=\"proxy-w{i}-{field}\">{}<", n(w, &[field]));
            assert!(page.contains(&cell), "no {cell} in the page:\n{page}");
        }
        assert!(
            page.contains(&format!("<td>proxy · worker {i}</td>")),
            "{page}"
        );
    }

    // /metrics: the same figures per worker, adding up to the listener's.
    let text = fetch("/metrics");
    for (i, w) in workers.iter().enumerate() {
        let l = format!("listener=\"proxy\",worker=\"{i}\"");
        for (family, field) in [
            ("drainpipe_worker_connections_open", "open"),
            ("drainpipe_worker_connections_accepted_total", "accepted"),
            ("drainpipe_worker_requests_total", "requests"),
        ] {
            assert_eq!(
                metric(&text, &format!("{family}{{{l}}}")),
                n(w, &[field]),
                "{family}"
            );
        }
    }
    let per_state: u64 = (0..2)
        .flat_map(|i| {
            ["reading", "writing", "idle", "parked", "lingering"].map(|state| {
                metric(
                    &text,
                    &format!("drainpipe_worker_connections{{listener=\"proxy\",worker=\"{i}\",state=\"{state}\"}}"),
                )
            })
        })
        .sum();
    assert_eq!(per_state, 24, "{text}");
    common::assert_promtool_accepts(&text);
    drop(conns);
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    /// Requests that got no whole response on a connection that had
    /// already been answered: lost by the server.
    lost: AtomicU64,
    /// Connections refused, or reset before their first response (the
    /// kernel had queued them on a listening socket that then closed; the
    /// server never saw them, and a client retries them safely).
    refused: AtomicU64,
}

/// A keep-alive client with `think` between requests, until refused or
/// `stop`.
fn client(addr: SocketAddr, tally: &Tally, stop: &AtomicBool, think: Duration) {
    let mut conn: Option<(TcpStream, Vec<u8>, bool)> = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if conn.is_none() {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    conn = Some((s, Vec::new(), false));
                }
                Err(_) => {
                    tally.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        let (s, buf, answered) = conn.as_mut().unwrap();
        let result = s
            .write_all(b"GET /delay/5 HTTP/1.1\r\nHost: a\r\n\r\n")
            .and_then(|()| read_response(s, buf));
        match result {
            Ok((head, body)) => {
                assert_eq!(body, b"Hello, World!");
                tally.ok.fetch_add(1, Ordering::Relaxed);
                *answered = true;
                if head.contains("\r\nconnection: close") {
                    conn = None;
                }
            }
            Err(e) if !*answered => {
                eprintln!("not accepted: {e}");
                tally.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                eprintln!("lost: {e}");
                tally.lost.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
        std::thread::sleep(think);
    }
}

#[test]
fn a_drain_under_load_on_two_workers_loses_nothing() {
    let scratch = Scratch::new("workers-drain");
    let origin = Proc::start(&["--threads", "2", "origin", "--listen", "127.0.0.1:0"], 1);
    let upstream = origin.addr("origin");
    let config = scratch.path("proxy.toml");
    write_proxy_config(
        &config,
        upstream,
        "[drain]\ndelay = \"500ms\"\ntimeout = \"10s\"\n",
    );
    let mut proxy = Proc::start(
        &[
            "--threads",
            "2",
            "proxy",
            "--config",
            config.to_str().unwrap(),
        ],
        1,
    );
    let addr = proxy.addr("proxy");
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (tally, stop) = (tally.clone(), stop.clone());
            std::thread::spawn(move || client(addr, &tally, &stop, Duration::from_millis(10)))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let before = tally.ok.load(Ordering::Relaxed);
    let status = Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = proxy.wait_exit(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(exited.success(), "{exited:?}");
    let (ok, lost) = (
        tally.ok.load(Ordering::Relaxed),
        tally.lost.load(Ordering::Relaxed),
    );
    eprintln!(
        "drain under load: {ok} answered ({} during the drain), {lost} lost, {} refused",
        ok - before,
        tally.refused.load(Ordering::Relaxed)
    );
    assert!(before > 50, "load before the drain: {before}");
    assert!(ok > before, "answered during the drain delay");
    assert_eq!(lost, 0);
    let log = proxy.log();
    let drained = log
        .lines()
        .find(|l| l.contains("drained") && l.contains("listener=\"proxy\""))
        .unwrap_or_else(|| panic!("no drain report:\n{log}"));
    assert!(drained.contains("cut=0"), "{drained}");
}

/// The names of a process's threads, once one is named `wanted` (within
/// 5 s: its addresses are printed before its workers start).
fn threads_of(pid: u32, wanted: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let names = thread_names(pid);
        if names.iter().any(|n| n == wanted) || Instant::now() >= deadline {
            return names;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(|t| {
                    std::fs::read_to_string(t.ok()?.path().join("comm"))
                        .ok()
                        .map(|c| c.trim().to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

// The old process runs one worker per CPU (at least two sockets); its
// successor, started with one CPU (the affinity its parent's main thread
// passes on, which is how the default worker count of a successor can
// differ), runs one worker, which accepts on every socket handed over: no
// new connection waits on a socket nobody accepts from.
#[test]
fn a_successor_with_fewer_workers_accepts_on_every_socket_handed_over() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("SKIPPED: one CPU, so one worker and one socket");
        return;
    }
    if !common::peer("taskset") {
        return;
    }
    let mut scratch = Scratch::new("workers-fewer");
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let upstream = origin.addr("origin").to_string();
    let mut old = Proc::start(
        &["proxy", "--listen", "127.0.0.1:0", "--upstream", &upstream],
        1,
    );
    let addr = old.addr("proxy");
    let threads = threads_of(old.pid(), "drainpipe-1");
    assert!(threads.contains(&"drainpipe-1".to_string()), "{threads:?}");
    // Only the main thread (which starts the successor) moves to CPU 0.
    let pinned = Command::new("taskset")
        .args(["-p", "1", &old.pid().to_string()])
        .output()
        .unwrap();
    assert!(pinned.status.success(), "{pinned:?}");
    let status = Command::new(common::BIN)
        .args(["upgrade", &old.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = old.wait_exit(Duration::from_secs(10));
    assert!(exited.success(), "{exited:?}");
    let log = old.log_once("successor=", Duration::from_secs(2));
    let successor: u32 = log
        .lines()
        .find_map(|l| l.split("successor=").nth(1))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no successor pid in the log:\n{log}"));
    scratch.kill.push(successor);
    // Its workers all started before it reported ready.
    let threads = threads_of(successor, "drainpipe-0");
    assert!(
        threads.contains(&"drainpipe-0".to_string())
            && !threads.contains(&"drainpipe-1".to_string()),
        "one worker: {threads:?}"
    );
    for _ in 0..40 {
        let (mut s, mut buf) = (connect(addr), Vec::new());
        assert_eq!(get(&mut s, &mut buf, "/").0, 200);
    }
}

/// `drainpipe --threads 2 proxy` in front of `upstream`, with an admin
/// listener.
fn two_worker_proxy(upstream: &str) -> Proc {
    Proc::start(
        &[
            "--threads",
            "2",
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            upstream,
            "--admin",
            "127.0.0.1:0",
        ],
        2,
    )
}
