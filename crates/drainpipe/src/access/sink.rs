//! Where access-log lines go: a file, stdout or stderr, written by a thread
//! of its own. A request only copies its line into a shared buffer (a short
//! lock, no system call); the writer thread writes the buffer out when 64 KiB
//! gathered, every second, on a flush and at the end. A stalled target (a
//! full pipe, a slow disk) therefore never stops serving: past 4 MiB waiting,
//! lines are dropped and counted (a warning at most once a minute). A write
//! that fails is dropped the same way.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
    /// A file, appended to (created if missing).
    File(PathBuf),
}

impl std::str::FromStr for Target {
    type Err = std::convert::Infallible;

    /// `"stdout"`, `"stderr"`, or a file's path.
    fn from_str(s: &str) -> Result<Target, Self::Err> {
        Ok(match s {
            "stdout" => Target::Stdout,
            "stderr" => Target::Stderr,
            path => Target::File(path.into()),
        })
    }
}

/// Bytes gathered before the writer is woken.
const BUFFER: usize = 64 * 1024;
/// Bytes that may wait for a stalled target; beyond, lines are dropped.
const MAX_PENDING: usize = 4 * 1024 * 1024;
/// The longest a line waits for a quiet log.
const EVERY: Duration = Duration::from_secs(1);

pub(super) struct Sink {
    target: Target,
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer (enough gathered, a flush, a reopen, the end).
    work: Condvar,
    /// Wakes those waiting for a flush to be done.
    done: Condvar,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// Lines dropped since the last warning.
    dropped: u64,
    /// Flushes asked for, and written.
    asked: u64,
    written: u64,
    /// A file opened again by name, to write to from now on.
    reopened: Option<Box<dyn Write + Send>>,
    closing: bool,
}

fn open(target: &Target) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        Target::Stdout => Box::new(std::io::stdout()),
        Target::Stderr => Box::new(std::io::stderr()),
        Target::File(path) => Box::new(open_file(path)?),
    })
}

fn open_file(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Sink {
    pub(super) fn open(target: Target) -> std::io::Result<Sink> {
        let out = open(&target)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let writer = {
            let shared = shared.clone();
            let target = target.clone();
            std::thread::Builder::new()
                .name("drainpipe-access-log".into())
                .spawn(move || write_loop(&shared, out, &target))?
        };
        Ok(Sink {
            target,
            shared,
            writer: Some(writer),
        })
    }

    pub(super) fn target(&self) -> &Target {
        &self.target
    }

    /// Queues one line (never blocks on the target).
    pub(super) fn write(&self, line: &[u8]) {
        let mut state = self.shared.lock();
        if state.pending.len() + line.len() > MAX_PENDING {
            state.dropped += 1;
            return;
        }
        state.pending.extend_from_slice(line);
        if state.pending.len() >= BUFFER {
            self.shared.work.notify_one();
        }
    }

    /// Writes out what is queued and waits until it is written (at most a
    /// few seconds: a stalled target is not waited for without end).
    pub(super) fn flush(&self) {
        self.flush_within(Duration::from_secs(5));
    }

    fn flush_within(&self, within: Duration) {
        let mut state = self.shared.lock();
        state.asked += 1;
        let ticket = state.asked;
        self.shared.work.notify_one();
        let deadline = Instant::now() + within;
        while state.written < ticket {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = self
                .shared
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Opens the file again by its name (after logrotate moved it): lines
    /// queued before go to the old file, later ones to the new.
    pub(super) fn reopen(&self) -> std::io::Result<()> {
        let Target::File(path) = &self.target else {
            self.flush();
            return Ok(());
        };
        let file = open_file(path)?;
        let mut state = self.shared.lock();
        state.reopened = Some(Box::new(file));
        self.shared.work.notify_one();
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The writer thread: takes what is queued and writes it, until the end.
fn write_loop(shared: &Shared, mut out: Box<dyn Write + Send>, target: &Target) {
    let mut spare = Vec::with_capacity(BUFFER);
    let mut last_warning: Option<Instant> = None;
    loop {
        let (reopened, asked, dropped, closing) = {
            let mut state = shared.lock();
            while state.pending.len() < BUFFER
                && state.asked == state.written
                && state.reopened.is_none()
                && !state.closing
            {
                let (next, timeout) = shared
                    .work
                    .wait_timeout(state, EVERY)
                    .unwrap_or_else(|e| e.into_inner());
                state = next;
                if timeout.timed_out() {
                    break;
                }
            }
            std::mem::swap(&mut spare, &mut state.pending);
            (
                state.reopened.take(),
                state.asked,
                std::mem::take(&mut state.dropped),
                state.closing,
            )
        };
        let mut failed = None;
        if !spare.is_empty() {
            if let Err(e) = out.write_all(&spare).and_then(|()| out.flush()) {
                failed = Some(e.to_string());
            }
            spare.clear();
        }
        if let Some(new) = reopened {
            out = new;
        }
        if dropped > 0 || failed.is_some() {
            let now = Instant::now();
            if last_warning.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60)) {
                last_warning = Some(now);
                tracing::warn!(?target, dropped, error = ?failed, "access log lines lost");
            }
        }
        {
            let mut state = shared.lock();
            state.written = asked;
            shared.done.notify_all();
        }
        if closing {
            return;
        }
    }
}

impl Drop for Sink {
    /// What is queued is written (waited for a second at most), then the
    /// writer ends; a writer stuck on a stalled target is left to end when
    /// its write returns, never waited for.
    fn drop(&mut self) {
        self.flush_within(Duration::from_secs(1));
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
        drop(self.writer.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A target that stops reading (a FIFO nobody reads past its buffer)
    // never makes a request wait: lines beyond 4 MiB are dropped instead.
    #[test]
    fn a_stalled_target_never_blocks_a_request() {
        let dir = std::env::temp_dir().join(format!("drainpipe-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("log.fifo");
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // A reader that never reads, so the open for writing succeeds.
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || File::open(fifo).unwrap())
        };
        let sink = Sink::open(Target::File(fifo.clone())).unwrap();
        let _reader = reader.join().unwrap();
        let line = [b'x'; 1023];
        let started = Instant::now();
        for _ in 0..20_000 {
            sink.write(&line);
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "20 MB of lines took {took:?}"
        );
        assert!(
            sink.shared.lock().dropped > 0,
            "past 4 MiB lines are dropped"
        );
        let started = Instant::now();
        drop(sink);
        assert!(started.elapsed() < Duration::from_secs(3));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
