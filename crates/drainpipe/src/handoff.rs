//! Listener hand-off for zero-downtime restarts: the running process starts
//! its successor and passes it the listening sockets themselves (file
//! descriptors over a Unix socket, `SCM_RIGHTS`), so no connection is refused
//! and none waiting in the accept queue is lost. Once the successor says it is
//! serving, the old process drains and exits.
//!
//! ```text
//!  old process                                   new process
//!  ───────────                                   ───────────
//!  bind Unix socket, start successor ──────────▶ sees DRAINPIPE_HANDOFF
//!  accept ◀───────────────────────────────────── connect
//!  send names + fds (one message) ─────────────▶ receive, rebuild listeners,
//!                                                 start serving
//!  read "ready" ◀──────────────────────────────── write "ready"
//!  drain, exit                                    (serves alone)
//! ```
//!
//! Both processes accept on the same sockets for a moment; the kernel hands
//! each waiting connection to exactly one of them.
//!
//! The old process keeps no copy of a listener for this: its accept loop holds
//! the only strong handle ([`Listen`](crate::server::Listen)), the hand-off
//! side a [`Weak`](std::sync::Weak) one, upgraded only while the hand-off
//! runs. So when a listener stops accepting (a drain), the socket closes
//! everywhere in the process and new clients are refused at once, while
//! during a hand-off the successor holds the socket and nothing is refused.
//!
//! A successor that cannot serve writes `error: REASON` instead of `ready`
//! and exits; one that exits without a word is noticed at once too (its exit
//! status and the last line it wrote to stderr are the reason). Until it is
//! ready, the successor's stderr is a pipe the old process reads, relays to
//! its own stderr and remembers the last line of; the old process's stderr
//! travels with the listeners, and the successor puts it back in place as
//! its own when it reports ready (so its log does not depend on a process
//! that is about to exit). Either way the hand-off fails at once, the
//! successor is gone, and the old process goes on serving. Dropping the
//! hand-off future (the old process was told to stop meanwhile) kills the
//! successor.

use std::ffi::OsString;
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use tokio::io::AsyncReadExt;
use tokio::net::UnixListener;

/// The environment variable naming the Unix socket a successor takes its
/// listeners from.
pub const ENV: &str = "DRAINPIPE_HANDOFF";

const GREETING: &str = "drainpipe-handoff 1";
/// The name the old process's stderr travels under (no listener's name
/// starts with `@`).
const STDERR: &str = "@stderr";
/// Most listening sockets one hand-off carries (one per worker and address):
/// the kernel passes at most 253 descriptors in one message (`SCM_MAX_FD`),
/// one of which is stderr.
const MAX_LISTENERS: usize = 252;

/// A listener handed over: the name both processes know it by (the configured
/// address, say) and the socket.
#[derive(Debug)]
pub struct Handed {
    /// The name it was offered under.
    pub name: String,
    /// The listening socket.
    pub listener: Listener,
}

/// A listening socket passed in a hand-off: TCP or Unix (told apart by its
/// address family).
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(std::net::TcpListener),
    /// A Unix socket listener.
    Unix(std::os::unix::net::UnixListener),
}

impl Listener {
    /// The listener of a received descriptor, non-blocking.
    fn of(fd: OwnedFd) -> io::Result<Listener> {
        let unix = socket2::SockRef::from(&fd).local_addr()?.domain() == socket2::Domain::UNIX;
        let listener = if unix {
            Listener::Unix(std::os::unix::net::UnixListener::from(fd))
        } else {
            Listener::Tcp(std::net::TcpListener::from(fd))
        };
        match &listener {
            Listener::Tcp(l) => l.set_nonblocking(true)?,
            Listener::Unix(l) => l.set_nonblocking(true)?,
        }
        Ok(listener)
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }
}

/// The successor's end of a hand-off: tell the old process when serving.
#[derive(Debug)]
pub struct Successor {
    stream: StdUnixStream,
    /// The old process's stderr, to become this one's once ready.
    stderr: Option<OwnedFd>,
}

impl Successor {
    /// Tells the old process this one is serving; it then drains and exits.
    pub fn ready(mut self) -> io::Result<()> {
        if let Some(fd) = self.stderr.take() {
            nix::unistd::dup2_stderr(&fd).map_err(io::Error::from)?;
        }
        self.stream.write_all(b"ready\n")
    }

    /// Tells the old process this one cannot serve, and why (one line); it
    /// goes on serving.
    pub fn fail(mut self, reason: &str) -> io::Result<()> {
        let line = reason.lines().next().unwrap_or("failed");
        self.stream.write_all(format!("error: {line}\n").as_bytes())
    }
}

