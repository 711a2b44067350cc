/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* container.cgroup_mkdir, container.cgroup_rmdir, container.cgroup_attach (all hierarchies). */
#include "common.h"

static __always_inline int emit_cgroup(__u32 kind, struct cgroup *cgrp, const char *path,
				       struct task_struct *task, bool threadgroup)
{
	void *rb;
	__u32 w = 1;
	if (!category_on(CAT_CONTAINER) || !admit(kind, CAT_CONTAINER, &w))
		return 0;
	struct rec_cgroup_event *e = RESERVE(rb, struct rec_cgroup_event, kind, w);
	if (!e)
		return 0;
	e->p.cgroup_id = cgrp->kn->id;
	e->p.level = cgrp->level;
	e->p.hierarchy_id = cgrp->root->hierarchy_id;
	if (task) {
		e->p.target_pid = task->tgid;
		e->p.target_tid = task->pid;
		e->p.threadgroup = threadgroup;
	}
	long n = bpf_probe_read_kernel_str(e->p.path, PATH_MAX_LEN, path);
	e->p.path_len = str_len(n, PATH_MAX_LEN, &e->h.flags);
	submit(rb, e, sizeof(*e));
	return 0;
}

SEC("tp_btf/cgroup_mkdir")
int handle_cgroup_mkdir(__u64 *ctx)
{
	return emit_cgroup(EK_CONTAINER_CGROUP_MKDIR, (void *)ctx[0], (void *)ctx[1], NULL, false);
}

SEC("tp_btf/cgroup_rmdir")
int handle_cgroup_rmdir(__u64 *ctx)
{
	return emit_cgroup(EK_CONTAINER_CGROUP_RMDIR, (void *)ctx[0], (void *)ctx[1], NULL, false);
}

SEC("tp_btf/cgroup_attach_task")
int handle_cgroup_attach_task(__u64 *ctx)
{
	return emit_cgroup(EK_CONTAINER_CGROUP_ATTACH, (void *)ctx[0], (void *)ctx[1], (void *)ctx[2],
			   (bool)ctx[3]);
}
