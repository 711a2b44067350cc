//! One segment file opened for reading: its header, its blocks (from the index when
//! sealed, by scanning block headers otherwise), and reading one block.
//!
//! # Design constraints
//! - Only a regular file is read: the file is opened non-blocking (a FIFO cannot hold
//!   the open) and its type checked on the open descriptor before any read.
//! - No length or offset from the file is used before it is bounded: every sum is a
//!   `checked_add`, and every allocation is bounded by the file's real length (the
//!   index) or by [`BLOCK_BYTES_MAX`] (a block) before it is made.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::block::DecodedBlock;
use crate::error::StorageError;
use crate::format::*;
use crate::layout::SegmentName;

/// Where scanning an unsealed segment stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Offset of the first byte after the last sound block.
    pub offset: u64,
    /// Bytes from there to the end of the file.
    pub bytes: u64,
    /// What was wrong there.
    pub what: String,
}

/// An open segment.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    file: File,
    file_len: u64,
    header: FileHeader,
    blocks: Vec<BlockMeta>,
    sealed: bool,
    torn: Option<TornTail>,
}

impl Segment {
    /// Opens a segment: sealed ones through their index (a bad index is an error), others
    /// by scanning, stopping at the first incomplete or corrupt block.
    pub fn open(path: &Path) -> Result<Segment, StorageError> {
        Segment::open_with(path, false)
    }

    /// Opens a segment by scanning its blocks, ignoring any index (to verify or recover).
    pub fn open_scan(path: &Path) -> Result<Segment, StorageError> {
        Segment::open_with(path, true)
    }

    fn open_with(path: &Path, force_scan: bool) -> Result<Segment, StorageError> {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. On a
        // regular file the flag changes nothing.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| StorageError::io(path, "open", e))?;
        let meta = file
            .metadata()
            .map_err(|e| StorageError::io(path, "stat", e))?;
        if !meta.is_file() {
            return Err(StorageError::NotRegularFile {
                path: path.to_path_buf(),
                found: crate::layout::file_type_name(&meta.file_type()),
            });
        }
        let file_len = meta.len();
        let mut hb = [0u8; FILE_HEADER_LEN];
        let n = read_at_most(&file, &mut hb, 0).map_err(|e| StorageError::io(path, "read", e))?;
        let header =
            FileHeader::decode(&hb[..n]).map_err(|what| StorageError::corrupt(path, 0, what))?;
        let mut seg = Segment {
            path: path.to_path_buf(),
            file,
            file_len,
            header,
            blocks: Vec::new(),
            sealed: false,
            torn: None,
        };
        let named_sealed = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(SegmentName::parse)
            .is_some_and(|n| n.sealed);
        if !force_scan && seg.read_index()? {
            seg.sealed = true;
        } else if !force_scan && named_sealed {
            return Err(StorageError::corrupt(
                path,
                file_len.saturating_sub(TRAILER_LEN as u64),
                "a sealed (.seg) segment without a valid trailer",
            ));
        } else {
            seg.scan()?;
        }
        Ok(seg)
    }

    /// Reads the trailer and index; `Ok(false)` when there is no trailer.
    fn read_index(&mut self) -> Result<bool, StorageError> {
        let path = &self.path;
        if self.file_len < (FILE_HEADER_LEN + INDEX_HEADER_LEN + TRAILER_LEN) as u64 {
            return Ok(false);
        }
        let toff = self.file_len - TRAILER_LEN as u64;
        let mut tb = [0u8; TRAILER_LEN];
        self.file
            .read_exact_at(&mut tb, toff)
            .map_err(|e| StorageError::io(path, "read", e))?;
        let Some(trailer) =
            decode_trailer(&tb).map_err(|w| StorageError::corrupt(path, toff, w))?
        else {
            return Ok(false);
        };
        // At most 16 + (2^32 - 1) * 48 bytes: no overflow in u64.
        let index_len =
            INDEX_HEADER_LEN as u64 + trailer.block_count as u64 * INDEX_ENTRY_LEN as u64;
        // The index lies between the file header and the trailer; checked before the
        // buffer for it is allocated, so a lying trailer cannot ask for more than the file.
        let index_end = trailer.index_offset.checked_add(index_len);
        if trailer.index_offset < FILE_HEADER_LEN as u64 || index_end.is_none_or(|e| e > toff) {
            return Err(StorageError::OutOfBounds {
                path: path.clone(),
                offset: toff + 8,
                what: "trailer's index",
                at: trailer.index_offset,
                len: index_len,
                limit: toff,
            });
        }
        if index_end != Some(toff) {
            return Err(StorageError::corrupt(
                path,
                toff,
                format!(
                    "trailer puts a {index_len}-byte index at {}, which ends before the trailer at {toff}",
                    trailer.index_offset
                ),
            ));
        }
        let mut ib = vec![0u8; index_len as usize];
        self.file
            .read_exact_at(&mut ib, trailer.index_offset)
            .map_err(|e| StorageError::io(path, "read", e))?;
        self.blocks = decode_index(&ib, &trailer, self.file_len)
            .map_err(|w| StorageError::corrupt(path, trailer.index_offset, w))?;
        Ok(true)
    }

