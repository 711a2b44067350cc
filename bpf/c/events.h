/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The event ABI: the one definition of every record the kernel side writes.
 *
 * Rules (checked by bpf/tests/abi_btf.rs against the BTF of the compiled object):
 *  - every record is `struct event_header` followed by one payload struct;
 *  - every struct size is a multiple of 8 and every padding byte is an explicit
 *    `_pad` field, zeroed before submit (the whole record is zeroed first);
 *  - strings are NUL-terminated inside fixed buffers and carry their length
 *    (bytes before the NUL) in a `*_len` field; the bytes after the NUL are zero;
 *  - kind ids are stable numbers: never renumber, never reuse a retired id.
 *
 * Rust mirror: bpf/src/abi.rs.
 */
#ifndef COLLECTOR_EVENTS_H
#define COLLECTOR_EVENTS_H

/* Bumped when any record layout changes. Stored in segment headers. */
#define ABI_VERSION 3

#define COMM_LEN 16
#define PATH_MAX_LEN 256
#define ARGV_MAX_LEN 512
#define MODULE_TEXT_LEN 64
#define MOUNT_SOURCE_LEN 128
#define MOUNT_FSTYPE_LEN 32

/* Kind ids. Dotted names (process.exec, ...) live in bpf/src/abi.rs and docs/events.md. */
enum event_kind {
	EK_PROCESS_EXEC = 1,
	EK_PROCESS_FORK = 2,
	EK_PROCESS_EXIT = 3,

	EK_FILE_OPEN = 10,
	EK_FILE_UNLINK = 11,
	EK_FILE_RENAME = 12,
	EK_FILE_CHMOD = 13,

	EK_NET_TCP_CONNECT = 20,
	EK_NET_TCP_ACCEPT = 21,
	EK_NET_TCP_ESTABLISHED = 22,
	EK_NET_TCP_CLOSE = 23,
	EK_NET_TCP_RETRANSMIT = 24,
	EK_NET_TCP_RESET_SENT = 25,
	EK_NET_TCP_RESET_RECEIVED = 26,
	EK_NET_PACKET_DROP = 27,

	EK_SECURITY_SETUID = 30,
	EK_SECURITY_SETGID = 31,
	EK_SECURITY_PTRACE = 32,
	EK_SECURITY_CAPABILITY = 33,
	EK_SECURITY_MODULE_LOAD = 34,
	EK_SECURITY_MODULE_UNLOAD = 35,
	EK_SECURITY_BPF = 36,
	EK_SECURITY_MOUNT = 37,
	EK_SECURITY_UMOUNT = 38,
	EK_SECURITY_SIGNAL = 39,

	EK_CONTAINER_CGROUP_MKDIR = 40,
	EK_CONTAINER_CGROUP_RMDIR = 41,
	EK_CONTAINER_CGROUP_ATTACH = 42,

	EK_MEMORY_OOM_KILL = 50,
	EK_MEMORY_DIRECT_RECLAIM = 51,
	EK_MEMORY_PAGE_FAULT = 52,

	EK_SYSCALL_CALL = 60,

	/* 61 to 63 are taken by records the engine writes itself (window markers, process
	 * and container table updates); 0 is the storage's loss record. */

	EK_PERF_RUNQ_WAIT = 70,
	EK_PERF_IO_SLOW = 71,
	EK_PERF_TCP_LIFE = 72,

	/* 75 to 79 are the engine's own interval aggregates of the perf category
	 * (engine/src/perf/record.rs). */

	/* Size of the per-kind counter array; every kind id is below it. */
	EK_MAX = 80,
};

/* Categories: the unit of attach/detach and of the in-kernel rate limit. */
enum event_category {
	CAT_PROCESS = 0,
	CAT_FILE = 1,
	CAT_NET = 2,
	CAT_SECURITY = 3,
	CAT_CONTAINER = 4,
	CAT_MEMORY = 5,
	CAT_SYSCALL = 6,
	CAT_PERF = 7,
	/* Slots of the rate-limit arrays: the categories, then RL_PAGE_FAULT (common.h). */
	CAT_MAX = 9,
};

