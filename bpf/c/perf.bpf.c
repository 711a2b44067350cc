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

/* When each task became runnable (0 while it is not waiting for a CPU), and when it
 * last left a CPU (0 while it runs). */
struct runq_slot {
	__u64 enqueued_ns;
	__u64 off_ns;
};

/* Per process (tgid), per CPU: context switches and time off and waiting for a CPU. The
 * loader sets max_entries (perf.tasks_max); processes beyond it are counted. Per CPU, so
 * that sched_switch (which runs with interrupts off) needs no atomics. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct task_sched);
} task_sched SEC(".maps");

/* Each process's current command name (the loader sets max_entries to perf.tasks_max): set
 * when its task_sched entry is made, renewed at exec. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, char[COMM_LEN]);
} task_comm SEC(".maps");

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

/* Cumulative run-queue latency per cgroup id of the waiting task, per CPU (no atomics: the
 * root cgroup's entry would otherwise bounce between every CPU on each switch). The loader
 * sets max_entries (perf.cgroups_max). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
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
	switch (field) {
	case 0:
		__sync_fetch_and_add(&c->cgroup_full, 1);
		break;
	case 1:
		__sync_fetch_and_add(&c->no_storage, 1);
		break;
	case 2:
		__sync_fetch_and_add(&c->io_untracked, 1);
		break;
	case 3:
		__sync_fetch_and_add(&c->io_hist_full, 1);
		break;
	case 4:
		__sync_fetch_and_add(&c->flows_full, 1);
		break;
	case 5:
		__sync_fetch_and_add(&c->tcp_untracked, 1);
		break;
	case 6:
		__sync_fetch_and_add(&c->tasks_full, 1);
		break;
	}
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

static __always_inline void runq_add(struct runq_hist *h, __u32 slot, __u64 delta)
{
	if (slot >= RUNQ_SLOTS)
		return;
	h->slots[slot]++;
	h->count++;
	h->sum_ns += delta;
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

static __always_inline struct task_sched *task_stats(struct task_struct *t)
{
	__u32 tgid = t->tgid;
	struct task_sched *ts = bpf_map_lookup_elem(&task_sched, &tgid);
	if (ts)
		return ts;
	struct task_sched n = {};
	__builtin_memcpy(n.comm, t->group_leader->comm, COMM_LEN);
	if (bpf_map_update_elem(&task_sched, &tgid, &n, BPF_NOEXIST)) {
		perf_count(6);
		return NULL;
	}
	bpf_map_update_elem(&task_comm, &tgid, n.comm, BPF_NOEXIST);
	return bpf_map_lookup_elem(&task_sched, &tgid);
}

/* An exec renames the process: its scheduling entry goes by the new name. */
SEC("tp_btf/sched_process_exec")
int handle_perf_exec(__u64 *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf();
	__u32 tgid = t->tgid;
	char comm[COMM_LEN];
	__builtin_memcpy(comm, t->comm, COMM_LEN);
	bpf_map_update_elem(&task_comm, &tgid, comm, BPF_EXIST);
	return 0;
}

