//! Whether a connection lives on after a request/response pair (RFC 9112 §9.3),
//! as plain functions of what each message said.

use std::time::{Duration, Instant};

use http::Version;

use crate::fields::ConnectionTokens;
use crate::framing::Framing;

/// Whether a message lets the connection persist, judged by its version and its
/// `Connection` tokens (RFC 9112 §9.3): HTTP/1.1 unless `close`; HTTP/1.0 only
/// with `keep-alive` and without `close`.
pub fn message_keeps_alive(version: Version, tokens: ConnectionTokens) -> bool {
    if tokens.close {
        false
    } else if version == Version::HTTP_10 {
        tokens.keep_alive
    } else {
        true
    }
}

/// Whether a received response lets the connection persist: as
/// [`message_keeps_alive`], and never after a body delimited by the close
/// (RFC 9112 §9.3, §6.3 step 8).
pub fn response_keeps_alive(version: Version, tokens: ConnectionTokens, framing: Framing) -> bool {
    framing != Framing::UntilClose && message_keeps_alive(version, tokens)
}

/// Server: whether the connection may be kept when a response starts while the
/// request body is still unread, by discarding the rest of it.
///
/// `remaining` is what is left of the body, when the framing says (`None` for
/// chunked: unknown, so not kept). A client that sent `Expect: 100-continue` and
/// got no `100` may never send its body, so a pending continue keeps the
/// connection only when nothing is left (RFC 9110 §10.1.1).
pub fn unread_body_allows_reuse(
    remaining: Option<u64>,
    continue_pending: bool,
    max_discard: u64,
) -> bool {
    match remaining {
        Some(0) => true,
        Some(n) => !continue_pending && n <= max_discard,
        None => false,
    }
}

/// Server: how many more requests a connection accepts after the one being
/// answered, for `Keep-Alive: max=M`; `served` counts requests including it.
pub fn requests_left(max_requests: Option<u32>, served: u32) -> Option<u32> {
    max_requests.map(|max| max.saturating_sub(served))
}

/// Client: how many requests a connection may carry in all, by a server's
/// `Keep-Alive: max=M` on the response to request number `answered` (counted
/// from 1 on the connection): `M` more after that one (the same reading as
/// [`requests_left`] on the server's side).
pub fn peer_request_limit(answered: u32, max: u32) -> u32 {
    answered.saturating_add(max)
}

/// Client: the moment from which an idle connection must no longer be reused,
/// by a server's `Keep-Alive: timeout=T` on the last response, received at
/// `received_at`: `T` later, less `margin`, so that a request never races the
/// server's idle close. A `margin` of `T` or more makes the connection unfit
/// for reuse at once.
///
/// `None` when the last response gave no timeout: an earlier response's
/// timeout no longer applies.
pub fn reusable_until(
    timeout_secs: Option<u32>,
    received_at: Instant,
    margin: Duration,
) -> Option<Instant> {
    let timeout = Duration::from_secs(u64::from(timeout_secs?));
    Some(received_at + timeout.saturating_sub(margin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(close: bool, keep_alive: bool) -> ConnectionTokens {
        ConnectionTokens {
            close,
            keep_alive,
            ..ConnectionTokens::default()
        }
    }

    // RFC 9112 §9.3, one row per case.
    #[test]
    fn persistence_table() {
        let rows = [
            (
                Version::HTTP_11,
                tokens(false, false),
                Framing::Length(1),
                true,
            ),
            (
                Version::HTTP_11,
                tokens(true, false),
                Framing::Length(1),
                false,
            ),
            (
                Version::HTTP_11,
                tokens(true, true),
                Framing::Length(1),
                false,
            ),
            (
                Version::HTTP_10,
                tokens(false, false),
                Framing::Length(1),
                false,
            ),
            (
                Version::HTTP_10,
                tokens(false, true),
                Framing::Length(1),
                true,
            ),
            (
                Version::HTTP_10,
                tokens(true, true),
                Framing::Length(1),
                false,
            ),
            (
                Version::HTTP_11,
                tokens(false, false),
                Framing::UntilClose,
                false,
            ),
            (
                Version::HTTP_10,
                tokens(false, true),
                Framing::UntilClose,
                false,
            ),
            (
                Version::HTTP_11,
                tokens(false, false),
                Framing::Chunked,
                true,
            ),
        ];
        for (version, t, framing, expected) in rows {
            assert_eq!(
                response_keeps_alive(version, t, framing),
                expected,
                "{version:?} {t:?} {framing:?}"
            );
        }
    }

    #[test]
    fn reusable_until_rule() {
        let t0 = Instant::now();
        let margin = Duration::from_secs(1);
        assert_eq!(
            reusable_until(Some(5), t0, margin),
            Some(t0 + Duration::from_secs(4))
        );
        assert_eq!(
            reusable_until(Some(3), t0, Duration::from_millis(1500)),
            Some(t0 + Duration::from_millis(1500))
        );
        // A margin as long as the timeout, or longer: not reusable from the
        // moment the response arrived.
        assert_eq!(reusable_until(Some(1), t0, margin), Some(t0));
        assert_eq!(reusable_until(Some(0), t0, margin), Some(t0));
        assert_eq!(
            reusable_until(Some(1), t0, Duration::ZERO),
            Some(t0 + Duration::from_secs(1))
        );
        assert_eq!(reusable_until(None, t0, margin), None);
    }

    #[test]
    fn peer_request_limit_rule() {
        // `max=M` on the response to the first request: M more.
        assert_eq!(peer_request_limit(1, 2), 3);
        assert_eq!(peer_request_limit(4, 0), 4);
        assert_eq!(peer_request_limit(u32::MAX, 1), u32::MAX);
    }

    #[test]
    fn unread_body_rule() {
        assert!(unread_body_allows_reuse(Some(0), true, 10));
        assert!(unread_body_allows_reuse(Some(10), false, 10));
        assert!(!unread_body_allows_reuse(Some(11), false, 10));
        assert!(!unread_body_allows_reuse(Some(1), true, 10));
        assert!(!unread_body_allows_reuse(None, false, 10));
    }
}
