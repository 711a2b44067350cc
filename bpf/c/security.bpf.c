/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * security.*: set*id, ptrace, module load/unload, bpf(), mount/umount (paired syscalls,
 * emitted from syscalls.bpf.c), capability checks and signals (their own tracepoints).
 */
#include "common.h"

static __always_inline void emit_cred_change(struct pending_call *c, long ret, __u32 kind)
{
	void *rb;
	struct rec_cred_change *e = RESERVE(rb, struct rec_cred_change, kind, c->weight);
	if (!e)
		return;
	e->p.ret = ret;
	e->p.syscall_nr = c->id;
	e->p.args[0] = c->args[0];
	switch (c->id) {
	case 113: /* setreuid(ruid, euid) */
	case 114: /* setregid */
		e->p.args[1] = c->args[1];
		e->p.args[2] = (__u32)-1;
		break;
	case 117: /* setresuid(ruid, euid, suid) */
	case 119: /* setresgid */
		e->p.args[1] = c->args[1];
		e->p.args[2] = c->args[2];
		break;
	default: /* setuid, setgid, setfsuid, setfsgid: one argument */
		e->p.args[1] = (__u32)-1;
		e->p.args[2] = (__u32)-1;
	}
	struct task_struct *task = bpf_get_current_task_btf();
	const struct cred *cred = task->cred;
	e->p.new_uid = cred->uid.val;
	e->p.new_euid = cred->euid.val;
	e->p.new_gid = cred->gid.val;
	e->p.new_egid = cred->egid.val;
	submit(rb, e, sizeof(*e));
}

static __always_inline void emit_ptrace(struct pending_call *c, long ret)
{
	void *rb;
	struct rec_ptrace_event *e = RESERVE(rb, struct rec_ptrace_event, EK_SECURITY_PTRACE, c->weight);
	if (!e)
		return;
	e->p.ret = ret;
	e->p.request = c->args[0];
	e->p.target_pid = c->args[1];
	e->p.addr = c->args[2];
	e->p.data = c->args[3];
	submit(rb, e, sizeof(*e));
}

static __always_inline void emit_module(struct pending_call *c, long ret, __u32 kind)
{
	void *rb;
	struct rec_module_event *e = RESERVE(rb, struct rec_module_event, kind, c->weight);
	if (!e)
		return;
	e->p.ret = ret;
	e->p.syscall_nr = c->id;
	e->p.fd = -1;
	const void *text;
	switch (c->id) {
	case 175: /* init_module(image, len, params) */
		text = (void *)c->args[2];
		break;
	case 313: /* finit_module(fd, params, flags) */
		e->p.fd = c->args[0];
		text = (void *)c->args[1];
		e->p.flags = c->args[2];
		break;
	default: /* delete_module(name, flags) */
		text = (void *)c->args[0];
		e->p.flags = c->args[1];
	}
	long n = bpf_probe_read_user_str(e->p.text, MODULE_TEXT_LEN, text);
	e->p.text_len = str_len(n, MODULE_TEXT_LEN, &e->h.flags);
	submit(rb, e, sizeof(*e));
}

static __always_inline void emit_bpf_call(struct pending_call *c, long ret)
{
	void *rb;
	struct rec_bpf_call *e = RESERVE(rb, struct rec_bpf_call, EK_SECURITY_BPF, c->weight);
	if (!e)
		return;
	e->p.ret = ret;
	e->p.cmd = c->args[0];
	e->p.attr_size = c->args[2];
	/* BPF_MAP_CREATE (0) starts with map_type, BPF_PROG_LOAD (5) with prog_type. */
	if (e->p.cmd == 0 || e->p.cmd == 5) {
		__u32 t = 0;
		if (bpf_probe_read_user(&t, sizeof(t), (void *)c->args[1]) == 0)
			e->p.attr_type = t;
	}
	submit(rb, e, sizeof(*e));
}

