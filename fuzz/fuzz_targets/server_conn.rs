//! Invariant: a server connection fed arbitrary bytes (split at arbitrary
//! points) and answering every request never panics, never loops, and every
//! refusal is a typed error whose status is 4xx/5xx; the receive buffer stays
//! bounded.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use drainpipe_proto::{BodySize, Config, Connection, Event, Role, WriteBuf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = Arc::new(Config {
        max_head_bytes: 4096,
        max_body_bytes: Some(1 << 16),
        ..Config::default()
    });
    let mut conn = Connection::new(Role::Server, config.clone());
    let mut out = WriteBuf::new();
    let (parts, ()) = http::Response::new(()).into_parts();
    let mut pending_requests = 0usize;
    for piece in data.chunks(7) {
        conn.receive(piece);
        for _ in 0..256 {
            match conn.next_event() {
                Ok(Event::Request { .. }) => pending_requests += 1,
                Ok(Event::End { .. }) => {
                    while pending_requests > 0 {
                        pending_requests -= 1;
                        if conn.send_response(&parts, BodySize::Exact(2), &mut out).is_ok() {
                            conn.send_data(Bytes::from_static(b"ok"), &mut out).unwrap();
                            conn.send_end(None, &mut out).unwrap();
                        }
                    }
                }
                Ok(Event::Data(_)) => {}
                Ok(Event::NeedData | Event::Paused | Event::Closed) => break,
                Ok(_) => {}
                Err(e) => {
                    assert!((400..600).contains(&e.status().as_u16()));
                    return;
                }
            }
        }
        assert!(conn.buffered() <= config.max_head_bytes + config.max_uri_bytes + 7 + (1 << 16));
        out.clear();
    }
});
