/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * sys_enter/sys_exit: the one pair of programs behind file.*, the syscall-based
 * security.* kinds, and the generic `syscall` kind. At enter the call is classified,
 * filtered and parked in the task's own storage; at exit it is paired and emitted
 * with its result and latency. Syscall numbers are x86_64.
 *
 * Both programs run on every syscall of every task once attached, so the path for a
 * syscall nobody asked for is a switch on the id and nothing else.
 */
#include "common.h"

/* One slot per task (task local storage: no hashing, no eviction, freed with the
 * task). Bounded by the number of tasks; a task has at most one syscall in flight. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pending_call);
} pending SEC(".maps");

/* The file/security kind for syscall `id` when its category is on, else 0. */
static __always_inline __u32 classify(long id)
{
	__u32 kind = 0;
	switch (id) {
	case 2: case 85: case 257: case 437:
		kind = EK_FILE_OPEN;
		break;
	case 84: case 87: case 263:
		kind = EK_FILE_UNLINK;
		break;
	case 82: case 264: case 316:
		kind = EK_FILE_RENAME;
		break;
	case 90: case 91: case 268: case 452:
		kind = EK_FILE_CHMOD;
		break;
	case 105: case 113: case 117: case 122:
		kind = EK_SECURITY_SETUID;
		break;
	case 106: case 114: case 119: case 123:
		kind = EK_SECURITY_SETGID;
		break;
	case 101:
		kind = EK_SECURITY_PTRACE;
		break;
	case 175: case 313:
		kind = EK_SECURITY_MODULE_LOAD;
		break;
	case 176:
		kind = EK_SECURITY_MODULE_UNLOAD;
		break;
	case 321:
		kind = EK_SECURITY_BPF;
		break;
	case 165:
		kind = EK_SECURITY_MOUNT;
		break;
	case 166:
		kind = EK_SECURITY_UMOUNT;
		break;
	default:
		return 0;
	}
	return category_on(KIND_CATEGORY(kind)) ? kind : 0;
}

static __always_inline bool generic_wanted(long id)
{
	if (!category_on(CAT_SYSCALL) || id < 0 || id >= SYSCALL_ID_MAX)
		return false;
	/* exit and exit_group never return: process.exit covers them. */
	if (id == 60 || id == 231)
		return false;
	if (CONFIG.syscall_all)
		return true;
	__u32 key = id;
	__u8 *on = bpf_map_lookup_elem(&syscall_ids, &key);
	return on && *on;
}

/* A generic syscall record from sys_enter alone (CONFIG.syscall_enter_only): no result,
 * no latency, and no sys_exit program at all when nothing else needs it. */
static __always_inline void emit_syscall_enter(const __u64 *args, long id, __u32 w)
{
	void *rb;
	/* Every byte written below: no zeroing. */
	struct rec_syscall_event *e = RESERVE_(rb, struct rec_syscall_event, EK_SYSCALL_CALL, w, 0);
	if (!e)
		return;
	e->h.flags = EVF_NO_RESULT;
	e->p.latency_ns = 0;
	e->p.ret = 0;
	e->p.id = id;
	e->p._pad0 = 0;
	for (int i = 0; i < 6; i++)
		e->p.args[i] = args[i];
	submit(rb, e, sizeof(*e));
}

/*
 * The enter side, shared by the raw sys_enter program and the per-syscall ones: filters and
 * the kernel's sampling decide here, so a call that is left out costs no task storage and
 * no exit work; the rate limit is applied at emit time. `storage` is the task-storage map
 * the matching exit side reads.
 */
static __always_inline int on_enter(void *storage, long id, __u32 kind, bool generic, const __u64 *args)
{
	__u32 kw = 1, gw = 1;
	if (kind && !pass_filters(kind))
		kind = 0;
	if (kind) {
		kw = sample(kind);
		if (!kw)
			kind = 0;
	}
	if (generic && !pass_filters(EK_SYSCALL_CALL))
		generic = false;
	if (generic) {
		gw = sample(EK_SYSCALL_CALL);
		if (!gw)
			generic = false;
	}
	if (generic && CONFIG.syscall_enter_only) {
		if (rate_ok(CAT_SYSCALL, EK_SYSCALL_CALL))
			emit_syscall_enter(args, id, gw);
		generic = false;
	}
	if (!kind && !generic)
		return 0;

	struct pending_call *call =
		bpf_task_storage_get(storage, bpf_get_current_task_btf(), NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!call)
		return 0; /* out of memory or storage busy: shows up as unpaired at exit */
	call->ts = bpf_ktime_get_ns();
	call->id = id;
	call->kind = kind;
	call->generic = generic;
	call->weight = kw;
	call->generic_weight = gw;
	call->armed = 1;
	for (int i = 0; i < 6; i++)
		call->args[i] = args[i];
	return 0;
}

static __always_inline void emit_syscall(struct pending_call *c, long ret)
{
	void *rb;
	/* Every byte written below: no zeroing. */
	struct rec_syscall_event *e =
		RESERVE_(rb, struct rec_syscall_event, EK_SYSCALL_CALL, c->generic_weight, 0);
	if (!e)
		return;
	e->p.latency_ns = e->h.ts_ns - c->ts;
	e->p.ret = ret;
	e->p.id = c->id;
	e->p._pad0 = 0;
	for (int i = 0; i < 6; i++)
		e->p.args[i] = c->args[i];
	submit(rb, e, sizeof(*e));
}

