//! The retry rules, as plain functions (DESIGN "Client"; RFC 9110 §9.2.2,
//! RFC 9112 §9.3.1).
//!
//! A request is retried at most once, on a new connection, and only when all of
//! these hold:
//! - it failed on a *reused* connection before any byte of the response arrived
//!   (the server closed an idle connection just as the request went out);
//! - its method is idempotent (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) or it
//!   carries `Idempotency-Key`;
//! - its body can be sent again (empty or held in memory, not a consumed stream).
//!
//! Anything else surfaces as a typed [`Error`] that says whether
//! the server may have acted ([`Error::may_have_been_processed`](crate::Error::may_have_been_processed)).

use http::{HeaderMap, Method};

use crate::error::Error;

/// Whether repeating the request has the same effect as sending it once: an
/// idempotent method, or an `Idempotency-Key` field.
pub fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    ) || headers.contains_key("idempotency-key")
}

/// Whether a request that failed with `error` may be sent again, given
/// whether it is idempotent ([`is_idempotent`]). Its body must also be
/// replayable: the caller asks that of the body itself (a copy kept for the
/// retry), not here.
pub fn may_retry(error: &Error, idempotent: bool) -> bool {
    idempotent && error.is_reused_connection()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;

    #[test]
    fn idempotency() {
        let none = HeaderMap::new();
        for m in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
            Method::TRACE,
        ] {
            assert!(is_idempotent(&m, &none), "{m}");
        }
        assert!(!is_idempotent(&Method::POST, &none));
        assert!(!is_idempotent(&Method::PATCH, &none));
        let mut key = HeaderMap::new();
        key.insert("idempotency-key", "abc".parse().unwrap());
        assert!(is_idempotent(&Method::POST, &key));
    }

    #[test]
    fn only_a_reused_connection_closed_before_the_response_is_retried() {
        let stale = Error::new(Kind::ClosedBeforeResponse {
            reused: true,
            request_written: true,
        });
        let fresh = Error::new(Kind::ClosedBeforeResponse {
            reused: false,
            request_written: true,
        });
        let truncated = Error::new(Kind::Truncated {
            expected: Some(10),
            received: 3,
        });
        assert!(may_retry(&stale, true));
        assert!(!may_retry(&stale, false), "not idempotent");
        assert!(
            !may_retry(&fresh, true),
            "a new connection's failure is real"
        );
        assert!(
            !may_retry(&truncated, true),
            "bytes of the response arrived"
        );
    }
}
