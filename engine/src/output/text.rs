//! One readable line per event: `ts_ns cpu comm[pid/tid] kind fields...` for `tail`,
//! `RFC3339 cpu comm[pid] kind fields...` for `replay`, and one line per loss record.
//!
//! Writes straight into the caller's writer; nothing is collected per event.

use std::io::{self, Write};
use std::net::IpAddr;

use bpf::abi::{cstr_bytes, str_bytes};
use bpf::{Event, Payload};

use crate::enrich::container::Placement;
use crate::enrich::tables::Enrichment;
use storage::Loss;

use super::time::{Rfc3339, in_range};
use super::{ip, kind_name, reason_name};

/// Bytes shown as UTF-8, invalid bytes as `\\xNN`.
#[derive(Debug)]
pub struct Lossy<'a>(pub &'a [u8]);

impl std::fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// Arguments as `a b c`, NUL separators turned into spaces.
struct Argv<'a>(&'a [u8]);

impl std::fmt::Display for Argv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let trimmed = self.0.strip_suffix(&[0]).unwrap_or(self.0);
        for (i, arg) in trimmed.split(|&b| b == 0).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            Lossy(arg).fmt(f)?;
        }
        Ok(())
    }
}

struct Addr(u16, [u8; 16], u16);

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match ip(self.0, &self.1) {
            Some(IpAddr::V6(a)) => write!(f, "[{a}]:{}", self.2),
            Some(a) => write!(f, "{a}:{}", self.2),
            None => write!(f, "?:{}", self.2),
        }
    }
}

/// Writes one text line for `ev`, stamped with its monotonic time.
pub fn write_text<W: Write + ?Sized>(out: &mut W, ev: &Event<'_>) -> io::Result<()> {
    write_live_head(out, ev)?;
    write_fields(out, ev)
}

/// `seconds.nanoseconds cpuN comm[pid/tid] kind` (monotonic time).
fn write_live_head<W: Write + ?Sized>(out: &mut W, ev: &Event<'_>) -> io::Result<()> {
    let h = ev.header;
    write!(
        out,
        "{}.{:09} cpu{} {}[{}/{}] {}",
        h.ts_ns / 1_000_000_000,
        h.ts_ns % 1_000_000_000,
        h.cpu,
        Lossy(cstr_bytes(&h.comm)),
        h.pid,
        h.tid,
        ev.kind.name()
    )
}

/// A wall-clock time for a text line: RFC 3339, or outside the range of dates (see
/// [`super::time`]) the raw ns since the epoch followed by `(out-of-range)`.
#[derive(Debug, Clone, Copy)]
pub struct WallTime(pub i128);

impl std::fmt::Display for WallTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if in_range(self.0) {
            Rfc3339(self.0).fmt(f)
        } else {
            write!(f, "{}ns(out-of-range)", self.0)
        }
    }
}

/// Writes one replay line for `ev`: its wall-clock time, cpu, comm[pid], kind, the
/// weight when sampled, the kind's fields, and in brief what enrichment knows (the
/// executable, and the container when not on the host).
pub(crate) fn write_replay<W: Write + ?Sized>(
    out: &mut W,
    ev: &Event<'_>,
    weight: u32,
    wall_ns: i128,
    enrich: Option<&Enrichment<'_>>,
) -> io::Result<()> {
    let h = ev.header;
    write!(
        out,
        "{} cpu{} {}[{}] {}",
        WallTime(wall_ns),
        h.cpu,
        Lossy(cstr_bytes(&h.comm)),
        h.pid,
        ev.kind.name()
    )?;
    if weight > 1 {
        write!(out, " weight={weight}")?;
    }
    write_payload(out, ev)?;
    if let Some(e) = enrich {
        write_enrichment(out, ev, e)?;
    }
    out.write_all(b"\n")
}

/// ` exe=... container=RUNTIME:ID12 pod=UID` (what is known; the exe not again for an
/// exec, whose fields have it).
pub(crate) fn write_enrichment<W: Write + ?Sized>(
    out: &mut W,
    ev: &Event<'_>,
    e: &Enrichment<'_>,
) -> io::Result<()> {
    if let Some(exe) = e.exe
        && !matches!(ev.payload, Payload::ProcessExec(_))
    {
        write!(out, " exe={exe}")?;
    }
    if let Some(Placement::Container(c)) = e.container {
        write!(
            out,
            " container={}:{}",
            c.runtime.name(),
            &c.id[..c.id.len().min(12)]
        )?;
        if let Some(pod) = &c.pod_uid {
            write!(out, " pod={pod}")?;
        }
    }
    Ok(())
}

