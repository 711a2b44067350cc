/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Shared machinery of every program: maps, the load-time config, filters, the
 * per-CPU token buckets, counters, and reserve/submit on the per-CPU ring.
 */
#ifndef COLLECTOR_COMMON_H
#define COLLECTOR_COMMON_H

#include "kernel.h"
#include "events.h"

/* The category of a kind: kind ids are laid out in decades, one per category. */
#define KIND_CATEGORY(kind) ((kind) / 10)

/* Index of the page-fault token bucket; the other indices are enum event_category. */
#define RL_PAGE_FAULT 8

#define NSEC_PER_SEC 1000000000ULL
#define AT_FDCWD -100

/* Overridden by the loader (aya `override_global`), frozen before programs load. */
const volatile struct collector_config CONFIG = {};

/* One ring buffer per CPU. The loader sets max_entries to the number of possible CPUs
 * and creates the inner rings itself, with the configured size. */
struct ring_template {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096 * 64);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct ring_template);
} rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EK_MAX);
	__type(key, __u32);
	__type(value, struct kind_counters);
} counters SEC(".maps");

/* 1-in-N sampling per CPU and kind, decided here before any ring space is reserved. The
 * engine's sampler writes N (key: cpu * EK_MAX + kind) every sampling interval; 0 or 1 keeps
 * everything. The loader sets max_entries to possible CPUs x EK_MAX. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EK_MAX);
	__type(key, __u32);
	__type(value, __u32);
} sample_n SEC(".maps");

struct bucket {
	__u64 nanotokens; /* tokens * 1e9 */
	__u64 last_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CAT_MAX);
	__type(key, __u32);
	__type(value, struct bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} tgid_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} cgroup_filter SEC(".maps");

/* Syscall ids kept by the generic syscall category when CONFIG.syscall_all is 0. */
#define SYSCALL_ID_MAX 512
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SYSCALL_ID_MAX);
	__type(key, __u32);
	__type(value, __u8);
} syscall_ids SEC(".maps");

static __always_inline bool category_on(__u32 cat)
{
	return (CONFIG.categories >> cat) & 1;
}

static __always_inline void count(__u32 kind, __u32 field)
{
	__u32 key = kind;
	struct kind_counters *c = bpf_map_lookup_elem(&counters, &key);
	if (!c)
		return;
	/* Atomic: a program interrupted by another on the same CPU must not lose counts. */
	switch (field) {
	case 0:
		__sync_fetch_and_add(&c->produced, 1);
		break;
	case 1:
		__sync_fetch_and_add(&c->ring_full, 1);
		break;
	case 2:
		__sync_fetch_and_add(&c->filtered, 1);
		break;
	case 3:
		__sync_fetch_and_add(&c->rate_limited, 1);
		break;
	case 4:
		__sync_fetch_and_add(&c->unpaired, 1);
		break;
	case 5:
		__sync_fetch_and_add(&c->sampled, 1);
		break;
	}
}
#define C_PRODUCED 0
#define C_RING_FULL 1
#define C_FILTERED 2
#define C_RATE_LIMITED 3
#define C_UNPAIRED 4
#define C_SAMPLED 5

/* Self, tgid and cgroup filters on a task of thread group `tgid` in cgroup `cg_or_zero` (0:
 * the current task's, read only when the cgroup filter is on); true when it is excluded. */
static __always_inline bool excluded_ids(__u32 tgid, __u64 cg_or_zero)
{
	if (tgid == CONFIG.self_tgid)
		return true;
	if (CONFIG.tgid_filter != FILTER_OFF) {
		bool hit = bpf_map_lookup_elem(&tgid_filter, &tgid) != NULL;
		if (hit != (CONFIG.tgid_filter == FILTER_INCLUDE))
			return true;
	}
	if (CONFIG.cgroup_filter != FILTER_OFF) {
		__u64 cg = cg_or_zero ? cg_or_zero : bpf_get_current_cgroup_id();
		bool hit = bpf_map_lookup_elem(&cgroup_filter, &cg) != NULL;
		if (hit != (CONFIG.cgroup_filter == FILTER_INCLUDE))
			return true;
	}
	return false;
}

/* Self, tgid and cgroup filters on the current task; true when the task is excluded. */
static __always_inline bool excluded(void)
{
	return excluded_ids(bpf_get_current_pid_tgid() >> 32, 0);
}

/* The filters, counting a rejection against `kind`. */
static __always_inline bool pass_filters(__u32 kind)
{
	if (excluded()) {
		count(kind, C_FILTERED);
		return false;
	}
	return true;
}

