/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The collector's BPF object: one compilation unit so that every program shares
 * the same maps and config. Each category lives in its own file.
 */
#include "common.h"
#include "process.bpf.c"
#include "file.bpf.c"
#include "security.bpf.c"
#include "syscalls.bpf.c"
#include "net.bpf.c"
#include "container.bpf.c"
#include "memory.bpf.c"
#include "perf.bpf.c"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/*
 * Every ABI type, reachable from one function signature so that clang emits it into
 * BTF: bpf/tests/abi_btf.rs checks the Rust mirror against these. Never called, never
 * loaded (the loader only takes functions that programs call).
 */
struct abi_types {
	struct event_header header;
	struct rec_process_exec process_exec;
	struct rec_process_fork process_fork;
	struct rec_process_exit process_exit;
	struct rec_file_op file_op;
	struct rec_file_rename file_rename;
	struct rec_tcp_sock_event tcp_sock_event;
	struct rec_packet_drop packet_drop;
	struct rec_cred_change cred_change;
	struct rec_ptrace_event ptrace_event;
	struct rec_capability_event capability_event;
	struct rec_module_event module_event;
	struct rec_bpf_call bpf_call;
	struct rec_mount_event mount_event;
	struct rec_signal_event signal_event;
	struct rec_cgroup_event cgroup_event;
	struct rec_oom_kill oom_kill;
	struct rec_direct_reclaim direct_reclaim;
	struct rec_page_fault page_fault;
	struct rec_syscall_event syscall_event;
	struct rec_runq_wait runq_wait;
	struct runq_hist runq_hist;
	struct perf_counters perf_counters;
	struct rec_io_slow io_slow;
	struct io_key io_key;
	struct io_hist io_hist;
	struct flow_key flow_key;
	struct flow_value flow_value;
	struct rec_tcp_life tcp_life;
	struct task_sched task_sched;
	struct kind_counters kind_counters;
	struct collector_config collector_config;
	enum event_kind event_kind;
	enum event_category event_category;
};

__attribute__((noinline)) int abi_anchor(struct abi_types *types)
{
	return types != NULL;
}