SEC("tp_btf/sched_switch")
int handle_sched_switch(__u64 *ctx)
{
	struct task_struct *prev = (struct task_struct *)ctx[1];
	struct task_struct *next = (struct task_struct *)ctx[2];
	unsigned int prev_state = (unsigned int)ctx[3];
	__u64 now = bpf_ktime_get_ns();

	/* prev leaves the CPU: off-CPU from now; still runnable (preempted): its wait for a
	 * CPU starts now too. */
	if (prev->pid != 0) {
		struct runq_slot *p =
			bpf_task_storage_get(&runq_start, prev, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (p) {
			p->off_ns = now;
			if (prev_state == 0)
				p->enqueued_ns = now;
		} else {
			perf_count(1);
		}
		struct task_sched *ts = task_stats(prev);
		if (ts) {
			if (prev_state == 0)
				ts->involuntary++;
			else
				ts->switches++;
		}
	}
	if (next->pid == 0)
		return 0;
	struct runq_slot *s = bpf_task_storage_get(&runq_start, next, NULL, 0);
	if (!s)
		return 0;
	__u64 off = s->off_ns ? now - s->off_ns : 0;
	__u64 delta = s->enqueued_ns ? now - s->enqueued_ns : 0;
	bool waited = s->enqueued_ns != 0;
	s->off_ns = 0;
	s->enqueued_ns = 0;
	if (off || waited) {
		struct task_sched *ts = task_stats(next);
		if (ts) {
			ts->offcpu_ns += off;
			ts->runq_ns += delta;
		}
	}
	if (!waited)
		return 0;

	/* The histograms are the machine's, the engine's own threads included (as runqlat
	 * counts itself); the filters apply to perf.runq_wait records. */
	__u64 cg = next->cgroups->dfl_cgrp->kn->id;
	__u32 slot = runq_slot_of(delta);
	__u32 zero = 0;
	struct runq_hist *h = bpf_map_lookup_elem(&runq_cpu, &zero);
	if (h)
		runq_add(h, slot, delta);
	h = bpf_map_lookup_elem(&runq_cgroup, &cg);
	if (!h) {
		struct runq_hist empty = {};
		/* BPF_NOEXIST: two CPUs may race to create it; the loser finds it below. A
		 * full map refuses it: counted. */
		bpf_map_update_elem(&runq_cgroup, &cg, &empty, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&runq_cgroup, &cg);
	}
	if (h)
		runq_add(h, slot, delta);
	else
		perf_count(0);
	/* Cgroup ids start at 1 (0 would mean "the current task's" to the filter). */
	if (CONFIG.runq_slow_ns && delta >= CONFIG.runq_slow_ns && !excluded_ids(next->tgid, cg))
		runq_wait_record(next, prev, delta);
	return 0;
}

/*
 * Block I/O: each request is timed from block_rq_issue to block_rq_complete (biolatency's
 * default), attributed to the task that queued it (block_rq_insert) or, when it was issued
 * without being queued, the task that issued it. Latency goes into cumulative log2
 * histograms per device and operation (a bounded hash, atomics); requests of at least
 * CONFIG.io_slow_ns are also ring records (perf.io_slow).
 */

/* A request in flight: when it was queued and issued, and by whom. */
struct io_start {
	__u64 insert_ns;
	__u64 issue_ns;
	__u64 cgroup_id;
	__u32 pid;
	__u32 tid;
	__u32 uid;
	__u32 gid;
	char comm[COMM_LEN];
};

/* Requests in flight, by address (bounded: requests beyond it are counted, not timed). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct io_start);
} io_start SEC(".maps");

/* Cumulative latency per device and operation (bounded: 256 device/operation pairs). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct io_key);
	__type(value, struct io_hist);
} io_hist SEC(".maps");

/* Records who queued or issued `rq`, and when (`issue`: the issue time, else the insert). */
static __always_inline void io_begin(struct request *rq, bool issue)
{
	__u64 key = (__u64)rq;
	__u64 now = bpf_ktime_get_ns();
	struct io_start *s = bpf_map_lookup_elem(&io_start, &key);
	if (s) {
		if (issue)
			s->issue_ns = now;
		else
			s->insert_ns = now; /* requeued: timed from its last queueing */
		return;
	}
	struct task_struct *t = bpf_get_current_task_btf();
	const struct cred *cred = t->cred;
	struct io_start n = {};
	if (issue)
		n.issue_ns = now;
	else
		n.insert_ns = now;
	n.cgroup_id = t->cgroups->dfl_cgrp->kn->id;
	n.pid = t->tgid;
	n.tid = t->pid;
	n.uid = cred->uid.val;
	n.gid = cred->gid.val;
	__builtin_memcpy(n.comm, t->comm, COMM_LEN);
	if (bpf_map_update_elem(&io_start, &key, &n, BPF_NOEXIST))
		perf_count(2);
}

SEC("tp_btf/block_rq_insert")
int handle_block_rq_insert(__u64 *ctx)
{
	io_begin((struct request *)ctx[0], false);
	return 0;
}

SEC("tp_btf/block_rq_issue")
int handle_block_rq_issue(__u64 *ctx)
{
	io_begin((struct request *)ctx[0], true);
	return 0;
}

static __always_inline void io_slow_record(struct request *rq, struct io_start *s, struct io_key *k,
					   __u64 latency, __s32 error, __u32 bytes)
{
	if (excluded_ids(s->pid, s->cgroup_id ? s->cgroup_id : 1))
		return;
	if (!rate_ok(CAT_PERF, EK_PERF_IO_SLOW))
		return;
	void *rb;
	struct rec_io_slow *e = RESERVE(rb, struct rec_io_slow, EK_PERF_IO_SLOW, 1);
	if (!e)
		return;
	/* The identity of the task that queued or issued it, not of the completion's. */
	e->h.cgroup_id = s->cgroup_id;
	e->h.pid = s->pid;
	e->h.tid = s->tid;
	e->h.uid = s->uid;
	e->h.gid = s->gid;
	__builtin_memcpy(e->h.comm, s->comm, COMM_LEN);
	e->p.latency_ns = latency;
	e->p.queued_ns = s->insert_ns && s->issue_ns > s->insert_ns ? s->issue_ns - s->insert_ns : 0;
	e->p.sector = rq->__sector;
	e->p.bytes = bytes;
	e->p.dev = k->dev;
	e->p.op = k->op;
	e->p.error = error;
	struct gendisk *disk = rq->q->disk;
	if (disk)
		bpf_probe_read_kernel_str(e->p.disk, sizeof(e->p.disk), disk->disk_name);
	submit(rb, e, sizeof(*e));
}

SEC("tp_btf/block_rq_complete")
int handle_block_rq_complete(__u64 *ctx)
{
	struct request *rq = (struct request *)ctx[0];
	__s32 error = (__s32)ctx[1];
	__u32 bytes = (__u32)ctx[2];
	__u64 key = (__u64)rq;
	struct io_start *s = bpf_map_lookup_elem(&io_start, &key);
	if (!s)
		return 0; /* issued before the programs were attached, or not tracked (counted) */
	if (!s->issue_ns) {
		bpf_map_delete_elem(&io_start, &key);
		return 0;
	}
	__u64 latency = bpf_ktime_get_ns() - s->issue_ns;
	struct io_key k = {};
	struct gendisk *disk = rq->q->disk;
	if (disk)
		k.dev = ((__u32)disk->major << 20) | (__u32)disk->first_minor;
	k.op = rq->cmd_flags & 0xff; /* REQ_OP_MASK */
	struct io_hist *h = bpf_map_lookup_elem(&io_hist, &k);
	if (!h) {
		struct io_hist empty = {};
		if (disk)
			bpf_probe_read_kernel_str(empty.disk, sizeof(empty.disk), disk->disk_name);
		bpf_map_update_elem(&io_hist, &k, &empty, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&io_hist, &k);
	}
	if (h) {
		__u32 slot = runq_slot_of(latency);
		if (slot < RUNQ_SLOTS)
			__sync_fetch_and_add(&h->slots[slot], 1);
		__sync_fetch_and_add(&h->count, 1);
		__sync_fetch_and_add(&h->sum_ns, latency);
		__sync_fetch_and_add(&h->bytes, bytes);
	} else {
		perf_count(3);
	}
	if (CONFIG.io_slow_ns && latency >= CONFIG.io_slow_ns)
		io_slow_record(rq, s, &k, latency, error, bytes);
	bpf_map_delete_elem(&io_start, &key);
	return 0;
}

/*
 * Network traffic: sock:sock_send_length and sock:sock_recv_length (process context) add
 * each TCP or UDP send's and receive's bytes to its flow (addresses, ports, protocol, and
 * the process) in a bounded hash (perf.flows_max; overflow counted); the engine writes
 * what changed every interval and retires idle flows. And tcplife: every TCP connection
 * is timed from its first state change to CLOSE, and a perf.tcp_life record says how
 * long it lived, the bytes each way and the smoothed RTT at close.
 */

#define MSG_PEEK 2
#define TCP_FIN_WAIT1 4
#define TCP_LAST_ACK 9

/* The loader sets max_entries (perf.flows_max). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} net_flows SEC(".maps");

/* A TCP connection being timed, by socket address, and who owns it. */
struct tcp_birth {
	__u64 start_ns;
	__u64 cgroup_id;
	__u32 pid;
	__u32 tid;
	__u32 uid;
	__u32 gid;
	char comm[COMM_LEN]; /* comm[0] == 0: owner not known yet */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tcp_birth);
} tcp_birth SEC(".maps");

