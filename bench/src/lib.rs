//! Benchmark support: a realistic synthetic mix of kernel records, built without the
//! kernel, for decode and (later) storage benchmarks.

use bpf::Kind;
use bpf::abi::*;

/// Records laid out back to back, each 8-byte aligned, as they sit in a ring.
#[derive(Debug, Clone)]
pub struct RecordBuf {
    words: Vec<u64>,
    /// Byte offset of each record.
    pub offsets: Vec<usize>,
}

impl RecordBuf {
    /// All bytes.
    pub fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.words)
    }

    /// Record `i`.
    pub fn record(&self, i: usize) -> &[u8] {
        let start = self.offsets[i];
        let end = self
            .offsets
            .get(i + 1)
            .copied()
            .unwrap_or(self.bytes().len());
        &self.bytes()[start..end]
    }

    /// The common header of record `i`, in place.
    pub fn header(&self, i: usize) -> &EventHeader {
        bytemuck::from_bytes(&self.record(i)[..size_of::<EventHeader>()])
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

/// A small deterministic PRNG (xorshift64*), so runs are comparable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

const PATHS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/etc/ld.so.cache",
    "/proc/self/status",
    "/var/log/app/requests.log",
    "/home/user/project/target/debug/deps/libserde-5f1c.rlib",
    "/sys/fs/cgroup/memory.max",
];

fn put_str(dst: &mut [u8], s: &str) -> u32 {
    let n = s.len().min(dst.len() - 1);
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
    n as u32
}

/// `n` records in a mix like a busy host's: mostly file opens and syscalls, some
/// network, process and memory events. Deterministic for a given seed.
pub fn synthetic_mix(n: usize, seed: u64) -> RecordBuf {
    let mut rng = Rng::new(seed);
    let mut words: Vec<u64> = Vec::new();
    let mut offsets = Vec::with_capacity(n);
    let mut ts = 1_000_000_000u64;
    for _ in 0..n {
        let kind = match rng.below(100) {
            0..=44 => Kind::FileOpen,
            45..=74 => Kind::Syscall,
            75..=84 => Kind::NetTcpClose,
            85..=89 => Kind::ProcessExec,
            90..=94 => Kind::MemoryPageFault,
            95..=97 => Kind::SecurityCapability,
            _ => Kind::ProcessExit,
        };
        ts += rng.below(20_000);
        let len = kind.record_len();
        let start = words.len();
        offsets.push(start * 8);
        words.resize(start + len / 8, 0);
        let rec: &mut [u8] = &mut bytemuck::cast_slice_mut(&mut words)[start * 8..start * 8 + len];
        let (head, body) = rec.split_at_mut(size_of::<EventHeader>());
        let h: &mut EventHeader = bytemuck::from_bytes_mut(head);
        let pid = 1000 + rng.below(50) as u32;
        *h = EventHeader {
            ts_ns: ts,
            cgroup_id: 4000 + rng.below(4),
            kind: kind as u16,
            flags: 0,
            len: len as u32,
            cpu: rng.below(2) as u32,
            pid,
            tid: pid,
            uid: if rng.below(4) == 0 { 0 } else { 1000 },
            gid: 1000,
            weight: 0,
            comm: *b"worker\0\0\0\0\0\0\0\0\0\0",
        };
        match kind {
            Kind::FileOpen => {
                let p: &mut FileOp = bytemuck::from_bytes_mut(body);
                p.ret = if rng.below(10) == 0 {
                    -2
                } else {
                    3 + rng.below(20) as i64
                };
                p.latency_ns = 500 + rng.below(5000);
                p.dirfd = -100;
                p.flags = 0o2000000;
                p.syscall_nr = 257;
                p.path_len = put_str(&mut p.path, PATHS[rng.below(PATHS.len() as u64) as usize]);
            }
            Kind::Syscall => {
                let p: &mut SyscallEvent = bytemuck::from_bytes_mut(body);
                p.id = [0u32, 1, 3, 7, 232][rng.below(5) as usize];
                p.ret = rng.below(4096) as i64;
                p.latency_ns = 100 + rng.below(2000);
                p.args = [3, 0x7ffd_0000_1000, 4096, 0, 0, 0];
            }
            Kind::NetTcpClose => {
                let p: &mut TcpSockEvent = bytemuck::from_bytes_mut(body);
                p.sock_cookie = rng.below(1 << 20);
                p.family = 2;
                p.sport = 40000 + rng.below(20000) as u16;
                p.dport = 443;
                p.saddr[..4].copy_from_slice(&[10, 0, 0, 5]);
                p.daddr[..4].copy_from_slice(&[10, 0, 1, rng.below(255) as u8]);
                p.old_state = 1;
                p.new_state = 7;
            }
            Kind::ProcessExec => {
                let p: &mut ProcessExec = bytemuck::from_bytes_mut(body);
                p.ppid = 1;
                p.filename_len = put_str(&mut p.filename, "/usr/bin/curl");
                p.exe_len = put_str(&mut p.exe, "/usr/bin/curl");
                let argv = b"curl\0-s\0https://example.invalid/health\0";
                p.argv[..argv.len()].copy_from_slice(argv);
                p.argv_len = argv.len() as u32;
                p.argc = 3;
            }
            Kind::MemoryPageFault => {
                let p: &mut PageFault = bytemuck::from_bytes_mut(body);
                p.address = 0x7f00_0000_0000 + rng.below(1 << 30);
                p.ip = 0x5555_0000_0000 + rng.below(1 << 20);
                p.error_code = 6;
            }
            Kind::SecurityCapability => {
                let p: &mut CapabilityEvent = bytemuck::from_bytes_mut(body);
                p.cap = 21;
            }
            _ => {
                let p: &mut ProcessExit = bytemuck::from_bytes_mut(body);
                p.lifetime_ns = rng.below(10_000_000_000);
            }
        }
    }
    RecordBuf { words, offsets }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_decodes_and_is_deterministic() {
        let a = synthetic_mix(1000, 7);
        let b = synthetic_mix(1000, 7);
        assert_eq!(a.bytes(), b.bytes());
        let mut kinds = std::collections::BTreeSet::new();
        for i in 0..a.len() {
            let ev = bpf::decode(a.record(i)).expect("synthetic record decodes");
            kinds.insert(ev.kind);
        }
        assert!(kinds.len() >= 6, "a mix, not one kind: {kinds:?}");
    }
}
