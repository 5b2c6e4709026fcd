//! The connection's one timer, moved lazily.
//!
//! Every wait sets a deadline (head, idle, body; parking), and on a busy
//! keep-alive connection each new one is later than the last. Moving a
//! tokio timer costs a trip through its wheel per request, so [`Timer`]
//! moves the underlying `Sleep` eagerly only when a deadline comes earlier.
//! A later one is only remembered: the sleep then fires early, at the old
//! deadline, and re-arms itself for the remembered one (once per old
//! deadline, rather than once per request). Nothing reads the clock: a sleep
//! that fired before the deadline it was set for has fired early.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{sleep_until, Instant, Sleep};

/// A deadline that only moves the runtime's timer when it comes earlier;
/// see the [module docs](self). Resolves once the deadline last set passed.
#[derive(Debug)]
pub(super) struct Timer {
    sleep: Pin<Box<Sleep>>,
    /// The deadline last set (never earlier than the sleep's).
    at: Instant,
}

impl Timer {
    /// A timer for `at`.
    pub(super) fn new(at: Instant) -> Self {
        Timer {
            sleep: Box::pin(sleep_until(at)),
            at,
        }
    }

    /// Sets the deadline to `at`, earlier or later than the last.
    #[inline]
    pub(super) fn set(&mut self, at: Instant) {
        if at < self.sleep.deadline() {
            self.sleep.as_mut().reset(at);
        }
        self.at = at;
    }

    /// Ready once the deadline last set has passed.
    pub(super) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            std::task::ready!(self.sleep.as_mut().poll(cx));
            if self.sleep.deadline() >= self.at {
                return Poll::Ready(());
            }
            // Fired at a deadline since pushed later: wait out the rest.
            self.sleep.as_mut().reset(self.at);
        }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_expired(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A deadline pushed later fires at the later one, not the first; one
    /// brought earlier fires at the earlier one.
    #[tokio::test(start_paused = true)]
    async fn fires_at_the_deadline_last_set() {
        let start = Instant::now();
        let mut timer = Timer::new(start + Duration::from_secs(1));
        timer.set(start + Duration::from_secs(3));
        (&mut timer).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3));

        // Brought earlier before it ever fired: the sleep itself moves.
        let start = Instant::now();
        let mut timer = Timer::new(start + Duration::from_secs(10));
        timer.set(start + Duration::from_secs(2));
        (&mut timer).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }

    /// Not ready before its deadline, even after the first one passed.
    #[tokio::test(start_paused = true)]
    async fn pending_until_the_later_deadline() {
        let start = Instant::now();
        let mut timer = Timer::new(start + Duration::from_millis(100));
        timer.set(start + Duration::from_millis(500));
        let early = tokio::time::timeout(Duration::from_millis(300), &mut timer).await;
        assert!(early.is_err(), "fired at the first deadline");
        tokio::time::timeout(Duration::from_millis(300), &mut timer)
            .await
            .expect("fires at the later deadline");
        assert_eq!(Instant::now() - start, Duration::from_millis(500));
    }
}
