//! JSON lines: one object per event or loss record, built in a reused byte buffer.
//!
//! Integers go through `itoa`, strings are escaped byte-wise (invalid UTF-8 as `\\xNN`),
//! and the date part of timestamps is cached per second. `std::fmt` was 60% of replay
//! time; this is what `engine replay --format json` uses.

use bpf::abi::{cstr_bytes, str_bytes};
use bpf::{Event, Payload};
use storage::Loss;

use super::time::timestamp;
use super::{ip, kind_name, reason_name};
use crate::enrich::container::Placement;
use crate::enrich::tables::Enrichment;

/// `w.field("key", v)` with its `"key":` put together at compile time: one copy per
/// field instead of four pushes (the JSON writers' hottest path).
macro_rules! field {
    ($w:expr, $key:literal, $v:expr) => {
        $w.field_key(concat!("\"", $key, "\":").as_bytes(), $v)
    };
}

/// A JSON line builder writing straight into a reused byte buffer: integers through
/// `itoa`, strings escaped byte-wise, the date part of timestamps cached per second.
#[derive(Default)]
pub struct JsonWriter {
    buf: Vec<u8>,
    ints: itoa::Buffer,
    /// The second (since the epoch) whose `YYYY-MM-DDTHH:MM:SS` is in `date`.
    date_sec: Option<i64>,
    date: Vec<u8>,
    /// Lines accumulate ([`JsonWriter::accumulate`]).
    append: bool,
    /// The header fields (`"cpu"` to `"cgroup_id"`) of the last event line, and what they
    /// were made of: events come in runs from one thread, which then cost one copy.
    head_key: Option<HeadKey>,
    head: Vec<u8>,
}

/// The header fields an event line shows from `"cpu"` to `"cgroup_id"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeadKey {
    cpu: u32,
    pid: u32,
    tid: u32,
    uid: u32,
    gid: u32,
    cgroup_id: u64,
    comm: [u8; bpf::abi::COMM_LEN],
}

impl std::fmt::Debug for JsonWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonWriter")
            .field("len", &self.buf.len())
            .finish()
    }
}

/// Values a [`JsonWriter`] can write.
pub trait JsonValue {
    fn write_to(&self, w: &mut JsonWriter);
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl JsonValue for $t {
            fn write_to(&self, w: &mut JsonWriter) {
                // Small values (CPUs, ids, flags, return values) are most of them: their
                // digits as one copy of a known length; the rest through itoa.
                let v = *self as i128;
                if (0..10).contains(&v) {
                    w.buf.push(b'0' + v as u8);
                } else if (10..100).contains(&v) {
                    w.buf.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]);
                } else if (100..1000).contains(&v) {
                    w.buf.extend_from_slice(&[
                        b'0' + (v / 100) as u8,
                        b'0' + (v / 10 % 10) as u8,
                        b'0' + (v % 10) as u8,
                    ]);
                } else {
                    let s = w.ints.format(*self);
                    w.buf.extend_from_slice(s.as_bytes());
                }
            }
        }
    )*};
}
int_value!(u8, u16, u32, u64, i16, i32, i64);

impl JsonValue for bool {
    fn write_to(&self, w: &mut JsonWriter) {
        w.buf
            .extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

/// A byte string, written as an escaped JSON string.
#[derive(Debug)]
pub struct Str<'a>(pub &'a [u8]);

impl JsonValue for Str<'_> {
    fn write_to(&self, w: &mut JsonWriter) {
        w.string(self.0);
    }
}

/// An address, written as a JSON string (empty when the family is unknown).
#[derive(Debug)]
pub struct AddrValue<'a>(pub u16, pub &'a [u8; 16]);

impl JsonValue for AddrValue<'_> {
    fn write_to(&self, w: &mut JsonWriter) {
        use std::io::Write as _;
        w.buf.push(b'"');
        if let Some(ip) = ip(self.0, self.1) {
            let _ = write!(w.buf, "{ip}");
        }
        w.buf.push(b'"');
    }
}

impl JsonWriter {
    /// The line so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Starts a new line (with [`JsonWriter::accumulate`]: drops every line so far).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// From now on [`JsonWriter::event`] and [`JsonWriter::loss`] append their line to the
    /// ones before instead of replacing them: a reader writes the buffer out once it is
    /// large, with one copy of each byte fewer than line by line through a `BufWriter`.
    pub(crate) fn accumulate(&mut self) {
        self.append = true;
    }

    /// The start of an event or loss line.
    fn start_line(&mut self) {
        if !self.append {
            self.buf.clear();
        }
    }

    fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Opens an object or array (`bracket` `{` or `[`), as the value of `key` or, without
    /// one, as an array element; a comma first unless right after an opening bracket.
    pub(crate) fn open(&mut self, key: Option<&str>, bracket: u8) {
        if !matches!(self.buf.last(), None | Some(b'{') | Some(b'[')) {
            self.buf.push(b',');
        }
        if let Some(key) = key {
            self.buf.push(b'"');
            self.buf.extend_from_slice(key.as_bytes());
            self.buf.extend_from_slice(b"\":");
        }
        self.buf.push(bracket);
    }