static __always_inline void own(struct tcp_birth *b)
{
	struct task_struct *t = bpf_get_current_task_btf();
	const struct cred *cred = t->cred;
	b->cgroup_id = t->cgroups->dfl_cgrp->kn->id;
	b->pid = t->tgid;
	b->tid = t->pid;
	b->uid = cred->uid.val;
	b->gid = cred->gid.val;
	__builtin_memcpy(b->comm, t->comm, COMM_LEN);
}

static __always_inline void flow_add(const struct sock *sk, int ret, bool send)
{
	if (ret <= 0)
		return;
	__u16 proto = sk->sk_protocol;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return;
	struct tcp_sock_event s = {};
	fill_sock(&s, sk);
	if (s.family != AF_INET && s.family != AF_INET6)
		return;
	struct flow_key k = {};
	k.tgid = bpf_get_current_pid_tgid() >> 32;
	k.family = s.family;
	k.protocol = proto;
	k.sport = s.sport;
	k.dport = s.dport;
	__builtin_memcpy(k.saddr, s.saddr, 16);
	__builtin_memcpy(k.daddr, s.daddr, 16);
	struct flow_value *v = bpf_map_lookup_elem(&net_flows, &k);
	if (!v) {
		struct flow_value n = {};
		bpf_get_current_comm(n.comm, sizeof(n.comm));
		bpf_map_update_elem(&net_flows, &k, &n, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&net_flows, &k);
		if (!v) {
			perf_count(4);
			return;
		}
	}
	if (send) {
		__sync_fetch_and_add(&v->bytes_sent, ret);
		__sync_fetch_and_add(&v->sends, 1);
	} else {
		__sync_fetch_and_add(&v->bytes_received, ret);
		__sync_fetch_and_add(&v->receives, 1);
	}
	/* A connection whose owner is not known yet (accepted: its state changes ran in
	 * softirq) is owned by the first process that moves bytes on it. */
	if (proto == IPPROTO_TCP) {
		__u64 key = (__u64)sk;
		struct tcp_birth *b = bpf_map_lookup_elem(&tcp_birth, &key);
		if (b && !b->comm[0])
			own(b);
	}
}

