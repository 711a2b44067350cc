//! Building, compressing, decompressing and decoding one block.
//!
//! # Design constraints
//! - Lossless: decoding gives back every record's exact bytes, timestamp, kind and
//!   weight, in the order they were pushed (property-tested below).
//! - Cheap per record on the write path: a few varints and one copy into reused column
//!   buffers; the columns are fed to one reused zstd context without concatenating.
//! - The decoder trusts nothing: every count, length and varint is bounded before use.
//!
//! # Encoding (the payload before zstd, `BLOCK_ENCODING` = 1)
//! ```text
//! u32 n
//! kinds   n x u16
//! flags   n x u8      bit 0: the record's first 8 bytes equal its timestamp and are
//!                     stored as nothing (restored on decode)
//! ts      n x varint  zigzag delta from the previous timestamp (the first from 0)
//! weights n x varint
//! lens    n x varint  record length
//! tails   n x varint  trailing zero bytes not stored
//! payload             for each record: bytes [8 if flag 0 else 0 .. len - tail]
//! ```
//! Kernel records compress well this way: the header fields form columns, timestamps
//! become small deltas, and the zero tails of fixed string buffers are not stored at all.

use crate::format::{BLOCK_BYTES_MAX, BLOCK_HEADER_LEN, BlockMeta, encode_block_header, kind_bit};
use crate::record::RecordRef;

const FLAG_TS_EMBEDDED: u8 = 1;

/// Largest decoded block, in 8-byte words (records are padded to 8 bytes, so the
/// decoded form of a block may be larger than its `raw_len`): 4 x [`BLOCK_BYTES_MAX`].
const DECODED_WORDS_MAX: usize = 4 * BLOCK_BYTES_MAX as usize / 8;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Length of `b` without its trailing zero bytes, checked eight bytes at a time.
fn nonzero_prefix(b: &[u8]) -> usize {
    let mut end = b.len();
    while end >= 8 {
        let word = u64::from_ne_bytes(b[end - 8..end].try_into().expect("8 bytes"));
        if word != 0 {
            break;
        }
        end -= 8;
    }
    while end > 0 && b[end - 1] == 0 {
        end -= 1;
    }
    end
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Kinds counted one by one in a [`KindTally`] (`0..KINDS_TALLIED`); records of higher
/// kinds are counted together in [`KindTally::other`].
pub const KINDS_TALLIED: usize = 64;

/// Records by kind: what a block holds, or what was lost when it could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindTally {
    /// Records of kind `k` for `k < KINDS_TALLIED`.
    pub per_kind: [u64; KINDS_TALLIED],
    /// Records of kinds `>= KINDS_TALLIED`.
    pub other: u64,
}

impl Default for KindTally {
    fn default() -> Self {
        KindTally {
            per_kind: [0; KINDS_TALLIED],
            other: 0,
        }
    }
}

impl KindTally {
    /// Counts one record of `kind`.
    pub fn add_one(&mut self, kind: u16) {
        match self.per_kind.get_mut(kind as usize) {
            Some(n) => *n += 1,
            None => self.other += 1,
        }
    }

    /// Adds every count of `other` (saturating).
    pub fn add(&mut self, other: &KindTally) {
        for (a, b) in self.per_kind.iter_mut().zip(&other.per_kind) {
            *a = a.saturating_add(*b);
        }
        self.other = self.other.saturating_add(other.other);
    }

    /// Records counted, all kinds.
    pub fn total(&self) -> u64 {
        self.per_kind
            .iter()
            .fold(self.other, |n, k| n.saturating_add(*k))
    }
}

/// Accumulates records for one block. Allocated once, reused for every block.
#[derive(Debug)]
pub struct BlockBuilder {
    kinds: Vec<u8>,
    flags: Vec<u8>,
    ts: Vec<u8>,
    weights: Vec<u8>,
    lens: Vec<u8>,
    tails: Vec<u8>,
    payload: Vec<u8>,
    count: u32,
    prev_ts: u64,
    min_ts: u64,
    max_ts: u64,
    kind_bits: u64,
    tally: KindTally,
}