static __always_inline void emit_mount(struct pending_call *c, long ret, __u32 kind)
{
	void *rb;
	struct rec_mount_event *e = RESERVE(rb, struct rec_mount_event, kind, c->weight);
	if (!e)
		return;
	e->p.ret = ret;
	e->p.syscall_nr = c->id;
	long n;
	if (kind == EK_SECURITY_MOUNT) { /* mount(source, target, fstype, flags, data) */
		n = bpf_probe_read_user_str(e->p.source, MOUNT_SOURCE_LEN, (void *)c->args[0]);
		e->p.source_len = str_len(n, MOUNT_SOURCE_LEN, &e->h.flags);
		n = bpf_probe_read_user_str(e->p.target, PATH_MAX_LEN, (void *)c->args[1]);
		e->p.target_len = str_len(n, PATH_MAX_LEN, &e->h.flags);
		n = bpf_probe_read_user_str(e->p.fstype, MOUNT_FSTYPE_LEN, (void *)c->args[2]);
		e->p.fstype_len = str_len(n, MOUNT_FSTYPE_LEN, &e->h.flags);
		e->p.flags = c->args[3];
	} else { /* umount2(target, flags) */
		n = bpf_probe_read_user_str(e->p.target, PATH_MAX_LEN, (void *)c->args[0]);
		e->p.target_len = str_len(n, PATH_MAX_LEN, &e->h.flags);
		e->p.flags = c->args[1];
	}
	submit(rb, e, sizeof(*e));
}

static __always_inline int emit_capability(const struct cred *cred, int cap, int ret)
{
	void *rb;
	__u32 w = 1;

	if (!category_on(CAT_SECURITY) || !admit(EK_SECURITY_CAPABILITY, CAT_SECURITY, &w))
		return 0;
	struct rec_capability_event *e = RESERVE(rb, struct rec_capability_event, EK_SECURITY_CAPABILITY, w);
	if (!e)
		return 0;
	e->p.cap = cap;
	e->p.ret = ret;
	e->p.euid = cred->euid.val;
	submit(rb, e, sizeof(*e));
	return 0;
}

/* capability:cap_capable(cred, target_ns, ns, cap, ret): 6.15 and later. */
SEC("tp_btf/cap_capable")
int handle_cap_capable(__u64 *ctx)
{
	return emit_capability((const struct cred *)ctx[0], (int)ctx[3], (int)ctx[4]);
}

/* The fallback where that tracepoint is missing: the return of cap_capable(cred,
 * targ_ns, cap, opts) or security_capable(cred, ns, cap, opts), the same four arguments
 * (the loader picks the function). */
SEC("fexit/cap_capable")
int handle_cap_capable_fexit(__u64 *ctx)
{
	return emit_capability((const struct cred *)ctx[0], (int)ctx[2], (int)ctx[4]);
}

SEC("tp_btf/signal_generate")
int handle_signal_generate(__u64 *ctx)
{
	int sig = (int)ctx[0];
	struct kernel_siginfo *info = (void *)ctx[1];
	struct task_struct *target = (void *)ctx[2];
	int group = (int)ctx[3];
	int result = (int)ctx[4];
	void *rb;
	__u32 w = 1;

	if (!category_on(CAT_SECURITY) || !admit(EK_SECURITY_SIGNAL, CAT_SECURITY, &w))
		return 0;
	struct rec_signal_event *e = RESERVE(rb, struct rec_signal_event, EK_SECURITY_SIGNAL, w);
	if (!e)
		return 0;
	e->p.sig = sig;
	e->p.result = result;
	/* SEND_SIG_NOINFO (0) and SEND_SIG_PRIV (1) are not pointers. */
	if ((unsigned long)info > 1) {
		/* Newer verifiers type `info` as a scalar (it may encode an error): read it
		 * through the helper, never by dereference. */
		int code = 0;
		if (bpf_probe_read_kernel(&code, sizeof(code), &info->si_code) == 0)
			e->p.code = code;
	}
	e->p.target_pid = target->tgid;
	e->p.target_tid = target->pid;
	e->p.group = group != 0;
	bpf_probe_read_kernel(e->p.target_comm, COMM_LEN, target->comm);
	submit(rb, e, sizeof(*e));
	return 0;
}