    /// Closes what [`JsonWriter::open`] opened (`}` or `]`).
    pub(crate) fn close(&mut self, bracket: u8) {
        self.buf.push(bracket);
    }

    /// A number already formatted (digits, sign, point).
    pub(crate) fn raw_number(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// Ends the line.
    pub(crate) fn newline(&mut self) {
        self.buf.push(b'\n');
    }

    /// [`JsonWriter::field`] with the `"key":` already built (the `field!` macro).
    /// Inlined so that the key's length is a constant: its copy is then a few moves, not
    /// a call to `memcpy` (the comma is pushed apart for the same reason).
    #[inline(always)]
    fn field_key(&mut self, quoted_key: &[u8], v: impl JsonValue) {
        if !matches!(self.buf.last(), None | Some(b'{')) {
            self.buf.push(b',');
        }
        self.buf.extend_from_slice(quoted_key);
        v.write_to(self);
    }

    /// An array element: `,value` (or `value` right after `[`).
    pub(crate) fn element(&mut self, v: impl JsonValue) {
        if !matches!(self.buf.last(), None | Some(b'[')) {
            self.buf.push(b',');
        }
        v.write_to(self);
    }

    /// `,"key":value` (or `"key":value` right after `{`).
    pub fn field(&mut self, key: &str, v: impl JsonValue) {
        if !matches!(self.buf.last(), None | Some(b'{')) {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
        v.write_to(self);
    }

    fn string(&mut self, s: &[u8]) {
        self.buf.push(b'"');
        let mut rest = s;
        // Runs of plain ASCII are copied whole (paths, names: almost everything); a byte
        // that needs escaping is escaped alone, and from the first non-ASCII byte on the
        // rest goes through the UTF-8 path (it starts on a character boundary).
        loop {
            let run = plain_run(rest);
            self.buf.extend_from_slice(&rest[..run]);
            rest = &rest[run..];
            let Some(&b) = rest.first() else {
                break;
            };
            if b >= 0x80 {
                self.string_utf8(rest);
                break;
            }
            self.escape_ascii(b);
            rest = &rest[1..];
        }
        self.buf.push(b'"');
    }

    /// An ASCII byte that JSON wants escaped.
    fn escape_ascii(&mut self, b: u8) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        match b {
            b'"' => self.raw(b"\\\""),
            b'\\' => self.raw(b"\\\\"),
            b'\n' => self.raw(b"\\n"),
            b'\r' => self.raw(b"\\r"),
            b'\t' => self.raw(b"\\t"),
            0..=0x1f => {
                self.raw(b"\\u00");
                self.buf.push(HEX[(b >> 4) as usize]);
                self.buf.push(HEX[(b & 15) as usize]);
            }
            _ => self.buf.push(b),
        }
    }

    /// The rest of a string from its first non-ASCII byte: valid UTF-8 as it is, other
    /// bytes as `\\xNN`.
    fn string_utf8(&mut self, s: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for chunk in s.utf8_chunks() {
            for &b in chunk.valid().as_bytes() {
                self.escape_ascii(b);
            }
            for &b in chunk.invalid() {
                self.raw(b"\\\\x");
                self.buf.push(HEX[(b >> 4) as usize]);
                self.buf.push(HEX[(b & 15) as usize]);
            }
        }
    }

    /// `"key":"2026-11-26T12:00:00.123456789Z"`; outside the range of dates (see
    /// [`super::time`]) the nearest end of the range, followed by `"key_out_of_range":true`.
    pub fn time(&mut self, key: &str, wall_ns: i128) {
        const NS: i128 = 1_000_000_000;
        // Within the cached second (every second of jiff's range is entirely in range):
        // one subtraction instead of a conversion and two 128-bit divisions.
        let cached = self
            .date_sec
            .map(|s| wall_ns - s as i128 * NS)
            .filter(|off| (0..NS).contains(off));
        let (nanos, in_range) = match cached {
            Some(off) => (off as u32, true),
            None => {
                let (t, in_range) = timestamp(wall_ns);
                let ns = t.as_nanosecond();
                self.cache_date(ns.div_euclid(NS) as i64);
                (ns.rem_euclid(NS) as u32, in_range)
            }
        };
        if self.buf.last() != Some(&b'{') {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":\"");
        self.buf.extend_from_slice(&self.date);
        self.buf.push(b'.');
        let mut digits = [b'0'; 9];
        let mut n = nanos;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.raw(&digits);
        self.raw(b"Z\"");
        if !in_range {
            self.buf.extend_from_slice(b",\"");
            self.buf.extend_from_slice(key.as_bytes());
            self.buf.extend_from_slice(b"_out_of_range\":true");
        }
    }

    /// Puts `YYYY-MM-DDTHH:MM:SS` of second `sec` (in jiff's range) into the cache.
    fn cache_date(&mut self, sec: i64) {
        use std::io::Write as _;
        self.date.clear();
        if let Ok(t) = jiff::Timestamp::from_second(sec) {
            // Precision 0: no fractional part, `...:SSZ`.
            let _ = write!(self.date, "{t:.0}");
            self.date.pop();
        }
        self.date_sec = Some(sec);
    }

    fn argv(&mut self, key: &str, argv: &[u8]) {
        self.buf.extend_from_slice(b",\"");
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":[");
        let trimmed = argv.strip_suffix(&[0]).unwrap_or(argv);
        if !trimmed.is_empty() {
            for (i, arg) in trimmed.split(|&b| b == 0).enumerate() {
                if i > 0 {
                    self.buf.push(b',');
                }
                self.string(arg);
            }
        }
        self.buf.push(b']');
    }

