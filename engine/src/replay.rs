//! The offline side: `engine replay`, `engine inspect`, `engine verify`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bpf::abi::{cstr_bytes, str_bytes};
use bpf::{Event, Kind, Payload};
use storage::{KIND_LOSS, Loss, LossReason, ReadOptions, Reader, Segment, Stats};

use crate::format::{Lossy, ip, write_fields};

/// Output format of `engine replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// What `engine replay` selects.
#[derive(Debug, Clone, Default)]
pub struct ReplayArgs {
    pub kinds: Vec<String>,
    pub pid: Option<u32>,
    /// Exact, or a prefix with a trailing `*`.
    pub comm: Option<String>,
    /// Wall-clock bounds, ns since the Unix epoch.
    pub from_unix_ns: Option<i128>,
    pub to_unix_ns: Option<i128>,
    pub limit: Option<u64>,
}

// ---- time -------------------------------------------------------------------------

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 in UTC with nanoseconds: `2026-11-26T12:00:00.123456789Z`.
#[derive(Debug)]
pub struct Rfc3339(pub i128);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0.div_euclid(1_000_000_000) as i64;
        let nanos = self.0.rem_euclid(1_000_000_000);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let s = secs.rem_euclid(86_400);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            s / 3600,
            s % 3600 / 60,
            s % 60
        )
    }
}

/// Parses RFC 3339 (`2026-11-26T12:00:00Z`, fractional seconds and `+hh:mm` offsets
/// allowed) or a plain integer of ns since the Unix epoch.
pub fn parse_time(s: &str) -> Option<i128> {
    if let Ok(ns) = s.parse::<i128>() {
        return Some(ns);
    }
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0i128;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = frac[..digits].parse::<i128>().ok()? * 10i128.pow(9 - digits as u32);
        rest = &frac[digits..];
    }
    let offset_s: i64 = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    Some(secs as i128 * 1_000_000_000 + nanos)
}

// ---- JSON -------------------------------------------------------------------------

/// A JSON line builder writing straight into a reused byte buffer: integers through
/// `itoa`, strings escaped byte-wise, the date part of timestamps cached per second.
/// `std::fmt` was 60% of replay time; this is what replay uses for `--format json`.
#[derive(Default)]
pub struct JsonWriter {
    buf: Vec<u8>,
    ints: itoa::Buffer,
    sec: i64,
    date: [u8; 19],
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
                let s = w.ints.format(*self);
                w.buf.extend_from_slice(s.as_bytes());
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

    /// Starts a new line.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// `,"key":value` (or `"key":value` right after `{`).
    pub fn field(&mut self, key: &str, v: impl JsonValue) {
        if self.buf.last() != Some(&b'{') {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
        v.write_to(self);
    }

    fn string(&mut self, s: &[u8]) {
        self.buf.push(b'"');
        for chunk in s.utf8_chunks() {
            for &b in chunk.valid().as_bytes() {
                match b {
                    b'"' => self.raw(b"\\\""),
                    b'\\' => self.raw(b"\\\\"),
                    b'\n' => self.raw(b"\\n"),
                    b'\r' => self.raw(b"\\r"),
                    b'\t' => self.raw(b"\\t"),
                    0..=0x1f => {
                        const HEX: &[u8; 16] = b"0123456789abcdef";
                        self.raw(b"\\u00");
                        self.buf.push(HEX[(b >> 4) as usize]);
                        self.buf.push(HEX[(b & 15) as usize]);
                    }
                    _ => self.buf.push(b),
                }
            }
            for &b in chunk.invalid() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                self.raw(b"\\\\x");
                self.buf.push(HEX[(b >> 4) as usize]);
                self.buf.push(HEX[(b & 15) as usize]);
            }
        }
        self.buf.push(b'"');
    }

