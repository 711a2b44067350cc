//! The on-disk structures of a segment file, byte by byte (`docs/segment-format.md`).
//!
//! # Design constraints
//! - Every structure is fixed-size, little-endian, and carries a CRC32C, so a reader can
//!   trust a length before it allocates or seeks by it.
//! - Blocks are self-contained: a block can be found, checked and decoded from its own
//!   header alone, so an index can always be rebuilt by scanning and a torn tail can be
//!   cut at the last sound block.
//! - Nothing here allocates or panics on bad input: decoding returns `Err(what)` naming the
//!   field that was wrong; callers add the file and offset.
//!
//! # On-disk layout
//! ```text
//! FileHeader (256 B) | Block* | [Index header (16 B) | IndexEntry* (48 B each) | Trailer (32 B)]
//! Block = BlockHeader (56 B) | payload (one zstd frame, payload_len bytes)
//! ```
//! The index and trailer exist only once the segment is sealed.

/// `b"KEVSEG01"`: first bytes of every segment file.
pub const FILE_MAGIC: [u8; 8] = *b"KEVSEG01";
/// Format version written in the file header.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the file header.
pub const FILE_HEADER_LEN: usize = 256;
/// Bytes of host name kept in the file header.
pub const HOST_MAX_LEN: usize = 128;
/// `"KBLK"` little-endian.
pub const BLOCK_MAGIC: u32 = u32::from_le_bytes(*b"KBLK");
/// Size of a block header.
pub const BLOCK_HEADER_LEN: usize = 56;
/// The encoding of block payloads this version writes (see the `block` module docs).
pub const BLOCK_ENCODING: u16 = 1;
/// Largest compressed payload or raw block a reader accepts: bounds every allocation
/// driven by a length read from a file.
pub const BLOCK_BYTES_MAX: u32 = 64 << 20;
/// `"KIDX"`
pub const INDEX_MAGIC: u32 = u32::from_le_bytes(*b"KIDX");
/// Index header: magic, entry count, reserved.
pub const INDEX_HEADER_LEN: usize = 16;
/// One index entry.
pub const INDEX_ENTRY_LEN: usize = 48;
/// `"KEND"`
pub const TRAILER_MAGIC: u32 = u32::from_le_bytes(*b"KEND");
/// The trailer at the very end of a sealed segment.
pub const TRAILER_LEN: usize = 32;

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// The segment file header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// Which stream (core thread) wrote the segment.
    pub stream_id: u32,
    /// Event ABI version of the records (`bpf::abi::ABI_VERSION`).
    pub abi_version: u32,
    /// Sequence number of the segment within its stream.
    pub seq: u64,
    /// Wall-clock creation time, ns since the Unix epoch.
    pub created_unix_ns: u64,
    /// `wall_ns = monotonic_ns + mono_to_wall_ns`: turns record timestamps into real time.
    pub mono_to_wall_ns: i64,
    /// Host name, at most [`HOST_MAX_LEN`] bytes.
    pub host: String,
}

impl FileHeader {
    /// Serializes into exactly [`FILE_HEADER_LEN`] bytes.
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut b = [0u8; FILE_HEADER_LEN];
        b[0..8].copy_from_slice(&FILE_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&(FILE_HEADER_LEN as u16).to_le_bytes());
        b[12..16].copy_from_slice(&self.stream_id.to_le_bytes());
        b[16..20].copy_from_slice(&self.abi_version.to_le_bytes());
        b[24..32].copy_from_slice(&self.seq.to_le_bytes());
        b[32..40].copy_from_slice(&self.created_unix_ns.to_le_bytes());
        b[40..48].copy_from_slice(&self.mono_to_wall_ns.to_le_bytes());
        let host = &self.host.as_bytes()[..self.host.len().min(HOST_MAX_LEN)];
        b[48..50].copy_from_slice(&(host.len() as u16).to_le_bytes());
        b[56..56 + host.len()].copy_from_slice(host);
        let crc = crc32c::crc32c(&b[..252]);
        b[252..256].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks a header.
    pub fn decode(b: &[u8]) -> Result<FileHeader, String> {
        if b.len() < FILE_HEADER_LEN {
            return Err(format!(
                "file header truncated: {} of {FILE_HEADER_LEN} bytes",
                b.len()
            ));
        }
        if b[0..8] != FILE_MAGIC {
            return Err(format!(
                "bad magic {:02x?}, expected {FILE_MAGIC:02x?} (KEVSEG01)",
                &b[0..8]
            ));
        }
        let crc = u32_at(b, 252);
        let want = crc32c::crc32c(&b[..252]);
        if crc != want {
            return Err(format!(
                "file header CRC32C {crc:#010x}, computed {want:#010x}"
            ));
        }
        let version = u16_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version}, this reader knows {FORMAT_VERSION}"
            ));
        }
        let host_len = u16_at(b, 48) as usize;
        if host_len > HOST_MAX_LEN {
            return Err(format!("host length {host_len} above {HOST_MAX_LEN}"));
        }
        Ok(FileHeader {
            stream_id: u32_at(b, 12),
            abi_version: u32_at(b, 16),
            seq: u64_at(b, 24),
            created_unix_ns: u64_at(b, 32),
            mono_to_wall_ns: u64_at(b, 40) as i64,
            host: String::from_utf8_lossy(&b[56..56 + host_len]).into_owned(),
        })
    }
}

