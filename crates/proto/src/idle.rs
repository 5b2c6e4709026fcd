//! Client: what a server's idle timeout is, learned from what it does, so a
//! pooled connection is never reused just as the server closes it.
//!
//! Most servers do not announce their idle timeout (`Keep-Alive: timeout=T`).
//! Their closes tell it instead: a connection that sat idle for `d` and was
//! then closed by the server says the timeout is at most `d`; a request
//! written on a connection idle for `d` that got no answer says the same; a
//! request answered after `d` of idleness says the timeout is longer than `d`.
//! [`IdleEstimate`] keeps the shortest close seen (the upper bound the pool
//! stays under) and the round trip, in a few words of memory.
//!
//! Not every close is a timeout: a server that restarts, drains or reaches a
//! request limit closes connections whatever their idle time. A close after
//! less than [`IdleEstimate::MIN_EVIDENCE`] of idleness teaches nothing (no
//! server times out that fast), and a bound that no later close confirms
//! (a close at no more than a quarter above it) is forgotten after
//! [`IdleEstimate::FORGET_AFTER`]: a server that really times out there
//! keeps confirming it with every connection it closes.
//!
//! Forgetting sooner: a close at some idle time pins the limit there until a request
//! is answered after at least that long, which clears it (the server's
//! timeout grew). Such an answer can only come from a connection reused past
//! the limit, so once per `probe_every` the driver may reuse one for a request
//! that is safe to send again (idempotent, replayable body): answered, the
//! bound is lifted; closed, the request is retried on a new connection and
//! the bound holds.
//!
//! The margin kept below a timeout covers the time a request takes to reach
//! the server after the client's idle clock started: twice the quickest round
//! trip seen (request written to the first byte of the answer, so it also
//! counts the server's quickest reply) plus [`IdleEstimate::MARGIN_FLOOR`].
//! Time is passed in; nothing here reads a clock.

use std::time::{Duration, Instant};

/// A server's idle timeout as learned from its closes; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct IdleEstimate {
    /// The shortest idle time after which the server was seen to close (or
    /// drop a request): its idle timeout is at most this.
    closed_after: Option<Duration>,
    /// When a close last confirmed that bound.
    confirmed_at: Option<Instant>,
    /// The quickest round trip seen, drifting up slowly when samples grow.
    rtt: Option<Duration>,
    /// When a connection was last reused past the limit to test it.
    last_probe: Option<Instant>,
}

impl IdleEstimate {
    /// The least margin kept below a timeout, whatever the round trip.
    pub const MARGIN_FLOOR: Duration = Duration::from_millis(10);

    /// Closes after less idleness than this are not taken for a timeout.
    pub const MIN_EVIDENCE: Duration = Duration::from_millis(100);

    /// A bound no close has confirmed for this long is forgotten.
    pub const FORGET_AFTER: Duration = Duration::from_secs(300);

    /// A connection that had been idle for `idle` was closed by the server
    /// (seen at `now`, when the close arrived).
    pub fn saw_idle_close(&mut self, idle: Duration, now: Instant) {
        self.bound_by(idle, now);
    }

    /// A request written on a connection idle for `idle` got no answer (seen
    /// at `now`): the server had closed it, or closed it as it arrived.
    pub fn saw_failed_reuse(&mut self, idle: Duration, now: Instant) {
        self.bound_by(idle, now);
    }

    /// A request on a connection idle for `idle` was answered: the timeout is
    /// longer than that. A bound at or below `idle` is out of date and is
    /// forgotten.
    pub fn saw_answer_after(&mut self, idle: Duration) {
        if self.closed_after.is_some_and(|c| idle >= c) {
            self.closed_after = None;
        }
    }

    /// A round-trip sample: from a request written to the first byte of its
    /// answer. The estimate follows a quicker sample at once and a slower one
    /// by an eighth of the difference.
    pub fn saw_round_trip(&mut self, sample: Duration) {
        self.rtt = Some(match self.rtt {
            Some(rtt) if sample >= rtt => rtt + (sample - rtt) / 8,
            _ => sample,
        });
    }

    /// The quickest round trip, as estimated (`None` before any sample).
    pub fn round_trip(&self) -> Option<Duration> {
        self.rtt
    }

    /// What is kept below a server's idle timeout: twice the round trip plus
    /// [`IdleEstimate::MARGIN_FLOOR`].
    pub fn margin(&self) -> Duration {
        self.rtt.unwrap_or_default() * 2 + Self::MARGIN_FLOOR
    }

    /// What is kept below a timeout of `timeout`: [`IdleEstimate::margin`],
    /// and never less than a twentieth of the timeout (timers and clocks on
    /// both sides are not exact, and the longer the wait the more they
    /// drift).
    pub fn margin_for(&self, timeout: Duration) -> Duration {
        self.margin().max(timeout / 20)
    }

    /// The shortest idle time at which the server was seen to close, if any
    /// (and confirmed within [`IdleEstimate::FORGET_AFTER`] of `now`).
    pub fn learned_timeout(&self, now: Instant) -> Option<Duration> {
        let confirmed = self.confirmed_at?;
        if now.saturating_duration_since(confirmed) >= Self::FORGET_AFTER {
            return None;
        }
        self.closed_after
    }