/* Per-CPU token bucket for rate-limit slot `slot`. Counts a rejection. */
static __always_inline bool rate_ok(__u32 slot, __u32 kind)
{
	/* Hide what the compiler knows of `slot` so the bound check below stays in the
	 * code: the verifier does not track bounds through division. */
	asm volatile("" : "+r"(slot));
	if (slot >= CAT_MAX)
		return true;
	__u64 rate = CONFIG.rate_per_sec[slot];
	if (!rate)
		return true;
	__u32 key = slot;
	struct bucket *b = bpf_map_lookup_elem(&buckets, &key);
	if (!b)
		return true;
	__u64 now = bpf_ktime_get_ns();
	__u64 elapsed = now - b->last_ns;
	if (elapsed > NSEC_PER_SEC)
		elapsed = NSEC_PER_SEC;
	__u64 cap = CONFIG.burst[slot] * NSEC_PER_SEC;
	__u64 nt = b->nanotokens + elapsed * rate;
	if (nt > cap)
		nt = cap;
	b->last_ns = now;
	if (nt < NSEC_PER_SEC) {
		b->nanotokens = nt;
		count(kind, C_RATE_LIMITED);
		return false;
	}
	b->nanotokens = nt - NSEC_PER_SEC;
	return true;
}

/* splitmix64, as the engine's sampler (engine/src/sampler.rs) mixes. */
static __always_inline __u64 mix64(__u64 x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* The 1-in-N the engine set for `kind` on `cpu` (0 or 1: keep everything). */
static __always_inline __u32 sample_rate(__u32 cpu, __u32 kind)
{
	__u32 key = cpu * EK_MAX + kind;
	__u32 *np = bpf_map_lookup_elem(&sample_n, &key);
	return np ? *np : 1;
}

/*
 * The kernel's 1-in-N decision for `kind` on this CPU: the weight N when the record is kept
 * (1 when nothing is sampled), 0 when it is left out (counted in `sampled`). Deterministic:
 * a hash of the CPU's own sequence of candidates of this kind, so a periodic workload is not
 * aliased (a loop of three calls at N = 3 is not always the same call) and every candidate
 * has the same chance; the weights of the kept ones estimate the candidates without bias.
 */
static __always_inline __u32 sample(__u32 kind)
{
	/* Critical kinds are never sampled, whatever the map says. process.exit is critical
	 * when by a signal, which is not known yet: the engine samples the others itself. */
	if (KIND_CATEGORY(kind) == CAT_SECURITY || kind == EK_PROCESS_EXEC || kind == EK_PROCESS_EXIT ||
	    kind == EK_MEMORY_OOM_KILL)
		return 1;
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 n = sample_rate(cpu, kind);
	if (n <= 1)
		return 1;
	__u32 k = kind;
	struct kind_counters *c = bpf_map_lookup_elem(&counters, &k);
	if (!c)
		return 1;
	/* Not atomic: a nested program of the same kind may reuse a number, which changes
	 * which record is kept, not the odds or the counts. */
	__u64 seq = c->sample_seq++;
	if (mix64(seq ^ ((__u64)cpu << 32) ^ ((__u64)kind << 56)) % n == 0)
		return n;
	__sync_fetch_and_add(&c->sampled, 1);
	return 0;
}

/* Whether the kernel samples `kind` on this CPU now (its N is above 1). */
static __always_inline bool sampling(__u32 kind)
{
	return sample_rate(bpf_get_smp_processor_id(), kind) > 1;
}

/* Filters, sampling, then the rate limit: the gate every event goes through before reserve.
 * `*weight` is the record's 1-in-N (for RESERVE). Sampled-out events take no tokens. */
static __always_inline bool admit(__u32 kind, __u32 slot, __u32 *weight)
{
	if (!pass_filters(kind))
		return false;
	*weight = sample(kind);
	return *weight && rate_ok(slot, kind);
}

/* The header, read straight from the current task (loads through trusted BTF pointers,
 * no helper calls): what bpf_get_current_{pid_tgid,uid_gid,cgroup_id,comm} would return. */
static __always_inline void fill_header(struct event_header *h, __u32 kind, __u32 len, __u32 cpu,
					__u32 weight, struct task_struct *t)
{
	const struct cred *cred = t->cred;

	h->ts_ns = bpf_ktime_get_ns();
	h->cgroup_id = t->cgroups->dfl_cgrp->kn->id;
	h->kind = kind;
	h->flags = 0;
	h->len = len;
	h->cpu = cpu;
	h->pid = t->tgid;
	h->tid = t->pid;
	h->uid = cred->uid.val;
	h->gid = cred->gid.val;
	h->weight = weight;
	/* task->comm is NUL-terminated and zero-padded (set_task_comm pads it). */
	__builtin_memcpy(h->comm, t->comm, COMM_LEN);
}

/* Zero a record of constant size. clang expands memset inline only up to some size under 1 KiB
 * (the BPF target has no memset to call), so larger records are zeroed in parts. */
#define ZERO_CHUNK 512
#define ZERO_PART(p, size, k)                                                                 \
	__builtin_memset((char *)(p) + (k) * ZERO_CHUNK, 0,                                   \
			 (size) > ((k) + 1) * ZERO_CHUNK ? ZERO_CHUNK                          \
			 : (size) > (k) * ZERO_CHUNK	 ? (size) - (k) * ZERO_CHUNK           \
							 : 0)
#define zero_record(p, size)                                                                  \
	do {                                                                                  \
		_Static_assert((size) <= 3 * ZERO_CHUNK, "record too large for zero_record"); \
		ZERO_PART(p, size, 0);                                                        \
		asm volatile("" ::: "memory"); /* keep LLVM from merging the parts */        \
		ZERO_PART(p, size, 1);                                                        \
		asm volatile("" ::: "memory");                                                \
		ZERO_PART(p, size, 2);                                                        \
	} while (0)

/*
 * Reserve a record of `size` bytes on this CPU's ring, header filled in with the kernel's
 * sampling weight `weight` (from admit or sample); zeroed first unless `zero` is 0 (for
 * records whose every byte is then written: the syscall record).
 * Counts `produced` and, on failure, `ring_full`. Returns NULL when there is no room.
 * A macro so that `size` stays a compile-time constant for the verifier.
 */
#define RESERVE_(rb, type, kind, weight, zero)                                         \
	RESERVE_FOR(rb, type, kind, weight, zero, bpf_get_current_task_btf())
/* RESERVE_ with the header describing `task` instead of the current task. */
#define RESERVE_FOR(rb, type, kind, weight, zero, task)                                \
	({                                                                             \
		type *__e = NULL;                                                      \
		__u32 __cpu = bpf_get_smp_processor_id();                              \
		rb = bpf_map_lookup_elem(&rings, &__cpu);                              \
		count(kind, C_PRODUCED);                                               \
		if (rb)                                                                \
			__e = bpf_ringbuf_reserve(rb, sizeof(type), 0);                \
		if (__e) {                                                             \
			if (zero)                                                      \
				zero_record(__e, sizeof(type));                        \
			fill_header(&__e->h, kind, sizeof(type), __cpu, weight, task); \
		} else {                                                               \
			count(kind, C_RING_FULL);                                      \
		}                                                                      \
		__e;                                                                   \
	})
#define RESERVE(rb, type, kind, weight) RESERVE_(rb, type, kind, weight, 1)

/*
 * Submit, waking the reader only when this record makes the pending bytes cross
 * CONFIG.wakeup_bytes. Not on every record past it: when the reader is behind, a
 * forced wake-up per record (an irq_work each) would make every event dearer exactly
 * when there is least time. A reader sleeps only after it found the ring empty, and
 * polls on a timeout for the trickle below the threshold.
 */
static __always_inline void submit(void *rb, void *e, __u64 size)
{
	__u64 flags = 0;
	__u64 wakeup = CONFIG.wakeup_bytes;
	if (wakeup) {
		__u64 avail = bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA);
		__u64 rec = size + 8; /* BPF_RINGBUF_HDR_SZ; record sizes are multiples of 8 */
		flags = (avail >= wakeup && avail < wakeup + rec) ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	}
	bpf_ringbuf_submit(e, flags);
}