/// What a block header says about its block; also what an index entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockMeta {
    /// File offset of the block header.
    pub offset: u64,
    /// Compressed payload bytes after the header.
    pub payload_len: u32,
    /// Bytes of the encoded block before compression.
    pub raw_len: u32,
    /// Records in the block.
    pub count: u32,
    /// Smallest and largest record timestamp (monotonic ns).
    pub min_ts: u64,
    pub max_ts: u64,
    /// Bit k set when a record of kind k (`kind & 63`) is inside.
    pub kinds: u64,
}

impl BlockMeta {
    /// Total bytes of the block on disk.
    pub fn total_len(&self) -> u64 {
        BLOCK_HEADER_LEN as u64 + self.payload_len as u64
    }

    /// Whether the block may hold records in `[from, to)` of the kinds in `kinds`;
    /// `to == u64::MAX` means no upper bound (a record at `u64::MAX` is included).
    pub fn overlaps(&self, from: u64, to: u64, kinds: u64) -> bool {
        if to == 0 {
            return false;
        }
        let last = if to == u64::MAX { u64::MAX } else { to - 1 };
        self.overlaps_inclusive(from, last, kinds)
    }

    /// Whether the block may hold records with `first <= ts <= last` of the kinds in
    /// `kinds`.
    pub fn overlaps_inclusive(&self, first: u64, last: u64, kinds: u64) -> bool {
        self.count > 0 && self.max_ts >= first && self.min_ts <= last && self.kinds & kinds != 0
    }
}

/// The bit of `kind` in a kind bitmap.
pub fn kind_bit(kind: u16) -> u64 {
    1u64 << (kind & 63)
}