    /// `"key":"2026-11-26T12:00:00.123456789Z"`.
    pub fn time(&mut self, key: &str, wall_ns: i128) {
        let sec = wall_ns.div_euclid(1_000_000_000) as i64;
        let nanos = wall_ns.rem_euclid(1_000_000_000) as u32;
        if sec != self.sec || self.date[0] == 0 {
            let text = Rfc3339(sec as i128 * 1_000_000_000).to_string();
            self.date.copy_from_slice(&text.as_bytes()[..19]);
            self.sec = sec;
        }
        if self.buf.last() != Some(&b'{') {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":\"");
        let date = self.date;
        self.raw(&date);
        self.buf.push(b'.');
        let mut digits = [b'0'; 9];
        let mut n = nanos;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.raw(&digits);
        self.raw(b"Z\"");
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

    /// Builds the JSON line of one event (ending in a newline).
    pub fn event(&mut self, ev: &Event<'_>, weight: u32, wall_ns: i128) {
        let h = ev.header;
        self.buf.clear();
        self.buf.push(b'{');
        self.time("ts", wall_ns);
        self.buf.extend_from_slice(b",\"kind\":\"");
        self.buf.extend_from_slice(ev.kind.name().as_bytes());
        self.buf.push(b'"');
        self.field("cpu", h.cpu);
        self.field("pid", h.pid);
        self.field("tid", h.tid);
        self.field("uid", h.uid);
        self.field("gid", h.gid);
        self.field("comm", Str(cstr_bytes(&h.comm)));
        self.field("cgroup_id", h.cgroup_id);
        self.field("weight", weight);
        if h.flags & bpf::abi::FLAG_TRUNCATED != 0 {
            self.field("truncated", true);
        }
        match ev.payload {
            Payload::ProcessExec(p) => {
                self.field("filename", Str(str_bytes(&p.filename, p.filename_len)));
                self.argv("argv", str_bytes(&p.argv, p.argv_len));
                self.field("argc", p.argc);
                self.field("ppid", p.ppid);
                self.field("euid", p.euid);
                self.field("egid", p.egid);
            }
            Payload::ProcessFork(p) => {
                self.field("parent_pid", p.parent_pid);
                self.field("child_pid", p.child_pid);
                self.field("child_tid", p.child_tid);
                self.field("is_thread", p.is_thread == 1);
            }
            Payload::ProcessExit(p) => {
                self.field("exit_code", p.exit_code);
                self.field("signal", p.signal);
                self.field("core_dumped", p.core_dumped == 1);
                self.field("lifetime_ns", p.lifetime_ns);
            }
            Payload::FileOp(p) => {
                self.field("path", Str(str_bytes(&p.path, p.path_len)));
                self.field("flags", p.flags);
                self.field("mode", p.mode);
                self.field("dirfd", p.dirfd);
                self.field("ret", p.ret);
                self.field("latency_ns", p.latency_ns);
                self.field("syscall", p.syscall_nr);
            }
            Payload::FileRename(p) => {
                self.field("path", Str(str_bytes(&p.old_path, p.old_path_len)));
                self.field("new_path", Str(str_bytes(&p.new_path, p.new_path_len)));
                self.field("flags", p.flags);
                self.field("ret", p.ret);
                self.field("latency_ns", p.latency_ns);
                self.field("syscall", p.syscall_nr);
            }
            Payload::Tcp(t) => {
                self.field("family", t.family);
                self.field("saddr", AddrValue(t.family, &t.saddr));
                self.field("daddr", AddrValue(t.family, &t.daddr));
                self.field("sport", t.sport);
                self.field("dport", t.dport);
                self.field("old_state", t.old_state);
                self.field("new_state", t.new_state);
                self.field("sock_cookie", t.sock_cookie);
                self.field("reason", t.reason);
            }
            Payload::PacketDrop(d) => {
                self.field("reason", d.reason);
                self.field("family", d.family);
                self.field("saddr", AddrValue(d.family, &d.saddr));
                self.field("daddr", AddrValue(d.family, &d.daddr));
                self.field("sport", d.sport);
                self.field("dport", d.dport);
                self.field("protocol", d.protocol);
                self.field("l4_protocol", d.l4_protocol);
                self.field("ifindex", d.ifindex);
                self.field("location", d.location);
            }
            Payload::CredChange(p) => {
                self.field("syscall", p.syscall_nr);
                self.buf.extend_from_slice(b",\"args\":[");
                for (i, a) in p.args.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    (*a as i32).write_to(self);
                }
                self.buf.push(b']');
                self.field("ret", p.ret);
                self.field("new_uid", p.new_uid);
                self.field("new_euid", p.new_euid);
                self.field("new_gid", p.new_gid);
                self.field("new_egid", p.new_egid);
            }
            Payload::Ptrace(p) => {
                self.field("request", p.request);
                self.field("target_pid", p.target_pid);
                self.field("addr", p.addr);
                self.field("data", p.data);
                self.field("ret", p.ret);
            }
            Payload::Capability(p) => {
                self.field("cap", p.cap);
                self.field("allowed", p.ret == 0);
                self.field("ret", p.ret);
                self.field("euid", p.euid);
            }
            Payload::Module(p) => {
                self.field("text", Str(str_bytes(&p.text, p.text_len)));
                self.field("fd", p.fd);
                self.field("flags", p.flags);
                self.field("ret", p.ret);
                self.field("syscall", p.syscall_nr);
            }
            Payload::Bpf(p) => {
                self.field("cmd", p.cmd);
                self.field("attr_type", p.attr_type);
                self.field("attr_size", p.attr_size);
                self.field("ret", p.ret);
            }
            Payload::Mount(p) => {
                self.field("source", Str(str_bytes(&p.source, p.source_len)));
                self.field("target", Str(str_bytes(&p.target, p.target_len)));
                self.field("fstype", Str(str_bytes(&p.fstype, p.fstype_len)));
                self.field("flags", p.flags);
                self.field("ret", p.ret);
                self.field("syscall", p.syscall_nr);
            }
            Payload::Signal(p) => {
                self.field("signal", p.sig);
                self.field("target_pid", p.target_pid);
                self.field("target_tid", p.target_tid);
                self.field("target_comm", Str(cstr_bytes(&p.target_comm)));
                self.field("code", p.code);
                self.field("result", p.result);
                self.field("group", p.group == 1);
            }
            Payload::Cgroup(p) => {
                self.field("target_cgroup_id", p.cgroup_id);
                self.field("path", Str(str_bytes(&p.path, p.path_len)));
                self.field("level", p.level);
                self.field("hierarchy_id", p.hierarchy_id);
                self.field("target_pid", p.target_pid);
                self.field("target_tid", p.target_tid);
            }
            Payload::OomKill(p) => {
                self.field("victim_pid", p.victim_pid);
                self.field("victim_uid", p.victim_uid);
                self.field("victim_comm", Str(cstr_bytes(&p.victim_comm)));
                self.field("oom_score_adj", p.oom_score_adj);
                self.field("total_vm_pages", p.total_vm_pages);
            }
            Payload::DirectReclaim(p) => {
                self.field("duration_ns", p.duration_ns);
                self.field("nr_reclaimed", p.nr_reclaimed);
                self.field("order", p.order);
                self.field("gfp_flags", p.gfp_flags);
            }
            Payload::PageFault(p) => {
                self.field("address", p.address);
                self.field("ip", p.ip);
                self.field("error_code", p.error_code);
            }
            Payload::Syscall(p) => {
                self.field("id", p.id);
                if h.flags & bpf::abi::FLAG_NO_RESULT == 0 {
                    self.field("ret", p.ret);
                    self.field("latency_ns", p.latency_ns);
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
        }
        self.buf.extend_from_slice(b"}\n");
    }
}

/// Writes one event as a JSON object on one line.
pub fn write_json<W: Write + ?Sized>(
    out: &mut W,
    ev: &Event<'_>,
    weight: u32,
    wall_ns: i128,
) -> io::Result<()> {
    let mut w = JsonWriter::default();
    w.event(ev, weight, wall_ns);
    out.write_all(w.bytes())
}

fn reason_name(id: u16) -> String {
    LossReason::from_id(id).map_or_else(|| format!("reason_{id}"), |r| r.name().to_string())
}

fn kind_name(id: u16) -> String {
    Kind::from_id(id).map_or_else(|| format!("kind_{id}"), |k| k.name().to_string())
}

fn write_loss<W: Write + ?Sized>(
    out: &mut W,
    l: &Loss,
    off: i128,
    format: Format,
) -> io::Result<()> {
    match format {
        Format::Json => writeln!(
            out,
            "{{\"ts\":\"{}\",\"kind\":\"loss\",\"stream\":{},\"cpu\":{},\"lost_kind\":\"{}\",\"reason\":\"{}\",\"count\":{},\"from\":\"{}\",\"to\":\"{}\"}}",
            Rfc3339(l.end_ns as i128 + off),
            l.stream,
            l.cpu as i64,
            kind_name(l.kind),
            reason_name(l.reason),
            l.count,
            Rfc3339(l.start_ns as i128 + off),
            Rfc3339(l.end_ns as i128 + off)
        ),
        Format::Text => writeln!(
            out,
            "{} LOSS stream {} cpu {}: {} {} events lost ({}) since {}",
            Rfc3339(l.end_ns as i128 + off),
            l.stream,
            l.cpu as i64,
            l.count,
            kind_name(l.kind),
            reason_name(l.reason),
            Rfc3339(l.start_ns as i128 + off)
        ),
    }
}

fn comm_matches(pattern: &str, comm: &[u8]) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => comm.starts_with(prefix.as_bytes()),
        None => comm == pattern.as_bytes(),
    }
}

