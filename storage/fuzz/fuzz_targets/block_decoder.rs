//! Arbitrary bytes as a block payload that passed its CRC (a lying or buggy writer):
//! the decoder must reject it cleanly, never panic or over-allocate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage::{BlockMeta, DecodedBlock};

fuzz_target!(|data: &[u8]| {
    if data.len() < 24 {
        return;
    }
    let (head, payload) = data.split_at(24);
    let word = |i: usize| u64::from_le_bytes(head[i * 8..i * 8 + 8].try_into().unwrap());
    let meta = BlockMeta {
        offset: 256,
        payload_len: payload.len() as u32,
        raw_len: (word(0) as u32) % (1 << 22),
        count: (word(0) >> 32) as u32 % 100_000,
        min_ts: word(1).min(word(2)),
        max_ts: word(1).max(word(2)),
        kinds: word(2) ^ word(1),
    };
    let mut decoded = DecodedBlock::new();
    let _ = decoded.decode(&meta, crc32c::crc32c(payload), payload);
});