/// Encodes a block header for `meta` whose payload has CRC32C `payload_crc`.
pub fn encode_block_header(meta: &BlockMeta, payload_crc: u32) -> [u8; BLOCK_HEADER_LEN] {
    let mut b = [0u8; BLOCK_HEADER_LEN];
    b[0..4].copy_from_slice(&BLOCK_MAGIC.to_le_bytes());
    b[4..6].copy_from_slice(&(BLOCK_HEADER_LEN as u16).to_le_bytes());
    b[6..8].copy_from_slice(&BLOCK_ENCODING.to_le_bytes());
    b[8..12].copy_from_slice(&meta.payload_len.to_le_bytes());
    b[12..16].copy_from_slice(&meta.raw_len.to_le_bytes());
    b[16..20].copy_from_slice(&meta.count.to_le_bytes());
    b[24..32].copy_from_slice(&meta.min_ts.to_le_bytes());
    b[32..40].copy_from_slice(&meta.max_ts.to_le_bytes());
    b[40..48].copy_from_slice(&meta.kinds.to_le_bytes());
    b[48..52].copy_from_slice(&payload_crc.to_le_bytes());
    let crc = crc32c::crc32c(&b[..52]);
    b[52..56].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Parses and checks a block header found at file offset `offset`; returns the block's
/// metadata and its payload CRC32C.
pub fn decode_block_header(b: &[u8], offset: u64) -> Result<(BlockMeta, u32), String> {
    if b.len() < BLOCK_HEADER_LEN {
        return Err(format!(
            "block header truncated: {} of {BLOCK_HEADER_LEN} bytes",
            b.len()
        ));
    }
    let magic = u32_at(b, 0);
    if magic != BLOCK_MAGIC {
        return Err(format!("bad block magic {magic:#010x}, expected KBLK"));
    }
    let crc = u32_at(b, 52);
    let want = crc32c::crc32c(&b[..52]);
    if crc != want {
        return Err(format!(
            "block header CRC32C {crc:#010x}, computed {want:#010x}"
        ));
    }
    let encoding = u16_at(b, 6);
    if encoding != BLOCK_ENCODING {
        return Err(format!(
            "block encoding {encoding}, this reader knows {BLOCK_ENCODING}"
        ));
    }
    let meta = BlockMeta {
        offset,
        payload_len: u32_at(b, 8),
        raw_len: u32_at(b, 12),
        count: u32_at(b, 16),
        min_ts: u64_at(b, 24),
        max_ts: u64_at(b, 32),
        kinds: u64_at(b, 40),
    };
    if meta.payload_len > BLOCK_BYTES_MAX || meta.raw_len > BLOCK_BYTES_MAX {
        return Err(format!(
            "block lengths {} compressed / {} raw exceed the {BLOCK_BYTES_MAX}-byte bound",
            meta.payload_len, meta.raw_len
        ));
    }
    if meta.min_ts > meta.max_ts {
        return Err(format!(
            "block time range {}..{} is inverted",
            meta.min_ts, meta.max_ts
        ));
    }
    Ok((meta, u32_at(b, 48)))
}

/// Serializes the index and trailer for `blocks`.
pub fn encode_index(blocks: &[BlockMeta], index_offset: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&INDEX_MAGIC.to_le_bytes());
    out.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 8]);
    let mut records = 0u64;
    for m in blocks {
        out.extend_from_slice(&m.offset.to_le_bytes());
        out.extend_from_slice(&m.payload_len.to_le_bytes());
        out.extend_from_slice(&m.count.to_le_bytes());
        out.extend_from_slice(&m.min_ts.to_le_bytes());
        out.extend_from_slice(&m.max_ts.to_le_bytes());
        out.extend_from_slice(&m.kinds.to_le_bytes());
        out.extend_from_slice(&m.raw_len.to_le_bytes());
        out.extend_from_slice(&[0u8; 4]);
        records += m.count as u64;
    }
    let index_crc = crc32c::crc32c(&out[start..]);
    let t = out.len();
    out.extend_from_slice(&TRAILER_MAGIC.to_le_bytes());
    out.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
    out.extend_from_slice(&index_offset.to_le_bytes());
    out.extend_from_slice(&records.to_le_bytes());
    out.extend_from_slice(&index_crc.to_le_bytes());
    let trailer_crc = crc32c::crc32c(&out[t..t + 28]);
    out.extend_from_slice(&trailer_crc.to_le_bytes());
}

/// A decoded trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub block_count: u32,
    pub index_offset: u64,
    pub record_count: u64,
    pub index_crc: u32,
}

/// Parses the last [`TRAILER_LEN`] bytes of a file. `Ok(None)`: no trailer (unsealed).
pub fn decode_trailer(b: &[u8]) -> Result<Option<Trailer>, String> {
    if b.len() < TRAILER_LEN || u32_at(b, 0) != TRAILER_MAGIC {
        return Ok(None);
    }
    let crc = u32_at(b, 28);
    let want = crc32c::crc32c(&b[..28]);
    if crc != want {
        return Err(format!("trailer CRC32C {crc:#010x}, computed {want:#010x}"));
    }
    Ok(Some(Trailer {
        block_count: u32_at(b, 4),
        index_offset: u64_at(b, 8),
        record_count: u64_at(b, 16),
        index_crc: u32_at(b, 24),
    }))
}

