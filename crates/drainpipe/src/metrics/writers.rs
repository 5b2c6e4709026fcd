//! How a set of counters is written: from any thread, or by one thread only.
//!
//! A counter the hot path bumps on every request is an atomic, so that the
//! admin listener can read it from another thread. Bumped from several
//! threads, each bump must be a locked read-modify-write (`lock xadd`: some
//! twenty cycles that also wait for every earlier store to drain, several
//! times per request). A worker's counters are written by its one thread
//! only (its connections, its accept loop and its parker all run on its
//! current-thread runtime): there a plain load and store is exact, and costs
//! what an ordinary add does. Readers see each value as before.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Who writes a set of counters; see the [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Writers {
    /// Any thread, at the same time: each add is an atomic read-modify-write.
    #[default]
    Any,
    /// One thread only: each add is a load and a store.
    One,
}

impl Writers {
    /// Adds `n` to `counter`.
    #[inline(always)]
    pub(crate) fn add(self, counter: &AtomicU64, n: u64) {
        match self {
            Writers::Any => {
                counter.fetch_add(n, Ordering::Relaxed);
            }
            Writers::One => {
                let now = counter.load(Ordering::Relaxed);
                counter.store(now.wrapping_add(n), Ordering::Relaxed);
            }
        }
    }

    /// Adds one to `gauge`.
    #[inline(always)]
    pub(crate) fn increment(self, gauge: &AtomicUsize) {
        match self {
            Writers::Any => {
                gauge.fetch_add(1, Ordering::Relaxed);
            }
            Writers::One => {
                let now = gauge.load(Ordering::Relaxed);
                gauge.store(now.wrapping_add(1), Ordering::Relaxed);
            }
        }
    }

    /// Takes one from `gauge`.
    #[inline(always)]
    pub(crate) fn decrement(self, gauge: &AtomicUsize) {
        match self {
            Writers::Any => {
                gauge.fetch_sub(1, Ordering::Relaxed);
            }
            Writers::One => {
                let now = gauge.load(Ordering::Relaxed);
                gauge.store(now.wrapping_sub(1), Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_count_exactly_from_one_thread() {
        for writers in [Writers::Any, Writers::One] {
            let (counter, gauge) = (AtomicU64::new(0), AtomicUsize::new(0));
            for _ in 0..1000 {
                writers.add(&counter, 3);
                writers.increment(&gauge);
            }
            for _ in 0..400 {
                writers.decrement(&gauge);
            }
            assert_eq!(counter.load(Ordering::Relaxed), 3000, "{writers:?}");
            assert_eq!(gauge.load(Ordering::Relaxed), 600, "{writers:?}");
        }
    }

    #[test]
    fn any_counts_exactly_from_many_threads() {
        let counter = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        Writers::Any.add(&counter, 1);
                    }
                });
            }
        });
        assert_eq!(counter.load(Ordering::Relaxed), 40_000);
    }
}
