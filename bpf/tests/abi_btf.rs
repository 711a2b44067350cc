//! Holds the Rust ABI mirror (`bpf/src/abi.rs`) against the BTF that clang wrote into
//! the compiled object: every struct's size, every field's name and offset, in order,
//! and every kind and category id. Needs no privileges.

use std::collections::HashMap;
use std::mem::offset_of;

use bpf::abi::*;
use bpf::{Category, Kind, OBJECT};
use object::{Object, ObjectSection};

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

#[derive(Debug)]
struct Member {
    name: String,
    bit_offset: u32,
}

#[derive(Debug, Default)]
struct Btf {
    structs: HashMap<String, (u32, Vec<Member>)>,
    enums: HashMap<String, Vec<(String, i64)>>,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

/// A minimal BTF reader: named structs (size, members) and named enums.
fn parse_btf(data: &[u8]) -> Btf {
    assert_eq!(u16::from_le_bytes([data[0], data[1]]), 0xeb9f, "BTF magic");
    let hdr_len = u32_at(data, 4) as usize;
    let type_off = u32_at(data, 8) as usize;
    let type_len = u32_at(data, 12) as usize;
    let str_off = u32_at(data, 16) as usize;
    let types = &data[hdr_len + type_off..hdr_len + type_off + type_len];
    let strs = &data[hdr_len + str_off..];
    let name = |off: u32| -> String {
        let s = &strs[off as usize..];
        let end = s.iter().position(|&c| c == 0).expect("NUL-terminated name");
        String::from_utf8(s[..end].to_vec()).expect("utf8 name")
    };
    let mut btf = Btf::default();
    let mut pos = 0;
    while pos < types.len() {
        let name_off = u32_at(types, pos);
        let info = u32_at(types, pos + 4);
        let size = u32_at(types, pos + 8);
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kflag = info >> 31 == 1;
        pos += 12;
        match kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => pos += 4,
            KIND_ARRAY => pos += 12,
            KIND_STRUCT | KIND_UNION => {
                let mut members = Vec::with_capacity(vlen);
                for i in 0..vlen {
                    let m = pos + i * 12;
                    let off = u32_at(types, m + 8);
                    members.push(Member {
                        name: name(u32_at(types, m)),
                        bit_offset: if kflag { off & 0xff_ffff } else { off },
                    });
                }
                pos += vlen * 12;
                if kind == KIND_STRUCT && name_off != 0 {
                    btf.structs.insert(name(name_off), (size, members));
                }
            }
            KIND_ENUM => {
                let vals = (0..vlen)
                    .map(|i| {
                        let m = pos + i * 8;
                        (name(u32_at(types, m)), u32_at(types, m + 4) as i32 as i64)
                    })
                    .collect();
                pos += vlen * 8;
                if name_off != 0 {
                    btf.enums.insert(name(name_off), vals);
                }
            }
            KIND_FUNC_PROTO => pos += vlen * 8,
            KIND_DATASEC | KIND_ENUM64 => pos += vlen * 12,
            _ => {}
        }
    }
    btf
}

fn object_btf() -> Btf {
    let file = object::File::parse(OBJECT).expect("collector.bpf.o is an ELF object");
    let section = file.section_by_name(".BTF").expect(".BTF section");
    parse_btf(section.data().expect(".BTF data"))
}

/// Checks C struct `c_name` against Rust type `$t`: size, then each field in order.
macro_rules! check_struct {
    ($btf:expr, $c_name:expr, $t:ty, [$($f:ident),* $(,)?]) => {{
        let (size, members) = $btf
            .structs
            .get($c_name)
            .unwrap_or_else(|| panic!("struct {} missing from BTF", $c_name));
        assert_eq!(*size as usize, size_of::<$t>(), "size of struct {}", $c_name);
        let rust: &[(&str, usize)] = &[$((stringify!($f), offset_of!($t, $f))),*];
        let c: Vec<(&str, usize)> = members
            .iter()
            .map(|m| (m.name.as_str(), (m.bit_offset / 8) as usize))
            .collect();
        assert_eq!(c, rust, "fields (name, byte offset) of struct {}", $c_name);
    }};
}