/* event_header.flags */
#define EVF_TRUNCATED 0x1 /* a string, path or argv was cut at its buffer bound */
#define EVF_NO_RESULT 0x2 /* recorded at sys_enter only: ret and latency_ns are not known */

/* Common header, 64 bytes. `len` is the total record length (header + payload). */
struct event_header {
	__u64 ts_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cgroup_id; /* cgroup v2 id of the current task */
	__u16 kind; /* enum event_kind */
	__u16 flags; /* EVF_* */
	__u32 len;
	__u32 cpu;
	__u32 pid; /* thread group id (user-space "pid") */
	__u32 tid; /* thread id */
	__u32 uid; /* real uid */
	__u32 gid; /* real gid */
	__u32 weight; /* the kernel's 1-in-N for this record (sampled in the kernel); 0 or 1: not */
	char comm[COMM_LEN];
};

/* process.exec: sched_process_exec */
struct process_exec {
	__u32 ppid;
	__u32 euid;
	__u32 egid;
	__u32 old_tid; /* tid before exec (differs when a non-leader thread execs) */
	__u32 filename_len;
	__u32 argv_len; /* bytes in argv, arguments separated by NUL */
	__u32 argc;
	__u32 secure; /* 1: the kernel marked the exec as gaining privilege (AT_SECURE: a set-uid or
		       * set-gid image, or file capabilities raising the permitted set) */
	char filename[PATH_MAX_LEN]; /* as passed to exec (may be relative) */
	char argv[ARGV_MAX_LEN];
	__u32 exe_len;
	__u32 _pad1;
	char exe[PATH_MAX_LEN]; /* absolute path of the executable (bprm->file), see path.bpf.h */
	__u32 cwd_len;
	__u32 _pad2;
	char cwd[PATH_MAX_LEN]; /* absolute working directory at exec (fs->pwd), see path.bpf.h */
};

/* process.fork: sched_process_fork (processes and threads) */
struct process_fork {
	__u32 parent_pid;
	__u32 parent_tid;
	__u32 child_pid;
	__u32 child_tid;
	__u32 is_thread; /* 1 when the child shares the parent's thread group */
	__u32 _pad0;
};

/* process.exit: sched_process_exit, once per process (last thread) */
struct process_exit {
	__s32 exit_code; /* exit status (0..255) when exited normally */
	__u32 signal; /* killing signal, 0 when exited normally */
	__u32 core_dumped;
	__u32 _pad0;
	__u64 lifetime_ns; /* since the process started */
};

/* file.open, file.unlink, file.chmod: paired sys_enter/sys_exit.
 * `path` is absolute (resolved in the kernel, see path.bpf.h), EVF_TRUNCATED when cut. */
struct file_op {
	__s64 ret; /* fd for opens, 0 or -errno */
	__u64 latency_ns; /* sys_enter -> sys_exit */
	__s32 dirfd; /* AT_FDCWD (-100) when relative to cwd; the fd for fchmod */
	__u32 flags; /* open flags; unlinkat/fchmodat flags */
	__u32 mode; /* open mode; chmod mode */
	__u32 syscall_nr;
	__u32 path_len;
	__u32 _pad0;
	char path[PATH_MAX_LEN];
};

/* file.rename: paired sys_enter/sys_exit for rename, renameat, renameat2; both paths absolute */
struct file_rename {
	__s64 ret;
	__u64 latency_ns;
	__s32 old_dirfd;
	__s32 new_dirfd;
	__u32 flags;
	__u32 syscall_nr;
	__u32 old_path_len;
	__u32 new_path_len;
	char old_path[PATH_MAX_LEN];
	char new_path[PATH_MAX_LEN];
};

