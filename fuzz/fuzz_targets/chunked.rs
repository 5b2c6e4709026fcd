//! Invariant: a chunked decoder fed arbitrary bytes, split at an arbitrary
//! point, yields data, an end with bounded trailers, need-data or a typed error;
//! never a panic; the data it yields never exceeds the input.
#![no_main]

use bytes::BytesMut;
use drainpipe_proto::decode::{Decoded, Decoder};
use drainpipe_proto::{Config, Framing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let split = usize::from(split).min(rest.len());
    let config = Config::default();
    let mut decoder = Decoder::new(Framing::Chunked);
    let mut buf = BytesMut::new();
    let mut produced = 0usize;
    for (i, piece) in [&rest[..split], &rest[split..]].into_iter().enumerate() {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf, i == 1, &config) {
                Ok(Decoded::Data(d)) => produced += d.len(),
                Ok(Decoded::End(t)) => {
                    assert!(t.map_or(0, |t| t.len()) <= config.max_fields);
                    return;
                }
                Ok(Decoded::NeedData) => break,
                Err(_) => return,
            }
        }
    }
    assert!(produced <= rest.len());
});