/// Writes one live line for `ev` with what enrichment knows (`engine tail`).
pub(crate) fn write_text_enriched<W: Write + ?Sized>(
    out: &mut W,
    ev: &Event<'_>,
    e: &Enrichment<'_>,
) -> io::Result<()> {
    write_live_head(out, ev)?;
    write_payload(out, ev)?;
    write_enrichment(out, ev, e)?;
    out.write_all(b"\n")
}

/// Writes one line for a loss record; times are its monotonic times plus
/// `mono_to_wall_ns`.
pub fn write_loss<W: Write + ?Sized>(
    out: &mut W,
    l: &Loss,
    mono_to_wall_ns: i64,
) -> io::Result<()> {
    let off = mono_to_wall_ns as i128;
    writeln!(
        out,
        "{} LOSS stream {} cpu {}: {} {} events lost ({}) since {}",
        WallTime(l.end_ns as i128 + off),
        l.stream,
        l.cpu as i64,
        l.count,
        kind_name(l.kind),
        reason_name(l.reason),
        WallTime(l.start_ns as i128 + off)
    )
}

/// Writes the kind's own fields (` key=value ...`) and the newline.
pub fn write_fields<W: Write + ?Sized>(out: &mut W, ev: &Event<'_>) -> io::Result<()> {
    write_payload(out, ev)?;
    out.write_all(b"\n")
}