impl BlockBuilder {
    /// A builder sized for blocks of about `block_bytes` encoded bytes.
    pub fn new(block_bytes: usize) -> BlockBuilder {
        let records = block_bytes / 32 + 16;
        BlockBuilder {
            kinds: Vec::with_capacity(records * 2),
            flags: Vec::with_capacity(records),
            ts: Vec::with_capacity(records * 4),
            weights: Vec::with_capacity(records),
            lens: Vec::with_capacity(records * 2),
            tails: Vec::with_capacity(records * 2),
            payload: Vec::with_capacity(block_bytes + 4096),
            count: 0,
            prev_ts: 0,
            min_ts: u64::MAX,
            max_ts: 0,
            kind_bits: 0,
            tally: KindTally::default(),
        }
    }

    /// The records pushed since the last `finish`, by kind.
    pub fn tally(&self) -> &KindTally {
        &self.tally
    }

    /// Drops the records pushed since the last `finish` (they could not be written).
    pub fn clear(&mut self) {
        self.reset();
    }

    /// Records pushed since the last `finish`.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Encoded bytes so far (what zstd will be fed).
    pub fn raw_len(&self) -> usize {
        4 + self.kinds.len()
            + self.flags.len()
            + self.ts.len()
            + self.weights.len()
            + self.lens.len()
            + self.tails.len()
            + self.payload.len()
    }

    /// Adds a record. The caller keeps `raw_len` below [`BLOCK_BYTES_MAX`] by finishing
    /// blocks in time; a single record must be smaller than that.
    pub fn push(&mut self, r: &RecordRef<'_>) {
        let bytes = r.bytes;
        self.kinds.extend_from_slice(&r.kind.to_le_bytes());
        let embedded = bytes.len() >= 8 && bytes[..8] == r.ts_ns.to_le_bytes();
        self.flags.push(if embedded { FLAG_TS_EMBEDDED } else { 0 });
        put_varint(
            &mut self.ts,
            zigzag(r.ts_ns.wrapping_sub(self.prev_ts) as i64),
        );
        self.prev_ts = r.ts_ns;
        put_varint(&mut self.weights, r.weight as u64);
        put_varint(&mut self.lens, bytes.len() as u64);
        let start = if embedded { 8 } else { 0 };
        let body = &bytes[start..];
        let kept = nonzero_prefix(body);
        put_varint(&mut self.tails, (body.len() - kept) as u64);
        self.payload.extend_from_slice(&body[..kept]);
        self.count += 1;
        self.min_ts = self.min_ts.min(r.ts_ns);
        self.max_ts = self.max_ts.max(r.ts_ns);
        self.kind_bits |= kind_bit(r.kind);
        self.tally.add_one(r.kind);
    }

    /// Compresses the block into `out` (cleared first): header then payload. Resets the
    /// builder. Returns the block's metadata with `offset` 0 (the writer sets it).
    pub fn finish(
        &mut self,
        zstd: &mut Compressor,
        out: &mut Vec<u8>,
    ) -> std::io::Result<BlockMeta> {
        let raw_len = self.raw_len();
        out.clear();
        out.resize(BLOCK_HEADER_LEN, 0);
        let n = self.count.to_le_bytes();
        let parts: [&[u8]; 8] = [
            &n,
            &self.kinds,
            &self.flags,
            &self.ts,
            &self.weights,
            &self.lens,
            &self.tails,
            &self.payload,
        ];
        zstd.compress(&parts, raw_len, out)?;
        let payload_len = out.len() - BLOCK_HEADER_LEN;
        let payload_crc = crc32c::crc32c(&out[BLOCK_HEADER_LEN..]);
        let meta = BlockMeta {
            offset: 0,
            payload_len: payload_len as u32,
            raw_len: raw_len as u32,
            count: self.count,
            min_ts: if self.count == 0 { 0 } else { self.min_ts },
            max_ts: self.max_ts,
            kinds: self.kind_bits,
        };
        out[..BLOCK_HEADER_LEN].copy_from_slice(&encode_block_header(&meta, payload_crc));
        self.reset();
        Ok(meta)
    }