    /// Walks block headers from the start, checking each block's payload CRC, and stops
    /// at the first block that is incomplete or unsound (recording it as the torn tail).
    fn scan(&mut self) -> Result<(), StorageError> {
        let mut offset = FILE_HEADER_LEN as u64;
        let mut payload = Vec::new();
        let mut hb = [0u8; BLOCK_HEADER_LEN];
        while offset < self.file_len {
            let n = read_at_most(&self.file, &mut hb, offset)
                .map_err(|e| StorageError::io(&self.path, "read", e))?;
            let stop = |what: String| TornTail {
                offset,
                bytes: self.file_len - offset,
                what,
            };
            // An index left behind at the end of a sealed file is not a torn block.
            if n >= 4 && u32::from_le_bytes([hb[0], hb[1], hb[2], hb[3]]) == INDEX_MAGIC {
                self.torn = Some(stop("index (segment was sealed; scanned anyway)".into()));
                break;
            }
            let (meta, crc) = match decode_block_header(&hb[..n], offset) {
                Ok(h) => h,
                Err(what) => {
                    self.torn = Some(stop(what));
                    break;
                }
            };
            if offset
                .checked_add(meta.total_len())
                .is_none_or(|end| end > self.file_len)
            {
                self.torn = Some(stop(format!(
                    "block of {} bytes runs past the end of the file ({} bytes)",
                    meta.total_len(),
                    self.file_len
                )));
                break;
            }
            payload.resize(meta.payload_len as usize, 0);
            self.file
                .read_exact_at(&mut payload, offset + BLOCK_HEADER_LEN as u64)
                .map_err(|e| StorageError::io(&self.path, "read", e))?;
            let got = crc32c::crc32c(&payload);
            if got != crc {
                self.torn = Some(stop(format!(
                    "payload CRC32C {got:#010x}, header says {crc:#010x}"
                )));
                break;
            }
            self.blocks.push(meta);
            offset += meta.total_len(); // checked above: ends within the file
        }
        Ok(())
    }

    /// The segment's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file header.
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// Every sound block, in file order.
    pub fn blocks(&self) -> &[BlockMeta] {
        &self.blocks
    }

    /// Whether the segment has a valid index and trailer.
    pub fn sealed(&self) -> bool {
        self.sealed
    }

    /// For an unsealed segment, where its readable part ends early, if it does.
    pub fn torn(&self) -> Option<&TornTail> {
        self.torn.as_ref()
    }

    /// Bytes of the file.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Checks the header's event ABI version against `expected` (no check for `None`).
    pub fn check_abi(&self, expected: Option<u32>) -> Result<(), StorageError> {
        match expected {
            Some(v) if v != self.header.abi_version => Err(StorageError::AbiMismatch {
                path: self.path.clone(),
                found: self.header.abi_version,
                expected: v,
            }),
            _ => Ok(()),
        }
    }

    /// Offset just past the last sound block.
    pub fn blocks_end(&self) -> u64 {
        self.blocks.last().map_or(FILE_HEADER_LEN as u64, |b| {
            b.offset.saturating_add(b.total_len()) // checked when the block was listed
        })
    }

    /// Reads, checks and decodes block `meta` into `out`, using `buf` for the bytes.
    pub fn read_block(
        &self,
        meta: &BlockMeta,
        buf: &mut Vec<u8>,
        out: &mut DecodedBlock,
    ) -> Result<(), StorageError> {
        // `meta` may come from anywhere (it is a public argument): bound it by the file
        // and by the block bound before allocating for it.
        let total = meta.total_len();
        if meta.payload_len > BLOCK_BYTES_MAX
            || meta
                .offset
                .checked_add(total)
                .is_none_or(|end| end > self.file_len)
        {
            return Err(StorageError::OutOfBounds {
                path: self.path.clone(),
                offset: meta.offset,
                what: "block",
                at: meta.offset,
                len: total,
                limit: self.file_len,
            });
        }
        buf.resize(total as usize, 0);
        self.file
            .read_exact_at(buf, meta.offset)
            .map_err(|e| StorageError::io(&self.path, "read", e))?;
        let (found, crc) = decode_block_header(&buf[..BLOCK_HEADER_LEN], meta.offset)
            .map_err(|w| StorageError::corrupt(&self.path, meta.offset, w))?;
        if found != *meta {
            return Err(StorageError::corrupt(
                &self.path,
                meta.offset,
                "block header disagrees with the index",
            ));
        }
        out.decode(meta, crc, &buf[BLOCK_HEADER_LEN..])
            .map_err(|w| {
                StorageError::corrupt(&self.path, meta.offset + BLOCK_HEADER_LEN as u64, w)
            })
    }
}

/// Reads up to `buf.len()` bytes at `offset`; fewer at the end of the file.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let at = offset.checked_add(n as u64).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "offset overflows u64")
        })?;
        match file.read_at(&mut buf[n..], at) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