#[test]
fn every_record_layout_matches_btf() {
    let btf = object_btf();
    check_struct!(
        btf,
        "event_header",
        EventHeader,
        [
            ts_ns, cgroup_id, kind, flags, len, cpu, pid, tid, uid, gid, weight, comm
        ]
    );
    check_struct!(
        btf,
        "process_exec",
        ProcessExec,
        [
            ppid,
            euid,
            egid,
            old_tid,
            filename_len,
            argv_len,
            argc,
            secure,
            filename,
            argv,
            exe_len,
            _pad1,
            exe,
            cwd_len,
            _pad2,
            cwd
        ]
    );
    check_struct!(
        btf,
        "process_fork",
        ProcessFork,
        [
            parent_pid, parent_tid, child_pid, child_tid, is_thread, _pad0
        ]
    );
    check_struct!(
        btf,
        "process_exit",
        ProcessExit,
        [exit_code, signal, core_dumped, _pad0, lifetime_ns]
    );
    check_struct!(
        btf,
        "file_op",
        FileOp,
        [
            ret, latency_ns, dirfd, flags, mode, syscall_nr, path_len, _pad0, path
        ]
    );
    check_struct!(
        btf,
        "file_rename",
        FileRename,
        [
            ret,
            latency_ns,
            old_dirfd,
            new_dirfd,
            flags,
            syscall_nr,
            old_path_len,
            new_path_len,
            old_path,
            new_path
        ]
    );
    check_struct!(
        btf,
        "tcp_sock_event",
        TcpSockEvent,
        [
            sock_cookie,
            family,
            sport,
            dport,
            _pad0,
            saddr,
            daddr,
            old_state,
            new_state,
            reason,
            _pad1
        ]
    );
    check_struct!(
        btf,
        "packet_drop",
        PacketDrop,
        [
            location,
            reason,
            ifindex,
            protocol,
            family,
            l4_protocol,
            _pad0,
            sport,
            dport,
            _pad1,
            saddr,
            daddr
        ]
    );
    check_struct!(
        btf,
        "cred_change",
        CredChange,
        [ret, syscall_nr, args, new_uid, new_euid, new_gid, new_egid]
    );
    check_struct!(
        btf,
        "ptrace_event",
        PtraceEvent,
        [ret, request, target_pid, _pad0, addr, data]
    );
    check_struct!(
        btf,
        "capability_event",
        CapabilityEvent,
        [cap, ret, euid, _pad0]
    );
    check_struct!(
        btf,
        "module_event",
        ModuleEvent,
        [ret, syscall_nr, fd, flags, text_len, text]
    );
    check_struct!(
        btf,
        "bpf_call",
        BpfCall,
        [ret, cmd, attr_type, attr_size, _pad0]
    );
    check_struct!(
        btf,
        "mount_event",
        MountEvent,
        [
            ret, flags, syscall_nr, source_len, target_len, fstype_len, source, target, fstype
        ]
    );
    check_struct!(
        btf,
        "signal_event",
        SignalEvent,
        [
            sig,
            result,
            code,
            target_pid,
            target_tid,
            group,
            target_comm
        ]
    );
    check_struct!(
        btf,
        "cgroup_event",
        CgroupEvent,
        [
            cgroup_id,
            level,
            hierarchy_id,
            target_pid,
            target_tid,
            threadgroup,
            path_len,
            path
        ]
    );
    check_struct!(
        btf,
        "oom_kill",
        OomKill,
        [
            victim_pid,
            victim_uid,
            oom_score_adj,
            _pad0,
            total_vm_pages,
            victim_comm
        ]
    );
    check_struct!(
        btf,
        "direct_reclaim",
        DirectReclaim,
        [duration_ns, nr_reclaimed, order, gfp_flags]
    );
    check_struct!(btf, "page_fault", PageFault, [address, ip, error_code]);
    check_struct!(
        btf,
        "syscall_event",
        SyscallEvent,
        [latency_ns, ret, args, id, _pad0]
    );
    check_struct!(
        btf,
        "runq_wait",
        RunqWait,
        [wait_ns, prev_pid, prev_tgid, prev_comm]
    );
    check_struct!(btf, "runq_hist", RunqHist, [slots, count, sum_ns, _pad0]);
    check_struct!(
        btf,
        "perf_counters",
        PerfCounters,
        [
            cgroup_full,
            no_storage,
            io_untracked,
            io_hist_full,
            flows_full,
            tcp_untracked,
            tasks_full,
            _pad0
        ]
    );
    check_struct!(
        btf,
        "task_sched",
        TaskSched,
        [switches, involuntary, offcpu_ns, runq_ns, comm]
    );
    check_struct!(
        btf,
        "flow_key",
        FlowKey,
        [tgid, family, protocol, sport, dport, _pad0, saddr, daddr]
    );
    check_struct!(
        btf,
        "flow_value",
        FlowValue,
        [bytes_sent, bytes_received, sends, receives, comm]
    );
    check_struct!(
        btf,
        "tcp_life",
        TcpLife,
        [
            duration_ns,
            bytes_sent,
            bytes_received,
            sock_cookie,
            srtt_us,
            family,
            sport,
            dport,
            _pad0,
            _pad1,
            saddr,
            daddr
        ]
    );
    check_struct!(btf, "io_key", IoKey, [dev, op]);
    check_struct!(btf, "io_hist", IoHist, [slots, count, sum_ns, bytes, disk]);
    check_struct!(
        btf,
        "io_slow",
        IoSlow,
        [latency_ns, queued_ns, sector, bytes, dev, op, error, disk]
    );
    check_struct!(
        btf,
        "kind_counters",
        KindCounters,
        [
            produced,
            ring_full,
            filtered,
            rate_limited,
            unpaired,
            sampled,
            sample_seq,
            _pad0
        ]
    );
    check_struct!(
        btf,
        "collector_config",
        CollectorConfigRaw,
        [
            self_tgid,
            categories,
            tgid_filter,
            cgroup_filter,
            follow_children,
            syscall_all,
            wakeup_bytes,
            syscall_enter_only,
            syscall_events,
            _pad0,
            rate_per_sec,
            burst,
            runq_slow_ns,
            io_slow_ns
        ]
    );
}

