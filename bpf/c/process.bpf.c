/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* process.exec, process.fork, process.exit; and following children for the tgid filter. */
#include "common.h"
#include "path.bpf.h"

SEC("tp_btf/sched_process_exec")
int handle_exec(__u64 *ctx)
{
	struct task_struct *task = (void *)ctx[0];
	int old_pid = (int)ctx[1];
	struct linux_binprm *bprm = (void *)ctx[2];
	void *rb;
	__u32 w = 1;

	if (!category_on(CAT_PROCESS) || !admit(EK_PROCESS_EXEC, CAT_PROCESS, &w))
		return 0;
	struct rec_process_exec *e = RESERVE(rb, struct rec_process_exec, EK_PROCESS_EXEC, w);
	if (!e)
		return 0;

	e->p.ppid = task->real_parent->tgid;
	const struct cred *cred = task->cred;
	e->p.euid = cred->euid.val;
	e->p.egid = cred->egid.val;
	e->p.old_tid = old_pid;
	e->p.argc = bprm->argc;
	e->p.secure = CORE_BITFIELD(bprm, secureexec) ? 1 : 0;

	long n = bpf_probe_read_kernel_str(e->p.filename, PATH_MAX_LEN, bprm->filename);
	e->p.filename_len = str_len(n, PATH_MAX_LEN, &e->h.flags);

	/* The executable's absolute path: bprm->file is the file now executing (for a #!
	 * script, its interpreter, as /proc/PID/exe shows; the script is in `filename`). */
	__u64 dentry = 0, mnt = 0;
	if (file_path((__u64)bprm->file, &dentry, &mnt))
		e->p.exe_len = emit_abs_path(e->p.exe, dentry, mnt, &e->h.flags);

	/* The working directory, which exec keeps: walked here because user space cannot
	 * know it at the time (it may chdir, or be gone, before anyone looks). */
	e->p.cwd_len = emit_abs_path(e->p.cwd, 0, 0, &e->h.flags);

	struct mm_struct *mm = task->mm;
	unsigned long start = mm->arg_start, end = mm->arg_end;
	__u64 len = end > start ? end - start : 0;
	if (len > ARGV_MAX_LEN) {
		len = ARGV_MAX_LEN;
		e->h.flags |= EVF_TRUNCATED;
	}
	if (len && bpf_probe_read_user(e->p.argv, len, (void *)start) == 0)
		e->p.argv_len = len;

	submit(rb, e, sizeof(*e));
	return 0;
}

SEC("tp_btf/sched_process_fork")
int handle_fork(__u64 *ctx)
{
	struct task_struct *parent = (void *)ctx[0];
	struct task_struct *child = (void *)ctx[1];
	__u32 parent_tgid = parent->tgid;
	__u32 child_tgid = child->tgid;
	void *rb;
	__u32 w = 1;

	if (CONFIG.follow_children && CONFIG.tgid_filter == FILTER_INCLUDE && parent_tgid != child_tgid &&
	    bpf_map_lookup_elem(&tgid_filter, &parent_tgid)) {
		__u8 one = 1;
		bpf_map_update_elem(&tgid_filter, &child_tgid, &one, BPF_ANY);
	}

	if (!category_on(CAT_PROCESS) || !admit(EK_PROCESS_FORK, CAT_PROCESS, &w))
		return 0;
	struct rec_process_fork *e = RESERVE(rb, struct rec_process_fork, EK_PROCESS_FORK, w);
	if (!e)
		return 0;
	e->p.parent_pid = parent_tgid;
	e->p.parent_tid = parent->pid;
	e->p.child_pid = child_tgid;
	e->p.child_tid = child->pid;
	e->p.is_thread = parent_tgid == child_tgid;
	submit(rb, e, sizeof(*e));
	return 0;
}

static __always_inline int on_process_exit(struct task_struct *task)
{
	void *rb;
	__u32 w = 1;
	__u32 tgid = task->tgid;

	if (category_on(CAT_PROCESS) && admit(EK_PROCESS_EXIT, CAT_PROCESS, &w)) {
		struct rec_process_exit *e = RESERVE(rb, struct rec_process_exit, EK_PROCESS_EXIT, w);
		if (e) {
			int code = task->exit_code;
			e->p.exit_code = (code >> 8) & 0xff;
			e->p.signal = code & 0x7f;
			e->p.core_dumped = (code & 0x80) ? 1 : 0;
			e->p.lifetime_ns = e->h.ts_ns - task->start_time;
			submit(rb, e, sizeof(*e));
		}
	}

	/* A tgid that is gone must not match whoever reuses the number. */
	if (CONFIG.tgid_filter != FILTER_OFF)
		bpf_map_delete_elem(&tgid_filter, &tgid);
	return 0;
}

/* sched_process_exit(task, group_dead): 6.16 and later. */
SEC("tp_btf/sched_process_exit")
int handle_exit(__u64 *ctx)
{
	if (!(bool)ctx[1])
		return 0;
	return on_process_exit((struct task_struct *)ctx[0]);
}

/* sched_process_exit(task) of older kernels: the group is dead once its live count,
 * dropped before the tracepoint, is zero (two last threads exiting at once may both
 * see zero: then the exit is reported twice, never missed). */
SEC("tp_btf/sched_process_exit")
int handle_exit_task(__u64 *ctx)
{
	struct task_struct *task = (void *)ctx[0];
	if (task->signal->live.counter != 0)
		return 0;
	return on_process_exit(task);
}
