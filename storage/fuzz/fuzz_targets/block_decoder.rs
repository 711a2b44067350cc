//! Arbitrary bytes as a block payload that passed its CRC (a lying or buggy writer):
//! the decoder must reject it cleanly, never panic or over-allocate.
//!
//! Input: a 32-byte head (`raw_len | count << 32`, `min_ts`, `max_ts`, `kinds`, each a
//! little-endian u64), then the payload (a zstd frame). The seed generator
//! (`storage/tests/fuzz_seeds.rs`) writes real blocks in this shape, so mutations start
//! from blocks that decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage::{BlockMeta, DecodedBlock};

fuzz_target!(|data: &[u8]| {
    if data.len() < 32 {
        return;
    }
    let (head, payload) = data.split_at(32);
    let word = |i: usize| u64::from_le_bytes(head[i * 8..i * 8 + 8].try_into().unwrap());
    let meta = BlockMeta {
        offset: 256,
        payload_len: payload.len() as u32,
        raw_len: word(0) as u32,
        count: (word(0) >> 32) as u32,
        min_ts: word(1).min(word(2)),
        max_ts: word(1).max(word(2)),
        kinds: word(3),
    };
    let mut decoded = DecodedBlock::new();
    if decoded.decode(&meta, crc32c::crc32c(payload), payload).is_ok() {
        // What decoded is consistent: every record is readable.
        assert_eq!(decoded.len(), meta.count as usize);
        for i in 0..decoded.len() {
            let _ = decoded.record(i);
        }
    }
});