#[test]
fn every_ring_record_is_header_then_payload_of_the_kind_size() {
    let btf = object_btf();
    let records = [
        ("rec_process_exec", Kind::ProcessExec),
        ("rec_process_fork", Kind::ProcessFork),
        ("rec_process_exit", Kind::ProcessExit),
        ("rec_file_op", Kind::FileOpen),
        ("rec_file_rename", Kind::FileRename),
        ("rec_tcp_sock_event", Kind::NetTcpConnect),
        ("rec_packet_drop", Kind::NetPacketDrop),
        ("rec_cred_change", Kind::SecuritySetuid),
        ("rec_ptrace_event", Kind::SecurityPtrace),
        ("rec_capability_event", Kind::SecurityCapability),
        ("rec_module_event", Kind::SecurityModuleLoad),
        ("rec_bpf_call", Kind::SecurityBpf),
        ("rec_mount_event", Kind::SecurityMount),
        ("rec_signal_event", Kind::SecuritySignal),
        ("rec_cgroup_event", Kind::ContainerCgroupMkdir),
        ("rec_oom_kill", Kind::MemoryOomKill),
        ("rec_direct_reclaim", Kind::MemoryDirectReclaim),
        ("rec_page_fault", Kind::MemoryPageFault),
        ("rec_syscall_event", Kind::Syscall),
        ("rec_runq_wait", Kind::PerfRunqWait),
        ("rec_io_slow", Kind::PerfIoSlow),
        ("rec_tcp_life", Kind::PerfTcpLife),
    ];
    let mut seen = std::collections::HashSet::new();
    for (name, kind) in records {
        let (size, members) = &btf.structs[name];
        assert_eq!(
            *size as usize,
            kind.record_len(),
            "{name} size vs {}",
            kind.name()
        );
        assert_eq!(members.len(), 2, "{name}");
        assert_eq!((members[0].name.as_str(), members[0].bit_offset), ("h", 0));
        assert_eq!(
            (members[1].name.as_str(), members[1].bit_offset),
            ("p", 64 * 8)
        );
        seen.insert(kind.record_len());
    }
    // Every kind's record length is one of the checked records.
    for &k in Kind::ALL {
        assert!(
            seen.contains(&k.record_len()),
            "{} has an unchecked record size",
            k.name()
        );
    }
}

/// `EK_PROCESS_EXEC` -> `process.exec`, `EK_NET_TCP_CONNECT` -> `net.tcp_connect`.
fn dotted(c_name: &str) -> String {
    let lower = c_name.trim_start_matches("EK_").to_ascii_lowercase();
    let (cat, action) = lower.split_once('_').expect("category_action");
    format!("{cat}.{action}")
}

#[test]
fn kind_and_category_ids_match_the_header() {
    let btf = object_btf();
    let kinds: Vec<(String, i64)> = btf.enums["event_kind"]
        .iter()
        .filter(|(n, _)| n != "EK_MAX")
        .map(|(n, v)| (dotted(n), *v))
        .collect();
    let rust: Vec<(String, i64)> = Kind::ALL
        .iter()
        .map(|k| (k.name().to_string(), *k as u16 as i64))
        .collect();
    assert_eq!(kinds, rust);
    let max = btf.enums["event_kind"]
        .iter()
        .find(|(n, _)| n == "EK_MAX")
        .expect("EK_MAX");
    assert_eq!(max.1 as usize, KIND_MAX);

    let cats: Vec<(String, i64)> = btf.enums["event_category"]
        .iter()
        .filter(|(n, _)| n != "CAT_MAX")
        .map(|(n, v)| (n.trim_start_matches("CAT_").to_ascii_lowercase(), *v))
        .collect();
    let rust: Vec<(String, i64)> = Category::ALL
        .iter()
        .map(|c| (c.name().to_string(), *c as u32 as i64))
        .collect();
    assert_eq!(cats, rust);
}
