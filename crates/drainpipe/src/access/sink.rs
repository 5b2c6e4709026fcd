//! Where access-log lines go: a buffer in front of a file, stdout or stderr.
//! A write that fails is dropped with a warning (at most one a minute):
//! logging never stops serving.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

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

/// Bytes gathered before a write.
const BUFFER: usize = 64 * 1024;

pub(super) struct Sink {
    target: Target,
    state: Mutex<State>,
}

struct State {
    out: BufWriter<Box<dyn Write + Send>>,
    last_warning: Option<Instant>,
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
        Ok(Sink {
            target,
            state: Mutex::new(State {
                out: BufWriter::with_capacity(BUFFER, out),
                last_warning: None,
            }),
        })
    }

    pub(super) fn target(&self) -> &Target {
        &self.target
    }

    pub(super) fn write(&self, line: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let written = state.out.write_all(line);
        state.check(written, &self.target);
    }

    pub(super) fn flush(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let flushed = state.out.flush();
        state.check(flushed, &self.target);
    }

    pub(super) fn reopen(&self) -> std::io::Result<()> {
        let Target::File(path) = &self.target else {
            self.flush();
            return Ok(());
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let flushed = state.out.flush();
        state.check(flushed, &self.target);
        let file = open_file(path)?;
        // What the old buffer still holds (a failed flush) is dropped with
        // it; the new file starts clean.
        let old = std::mem::replace(
            &mut state.out,
            BufWriter::with_capacity(BUFFER, Box::new(file)),
        );
        let _ = old.into_parts();
        Ok(())
    }
}

impl State {
    fn check(&mut self, result: std::io::Result<()>, target: &Target) {
        if let Err(e) = result {
            let now = Instant::now();
            if self
                .last_warning
                .is_none_or(|at| now.duration_since(at).as_secs() >= 60)
            {
                self.last_warning = Some(now);
                tracing::warn!(?target, error = %e, "access log write failed; lines dropped");
            }
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = state.out.flush();
    }
}