/* net.tcp_*: inet_sock_set_state, tcp_retransmit_skb, tcp_{send,receive}_reset */
struct tcp_sock_event {
	__u64 sock_cookie; /* stable id of the socket, 0 if the kernel never assigned one */
	__u16 family; /* AF_INET (2) or AF_INET6 (10) */
	__u16 sport; /* host byte order */
	__u16 dport; /* host byte order */
	__u16 _pad0;
	__u8 saddr[16]; /* IPv4 in the first 4 bytes, network order */
	__u8 daddr[16];
	__u32 old_state; /* TCP_* state, for state changes; current state otherwise */
	__u32 new_state;
	__u32 reason; /* tcp_send_reset: enum sk_rst_reason; else 0 */
	__u32 _pad1;
};

/* net.packet_drop: skb:kfree_skb with a drop reason (SKB_CONSUMED is not a drop) */
struct packet_drop {
	__u64 location; /* kernel address that dropped the packet */
	__u32 reason; /* enum skb_drop_reason */
	__u32 ifindex;
	__u16 protocol; /* ethertype, host byte order */
	__u16 family; /* AF_INET/AF_INET6 when the L3 header was parsed, else 0 */
	__u8 l4_protocol; /* IPPROTO_* */
	__u8 _pad0[3];
	__u16 sport; /* TCP/UDP ports, host order; 0 otherwise */
	__u16 dport;
	__u32 _pad1;
	__u8 saddr[16];
	__u8 daddr[16];
};

/* security.setuid, security.setgid: the set*id syscall family */
struct cred_change {
	__s64 ret;
	__u32 syscall_nr;
	__u32 args[3]; /* as passed; -1 (0xffffffff) means "unchanged" */
	__u32 new_uid; /* real/effective ids of the task after the call */
	__u32 new_euid;
	__u32 new_gid;
	__u32 new_egid;
};

/* security.ptrace */
struct ptrace_event {
	__s64 ret;
	__s64 request;
	__u32 target_pid;
	__u32 _pad0;
	__u64 addr;
	__u64 data;
};

/* security.capability: capability:cap_capable */
struct capability_event {
	__u32 cap; /* CAP_* number */
	__s32 ret; /* 0 allowed, -EPERM denied */
	__u32 euid; /* effective uid of the checked credentials */
	__u32 _pad0;
};

/* security.module_load (init_module, finit_module), security.module_unload (delete_module) */
struct module_event {
	__s64 ret;
	__u32 syscall_nr;
	__s32 fd; /* finit_module's fd, else -1 */
	__u32 flags;
	__u32 text_len;
	char text[MODULE_TEXT_LEN]; /* module parameters (load) or module name (unload) */
};

/* security.bpf: the bpf() syscall */
struct bpf_call {
	__s64 ret;
	__u32 cmd; /* enum bpf_cmd */
	__u32 attr_type; /* prog_type for BPF_PROG_LOAD, map_type for BPF_MAP_CREATE, else 0 */
	__u32 attr_size;
	__u32 _pad0;
};

/* security.mount, security.umount */
struct mount_event {
	__s64 ret;
	__u64 flags;
	__u32 syscall_nr;
	__u32 source_len;
	__u32 target_len;
	__u32 fstype_len;
	char source[MOUNT_SOURCE_LEN];
	char target[PATH_MAX_LEN];
	char fstype[MOUNT_FSTYPE_LEN];
};

/* security.signal: signal:signal_generate */
struct signal_event {
	__u32 sig;
	__s32 result; /* TRACE_SIGNAL_*: 0 delivered, 1 ignored, 2 already pending, ... */
	__s32 code; /* si_code */
	__u32 target_pid;
	__u32 target_tid;
	__u32 group; /* 1 when sent to the whole thread group */
	char target_comm[COMM_LEN];
};