fn is_tty() -> bool {
    // SAFETY: isatty has no preconditions.
    unsafe { libc::isatty(2) == 1 }
}

/// `engine replay`: events of `dir` merged in time order. Returns events written.
pub fn replay<W: Write>(
    dir: &Path,
    args: &ReplayArgs,
    format: Format,
    out: &mut W,
) -> anyhow::Result<u64> {
    ensure_dir(dir)?;
    let mut kinds = Vec::new();
    for k in &args.kinds {
        if k == "loss" {
            kinds.push(KIND_LOSS);
        } else {
            let kind = Kind::from_name(k).with_context(|| format!("--kind: unknown kind {k:?}"))?;
            kinds.push(kind as u16);
        }
    }
    // Wall-clock bounds: the reader maps them through each segment's own clock offset.
    let unix = |t: i128| t.clamp(0, u64::MAX as i128 - 1) as u64;
    let opts = ReadOptions {
        from_ns: args.from_unix_ns.map_or(0, unix),
        to_ns: args.to_unix_ns.map_or(u64::MAX, unix),
        wall_clock: true,
        kinds: (!kinds.is_empty()).then_some(kinds),
        streams: None,
    };
    let mut reader = Reader::open(dir, &opts)?;
    let progress = is_tty();
    let blocks = reader.progress();
    let mut json = JsonWriter::default();
    let mut last_progress = Instant::now();
    let mut written = 0u64;
    let mut seen = 0u64;
    while let Some(loc) = reader.next_located()? {
        let rec = loc.record;
        seen += 1;
        if progress && last_progress.elapsed() >= Duration::from_millis(200) {
            let c = blocks.counts();
            eprint!(
                "\rreplay: {seen} records read, {written} shown, {} blocks decoded, {} skipped",
                c.read, c.skipped
            );
            last_progress = Instant::now();
        }
        // Each record's own segment says how its boot's clock maps to wall time.
        let off = loc.mono_to_wall_ns as i128;
        let wall = rec.ts_ns as i128 + off;
        if rec.kind == KIND_LOSS {
            if args.pid.is_some() || args.comm.is_some() {
                continue;
            }
            if let Some(l) = Loss::decode(rec.bytes) {
                write_loss(out, &l, off, format)?;
                written += 1;
            }
        } else {
            let Ok(ev) = bpf::decode(rec.bytes) else {
                bail!(
                    "undecodable record of kind {} at {}",
                    rec.kind,
                    Rfc3339(wall)
                );
            };
            if args.pid.is_some_and(|p| ev.header.pid != p)
                || args
                    .comm
                    .as_ref()
                    .is_some_and(|c| !comm_matches(c, cstr_bytes(&ev.header.comm)))
            {
                continue;
            }
            match format {
                Format::Json => {
                    json.event(&ev, rec.weight, wall);
                    out.write_all(json.bytes())?;
                }
                Format::Text => {
                    let h = ev.header;
                    write!(
                        out,
                        "{} cpu{} {}[{}] {}",
                        Rfc3339(wall),
                        h.cpu,
                        Lossy(cstr_bytes(&h.comm)),
                        h.pid,
                        ev.kind.name()
                    )?;
                    if rec.weight > 1 {
                        write!(out, " weight={}", rec.weight)?;
                    }
                    write_fields(out, &ev)?;
                }
            }
            written += 1;
        }
        if args.limit.is_some_and(|l| written >= l) {
            break;
        }
    }
    if progress {
        eprintln!("\rreplay: {seen} records read, {written} shown{:40}", "");
    }
    out.flush()?;
    Ok(written)
}

fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!("{}: no such directory", dir.display());
    }
    Ok(())
}

/// `engine inspect`: what a data directory holds.
pub fn inspect<W: Write>(dir: &Path, out: &mut W) -> anyhow::Result<()> {
    ensure_dir(dir)?;
    let stats = Stats::collect(dir)?;
    let mut rows = stats.streams.clone();
    if rows.len() > 1 {
        let mut t = stats.total();
        t.id = u32::MAX;
        rows.push(t);
    }
    for s in &rows {
        let name = if s.id == u32::MAX {
            "total".to_string()
        } else {
            format!("stream {}", s.id)
        };
        let off = s.mono_to_wall_ns as i128;
        writeln!(out, "{name}:")?;
        writeln!(
            out,
            "  segments {} ({} unsealed, {} torn bytes), blocks {}",
            s.segments, s.unsealed_segments, s.torn_bytes, s.blocks
        )?;
        writeln!(
            out,
            "  events {}, bytes {} of records in {} on disk, ratio {:.1}x, {:.1} bytes/event",
            s.events,
            s.record_bytes,
            s.file_bytes,
            s.compression_ratio(),
            if s.events > 0 {
                s.file_bytes as f64 / s.events as f64
            } else {
                0.0
            }
        )?;
        if s.blocks > 0 {
            writeln!(
                out,
                "  span {} .. {} ({:.3} s)",
                Rfc3339(s.min_ts as i128 + off),
                Rfc3339(s.max_ts as i128 + off),
                (s.max_ts - s.min_ts) as f64 / 1e9
            )?;
        }
        let lost: Vec<String> = s
            .lost
            .iter()
            .map(|(r, c)| format!("{} {c}", reason_name(*r)))
            .collect();
        writeln!(
            out,
            "  losses: {} records{}{}",
            s.loss_records,
            if lost.is_empty() { "" } else { ": " },
            lost.join(", ")
        )?;
        writeln!(
            out,
            "  sampling: {} of {} events kept with weight > 1; estimated events {}",
            s.sampled_records, s.events, s.weighted_events
        )?;
        let kinds: Vec<String> = s
            .per_kind
            .iter()
            .map(|(k, c)| format!("{} {c}", kind_name(*k)))
            .collect();
        writeln!(out, "  kinds: {}", kinds.join(", "))?;
    }
    Ok(())
}