/// In a successor: the listeners offered on the socket named by
/// [`ENV`], if the variable is set (it is removed, so this process's own
/// successors start clean). `None` when this process was started normally.
pub fn inherit() -> io::Result<Option<(Vec<Handed>, Successor)>> {
    let Some(path) = std::env::var_os(ENV) else {
        return Ok(None);
    };
    // SAFETY (env): called at start-up, before any thread reads the environment.
    unsafe { std::env::remove_var(ENV) };
    let stream = StdUnixStream::connect(&path)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut text = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_LISTENERS]);
    let (len, fds) = {
        let mut iov = [IoSliceMut::new(&mut text)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(received) = c {
                fds.extend(received);
            }
        }
        (msg.bytes, fds)
    };
    // SAFETY: these descriptors were just received with SCM_RIGHTS: they are
    // new, open, and owned by nothing else in this process.
    let owned: Vec<OwnedFd> = fds
        .into_iter()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    let text = String::from_utf8_lossy(&text[..len]).into_owned();
    let mut lines = text.lines();
    if lines.next() != Some(GREETING) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a drainpipe hand-off",
        ));
    }
    let names: Vec<String> = lines.map(str::to_string).collect();
    if names.len() != owned.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "hand-off named {} listeners but passed {}",
                names.len(),
                owned.len()
            ),
        ));
    }
    let mut stderr = None;
    let handed = names
        .into_iter()
        .zip(owned)
        .filter_map(|(name, fd)| {
            if name == STDERR {
                stderr = Some(fd);
                None
            } else {
                Some((name, fd))
            }
        })
        .map(|(name, fd)| {
            Ok(Handed {
                name,
                listener: Listener::of(fd)?,
            })
        })
        .collect::<io::Result<Vec<_>>>()?;
    Ok(Some((handed, Successor { stream, stderr })))
}

/// In the running process: starts `program` with `args` as the successor,
/// passes it `listeners` (name, socket), and resolves once it reports it is
/// serving. On any failure (the successor's own report, its exit, or
/// `timeout`) the successor is killed and this process goes on serving; the
/// error says why. If the future is dropped before it resolves, the successor
/// is killed.
pub async fn hand_over<L: AsFd>(
    listeners: &[(String, L)],
    program: &Path,
    args: &[OsString],
    timeout: Duration,
) -> io::Result<Child> {
    if listeners.len() >= MAX_LISTENERS {
        return Err(io::Error::other("too many listeners to hand over"));
    }
    let path = socket_path();
    let _ = std::fs::remove_file(&path);
    let unix = UnixListener::bind(&path)?;
    let cleanup = RemoveOnDrop(path.clone());
    let mut spawned = Command::new(program)
        .args(args)
        .env(ENV, &path)
        .stderr(Stdio::piped())
        .spawn()?;
    let last_words = spawned.stderr.take().map(relay);
    let mut child = KillOnDrop(Some(spawned));
    let handed = async {
        let (mut stream, _) = unix.accept().await?;
        let mut text = String::from(GREETING);
        for (name, _) in listeners {
            text.push('\n');
            text.push_str(name);
        }
        text.push('\n');
        text.push_str(STDERR);
        let mut fds: Vec<RawFd> = listeners
            .iter()
            .map(|(_, l)| l.as_fd().as_raw_fd())
            .collect();
        fds.push(io::stderr().as_raw_fd());
        stream.writable().await?;
        sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(text.as_bytes())],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .map_err(io::Error::from)?;
        // One line: "ready", or "error: REASON"; EOF if it died first.
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while reply.len() < 4096 && stream.read(&mut byte).await? == 1 && byte[0] != b'\n' {
            reply.push(byte[0]);
        }
        match String::from_utf8_lossy(&reply).as_ref() {
            "ready" => Ok(()),
            "" => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "successor closed the hand-off without a word",
            )),
            other => Err(io::Error::other(format!(
                "successor failed: {}",
                other.strip_prefix("error: ").unwrap_or(other)
            ))),
        }
    };
    let exited = async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if let Some(status) = child.0.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return status;
            }
        }
    };
    // Biased: a successor that reported why it failed and then exited is
    // heard out (its report arrives before its exit).
    let result = tokio::select! {
        biased;
        r = tokio::time::timeout(timeout, handed) => r.unwrap_or_else(|_| {
            Err(io::Error::new(io::ErrorKind::TimedOut, "successor not ready in time"))
        }),
        status = exited => {
            let said = last_words.as_ref().map(|w| w.last(Duration::from_millis(200)));
            Err(io::Error::other(match said.filter(|l| !l.is_empty()) {
                Some(line) => format!("successor exited ({status}): {line}"),
                None => format!("successor exited ({status})"),
            }))
        }
    };
    drop(cleanup);
    result.map(|()| child.0.take().expect("still held"))
}

/// The last line a successor wrote to its stderr (the pipe [`relay`] reads).
struct LastWords {
    line: std::sync::Mutex<String>,
    ended: std::sync::atomic::AtomicBool,
}

