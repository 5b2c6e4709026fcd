//! What the binary's tests share: a running `drainpipe` (killed on drop) with
//! the addresses it printed and its log, and the external peers the tests
//! drive (a missing one skips its test, or fails it under
//! `DRAINPIPE_REQUIRE_PEERS=1`).

// Each test file uses its own part of this.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_drainpipe");

/// A running `drainpipe`, killed on drop.
pub struct Proc {
    pub child: Child,
    /// The addresses it printed, by role ("origin", "proxy", "admin", …).
    addrs: Vec<(String, SocketAddr)>,
    /// Its later stdout lines (a successor after an upgrade prints there too).
    lines: Receiver<String>,
    /// Its stderr (the log) so far.
    log: Arc<Mutex<String>>,
    log_reader: Option<JoinHandle<()>>,
}

impl Proc {
    /// `drainpipe ARGS`, once it printed `expect` addresses.
    pub fn start(args: &[&str], expect: usize) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        Proc::spawn(cmd, expect)
    }

    /// `cmd` (drainpipe, maybe behind a wrapper such as prlimit), once it
    /// printed `expect` addresses.
    pub fn spawn(mut cmd: Command, expect: usize) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("drainpipe starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let log_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut p = Proc {
            child,
            addrs: Vec::new(),
            lines,
            log,
            log_reader: Some(log_reader),
        };
        while p.addrs.len() < expect {
            let line = p.next_line().unwrap_or_else(|| {
                panic!(
                    "drainpipe {:?} did not print its addresses:\n{}",
                    cmd.get_args().collect::<Vec<_>>(),
                    p.log()
                )
            });
            let role = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let addr = address_in(&line);
            p.addrs.push((role, addr));
        }
        p
    }

    /// The address printed for `role`.
    pub fn addr(&self, role: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(r, _)| r == role)
            .unwrap_or_else(|| panic!("no {role} address among {:?}", self.addrs))
            .1
    }

    /// The addresses in the order printed.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.addrs.iter().map(|(_, a)| *a).collect()
    }

    /// The next stdout line, within 10 s.
    pub fn next_line(&self) -> Option<String> {
        self.lines.recv_timeout(Duration::from_secs(10)).ok()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log (stderr) so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log once it contains `text`, or as it is after `within`.
    pub fn log_once(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if log.contains(text) || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process and returns its whole log.
    pub fn kill_for_log(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
        self.log()
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "drainpipe did not exit in {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a proxy configuration to `path`: one listener on a free port, one
/// upstream group `app` of `upstream`, the route `/` to it, then `extra`
/// (more sections, e.g. `[drain]`).
#[allow(dead_code)] // not every test binary writes one
pub fn write_proxy_config(path: &std::path::Path, upstream: impl std::fmt::Display, extra: &str) {
    std::fs::write(
        path,
        format!(
            "[[listener]]\nlisten = \"127.0.0.1:0\"\n\n[[upstream]]\nname = \"app\"\nservers = [\"{upstream}\"]\n\n\
[[route]]\npath = \"/\"\nupstream = \"app\"\n\n{extra}"
        ),
    )
    .unwrap();
}

/// The address in a "… listening on http://ADDR" (or https://) line.
pub fn address_in(line: &str) -> SocketAddr {
    line.trim()
        .rsplit("://")
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// `drainpipe VERB --pid-file FILE` (`reload` or `upgrade`), which waits for
/// the outcome: its exit code and stderr.
pub fn control(verb: &str, pid_file: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args([verb, "--pid-file", pid_file.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pid a pid file names (after a reload or an upgrade: the successor).
pub fn pid_in(pid_file: &std::path::Path) -> u32 {
    let text = std::fs::read_to_string(pid_file).unwrap();
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("no pid in {}: {text:?}", pid_file.display()))
}

/// Asserts that `promtool check metrics` accepts `text` without a word
/// (when promtool is installed; required with `DRAINPIPE_REQUIRE_PEERS=1`).
pub fn assert_promtool_accepts(text: &str) {
    use std::io::Write as _;
    if !peer("promtool") {
        return;
    }
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

/// Whether the peer program `name` is installed; when it is not, the test
/// says it is skipped, or fails under `DRAINPIPE_REQUIRE_PEERS=1`.
pub fn peer(name: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert_ne!(
            std::env::var("DRAINPIPE_REQUIRE_PEERS").as_deref(),
            Ok("1"),
            "peer `{name}` is required"
        );
        eprintln!("SKIPPED: peer `{name}` is not installed");
    }
    ok
}

/// `curl -sS --max-time 20 ARGS`: its stdout and stderr.
pub fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Reads from `s` until `buf` holds one whole response (its body sized by
/// `Content-Length`, none without it), takes it out of `buf` (what follows
/// stays for the next) and returns its head, lower-cased, and its body. EOF
/// before that is an `UnexpectedEof` error naming what had arrived.
pub fn read_response(
    s: &mut impl std::io::Read,
    buf: &mut Vec<u8>,
) -> std::io::Result<(String, Vec<u8>)> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                return Ok((head, body));
            }
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "EOF before a whole response: {:?}",
                    String::from_utf8_lossy(buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A temporary directory of the test's own (removed with what it holds on
/// drop), and the pids to kill then.
pub struct Scratch {
    pub dir: std::path::PathBuf,
    pub kill: Vec<u32>,
}

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("drainpipe-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch {
            dir,
            kill: Vec::new(),
        }
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for pid in &self.kill {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