    /// Builds the JSON line of one loss record (ending in a newline); times are the
    /// record's monotonic times plus `mono_to_wall_ns`.
    pub fn loss(&mut self, l: &Loss, mono_to_wall_ns: i64) {
        let off = mono_to_wall_ns as i128;
        self.start_line();
        self.buf.push(b'{');
        self.time("ts", l.end_ns as i128 + off);
        field!(self, "kind", Str(b"loss"));
        field!(self, "stream", l.stream);
        field!(self, "cpu", l.cpu as i64);
        field!(self, "lost_kind", Str(kind_name(l.kind).as_bytes()));
        field!(self, "reason", Str(reason_name(l.reason).as_bytes()));
        field!(self, "count", l.count);
        self.time("from", l.start_ns as i128 + off);
        self.time("to", l.end_ns as i128 + off);
        self.buf.extend_from_slice(b"}\n");
    }

    /// Builds the JSON line of one of the perf stream's interval records.
    pub(crate) fn aggregate(&mut self, a: &crate::perf::Aggregate, mono_to_wall_ns: i64) {
        use crate::perf::Aggregate::*;
        match a {
            Runq(r) => self.runq(r, mono_to_wall_ns),
            Io(r) => self.block_io(r, mono_to_wall_ns),
            Net(r) => self.net_traffic(r, mono_to_wall_ns),
            Task(r) => self.task_sched(r, mono_to_wall_ns),
        }
    }

    /// Builds the JSON line of a `perf.runq_latency` record (ending in a newline); times
    /// are its monotonic times plus `mono_to_wall_ns`.
    pub(crate) fn runq(&mut self, r: &crate::perf::RunqRecord, mono_to_wall_ns: i64) {
        let off = mono_to_wall_ns as i128;
        self.start_line();
        self.buf.push(b'{');
        self.time("ts", r.end_ns as i128 + off);
        field!(self, "kind", Str(b"perf.runq_latency"));
        field!(self, "scope", Str(r.scope_name().as_bytes()));
        if r.scope == crate::perf::SCOPE_CPU {
            field!(self, "cpu", r.id);
        } else {
            field!(self, "cgroup_id", r.id);
        }
        self.time("from", r.start_ns as i128 + off);
        field!(self, "interval_ns", r.end_ns - r.start_ns);
        field!(self, "count", r.count);
        field!(self, "sum_ns", r.sum_ns);
        self.log2_buckets(&r.slots);
        self.buf.extend_from_slice(b"}\n");
    }

    /// Builds the JSON line of a `perf.io_latency` record (ending in a newline); times are
    /// its monotonic times plus `mono_to_wall_ns`.
    pub(crate) fn block_io(&mut self, r: &crate::perf::IoRecord, mono_to_wall_ns: i64) {
        let off = mono_to_wall_ns as i128;
        self.start_line();
        self.buf.push(b'{');
        self.time("ts", r.end_ns as i128 + off);
        field!(self, "kind", Str(b"perf.io_latency"));
        field!(self, "disk", Str(cstr_bytes(&r.disk)));
        field!(self, "dev", Str(r.device().as_bytes()));
        field!(self, "op", Str(crate::perf::io_op_name(r.op).as_bytes()));
        self.time("from", r.start_ns as i128 + off);
        field!(self, "interval_ns", r.end_ns - r.start_ns);
        field!(self, "count", r.count);
        field!(self, "sum_ns", r.sum_ns);
        field!(self, "bytes", r.bytes);
        self.log2_buckets(&r.slots);
        self.buf.extend_from_slice(b"}\n");
    }