/// `engine verify`: checks every block of every segment; the problems found.
pub fn verify(dir: &Path) -> anyhow::Result<Vec<String>> {
    ensure_dir(dir)?;
    let mut problems = Vec::new();
    let mut streams: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: reading", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("stream-"))
        })
        .collect();
    streams.sort();
    let mut decoded = storage::DecodedBlock::new();
    let mut buf = Vec::new();
    for s in streams {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&s)
            .with_context(|| format!("{}: reading", s.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "seg" || e == "open"))
            .collect();
        files.sort();
        for f in files {
            let seg = match Segment::open(&f) {
                Ok(seg) => seg,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            if let Some(t) = seg.torn() {
                problems.push(format!(
                    "{}: at offset {}: unsealed, {} bytes after the last sound block ({})",
                    f.display(),
                    t.offset,
                    t.bytes,
                    t.what
                ));
            }
            for meta in seg.blocks() {
                if let Err(e) = seg.read_block(meta, &mut buf, &mut decoded) {
                    problems.push(e.to_string());
                    continue;
                }
                for i in 0..decoded.len() {
                    let r = decoded.record(i);
                    let bad = if r.kind == KIND_LOSS {
                        Loss::decode(r.bytes).is_none()
                    } else {
                        bpf::decode(r.bytes).is_err()
                    };
                    if bad {
                        problems.push(format!(
                            "{}: at offset {}: record {i} (kind {}) does not decode",
                            f.display(),
                            meta.offset,
                            r.kind
                        ));
                    }
                }
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = parse_time("2026-11-26T12:34:56.123456789Z").unwrap();
        assert_eq!(Rfc3339(t).to_string(), "2026-11-26T12:34:56.123456789Z");
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_time("2026-11-26T14:34:56+02:00"),
            parse_time("2026-11-26T12:34:56Z")
        );
        assert_eq!(parse_time("12345"), Some(12345));
        assert_eq!(parse_time("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(Rfc3339(-1).to_string(), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut w = JsonWriter::default();
        w.string(b"a\"b\\c\n\x01");
        assert_eq!(w.bytes(), br#""a\"b\\c\n\u0001""#);
        w.clear();
        w.string(b"\xff");
        assert_eq!(w.bytes(), br#""\\xff""#);
        w.clear();
        w.raw(b"{");
        w.time("ts", 1_700_000_000_123_456_789);
        w.field("n", -5i64);
        assert_eq!(
            w.bytes(),
            br#"{"ts":"2023-11-14T22:13:20.123456789Z","n":-5"#
        );
    }
}
