//! The records the engine writes itself into the enrichment stream: process and cgroup
//! table updates. They are what makes replay self-contained: a reader rebuilds the
//! tables from them alone, with no `/proc`, `/sys` or `/etc/passwd`.
//!
//! # On-disk layout (little-endian; documented in `docs/segment-format.md`)
//!
//! Process record, storage kind [`KIND_PROCESS`]:
//!
//! | offset | size | field |
//! | ---: | ---: | --- |
//! | 0 | 1 | version (1) |
//! | 1 | 1 | op: 1 upsert (the whole entry), 2 forget, 3 reset (both tables; a snapshot follows) |
//! | 2 | 2 | zero |
//! | 4 | 4 | pid |
//! | 8 | 4 | ppid |
//! | 12 | 4 | uid (real) |
//! | 16 | 4 | gid (real) |
//! | 20 | 4 | euid |
//! | 24 | 4 | egid |
//! | 28 | 4 | flags ([`FLAG_FROM_PROC`], [`FLAG_TRUNCATED`]) |
//! | 32 | 8 | start_ns (monotonic) |
//! | 40 | 8 | parent_start_ns (0: unknown) |
//! | 48 | 8 | exit_ns (0: running) |
//! | 56 | 8 | cgroup_id |
//! | 64 | .. | six strings, each a u16 length then its bytes: comm, exe, argv (NUL between arguments), cwd, user, group |
//!
//! Cgroup record, storage kind [`KIND_CGROUP`]:
//!
//! | offset | size | field |
//! | ---: | ---: | --- |
//! | 0 | 1 | version (1) |
//! | 1 | 1 | op: 1 upsert, 2 forget |
//! | 2 | 6 | zero |
//! | 8 | 8 | cgroup id (the cgroup v2 id event headers carry) |
//! | 16 | 8 | removed_ns (0: present) |
//! | 24 | 2 | path length, then the path (relative to the cgroup2 mount, starting with `/`) |

use std::sync::Arc;

/// Storage kind of process table records (event kinds stay below 62; see `events.h`).
pub(crate) const KIND_PROCESS: u16 = 62;
/// Storage kind of cgroup table records.
pub(crate) const KIND_CGROUP: u16 = 63;

const VERSION: u8 = 1;
/// Longest string kept in a record (longer input is cut and flagged).
pub(crate) const STRING_BYTES_MAX: usize = 4096;

/// The entry was read from `/proc` (it started before the engine, or was looked up).
pub(crate) const FLAG_FROM_PROC: u32 = 0x1;
/// A string of the entry was cut at its bound (in the kernel or here).
pub(crate) const FLAG_TRUNCATED: u32 = 0x2;

/// What a record does to its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Insert or replace the entry with this one.
    Upsert = 1,
    /// Drop the entry (exited or removed past the grace period, or evicted).
    Forget = 2,
    /// Process records only: drop every process and cgroup; a complete snapshot
    /// follows (at the head of each segment, and when an engine starts: what an
    /// earlier run left in a reader's tables does not survive into this one).
    Reset = 3,
}

impl Op {
    fn from_u8(b: u8) -> Option<Op> {
        match b {
            1 => Some(Op::Upsert),
            2 => Some(Op::Forget),
            3 => Some(Op::Reset),
            _ => None,
        }
    }
}

/// One process, as the table holds it. Strings are shared between a parent and the
/// children that inherit them (`Arc`), so a fork costs no string copies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub flags: u32,
    pub start_ns: u64,
    pub parent_start_ns: u64,
    pub exit_ns: u64,
    pub cgroup_id: u64,
    pub comm: Arc<str>,
    pub exe: Arc<str>,
    pub argv: Arc<str>,
    pub cwd: Arc<str>,
    pub user: Arc<str>,
    pub group: Arc<str>,
}

/// One cgroup v2 directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Cgroup {
    pub id: u64,
    pub removed_ns: u64,
    pub path: Arc<str>,
}