    /// Builds the JSON line of a `perf.net_traffic` record (ending in a newline); times are
    /// its monotonic times plus `mono_to_wall_ns`.
    pub(crate) fn net_traffic(&mut self, r: &crate::perf::NetRecord, mono_to_wall_ns: i64) {
        let off = mono_to_wall_ns as i128;
        let f = &r.flow;
        self.start_line();
        self.buf.push(b'{');
        self.time("ts", r.end_ns as i128 + off);
        field!(self, "kind", Str(b"perf.net_traffic"));
        field!(self, "pid", f.tgid);
        field!(self, "comm", Str(cstr_bytes(&r.comm)));
        field!(self, "protocol", Str(r.protocol().as_bytes()));
        field!(self, "family", f.family);
        field!(self, "saddr", AddrValue(f.family, &f.saddr));
        field!(self, "sport", f.sport);
        field!(self, "daddr", AddrValue(f.family, &f.daddr));
        field!(self, "dport", f.dport);
        self.time("from", r.start_ns as i128 + off);
        field!(self, "interval_ns", r.end_ns - r.start_ns);
        field!(self, "bytes_sent", r.bytes_sent);
        field!(self, "bytes_received", r.bytes_received);
        field!(self, "sends", r.sends);
        field!(self, "receives", r.receives);
        self.buf.extend_from_slice(b"}\n");
    }

    /// Builds the JSON line of a `perf.task_sched` record (ending in a newline); times are
    /// its monotonic times plus `mono_to_wall_ns`.
    pub(crate) fn task_sched(&mut self, r: &crate::perf::TaskRecord, mono_to_wall_ns: i64) {
        let off = mono_to_wall_ns as i128;
        self.start_line();
        self.buf.push(b'{');
        self.time("ts", r.end_ns as i128 + off);
        field!(self, "kind", Str(b"perf.task_sched"));
        field!(self, "pid", r.tgid);
        field!(self, "comm", Str(cstr_bytes(&r.comm)));
        self.time("from", r.start_ns as i128 + off);
        field!(self, "interval_ns", r.end_ns - r.start_ns);
        field!(self, "switches", r.switches);
        field!(self, "involuntary", r.involuntary);
        field!(self, "offcpu_ns", r.offcpu_ns);
        field!(self, "runq_ns", r.runq_ns);
        self.buf.extend_from_slice(b"}\n");
    }

    /// `,"buckets":[...]`: the non-empty log2 buckets of microseconds of a perf record.
    pub(crate) fn log2_buckets(&mut self, slots: &[u64]) {
        self.buf.extend_from_slice(b",\"buckets\":[");
        let last = slots.len() - 1;
        let mut first = true;
        for (k, &n) in slots.iter().enumerate().filter(|(_, n)| **n > 0) {
            if !first {
                self.buf.push(b',');
            }
            first = false;
            self.buf.push(b'{');
            field!(self, "low_us", crate::perf::RunqRecord::bucket_low_us(k));
            if k < last {
                field!(self, "high_us", 1u64 << (k + 1));
            }
            field!(self, "count", n);
            self.buf.push(b'}');
        }
        self.buf.push(b']');
    }

