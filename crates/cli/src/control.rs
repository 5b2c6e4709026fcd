//! `drainpipe upgrade` and `drainpipe reload`: signal a running drainpipe
//! (never a process that is not one) and wait for the outcome.
//!
//! The outcome travels through a status file, `drainpipe-PID.handoff` in the
//! temporary directory, named by the signalled process's id: the command
//! creates it empty before signalling (someone is waiting), the running
//! process replaces it atomically once its successor serves (`ok PID`) or has
//! failed (`error REASON`), and the command reads and removes it. A signal
//! sent by hand (no file) leaves nothing behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::pidfile;

/// How long a command waits for the outcome: the hand-off's own bound (30 s)
/// and a margin.
const WAIT: Duration = Duration::from_secs(35);

/// What to ask of the running process.
#[derive(Debug, Clone, Copy)]
pub enum Ask {
    /// SIGHUP: re-read the configuration.
    Reload,
    /// SIGUSR2: hand over to the binary now on disk.
    Upgrade,
}

/// Where this process reports the outcome of its last hand-off: its own
/// temporary directory.
pub fn status_path(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("drainpipe-{pid}.handoff"))
}

/// The same file as process `pid` sees it, from another process: its
/// `TMPDIR` (or `/tmp`) seen through `/proc/PID/root`, so a service with a
/// private `/tmp` (systemd's `PrivateTmp=yes`) is reached too. When that is
/// the directory this process sees under the same name (the usual case), the
/// plain path is used; otherwise the directory is held open and reached
/// through `/proc/self/fd`, which outlives the process (it may exit right
/// after it reports). Falls back to this process's view.
fn status_path_of(pid: u32) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let name = format!("drainpipe-{pid}.handoff");
    let tmp = std::fs::read(format!("/proc/{pid}/environ"))
        .ok()
        .and_then(|env| {
            env.split(|b| *b == 0)
                .find_map(|kv| kv.strip_prefix(b"TMPDIR=").map(|v| v.to_vec()))
        })
        .map(|v| PathBuf::from(String::from_utf8_lossy(&v).into_owned()))
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let theirs =
        PathBuf::from(format!("/proc/{pid}/root")).join(tmp.strip_prefix("/").unwrap_or(&tmp));
    let Ok(dir) = std::fs::File::open(&theirs) else {
        return status_path(pid);
    };
    let same = match (dir.metadata(), std::fs::metadata(&tmp)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    if same {
        return tmp.join(name);
    }
    // Held open for the rest of this short-lived command.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&dir);
    std::mem::forget(dir);
    PathBuf::from(format!("/proc/self/fd/{fd}")).join(name)
}

/// In the running process: records the outcome of a hand-off, if a command
/// waits for it.
pub fn report(outcome: Result<u32, &str>) {
    let path = status_path(std::process::id());
    if !path.exists() {
        return;
    }
    let text = match outcome {
        Ok(successor) => format!("ok {successor}\n"),
        Err(reason) => format!("error {}\n", reason.lines().next().unwrap_or("failed")),
    };
    if let Err(e) = pidfile::write_atomically(&path, &text) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the hand-off status");
    }
}

/// The subcommands that serve a configuration (and so reload and hand over).
const SERVES_A_CONFIG: [&str; 2] = ["proxy", "forward"];

/// The subcommand process `pid` runs (`None`: the default configuration, or
/// unknown), from its command line, global flags skipped.
fn subcommand(pid: i32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = cmdline
        .split(|b| *b == 0)
        .skip(1)
        .map(|a| String::from_utf8_lossy(a).into_owned());
    while let Some(arg) = args.next() {
        if arg == "--threads" {
            args.next();
        } else if !arg.starts_with('-') && !arg.is_empty() {
            return Some(arg);
        }
    }
    None
}

/// Removes the status file when the command stops waiting.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Whether process `pid` runs (exists and is not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// `drainpipe reload|upgrade [PID | --pid-file FILE]`.
pub fn run(ask: Ask, pid: Option<i32>, pid_file: Option<&Path>) -> Result<(), String> {
    let pid = match (pid, pid_file) {
        (Some(pid), _) => pid,
        (None, Some(path)) => pidfile::read(path)?,
        (None, None) => return Err("give the process id: PID or --pid-file FILE".into()),
    };
    pidfile::is_drainpipe(pid).map_err(|e| format!("{e}; not signalled"))?;
    if let Some(other) = subcommand(pid).filter(|c| !SERVES_A_CONFIG.contains(&c.as_str())) {
        return Err(format!(
            "process {pid} runs `drainpipe {other}`, which has no configuration to reload or listeners to hand over; not signalled"
        ));
    }
    let status = status_path_of(pid as u32);
    let _ = std::fs::remove_file(&status);
    std::fs::File::create(&status)
        .map_err(|e| format!("cannot create {}: {e}", status.display()))?;
    let waiting = RemoveOnDrop(&status);
    let (signal, verb) = match ask {
        Ask::Reload => (Signal::SIGHUP, "reload"),
        Ask::Upgrade => (Signal::SIGUSR2, "upgrade"),
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .map_err(|e| format!("cannot signal process {pid}: {e}"))?;
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        if !text.is_empty() {
            drop(waiting);
            let text = text.trim();
            if let Some(successor) = text.strip_prefix("ok ") {
                println!("{verb}: process {pid} handed over to process {successor}, which serves");
                return Ok(());
            }
            let reason = text.strip_prefix("error ").unwrap_or(text);
            return Err(format!(
                "{verb} failed: {reason}; process {pid} keeps serving as before"
            ));
        }
        if !alive(pid) {
            return Err(format!("{verb}: process {pid} exited without reporting"));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{verb}: no outcome from process {pid} in {}s (see its log)",
                WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
