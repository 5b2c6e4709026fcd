//! The `Date` field, formatted once per second per thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

thread_local! {
    static CACHED: RefCell<(u64, HeaderValue)> = const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
}

/// The current `Date` value (RFC 9110 §6.6.1), cached for the second.
pub(crate) fn now() -> HeaderValue {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let text = httpdate::fmt_http_date(now);
            c.1 = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""));
            c.0 = secs;
        }
        c.1.clone()
    })
}