/* container.cgroup_mkdir, container.cgroup_rmdir, container.cgroup_attach */
struct cgroup_event {
	__u64 cgroup_id; /* id of the cgroup created, removed or attached to */
	__u32 level; /* depth below the hierarchy root */
	__u32 hierarchy_id;
	__u32 target_pid; /* cgroup_attach: the moved task; else 0 */
	__u32 target_tid;
	__u32 threadgroup; /* cgroup_attach: whole thread group moved */
	__u32 path_len;
	char path[PATH_MAX_LEN];
};

/* perf.runq_wait: a task that waited longer than CONFIG.runq_slow_ns to run after it became
 * runnable (sched_wakeup/sched_wakeup_new, or preempted while runnable, to sched_switch).
 * The header is the waiting task's, on the CPU it then ran on. */
struct runq_wait {
	__u64 wait_ns;
	__u32 prev_pid; /* the task it took the CPU from (thread id; 0: the idle task) */
	__u32 prev_tgid;
	char prev_comm[COMM_LEN];
};

/* Log2 buckets of microseconds in the perf category's histograms: slot 0 holds 0 and 1 us,
 * slot k (k >= 1) holds [2^k, 2^(k+1)) us, the last slot everything above. */
#define RUNQ_SLOTS 27

/* A cumulative run-queue latency histogram (maps runq_cpu and runq_cgroup). */
struct runq_hist {
	__u64 slots[RUNQ_SLOTS];
	__u64 count;
	__u64 sum_ns;
	__u64 _pad0;
};

/* The perf category's own counters (map perf_counters, per CPU). */
struct perf_counters {
	__u64 cgroup_full; /* waits not counted per cgroup: runq_cgroup had no room */
	__u64 no_storage; /* waits not measured: no task storage for the task */
	__u64 io_untracked; /* block requests not timed: io_start had no room */
	__u64 io_hist_full; /* completions not counted per device: io_hist had no room */
	__u64 flows_full; /* sends/receives not counted per flow: net_flows had no room */
	__u64 tcp_untracked; /* TCP connections not timed: tcp_birth had no room */
	__u64 tasks_full; /* switches not counted per process: task_sched had no room */
	__u64 _pad0;
};

/* A process's scheduling, cumulative, on one CPU (map task_sched, per CPU, by tgid). */
struct task_sched {
	__u64 switches; /* voluntary: it left the CPU blocked (sleep, I/O, lock) */
	__u64 involuntary; /* preempted while still runnable */
	__u64 offcpu_ns; /* its threads' time off a CPU, summed: blocked and waiting */
	__u64 runq_ns; /* of which runnable, waiting for a CPU */
	char comm[COMM_LEN]; /* the thread group leader's */
};

/* A flow of one process (map net_flows' key): its socket's addresses and ports. */
struct flow_key {
	__u32 tgid;
	__u16 family;
	__u16 protocol; /* IPPROTO_TCP or IPPROTO_UDP */
	__u16 sport;
	__u16 dport; /* 0 for an unconnected UDP socket */
	__u32 _pad0;
	__u8 saddr[16];
	__u8 daddr[16];
};

/* Cumulative traffic of a flow (map net_flows' value). */
struct flow_value {
	__u64 bytes_sent;
	__u64 bytes_received;
	__u64 sends;
	__u64 receives;
	char comm[COMM_LEN]; /* of the process when the flow was first seen */
};

/* perf.tcp_life: a TCP connection closed (tcplife). The header's identity is the process
 * that opened it (connect) or first sent or received on it; `ts` is the close. */
struct tcp_life {
	__u64 duration_ns; /* first state change seen (SYN_SENT, SYN_RECV, ESTABLISHED) to CLOSE */
	__u64 bytes_sent; /* tcp_sock.bytes_acked */
	__u64 bytes_received; /* tcp_sock.bytes_received */
	__u64 sock_cookie;
	__u32 srtt_us; /* smoothed round-trip time at close */
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u16 _pad0;
	__u32 _pad1;
	__u8 saddr[16];
	__u8 daddr[16];
};

/* A block device and operation (map io_hist's key). */
struct io_key {
	__u32 dev; /* the kernel's dev_t of the disk: major << 20 | first minor */
	__u32 op; /* REQ_OP_*: 0 read, 1 write, 2 flush, 3 discard, ... */
};