/// Why a record did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("{what} record of {len} bytes is too short")]
    Short { what: &'static str, len: usize },
    #[error("{what} record version {version} is not known (this engine reads 1)")]
    Version { what: &'static str, version: u8 },
    #[error("{what} record op {op} is not known")]
    Op { what: &'static str, op: u8 },
    #[error(
        "{what} record: a string of {len} bytes passes the record's end or the bound of {STRING_BYTES_MAX}"
    )]
    String { what: &'static str, len: usize },
    #[error("{what} record has {extra} bytes after its last field")]
    Trailing { what: &'static str, extra: usize },
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = cut(s);
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

/// `s` cut at [`STRING_BYTES_MAX`] bytes, on a character boundary.
fn cut(s: &str) -> &[u8] {
    if s.len() <= STRING_BYTES_MAX {
        return s.as_bytes();
    }
    let mut end = STRING_BYTES_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

/// Reads fields from a record, bounds-checked.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn u64_at(&self, o: usize) -> u64 {
        u64::from_le_bytes(self.b[o..o + 8].try_into().expect("8 bytes"))
    }
    fn u32_at(&self, o: usize) -> u32 {
        u32::from_le_bytes(self.b[o..o + 4].try_into().expect("4 bytes"))
    }
    fn string(&mut self) -> Result<Arc<str>, RecordError> {
        let err = |len| RecordError::String {
            what: self.what,
            len,
        };
        let head = self.b.get(self.pos..self.pos + 2).ok_or(err(2))?;
        let len = u16::from_le_bytes([head[0], head[1]]) as usize;
        let start = self.pos + 2;
        if len > STRING_BYTES_MAX {
            return Err(err(len));
        }
        let bytes = self.b.get(start..start + len).ok_or(err(len))?;
        self.pos = start + len;
        Ok(Arc::from(String::from_utf8_lossy(bytes).as_ref()))
    }
    fn end(&self) -> Result<(), RecordError> {
        match self.b.len() - self.pos {
            0 => Ok(()),
            extra => Err(RecordError::Trailing {
                what: self.what,
                extra,
            }),
        }
    }
}

fn head(b: &[u8], what: &'static str, fixed: usize) -> Result<Op, RecordError> {
    if b.len() < fixed {
        return Err(RecordError::Short { what, len: b.len() });
    }
    if b[0] != VERSION {
        return Err(RecordError::Version {
            what,
            version: b[0],
        });
    }
    Op::from_u8(b[1]).ok_or(RecordError::Op { what, op: b[1] })
}

const PROCESS_FIXED: usize = 64;
const CGROUP_FIXED: usize = 26;

impl Process {
    /// Appends the encoding of `op` on this entry to `out` (cleared first).
    pub(crate) fn encode(&self, op: Op, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&[VERSION, op as u8, 0, 0]);
        for v in [
            self.pid, self.ppid, self.uid, self.gid, self.euid, self.egid, self.flags,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.start_ns,
            self.parent_start_ns,
            self.exit_ns,
            self.cgroup_id,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        debug_assert_eq!(out.len(), PROCESS_FIXED);
        for s in [
            &self.comm,
            &self.exe,
            &self.argv,
            &self.cwd,
            &self.user,
            &self.group,
        ] {
            put_str(out, s);
        }
    }

    /// Parses a process record.
    pub(crate) fn decode(b: &[u8]) -> Result<(Op, Process), RecordError> {
        let what = "process";
        let op = head(b, what, PROCESS_FIXED)?;
        let mut c = Cursor {
            b,
            pos: PROCESS_FIXED,
            what,
        };
        let mut p = Process {
            pid: c.u32_at(4),
            ppid: c.u32_at(8),
            uid: c.u32_at(12),
            gid: c.u32_at(16),
            euid: c.u32_at(20),
            egid: c.u32_at(24),
            flags: c.u32_at(28),
            start_ns: c.u64_at(32),
            parent_start_ns: c.u64_at(40),
            exit_ns: c.u64_at(48),
            cgroup_id: c.u64_at(56),
            ..Process::default()
        };
        p.comm = c.string()?;
        p.exe = c.string()?;
        p.argv = c.string()?;
        p.cwd = c.string()?;
        p.user = c.string()?;
        p.group = c.string()?;
        c.end()?;
        Ok((op, p))
    }
}

impl Cgroup {
    /// Appends the encoding of `op` on this entry to `out` (cleared first).
    pub(crate) fn encode(&self, op: Op, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&[VERSION, op as u8, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.removed_ns.to_le_bytes());
        put_str(out, &self.path);
    }

    /// Parses a cgroup record.
    pub(crate) fn decode(b: &[u8]) -> Result<(Op, Cgroup), RecordError> {
        let what = "cgroup";
        let op = head(b, what, CGROUP_FIXED)?;
        if op == Op::Reset {
            return Err(RecordError::Op { what, op: b[1] });
        }
        let mut c = Cursor { b, pos: 24, what };
        let id = c.u64_at(8);
        let removed_ns = c.u64_at(16);
        let path = c.string()?;
        c.end()?;
        Ok((
            op,
            Cgroup {
                id,
                removed_ns,
                path,
            },
        ))
    }
}

/// Checks a stored record of kind [`KIND_PROCESS`] or [`KIND_CGROUP`]; `None` for other
/// kinds (not table records).
pub(crate) fn check(kind: u16, bytes: &[u8]) -> Option<Result<(), RecordError>> {
    match kind {
        KIND_PROCESS => Some(Process::decode(bytes).map(drop)),
        KIND_CGROUP => Some(Cgroup::decode(bytes).map(drop)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Process {
        Process {
            pid: 42,
            ppid: 1,
            uid: 1000,
            gid: 100,
            euid: 0,
            egid: 0,
            flags: FLAG_FROM_PROC,
            start_ns: 5,
            parent_start_ns: 1,
            exit_ns: 0,
            cgroup_id: 77,
            comm: "bash".into(),
            exe: "/usr/bin/bash".into(),
            argv: "bash\0-c\0true".into(),
            cwd: "/home/ü".into(),
            user: "alice".into(),
            group: "users".into(),
        }
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        let p = sample();
        p.encode(Op::Upsert, &mut buf);
        assert_eq!(Process::decode(&buf), Ok((Op::Upsert, p.clone())));
        p.encode(Op::Forget, &mut buf);
        assert_eq!(Process::decode(&buf).unwrap().0, Op::Forget);
        let c = Cgroup {
            id: 9,
            removed_ns: 3,
            path: "/system.slice/x.service".into(),
        };
        c.encode(Op::Upsert, &mut buf);
        assert_eq!(Cgroup::decode(&buf), Ok((Op::Upsert, c)));
    }

    #[test]
    fn every_truncation_and_bad_head_is_an_error() {
        let mut buf = Vec::new();
        sample().encode(Op::Upsert, &mut buf);
        for n in 0..buf.len() {
            assert!(Process::decode(&buf[..n]).is_err(), "cut at {n}");
        }
        let mut long = buf.clone();
        long.push(0);
        assert!(matches!(
            Process::decode(&long),
            Err(RecordError::Trailing { extra: 1, .. })
        ));
        let mut v = buf.clone();
        v[0] = 2;
        assert!(matches!(
            Process::decode(&v),
            Err(RecordError::Version { .. })
        ));
        v[0] = 1;
        v[1] = 9;
        assert!(matches!(Process::decode(&v), Err(RecordError::Op { .. })));
        // A length claiming more than the bound.
        let mut big = buf[..PROCESS_FIXED].to_vec();
        big.extend_from_slice(&u16::MAX.to_le_bytes());
        big.extend(std::iter::repeat_n(b'a', u16::MAX as usize));
        assert!(matches!(
            Process::decode(&big),
            Err(RecordError::String { .. })
        ));
    }

    #[test]
    fn long_strings_are_cut_on_a_char_boundary() {
        let mut p = sample();
        p.cwd = "é".repeat(STRING_BYTES_MAX).into();
        let mut buf = Vec::new();
        p.encode(Op::Upsert, &mut buf);
        let (_, back) = Process::decode(&buf).unwrap();
        assert!(back.cwd.len() <= STRING_BYTES_MAX);
        assert!(back.cwd.chars().all(|c| c == 'é'));
    }
}