impl LastWords {
    /// The last non-empty line, once the pipe ended or `wait` passed.
    fn last(&self, wait: Duration) -> String {
        let deadline = std::time::Instant::now() + wait;
        while !self.ended.load(std::sync::atomic::Ordering::Acquire)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.line.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Relays a successor's stderr to this process's, line by line, remembering
/// the last one; ends when the successor's end closes (at exit, or when it
/// takes over the stderr passed to it).
fn relay(pipe: std::process::ChildStderr) -> std::sync::Arc<LastWords> {
    let words = std::sync::Arc::new(LastWords {
        line: std::sync::Mutex::new(String::new()),
        ended: std::sync::atomic::AtomicBool::new(false),
    });
    let shared = words.clone();
    std::thread::spawn(move || {
        let mut pipe = std::io::BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match std::io::BufRead::read_until(&mut pipe, b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let _ = io::stderr().lock().write_all(&line);
                    let text = String::from_utf8_lossy(&line).trim().to_string();
                    if !text.is_empty() {
                        if let Ok(mut last) = shared.line.lock() {
                            *last = text;
                        }
                    }
                }
            }
        }
        shared
            .ended
            .store(true, std::sync::atomic::Ordering::Release);
    });
    words
}

/// The successor, killed and reaped on drop unless taken out.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn socket_path() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "drainpipe-handoff-{}-{nanos}.sock",
        std::process::id()
    ))
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A successor that exits without connecting is seen at once, with its
    // exit status, not after the timeout.
    #[tokio::test]
    async fn a_successor_that_exits_fails_the_hand_off_at_once() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let started = std::time::Instant::now();
        let err = hand_over(
            &[("proxy".into(), &l)],
            Path::new("sh"),
            &["-c".into(), "exit 3".into()],
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "successor exited (exit status: 3)");
        // With something said on stderr: that is the reason.
        let err = hand_over(
            &[("proxy".into(), &l)],
            Path::new("sh"),
            &[
                "-c".into(),
                "echo starting >&2; echo 'bad flag --x' >&2; exit 2".into(),
            ],
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "successor exited (exit status: 2): bad flag --x"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    // The old and new ends in one process: names and sockets arrive intact,
    // TCP and Unix listeners each as what they are, and the handed listener
    // accepts connections queued on the original.
    #[tokio::test]
    async fn listeners_pass_with_their_names() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b_path = socket_path().with_extension("b");
        let _ = std::fs::remove_file(&b_path);
        let b = std::os::unix::net::UnixListener::bind(&b_path).unwrap();
        let _b_cleanup = RemoveOnDrop(b_path.clone());
        let addr_a = a.local_addr().unwrap();
        let addr_b = format!("unix:{}", b_path.display());
        let path = socket_path();
        let unix = UnixListener::bind(&path).unwrap();
        let _cleanup = RemoveOnDrop(path.clone());
        // A connection waiting in a's accept queue before the hand-off.
        let waiting = std::net::TcpStream::connect(addr_a).unwrap();
        let receiver = std::thread::spawn(move || {
            // SAFETY (env): the test sets the variable for this one call.
            unsafe { std::env::set_var(ENV, &path) };
            let (handed, successor) = inherit().unwrap().unwrap();
            successor.ready().unwrap();
            handed
        });
        let (mut stream, _) = unix.accept().await.unwrap();
        let text = format!("{GREETING}\nproxy {addr_a}\nadmin {addr_b}");
        let fds = [a.as_raw_fd(), b.as_raw_fd()];
        stream.writable().await.unwrap();
        sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(text.as_bytes())],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let mut reply = [0u8; 6];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"ready\n");
        let handed = receiver.join().unwrap();
        assert_eq!(handed.len(), 2);
        assert_eq!(handed[0].name, format!("proxy {addr_a}"));
        assert_eq!(handed[1].name, format!("admin {addr_b}"));
        let Listener::Tcp(tcp) = &handed[0].listener else {
            panic!("{:?} is TCP", handed[0].listener);
        };
        let Listener::Unix(unix) = &handed[1].listener else {
            panic!("{:?} is Unix", handed[1].listener);
        };
        assert_eq!(tcp.local_addr().unwrap(), addr_a);
        assert_eq!(
            unix.local_addr().unwrap().as_pathname(),
            Some(b_path.as_path())
        );
        drop((a, b));
        tcp.set_nonblocking(false).unwrap();
        let (accepted, _) = tcp.accept().unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), waiting.local_addr().unwrap());
        let _client = std::os::unix::net::UnixStream::connect(&b_path).unwrap();
        unix.set_nonblocking(false).unwrap();
        assert!(unix.accept().is_ok(), "the handed Unix listener accepts");
    }
}