    /// How long a connection may sit idle and still be reused: the learned
    /// timeout, or `announced` (the server's `Keep-Alive: timeout`) when it
    /// is shorter, less [`IdleEstimate::margin`]. `None`: nothing is known,
    /// no limit but the pool's own.
    pub fn reuse_limit(&self, announced: Option<Duration>, now: Instant) -> Option<Duration> {
        let timeout = match (self.learned_timeout(now), announced) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(timeout.saturating_sub(self.margin_for(timeout)))
    }

    /// Whether a connection idle past the limit may be reused now to test
    /// the limit (at most once per `every`); records the probe if so. Only
    /// for a request that is safe to send again.
    pub fn may_probe(&mut self, now: Instant, every: Duration) -> bool {
        if self.learned_timeout(now).is_none() {
            return false;
        }
        if self
            .last_probe
            .is_some_and(|at| now.saturating_duration_since(at) < every)
        {
            return false;
        }
        self.last_probe = Some(now);
        true
    }

    fn bound_by(&mut self, idle: Duration, now: Instant) {
        if idle < Self::MIN_EVIDENCE {
            return;
        }
        match self.learned_timeout(now) {
            Some(bound) if idle > bound + bound / 4 => {}
            Some(bound) => {
                self.closed_after = Some(bound.min(idle));
                self.confirmed_at = Some(now);
            }
            None => {
                self.closed_after = Some(idle);
                self.confirmed_at = Some(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_shortest_close_is_the_bound_less_the_margin() {
        let now = Instant::now();
        let mut e = IdleEstimate::default();
        assert_eq!(e.reuse_limit(None, now), None, "nothing known");
        e.saw_idle_close(1200 * MS, now);
        e.saw_idle_close(1000 * MS, now);
        e.saw_failed_reuse(1100 * MS, now);
        assert_eq!(e.learned_timeout(now), Some(1000 * MS));
        assert_eq!(e.reuse_limit(None, now), Some(950 * MS), "a twentieth");
        e.saw_round_trip(30 * MS);
        assert_eq!(e.margin(), 70 * MS);
        assert_eq!(e.reuse_limit(None, now), Some(930 * MS));
        // An announced timeout shorter than what was learned wins.
        assert_eq!(e.reuse_limit(Some(500 * MS), now), Some(430 * MS));
        assert_eq!(e.reuse_limit(Some(5000 * MS), now), Some(930 * MS));
        // A long timeout keeps a twentieth of itself.
        let mut long = IdleEstimate::default();
        long.saw_idle_close(60_000 * MS, now);
        assert_eq!(long.reuse_limit(None, now), Some(57_000 * MS));
    }

    #[test]
    fn quick_closes_teach_nothing_and_an_unconfirmed_bound_is_forgotten() {
        let t0 = Instant::now();
        let mut e = IdleEstimate::default();
        e.saw_failed_reuse(MS, t0);
        e.saw_idle_close(50 * MS, t0);
        assert_eq!(
            e.learned_timeout(t0),
            None,
            "a restart or a limit, not a timeout"
        );
        e.saw_idle_close(2000 * MS, t0);
        let later = t0 + IdleEstimate::FORGET_AFTER / 2;
        // A close well above the bound does not confirm it...
        e.saw_idle_close(60_000 * MS, later);
        assert_eq!(e.learned_timeout(t0 + IdleEstimate::FORGET_AFTER), None);
        // ...one near it does.
        e.saw_idle_close(2000 * MS, t0);
        e.saw_idle_close(2400 * MS, later);
        let end = t0 + IdleEstimate::FORGET_AFTER;
        assert_eq!(e.learned_timeout(end), Some(2000 * MS));
        assert_eq!(e.learned_timeout(later + IdleEstimate::FORGET_AFTER), None);
    }

    #[test]
    fn an_announced_timeout_of_one_second_is_mostly_usable() {
        let mut e = IdleEstimate::default();
        e.saw_round_trip(MS);
        assert_eq!(
            e.reuse_limit(Some(Duration::from_secs(1)), Instant::now()),
            Some(950 * MS)
        );
    }

    #[test]
    fn the_round_trip_follows_quick_samples_at_once_and_slow_ones_slowly() {
        let mut e = IdleEstimate::default();
        e.saw_round_trip(40 * MS);
        e.saw_round_trip(8 * MS);
        assert_eq!(e.round_trip(), Some(8 * MS));
        e.saw_round_trip(88 * MS);
        assert_eq!(e.round_trip(), Some(18 * MS));
    }

    #[test]
    fn an_answer_past_the_bound_forgets_it() {
        let now = Instant::now();
        let mut e = IdleEstimate::default();
        e.saw_idle_close(1000 * MS, now);
        e.saw_answer_after(900 * MS);
        assert_eq!(e.learned_timeout(now), Some(1000 * MS), "below: consistent");
        e.saw_answer_after(2000 * MS);
        assert_eq!(e.learned_timeout(now), None, "the timeout grew");
        e.saw_idle_close(3000 * MS, now);
        assert_eq!(e.learned_timeout(now), Some(3000 * MS));
    }

    #[test]
    fn probes_are_rationed_and_only_against_a_bound() {
        let mut e = IdleEstimate::default();
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        assert!(!e.may_probe(t0, every), "no bound, nothing to test");
        e.saw_idle_close(1000 * MS, t0);
        assert!(e.may_probe(t0, every));
        assert!(!e.may_probe(t0 + 5 * 1000 * MS, every));
        assert!(e.may_probe(t0 + 10 * 1000 * MS, every));
    }
}