/// Writes the kind's own fields (` key=value ...`, ` truncated`), no newline.
fn write_payload<W: Write + ?Sized>(out: &mut W, ev: &Event<'_>) -> io::Result<()> {
    let h = ev.header;
    match ev.payload {
        Payload::ProcessExec(p) => write!(
            out,
            " exe={} filename={} argv=\"{}\" ppid={} uid={} euid={}{}",
            Lossy(str_bytes(&p.exe, p.exe_len)),
            Lossy(str_bytes(&p.filename, p.filename_len)),
            Argv(str_bytes(&p.argv, p.argv_len)),
            p.ppid,
            h.uid,
            p.euid,
            if p.secure != 0 { " secure" } else { "" }
        )?,
        Payload::ProcessFork(p) => write!(
            out,
            " child={}/{} thread={}",
            p.child_pid, p.child_tid, p.is_thread
        )?,
        Payload::ProcessExit(p) => write!(
            out,
            " exit_code={} signal={} core_dumped={} lifetime_ms={}",
            p.exit_code,
            p.signal,
            p.core_dumped,
            p.lifetime_ns / 1_000_000
        )?,
        Payload::FileOp(p) => write!(
            out,
            " path={} flags={:#o} mode={:#o} ret={} dirfd={}",
            Lossy(str_bytes(&p.path, p.path_len)),
            p.flags,
            p.mode,
            p.ret,
            p.dirfd
        )?,
        Payload::FileRename(p) => write!(
            out,
            " path={} new_path={} ret={}",
            Lossy(str_bytes(&p.old_path, p.old_path_len)),
            Lossy(str_bytes(&p.new_path, p.new_path_len)),
            p.ret
        )?,
        Payload::Tcp(p) => write!(
            out,
            " {} -> {} state={}->{} cookie={}",
            Addr(p.family, p.saddr, p.sport),
            Addr(p.family, p.daddr, p.dport),
            p.old_state,
            p.new_state,
            p.sock_cookie
        )?,
        Payload::PacketDrop(p) => write!(
            out,
            " reason={} {} -> {} proto={} ifindex={} location={:#x}",
            p.reason,
            Addr(p.family, p.saddr, p.sport),
            Addr(p.family, p.daddr, p.dport),
            p.l4_protocol,
            p.ifindex,
            p.location
        )?,
        Payload::CredChange(p) => write!(
            out,
            " syscall={} args={:?} ret={} now uid={} euid={} gid={} egid={}",
            p.syscall_nr,
            p.args.map(|a| a as i32),
            p.ret,
            p.new_uid,
            p.new_euid,
            p.new_gid,
            p.new_egid
        )?,
        Payload::Ptrace(p) => write!(
            out,
            " request={} target={} ret={}",
            p.request, p.target_pid, p.ret
        )?,
        Payload::Capability(p) => write!(
            out,
            " cap={} {} euid={}",
            p.cap,
            if p.ret == 0 { "allowed" } else { "denied" },
            p.euid
        )?,
        Payload::Module(p) => write!(
            out,
            " text=\"{}\" fd={} ret={}",
            Lossy(str_bytes(&p.text, p.text_len)),
            p.fd,
            p.ret
        )?,
        Payload::Bpf(p) => write!(out, " cmd={} type={} ret={}", p.cmd, p.attr_type, p.ret)?,
        Payload::Mount(p) => write!(
            out,
            " source={} target={} fstype={} flags={:#x} ret={}",
            Lossy(str_bytes(&p.source, p.source_len)),
            Lossy(str_bytes(&p.target, p.target_len)),
            Lossy(str_bytes(&p.fstype, p.fstype_len)),
            p.flags,
            p.ret
        )?,
        Payload::Signal(p) => write!(
            out,
            " sig={} target={}[{}] code={} result={}",
            p.sig,
            Lossy(cstr_bytes(&p.target_comm)),
            p.target_pid,
            p.code,
            p.result
        )?,
        Payload::Cgroup(p) => write!(
            out,
            " id={} path={} level={} hierarchy={} target={}",
            p.cgroup_id,
            Lossy(str_bytes(&p.path, p.path_len)),
            p.level,
            p.hierarchy_id,
            p.target_pid
        )?,
        Payload::OomKill(p) => write!(
            out,
            " victim={}[{}] uid={} oom_score_adj={} total_vm_pages={}",
            Lossy(cstr_bytes(&p.victim_comm)),
            p.victim_pid,
            p.victim_uid,
            p.oom_score_adj,
            p.total_vm_pages
        )?,
        Payload::DirectReclaim(p) => write!(
            out,
            " duration_us={} reclaimed={} order={}",
            p.duration_ns / 1000,
            p.nr_reclaimed,
            p.order
        )?,
        Payload::PageFault(p) => write!(
            out,
            " address={:#x} ip={:#x} error={:#x}",
            p.address, p.ip, p.error_code
        )?,
        Payload::Syscall(p) if h.flags & bpf::abi::FLAG_NO_RESULT != 0 => {
            write!(out, " id={} args={:x?}", p.id, p.args)?
        }
        Payload::Syscall(p) => write!(
            out,
            " id={} ret={} latency_ns={} args={:x?}",
            p.id, p.ret, p.latency_ns, p.args
        )?,
        Payload::RunqWait(r) => {
            write!(
                out,
                " wait_ns={} prev_pid={} prev_tgid={} prev_comm=",
                r.wait_ns, r.prev_pid, r.prev_tgid
            )?;
            out.write_all(cstr_bytes(&r.prev_comm))?;
        }
        Payload::TcpLife(t) => write!(
            out,
            " {} -> {} duration_ns={} bytes_sent={} bytes_received={} srtt_us={} cookie={}",
            Addr(t.family, t.saddr, t.sport),
            Addr(t.family, t.daddr, t.dport),
            t.duration_ns,
            t.bytes_sent,
            t.bytes_received,
            t.srtt_us,
            t.sock_cookie
        )?,
        Payload::IoSlow(r) => {
            out.write_all(b" disk=")?;
            out.write_all(cstr_bytes(&r.disk))?;
            write!(
                out,
                " dev={}:{} op={} bytes={} sector={} latency_ns={} queued_ns={} error={}",
                r.dev >> 20,
                r.dev & 0xfffff,
                crate::perf::io_op_name(r.op),
                r.bytes,
                r.sector,
                r.latency_ns,
                r.queued_ns,
                r.error
            )?;
        }
    }
    if h.flags & bpf::abi::FLAG_TRUNCATED != 0 {
        out.write_all(b" truncated")?;
    }
    Ok(())
}

/// One of the perf stream's interval records as a text line.
pub fn write_aggregate(
    out: &mut impl Write,
    a: &crate::perf::Aggregate,
    off: i64,
) -> io::Result<()> {
    use crate::perf::Aggregate::*;
    match a {
        Runq(r) => write_runq(out, r, off),
        Io(r) => write_block_io(out, r, off),
        Net(r) => write_net_traffic(out, r, off),
        Task(r) => write_task_sched(out, r, off),
    }
}

/// One `perf.runq_latency` record as a text line: the interval, the scope, the count and
/// mean, then each non-empty bucket as `low-high:count` (microseconds).
pub fn write_runq(out: &mut impl Write, r: &crate::perf::RunqRecord, off: i64) -> io::Result<()> {
    let wall = |t: u64| WallTime(t as i128 + off as i128);
    write!(
        out,
        "{} perf.runq_latency {}={} from={} count={} mean_us={:.1} buckets_us=",
        wall(r.end_ns),
        r.scope_name(),
        r.id,
        wall(r.start_ns),
        r.count,
        r.sum_ns as f64 / r.count.max(1) as f64 / 1000.0
    )?;
    write_log2_buckets(out, &r.slots)
}

