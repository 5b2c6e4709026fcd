//! Zero-downtime upgrade under load: keep-alive clients hammer the proxy (on
//! two workers) for 20 s; halfway, `drainpipe upgrade PID` makes it hand its listening sockets
//! to a successor and drain. No request fails, no connection is refused, no
//! connection is reset. And with the default drain settings (no `[drain]`
//! section), five upgrades and reloads in a row under 32 clients that send
//! back to back and never retry lose nothing either.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{address_in, read_response, write_proxy_config, Proc, BIN};

/// Kills the successor (which no `Proc` owns) when the test ends.
struct Killer(Option<u32>);

impl Drop for Killer {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    reset: AtomicU64,
    reconnects: AtomicU64,
}

/// A strict keep-alive client (no retries): a request that gets no complete
/// response is a failure. It waits `think` between a response and its next
/// request (zero: back to back).
fn client(
    addr: SocketAddr,
    until: Instant,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    think: Duration,
) {
    let mut conn: Option<(TcpStream, Vec<u8>)> = None;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    conn = Some((s, Vec::new()));
                    tally.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    eprintln!("connect: {e}");
                    tally.refused.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        std::thread::sleep(think);
        let (stream, buf) = conn.as_mut().unwrap();
        let result = (|| -> std::io::Result<bool> {
            stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")?;
            let (head, body) = read_response(stream, buf)?;
            assert_eq!(body, b"Hello, World!");
            Ok(head.contains("\r\nconnection: close"))
        })();
        match result {
            Ok(close) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                if close {
                    conn = None;
                }
            }
            Err(e) => {
                eprintln!("request failed: {e}");
                if e.kind() == std::io::ErrorKind::ConnectionReset {
                    tally.reset.fetch_add(1, Ordering::Relaxed);
                }
                tally.failed.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
    }
}

#[test]
fn upgrade_under_load_loses_nothing() {
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let upstream = origin.addr("origin");
    let mut killer = Killer(None);

    let dir = std::env::temp_dir().join(format!("drainpipe-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("proxy.toml");
    write_proxy_config(
        &config,
        upstream,
        "[drain]\ndelay = \"1s\"\nspread = \"1s\"\n",
    );
    // Two workers: two listening sockets (one SO_REUSEPORT group), both
    // handed over.
    let mut old = Proc::start(
        &[
            "--threads",
            "2",
            "proxy",
            "--config",
            config.to_str().unwrap(),
        ],
        1,
    );
    let addr = old.addr("proxy");

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let until = started + Duration::from_secs(20);
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (tally, stop) = (tally.clone(), stop.clone());
            std::thread::spawn(move || client(addr, until, tally, stop, Duration::ZERO))
        })
        .collect();

    std::thread::sleep(Duration::from_secs(10));
    let before = tally.ok.load(Ordering::Relaxed);
    let status = Command::new(BIN)
        .args(["upgrade", &old.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The successor prints where it listens: the same address, taken over.
    let successor_addr = address_in(&old.next_line().expect("the successor's address"));
    assert_eq!(successor_addr, addr);
    // The old process drains and exits on its own.
    let exited = old.wait_exit(Duration::from_secs(8));
    assert!(exited.success(), "{exited:?}");
    let log = old.log_once("successor=", Duration::from_secs(2));
    let successor: u32 = log
        .lines()
        .find_map(|l| l.split("successor=").nth(1))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no successor pid in the log:\n{log}"));
    killer.0 = Some(successor);
    for c in clients {
        c.join().unwrap();
    }
    let after_upgrade = tally.ok.load(Ordering::Relaxed) - before;
    let (ok, failed, refused, reset, reconnects) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        tally.reset.load(Ordering::Relaxed),
        tally.reconnects.load(Ordering::Relaxed),
    );
    eprintln!(
        "upgrade under load: {ok} requests ({after_upgrade} after the upgrade), {failed} failed, \
{refused} refused, {reset} reset, {reconnects} connections opened"
    );
    assert_eq!((failed, refused, reset), (0, 0, 0));
    assert!(
        after_upgrade > 1000,
        "the successor served: {after_upgrade}"
    );
    // The successor is alive and serving after the old one left.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert!(got.ends_with("Hello, World!"), "{got}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn five_upgrades_and_reloads_with_the_default_config_lose_nothing() {
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let upstream = origin.addr("origin");
    let dir = std::env::temp_dir().join(format!("drainpipe-upgrade5-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (config, pid_file) = (dir.join("proxy.toml"), dir.join("proxy.pid"));
    // No [drain] section: the defaults.
    write_proxy_config(&config, upstream, "");
    let first = Proc::start(
        &[
            "proxy",
            "--config",
            config.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
        1,
    );
    let addr = first.addr("proxy");
    let mut killer = Killer(None);

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let until = Instant::now() + Duration::from_secs(60);
    // Half send back to back, half think 2 ms between requests (so most of
    // their connections are idle when a drain begins: the case a drain
    // without delay gets wrong).
    let clients: Vec<_> = (0..32)
        .map(|i| {
            let (tally, stop) = (tally.clone(), stop.clone());
            let think = Duration::from_millis(2 * (i % 2));
            std::thread::spawn(move || client(addr, until, tally, stop, think))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut pids = vec![first.pid()];
    // Upgrade, reload (the file changed), upgrade, reload, upgrade.
    for i in 0..5 {
        let verb = if i % 2 == 0 { "upgrade" } else { "reload" };
        if verb == "reload" {
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(&config, format!("{text}\n# reload {i}\n")).unwrap();
        }
        let status = Command::new(BIN)
            .args([verb, "--pid-file", pid_file.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!pids.contains(&pid));
        pids.push(pid);
        killer.0 = Some(pid);
        std::thread::sleep(Duration::from_millis(300));
    }
    // Every old process drains away while the clients go on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids[..5].iter().any(|p| alive(*p)) {
        assert!(Instant::now() < deadline, "old processes still running");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, failed, refused, reset, reconnects) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        tally.reset.load(Ordering::Relaxed),
        tally.reconnects.load(Ordering::Relaxed),
    );
    eprintln!(
        "five upgrades and reloads, default config: {ok} requests, {failed} failed, {refused} refused, \
{reset} reset, {reconnects} connections opened"
    );
    assert_eq!((failed, refused, reset), (0, 0, 0));
    assert!(
        reconnects >= 32 * 5,
        "each upgrade moved every client: {reconnects}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether process `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}
