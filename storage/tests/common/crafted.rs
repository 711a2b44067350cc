//! Crafted segment files: valid CRCs everywhere, lies in the lengths, offsets, counts
//! and timestamps the CRCs protect. The generator for `tests/crafted.rs` and for the
//! fuzz seed corpus (`tests/fuzz_seeds.rs`); no binary file is committed without it.

use storage::format::{
    BLOCK_HEADER_LEN, BlockMeta, FILE_HEADER_LEN, FileHeader, TRAILER_LEN, TRAILER_MAGIC,
    encode_block_header, encode_index,
};
use storage::{BlockBuilder, Compressor, KIND_LOSS, Loss, LossReason, RecordRef};

/// A record to craft: timestamp, kind, weight, bytes.
pub type Rec = (u64, u16, u32, Vec<u8>);

/// An honest block of `records` (header and zstd payload, offset 0) and its metadata.
pub fn encode_block(records: &[Rec]) -> (BlockMeta, Vec<u8>) {
    let mut b = BlockBuilder::new(1 << 20);
    for (ts, kind, weight, bytes) in records {
        b.push(&RecordRef {
            ts_ns: *ts,
            kind: *kind,
            weight: *weight,
            bytes,
        });
    }
    let mut out = Vec::new();
    let meta = b
        .finish(&mut Compressor::new(1).unwrap(), &mut out)
        .unwrap();
    (meta, out)
}

/// A segment file being built byte by byte.
#[derive(Debug, Clone)]
pub struct Craft {
    pub bytes: Vec<u8>,
    pub blocks: Vec<BlockMeta>,
}

/// `n` small records of kind 1 with timestamps `ts0, ts0 + 10, ...`.
pub fn recs(ts0: u64, n: u64) -> Vec<Rec> {
    (0..n)
        .map(|i| (ts0 + i * 10, 1, 1, (i as u32).to_le_bytes().repeat(4)))
        .collect()
}

/// A loss record of `count` events.
pub fn loss(ts: u64, count: u64) -> Rec {
    let l = Loss {
        stream: 0,
        cpu: 0,
        kind: 1,
        reason: LossReason::KernelRingFull as u16,
        count,
        start_ns: ts,
        end_ns: ts,
    };
    (ts, KIND_LOSS, 1, l.encode().to_vec())
}

impl Craft {
    /// A file header for stream 0 segment `seq` with clock offset `mono_to_wall_ns`.
    pub fn new(seq: u64, mono_to_wall_ns: i64) -> Craft {
        let h = FileHeader {
            stream_id: 0,
            abi_version: 1,
            seq,
            created_unix_ns: 1_700_000_000_000_000_000,
            mono_to_wall_ns,
            host: "crafted".into(),
        };
        Craft {
            bytes: h.encode().to_vec(),
            blocks: Vec::new(),
        }
    }

    /// Raw header bytes (for lying headers), CRC recomputed.
    pub fn with_header(mut h: [u8; FILE_HEADER_LEN]) -> Craft {
        let crc = crc32c::crc32c(&h[..252]);
        h[252..].copy_from_slice(&crc.to_le_bytes());
        Craft {
            bytes: h.to_vec(),
            blocks: Vec::new(),
        }
    }