    /// Builds the JSON line of one event (ending in a newline).
    pub fn event(&mut self, ev: &Event<'_>, weight: u32, wall_ns: i128) {
        let h = ev.header;
        self.start_line();
        self.buf.push(b'{');
        self.time("ts", wall_ns);
        self.buf.extend_from_slice(b",\"kind\":\"");
        self.buf.extend_from_slice(ev.kind.name().as_bytes());
        self.buf.push(b'"');
        let key = HeadKey {
            cpu: h.cpu,
            pid: h.pid,
            tid: h.tid,
            uid: h.uid,
            gid: h.gid,
            cgroup_id: h.cgroup_id,
            comm: h.comm,
        };
        if self.head_key == Some(key) {
            self.buf.extend_from_slice(&self.head);
        } else {
            let start = self.buf.len();
            field!(self, "cpu", h.cpu);
            field!(self, "pid", h.pid);
            field!(self, "tid", h.tid);
            field!(self, "uid", h.uid);
            field!(self, "gid", h.gid);
            field!(self, "comm", Str(cstr_bytes(&h.comm)));
            field!(self, "cgroup_id", h.cgroup_id);
            self.head.clear();
            self.head.extend_from_slice(&self.buf[start..]);
            self.head_key = Some(key);
        }
        field!(self, "weight", weight);
        if h.flags & bpf::abi::FLAG_TRUNCATED != 0 {
            field!(self, "truncated", true);
        }
        match ev.payload {
            Payload::ProcessExec(p) => {
                field!(
                    self,
                    "filename",
                    Str(str_bytes(&p.filename, p.filename_len))
                );
                field!(self, "exe", Str(str_bytes(&p.exe, p.exe_len)));
                field!(self, "cwd", Str(str_bytes(&p.cwd, p.cwd_len)));
                self.argv("argv", str_bytes(&p.argv, p.argv_len));
                field!(self, "argc", p.argc);
                field!(self, "ppid", p.ppid);
                field!(self, "euid", p.euid);
                field!(self, "egid", p.egid);
                field!(self, "secure", p.secure != 0);
            }
            Payload::ProcessFork(p) => {
                field!(self, "parent_pid", p.parent_pid);
                field!(self, "child_pid", p.child_pid);
                field!(self, "child_tid", p.child_tid);
                field!(self, "is_thread", p.is_thread == 1);
            }
            Payload::ProcessExit(p) => {
                field!(self, "exit_code", p.exit_code);
                field!(self, "signal", p.signal);
                field!(self, "core_dumped", p.core_dumped == 1);
                field!(self, "lifetime_ns", p.lifetime_ns);
            }
            Payload::FileOp(p) => {
                field!(self, "path", Str(str_bytes(&p.path, p.path_len)));
                field!(self, "flags", p.flags);
                field!(self, "mode", p.mode);
                field!(self, "dirfd", p.dirfd);
                field!(self, "ret", p.ret);
                field!(self, "latency_ns", p.latency_ns);
                field!(self, "syscall", p.syscall_nr);
            }
            Payload::FileRename(p) => {
                field!(self, "path", Str(str_bytes(&p.old_path, p.old_path_len)));
                field!(
                    self,
                    "new_path",
                    Str(str_bytes(&p.new_path, p.new_path_len))
                );
                field!(self, "flags", p.flags);
                field!(self, "ret", p.ret);
                field!(self, "latency_ns", p.latency_ns);
                field!(self, "syscall", p.syscall_nr);
            }
            Payload::Tcp(t) => {
                field!(self, "family", t.family);
                field!(self, "saddr", AddrValue(t.family, &t.saddr));
                field!(self, "daddr", AddrValue(t.family, &t.daddr));
                field!(self, "sport", t.sport);
                field!(self, "dport", t.dport);
                field!(self, "old_state", t.old_state);
                field!(self, "new_state", t.new_state);
                field!(self, "sock_cookie", t.sock_cookie);
                field!(self, "reason", t.reason);
            }
            Payload::PacketDrop(d) => {
                field!(self, "reason", d.reason);
                field!(self, "family", d.family);
                field!(self, "saddr", AddrValue(d.family, &d.saddr));
                field!(self, "daddr", AddrValue(d.family, &d.daddr));
                field!(self, "sport", d.sport);
                field!(self, "dport", d.dport);
                field!(self, "protocol", d.protocol);
                field!(self, "l4_protocol", d.l4_protocol);
                field!(self, "ifindex", d.ifindex);
                field!(self, "location", d.location);
            }
            Payload::CredChange(p) => {
                field!(self, "syscall", p.syscall_nr);
                self.buf.extend_from_slice(b",\"args\":[");
                for (i, a) in p.args.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    (*a as i32).write_to(self);
                }
                self.buf.push(b']');
                field!(self, "ret", p.ret);
                field!(self, "new_uid", p.new_uid);
                field!(self, "new_euid", p.new_euid);
                field!(self, "new_gid", p.new_gid);
                field!(self, "new_egid", p.new_egid);
            }
            Payload::Ptrace(p) => {
                field!(self, "request", p.request);
                field!(self, "target_pid", p.target_pid);
                field!(self, "addr", p.addr);
                field!(self, "data", p.data);
                field!(self, "ret", p.ret);
            }
            Payload::Capability(p) => {
                field!(self, "cap", p.cap);
                field!(self, "allowed", p.ret == 0);
                field!(self, "ret", p.ret);
                field!(self, "euid", p.euid);
            }
            Payload::Module(p) => {
                field!(self, "text", Str(str_bytes(&p.text, p.text_len)));
                field!(self, "fd", p.fd);
                field!(self, "flags", p.flags);
                field!(self, "ret", p.ret);
                field!(self, "syscall", p.syscall_nr);
            }
            Payload::Bpf(p) => {
                field!(self, "cmd", p.cmd);
                field!(self, "attr_type", p.attr_type);
                field!(self, "attr_size", p.attr_size);
                field!(self, "ret", p.ret);
            }
            Payload::Mount(p) => {
                field!(self, "source", Str(str_bytes(&p.source, p.source_len)));
                field!(self, "target", Str(str_bytes(&p.target, p.target_len)));
                field!(self, "fstype", Str(str_bytes(&p.fstype, p.fstype_len)));
                field!(self, "flags", p.flags);
                field!(self, "ret", p.ret);
                field!(self, "syscall", p.syscall_nr);
            }
            Payload::Signal(p) => {
                field!(self, "signal", p.sig);
                field!(self, "target_pid", p.target_pid);
                field!(self, "target_tid", p.target_tid);
                field!(self, "target_comm", Str(cstr_bytes(&p.target_comm)));
                field!(self, "code", p.code);
                field!(self, "result", p.result);
                field!(self, "group", p.group == 1);
            }
            Payload::Cgroup(p) => {
                field!(self, "target_cgroup_id", p.cgroup_id);
                field!(self, "path", Str(str_bytes(&p.path, p.path_len)));
                field!(self, "level", p.level);
                field!(self, "hierarchy_id", p.hierarchy_id);
                field!(self, "target_pid", p.target_pid);
                field!(self, "target_tid", p.target_tid);
            }
            Payload::OomKill(p) => {
                field!(self, "victim_pid", p.victim_pid);
                field!(self, "victim_uid", p.victim_uid);
                field!(self, "victim_comm", Str(cstr_bytes(&p.victim_comm)));
                field!(self, "oom_score_adj", p.oom_score_adj);
                field!(self, "total_vm_pages", p.total_vm_pages);
            }
            Payload::DirectReclaim(p) => {
                field!(self, "duration_ns", p.duration_ns);
                field!(self, "nr_reclaimed", p.nr_reclaimed);
                field!(self, "order", p.order);
                field!(self, "gfp_flags", p.gfp_flags);
            }
            Payload::PageFault(p) => {
                field!(self, "address", p.address);
                field!(self, "ip", p.ip);
                field!(self, "error_code", p.error_code);
            }
            Payload::Syscall(p) => {
                field!(self, "id", p.id);
                if h.flags & bpf::abi::FLAG_NO_RESULT == 0 {
                    field!(self, "ret", p.ret);
                    field!(self, "latency_ns", p.latency_ns);
                }
                self.buf.extend_from_slice(b",\"args\":[");
                for (i, a) in p.args.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    a.write_to(self);
                }
                self.buf.push(b']');
            }
            Payload::RunqWait(r) => {
                field!(self, "wait_ns", r.wait_ns);
                field!(self, "prev_pid", r.prev_pid);
                field!(self, "prev_tgid", r.prev_tgid);
                field!(self, "prev_comm", Str(cstr_bytes(&r.prev_comm)));
            }
            Payload::IoSlow(r) => {
                field!(self, "latency_ns", r.latency_ns);
                field!(self, "queued_ns", r.queued_ns);
                field!(self, "disk", Str(cstr_bytes(&r.disk)));
                field!(self, "dev", Str(crate::perf::device_name(r.dev).as_bytes()));
                field!(self, "op", Str(crate::perf::io_op_name(r.op).as_bytes()));
                field!(self, "bytes", r.bytes);
                field!(self, "sector", r.sector);
                field!(self, "error", r.error);
            }
            Payload::TcpLife(t) => {
                field!(self, "family", t.family);
                field!(self, "saddr", AddrValue(t.family, &t.saddr));
                field!(self, "sport", t.sport);
                field!(self, "daddr", AddrValue(t.family, &t.daddr));
                field!(self, "dport", t.dport);
                field!(self, "duration_ns", t.duration_ns);
                field!(self, "bytes_sent", t.bytes_sent);
                field!(self, "bytes_received", t.bytes_received);
                field!(self, "srtt_us", t.srtt_us);
                field!(self, "sock_cookie", t.sock_cookie);
            }
        }
        self.buf.extend_from_slice(b"}\n");
    }

    /// Adds what the enrichment tables say to the event line just written by
    /// [`JsonWriter::event`]: `exe` (not for `process.exec`, whose own `exe` is the new
    /// one), `ancestors`, `user`, `group`, `container`, each only where known.
    pub(crate) fn enrichment(&mut self, ev: &Event<'_>, e: &Enrichment<'_>) {
        if !self.buf.ends_with(b"}\n") {
            return;
        }
        self.buf.truncate(self.buf.len() - 2);
        if let Some(exe) = e.exe
            && !matches!(ev.payload, Payload::ProcessExec(_))
        {
            field!(self, "exe", Str(exe.as_bytes()));
        }
        if !e.ancestors().is_empty() {
            self.buf.extend_from_slice(b",\"ancestors\":[");
            for (i, (pid, exe)) in e.ancestors().iter().enumerate() {
                if i > 0 {
                    self.buf.push(b',');
                }
                self.buf.extend_from_slice(b"{\"pid\":");
                pid.write_to(self);
                if let Some(exe) = exe {
                    field!(self, "exe", Str(exe.as_bytes()));
                }
                self.buf.push(b'}');
            }
            self.buf.push(b']');
        }
        if let Some(u) = e.user {
            field!(self, "user", Str(u.as_bytes()));
        }
        if let Some(g) = e.group {
            field!(self, "group", Str(g.as_bytes()));
        }
        if let Some(p) = e.container {
            self.container(p);
        }
        self.buf.extend_from_slice(b"}\n");
    }

    /// Ends the event line just written by [`JsonWriter::event`] with `tail`: the bytes
    /// [`JsonWriter::enrichment`] added to an earlier line (from the `}` it replaced to the
    /// end), for an event whose enrichment is known to be the same.
    pub(crate) fn enrichment_again(&mut self, tail: &[u8]) {
        if self.buf.ends_with(b"}\n") {
            self.buf.truncate(self.buf.len() - 2);
            self.buf.extend_from_slice(tail);
        }
    }

    /// `,"container":{"id":...,"runtime":...,"pod_uid":...}`, or `{"id":"host"}`.
    pub(crate) fn container(&mut self, p: &Placement) {
        match p {
            Placement::Host => self
                .buf
                .extend_from_slice(b",\"container\":{\"id\":\"host\"}"),
            Placement::Container(c) => {
                self.buf.extend_from_slice(b",\"container\":{\"id\":");
                self.string(c.id.as_bytes());
                field!(self, "runtime", Str(c.runtime.name().as_bytes()));
                if let Some(pod) = &c.pod_uid {
                    field!(self, "pod_uid", Str(pod.as_bytes()));
                }
                self.buf.push(b'}');
            }
        }
    }
}