    fn reset(&mut self) {
        for v in [
            &mut self.kinds,
            &mut self.flags,
            &mut self.ts,
            &mut self.weights,
            &mut self.lens,
            &mut self.tails,
            &mut self.payload,
        ] {
            v.clear();
        }
        self.count = 0;
        self.prev_ts = 0;
        self.min_ts = u64::MAX;
        self.max_ts = 0;
        self.kind_bits = 0;
        self.tally = KindTally::default();
    }
}

/// One reused zstd compression context and its staging buffer.
pub struct Compressor {
    cctx: zstd::bulk::Compressor<'static>,
    raw: Vec<u8>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compressor")
    }
}

impl Compressor {
    /// A context compressing at `level` (negative levels are faster).
    pub fn new(level: i32) -> std::io::Result<Compressor> {
        Ok(Compressor {
            cctx: zstd::bulk::Compressor::new(level)?,
            raw: Vec::new(),
        })
    }

    /// Makes room to stage blocks of up to `bytes` (so that no later block allocates).
    pub fn reserve(&mut self, bytes: usize) {
        self.raw.reserve(bytes.saturating_sub(self.raw.len()));
    }

    /// Appends one zstd frame of the concatenation of `parts` (`total` bytes) to `out`.
    /// The parts are staged into one buffer first (~140 bytes copied per record) so that
    /// zstd runs one-shot; against streaming the parts this measured 303 vs 343 ns per
    /// record in one run and was within noise in another, and the code is simpler.
    fn compress(
        &mut self,
        parts: &[&[u8]],
        total: usize,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        self.raw.clear();
        self.raw.reserve(total);
        for part in parts {
            self.raw.extend_from_slice(part);
        }
        // zstd writes a Vec from its start: give it the slice after what `out` holds.
        let start = out.len();
        out.resize(start + zstd::zstd_safe::compress_bound(total), 0);
        let n = self.cctx.compress_to_buffer(&self.raw, &mut out[start..])?;
        out.truncate(start + n);
        Ok(())
    }
}

/// One decoded record inside a [`DecodedBlock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub ts_ns: u64,
    pub kind: u16,
    pub weight: u32,
    /// Byte offset of the record in the block's aligned buffer (a multiple of 8).
    offset: usize,
    len: usize,
}

/// The records of one block, each 8-byte aligned so typed views can be taken in place.
/// Reused across blocks: decoding allocates only when a block is larger than any before.
#[derive(Default)]
pub struct DecodedBlock {
    raw: Vec<u8>,
    words: Vec<u64>,
    entries: Vec<Entry>,
    dctx: Option<zstd::bulk::Decompressor<'static>>,
}

impl std::fmt::Debug for DecodedBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedBlock")
            .field("records", &self.entries.len())
            .finish()
    }
}

/// `n` and a quarter more, at most `max` (and at least `n`): the size of a reusable
/// buffer that must hold `n`, so that the next, slightly larger block fits too.
fn with_headroom(n: usize, max: usize) -> usize {
    n.saturating_add(n / 4).min(max).max(n)
}

impl DecodedBlock {
    /// An empty, reusable decoded block.
    pub fn new() -> DecodedBlock {
        DecodedBlock::default()
    }

    /// The records, in write order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The bytes of `entry`.
    pub fn bytes(&self, entry: &Entry) -> &[u8] {
        let all: &[u8] = as_bytes(&self.words);
        &all[entry.offset..entry.offset + entry.len]
    }