/// One `perf.io_latency` record as a text line, like [`write_runq`].
pub fn write_block_io(out: &mut impl Write, r: &crate::perf::IoRecord, off: i64) -> io::Result<()> {
    let wall = |t: u64| WallTime(t as i128 + off as i128);
    out.write_all(format!("{} perf.io_latency disk=", wall(r.end_ns)).as_bytes())?;
    out.write_all(cstr_bytes(&r.disk))?;
    write!(
        out,
        " dev={} op={} from={} count={} bytes={} mean_us={:.1} buckets_us=",
        r.device(),
        crate::perf::io_op_name(r.op),
        wall(r.start_ns),
        r.count,
        r.bytes,
        r.sum_ns as f64 / r.count.max(1) as f64 / 1000.0
    )?;
    write_log2_buckets(out, &r.slots)
}

/// One `perf.task_sched` record as a text line.
pub fn write_task_sched(
    out: &mut impl Write,
    r: &crate::perf::TaskRecord,
    off: i64,
) -> io::Result<()> {
    let wall = |t: u64| WallTime(t as i128 + off as i128);
    out.write_all(format!("{} perf.task_sched ", wall(r.end_ns)).as_bytes())?;
    out.write_all(cstr_bytes(&r.comm))?;
    writeln!(
        out,
        "[{}] from={} switches={} involuntary={} offcpu_ns={} runq_ns={}",
        r.tgid,
        wall(r.start_ns),
        r.switches,
        r.involuntary,
        r.offcpu_ns,
        r.runq_ns
    )
}

/// One `perf.net_traffic` record as a text line.
pub fn write_net_traffic(
    out: &mut impl Write,
    r: &crate::perf::NetRecord,
    off: i64,
) -> io::Result<()> {
    let wall = |t: u64| WallTime(t as i128 + off as i128);
    let f = &r.flow;
    out.write_all(format!("{} perf.net_traffic ", wall(r.end_ns)).as_bytes())?;
    out.write_all(cstr_bytes(&r.comm))?;
    writeln!(
        out,
        "[{}] {} {} -> {} from={} bytes_sent={} bytes_received={} sends={} receives={}",
        f.tgid,
        r.protocol(),
        Addr(f.family, f.saddr, f.sport),
        Addr(f.family, f.daddr, f.dport),
        wall(r.start_ns),
        r.bytes_sent,
        r.bytes_received,
        r.sends,
        r.receives
    )
}

/// `low-high:count,...` of the non-empty log2 buckets (µs), then the newline.
fn write_log2_buckets(out: &mut impl Write, slots: &[u64]) -> io::Result<()> {
    let r = slots;
    let last = r.len() - 1;
    let mut first = true;
    for (k, &n) in r.iter().enumerate().filter(|(_, n)| **n > 0) {
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        let low = crate::perf::RunqRecord::bucket_low_us(k);
        if k == last {
            write!(out, "{low}+:{n}")?;
        } else {
            write!(out, "{low}-{}:{n}", (1u64 << (k + 1)) - 1)?;
        }
    }
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_addresses_and_argv() {
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(Addr(2, v4, 80).to_string(), "127.0.0.1:80");
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(Addr(10, v6, 443).to_string(), "[::1]:443");
        assert_eq!(Addr(0, v6, 1).to_string(), "?:1");
        assert_eq!(Argv(b"ls\0-l\0/tmp\0").to_string(), "ls -l /tmp");
        assert_eq!(Lossy(b"a\xffb").to_string(), "a\\xffb");
    }

    #[test]
    fn wall_times_out_of_range_show_raw_ns() {
        assert_eq!(
            WallTime(1_700_000_000_123_456_789).to_string(),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            WallTime(i128::MAX).to_string(),
            format!("{}ns(out-of-range)", i128::MAX)
        );
    }

    #[test]
    fn loss_lines_keep_their_format() {
        let l = Loss {
            stream: 0,
            cpu: u32::MAX,
            kind: bpf::Kind::FileOpen as u16,
            reason: 999,
            count: 5,
            start_ns: 900,
            end_ns: 1_002,
        };
        let mut out = Vec::new();
        write_loss(&mut out, &l, 0).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01T00:00:00.000001002Z LOSS stream 0 cpu 4294967295: 5 file.open events \
             lost (reason_999) since 1970-01-01T00:00:00.000000900Z\n"
        );
    }
}
