//! The fuzz seed corpus generator: segments and blocks with valid CRCs (so mutations
//! get past the checksums), honest ones and the crafted liars of `common/crafted.rs`.
//!
//! Always checks that the seeds are what they claim (honest segments read back); with
//! `STORAGE_FUZZ_CORPUS=DIR` set it also writes them to `DIR/segment_reader/` and
//! `DIR/block_decoder/` (see `storage/fuzz/README.md`):
//!
//! ```sh
//! STORAGE_FUZZ_CORPUS=$PWD/storage/fuzz/corpus cargo test -p storage --test fuzz_seeds
//! ```

mod common;

use common::crafted::{Rec, corpus, encode_block, loss, recs, valid_segments};
use storage::format::{BLOCK_HEADER_LEN, decode_block_header};
use storage::{DecodedBlock, Segment};

/// Seeds larger than this are left out (the fuzzer runs each input many times).
const SEED_BYTES_MAX: usize = 64 << 10;

/// A `block_decoder` input: the 32-byte head the target reads (`raw_len | count << 32`,
/// `min_ts`, `max_ts`, `kinds`), then the zstd payload.
fn block_input(records: &[Rec]) -> Vec<u8> {
    let (meta, out) = encode_block(records);
    let (h, crc) = decode_block_header(&out, 0).unwrap();
    let payload = &out[BLOCK_HEADER_LEN..];
    // The seed decodes as the target will decode it.
    DecodedBlock::new().decode(&h, crc, payload).unwrap();
    let mut input = Vec::new();
    input.extend_from_slice(&(meta.raw_len as u64 | (meta.count as u64) << 32).to_le_bytes());
    input.extend_from_slice(&meta.min_ts.to_le_bytes());
    input.extend_from_slice(&meta.max_ts.to_le_bytes());
    input.extend_from_slice(&meta.kinds.to_le_bytes());
    input.extend_from_slice(payload);
    input
}

#[test]
fn seeds_are_valid_and_written_on_request() {
    let mut segments: Vec<(String, Vec<u8>)> = valid_segments()
        .into_iter()
        .map(|(n, b)| (n.to_string(), b))
        .collect();
    // Honest segments read back in full.
    let dir = common::TempDir::new("seeds");
    for (name, bytes) in &segments {
        let path = dir.path().join(format!(
            "00000000000000000001-0000000001.{}",
            if name.starts_with("unsealed") {
                "open"
            } else {
                "seg"
            }
        ));
        std::fs::write(&path, bytes).unwrap();
        let seg = Segment::open(&path).unwrap();
        assert!(!seg.blocks().is_empty() && seg.torn().is_none(), "{name}");
        std::fs::remove_file(&path).unwrap();
    }
    segments.extend(
        corpus()
            .into_iter()
            // A million records per run would slow every mutation of it down.
            .filter(|c| {
                c.bytes.len() <= SEED_BYTES_MAX && c.name != "tiny_block_million_bad_records"
            })
            .map(|c| (format!("crafted_{}", c.name), c.bytes)),
    );
    let blocks = vec![
        ("small_records", block_input(&recs(1_000, 30))),
        (
            "losses_and_zero_tails",
            block_input(&[loss(5, 3), (9, 7, 10, vec![0; 64])]),
        ),
        (
            "extreme_ts",
            block_input(&[
                (0, 1, 1, vec![1; 8]),
                (u64::MAX, 2, 1, u64::MAX.to_le_bytes().to_vec()),
            ]),
        ),
        (
            "embedded_ts",
            block_input(
                &recs(77, 3)
                    .into_iter()
                    .map(|(ts, k, w, _)| (ts, k, w, ts.to_le_bytes().repeat(3)))
                    .collect::<Vec<_>>(),
            ),
        ),
    ];
    assert!(segments.len() >= 10);
    let Some(out) = std::env::var_os("STORAGE_FUZZ_CORPUS") else {
        return;
    };
    let out = std::path::PathBuf::from(out);
    for (target, seeds) in [
        ("segment_reader", segments),
        (
            "block_decoder",
            blocks
                .into_iter()
                .map(|(n, b)| (n.to_string(), b))
                .collect(),
        ),
    ] {
        let d = out.join(target);
        std::fs::create_dir_all(&d).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(d.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
}
