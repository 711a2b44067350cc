//! Bad input: bad magic, flipped bits in header, payload and index, truncated headers,
//! lengths pointing past the end or asking for gigabytes. Each is an error naming the
//! file and the offset; none panics or allocates without bound.

mod common;

use std::path::Path;

use common::*;
use storage::format::{BLOCK_HEADER_LEN, FILE_HEADER_LEN, TRAILER_LEN};
use storage::{IoBackend, ReadOptions, Reader, Segment, StorageError, StreamWriter};

/// One sealed segment of a few blocks; returns its path.
fn sealed(dir: &Path) -> std::path::PathBuf {
    let mut cfg = config(dir, 0, IoBackend::Portable);
    cfg.segment_bytes_max = 1 << 30;
    let mut w = StreamWriter::create(cfg).unwrap();
    write(&mut w, 0, 0..600);
    w.close().unwrap();
    let segs = segments(&dir.join("stream-000"));
    assert_eq!(segs.len(), 1);
    segs[0].clone()
}

/// Opens and reads everything; the first error, if any.
fn read_all(dir: &Path) -> Result<u64, StorageError> {
    let mut r = Reader::open(dir, &ReadOptions::default())?;
    let mut n = 0;
    while r.next_record()?.is_some() {
        n += 1;
    }
    Ok(n)
}

fn expect_corrupt(dir: &Path, path: &Path, what: &str) -> u64 {
    match read_all(dir) {
        Err(StorageError::Corrupt {
            path: p,
            offset,
            what: w,
        }) => {
            assert_eq!(p, path, "{what}: error names the file");
            let msg = StorageError::Corrupt {
                path: p,
                offset,
                what: w,
            }
            .to_string();
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains("at offset"),
                "{msg}"
            );
            offset
        }
        other => panic!("{what}: expected a Corrupt error, got {other:?}"),
    }
}