    /// Offset of the next byte.
    pub fn end(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Appends an honest block of `records`.
    pub fn block(&mut self, records: &[Rec]) -> BlockMeta {
        let (mut meta, out) = encode_block(records);
        meta.offset = self.end();
        self.bytes.extend_from_slice(&out);
        self.blocks.push(meta);
        meta
    }

    /// Appends a block whose header says `meta` (offset set here) around the zstd
    /// compression of `raw` (an encoded block, honest or not); both CRCs valid.
    /// `payload_len` and `raw_len` are taken from `meta` when non-zero (lies), else
    /// from the data.
    pub fn raw_block(&mut self, mut meta: BlockMeta, raw: &[u8]) -> BlockMeta {
        let payload = zstd::bulk::compress(raw, 1).unwrap();
        if meta.payload_len == 0 {
            meta.payload_len = payload.len() as u32;
        }
        if meta.raw_len == 0 {
            meta.raw_len = raw.len() as u32;
        }
        meta.offset = self.end();
        let crc = crc32c::crc32c(&payload);
        self.bytes
            .extend_from_slice(&encode_block_header(&meta, crc));
        self.bytes.extend_from_slice(&payload);
        self.blocks.push(meta);
        meta
    }

    /// Appends an honest index and trailer for the blocks so far.
    pub fn seal(&mut self) {
        let blocks = self.blocks.clone();
        self.seal_with(&blocks);
    }

    /// Appends an index of `blocks` (which may lie) and its trailer, CRCs valid.
    pub fn seal_with(&mut self, blocks: &[BlockMeta]) {
        let end = self.end();
        encode_index(blocks, end, &mut self.bytes);
    }

    /// Appends a trailer with these fields and a valid CRC (no index).
    pub fn trailer(&mut self, block_count: u32, index_offset: u64, records: u64, index_crc: u32) {
        let t = self.bytes.len();
        self.bytes.extend_from_slice(&TRAILER_MAGIC.to_le_bytes());
        self.bytes.extend_from_slice(&block_count.to_le_bytes());
        self.bytes.extend_from_slice(&index_offset.to_le_bytes());
        self.bytes.extend_from_slice(&records.to_le_bytes());
        self.bytes.extend_from_slice(&index_crc.to_le_bytes());
        let crc = crc32c::crc32c(&self.bytes[t..t + 28]);
        self.bytes.extend_from_slice(&crc.to_le_bytes());
    }

    /// Offset of the trailer (of a sealed craft).
    pub fn trailer_offset(&self) -> u64 {
        self.end() - TRAILER_LEN as u64
    }
}

/// The encoding (before zstd) of `n` records of kind `kind`, length 0, timestamp 0,
/// weight 1, with `claimed` as the record count.
pub fn raw_empty_records(n: usize, claimed: u32, kind: u16) -> Vec<u8> {
    let mut raw = Vec::with_capacity(4 + 7 * n);
    raw.extend_from_slice(&claimed.to_le_bytes());
    for _ in 0..n {
        raw.extend_from_slice(&kind.to_le_bytes());
    }
    raw.extend(std::iter::repeat_n(0u8, n)); // flags
    raw.extend(std::iter::repeat_n(0u8, n)); // ts deltas
    raw.extend(std::iter::repeat_n(1u8, n)); // weights
    raw.extend(std::iter::repeat_n(0u8, n)); // lens
    raw.extend(std::iter::repeat_n(0u8, n)); // tails
    raw
}

/// What reading a crafted file must give.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Every read path fails with an error naming the file at `offset` whose text
    /// contains `contains`; verify reports it as a problem at that offset.
    Error { offset: u64, contains: &'static str },
    /// Exactly these records (timestamp, kind) in this order survive; `torn_at`: an
    /// unsealed file whose readable part ends there (verify reports it).
    Records {
        records: Vec<(u64, u16)>,
        torn_at: Option<u64>,
    },
}

/// One crafted file.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    /// Sealed (`.seg`) or not (`.open`).
    pub sealed: bool,
    pub bytes: Vec<u8>,
    pub expect: Expect,
    /// The segment header's `mono_to_wall_ns` (for wall-clock reads).
    pub mono_to_wall_ns: i64,
}

impl Case {
    /// The file name: stream 0, segment 0.
    pub fn file_name(&self) -> String {
        storage::SegmentName {
            created_unix_ns: 1_700_000_000_000_000_000,
            seq: 0,
            sealed: self.sealed,
        }
        .file_name()
    }
}

fn ts_kinds(records: &[Rec]) -> Vec<(u64, u16)> {
    records.iter().map(|r| (r.0, r.1)).collect()
}

/// Records a tiny block can claim: decoding them is bounded (7 raw bytes each) but
/// keeping one error string per bad one used to take GiBs (issue 8, defect 5).
pub const TINY_RECORDS: usize = 1_000_000;