    /// Record `i` as a [`RecordRef`].
    pub fn record(&self, i: usize) -> RecordRef<'_> {
        let e = &self.entries[i];
        RecordRef {
            ts_ns: e.ts_ns,
            kind: e.kind,
            weight: e.weight,
            bytes: self.bytes(e),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the block holds no record.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks `payload` against `meta` and its CRC, decompresses and decodes it.
    pub fn decode(
        &mut self,
        meta: &BlockMeta,
        payload_crc: u32,
        payload: &[u8],
    ) -> Result<(), String> {
        self.entries.clear();
        if payload.len() != meta.payload_len as usize {
            return Err(format!(
                "payload is {} bytes, header says {}",
                payload.len(),
                meta.payload_len
            ));
        }
        let crc = crc32c::crc32c(payload);
        if crc != payload_crc {
            return Err(format!(
                "payload CRC32C {crc:#010x}, header says {payload_crc:#010x}"
            ));
        }
        let raw_len = meta.raw_len as usize;
        if raw_len > BLOCK_BYTES_MAX as usize {
            return Err(format!("raw length {raw_len} above the bound"));
        }
        let dctx = match &mut self.dctx {
            Some(d) => d,
            None => self
                .dctx
                .insert(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd context: {e}"))?),
        };
        self.raw.clear();
        if self.raw.capacity() < raw_len {
            // A new buffer, not a grown one: growing would copy the old bytes for nothing.
            self.raw = Vec::with_capacity(with_headroom(raw_len, BLOCK_BYTES_MAX as usize));
        }
        let n = dctx
            .decompress_to_buffer(payload, &mut self.raw)
            .map_err(|e| format!("zstd: {e}"))?;
        if n != raw_len {
            return Err(format!("decompressed {n} bytes, header says {raw_len}"));
        }
        self.parse(meta)
    }

    fn parse(&mut self, meta: &BlockMeta) -> Result<(), String> {
        let raw = &self.raw[..];
        let mut cur = Cursor { b: raw, pos: 0 };
        let n = cur.u32()? as usize;
        if n != meta.count as usize {
            return Err(format!(
                "block holds {n} records, header says {}",
                meta.count
            ));
        }
        // Each record takes at least 2 + 1 + 4 x 1 bytes of columns.
        if n.saturating_mul(7) > raw.len() {
            return Err(format!("{n} records cannot fit in {} bytes", raw.len()));
        }
        let kinds = cur.take(n * 2)?;
        let flags = cur.take(n)?;
        self.entries.reserve(n);
        let mut ts = 0u64;
        let mut min_ts = u64::MAX;
        let mut max_ts = 0;
        let mut kind_bits = 0u64;
        for i in 0..n {
            ts = ts.wrapping_add(unzigzag(cur.varint()?) as u64);
            let kind = u16::from_le_bytes([kinds[2 * i], kinds[2 * i + 1]]);
            min_ts = min_ts.min(ts);
            max_ts = max_ts.max(ts);
            kind_bits |= kind_bit(kind);
            self.entries.push(Entry {
                ts_ns: ts,
                kind,
                weight: 0,
                offset: 0,
                len: 0,
            });
        }
        if n > 0 && (min_ts != meta.min_ts || max_ts != meta.max_ts || kind_bits != meta.kinds) {
            return Err("records disagree with the header's time range or kind bitmap".into());
        }
        for e in &mut self.entries {
            let w = cur.varint()?;
            e.weight = u32::try_from(w).map_err(|_| format!("weight {w} out of range"))?;
        }
        let mut total_words = 0usize;
        for e in &mut self.entries {
            let len = cur.varint()?;
            if len > BLOCK_BYTES_MAX as u64 {
                return Err(format!("record length {len} above the bound"));
            }
            e.len = len as usize;
            e.offset = total_words * 8;
            // Each length is at most 64 MiB and the total is checked on every step:
            // neither the sum nor the buffer below can grow past the bound.
            total_words += e.len.div_ceil(8);
            if total_words > DECODED_WORDS_MAX {
                return Err(format!(
                    "records expand past the {}-byte decoded-block bound",
                    DECODED_WORDS_MAX * 8
                ));
            }
        }
        let tails_start = cur.pos;
        for _ in 0..n {
            cur.varint()?;
        }
        let mut tails = Cursor {
            b: raw,
            pos: tails_start,
        };
        // Grow only: every byte of a record is written below (stored bytes, restored
        // timestamp, zeroed tail), so stale bytes from earlier blocks never show.
        if self.words.len() < total_words {
            // Replaced, not grown (nothing in it is kept), with room for somewhat larger
            // blocks; zeroed by the allocator, so pages fresh from the OS are touched only
            // where records are written.
            self.words = Vec::new();
            self.words = vec![0; with_headroom(total_words, DECODED_WORDS_MAX)];
        }
        let out: &mut [u8] = as_bytes_mut(&mut self.words);
        for (i, e) in self.entries.iter().enumerate() {
            let tail = tails.varint()?;
            let embedded = flags[i] & FLAG_TS_EMBEDDED != 0;
            let start = if embedded { 8 } else { 0 };
            // `tail` is a u64 from the file: compare without adding to it.
            let Some(tail) = (e.len.checked_sub(start))
                .filter(|&room| tail <= room as u64)
                .map(|_| tail as usize)
            else {
                return Err(format!(
                    "record {i}: length {} shorter than its parts ({start} + {tail})",
                    e.len
                ));
            };
            let stored = e.len - start - tail;
            let body = cur.take(stored)?;
            let rec = &mut out[e.offset..e.offset + e.len];
            if embedded {
                rec[..8].copy_from_slice(&e.ts_ns.to_le_bytes());
            }
            rec[start..start + stored].copy_from_slice(body);
            rec[start + stored..].fill(0);
        }
        if cur.pos != raw.len() {
            return Err(format!(
                "{} stray bytes after the last record",
                raw.len() - cur.pos
            ));
        }
        Ok(())
    }
}

fn as_bytes(w: &[u64]) -> &[u8] {
    // SAFETY: u64 has no padding and any u64 memory is valid u8 memory of 8x the length.
    unsafe { std::slice::from_raw_parts(w.as_ptr().cast(), w.len() * 8) }
}

fn as_bytes_mut(w: &mut [u64]) -> &mut [u8] {
    // SAFETY: as above; every byte pattern is a valid u64, so writes cannot break it.
    unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr().cast(), w.len() * 8) }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| {
            format!(
                "needs {n} bytes at {} of a {}-byte block",
                self.pos,
                self.b.len()
            )
        })?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .b
                .get(self.pos)
                .ok_or_else(|| format!("varint runs past the block at {}", self.pos))?;
            self.pos += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint longer than 10 bytes at {}", self.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::decode_block_header;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Random records: random lengths (0..600), zero tails, embedded or not timestamps,
    /// timestamps that go backwards, every weight range.
    fn random_records(rng: &mut Rng, n: usize) -> Vec<(u64, u16, u32, Vec<u8>)> {
        let mut ts = rng.next() >> 8;
        (0..n)
            .map(|_| {
                ts = ts.wrapping_add(rng.next() % 5000).wrapping_sub(1000);
                let len = (rng.next() % 600) as usize;
                let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let tail = (rng.next() as usize % (len + 1)).min(len);
                for x in &mut b[len - tail..] {
                    *x = 0;
                }
                if len >= 8 && rng.next().is_multiple_of(2) {
                    b[..8].copy_from_slice(&ts.to_le_bytes());
                }
                let weight = match rng.next() % 3 {
                    0 => 1,
                    1 => (rng.next() % 1000) as u32,
                    _ => rng.next() as u32,
                };
                (ts, (rng.next() % 70) as u16, weight, b)
            })
            .collect()
    }

    #[test]
    fn random_blocks_round_trip_exactly() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut builder = BlockBuilder::new(64 << 10);
        let mut zstd = Compressor::new(1).unwrap();
        let mut out = Vec::new();
        let mut decoded = DecodedBlock::new();
        for round in 0..200 {
            let n = (rng.next() % 300) as usize;
            let recs = random_records(&mut rng, n);
            for (ts, kind, weight, bytes) in &recs {
                builder.push(&RecordRef {
                    ts_ns: *ts,
                    kind: *kind,
                    weight: *weight,
                    bytes,
                });
            }
            let meta = builder.finish(&mut zstd, &mut out).unwrap();
            let (h, crc) = decode_block_header(&out, 0).unwrap();
            assert_eq!(h, meta);
            decoded
                .decode(&h, crc, &out[BLOCK_HEADER_LEN..])
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(decoded.len(), n);
            for (i, (ts, kind, weight, bytes)) in recs.iter().enumerate() {
                let r = decoded.record(i);
                assert_eq!(
                    (r.ts_ns, r.kind, r.weight, r.bytes),
                    (*ts, *kind, *weight, &bytes[..]),
                    "round {round} record {i}"
                );
                assert_eq!(
                    r.bytes.as_ptr() as usize % 8,
                    0,
                    "records are 8-byte aligned"
                );
            }
        }
    }

    #[test]
    fn corrupt_payloads_are_errors_not_panics() {
        let mut rng = Rng(42);
        let mut builder = BlockBuilder::new(16 << 10);
        let mut zstd = Compressor::new(1).unwrap();
        let mut out = Vec::new();
        for (ts, kind, weight, bytes) in random_records(&mut rng, 50) {
            builder.push(&RecordRef {
                ts_ns: ts,
                kind,
                weight,
                bytes: &bytes,
            });
        }
        let meta = builder.finish(&mut zstd, &mut out).unwrap();
        let payload = out[BLOCK_HEADER_LEN..].to_vec();
        let mut decoded = DecodedBlock::new();
        // Every bit flip is caught by the CRC.
        for i in 0..payload.len() {
            let mut p = payload.clone();
            p[i] ^= 0x04;
            let crc = crc32c::crc32c(&payload);
            assert!(decoded.decode(&meta, crc, &p).is_err());
        }
        // With the CRC recomputed (a lying writer), the decoder never panics, and what
        // it accepts holds exactly the records the header claims, each within the block.
        for i in 0..payload.len() {
            let mut p = payload.clone();
            p[i] = p[i].wrapping_add(1 + (rng.next() % 255) as u8);
            if decoded.decode(&meta, crc32c::crc32c(&p), &p).is_ok() {
                assert_eq!(decoded.len(), meta.count as usize, "flip at {i}");
                for r in 0..decoded.len() {
                    let rec = decoded.record(r);
                    assert!(rec.bytes.len() <= meta.raw_len as usize, "flip at {i}");
                }
            }
        }
        // Raw encodings with lying counts and lengths: parse directly.
        let mut raw = Vec::new();
        raw.extend_from_slice(&1000u32.to_le_bytes());
        raw.extend_from_slice(&[0xff; 64]);
        decoded.raw = raw;
        assert!(
            decoded
                .parse(&BlockMeta {
                    count: 1000,
                    ..meta
                })
                .is_err()
        );
    }

    #[test]
    fn nonzero_prefix_trims_only_zero_tails() {
        assert_eq!(nonzero_prefix(&[]), 0);
        assert_eq!(nonzero_prefix(&[0; 17]), 0);
        assert_eq!(nonzero_prefix(&[1, 0, 0]), 1);
        let mut b = [0u8; 40];
        b[9] = 7;
        assert_eq!(nonzero_prefix(&b), 10);
        b[39] = 1;
        assert_eq!(nonzero_prefix(&b), 40);
    }

    #[test]
    fn varints_and_zigzag() {
        for v in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN, 1 << 40] {
            assert_eq!(unzigzag(zigzag(v)), v);
            let mut b = Vec::new();
            put_varint(&mut b, zigzag(v));
            assert_eq!(Cursor { b: &b, pos: 0 }.varint().unwrap(), zigzag(v));
        }
        assert!(
            Cursor {
                b: &[0x80; 11],
                pos: 0
            }
            .varint()
            .is_err()
        );
    }
}
