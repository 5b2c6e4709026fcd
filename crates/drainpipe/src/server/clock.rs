//! The time as a connection's task knows it: one clock read shared by all
//! the work done between two waits.
//!
//! Like nginx's cached time (updated once per event-loop turn), a task reads
//! the clock when it first needs the time after waking and reuses that
//! reading until it waits again: every pipelined request handled in one turn
//! starts at the moment the previous one ended, every response of the batch
//! shares one `Date`, and the deadlines of the next wait start from the last
//! reading. Only a response's end is always read afresh (its latency would
//! otherwise be the zero of a cached reading).

use http::HeaderValue;
use tokio::time::Instant;

use super::date;

/// The last clock reading and `Date` since the task last waited.
#[derive(Debug, Default)]
pub(crate) struct Moment {
    now: Option<Instant>,
    date: Option<HeaderValue>,
}

impl Moment {
    /// The time of the last reading since the task last waited, read now if
    /// there is none.
    #[inline]
    pub(crate) fn now(&mut self) -> Instant {
        *self.now.get_or_insert_with(Instant::now)
    }

    /// Reads the clock afresh (the end of a response) and keeps the reading.
    #[inline]
    pub(crate) fn read(&mut self) -> Instant {
        let now = Instant::now();
        self.now = Some(now);
        now
    }

    /// The `Date` of the responses made since the task last waited.
    #[inline]
    pub(crate) fn date(&mut self) -> &HeaderValue {
        if self.date.is_none() {
            self.date = Some(date::at(self.now()));
        }
        self.date.as_ref().expect("set above")
    }

    /// The task waits (for input, a write, a handler or a body): what it
    /// knew of the time is stale once it wakes.
    #[inline]
    pub(crate) fn forget(&mut self) {
        self.now = None;
        self.date = None;
    }
}
