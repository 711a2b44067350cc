/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The perf category: scheduler run-queue latency, aggregated in the kernel.
 *
 * A task's wait starts when it becomes runnable (sched_wakeup, sched_wakeup_new, or
 * sched_switch away from it while it is still runnable: preempted) and ends when
 * sched_switch puts it on a CPU, as libbpf-tools' runqlat measures it. Each wait goes
 * into log2 histograms of microseconds, per CPU (a per-CPU array: no atomics) and per
 * cgroup of the waiting task (a bounded hash, atomics; a cgroup that finds no room is
 * counted). The engine reads the cumulative histograms every interval and writes their
 * differences as records (engine/src/perf/). Waits of at least CONFIG.runq_slow_ns are
 * also ring records of their own (perf.runq_wait).
 */
#include "common.h"

/* When each task became runnable; 0 while it is not waiting. */
struct runq_slot {
	__u64 enqueued_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct runq_slot);
} runq_start SEC(".maps");

/* Cumulative run-queue latency on each CPU (key 0 of a per-CPU array). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct runq_hist);
} runq_cpu SEC(".maps");

/* Cumulative run-queue latency per cgroup id of the waiting task. The loader sets
 * max_entries (perf.cgroups_max). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct runq_hist);
} runq_cgroup SEC(".maps");

/* Waits that found no room in runq_cgroup, and waits not measured because the task
 * storage could not be had (per CPU, key 0). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct perf_counters);
} perf_counters SEC(".maps");

/* floor(log2(us)), 0 for 0 and 1 us, capped at the last slot (runqlat's buckets). */
static __always_inline __u32 runq_slot_of(__u64 ns)
{
	__u64 us = ns / 1000;
	__u32 slot = 0;
	/* Bounded loop: at most RUNQ_SLOTS - 1 halvings. */
	for (int i = 0; i < RUNQ_SLOTS - 1; i++) {
		if (us <= 1)
			break;
		us >>= 1;
		slot++;
	}
	return slot;
}

static __always_inline void perf_count(int field)
{
	__u32 key = 0;
	struct perf_counters *c = bpf_map_lookup_elem(&perf_counters, &key);
	if (!c)
		return;
	if (field == 0)
		__sync_fetch_and_add(&c->cgroup_full, 1);
	else
		__sync_fetch_and_add(&c->no_storage, 1);
}

static __always_inline void runq_enqueue(struct task_struct *p)
{
	if (p->pid == 0)
		return; /* the idle task */
	struct runq_slot *s = bpf_task_storage_get(&runq_start, p, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s) {
		perf_count(1);
		return;
	}
	s->enqueued_ns = bpf_ktime_get_ns();
}

SEC("tp_btf/sched_wakeup")
int handle_sched_wakeup(__u64 *ctx)
{
	runq_enqueue((struct task_struct *)ctx[0]);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int handle_sched_wakeup_new(__u64 *ctx)
{
	runq_enqueue((struct task_struct *)ctx[0]);
	return 0;
}

static __always_inline void runq_add(struct runq_hist *h, __u32 slot, __u64 delta, bool atomic)
{
	if (slot >= RUNQ_SLOTS)
		return;
	if (atomic) {
		__sync_fetch_and_add(&h->slots[slot], 1);
		__sync_fetch_and_add(&h->count, 1);
		__sync_fetch_and_add(&h->sum_ns, delta);
	} else {
		h->slots[slot]++;
		h->count++;
		h->sum_ns += delta;
	}
}

static __always_inline void runq_wait_record(struct task_struct *next, struct task_struct *prev,
					     __u64 delta)
{
	if (!rate_ok(CAT_PERF, EK_PERF_RUNQ_WAIT))
		return;
	void *rb;
	struct rec_runq_wait *e = RESERVE_FOR(rb, struct rec_runq_wait, EK_PERF_RUNQ_WAIT, 1, 1, next);
	if (!e)
		return;
	e->p.wait_ns = delta;
	e->p.prev_pid = prev->pid;
	e->p.prev_tgid = prev->tgid;
	__builtin_memcpy(e->p.prev_comm, prev->comm, COMM_LEN);
	submit(rb, e, sizeof(*e));
}

SEC("tp_btf/sched_switch")
int handle_sched_switch(__u64 *ctx)
{
	struct task_struct *prev = (struct task_struct *)ctx[1];
	struct task_struct *next = (struct task_struct *)ctx[2];
	unsigned int prev_state = (unsigned int)ctx[3];

	/* Switched away from while still runnable: its wait starts now. */
	if (prev_state == 0)
		runq_enqueue(prev);
	if (next->pid == 0)
		return 0;
	struct runq_slot *s = bpf_task_storage_get(&runq_start, next, NULL, 0);
	if (!s || !s->enqueued_ns)
		return 0;
	__u64 delta = bpf_ktime_get_ns() - s->enqueued_ns;
	s->enqueued_ns = 0;

	/* The histograms are the machine's, the engine's own threads included (as runqlat
	 * counts itself); the filters apply to perf.runq_wait records. */
	__u64 cg = next->cgroups->dfl_cgrp->kn->id;
	__u32 slot = runq_slot_of(delta);
	__u32 zero = 0;
	struct runq_hist *h = bpf_map_lookup_elem(&runq_cpu, &zero);
	if (h)
		runq_add(h, slot, delta, false);
	h = bpf_map_lookup_elem(&runq_cgroup, &cg);
	if (!h) {
		struct runq_hist empty = {};
		/* BPF_NOEXIST: two CPUs may race to create it; the loser finds it below. A
		 * full map refuses it: counted. */
		bpf_map_update_elem(&runq_cgroup, &cg, &empty, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&runq_cgroup, &cg);
	}
	if (h)
		runq_add(h, slot, delta, true);
	else
		perf_count(0);
	/* Cgroup ids start at 1 (0 would mean "the current task's" to the filter). */
	if (CONFIG.runq_slow_ns && delta >= CONFIG.runq_slow_ns && !excluded_ids(next->tgid, cg))
		runq_wait_record(next, prev, delta);
	return 0;
}
