//! Reload and upgrade as an operator drives them: `drainpipe reload` with a
//! changed file (applied: new listener, new settings, the pid file names the
//! successor) or a broken one (refused with file, key and line; the process
//! serves on unchanged); a successor that fails is reported at once; SIGTERM
//! during a pending upgrade is honoured; a PID that is not drainpipe is never
//! signalled.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{Proc, Scratch, BIN};

/// A proxy config: one listener, the origin behind it, `via` as its name.
fn proxy_config(listen: &str, origin: SocketAddr, via: &str) -> String {
    format!(
        "[[listener]]\nlisten = \"{listen}\"\n\n[[upstream]]\nname = \"o\"\nservers = [\"{origin}\"]\n\n\
[[route]]\npath = \"/\"\nupstream = \"o\"\n\n[proxy]\nvia = \"{via}\"\n\n[drain]\ndelay = \"100ms\"\nspread = \"0s\"\n"
    )
}

/// One request with `Connection: close`: the whole response.
fn get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")?;
    let mut got = String::new();
    s.read_to_string(&mut got)?;
    Ok(got)
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn pid_in(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn drainpipe(args: &[&str]) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn a_broken_file_is_refused_with_its_line_and_the_process_serves_on() {
    let mut scratch = Scratch::new("reload-bad");
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let (config, pid_file) = (scratch.path("p.toml"), scratch.path("p.pid"));
    std::fs::write(
        &config,
        proxy_config("127.0.0.1:0", origin.addr("origin"), "v1"),
    )
    .unwrap();
    let proxy = Proc::start(
        &[
            "proxy",
            "--config",
            config.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
        1,
    );
    scratch.kill.push(proxy.pid());
    let addr = proxy.addr("proxy");
    assert_eq!(pid_in(&pid_file), proxy.pid());

    std::fs::write(
        &config,
        proxy_config("127.0.0.1:0", origin.addr("origin"), "v2")
            .replace("path = \"/\"", "path = \"x\""),
    )
    .unwrap();
    let (code, _, err, took) = drainpipe(&["reload", "--pid-file", pid_file.to_str().unwrap()]);
    let want = format!(
        "drainpipe: reload failed: {}: route[0].path: must start with '/' (line 9); process {} keeps serving as before",
        config.display(),
        proxy.pid()
    );
    assert_eq!((code, err.trim_end()), (Some(1), want.as_str()));
    assert!(took < Duration::from_secs(5), "{took:?}");
    let log = proxy.log_once("reload refused", Duration::from_secs(2));
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("reload refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{log}");
    assert!(
        refused[0].contains("route[0].path: must start with '/' (line 9)"),
        "{log}"
    );
    // Same process, same settings, same pid file.
    let got = get(addr).unwrap();
    assert!(
        got.contains("via: 1.1 v1") && got.ends_with("Hello, World!"),
        "{got}"
    );
    assert_eq!(pid_in(&pid_file), proxy.pid());
    // A plain SIGHUP does the same and never kills it.
    let _ = Command::new("kill")
        .args(["-HUP", &proxy.pid().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.log().matches("reload refused").count() < 2 {
        assert!(Instant::now() < deadline, "{}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(get(addr).unwrap().contains("via: 1.1 v1"));
    // Nobody waited for that one: no status file left behind.
    let status = std::env::temp_dir().join(format!("drainpipe-{}.handoff", proxy.pid()));
    assert!(!status.exists());
}

#[test]
fn a_changed_file_is_applied_through_a_successor() {
    let mut scratch = Scratch::new("reload-good");
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let (config, pid_file) = (scratch.path("p.toml"), scratch.path("p.pid"));
    std::fs::write(
        &config,
        proxy_config("127.0.0.1:0", origin.addr("origin"), "v1"),
    )
    .unwrap();
    let mut old = Proc::start(
        &[
            "proxy",
            "--config",
            config.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
        1,
    );
    scratch.kill.push(old.pid());
    let first = old.addr("proxy");
    assert!(get(first).unwrap().contains("via: 1.1 v1"));

    // The new file moves the listener and renames the proxy.
    let second = free_port();
    std::fs::write(
        &config,
        proxy_config(&second.to_string(), origin.addr("origin"), "v2"),
    )
    .unwrap();
    let (code, out, err, took) = drainpipe(&["reload", "--pid-file", pid_file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let successor = pid_in(&pid_file);
    scratch.kill.push(successor);
    assert_ne!(successor, old.pid());
    assert_eq!(
        out.trim(),
        format!(
            "reload: process {} handed over to process {successor}, which serves",
            old.pid()
        )
    );
    let got = get(second).unwrap();
    assert!(
        got.contains("via: 1.1 v2") && got.ends_with("Hello, World!"),
        "{got}"
    );
    // The old process drains and exits; the listener no longer configured is
    // closed (refused, not left queueing).
    assert!(old.wait_exit(Duration::from_secs(10)).success());
    let refused = get(first).unwrap_err();
    assert_eq!(
        refused.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{refused}"
    );
    // The successor owns the pid file now: the old one's exit left it.
    assert_eq!(pid_in(&pid_file), successor);
    // And it removes it when it exits.
    let _ = Command::new("kill")
        .args(["-TERM", &successor.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_file.exists());
    // Its log still reaches the stderr the first process was given: what it
    // said while starting (relayed by the old process) and after the old
    // process exited (its own, taken over).
    let log = old.log_once("signal received: draining", Duration::from_secs(5));
    assert!(log.contains("took over the listeners; serving"), "{log}");
    assert!(log.contains("signal received: draining"), "{log}");
}

#[test]
fn a_failing_successor_is_reported_at_once_and_the_old_process_serves_on() {
    let mut scratch = Scratch::new("upgrade-fail");
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let (config, pid_file) = (scratch.path("p.toml"), scratch.path("p.pid"));
    std::fs::write(
        &config,
        proxy_config("127.0.0.1:0", origin.addr("origin"), "v1"),
    )
    .unwrap();
    let proxy = Proc::start(
        &[
            "proxy",
            "--config",
            config.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
        1,
    );
    scratch.kill.push(proxy.pid());
    // An upgrade does not check the file first: the successor reads it, fails,
    // and says why.
    std::fs::write(&config, "[server]\nidle_timeout = \"soon\"\n").unwrap();
    let (code, _, err, took) = drainpipe(&["upgrade", "--pid-file", pid_file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let reason = format!(
        "successor failed: {}: server.idle_timeout: invalid duration \"soon\"",
        config.display()
    );
    assert!(
        err.starts_with(&format!("drainpipe: upgrade failed: {reason}")),
        "{err}"
    );
    let log = proxy.log_once("upgrade failed", Duration::from_secs(2));
    assert!(log.contains(&format!("upgrade failed: {reason}")), "{log}");
    let got = get(proxy.addr("proxy")).unwrap();
    assert!(got.ends_with("Hello, World!"), "{got}");
    assert_eq!(pid_in(&pid_file), proxy.pid());
}

#[test]
fn sigterm_during_a_pending_upgrade_stops_the_successor_then_drains() {
    let mut scratch = Scratch::new("upgrade-term");
    // The credentials file is a FIFO: each read of it waits for a writer, so
    // the successor hangs while starting, for as long as the test likes.
    let fifo = scratch.path("users");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let feed = |n: usize| {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            for _ in 0..n {
                let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                f.write_all(b"u:p\n").unwrap();
                drop(f);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // Two reads at start: the check, then the service.
    let fed = feed(2);
    let mut old = Proc::start(
        &[
            "forward",
            "--listen",
            "127.0.0.1:0",
            "--credentials",
            fifo.to_str().unwrap(),
        ],
        1,
    );
    scratch.kill.push(old.pid());
    fed.join().unwrap();
    let _ = Command::new("kill")
        .args(["-USR2", &old.pid().to_string()])
        .status();
    // The successor starts and waits on the FIFO.
    let children = format!("/proc/{0}/task/{0}/children", old.pid());
    let deadline = Instant::now() + Duration::from_secs(5);
    let successor: u32 = loop {
        let text = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(pid) = text.split_whitespace().next() {
            break pid.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no successor started");
        std::thread::sleep(Duration::from_millis(20));
    };
    scratch.kill.push(successor);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &old.pid().to_string()])
        .status();
    assert!(old.wait_exit(Duration::from_secs(5)).success());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let log = old.kill_for_log();
    assert!(
        log.contains("upgrade abandoned: the successor is stopped"),
        "{log}"
    );
    // The successor was killed and reaped by the old process.
    assert!(!Path::new(&format!("/proc/{successor}")).exists(), "{log}");
}

#[test]
fn a_pid_that_is_not_drainpipe_is_not_signalled() {
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id().to_string();
    for verb in ["upgrade", "reload"] {
        let (code, _, err, _) = drainpipe(&[verb, &pid]);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.starts_with(&format!(
                "drainpipe: process {pid} is not drainpipe (it runs "
            )) && err.trim_end().ends_with("; not signalled"),
            "{err}"
        );
    }
    // Still alive: SIGUSR2 or SIGHUP would have killed it.
    assert!(sleeper.try_wait().unwrap().is_none());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    // A drainpipe that serves no configuration: told so at once.
    let origin = Proc::start(&["origin", "--listen", "127.0.0.1:0"], 1);
    let (code, _, err, took) = drainpipe(&["reload", &origin.pid().to_string()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        err.contains("runs `drainpipe origin`, which has no configuration to reload"),
        "{err}"
    );
    let (code, _, err, _) = drainpipe(&["reload", "--pid-file", "/nonexistent/d.pid"]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("drainpipe: cannot read pid file /nonexistent/d.pid"),
        "{err}"
    );
    let (code, _, err, _) = drainpipe(&["reload"]);
    assert_eq!(code, Some(2), "{err}");
}
