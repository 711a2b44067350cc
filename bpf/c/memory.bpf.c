/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* memory.oom_kill, memory.direct_reclaim (begin/end paired by tid), memory.page_fault. */
#include "common.h"

struct reclaim_start {
	__u64 ts;
	__u32 order;
	__u32 gfp_flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct reclaim_start);
} reclaim_pending SEC(".maps");

/* The victim's record; `task` NULL when only its pid is known (`pid`). */
static __always_inline int emit_oom_kill(struct task_struct *task, __u32 pid, __u32 uid)
{
	void *rb;
	__u32 w = 1;

	if (!category_on(CAT_MEMORY) || !admit(EK_MEMORY_OOM_KILL, CAT_MEMORY, &w))
		return 0;
	struct rec_oom_kill *e = RESERVE(rb, struct rec_oom_kill, EK_MEMORY_OOM_KILL, w);
	if (!e)
		return 0;
	e->p.victim_pid = pid;
	e->p.victim_uid = uid;
	if (task) {
		e->p.victim_pid = task->tgid;
		e->p.oom_score_adj = task->signal->oom_score_adj;
		struct mm_struct *mm = task->mm;
		if (mm)
			e->p.total_vm_pages = mm->total_vm;
		bpf_probe_read_kernel(e->p.victim_comm, COMM_LEN, task->comm);
	}
	submit(rb, e, sizeof(*e));
	return 0;
}

/* oom:mark_victim(task, uid): 6.8 and later. */
SEC("tp_btf/mark_victim")
int handle_mark_victim(__u64 *ctx)
{
	return emit_oom_kill((struct task_struct *)ctx[0], 0, (__u32)ctx[1]);
}

/* Where mark_victim has only the pid: the victim chosen, on entry to oom_kill_process. */
SEC("fentry/oom_kill_process")
int handle_oom_kill_process(__u64 *ctx)
{
	struct oom_control *oc = (void *)ctx[0];
	struct task_struct *task = oc->chosen;
	if (!task)
		return 0;
	return emit_oom_kill(task, 0, task->cred->uid.val);
}

/* oom:mark_victim(pid) of older kernels, when oom_kill_process cannot be traced: the
 * pid only (uid, score and name zero). */
SEC("tp_btf/mark_victim")
int handle_mark_victim_pid(__u64 *ctx)
{
	return emit_oom_kill(NULL, (__u32)ctx[0], (__u32)-1);
}

SEC("tp_btf/mm_vmscan_direct_reclaim_begin")
int handle_reclaim_begin(__u64 *ctx)
{
	if (!category_on(CAT_MEMORY))
		return 0;
	struct reclaim_start s = {
		.ts = bpf_ktime_get_ns(),
		.order = (__u32)ctx[0],
		.gfp_flags = (__u32)ctx[1],
	};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_update_elem(&reclaim_pending, &tid, &s, BPF_ANY);
	return 0;
}

SEC("tp_btf/mm_vmscan_direct_reclaim_end")
int handle_reclaim_end(__u64 *ctx)
{
	__u64 nr_reclaimed = ctx[0];
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	void *rb;
	__u32 w = 1;

	if (!category_on(CAT_MEMORY))
		return 0;
	struct reclaim_start *p = bpf_map_lookup_elem(&reclaim_pending, &tid);
	if (!p) {
		if (!excluded())
			count(EK_MEMORY_DIRECT_RECLAIM, C_UNPAIRED);
		return 0;
	}
	struct reclaim_start s = *p;
	bpf_map_delete_elem(&reclaim_pending, &tid);
	if (!admit(EK_MEMORY_DIRECT_RECLAIM, CAT_MEMORY, &w))
		return 0;
	struct rec_direct_reclaim *e = RESERVE(rb, struct rec_direct_reclaim, EK_MEMORY_DIRECT_RECLAIM, w);
	if (!e)
		return 0;
	e->p.duration_ns = e->h.ts_ns - s.ts;
	e->p.nr_reclaimed = nr_reclaimed;
	e->p.order = s.order;
	e->p.gfp_flags = s.gfp_flags;
	submit(rb, e, sizeof(*e));
	return 0;
}

SEC("tp_btf/page_fault_user")
int handle_page_fault_user(__u64 *ctx)
{
	struct pt_regs *regs = (void *)ctx[1];
	void *rb;
	__u32 w = 1;

	if (!category_on(CAT_MEMORY) || !admit(EK_MEMORY_PAGE_FAULT, RL_PAGE_FAULT, &w))
		return 0;
	struct rec_page_fault *e = RESERVE(rb, struct rec_page_fault, EK_MEMORY_PAGE_FAULT, w);
	if (!e)
		return 0;
	e->p.address = ctx[0];
	e->p.ip = regs->ip;
	e->p.error_code = ctx[2];
	submit(rb, e, sizeof(*e));
	return 0;
}
