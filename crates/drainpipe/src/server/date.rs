//! The `Date` field, formatted once per second per thread.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use tokio::time::Instant;

/// The formatted `Date` of the current second, and the monotonic moment that
/// second ends.
struct Cached {
    until: Option<Instant>,
    value: HeaderValue,
}

thread_local! {
    static CACHED: RefCell<Cached> = const {
        RefCell::new(Cached { until: None, value: HeaderValue::from_static("") })
    };
}

/// The `Date` value (RFC 9110 §6.6.1) at `now`, a reading of the monotonic
/// clock the caller already took: within the second last formatted, that
/// reading is all it takes (no wall-clock read, no arithmetic on it); past
/// it, the wall clock is read and the value formatted again. A step of the
/// wall clock shows at the next second.
pub(crate) fn at(now: Instant) -> HeaderValue {
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.until.is_none_or(|until| now >= until) {
            let wall = SystemTime::now();
            let into_second = wall.duration_since(UNIX_EPOCH).map_or(Duration::ZERO, |d| {
                Duration::from_nanos(d.subsec_nanos().into())
            });
            let text = httpdate::fmt_http_date(wall);
            c.value = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""));
            c.until = Some(now + (Duration::from_secs(1) - into_second));
        }
        c.value.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_is_kept_for_its_second_then_renewed() {
        let now = Instant::now();
        let first = at(now);
        assert!(httpdate::parse_http_date(first.to_str().unwrap()).is_ok());
        // The same reading: the same value, whatever the wall clock did.
        assert_eq!(at(now), first);
        // Two seconds on, by the monotonic clock: formatted again (and, as
        // the wall clock moved on by less than that, never earlier).
        let later = at(now + Duration::from_secs(2));
        let t = |v: &HeaderValue| httpdate::parse_http_date(v.to_str().unwrap()).unwrap();
        assert!(t(&later) >= t(&first));
    }
}