/// The length of the leading run of `s` that JSON takes as it is: printable ASCII other
/// than `"` and `\\`. Eight bytes at a time (SWAR): a word is plain when none of its bytes
/// is below 0x20, at or above 0x80, or equal to either quote character.
fn plain_run(s: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let special = |b: u8| b < 0x20 || b == b'"' || b == b'\\' || b >= 0x80;
    let mut i = 0;
    while i + 8 <= s.len() {
        let w = u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
        // A byte is zero in `x` <=> the high bit of that byte in `zero(x)` (exact for the
        // lowest such byte, which is all that is needed to stop at the first word).
        let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let hits = below_space
            | (w & HIGH)
            | zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')));
        if hits != 0 {
            break;
        }
        i += 8;
    }
    i + s[i..]
        .iter()
        .position(|&b| special(b))
        .unwrap_or(s.len() - i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_runs_stop_at_the_first_byte_to_escape() {
        let special = |b: u8| b < 0x20 || b == b'"' || b == b'\\' || b >= 0x80;
        // Every byte value at every position of strings of several lengths.
        for len in [1usize, 7, 8, 9, 16, 23] {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    let want = if special(b) { at } else { len };
                    assert_eq!(plain_run(&s), want, "byte {b:#x} at {at} of {len}");
                }
            }
        }
        assert_eq!(plain_run(b""), 0);
        assert_eq!(plain_run(b"/usr/lib/x86_64-linux-gnu/libc.so.6"), 35);
    }

    #[test]
    fn strings_are_escaped() {
        let mut w = JsonWriter::default();
        w.string(b"a\"b\\c\n\x01");
        assert_eq!(w.bytes(), br#""a\"b\\c\n\u0001""#);
        w.clear();
        w.string(b"\xff");
        assert_eq!(w.bytes(), br#""\\xff""#);
        w.clear();
        w.string("/tmp/é\"x\t".as_bytes());
        assert_eq!(w.bytes(), "\"/tmp/é\\\"x\\t\"".as_bytes());
        w.clear();
        w.string(b"/plain/ascii/path");
        assert_eq!(w.bytes(), br#""/plain/ascii/path""#);
    }

    #[test]
    fn times_use_the_cached_date_only_within_its_second() {
        let mut w = JsonWriter::default();
        w.raw(b"{");
        w.time("ts", 1_700_000_000_123_456_789);
        w.field("n", -5i64);
        w.time("a", 1_700_000_000_999_999_999);
        w.time("b", 1_700_000_001_000_000_000);
        w.time("c", -1);
        w.time("d", 1_700_000_000_500_000_000);
        w.time("e", 1_700_000_000_000_000_000);
        assert_eq!(
            std::str::from_utf8(w.bytes()).unwrap(),
            concat!(
                r#"{"ts":"2023-11-14T22:13:20.123456789Z","n":-5"#,
                r#","a":"2023-11-14T22:13:20.999999999Z""#,
                r#","b":"2023-11-14T22:13:21.000000000Z""#,
                r#","c":"1969-12-31T23:59:59.999999999Z""#,
                r#","d":"2023-11-14T22:13:20.500000000Z""#,
                r#","e":"2023-11-14T22:13:20.000000000Z""#,
            )
        );
    }

    #[test]
    fn times_out_of_range_are_flagged() {
        let mut w = JsonWriter::default();
        w.raw(b"{");
        w.time("ts", i128::MAX);
        w.raw(b"}");
        let v: serde_json::Value = serde_json::from_slice(w.bytes()).unwrap();
        assert_eq!(v["ts_out_of_range"], true);
        assert_eq!(
            v["ts"].as_str(),
            Some(super::super::time::Rfc3339(i128::MAX).to_string().as_str())
        );
    }

    #[test]
    fn exec_lines_carry_the_absolute_exe_and_truncation() {
        use bpf::abi::{EventHeader, FLAG_TRUNCATED, ProcessExec};
        let mut rec = vec![0u8; size_of::<EventHeader>() + size_of::<ProcessExec>()];
        let (head, body) = rec.split_at_mut(size_of::<EventHeader>());
        let h: &mut EventHeader = bytemuck::from_bytes_mut(head);
        h.kind = bpf::Kind::ProcessExec as u16;
        h.len = u32::try_from(size_of::<EventHeader>() + size_of::<ProcessExec>()).unwrap();
        h.flags = FLAG_TRUNCATED;
        let p: &mut ProcessExec = bytemuck::from_bytes_mut(body);
        p.filename[..7].copy_from_slice(b"./a.out");
        p.filename_len = 7;
        p.exe[..12].copy_from_slice(b"/tmp/d/a.out");
        p.exe_len = 12;
        let ev = bpf::decode(&rec).expect("a well-formed exec record");
        let mut w = JsonWriter::default();
        w.event(&ev, 1, 0);
        let v: serde_json::Value = serde_json::from_slice(w.bytes()).unwrap();
        assert_eq!(v["filename"], "./a.out");
        assert_eq!(v["exe"], "/tmp/d/a.out");
        assert_eq!(v["truncated"], true);
    }

    /// A file.open record with the given header identity and return value.
    fn file_open(pid: u32, tid: u32, uid: u32, comm: &[u8], ret: i64) -> Vec<u8> {
        use bpf::abi::{EventHeader, FileOp};
        let len = size_of::<EventHeader>() + size_of::<FileOp>();
        let mut rec = vec![0u8; len];
        let (head, body) = rec.split_at_mut(size_of::<EventHeader>());
        let h: &mut EventHeader = bytemuck::from_bytes_mut(head);
        h.kind = bpf::Kind::FileOpen as u16;
        h.len = u32::try_from(len).unwrap();
        h.pid = pid;
        h.tid = tid;
        h.uid = uid;
        h.cpu = pid % 3;
        h.cgroup_id = u64::from(uid) * 1000;
        h.comm[..comm.len()].copy_from_slice(comm);
        let p: &mut FileOp = bytemuck::from_bytes_mut(body);
        p.ret = ret;
        rec
    }

    #[test]
    fn lines_of_one_writer_equal_lines_of_fresh_ones() {
        // The header fields are reused while the thread's identity is unchanged, small
        // integers take their own path: any mix must write what a fresh writer writes.
        let recs = [
            file_open(1, 1, 0, b"a", 0),
            file_open(1, 1, 0, b"a", 9),
            file_open(1, 2, 0, b"a", 10),
            file_open(1, 2, 0, b"b", 99),
            file_open(100, 2, 0, b"b", 100),
            file_open(100, 2, 999, b"b", 999),
            file_open(100, 2, 1000, b"b", 1000),
            file_open(1, 1, 0, b"a", -1),
            file_open(u32::MAX, u32::MAX, u32::MAX, b"0123456789abcdef", i64::MIN),
            file_open(1, 1, 0, b"a", i64::MAX),
        ];
        let mut shared = JsonWriter::default();
        shared.accumulate();
        let mut expected = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            let ev = bpf::decode(r).expect("a well-formed record");
            let wall = 1_700_000_000_000_000_000 + i as i128 * 300_000_000;
            shared.event(&ev, 1, wall);
            let mut fresh = JsonWriter::default();
            fresh.event(&ev, 1, wall);
            expected.extend_from_slice(fresh.bytes());
            let v: serde_json::Value = serde_json::from_slice(fresh.bytes()).unwrap();
            assert_eq!(v["pid"], ev.header.pid);
            assert_eq!(v["tid"], ev.header.tid);
            assert_eq!(v["uid"], ev.header.uid);
            assert_eq!(v["cgroup_id"], ev.header.cgroup_id);
        }
        assert_eq!(
            std::str::from_utf8(shared.bytes()).unwrap(),
            std::str::from_utf8(&expected).unwrap()
        );
    }

    #[test]
    fn loss_lines_keep_their_format() {
        let mut w = JsonWriter::default();
        let l = Loss {
            stream: 2,
            cpu: 1,
            kind: bpf::Kind::FileOpen as u16,
            reason: storage::LossReason::KernelRingFull as u16,
            count: 5,
            start_ns: 900,
            end_ns: 1_002,
        };
        w.loss(&l, 1_700_000_000_000_000_000);
        assert_eq!(
            std::str::from_utf8(w.bytes()).unwrap(),
            concat!(
                r#"{"ts":"2023-11-14T22:13:20.000001002Z","kind":"loss","stream":2,"cpu":1,"#,
                r#""lost_kind":"file.open","reason":"kernel_ring_full","count":5,"#,
                r#""from":"2023-11-14T22:13:20.000000900Z","to":"2023-11-14T22:13:20.000001002Z"}"#,
                "\n"
            )
        );
    }
}