/* Cumulative block I/O latency (issue to completion) of one device and operation. */
struct io_hist {
	__u64 slots[RUNQ_SLOTS];
	__u64 count;
	__u64 sum_ns;
	__u64 bytes;
	char disk[32]; /* the disk's name (vda, nvme0n1) */
};

/* perf.io_slow: a block request that took at least CONFIG.io_slow_ns from issue to
 * completion. The header's identity (pid, tid, uid, gid, comm, cgroup) is the task that
 * queued or issued it; `cpu` and `ts_ns` are the completion's. */
struct io_slow {
	__u64 latency_ns; /* issue to completion */
	__u64 queued_ns; /* insert to issue; 0 when issued without being queued */
	__u64 sector;
	__u32 bytes;
	__u32 dev;
	__u32 op;
	__s32 error; /* blk_status_t: 0 for success */
	char disk[32];
};

/* memory.oom_kill: oom:mark_victim */
struct oom_kill {
	__u32 victim_pid;
	__u32 victim_uid;
	__s32 oom_score_adj;
	__u32 _pad0;
	__u64 total_vm_pages;
	char victim_comm[COMM_LEN];
};

/* memory.direct_reclaim: vmscan:mm_vmscan_direct_reclaim_{begin,end}, emitted at end */
struct direct_reclaim {
	__u64 duration_ns;
	__u64 nr_reclaimed;
	__u32 order;
	__u32 gfp_flags;
};

/* memory.page_fault: exceptions:page_fault_user (rate-limited) */
struct page_fault {
	__u64 address;
	__u64 ip;
	__u64 error_code;
};

/* syscall: generic sys_enter/sys_exit pair */
struct syscall_event {
	__u64 latency_ns;
	__s64 ret;
	__u64 args[6];
	__u32 id;
	__u32 _pad0;
};

/* Per-CPU, per-kind counters (PERCPU_ARRAY `counters`, index = kind). */
struct kind_counters {
	__u64 produced; /* records offered to the ring (passed filters and rate limit) */
	__u64 ring_full; /* of those, dropped because the ring had no room */
	__u64 filtered; /* rejected by the tgid/cgroup/self filter */
	__u64 rate_limited; /* rejected by the per-CPU category token bucket */
	__u64 unpaired; /* sys_exit (or reclaim end) without its start: in flight at attach, or no storage */
	__u64 sampled; /* left out by the kernel's 1-in-N sampling (map sample_n) */
	__u64 sample_seq; /* candidates of this kind the sampler decided on (its hash input) */
	__u64 _pad0;
};

/* Load-time configuration, a .rodata global overridden by the loader. */
#define FILTER_OFF 0
#define FILTER_INCLUDE 1
#define FILTER_EXCLUDE 2

struct collector_config {
	__u32 self_tgid; /* always excluded */
	__u32 categories; /* bit per enum event_category */
	__u32 tgid_filter; /* FILTER_* over map tgid_filter */
	__u32 cgroup_filter; /* FILTER_* over map cgroup_filter */
	__u32 follow_children; /* forks of an included tgid are included too */
	__u32 syscall_all; /* 1: every syscall id; 0: only ids set in map syscall_ids */
	__u32 wakeup_bytes; /* wake the reader only when this much is pending; 0 = every record */
	__u32 syscall_enter_only; /* generic syscalls recorded at sys_enter, without result */
	__u32 syscall_events; /* 1: file/security calls come from the per-syscall tracepoints */
	__u32 _pad0;
	__u64 rate_per_sec[CAT_MAX]; /* per CPU; 0 = unlimited */
	__u64 burst[CAT_MAX];
	__u64 runq_slow_ns; /* perf.runq_wait for waits at least this long; 0: none */
	__u64 io_slow_ns; /* perf.io_slow for block requests at least this long; 0: none */
};

#endif
