//! Lock-free latency histograms and status-class counters: what the hot path
//! records (two atomic adds per sample, no lock, no allocation) and what the
//! admin listener reads back (Prometheus buckets, estimated percentiles).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::writers::Writers;

/// Upper bounds of the latency buckets, in microseconds: 100 µs to 60 s (a
/// last bucket holds the rest).
pub const LATENCY_BUCKETS_MICROS: [u64; 18] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

const SLOTS: usize = LATENCY_BUCKETS_MICROS.len() + 1;

/// A latency histogram with the fixed buckets of [`LATENCY_BUCKETS_MICROS`].
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; SLOTS],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one duration: two relaxed atomic adds.
    #[inline]
    pub fn record(&self, d: Duration) {
        self.record_by(d, Writers::Any);
    }

    /// Records one duration, written as `writers` says (see
    /// [`Writers`]).
    #[inline]
    pub(crate) fn record_by(&self, d: Duration, writers: Writers) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let slot = LATENCY_BUCKETS_MICROS.partition_point(|&bound| bound < micros);
        writers.add(&self.buckets[slot], 1);
        writers.add(&self.sum_micros, micros);
    }

    /// The counts now.
    pub fn snapshot(&self) -> Snapshot {
        let mut counts = [0; SLOTS];
        for (c, b) in counts.iter_mut().zip(&self.buckets) {
            *c = b.load(Ordering::Relaxed);
        }
        Snapshot {
            counts,
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's counts at one moment; snapshots add and subtract (a group's
/// figures are its servers' sum, a window's the difference of two moments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Samples per bucket (not cumulative), the last one past 60 s.
    pub counts: [u64; SLOTS],
    /// Sum of all samples, in microseconds.
    pub sum_micros: u64,
}

impl Snapshot {
    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Sum of all samples, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_micros as f64 / 1e6
    }

    /// The sum of both.
    pub fn plus(mut self, other: &Snapshot) -> Snapshot {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_micros += other.sum_micros;
        self
    }

    /// What was recorded after `earlier` (a snapshot of the same histogram).
    pub fn since(mut self, earlier: &Snapshot) -> Snapshot {
        for (a, b) in self.counts.iter_mut().zip(earlier.counts) {
            *a = a.saturating_sub(b);
        }
        self.sum_micros = self.sum_micros.saturating_sub(earlier.sum_micros);
        self
    }

    /// The `q` quantile (0..=1) in seconds, interpolated linearly inside its
    /// bucket; `None` without samples. Past the last bound it reads 60 s.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut below = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let lower = if i == 0 {
                    0
                } else {
                    LATENCY_BUCKETS_MICROS[i - 1]
                };
                let Some(&upper) = LATENCY_BUCKETS_MICROS.get(i) else {
                    return Some(lower as f64 / 1e6);
                };
                let within = (rank - below as f64) / n as f64;
                return Some((lower as f64 + within * (upper - lower) as f64) / 1e6);
            }
            below += n;
        }
        None
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples of `name` with
    /// `labels` (without braces; may be empty).
    pub fn write_prometheus(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS_MICROS.iter().enumerate() {
            cumulative += self.counts[i];
            let le = *bound as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[SLOTS - 1];
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braced} {}", self.sum_seconds());
        let _ = writeln!(out, "{name}_count{braced} {cumulative}");
    }
}

/// Responses counted by status class (1xx to 5xx).
#[derive(Debug, Default)]
pub struct StatusClasses([AtomicU64; 5]);

/// The names of the status classes, in order.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl StatusClasses {
    /// Counts one response with `status` (one relaxed atomic add).
    #[inline]
    pub fn record(&self, status: http::StatusCode) {
        self.record_by(status, Writers::Any);
    }

    /// Counts one response, written as `writers` says (see [`Writers`]).
    #[inline]
    pub(crate) fn record_by(&self, status: http::StatusCode, writers: Writers) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        writers.add(&self.0[class], 1);
    }

    /// The counts now, 1xx first.
    pub fn snapshot(&self) -> [u64; 5] {
        self.0.each_ref().map(|c| c.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_sum_count_and_quantiles() {
        let h = Histogram::default();
        for _ in 0..98 {
            h.record(Duration::from_micros(700)); // 500 µs .. 1 ms
        }
        h.record(Duration::from_millis(40)); // 25 .. 50 ms
        h.record(Duration::from_secs(90)); // past 60 s
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        assert_eq!(s.counts[3], 98);
        assert_eq!(s.counts[8], 1);
        assert_eq!(s.counts[18], 1);
        let p50 = s.quantile(0.5).unwrap();
        assert!((0.0005..=0.001).contains(&p50), "{p50}");
        let p99 = s.quantile(0.99).unwrap();
        assert!((0.025..=0.05).contains(&p99), "{p99}");
        assert_eq!(s.quantile(1.0), Some(60.0));
        assert_eq!(Snapshot::default().quantile(0.5), None);

        let mut text = String::new();
        s.write_prometheus(&mut text, "x_seconds", "a=\"b\"");
        assert!(
            text.contains("x_seconds_bucket{a=\"b\",le=\"0.0001\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{a=\"b\",le=\"0.001\"} 98\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{a=\"b\",le=\"60\"} 99\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{a=\"b\",le=\"+Inf\"} 100\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_count{a=\"b\"} 100\n"), "{text}");
        assert!(text.contains("x_seconds_sum{a=\"b\"} 90.1086\n"), "{text}");

        let later = s.plus(&s);
        assert_eq!(later.since(&s), s);
    }

    #[test]
    fn status_classes() {
        let c = StatusClasses::default();
        for code in [100, 200, 204, 404, 503, 502] {
            c.record(http::StatusCode::from_u16(code).unwrap());
        }
        assert_eq!(c.snapshot(), [1, 2, 0, 1, 2]);
    }
}