#[test]
fn bad_magic_and_header_flips() {
    let dir = TempDir::new("magic");
    let path = sealed(dir.path());
    let good = std::fs::read(&path).unwrap();
    let mut b = good.clone();
    b[0] = b'X';
    std::fs::write(&path, &b).unwrap();
    assert_eq!(expect_corrupt(dir.path(), &path, "bad magic"), 0);
    let e = Segment::open(&path).unwrap_err().to_string();
    assert!(e.contains("bad magic"), "{e}");
    for i in (8..FILE_HEADER_LEN).step_by(5) {
        let mut b = good.clone();
        b[i] ^= 0x20;
        std::fs::write(&path, &b).unwrap();
        assert_eq!(
            expect_corrupt(dir.path(), &path, "header flip"),
            0,
            "flip at {i}"
        );
    }
    // Truncated header.
    std::fs::write(&path, &good[..100]).unwrap();
    let e = read_all(dir.path()).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn flipped_bits_in_payload_block_headers_and_index() {
    let dir = TempDir::new("flips");
    let path = sealed(dir.path());
    let good = std::fs::read(&path).unwrap();
    let seg = Segment::open(&path).unwrap();
    let blocks = seg.blocks().to_vec();
    drop(seg);
    let index_start = (blocks.last().unwrap().offset + blocks.last().unwrap().total_len()) as usize;
    // Every 13th byte of the blocks, the index and the trailer.
    for i in (FILE_HEADER_LEN..good.len()).step_by(13) {
        let mut b = good.clone();
        b[i] ^= 0x01;
        std::fs::write(&path, &b).unwrap();
        let offset = expect_corrupt(dir.path(), &path, &format!("flip at {i}"));
        if i < index_start {
            // The error points at the block that holds the flipped byte.
            let blk = blocks
                .iter()
                .find(|m| (m.offset as usize..(m.offset + m.total_len()) as usize).contains(&i))
                .unwrap();
            assert!(
                offset == blk.offset || offset == blk.offset + BLOCK_HEADER_LEN as u64,
                "flip at {i} reported at {offset}, block at {}",
                blk.offset
            );
        } else {
            assert!(
                offset as usize >= index_start,
                "flip at {i} in the index reported at {offset}"
            );
        }
    }
}

#[test]
fn lengths_past_the_end_or_huge_are_rejected_without_allocating() {
    let dir = TempDir::new("lengths");
    let path = sealed(dir.path());
    let good = std::fs::read(&path).unwrap();
    // A first block header claiming 4 GiB of payload, with a valid header CRC (a lying
    // writer): rejected by the bound before anything is allocated.
    let mut b = good.clone();
    let h = FILE_HEADER_LEN;
    b[h + 8..h + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    b[h + 12..h + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = crc32c(&b[h..h + 52]);
    b[h + 52..h + 56].copy_from_slice(&crc.to_le_bytes());
    // Without the trailer the segment is scanned, so the header is what is read.
    let unsealed = dir.path().join("stream-000").join(
        path.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .replace(".seg", ".open"),
    );
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&unsealed, &b[..b.len() - TRAILER_LEN - 100]).unwrap();
    let seg = Segment::open(&unsealed).unwrap();
    let torn = seg.torn().expect("stops at the lying block");
    assert_eq!(torn.offset, FILE_HEADER_LEN as u64);
    assert!(torn.what.contains("exceed"), "{}", torn.what);
    assert!(seg.blocks().is_empty());
    drop(seg);
    std::fs::remove_file(&unsealed).unwrap();

    // A trailer pointing its index past the end of the file.
    let mut b = good.clone();
    let t = b.len() - TRAILER_LEN;
    b[t + 8..t + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let crc = crc32c(&b[t..t + 28]);
    b[t + 28..t + 32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &b).unwrap();
    let off = expect_out_of_bounds(dir.path(), &path, "index past the end");
    assert_eq!(
        off as usize,
        t + 8,
        "names the trailer's index_offset field"
    );

    // A trailer claiming 2^32-1 blocks.
    let mut b = good.clone();
    b[t + 4..t + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = crc32c(&b[t..t + 28]);
    b[t + 28..t + 32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &b).unwrap();
    expect_out_of_bounds(dir.path(), &path, "huge block count");

    // Issue 8, defect 4: 2^32-1 blocks and an index offset chosen so that
    // index_offset + index_len wraps around u64 to exactly the trailer's offset. Before
    // the fix the sum was unchecked: a panic (overflow checks) or, in release, a
    // ~200 GiB allocation and an abort.
    let mut b = good.clone();
    let index_len = 16 + u32::MAX as u64 * 48;
    b[t + 4..t + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    b[t + 8..t + 16].copy_from_slice(&(t as u64).wrapping_sub(index_len).to_le_bytes());
    let crc = crc32c(&b[t..t + 28]);
    b[t + 28..t + 32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &b).unwrap();
    let off = expect_out_of_bounds(dir.path(), &path, "wrapping index offset");
    assert_eq!(off as usize, t + 8);
}

/// Reads `dir` expecting [`StorageError::OutOfBounds`] about `path`; its offset.
fn expect_out_of_bounds(dir: &Path, path: &Path, what: &str) -> u64 {
    match read_all(dir) {
        Err(e @ StorageError::OutOfBounds { .. }) => {
            assert_eq!(e.path(), Some(path), "{what}: error names the file");
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains("at offset"),
                "{msg}"
            );
            e.offset().unwrap()
        }
        other => panic!("{what}: expected an OutOfBounds error, got {other:?}"),
    }
}

#[test]
fn random_garbage_is_always_an_error_naming_the_file() {
    let dir = TempDir::new("garbage");
    let path = sealed(dir.path());
    let good = std::fs::read(&path).unwrap();
    let all = read_all(dir.path()).expect("the sound segment reads");
    let mut changed = 0;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for round in 0..300 {
        let mut b = good.clone();
        for _ in 0..1 + round % 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % b.len();
            b[i] = (x >> 32) as u8;
        }
        if round % 3 == 0 {
            b.truncate((x as usize >> 8) % b.len());
        }
        std::fs::write(&path, &b).unwrap();
        let read = read_all(dir.path());
        let scanned = Segment::open_scan(&path);
        if b == good {
            assert_eq!(
                read.ok(),
                Some(all),
                "round {round}: unchanged bytes read back"
            );
            continue;
        }
        changed += 1;
        // Every byte of a sealed segment is under a CRC, and a sealed one must end in its
        // trailer: any change is an error that names the file (never a panic, never a
        // silently different read).
        let e = read.expect_err(&format!("round {round}: a changed segment read as sound"));
        assert!(
            e.to_string().contains(&path.display().to_string()),
            "round {round}: {e}"
        );
        // Scanning (what recovery does) keeps a prefix of sound blocks at most.
        if let Ok(seg) = scanned {
            let kept: u64 = seg.blocks().iter().map(|m| m.count as u64).sum();
            assert!(kept <= all, "round {round}: scanning found {kept} of {all}");
        }
    }
    assert!(changed > 250, "{changed} rounds changed the file");
}

fn crc32c(b: &[u8]) -> u32 {
    // CRC-32C (Castagnoli), bitwise: the test does not trust the crate's own helper.
    let mut crc = !0u32;
    for &byte in b {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