/* The exit side: pairs the call parked by on_enter in `storage` and emits its records. */
static __always_inline int on_exit(void *storage, long id, long ret, __u32 kind, bool generic)
{
	struct pending_call *p = bpf_task_storage_get(storage, bpf_get_current_task_btf(), NULL, 0);
	if (!p || !p->armed || p->id != id) {
		/* Filtered or sampled out at enter (not armed), or a call we would have kept
		 * whose enter we did not see: in flight at attach, or no storage at enter. While
		 * the kernel samples a kind on this CPU, an unarmed exit of it is not counted
		 * (it is most likely a call the sampling left out). */
		bool kind_unpaired = kind && !sampling(kind);
		bool generic_unpaired = generic && !sampling(EK_SYSCALL_CALL);
		/* The sampling test first: under sampling (the common case for an unarmed exit)
		 * the filters are not evaluated at all. */
		if ((kind_unpaired || generic_unpaired) && !excluded()) {
			if (kind_unpaired)
				count(kind, C_UNPAIRED);
			if (generic_unpaired)
				count(EK_SYSCALL_CALL, C_UNPAIRED);
		}
		if (p)
			p->armed = 0;
		return 0;
	}
	struct pending_call c = *p;
	p->armed = 0;

	if (c.kind && rate_ok(KIND_CATEGORY(c.kind), c.kind)) {
		switch (c.kind) {
		case EK_FILE_OPEN:
		case EK_FILE_UNLINK:
		case EK_FILE_CHMOD:
			emit_file_op(&c, ret, c.kind);
			break;
		case EK_FILE_RENAME:
			emit_file_rename(&c, ret);
			break;
		case EK_SECURITY_SETUID:
		case EK_SECURITY_SETGID:
			emit_cred_change(&c, ret, c.kind);
			break;
		case EK_SECURITY_PTRACE:
			emit_ptrace(&c, ret);
			break;
		case EK_SECURITY_MODULE_LOAD:
		case EK_SECURITY_MODULE_UNLOAD:
			emit_module(&c, ret, c.kind);
			break;
		case EK_SECURITY_BPF:
			emit_bpf_call(&c, ret);
			break;
		case EK_SECURITY_MOUNT:
		case EK_SECURITY_UMOUNT:
			emit_mount(&c, ret, c.kind);
			break;
		}
	}
	if (c.generic && rate_ok(CAT_SYSCALL, EK_SYSCALL_CALL))
		emit_syscall(&c, ret);
	return 0;
}

/*
 * Raw sys_enter/sys_exit: every syscall of every task runs these once attached. They carry
 * the generic `syscall` kind, and the file/security kinds only when the per-syscall
 * tracepoints below are not in use (CONFIG.syscall_events = 0).
 */
SEC("tp_btf/sys_enter")
int handle_sys_enter(__u64 *ctx)
{
	struct pt_regs *regs = (void *)ctx[0];
	long id = (long)ctx[1];

	__u32 kind = CONFIG.syscall_events ? 0 : classify(id);
	bool generic = generic_wanted(id);
	if (!kind && !generic)
		return 0;
	__u64 args[6] = { regs->di, regs->si, regs->dx, regs->r10, regs->r8, regs->r9 };
	return on_enter(&pending, id, kind, generic, args);
}

SEC("tp_btf/sys_exit")
int handle_sys_exit(__u64 *ctx)
{
	struct pt_regs *regs = (void *)ctx[0];
	long ret = (long)ctx[1];
	long id = regs->orig_ax;

	__u32 kind = CONFIG.syscall_events ? 0 : classify(id);
	bool generic = generic_wanted(id) && !CONFIG.syscall_enter_only;
	if (!kind && !generic)
		return 0;
	return on_exit(&pending, id, ret, kind, generic);
}

/*
 * Per-syscall tracepoints (syscalls:sys_enter_<name>, sys_exit_<name>), attached to the
 * events of the calls the file and security kinds need: the kernel tests a bitmap per
 * syscall before it runs any program, so every other syscall costs the traced-entry path
 * and nothing more (the raw programs run on all of them). Records of these events: the
 * common fields, the syscall number, then the arguments the call declares (enter) or the
 * return value (exit).
 */
struct sc_enter_args {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__u64 args[6];
};

struct sc_exit_args {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__s64 ret;
};

/* Their own pairing slot: with the generic kind on, the raw programs pair the same call. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pending_call);
} pending_sc SEC(".maps");

/* The kernel refuses to attach a program that reads past the event's record, so there is
 * one enter program per argument count (the loader attaches each call to its own). */
#define SC_ENTER(n)                                                                    \
	SEC("tracepoint/syscalls/sys_enter")                                           \
	int handle_sc_enter##n(struct sc_enter_args *ctx)                              \
	{                                                                              \
		long id = ctx->nr;                                                     \
		__u32 kind = classify(id);                                             \
		if (!kind)                                                             \
			return 0;                                                      \
		__u64 args[6] = {};                                                    \
		for (int i = 0; i < (n); i++)                                          \
			args[i] = ctx->args[i];                                        \
		return on_enter(&pending_sc, id, kind, false, args);                   \
	}
SC_ENTER(1)
SC_ENTER(2)
SC_ENTER(3)
SC_ENTER(4)
SC_ENTER(5)

SEC("tracepoint/syscalls/sys_exit")
int handle_sc_exit(struct sc_exit_args *ctx)
{
	long id = ctx->nr;
	__u32 kind = classify(id);
	if (!kind)
		return 0;
	return on_exit(&pending_sc, id, ctx->ret, kind, false);
}
