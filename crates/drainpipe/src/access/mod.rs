//! The access log: one line per request, in the combined format, as JSON, or
//! after a template of `$variables`, written through a buffer to a file (or
//! stdout or stderr), reopened on demand for log rotation.
//!
//! The server fills a [`Record`] for each request when a log is set
//! ([`crate::server::Builder::access_log`]); a proxy adds what it knows of
//! the upstream exchange ([`Upstream`], in the response's extensions). It
//! asks for it through a [`Wanted`] marker in the request's extensions, so
//! nothing is gathered when no log is written.

mod format;
mod record;
mod sink;

use std::sync::Arc;

pub use format::{Format, UnknownVariable, VARIABLES};
pub use record::{ConnUsed, Record, Upstream, Wanted};
pub use sink::Target;

/// An access log: a format and where its lines go. Cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    inner: Arc<Inner>,
}

struct Inner {
    format: Format,
    sink: sink::Sink,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("format", &self.inner.format)
            .field("target", self.inner.sink.target())
            .finish()
    }
}

impl AccessLog {
    /// A log in `format` to `target` (a file is opened for appending, and
    /// created if missing). Lines are written by a thread of the log's own:
    /// when 64 KiB gathered, every second, on [`AccessLog::flush`] and when
    /// the last clone is dropped; a request never waits for the target.
    pub fn new(format: Format, target: Target) -> std::io::Result<AccessLog> {
        Ok(AccessLog {
            inner: Arc::new(Inner {
                format,
                sink: sink::Sink::open(target)?,
            }),
        })
    }

    /// Writes what is queued, waiting (a few seconds at most) until it is.
    pub fn flush(&self) {
        self.inner.sink.flush();
    }

    /// Flushes, then opens the file again by its name (after logrotate moved
    /// it); stdout and stderr are left as they are.
    pub fn reopen(&self) -> std::io::Result<()> {
        self.inner.sink.reopen()
    }

    /// Logs one request.
    pub fn log(&self, record: &Record) {
        thread_local! {
            static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            self.inner.format.write(record, &mut line);
            line.push('\n');
            self.inner.sink.write(line.as_bytes());
        });
    }
}