SEC("tp_btf/sock_send_length")
int handle_sock_send_length(__u64 *ctx)
{
	flow_add((const struct sock *)ctx[0], (int)ctx[1], true);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int handle_sock_recv_length(__u64 *ctx)
{
	if ((int)ctx[2] & MSG_PEEK)
		return 0; /* the bytes stay queued: counted when they are read */
	flow_add((const struct sock *)ctx[0], (int)ctx[1], false);
	return 0;
}

/* Where the sock_*_length tracepoints are missing (before 6.3): the returns of
 * sock_sendmsg(sock, msg) and sock_recvmsg(sock, msg, flags), which those tracepoints sit
 * in. */
SEC("fexit/sock_sendmsg")
int handle_sock_sendmsg_fexit(__u64 *ctx)
{
	struct socket *sock = (void *)ctx[0];
	flow_add(sock->sk, (int)ctx[2], true);
	return 0;
}

SEC("fexit/sock_recvmsg")
int handle_sock_recvmsg_fexit(__u64 *ctx)
{
	struct socket *sock = (void *)ctx[0];
	if ((int)ctx[2] & MSG_PEEK)
		return 0;
	flow_add(sock->sk, (int)ctx[3], false);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int handle_tcp_life(__u64 *ctx)
{
	const struct sock *sk = (void *)ctx[0];
	int new_state = (int)ctx[2];
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u64 key = (__u64)sk;
	struct tcp_birth *b = bpf_map_lookup_elem(&tcp_birth, &key);
	if (new_state < TCP_FIN_WAIT1) {
		if (!b) {
			struct tcp_birth n = {};
			n.start_ns = bpf_ktime_get_ns();
			if (bpf_map_update_elem(&tcp_birth, &key, &n, BPF_NOEXIST)) {
				perf_count(5);
				return 0;
			}
			b = bpf_map_lookup_elem(&tcp_birth, &key);
		}
		/* connect(): the process is the current task. */
		if (b && new_state == TCP_SYN_SENT)
			own(b);
		return 0;
	}
	if (new_state == TCP_LAST_ACK && b && !b->comm[0])
		own(b); /* close() after the peer's FIN, in process context */
	if (new_state != TCP_CLOSE || !b)
		return 0;
	struct tcp_birth birth = *b;
	bpf_map_delete_elem(&tcp_birth, &key);
	if (birth.comm[0] && excluded_ids(birth.pid, birth.cgroup_id ? birth.cgroup_id : 1))
		return 0;
	if (!rate_ok(CAT_PERF, EK_PERF_TCP_LIFE))
		return 0;
	void *rb;
	struct rec_tcp_life *e = RESERVE(rb, struct rec_tcp_life, EK_PERF_TCP_LIFE, 1);
	if (!e)
		return 0;
	if (birth.comm[0]) {
		e->h.cgroup_id = birth.cgroup_id;
		e->h.pid = birth.pid;
		e->h.tid = birth.tid;
		e->h.uid = birth.uid;
		e->h.gid = birth.gid;
		__builtin_memcpy(e->h.comm, birth.comm, COMM_LEN);
	}
	struct tcp_sock_event s = {};
	fill_sock(&s, sk);
	/* The socket is a tcp_sock, a type the verifier does not know this pointer as: read
	 * its fields (CO-RE offsets) by probe. */
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u64 acked = 0, received = 0;
	__u32 srtt = 0;
	bpf_probe_read_kernel(&acked, sizeof(acked), &tp->bytes_acked);
	bpf_probe_read_kernel(&received, sizeof(received), &tp->bytes_received);
	bpf_probe_read_kernel(&srtt, sizeof(srtt), &tp->srtt_us);
	e->p.duration_ns = e->h.ts_ns - birth.start_ns;
	e->p.bytes_sent = acked;
	e->p.bytes_received = received;
	e->p.sock_cookie = s.sock_cookie;
	e->p.srtt_us = srtt >> 3;
	e->p.family = s.family;
	e->p.sport = s.sport;
	e->p.dport = s.dport;
	__builtin_memcpy(e->p.saddr, s.saddr, 16);
	__builtin_memcpy(e->p.daddr, s.daddr, 16);
	submit(rb, e, sizeof(*e));
	return 0;
}