/// The crafted corpus.
pub fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    let good = recs(1_000, 20);

    // Trailer lies: 2^32-1 blocks, with an index offset making offset + length wrap
    // around u64 to exactly the trailer's position (defect 4).
    let mut c = Craft::new(0, 0);
    c.block(&good);
    let t = c.end();
    let index_len = 16 + u32::MAX as u64 * 48;
    c.trailer(u32::MAX, t.wrapping_sub(index_len), 20, 0);
    cases.push(Case {
        name: "trailer_index_offset_wraps",
        sealed: true,
        bytes: c.bytes,
        expect: Expect::Error {
            offset: t + 8,
            contains: "index claims",
        },
        mono_to_wall_ns: 0,
    });

    // Trailer lies: 2^31 blocks, index right after the header (200 GiB of index in a
    // file of a few hundred bytes).
    let mut c = Craft::new(0, 0);
    c.block(&good);
    let t = c.end();
    c.trailer(1 << 31, FILE_HEADER_LEN as u64, 20, 0);
    cases.push(Case {
        name: "trailer_huge_block_count",
        sealed: true,
        bytes: c.bytes,
        expect: Expect::Error {
            offset: t + 8,
            contains: "must end by byte",
        },
        mono_to_wall_ns: 0,
    });

    // Trailer lies about the record count (index and blocks honest).
    let mut c = Craft::new(0, 0);
    c.block(&good);
    c.seal();
    let t = c.trailer_offset() as usize;
    let index_offset = u64::from_le_bytes(c.bytes[t + 8..t + 16].try_into().unwrap());
    c.bytes[t + 16..t + 24].copy_from_slice(&u64::MAX.to_le_bytes());
    let crc = crc32c::crc32c(&c.bytes[t..t + 28]);
    c.bytes[t + 28..t + 32].copy_from_slice(&crc.to_le_bytes());
    cases.push(Case {
        name: "trailer_record_count_lies",
        sealed: true,
        bytes: c.bytes,
        expect: Expect::Error {
            offset: index_offset,
            contains: "the trailer says 18446744073709551615",
        },
        mono_to_wall_ns: 0,
    });

    // Index entries: past the end of the file, overlapping, wrapping around u64.
    for (name, lie) in [
        ("index_entry_past_eof", 0u8),
        ("index_entries_overlap", 1),
        ("index_entry_offset_wraps", 2),
    ] {
        let mut c = Craft::new(0, 0);
        let a = c.block(&good);
        let b = c.block(&recs(5_000, 20));
        let index_offset = c.end();
        let lying = match lie {
            0 => vec![
                a,
                BlockMeta {
                    payload_len: 60 << 20,
                    ..b
                },
            ],
            1 => vec![
                a,
                BlockMeta {
                    offset: a.offset,
                    ..b
                },
            ],
            _ => vec![
                a,
                BlockMeta {
                    offset: u64::MAX - 10,
                    ..b
                },
            ],
        };
        c.seal_with(&lying);
        cases.push(Case {
            name,
            sealed: true,
            bytes: c.bytes,
            expect: Expect::Error {
                offset: index_offset,
                contains: "index entry 1",
            },
            mono_to_wall_ns: 0,
        });
    }

    // A tiny block whose header claims ten million records, its encoding one.
    let mut c = Craft::new(0, 0);
    let meta = c.raw_block(
        BlockMeta {
            count: 10_000_000,
            kinds: 1 << 1,
            ..BlockMeta::default()
        },
        &raw_empty_records(1, 1, 1),
    );
    c.seal();
    cases.push(Case {
        name: "block_header_claims_millions",
        sealed: true,
        bytes: c.bytes,
        expect: Expect::Error {
            offset: meta.offset + BLOCK_HEADER_LEN as u64,
            contains: "block holds 1 records, header says 10000000",
        },
        mono_to_wall_ns: 0,
    });

    // A tiny block (a few KiB) that really holds a million empty loss records: every
    // one is a bad loss record. Readers give them all back; verify's report stays small.
    let mut c = Craft::new(0, 0);
    c.raw_block(
        BlockMeta {
            count: TINY_RECORDS as u32,
            kinds: 1,
            ..BlockMeta::default()
        },
        &raw_empty_records(TINY_RECORDS, TINY_RECORDS as u32, KIND_LOSS),
    );
    c.seal();
    cases.push(Case {
        name: "tiny_block_million_bad_records",
        sealed: true,
        bytes: c.bytes,
        expect: Expect::Records {
            records: vec![(0, KIND_LOSS); TINY_RECORDS],
            torn_at: None,
        },
        mono_to_wall_ns: 0,
    });

    // A block header claiming ~4 GiB of payload (valid CRC), unsealed: the scan stops
    // there and keeps the block before it.
    let mut c = Craft::new(0, 0);
    c.block(&good);
    let at = c.end();
    let lie = BlockMeta {
        offset: at,
        payload_len: u32::MAX - BLOCK_HEADER_LEN as u32,
        raw_len: u32::MAX,
        count: 1,
        min_ts: 1,
        max_ts: 1,
        kinds: 2,
    };
    c.bytes.extend_from_slice(&encode_block_header(&lie, 0));
    c.bytes.extend_from_slice(&[0u8; 64]);
    cases.push(Case {
        name: "block_len_near_u32_max_unsealed",
        sealed: false,
        bytes: c.bytes,
        expect: Expect::Records {
            records: ts_kinds(&good),
            torn_at: Some(at),
        },
        mono_to_wall_ns: 0,
    });

    // The same length in a sealed file's index.
    let mut c = Craft::new(0, 0);
    let a = c.block(&good);
    let index_offset = c.end();
    c.seal_with(&[BlockMeta {
        payload_len: u32::MAX - BLOCK_HEADER_LEN as u32,
        ..a
    }]);
    cases.push(Case {
        name: "block_len_near_u32_max_in_index",
        sealed: true,
        bytes: c.bytes,
        expect: Expect::Error {
            offset: index_offset,
            contains: "index entry 0",
        },
        mono_to_wall_ns: 0,
    });

    // Timestamps at the ends of u64 (defect 10): kept by every reader.
    let extremes: Vec<Rec> = vec![
        (0, 1, 1, b"zero".to_vec()),
        (5, 1, 1, b"five".to_vec()),
        (u64::MAX - 1, 1, 1, b"max-1".to_vec()),
        (u64::MAX, 1, 1, b"max".to_vec()),
    ];
    for (name, m2w) in [
        ("ts_u64_max", 0i64),
        ("extreme_mono_to_wall_max", i64::MAX),
        ("extreme_mono_to_wall_min", i64::MIN),
    ] {
        let mut c = Craft::new(0, m2w);
        c.block(&extremes);
        c.seal();
        cases.push(Case {
            name,
            sealed: true,
            bytes: c.bytes,
            expect: Expect::Records {
                records: ts_kinds(&extremes),
                torn_at: None,
            },
            mono_to_wall_ns: m2w,
        });
    }

    // Loss counts that overflow u64 when summed: stats saturate (checked by the test).
    let mut c = Craft::new(0, 0);
    let losses = vec![loss(10, u64::MAX), loss(20, u64::MAX), loss(30, 7)];
    c.block(&losses);
    c.seal();
    cases.push(Case {
        name: "loss_counts_overflow",
        sealed: true,
        bytes: c.bytes,
        expect: Expect::Records {
            records: ts_kinds(&losses),
            torn_at: None,
        },
        mono_to_wall_ns: 0,
    });

    // A header whose host length lies (valid CRC).
    let mut h = FileHeader {
        stream_id: 0,
        abi_version: 1,
        seq: 0,
        created_unix_ns: 1,
        mono_to_wall_ns: 0,
        host: "h".into(),
    }
    .encode();
    h[48..50].copy_from_slice(&60_000u16.to_le_bytes());
    let mut c = Craft::with_header(h);
    c.block(&good);
    c.seal();
    cases.push(Case {
        name: "header_huge_host_len",
        sealed: true,
        bytes: c.bytes,
        expect: Expect::Error {
            offset: 0,
            contains: "host length 60000",
        },
        mono_to_wall_ns: 0,
    });

    // A record whose tail (zero bytes not stored) is u64::MAX: `len < start + tail`
    // overflowed before.
    let mut raw = Vec::new();
    raw.extend_from_slice(&1u32.to_le_bytes());
    raw.extend_from_slice(&1u16.to_le_bytes()); // kind
    raw.push(1); // flags: timestamp embedded
    raw.push(10); // ts delta: zigzag 5
    raw.push(1); // weight
    raw.push(16); // len
    raw.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    let mut c = Craft::new(0, 0);
    let meta = c.raw_block(
        BlockMeta {
            count: 1,
            min_ts: 5,
            max_ts: 5,
            kinds: 1 << 1,
            ..BlockMeta::default()
        },
        &raw,
    );
    c.seal();
    cases.push(Case {
        name: "record_tail_u64_max",
        sealed: true,
        bytes: c.bytes,
        expect: Expect::Error {
            offset: meta.offset + BLOCK_HEADER_LEN as u64,
            contains: "shorter than its parts",
        },
        mono_to_wall_ns: 0,
    });

    // A sealed name without a trailer (truncated after its blocks).
    let mut c = Craft::new(0, 0);
    c.block(&good);
    let len = c.end();
    cases.push(Case {
        name: "sealed_name_without_trailer",
        sealed: true,
        bytes: c.bytes,
        expect: Expect::Error {
            offset: len - TRAILER_LEN as u64,
            contains: "without a valid trailer",
        },
        mono_to_wall_ns: 0,
    });

    cases
}

/// Honest segments for seeding the fuzzer: a few blocks of every kind of record.
pub fn valid_segments() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut c = Craft::new(0, 1_000);
    c.block(&recs(1_000, 5));
    c.block(&[loss(2_000, 3), (2_001, 7, 10, vec![0u8; 40])]);
    let unsealed = c.bytes.clone();
    c.seal();
    out.push(("sealed_two_blocks", c.bytes));
    out.push(("unsealed_two_blocks", unsealed));
    let mut c = Craft::new(1, -5);
    c.block(&recs(u64::MAX - 100, 3));
    c.seal();
    out.push(("sealed_high_ts", c.bytes));
    out
}