/// Parses an index (header and entries, without the trailer) checked against `trailer`.
/// `file_len` bounds every offset.
pub fn decode_index(b: &[u8], trailer: &Trailer, file_len: u64) -> Result<Vec<BlockMeta>, String> {
    let want_len = (trailer.block_count as usize)
        .checked_mul(INDEX_ENTRY_LEN)
        .and_then(|n| n.checked_add(INDEX_HEADER_LEN))
        .ok_or_else(|| format!("{} index entries overflow", trailer.block_count))?;
    if b.len() != want_len {
        return Err(format!(
            "index is {} bytes, trailer implies {want_len}",
            b.len()
        ));
    }
    let crc = crc32c::crc32c(b);
    if crc != trailer.index_crc {
        return Err(format!(
            "index CRC32C {crc:#010x}, trailer says {:#010x}",
            trailer.index_crc
        ));
    }
    if u32_at(b, 0) != INDEX_MAGIC || u32_at(b, 4) != trailer.block_count {
        return Err("index header does not match the trailer".into());
    }
    // `b` holds all the entries (checked above): the count is bounded by real bytes.
    let mut blocks = Vec::with_capacity(trailer.block_count as usize);
    let mut records = 0u64;
    let mut next = FILE_HEADER_LEN as u64;
    for i in 0..trailer.block_count as usize {
        let e = &b[INDEX_HEADER_LEN + i * INDEX_ENTRY_LEN..][..INDEX_ENTRY_LEN];
        let m = BlockMeta {
            offset: u64_at(e, 0),
            payload_len: u32_at(e, 8),
            count: u32_at(e, 12),
            min_ts: u64_at(e, 16),
            max_ts: u64_at(e, 24),
            kinds: u64_at(e, 32),
            raw_len: u32_at(e, 40),
        };
        let end = m.offset.checked_add(m.total_len());
        if m.offset != next || end.is_none_or(|e| e > trailer.index_offset.min(file_len)) {
            return Err(format!(
                "index entry {i}: block at {} (+{}) is not where the previous one ends ({next}) or runs past the index",
                m.offset,
                m.total_len()
            ));
        }
        if m.payload_len > BLOCK_BYTES_MAX || m.raw_len > BLOCK_BYTES_MAX || m.min_ts > m.max_ts {
            return Err(format!("index entry {i}: impossible lengths or time range"));
        }
        next = m.offset + m.total_len(); // checked just above
        records = records.saturating_add(m.count as u64);
        blocks.push(m);
    }
    if records != trailer.record_count {
        return Err(format!(
            "index entries hold {records} records, the trailer says {}",
            trailer.record_count
        ));
    }
    if next != trailer.index_offset {
        return Err(format!(
            "blocks end at {next} but the index starts at {}",
            trailer.index_offset
        ));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_detect_flips() {
        let h = FileHeader {
            stream_id: 3,
            abi_version: 1,
            seq: 9,
            created_unix_ns: 1_700_000_000_000_000_000,
            mono_to_wall_ns: -5,
            host: "node-a".into(),
        };
        let b = h.encode();
        assert_eq!(FileHeader::decode(&b).unwrap(), h);
        for i in 0..FILE_HEADER_LEN {
            let mut c = b;
            c[i] ^= 0x10;
            assert!(FileHeader::decode(&c).is_err(), "flip at {i} undetected");
        }
        let m = BlockMeta {
            offset: 256,
            payload_len: 100,
            raw_len: 400,
            count: 7,
            min_ts: 10,
            max_ts: 20,
            kinds: 0b1010,
        };
        let bh = encode_block_header(&m, 0xdead_beef);
        assert_eq!(decode_block_header(&bh, 256).unwrap(), (m, 0xdead_beef));
        for i in 0..BLOCK_HEADER_LEN {
            let mut c = bh;
            c[i] ^= 1;
            assert!(
                decode_block_header(&c, 256).is_err(),
                "flip at {i} undetected"
            );
        }
    }

    #[test]
    fn index_round_trips_and_checks_offsets() {
        let a = BlockMeta {
            offset: 256,
            payload_len: 10,
            raw_len: 20,
            count: 1,
            min_ts: 1,
            max_ts: 2,
            kinds: 1,
        };
        let b = BlockMeta {
            offset: 256 + 66,
            ..a
        };
        let index_offset = b.offset + b.total_len();
        let mut out = Vec::new();
        encode_index(&[a, b], index_offset, &mut out);
        let t = decode_trailer(&out[out.len() - TRAILER_LEN..])
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.block_count, t.index_offset, t.record_count),
            (2, index_offset, 2)
        );
        let idx = &out[..out.len() - TRAILER_LEN];
        let file_len = index_offset + out.len() as u64;
        assert_eq!(decode_index(idx, &t, file_len).unwrap(), vec![a, b]);
        let mut bad = idx.to_vec();
        bad[INDEX_HEADER_LEN] ^= 1;
        assert!(decode_index(&bad, &t, file_len).is_err());
    }
}