/* Length of a string read by bpf_probe_read_*_str (which counts the NUL), and whether
 * it may have been cut at the buffer bound. */
static __always_inline __u32 str_len(long n, __u32 cap, __u16 *flags)
{
	if (n <= 0)
		return 0;
	if ((__u32)n >= cap)
		*flags |= EVF_TRUNCATED;
	return (__u32)n - 1;
}


/* A syscall seen at sys_enter, waiting for its sys_exit (map `pending`, by tid). */
struct pending_call {
	__u64 ts;
	__u64 args[6];
	__u32 id;
	__u8 kind; /* file/security kind to emit at exit, or 0 */
	__u8 generic; /* 1: also emit a generic syscall record */
	__u16 armed; /* 1 between sys_enter and sys_exit */
	__u32 weight; /* the kernel's 1-in-N for the `kind` record, decided at sys_enter */
	__u32 generic_weight; /* and for the generic record */
};

/* Ring records: the common header followed by one payload. */
#define RECORD(payload)                    \
	struct rec_##payload {             \
		struct event_header h;     \
		struct payload p;          \
	}
RECORD(process_exec);
RECORD(process_fork);
RECORD(process_exit);
RECORD(file_op);
RECORD(file_rename);
RECORD(tcp_sock_event);
RECORD(packet_drop);
RECORD(cred_change);
RECORD(ptrace_event);
RECORD(capability_event);
RECORD(module_event);
RECORD(bpf_call);
RECORD(mount_event);
RECORD(signal_event);
RECORD(cgroup_event);
RECORD(oom_kill);
RECORD(direct_reclaim);
RECORD(page_fault);
RECORD(syscall_event);
RECORD(runq_wait);
RECORD(io_slow);
RECORD(tcp_life);

#endif
