//! The premise of the parser's unchecked field values: every value httparse
//! accepts is a valid `http::HeaderValue` (tab, visible ASCII, space,
//! obs-text), whatever its length (httparse checks long values with vector
//! instructions, short ones byte by byte).

use drainpipe_proto::Config;
use proptest::prelude::*;

fn accepted_values(head: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut slots = [httparse::EMPTY_HEADER; 8];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {
            Some(req.headers.iter().map(|h| h.value.to_vec()).collect())
        }
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn httparse_values_are_header_values(
        value in prop::collection::vec(any::<u8>(), 0..120),
        at in 0usize..120,
        byte in any::<u8>(),
    ) {
        // Mostly plausible values with one arbitrary byte somewhere, and
        // wholly arbitrary ones.
        let mut plausible: Vec<u8> = value.iter().map(|b| b' ' + b % 95).collect();
        if !plausible.is_empty() {
            let i = at % plausible.len();
            plausible[i] = byte;
        }
        for v in [plausible, value] {
            let mut head = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
            head.extend_from_slice(&v);
            head.extend_from_slice(b"\r\n\r\n");
            if let Some(values) = accepted_values(&head) {
                for accepted in values {
                    prop_assert!(
                        http::HeaderValue::from_bytes(&accepted).is_ok(),
                        "httparse accepted {:?}", accepted
                    );
                }
            }
        }
    }
}

// Every control byte but tab, and DEL, refused by the parser anywhere in a
// long value (the vectorised path) and a short one.
#[test]
fn control_bytes_are_refused_in_long_and_short_values() {
    let config = Config::default();
    for bad in (0u8..0x20).filter(|&b| b != b'\t').chain([0x7f]) {
        for len in [3usize, 40] {
            for at in [0, len / 2, len - 1] {
                let mut value = vec![b'v'; len];
                value[at] = bad;
                let mut head = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
                head.extend_from_slice(&value);
                head.extend_from_slice(b"\r\n\r\n");
                let mut c = drainpipe_proto::Connection::new(
                    drainpipe_proto::Role::Server,
                    std::sync::Arc::new(config.clone()),
                );
                c.receive(&head);
                assert!(c.next_event().is_err(), "byte {bad:#x} at {at} of {len}");
            }
        }
    }
}
